//! What a store shared by several relays adds to the traits of one relay: which relay works
//! which conversation (a lease per conversation), which relay runs the periodic work (the
//! leader), what becomes of the sends of a relay that is gone, and the fleet's newest event id.
//!
//! A store that one relay owns alone (SQLite) implements it trivially: not [`shared`]
//! (the relay keeps its queues in memory, fed by the pending lists of the store's open and by
//! its own calls), always the leader, nothing to sweep.
//!
//! [`shared`]: Fleet::shared

use std::time::Duration;

use kefu_core::BoxFuture;
use tokio::sync::{broadcast, watch};

use crate::{PendingEvent, PendingJob, Settled, StoreResult};

/// Raises `newest` to `id` if `id` is higher, waking its receivers only then: the one way a
/// backend (and the relay) moves a newest-event watch such as [`Fleet::newest_event`]'s, which
/// never goes back.
pub fn raise_newest(newest: &watch::Sender<i64>, id: i64) {
    newest.send_if_modified(|newest| {
        let newer = id > *newest;
        if newer {
            *newest = id;
        }
        newer
    });
}

/// The two kinds of conversation a relay works through in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The desk's jobs of one (account, recipient), delivered to the platform.
    Jobs,
    /// The inbound events of one user, pushed to the desk's webhook.
    Webhook,
}

/// One conversation: the unit of order, and of a lease in a shared store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvKey {
    /// Which kind of conversation.
    pub lane: Lane,
    /// The account of the jobs; empty on the webhook lane (a user's events are pushed in order
    /// whatever account they came through).
    pub account: String,
    /// The recipient of the jobs, or the user (openid) of the events.
    pub key: String,
}

impl ConvKey {
    /// The conversation of the jobs of `account` for `recipient`.
    pub fn jobs(account: impl Into<String>, recipient: impl Into<String>) -> ConvKey {
        ConvKey {
            lane: Lane::Jobs,
            account: account.into(),
            key: recipient.into(),
        }
    }

    /// The conversation of the webhook pushes of `openid`'s events.
    pub fn webhook(openid: impl Into<String>) -> ConvKey {
        ConvKey {
            lane: Lane::Webhook,
            account: String::new(),
            key: openid.into(),
        }
    }
}

/// The front of one conversation, in order: queued jobs on [`Lane::Jobs`], events still to push
/// on [`Lane::Webhook`]. Empty when nothing waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Queued jobs, oldest (lowest `seq`) first.
    Jobs(Vec<PendingJob>),
    /// Events still to push, lowest id first.
    Events(Vec<PendingEvent>),
}

