//! The ordinary integration suites in one test binary: one module per suite, sharing `common`.
//! One binary links the app once instead of once per suite, which is what a build on two cores
//! spends most of its time on. Run one suite with `cargo test --test api contract::`.
//!
//! Suites that stop shared services (RabbitMQ, PostgreSQL) or load the machine on their own are
//! binaries of their own beside this one (see docs/testing.md): cargo runs test binaries one after
//! another, so they never run beside these.

mod common;

mod amqp_adapter;
mod audit;
mod campaign_cli;
mod chaos_poison;
mod clean_stop;
mod cli;
mod client_cli;
mod compose;
mod contract;
mod cross_site;
mod deploy;
mod dropped_clients;
mod edge;
mod harness;
mod hostile_input;
mod metrics;
mod openapi;
mod operator_api;
mod quorum_queue;
mod rabbitmq;
mod secrets;
mod service_a_answers;
mod supervision;
mod tokens;
