//! In-memory adapters: the store and the in-process queue used without a broker, and by tests.

mod queue;
mod store;

pub use queue::InProcessQueue;
pub use store::MemoryStore;
