//! A test double of a store that several relays share, until the PostgreSQL store can be used
//! in the relay's tests: one SQLite store holds the data, and an in-memory [`Ground`] holds
//! what PostgreSQL's lease rows would (each conversation's holder and version, and its queue in
//! order), so that several [`RelayStore`]s, each one relay's view, keep the [`Fleet`] contract
//! between them. The tests can take a conversation from a relay, end a relay, and choose the
//! leader, as a lost lease, a crash and an election would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kefu_core::{BoxFuture, StoredToken, TokenStore, TokenStoreError};
use kefu_payload::KefuState;
use tokio::sync::watch;

use crate::store::sqlite::SqliteStore;
use crate::store::{
    Admission, Claimed, ConsoleStore, ConvKey, DeskCall, EventPage, EventRecord, EventStore, Fleet,
    Head, Idempotent, JobFilter, JobRecord, JobState, JobStatus, JobStore, Lane, NewDialogue,
    NewJob, NewWechat, NewYunzhenji, Outcome, PendingEvent, PendingJob, Purged, ResendError,
    Session, SessionStore, Settled, StateCount, Store, StoreResult, WebhookOutcome,
    YunzhenjiAdmission,
};

/// How often a relay of the double claims idle conversations, unless a test says otherwise:
/// short, so that tests wait little.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// One conversation's lease row.
#[derive(Default)]
struct Lease {
    /// The relay working it.
    holder: Option<usize>,
    /// Bumped by every item stored into it.
    version: i64,
}

/// An item of a conversation's queue, as the shared store orders it.
#[derive(Clone)]
enum Queued {
    Job { job: PendingJob, sending: bool },
    Event(PendingEvent),
}

impl Queued {
    fn id(&self) -> i64 {
        match self {
            Queued::Job { job, .. } => job.id(),
            Queued::Event(event) => event.id,
        }
    }
}

/// What the relays of the double share besides the SQLite data.
#[derive(Default)]
struct Shared {
    leases: HashMap<ConvKey, Lease>,
    queues: HashMap<ConvKey, Vec<Queued>>,
    /// The relays ended (crashed or stopped): their leases are free.
    gone: Vec<usize>,
    leader: usize,
    /// Jobs another relay stores into a conversation just as its holder releases it: the race
    /// the version check closes.
    racing: Vec<PendingJob>,
}

/// The shared ground of a simulated fleet: the data, the leases, the newest event id.
pub(crate) struct Ground {
    sqlite: SqliteStore,
    shared: Mutex<Shared>,
    newest: watch::Sender<i64>,
    poll_every: Duration,
    _dir: tempfile::TempDir,
}

impl Ground {
    /// A new, empty fleet; relay 0 leads.
    pub(crate) fn new() -> Arc<Ground> {
        Ground::polling_every(POLL_EVERY)
    }

    /// A new, empty fleet whose relays claim idle conversations every `poll_every`.
    pub(crate) fn polling_every(poll_every: Duration) -> Arc<Ground> {
        let dir = tempfile::tempdir().unwrap();
        let (sqlite, _) = SqliteStore::open(&dir.path().join("outbox.sqlite3")).unwrap();
        Arc::new(Ground {
            sqlite,
            shared: Mutex::new(Shared::default()),
            newest: watch::channel(0).0,
            poll_every,
            _dir: dir,
        })
    }

    /// Relay `relay`'s view of the store.
    pub(crate) fn relay(self: &Arc<Self>, relay: usize) -> Arc<RelayStore> {
        Arc::new(RelayStore {
            ground: Arc::clone(self),
            me: relay,
            settles: AtomicUsize::new(0),
            purges: AtomicUsize::new(0),
        })
    }

    /// Hands `key` to `relay`, as the lease passing to another relay does.
    pub(crate) fn give(&self, key: &ConvKey, relay: usize) {
        self.lock().leases.entry(key.clone()).or_default().holder = Some(relay);
    }

    /// Stores a job for `recipient` of `account` in the data now, and into its conversation's
    /// queue (bumping its version) only when its holder next releases it, as another relay's
    /// insert racing that release does.
    pub(crate) async fn race_the_release(&self, account: &str, recipient: &str) -> PendingJob {
        let job = NewJob {
            account: account.into(),
            recipient: recipient.into(),
            operation: "send".into(),
            payload: b"{}".to_vec(),
        };
        let Claimed::Done(mut jobs) = self.sqlite.insert(vec![job], None, None).await.unwrap()
        else {
            panic!("no key was given");
        };
        let job = jobs.remove(0);
        self.lock().racing.push(job.clone());
        job
    }

