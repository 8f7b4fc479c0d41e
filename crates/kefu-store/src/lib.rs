//! kefu-store: where kefu-connector's relay keeps what it must not lose, behind traits that
//! every storage backend implements: jobs ([`JobStore`]), inbound events and their webhook
//! deliveries ([`EventStore`]), sessions ([`SessionStore`]) and access tokens
//! ([`kefu_core::TokenStore`]). [`Store`] is all of them at once, as the relay holds it.
//!
//! The crate also holds what a backend runs inside its transactions, so that every backend runs
//! the same code: the records ([`NewJob`], [`PendingEvent`], …), each user's conversation state
//! ([`session`]), the event JSON the desk receives ([`event`]), the reading of a standard WeChat
//! callback's plaintext ([`message`]) and the data of an `Idempotency-Key` claim
//! ([`idempotency`]). The backends live in their own crates (`kefu-store-sqlite`, embedded;
//! `kefu-store-postgres`, for several relays sharing one database), and the relay depends on
//! them, never the other way round.
//!
//! With the `conformance` feature, the `conformance` module holds the checks every backend
//! must pass, written against the traits alone, and `conformance_suite!` turns them into a
//! backend's tests.
//!
//! # The contract every backend keeps
//!
//! * **Durable when resolved.** A future that resolves `Ok` has made its writes durable: they
//!   survive a crash of the process and of the machine (SQLite: committed with
//!   `synchronous=FULL`; PostgreSQL: committed with `synchronous_commit=on`). The relay
//!   acknowledges the desk or WeChat only after that, never before.
//! * **Ordered without waiting.** [`JobStore::record`] and [`EventStore::record_webhook`] return
//!   before their write is durable, but a backend applies writes in the order it was given them:
//!   a recorded outcome is durable no later than anything requested afterwards through the same
//!   store that could depend on it (marking the recipient's next job `sending`, a read of a
//!   job or an event, a resend, an admission; a new job's insert and a session's read depend
//!   on no outcome, and a backend may let them pass). A lost outcome leaves the job `sending`,
//!   which the next start reports `ambiguous`: never resent, never lost.
//! * **Atomic.** Each call is one transaction. In particular [`JobStore::insert`] stores all its
//!   jobs, claims the `Idempotency-Key` and records the desk call on the session together or not
//!   at all; [`JobStore::resend`] queues the job, claims its key and marks the operator who
//!   asked together; an admission ([`EventStore::admit_dialogue`], [`EventStore::admit_wechat`])
//!   checks and records the redelivery and replay keys, stores the event and moves the session
//!   together.
//! * **A claim is exclusive.** Of two calls with one `Idempotency-Key`, running concurrently on
//!   any number of relays sharing the store, exactly one does its work; the other gets the
//!   first's saved answer ([`Claimed::Earlier`]). A key is saved only with work done, and only
//!   until its retention ends. A backend serialises claims (SQLite: one writer; PostgreSQL: the
//!   key's primary key with `INSERT … ON CONFLICT`, in the work's transaction).
//! * **Order.** Jobs of one (account, recipient) come back from recovery in the order they were
//!   stored (a resend moves a job to the end); event ids increase and are never reused, also
//!   across purges.
//! * **Event ids become visible in id order.** Once a reader has seen an event, every event
//!   with a lower id is visible too (or purged): [`EventStore::events_after`] with the last id
//!   a reader saw never skips one that commits later. (SQLite: one writer gives ids in commit
//!   order; a shared backend must take the id in the order its transactions commit.)
//! * **Calls are taken in call order.** A backend receives [`JobStore::insert`] and
//!   [`JobStore::resend`] when they are called, not when their future is first polled, and
//!   orders their jobs in that order: the relay takes a ticket in the same critical section and
//!   hands the jobs to delivery in ticket order, so that two requests for one user are delivered
//!   in the order they were stored even when their commits are reported the other way round.
//! * **Sending is durable before the request leaves.** [`JobStore::mark_sending`] and
//!   [`JobStore::mark_sending_many`] resolve only once the jobs are durably `sending` (a batch:
//!   all of them, in one transaction). A backend's recovery turns the jobs still `sending` of a
//!   relay that is gone into `ambiguous` (they may have reached the user) and never sends them
//!   again. (SQLite: one relay owns the file, so a start recovers every job `sending`; a shared
//!   backend only those of a relay that stopped or whose liveness expired, never those of a
//!   live one.)
//! * **Confirmations are stored, not timed in memory.** A provider with a
//!   [confirmation window](kefu_core::Provider::confirm_window) leaves a taken job `accepted`,
//!   and an ambiguous one `ambiguous`, with `confirm_by_ms` = the end of the window; every other
//!   outcome, and a resend, clears `confirm_by_ms`. [`JobStore::settle_confirmations`] moves
//!   every job whose window ended (also while the relay was stopped) in one transaction:
//!   `accepted` → `delivered`, `ambiguous` with a window → `failed` with reason `unconfirmed`;
//!   a job is settled once (a second call finds it no longer waiting).
//!   [`EventStore::admit_yunzhenji`] applies a callback's report in the transaction that
//!   stores its event, only to a job of the callback's account, and only once (a redelivery is
//!   dropped before the report is applied): a report that the vendor took the job turns an
//!   `ambiguous` one `accepted` until now + the window (other states: no change); a failure
//!   report turns an `accepted`, `ambiguous` or `delivered` one `failed` with reason
//!   `send_failed` and the vendor's text, since the vendor's report is the truth (other states,
//!   such as an already `failed` or a queued resend: no change). A vendor may push before it
//!   answers: a report on a job still `sending` is kept with the job (a failure outweighs an
//!   echo) and applied, by [`Outcome::after_report`], when the attempt's outcome is recorded,
//!   or by the recovery (failure: `failed`; echo: `accepted` for the report's
//!   window) instead of turning the job `ambiguous`; any recorded outcome spends it.
//!   `accepted` is not resendable.
//! * **One relay at a time serves an (account, recipient).** A backend that several relays
//!   share hands each conversation, with its queued jobs and webhook events, to one live relay
//!   at a time (PostgreSQL: a lease row per conversation), so that order per user holds across
//!   relays; the SQLite backend refuses a second relay on the same file. What a shared backend
//!   guarantees beyond that (leases, the fence on `sending`, leadership, wake-ups) is stated
//!   on [`Fleet`].
//! * **Reads** ([`JobStore::get`], [`JobStore::depth`], [`SessionStore::session`],
//!   [`SessionStore::sessions`]) see at least every write whose future has resolved; they may
//!   see writes not yet durable, which nothing acknowledges on the strength of.
//! * **Errors are [`StoreError`]**, whose text names no secret and no message content.

