//! Queue adapters: RabbitMQ through lapin, and the transport that picks it or the in-process queue
//! (which lives in `cpe_actors::memory`).

pub mod amqp;
pub mod transport;

pub use transport::Transport;
