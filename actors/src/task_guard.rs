//! A spawned task that ends with its owner: an actor that is killed or panics skips `post_stop`,
//! but its state is still dropped, so the tasks it owns stop with it.

use tokio::task::JoinHandle;

pub struct AbortOnDrop<T = ()>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