/// What a store shared by several relays adds. A store that one relay owns alone (SQLite)
/// implements it trivially: not [`shared`](Fleet::shared) (the relay keeps its queues in
/// memory, fed by the pending lists of the store's open and by its own calls), always the
/// leader, nothing to sweep.
///
/// # What a shared backend guarantees
///
/// * **One live holder per conversation.** [`head`](Fleet::head) hands a conversation to at
///   most one live relay at a time; another relay's `head` answers `None` until the holder
///   releases it, stops, or its liveness expires (judged on one clock, the database's).
/// * **No lost wake-up.** Every insert into a conversation (a job, a resend, an event to push)
///   is ordered after the lease: it bumps the conversation's version, so a
///   [`release`](Fleet::release) at an older version is refused (`false`) and the holder reads
///   the head again. A conversation released or left with work is found by
///   [`claim_idle`](Fleet::claim_idle).
/// * **Order.** The head lists a conversation's items in the order they were stored (a resend at
///   the end), and never an item before an earlier one has committed.
/// * **Fenced sending.** [`JobStore::mark_sending_many`](crate::JobStore::mark_sending_many)
///   marks a job only while this relay holds its conversation and is live, and returns the ids
///   it marked; the jobs of one call share a conversation, so it marks all of them or none. A
///   relay given fewer ids than it asked has lost the conversation and sends nothing. It marks
///   only the front of the conversation: while an earlier job is queued or still being sent
///   (its outcome not applied yet, or its relay gone and not swept yet), it marks nothing.
/// * **Only a gone relay's sends become ambiguous**, through [`sweep_gone`](Fleet::sweep_gone),
///   never those of a live one.
/// * **Ids visible in id order** (see the crate's contract), so that a long poll woken by
///   [`newest_event`](Fleet::newest_event) reads every event up to the id it was woken for.
pub trait Fleet: Send + Sync + 'static {
    /// `false`: one relay owns the store, and keeps its queues in memory, fed by the pending
    /// lists of the store's open and by its own calls. `true`: the relay kicks a conversation
    /// when it stores into it and pulls its items from the store through [`head`](Fleet::head).
    fn shared(&self) -> bool;

    /// Takes `key` for this relay (or keeps it) and reads up to `limit` of its items in order,
    /// with the conversation's version; `None` when there is nothing for this relay to do:
    /// another live relay holds it, or nothing was stored into it since it was last let go (a
    /// shared store need not remember a conversation without work). A store that is not shared
    /// answers with an empty head.
    fn head(&self, key: &ConvKey, limit: usize) -> BoxFuture<'_, StoreResult<Option<(i64, Head)>>>;

    /// Whether this relay holds `key` and is alive now, on the store's clock: checked before
    /// each attempt of work that nothing else fences, such as a webhook push, so that a relay
    /// that lost a user's conversation (it stalled past its liveness, and another took over)
    /// stops pushing that user's events. A store that is not shared: always.
    fn holds(&self, key: &ConvKey) -> BoxFuture<'_, StoreResult<bool>>;

    /// Lets `key` go if nothing was stored into it since `version` (then `true`); `false`: new
    /// work arrived, read the head again (the conversation stays held).
    fn release(&self, key: &ConvKey, version: i64) -> BoxFuture<'_, StoreResult<bool>>;

    /// Takes up to `max` conversations of `lane` that have work and that no live relay holds,
    /// or that this relay holds (a relay calls it when it has no task for them, such as after
    /// a lost database connection), and returns them for the relay to kick.
    fn claim_idle(&self, lane: Lane, max: usize) -> BoxFuture<'_, StoreResult<Vec<ConvKey>>>;

    /// How often the relay calls [`claim_idle`](Fleet::claim_idle), and the leader runs
    /// [`sweep_gone`](Fleet::sweep_gone): the store's setting (PostgreSQL: `store.poll_ms`),
    /// since it knows how quickly it notices a gone relay.
    fn poll_every(&self) -> Duration;

    /// Whether this relay runs the periodic work now (purges, settling confirmations,
    /// sweeping): one relay of the fleet at a time, give or take a moment, since every such
    /// task is idempotent. A store that is not shared: always.
    fn is_leader(&self) -> bool;

    /// Turns the jobs that relays now gone left `sending` into `ambiguous` (or settles them by
    /// the early report they carry, as the recovery of the crate's contract does), and returns
    /// what changed. A store that is not shared: nothing (its open recovers).
    fn sweep_gone(&self) -> BoxFuture<'_, StoreResult<Vec<Settled>>>;

    /// The newest event id stored through any relay of the fleet, raised as events are stored
    /// (PostgreSQL: a notification, and a poll of the counter behind it), for the long polls
    /// of `GET /v1/events`. A receiver rather than a callback: a long poll waits on it with
    /// `wait_for`, and a lagging reader only ever needs the latest value.
    fn newest_event(&self) -> watch::Receiver<i64>;

    /// The job conversations another relay of the fleet stored into, as it tells them
    /// (PostgreSQL: a notification on each commit), so that this relay, if it keeps one of
    /// them while it waits for more, reads its head at once rather than when it lets it go.
    /// An empty list: some conversations, too many to name. A store that is not shared: none.
    fn stored_elsewhere(&self) -> Option<broadcast::Receiver<Vec<ConvKey>>> {
        None
    }

    /// Lets every conversation this relay holds go and marks the relay stopped, so that the
    /// others take its work at once; called once the relay's deliveries have stopped. The
    /// outcomes recorded before are applied first (a stopped relay's sends still `sending` are
    /// a sweep's). A store that is not shared: nothing.
    fn stop(&self) -> BoxFuture<'_, StoreResult<()>>;
}
