//! In-memory adapters: the store and the in-process queue used without a broker, and by tests.

#[cfg(test)]
mod intercepted;
mod queue;
mod store;

#[cfg(test)]
pub use intercepted::Intercepted;
pub use queue::InProcessQueue;
pub use store::MemoryStore;
