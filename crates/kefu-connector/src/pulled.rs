//! Conversations worked from a store that several relays share (design §3.5): the relay keeps
//! no queue in memory. Storing into a conversation kicks it; a kicked conversation's task takes
//! its lease and pulls its head from the store ([`Fleet::head`]), delivers it through the same
//! [`Deliver`] worker as a local queue, and reads the head again until it is empty, then lets
//! the conversation go ([`Fleet::release`]), unless new work arrived in between. A claim loop
//! finds, every [`Fleet::poll_every`] and at start, the conversations with work that nobody
//! works: another relay's after it stopped or died, or this relay's after a store failure.
//!
//! [`Queues`] is the switch the dispatchers hold: a local store keeps today's in-memory queues
//! ([`Conversations`]), exactly as before; a shared store gets [`Pulled`].

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::conversations::{Conversations, Deliver, Tasks};
use crate::store::{ConvKey, Head, Lane, PendingEvent, PendingJob, Store};

/// How many items one read of a head takes: the batches delivered from it, then a new read.
const HEAD_LIMIT: usize = 32;

/// How many conversations one claim takes; the next round takes more.
const CLAIM_MAX: usize = 64;

/// An item of a conversation: where it queues locally, and where it lives in a shared store.
pub(crate) trait Item: Clone + Send + Sync + 'static {
    /// The key of its in-memory queue (local mode).
    type Key: Eq + Hash + Clone + Send + Sync + 'static;
    /// The lane it travels on.
    const LANE: Lane;
    /// Its in-memory queue.
    fn key(&self) -> Self::Key;
    /// Its conversation in a shared store.
    fn conversation(&self) -> ConvKey;
    /// The items of a head read from the lane (none if the store answered for another lane).
    fn from_head(head: Head) -> Vec<Self>;
}

impl Item for PendingJob {
    type Key = (String, String);
    const LANE: Lane = Lane::Jobs;

    fn key(&self) -> (String, String) {
        (self.job.account.clone(), self.job.recipient.clone())
    }

    fn conversation(&self) -> ConvKey {
        ConvKey::jobs(&self.job.account, &self.job.recipient)
    }

    fn from_head(head: Head) -> Vec<PendingJob> {
        match head {
            Head::Jobs(jobs) => jobs,
            Head::Events(_) => Vec::new(),
        }
    }
}

impl Item for PendingEvent {
    type Key = String;
    const LANE: Lane = Lane::Webhook;

    fn key(&self) -> String {
        self.openid.clone()
    }

    fn conversation(&self) -> ConvKey {
        ConvKey::webhook(&self.openid)
    }

    fn from_head(head: Head) -> Vec<PendingEvent> {
        match head {
            Head::Events(events) => events,
            Head::Jobs(_) => Vec::new(),
        }
    }
}

/// A dispatcher's conversations: in memory for a store one relay owns, pulled from a shared
/// one.
pub(crate) enum Queues<J: Item, W> {
    /// Today's in-memory queues, fed by the store's pending list and this relay's calls.
    Local(Arc<Conversations<J::Key, J, W>>),
    /// Kicked and pulled from the shared store.
    Shared(Arc<Pulled<J, W>>),
}

impl<J: Item, W: Deliver<J>> Queues<J, W> {
    /// The queues `store` calls for, worked by `worker`. On a shared store, the claim loop
    /// starts at once, woken also by each change of `wake` (the webhook lane: new events
    /// elsewhere in the fleet).
    pub(crate) fn start(
        store: &Arc<dyn Store>,
        worker: W,
        wake: Option<watch::Receiver<i64>>,
    ) -> Queues<J, W> {
        if !store.shared() {
            return Queues::Local(Conversations::new(worker));
        }
        let pulled = Arc::new(Pulled {
            store: Arc::clone(store),
            worker,
            running: Mutex::new(HashMap::new()),
            tasks: Tasks::new(),
            items: PhantomData,
        });
        let claimer = Arc::clone(&pulled);
        pulled.tasks.spawn(claimer.claim_loop(wake));
        Queues::Shared(pulled)
    }

    /// Hands over a stored item: queued behind its conversation's earlier items (local), or
    /// its conversation kicked (shared: the store has it already).
    pub(crate) fn enqueue(&self, item: J) {
        match self {
            Queues::Local(conversations) => conversations.enqueue(item.key(), item),
            Queues::Shared(pulled) => pulled.kick(item.conversation()),
        }
    }