#![forbid(unsafe_code)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod console;
pub mod event;
mod events;
mod fleet;
pub mod idempotency;
mod jobs;
pub mod message;
pub mod session;

use std::sync::Arc;

use kefu_core::{BoxFuture, TokenStore};
use kefu_payload::KefuState;

pub use console::{
    ConsoleStore, EventRecord, JobFilter, JobRecord, OperatorAction, OperatorMark, StateCount,
};
pub use events::{
    Admission, NewDialogue, NewWechat, NewYunzhenji, PendingEvent, Purged, ReportKind, SendReport,
    WebhookOutcome, YunzhenjiAdmission,
};
pub use fleet::{ConvKey, Fleet, Head, Lane, raise_newest};
pub use idempotency::{Claim, Claimed, Earlier, Saved};
pub use jobs::{
    DIALOGUE_ACCOUNT, DeskCall, INTERRUPTED_MESSAGE, Idempotent, JobState, JobStatus, NewJob,
    Outcome, OutcomeColumns, PendingJob, ResendError, Settled,
};
pub use session::Session;

/// The store failed: the disk, the file, the database or the connection to it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("outbox storage failed: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// A failure described by the code that found it, such as a row that cannot be read back.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError(message.into())
    }
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The jobs the desk handed over, from storing to their final state.
pub trait JobStore: Send + Sync + 'static {
    /// Stores `jobs` in order, records `desk_call` on its session, and claims `key`, all in one
    /// transaction, unless `key` is already in use: then nothing is written and the earlier use
    /// is returned. Resolves once the jobs are durable.
    fn insert(
        &self,
        jobs: Vec<NewJob>,
        key: Option<Idempotent>,
        desk_call: Option<DeskCall>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Vec<PendingJob>>>>;

    /// Durably marks a job `sending` and counts the attempt, before its request leaves; `false`
    /// if a shared store did not mark it (see [`JobStore::mark_sending_many`]).
    fn mark_sending(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>>;

    /// Durably marks the jobs of one batch `sending` and counts an attempt for each, in one
    /// transaction, before the batch's request leaves, and returns the ids it marked: all of
    /// them, except on a shared store when this relay no longer holds their conversation
    /// ([`Fleet`]'s fence), which marks none. Fewer ids than asked: send nothing.
    fn mark_sending_many(&self, ids: &[i64]) -> BoxFuture<'_, StoreResult<Vec<i64>>>;

    /// Records the outcome of an attempt, without waiting for it to be durable (see the
    /// ordering rule of the [module docs](self)). Fails only if the store is gone.
    fn record(&self, id: i64, outcome: Outcome) -> StoreResult<()>;

    /// The status of a job, or `None` if there is no such job.
    fn get(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<JobStatus>>>;

    /// Puts a failed or ambiguous job back in the queue, at the end of its recipient's
    /// conversation, and claims `key` with it (a refused resend leaves the key free). In the
    /// same transaction it marks the job resent by `operator` when an operator asked (the
    /// console, [`ConsoleStore`]), and clears any mark when the desk's API did (`None`).
    fn resend(
        &self,
        id: i64,
        key: Option<Idempotent>,
        operator: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Result<PendingJob, ResendError>>>>;

    /// The number of jobs in each state.
    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(JobState, u64)>>>;

    /// Removes the `Idempotency-Key`s whose retention has ended; returns how many.
    fn purge_keys(&self) -> BoxFuture<'_, StoreResult<usize>>;

    /// Settles every confirmation whose window ended at or before `now_ms`: accepted →
    /// delivered, ambiguous → failed (unconfirmed). Returns what changed.
    fn settle_confirmations(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<Settled>>>;
}

/// One page of the event feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// (id, event JSON), oldest first.
    pub events: Vec<(i64, String)>,
    /// The highest event id ever given (0 before the first), also after purges.
    pub newest: i64,
}

/// The inbound callbacks, as events for the desk, and their webhook deliveries.
pub trait EventStore: Send + Sync + 'static {
    /// The events still to push to the webhook, in order, and the highest event id.
    fn pending_events(&self) -> BoxFuture<'_, StoreResult<(Vec<PendingEvent>, i64)>>;

    /// Admits a Dialogue callback: drops a redelivery, else stores the event and moves the
    /// user's session.
    fn admit_dialogue(&self, new: NewDialogue) -> BoxFuture<'_, StoreResult<Admission>>;

    /// Admits a WeChat callback: refuses a replay, drops a redelivery, else stores the event and
    /// notes on the user's session that the user wrote.
    fn admit_wechat(&self, new: NewWechat) -> BoxFuture<'_, StoreResult<Admission>>;

    /// Admits a yunzhenji callback in one transaction: drops a redelivery (its `dedup_key`),
    /// else stores the event for the desk and applies its report to the job it names (see the
    /// confirmation rules in the [module docs](self)).
    fn admit_yunzhenji(&self, new: NewYunzhenji) -> BoxFuture<'_, StoreResult<YunzhenjiAdmission>>;

    /// Remembers the plain signature of a URL verification that passed until `expires_ms`, so
    /// that a push reusing it is refused as a replay.
    fn remember_url_verification(
        &self,
        key: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Events with an id above `after`, in order, at most `limit`, with the newest id.
    fn events_after(&self, after: i64, limit: u32) -> BoxFuture<'_, StoreResult<EventPage>>;

    /// Records a webhook attempt's outcome without waiting for it to be durable (ordered like
    /// [`JobStore::record`]). Fails only if the store is gone.
    fn record_webhook(&self, id: i64, outcome: WebhookOutcome) -> StoreResult<()>;

    /// Removes expired redelivery and replay keys, and the events received more than
    /// `retention_ms` ago that the webhook no longer needs.
    fn purge_events(&self, retention_ms: i64) -> BoxFuture<'_, StoreResult<Purged>>;
}

/// Each (account, user)'s conversation state.
pub trait SessionStore: Send + Sync + 'static {
    /// One user's session on `account`, if the user was ever seen there.
    fn session<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Session>>>;

    /// Sessions of `account` in `state` (all when `None`), longest in their state first, at most
    /// `limit`.
    fn sessions<'a>(
        &'a self,
        account: &'a str,
        state: Option<KefuState>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>>;
}

/// Everything the relay keeps, as one backend provides it, and how the relays sharing it (if
/// any) divide the work ([`Fleet`]).
pub trait Store: JobStore + EventStore + SessionStore + ConsoleStore + TokenStore + Fleet {
    /// Checks that the store answers and is readable.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// The same store as a [`TokenStore`] alone, for a provider's token cache (a stand-in for
    /// trait upcasting, which the crate's minimum Rust does not have).
    fn tokens(self: Arc<Self>) -> Arc<dyn TokenStore>;

    /// Makes the store's own files self-contained before the relay stops (SQLite: moves the
    /// write-ahead log into the database file). A backend without such files does nothing.
    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>>;
}
