//! Per-conversation queues, each worked through by one task: in order per conversation (a
//! user, or a recipient of one account), concurrently across conversations, taking one item or
//! a batch from the front at a time; and [`drive`], the one attempt loop of an item or a batch.
//! The outbox's delivery to the platform and the inbound events' push to the desk's webhook
//! both run on it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, watch};

use kefu_core::now_ms;
use tokio::task::JoinSet;

/// What takes a queue's items to their final state.
pub(crate) trait Deliver<J>: Send + Sync + 'static {
    /// How many items from the front of a queue one delivery may take together, given the
    /// first: 1 unless the worker sends several in one call.
    fn batch_limit(&self, first: &J) -> usize {
        let _ = first;
        1
    }

    /// Delivers `items` (1 ..= [`batch_limit`](Deliver::batch_limit) items from the front of
    /// one queue, in order) to a final state. Returns `false` if the service is stopping, the
    /// store failed, or a shared store handed the conversation to another relay: the items,
    /// and the rest of the queue, stay stored for the next start or the next holder.
    /// `stopping` turns true when the service stops.
    fn deliver(
        &self,
        items: &[J],
        stopping: watch::Receiver<bool>,
    ) -> impl Future<Output = bool> + Send;

    /// Called once per item enqueued (`+1`) and once per item finished (`-1`), for a gauge.
    fn pending(&self, delta: i64);
}

/// The queues, their tasks, and the worker.
pub(crate) struct Conversations<K, J, W> {
    worker: W,
    queues: Mutex<HashMap<K, VecDeque<J>>>,
    tasks: Tasks,
}

/// The tasks that work conversations, and the signal that stops them: shared by the queues
/// kept here and those pulled from a shared store (`pulled.rs`).
pub(crate) struct Tasks {
    set: Mutex<JoinSet<()>>,
    stopping: watch::Sender<bool>,
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        Tasks {
            set: Mutex::new(JoinSet::new()),
            stopping: watch::channel(false).0,
        }
    }

    /// Runs `task` until it ends or [`shutdown`](Tasks::shutdown) gives up on it.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Ok(mut set) = self.set.lock() {
            // A JoinSet keeps finished tasks until they are joined: reap them here, or memory
            // grows with every conversation that ever emptied its queue.
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    /// A receiver that turns true when [`shutdown`](Tasks::shutdown) begins.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Signals the tasks to stop and waits up to `grace` for them; `what` names them in the
    /// warning if some are still running then.
    pub(crate) async fn shutdown(&self, grace: Duration, what: &str) {
        let _ = self.stopping.send(true);
        let mut tasks = match self.set.lock() {
            Ok(mut set) => std::mem::take(&mut *set),
            Err(_) => return,
        };
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("{what} still in flight after {grace:?}");
            tasks.abort_all();
        }
    }
}

