//! Task stores: the embedded file store and the PostgreSQL store shared by several instances. The
//! memory store lives in `cpe_actors::memory`.

pub mod file;
pub mod postgres;

#[cfg(test)]
mod tests;
