//! Task stores: the embedded file store. The memory store lives in `cpe_actors::memory`.

pub mod file;

#[cfg(test)]
mod listing_tests;

#[cfg(test)]
mod counts_tests;