impl<K, J, W> Conversations<K, J, W>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    J: Clone + Send + 'static,
    W: Deliver<J>,
{
    /// Empty queues worked by `worker`.
    pub(crate) fn new(worker: W) -> Arc<Conversations<K, J, W>> {
        Arc::new(Conversations {
            worker,
            queues: Mutex::new(HashMap::new()),
            tasks: Tasks::new(),
        })
    }

    /// Queues `item` behind the conversation's earlier items, starting the conversation's task
    /// if it has none.
    pub(crate) fn enqueue(self: &Arc<Self>, key: K, item: J) {
        self.worker.pending(1);
        let Ok(mut queues) = self.queues.lock() else {
            return;
        };
        if let Some(queue) = queues.get_mut(&key) {
            queue.push_back(item);
            return;
        }
        queues.insert(key.clone(), VecDeque::from([item]));
        drop(queues);
        let this = Arc::clone(self);
        self.tasks
            .spawn(async move { this.work_through(key).await });
    }

    /// A receiver that turns true when [`shutdown`](Conversations::shutdown) begins, for the
    /// tasks that stop with the queues.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.tasks.stopping()
    }

    /// Stops starting new deliveries and waits up to `grace` for those in flight; `what` names
    /// them in the warning if some are still running then.
    pub(crate) async fn shutdown(&self, grace: Duration, what: &str) {
        self.tasks.shutdown(grace, what).await;
    }

    /// Works through one conversation's queue until it is empty or the service stops, taking
    /// up to the worker's batch limit from its front at a time.
    async fn work_through(self: Arc<Self>, key: K) {
        loop {
            let items: Vec<J> = match self.queues.lock() {
                Ok(queues) => match queues.get(&key) {
                    Some(queue) => {
                        let limit = queue
                            .front()
                            .map_or(1, |first| self.worker.batch_limit(first).max(1));
                        queue.iter().take(limit).cloned().collect()
                    }
                    None => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            if items.is_empty() {
                return;
            }
            if !self.worker.deliver(&items, self.tasks.stopping()).await {
                return;
            }
            self.worker
                .pending(-i64::try_from(items.len()).unwrap_or(i64::MAX));
            let Ok(mut queues) = self.queues.lock() else {
                return;
            };
            if let Some(queue) = queues.get_mut(&key) {
                queue.drain(..items.len().min(queue.len()));
                if queue.is_empty() {
                    queues.remove(&key);
                    return;
                }
            }
        }
    }
}

/// What an attempt at an item came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Attempt again at once, in the same place among the requests in flight (a credential
    /// replay).
    Again,
    /// Attempt again after this wait; the failure is recorded.
    After(Duration),
    /// The item is finished: `true` if its final state was recorded, `false` if the store
    /// failed.
    Done(bool),
}

/// One item's attempts, as [`drive`] makes them.
pub(crate) trait Attempts: Send {
    /// Makes the next attempt and records what it came to.
    fn attempt(&mut self) -> impl Future<Output = Step> + Send;
}

/// Makes `item`'s attempts until it is finished: none before `not_before_ms` (a retry time
/// stored before a restart still holds), each holding a place among `permits`, none once the
/// service stops. `false` if the service is stopping or the store failed: the item stays stored
/// for the next start.
pub(crate) async fn drive(
    item: &mut impl Attempts,
    not_before_ms: i64,
    permits: &Semaphore,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    if !wait_until(not_before_ms, stopping).await {
        return false;
    }
    let mut held = None;
    loop {
        let permit = match held.take() {
            Some(permit) => permit,
            None => match permit(permits, stopping).await {
                Some(permit) => permit,
                None => return false,
            },
        };
        match item.attempt().await {
            Step::Done(recorded) => return recorded,
            Step::Again => held = Some(permit),
            Step::After(wait) => {
                drop(permit);
                if !sleep_unless_stopping(wait, stopping).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps for `wait`; `false` if the service started stopping first.
async fn sleep_unless_stopping(wait: Duration, stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = stopping.wait_for(|stop| *stop) => false,
    }
}

/// Sleeps until `not_before_ms` (a retry time stored before a restart still holds); `false` if
/// the service started stopping first.
async fn wait_until(not_before_ms: i64, stopping: &mut watch::Receiver<bool>) -> bool {
    let wait = u64::try_from(not_before_ms.saturating_sub(now_ms())).unwrap_or_default();
    wait == 0 || sleep_unless_stopping(Duration::from_millis(wait), stopping).await
}

/// A place among the requests in flight, or `None` if the service is stopping.
async fn permit<'a>(
    permits: &'a Semaphore,
    stopping: &mut watch::Receiver<bool>,
) -> Option<SemaphorePermit<'a>> {
    let permit = tokio::select! {
        permit = permits.acquire() => permit.ok()?,
        _ = stopping.wait_for(|stop| *stop) => return None,
    };
    if *stopping.borrow() {
        return None;
    }
    Some(permit)
}