    /// Makes `relay` the leader.
    pub(crate) fn elect(&self, relay: usize) {
        self.lock().leader = relay;
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap()
    }

    /// Queues `item` at the end of `key`, in id order (ids follow the store's commit order).
    fn stored(&self, key: ConvKey, item: Queued) {
        let mut shared = self.lock();
        shared.leases.entry(key.clone()).or_default().version += 1;
        let queue = shared.queues.entry(key).or_default();
        let at = queue.partition_point(|queued| queued.id() < item.id());
        queue.insert(at, item);
    }

    /// Applies `change` to the queued item `id`, wherever it is; `None` from `change` removes it.
    fn update(&self, id: i64, change: impl FnOnce(Queued) -> Option<Queued>) {
        let mut shared = self.lock();
        for queue in shared.queues.values_mut() {
            if let Some(at) = queue.iter().position(|queued| queued.id() == id) {
                let item = queue.remove(at);
                if let Some(item) = change(item) {
                    queue.insert(at, item);
                }
                return;
            }
        }
    }
}

/// One relay's view of the shared ground, with what it did for the tests to check.
pub(crate) struct RelayStore {
    ground: Arc<Ground>,
    me: usize,
    /// How many times this relay settled confirmations.
    pub(crate) settles: AtomicUsize,
    /// How many times this relay purged events.
    pub(crate) purges: AtomicUsize,
}

impl RelayStore {
    fn holds(shared: &Shared, me: usize, key: &ConvKey) -> bool {
        shared.leases.get(key).and_then(|lease| lease.holder) == Some(me)
            && !shared.gone.contains(&me)
    }

    /// Whether `holder` may be taken over by `me`.
    fn free_for(shared: &Shared, me: usize, holder: Option<usize>) -> bool {
        holder.is_none_or(|holder| holder == me || shared.gone.contains(&holder))
    }

    fn stored_jobs(&self, jobs: &[PendingJob]) {
        for job in jobs {
            self.ground.stored(
                ConvKey::jobs(&job.job.account, &job.job.recipient),
                Queued::Job {
                    job: job.clone(),
                    sending: false,
                },
            );
        }
    }

    /// `admitted`, queued for the webhook once it resolves.
    fn admitting<'a>(
        &'a self,
        admitted: BoxFuture<'a, StoreResult<Admission>>,
    ) -> BoxFuture<'a, StoreResult<Admission>> {
        Box::pin(async move {
            let admission = admitted.await?;
            self.admitted(&admission);
            Ok(admission)
        })
    }

    fn admitted(&self, admission: &Admission) {
        if let Admission::Stored(event) = admission {
            self.ground.stored(
                ConvKey::webhook(&event.openid),
                Queued::Event(event.clone()),
            );
            crate::store::raise_newest(&self.ground.newest, event.id);
        }
    }
}

impl JobStore for RelayStore {
    fn insert(
        &self,
        jobs: Vec<NewJob>,
        key: Option<Idempotent>,
        desk_call: Option<DeskCall>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Vec<PendingJob>>>> {
        let inserted = self.ground.sqlite.insert(jobs, key, desk_call);
        Box::pin(async move {
            let claimed = inserted.await?;
            if let Claimed::Done(jobs) = &claimed {
                self.stored_jobs(jobs);
            }
            Ok(claimed)
        })
    }

    fn mark_sending(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move { Ok(self.mark_sending_many(&[id]).await?.len() == 1) })
    }