    /// A receiver that turns true when [`shutdown`](Queues::shutdown) begins.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        match self {
            Queues::Local(conversations) => conversations.stopping(),
            Queues::Shared(pulled) => pulled.tasks.stopping(),
        }
    }

    /// Stops starting new deliveries (and claims) and waits up to `grace` for those in
    /// flight; `what` names them in the warning if some are still running then.
    pub(crate) async fn shutdown(&self, grace: Duration, what: &str) {
        match self {
            Queues::Local(conversations) => conversations.shutdown(grace, what).await,
            Queues::Shared(pulled) => pulled.tasks.shutdown(grace, what).await,
        }
    }
}

/// The conversations of one lane this relay works on a shared store.
pub(crate) struct Pulled<J, W> {
    store: Arc<dyn Store>,
    worker: W,
    /// The conversations with a running task, each with whether it was kicked again since the
    /// task last read the head.
    running: Mutex<HashMap<ConvKey, bool>>,
    tasks: Tasks,
    /// The lane's items, which the store hands out by head.
    items: PhantomData<fn() -> J>,
}

impl<J: Item, W: Deliver<J>> Pulled<J, W> {
    /// Makes sure a task works `key`: starts one, or tells the running one to read the head
    /// again before it lets the conversation go.
    pub(crate) fn kick(self: &Arc<Self>, key: ConvKey) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if let Some(again) = running.get_mut(&key) {
            *again = true;
            return;
        }
        running.insert(key.clone(), false);
        drop(running);
        let this = Arc::clone(self);
        self.tasks.spawn(async move {
            if !this.work_through(&key).await {
                this.forget(&key);
            }
        });
    }

    /// Claims the conversations nobody works, at once and then every
    /// [`Fleet::poll_every`](crate::store::Fleet::poll_every) or on `wake`, and kicks them,
    /// until the service stops.
    async fn claim_loop(self: Arc<Self>, mut wake: Option<watch::Receiver<i64>>) {
        let mut stopping = self.tasks.stopping();
        let every = self.store.poll_every();
        loop {
            if *stopping.borrow() {
                return;
            }
            match self.store.claim_idle(J::LANE, CLAIM_MAX).await {
                Ok(claimed) => {
                    for key in claimed {
                        self.kick(key);
                    }
                }
                Err(error) => tracing::warn!("cannot claim the conversations left idle: {error}"),
            }
            let woken = async {
                match wake.as_mut() {
                    Some(wake) => {
                        if wake.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = woken => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Reads `key`'s head and delivers it until it is empty and let go (`true`: the task is
    /// forgotten already, so that a new kick may start another), another relay holds it, the
    /// service stops, or the store fails (the claim loop then takes it up again).
    async fn work_through(&self, key: &ConvKey) -> bool {
        let stopping = self.tasks.stopping();
        loop {
            if *stopping.borrow() {
                return false;
            }
            self.mark_read(key);
            let (version, head) = match self.store.head(key, HEAD_LIMIT).await {
                Ok(Some(head)) => head,
                // Another live relay holds it, and will see what was stored.
                Ok(None) => return false,
                Err(error) => {
                    tracing::warn!("cannot read a conversation's queue: {error}");
                    return false;
                }
            };
            let items = J::from_head(head);
            if items.is_empty() {
                match self.store.release(key, version).await {
                    Ok(true) if self.done(key) => return true,
                    // Kicked, or stored into, since the read: read again.
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!("cannot let a conversation go: {error}");
                        return false;
                    }
                }
            }
            if !self.deliver(&items, &stopping).await {
                return false;
            }
        }
    }

    /// Delivers a head's `items` in batches of the worker's limit; `false` as soon as one
    /// delivery does not finish (stopping, the store failed, or the conversation was lost).
    async fn deliver(&self, items: &[J], stopping: &watch::Receiver<bool>) -> bool {
        let mut rest = items;
        while let Some(first) = rest.first() {
            let take = self.worker.batch_limit(first).clamp(1, rest.len());
            let (batch, after) = rest.split_at(take);
            let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
            self.worker.pending(count);
            let delivered = self.worker.deliver(batch, stopping.clone()).await;
            self.worker.pending(-count);
            if !delivered {
                return false;
            }
            rest = after;
        }
        true
    }

    /// Notes that the task is about to read `key`'s head, which covers every kick so far.
    fn mark_read(&self, key: &ConvKey) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(again) = running.get_mut(key) {
                *again = false;
            }
        }
    }

    /// After a release: `true` (and the task is forgotten, in the same critical section as
    /// the check, so that no kick falls in between) unless a kick came since the last read,
    /// which the released lease may not have seen yet.
    fn done(&self, key: &ConvKey) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return true;
        };
        if running.get(key) == Some(&true) {
            return false;
        }
        running.remove(key);
        true
    }

    fn forget(&self, key: &ConvKey) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(key);
        }
    }
}
