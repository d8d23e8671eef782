//! Group commit: one writer thread takes every change waiting for the store and commits them in
//! one transaction, so a thousand concurrent changes cost one fsync instead of a thousand.
//! Each submitter still learns only after its own change is durable.

use crate::ports::{StoreError, TaskStore, WriteOp};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most changes in one transaction: bounds the latency a large batch adds to its first member.
const MAX_BATCH: usize = 1024;

/// Told once, with the change's result; a writer that drops it unanswered (its thread panicked)
/// tells it that the writer stopped, so no submitter waits for ever.
pub struct Done(Option<Tell>);

type Tell = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

impl Done {
    fn new(tell: impl FnOnce(Result<(), StoreError>) + Send + 'static) -> Self {
        Self(Some(Box::new(tell)))
    }

    fn send(mut self, result: Result<(), StoreError>) {
        if let Some(tell) = self.0.take() {
            tell(result);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(tell) = self.0.take() {
            tell(Err(stopped()));
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

/// The sending side; the writer thread ends once every handle is dropped and the queue is empty.
pub struct GroupCommit {
    queue: Option<mpsc::Sender<(WriteOp, Done)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl GroupCommit {
    pub fn start(store: Arc<dyn TaskStore>) -> Self {
        let (queue, waiting) = mpsc::channel::<(WriteOp, Done)>();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(store.as_ref(), waiting))
            .expect("the store writer thread can be started");
        Self {
            queue: Some(queue),
            writer: Some(writer),
        }
    }

    /// Queues a change; the receiver answers once it is durable (or failed, with the batch).
    pub fn submit(&self, op: WriteOp) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, answer) = oneshot::channel();
        self.submit_then(op, move |result| drop(done.send(result)));
        answer
    }

    /// Queues a change; `then` runs on the writer's thread once it is durable (or failed), so a
    /// submitter needs no task of its own to wait. `then` must not block.
    pub fn submit_then(&self, op: WriteOp, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        let done = Done::new(then);
        // Refused (the writer stopped): dropping `done` tells `then` so.
        if let Some(queue) = &self.queue {
            let _ = queue.send((op, done));
        }
    }

    /// Clean stop: takes no more changes, lets the writer commit what is queued, and waits for its
    /// thread to end, so the store's file is released when this returns.
    pub async fn stop(&mut self) {
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            if tokio::task::spawn_blocking(move || writer.join()).await.is_err() {
                tracing::error!("the store writer thread ended with a panic");
            }
        }
    }
}

fn write_loop(store: &dyn TaskStore, waiting: mpsc::Receiver<(WriteOp, Done)>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, answers): (Vec<WriteOp>, Vec<Done>) = batch.into_iter().unzip();
        let results = match store.write_batch(&ops) {
            Ok(()) => vec![Ok(()); ops.len()],
            // One bad change must not fail its neighbours: write each alone to learn whose it is.
            Err(_) if ops.len() > 1 => ops
                .iter()
                .map(|op| store.write_batch(std::slice::from_ref(op)))
                .collect(),
            Err(error) => vec![Err(error)],
        };
        for (result, answer) in results.into_iter().zip(answers) {
            match &result {
                // Another instance got there first: the submitter reads again and answers for that.
                Err(error) if error.is_conflict() => tracing::debug!(%error, "a task change lost a race"),
                Err(error) => tracing::error!(%error, "a task change could not be stored"),
                Ok(()) => {}
            }
            answer.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::TaskReader;
    use crate::{ConfigRequest, EquipmentId, TaskId, TaskRecord};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts transactions, so batching is visible.
    fn counting() -> (Arc<impl TaskStore>, Arc<AtomicUsize>) {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let store = crate::memory::Intercepted::new(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            None
        });
        (Arc::new(store), batches)
    }

    #[test]
    fn a_change_dropped_unanswered_is_told_that_the_writer_stopped() {
        let (tell, told) = std::sync::mpsc::channel();
        drop(Done::new(move |result| tell.send(result).unwrap()));
        let error = told.try_recv().expect("told when dropped").unwrap_err();
        assert!(error.message().contains("writer has stopped"), "{error}");
        assert!(told.try_recv().is_err(), "told once");
    }

    #[tokio::test]
    async fn concurrent_changes_share_commits_and_each_learns_when_it_is_durable() {
        let (store, batches) = counting();
        let writer = GroupCommit::start(store.clone());
        let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {}}"#).unwrap();
        let records: Vec<_> = (0..200)
            .map(|_| TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request.clone()))
            .collect();
        let answers: Vec<_> = records.iter().map(|r| writer.submit(WriteOp::Put(r.clone()))).collect();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        for record in &records {
            assert!(store.get(record.id).unwrap().is_some());
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(batches < 200, "200 changes took {batches} commits");
    }

    #[tokio::test]
    async fn stop_commits_what_is_queued_then_joins_the_writer() {
        let (store, _) = counting();
        let mut writer = GroupCommit::start(store.clone());
        let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {}}"#).unwrap();
        let record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
        let answer = writer.submit(WriteOp::Put(record.clone()));
        writer.stop().await;
        answer.await.unwrap().unwrap();
        assert!(store.get(record.id).unwrap().is_some());
        // The writer's clone of the store is gone with its thread.
        assert_eq!(Arc::strong_count(&store), 1);
        let refused = writer.submit(WriteOp::Remove(record.id)).await.unwrap();
        assert!(refused.is_err());
    }
}
