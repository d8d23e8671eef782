//! cpe-config: the adapters (HTTP, TLS, RabbitMQ, Service A client, stores) and the app that wires
//! them to the actors of `cpe-actors`.

pub mod client;
pub mod config;
pub mod duration;
pub mod healthcheck;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod provisioner;
pub mod queue;
pub mod redact;
pub mod say;
pub mod secret;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;
