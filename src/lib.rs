//! cpe-config: the adapters (HTTP, TLS, RabbitMQ, Service A client, stores) and the app that wires
//! them to the actors of `cpe-actors`.

pub mod queue;
pub mod store;