    /// Fenced: only the jobs of a conversation this live relay holds.
    fn mark_sending_many(&self, ids: &[i64]) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            let allowed = {
                let shared = self.ground.lock();
                ids.iter().all(|id| {
                    shared.queues.iter().any(|(key, queue)| {
                        Self::holds(&shared, self.me, key)
                            && queue.iter().any(|queued| queued.id() == *id)
                    })
                })
            };
            if !allowed {
                return Ok(Vec::new());
            }
            let marked = self.ground.sqlite.mark_sending_many(&ids).await?;
            for id in &marked {
                self.ground.update(*id, |queued| match queued {
                    Queued::Job { job, .. } => Some(Queued::Job { job, sending: true }),
                    event => Some(event),
                });
            }
            Ok(marked)
        })
    }

    fn record(&self, id: i64, outcome: Outcome) -> StoreResult<()> {
        let retry = match &outcome {
            Outcome::Retry { not_before_ms, .. } => Some(*not_before_ms),
            _ => None,
        };
        self.ground.sqlite.record(id, outcome)?;
        self.ground.update(id, |queued| match (queued, retry) {
            (Queued::Job { mut job, .. }, Some(not_before_ms)) => {
                job.attempts += 1;
                job.not_before_ms = not_before_ms;
                Some(Queued::Job {
                    job,
                    sending: false,
                })
            }
            _ => None,
        });
        Ok(())
    }

    fn get(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<JobStatus>>> {
        self.ground.sqlite.get(id)
    }

    fn resend(
        &self,
        id: i64,
        key: Option<Idempotent>,
        operator: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Result<PendingJob, ResendError>>>> {
        let resent = self.ground.sqlite.resend(id, key, operator);
        Box::pin(async move {
            let claimed = resent.await?;
            if let Claimed::Done(Ok(job)) = &claimed {
                self.stored_jobs(std::slice::from_ref(job));
            }
            Ok(claimed)
        })
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(JobState, u64)>>> {
        self.ground.sqlite.depth()
    }

    fn purge_keys(&self) -> BoxFuture<'_, StoreResult<usize>> {
        self.ground.sqlite.purge_keys()
    }

    fn settle_confirmations(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.ground.sqlite.settle_confirmations(now_ms)
    }
}

impl EventStore for RelayStore {
    /// A shared store hands out no pending list: the claim loop finds the work.
    fn pending_events(&self) -> BoxFuture<'_, StoreResult<(Vec<PendingEvent>, i64)>> {
        let newest = *self.ground.newest.borrow();
        Box::pin(async move { Ok((Vec::new(), newest)) })
    }

    fn admit_dialogue(&self, new: NewDialogue) -> BoxFuture<'_, StoreResult<Admission>> {
        self.admitting(self.ground.sqlite.admit_dialogue(new))
    }

    fn admit_wechat(&self, new: NewWechat) -> BoxFuture<'_, StoreResult<Admission>> {
        self.admitting(self.ground.sqlite.admit_wechat(new))
    }

    fn admit_yunzhenji(&self, new: NewYunzhenji) -> BoxFuture<'_, StoreResult<YunzhenjiAdmission>> {
        let admitted = self.ground.sqlite.admit_yunzhenji(new);
        Box::pin(async move {
            let admitted = admitted.await?;
            self.admitted(&admitted.admission);
            Ok(admitted)
        })
    }

    fn remember_url_verification(
        &self,
        key: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.ground
            .sqlite
            .remember_url_verification(key, expires_ms)
    }

    fn events_after(&self, after: i64, limit: u32) -> BoxFuture<'_, StoreResult<EventPage>> {
        self.ground.sqlite.events_after(after, limit)
    }

    fn record_webhook(&self, id: i64, outcome: WebhookOutcome) -> StoreResult<()> {
        let retry = match &outcome {
            WebhookOutcome::Retry { not_before_ms, .. } => Some(*not_before_ms),
            _ => None,
        };
        self.ground.sqlite.record_webhook(id, outcome)?;
        self.ground.update(id, |queued| match (queued, retry) {
            (Queued::Event(mut event), Some(not_before_ms)) => {
                event.attempts += 1;
                event.not_before_ms = not_before_ms;
                Some(Queued::Event(event))
            }
            _ => None,
        });
        Ok(())
    }

    fn purge_events(&self, retention_ms: i64) -> BoxFuture<'_, StoreResult<Purged>> {
        self.purges.fetch_add(1, Ordering::SeqCst);
        self.ground.sqlite.purge_events(retention_ms)
    }
}

impl SessionStore for RelayStore {
    fn session<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        self.ground.sqlite.session(account, openid)
    }

    fn sessions<'a>(
        &'a self,
        account: &'a str,
        state: Option<KefuState>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>> {
        self.ground.sqlite.sessions(account, state, limit)
    }
}

/// The console reads and marks the shared data: no lease is involved.
impl ConsoleStore for RelayStore {
    fn state_counts(&self) -> BoxFuture<'_, StoreResult<Vec<StateCount>>> {
        self.ground.sqlite.state_counts()
    }

    fn jobs(&self, filter: JobFilter) -> BoxFuture<'_, StoreResult<Vec<JobRecord>>> {
        self.ground.sqlite.jobs(filter)
    }

    fn user_events<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
        before_id: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EventRecord>>> {
        self.ground
            .sqlite
            .user_events(account, openid, before_id, limit)
    }

    fn webhook_backlog(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.ground.sqlite.webhook_backlog()
    }

    fn resolve(&self, ids: Vec<i64>, operator: String) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        self.ground.sqlite.resolve(ids, operator)
    }
}

