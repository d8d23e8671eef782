//! Contracts every store must keep, run against each of them (memory, file, and PostgreSQL when it
//! answers); a store's own tests sit beside it (`file/tests.rs`, `postgres/tests.rs`).

mod counts;
mod listing;
