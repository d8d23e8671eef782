//! Queue adapters: RabbitMQ through lapin. The in-process queue lives in `cpe_actors::memory`.

pub mod amqp;