impl TokenStore for RelayStore {
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        self.ground.sqlite.load(appid)
    }

    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        self.ground.sqlite.save(appid, token)
    }

    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        self.ground.sqlite.invalidate(appid, failed)
    }
}

impl Fleet for RelayStore {
    fn shared(&self) -> bool {
        true
    }

    fn head(&self, key: &ConvKey, limit: usize) -> BoxFuture<'_, StoreResult<Option<(i64, Head)>>> {
        let head = {
            let mut shared = self.ground.lock();
            let holder = shared.leases.get(key).and_then(|lease| lease.holder);
            if shared.gone.contains(&self.me) || !Self::free_for(&shared, self.me, holder) {
                None
            } else {
                let lease = shared.leases.entry(key.clone()).or_default();
                lease.holder = Some(self.me);
                let version = lease.version;
                let items = shared.queues.get(key).cloned().unwrap_or_default();
                let mut jobs = Vec::new();
                let mut events = Vec::new();
                for item in items.into_iter().take(limit) {
                    match item {
                        Queued::Job {
                            job,
                            sending: false,
                        } => jobs.push(job),
                        Queued::Job { .. } => {}
                        Queued::Event(event) => events.push(event),
                    }
                }
                Some(match key.lane {
                    Lane::Jobs => (version, Head::Jobs(jobs)),
                    Lane::Webhook => (version, Head::Events(events)),
                })
            }
        };
        Box::pin(async move { Ok(head) })
    }

    fn holds(&self, key: &ConvKey) -> BoxFuture<'_, StoreResult<bool>> {
        let holds = {
            let shared = self.ground.lock();
            !shared.gone.contains(&self.me)
                && shared.leases.get(key).and_then(|lease| lease.holder) == Some(self.me)
        };
        Box::pin(async move { Ok(holds) })
    }

    fn release(&self, key: &ConvKey, version: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let racing = std::mem::take(&mut self.ground.lock().racing);
        self.stored_jobs(&racing);
        let released = {
            let mut shared = self.ground.lock();
            match shared.leases.get_mut(key) {
                Some(lease) if lease.holder == Some(self.me) && lease.version == version => {
                    lease.holder = None;
                    true
                }
                _ => false,
            }
        };
        Box::pin(async move { Ok(released) })
    }

    fn claim_idle(&self, lane: Lane, max: usize) -> BoxFuture<'_, StoreResult<Vec<ConvKey>>> {
        let claimed = {
            let mut shared = self.ground.lock();
            let idle: Vec<ConvKey> = shared
                .queues
                .iter()
                .filter(|(key, queue)| key.lane == lane && !queue.is_empty())
                .map(|(key, _)| key.clone())
                .filter(|key| {
                    let holder = shared.leases.get(key).and_then(|lease| lease.holder);
                    Self::free_for(&shared, self.me, holder)
                })
                .take(max)
                .collect();
            if shared.gone.contains(&self.me) {
                Vec::new()
            } else {
                for key in &idle {
                    shared.leases.entry(key.clone()).or_default().holder = Some(self.me);
                }
                idle
            }
        };
        Box::pin(async move { Ok(claimed) })
    }

    fn poll_every(&self) -> Duration {
        self.ground.poll_every
    }

    fn is_leader(&self) -> bool {
        self.ground.lock().leader == self.me
    }

    /// The double's tests end relays only between sends: nothing is left `sending`.
    fn sweep_gone(&self) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn newest_event(&self) -> watch::Receiver<i64> {
        self.ground.newest.subscribe()
    }

    fn stop(&self) -> BoxFuture<'_, StoreResult<()>> {
        let mut shared = self.ground.lock();
        for lease in shared.leases.values_mut() {
            if lease.holder == Some(self.me) {
                lease.holder = None;
            }
        }
        shared.gone.push(self.me);
        drop(shared);
        Box::pin(async { Ok(()) })
    }
}

impl Store for RelayStore {
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.ground.sqlite.ping()
    }

    fn tokens(self: Arc<Self>) -> Arc<dyn TokenStore> {
        self
    }

    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }
}
