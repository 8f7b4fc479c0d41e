//! [`PgStore`]: the relay's storage traits over a PostgreSQL database.
//!
//! * **Writes** go through two write lanes ([`crate::lane`]), each one connection that commits
//!   what waited in one transaction: the *api* lane takes the calls that store work (inserts,
//!   resends, admissions), the *delivery* lane the calls of delivery (marking jobs `sending`,
//!   recording outcomes). Each lane takes its calls in call order.
//! * **Order between them.** A call on the api lane, and every read, first waits until the
//!   delivery lane has finished everything sent to it before the call was made, so that an
//!   outcome recorded without waiting is applied before anything requested afterwards through
//!   the store (the contract's "ordered without waiting"). An insert of new jobs does not wait:
//!   it reads nothing an outcome writes, and waiting put every acknowledgement behind the
//!   delivery lane's commits.
//! * **Reads** and the short writes that need no order (tokens, purges, settling) run on the
//!   pool, one statement or transaction each.
//! * **Start.** [`PgStore::open`] brings the schema up to date (or checks it), registers this
//!   relay in `kefu.relays`, ends its predecessors under the same `relay_name` that are gone
//!   (lapsed, or without a session left), and recovers the jobs they left `sending`:
//!   `ambiguous`, or settled by a report a callback made meanwhile. It then keeps the relay
//!   alive (`crate::liveness`) and listens to the fleet (`crate::listener`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use kefu_core::{BoxFuture, Reason, TokenStore};
use kefu_store::{Admission, ConvKey, JobState, PendingJob, Settled, Store, StoreResult};
use tokio::sync::{broadcast, watch};

use crate::config::{MigrateMode, PgConfig, RelayId};
use crate::connect::{connect, ping};
use crate::error::PgError;
use crate::lane::{Bulk, Lane, Repeatable, Work};
use crate::listener::{Leadership, listen};
use crate::liveness::{Background, Registration, heartbeat};
use crate::locks::Locks;
use crate::schema::{check_schema, migrate};
use crate::sql::{self, Conn};

/// How many notes of other relays' stored work wait for a slow reader before the oldest are
/// dropped (a dropped note delays a kept conversation's next read by the linger, no more).
const STORED_ELSEWHERE: usize = 1024;

/// The connections of the write lanes, besides the pool.
const LANES: usize = 2;

/// The store. Clones share the pool and the lanes; the lanes stop once the last clone is
/// dropped and what was sent to them is done.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The newest event id of the fleet, raised by this store's admissions and the listener.
    newest: watch::Sender<i64>,
    /// The job conversations other relays stored into, as the listener heard them.
    stored_elsewhere: broadcast::Sender<Vec<ConvKey>>,
    api: Lane,
    delivery: Lane,
    relay: RelayId,
    /// How long the relay's liveness, and so its leases, outlive its last heartbeat.
    ttl: Duration,
    /// How often the relay claims idle work, and the listener polls.
    poll: Duration,
    leadership: Arc<Leadership>,
    /// The heartbeat and the listener.
    background: Background,
}

impl PgStore {
    /// Connects to the database of `config` as a new relay named `config.relay_name`, brings the
    /// schema to the newest version (`migrate = "auto"`) or checks that it is (`"manual"`),
    /// recovers what this relay's previous runs left `sending`, and starts the heartbeat and the
    /// listener. The store is shared by the fleet, so it hands out no pending jobs: the relay's
    /// claim loop finds them ([`Fleet::claim_idle`](kefu_store::Fleet::claim_idle)); the list is
    /// always empty.
    ///
    /// Must be called inside a tokio runtime, which then runs the write lanes.
    ///
    /// Errors: [`PgError::Config`], [`PgError::Unavailable`], [`PgError::SchemaTooNew`],
    /// [`PgError::SchemaBehind`] and [`PgError::Database`], none naming the password.
    pub async fn open(config: &PgConfig) -> Result<(PgStore, Vec<PendingJob>), PgError> {
        config.validate()?;
        let relay = RelayId::generate(&config.relay_name);
        let pool = connect(config, &relay).await?;
        let registration = Registration {
            relay: relay.as_str().to_owned(),
            name: config.relay_name.clone(),
            ttl_ms: i64::try_from(config.lease_ttl_ms).unwrap_or(i64::MAX),
        };
        let newest = {
            let mut client = pool.get().await?;
            match config.migrate {
                MigrateMode::Auto => {
                    migrate(&mut client, relay.as_str()).await?;
                }
                MigrateMode::Manual => {
                    check_schema(&client).await?;
                }
            }
            start(&client, &registration).await?;
            crate::events::newest(&client).await?
        };
        let mut lanes = config.clone();
        lanes.pool_size = LANES;
        let lane_pool = connect(&lanes, &relay).await?;
        let id: Arc<str> = Arc::from(relay.as_str());
        let delivery = Lane::start("delivery", lane_pool.clone(), id.clone(), None);
        let api = Lane::start("api", lane_pool, id, Some(delivery.progress()));
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                newest: watch::channel(newest).0,
                stored_elsewhere: broadcast::channel(STORED_ELSEWHERE).0,
                api,
                delivery,
                relay,
                ttl: Duration::from_millis(config.lease_ttl_ms),
                poll: Duration::from_millis(config.poll_ms),
                leadership: Arc::default(),
                background: Background::default(),
            }),
        };
        // The heartbeat has a connection of its own: long polls or reads holding every pooled
        // connection must not let this relay's liveness lapse while it sends.
        let mut beats = config.clone();
        beats.pool_size = 1;
        let heartbeat_pool = connect(&beats, &store.inner.relay).await?;
        let inner = &store.inner;
        inner.background.hold(heartbeat(
            heartbeat_pool,
            registration,
            Duration::from_millis(config.heartbeat_ms),
        ));
        inner.background.hold(listen(
            config.clone(),
            inner.relay.clone(),
            inner.newest.clone(),
            inner.stored_elsewhere.clone(),
            Arc::clone(&inner.leadership),
        ));
        Ok((store, Vec::new()))
    }

    /// This relay's id in the database (`kefu.relays`, the `relay_id` of the jobs it sends).
    pub fn relay(&self) -> &RelayId {
        &self.inner.relay
    }

    /// Raises the newest event id for an event `admission` stored.
    pub(crate) fn announce(&self, admission: &Admission) {
        if let Admission::Stored(event) = admission {
            kefu_store::raise_newest(&self.inner.newest, event.id);
        }
    }

    /// The relay's liveness period and its polling period.
    pub(crate) fn periods(&self) -> (Duration, Duration) {
        (self.inner.ttl, self.inner.poll)
    }

    /// Whether, and how long, this relay leads.
    pub(crate) fn leadership(&self) -> &Leadership {
        &self.inner.leadership
    }

    /// Ends the heartbeat and the listener (the server then releases the leadership lock).
    pub(crate) fn end_background(&self) {
        self.inner.background.end();
        self.inner.leadership.set(false);
    }

    /// A pooled connection, without waiting for the lanes.
    pub(crate) async fn pooled(&self) -> Result<Object, PgError> {
        Ok(self.inner.pool.get().await?)
    }

    /// The job conversations other relays store into, as they commit.
    pub(crate) fn stored_elsewhere(&self) -> broadcast::Receiver<Vec<ConvKey>> {
        self.inner.stored_elsewhere.subscribe()
    }

    /// The newest event id this store knows of.
    pub(crate) fn newest(&self) -> watch::Receiver<i64> {
        self.inner.newest.subscribe()
    }

    /// A pooled connection, once the delivery lane has applied every outcome recorded before.
    pub(crate) async fn reader(&self) -> Result<Object, PgError> {
        let delivery = &self.inner.delivery;
        delivery.reached(delivery.position()).await;
        Ok(self.inner.pool.get().await?)
    }

    /// Queues `work`, which will lock `locks`, on the api lane now, after the outcomes recorded
    /// before.
    pub(crate) fn api<T: Send + 'static>(
        &self,
        locks: Locks,
        work: Work<T>,
    ) -> BoxFuture<'_, StoreResult<T>> {
        let after = self.inner.delivery.position();
        self.inner.api.call(after, locks, work)
    }

    /// Queues `work`, which will lock `locks`, on the api lane now, without waiting for the
    /// outcomes recorded before: for work that reads nothing an outcome writes.
    pub(crate) fn api_unordered<T: Send + 'static>(
        &self,
        locks: Locks,
        work: Work<T>,
    ) -> BoxFuture<'_, StoreResult<T>> {
        self.inner.api.call(0, locks, work)
    }

    /// Queues `item`, a command of bulk kind `B` that will lock `locks`, on the api lane now,
    /// without waiting for the outcomes recorded before (as [`PgStore::api_unordered`]).
    pub(crate) fn api_bulk<B: Bulk>(
        &self,
        locks: Locks,
        item: B::Item,
    ) -> BoxFuture<'_, StoreResult<B::Answer>> {
        self.inner.api.bulk::<B>(0, locks, item)
    }

    /// Queues `item`, a command of bulk kind `B`, on the delivery lane now.
    pub(crate) fn delivery_bulk<B: Bulk>(
        &self,
        item: B::Item,
    ) -> BoxFuture<'_, StoreResult<B::Answer>> {
        self.inner.delivery.bulk::<B>(0, Locks::default(), item)
    }

    /// Queues `item`, of bulk kind `B`, on the delivery lane without waiting for it.
    pub(crate) fn detach_bulk<B: Bulk<Answer = ()>>(
        &self,
        what: &'static str,
        item: B::Item,
    ) -> StoreResult<()> {
        self.inner.delivery.detach_bulk::<B>(0, what, item)
    }

    /// Queues `work` on the delivery lane without waiting for it.
    pub(crate) fn detach(&self, what: &'static str, work: Repeatable) -> StoreResult<()> {
        self.inner.delivery.detach(0, what, work)
    }
}

/// Registers the relay, then, in the same transaction, ends its predecessors under the same
/// name that are gone (their liveness lapsed, or none of their sessions is left: a process that
/// died has its sockets closed by the kernel, while a live twin misconfigured with the same name
/// keeps its own) and recovers the jobs they left `sending`.
async fn start(c: &Conn, registration: &Registration) -> Result<(), PgError> {
    let now = kefu_core::now_ms();
    c.batch_execute("BEGIN").await?;
    let recovered = async {
        registration.register(c).await?;
        let previous: Vec<String> = sql::query(
            c,
            "UPDATE kefu.relays r SET alive_until_ms = 0,
                 stopped_at_ms = coalesce(stopped_at_ms, kefu.now_ms())
             WHERE r.name = $1 AND r.relay_id <> $2
               AND (r.alive_until_ms < kefu.now_ms() OR NOT EXISTS (
                    SELECT 1 FROM pg_stat_activity a
                    WHERE a.application_name = 'kefu/' || r.relay_id))
             RETURNING r.relay_id",
            &[&registration.name, &registration.relay],
        )
        .await?
        .iter()
        .map(|row| sql::get(row, 0))
        .collect::<Result<_, _>>()?;
        settle_interrupted(c, now, &previous).await
    }
    .await;
    match recovered {
        Ok(_) => {
            c.batch_execute("COMMIT").await?;
            Ok(())
        }
        Err(error) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Settles the jobs that `relays` left `sending`: a failure a callback reported meanwhile makes
/// the job `failed`, a report that the vendor took it `accepted` for the report's window, and
/// anything else `ambiguous` (it may have reached the user, so it is never sent again).
/// Returns what it settled.
pub(crate) async fn settle_interrupted(
    c: &Conn,
    now: i64,
    relays: &[String],
) -> Result<Vec<Settled>, PgError> {
    if relays.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sql::query(
        c,
        "UPDATE kefu.jobs j SET
             state = CASE j.early_report WHEN 'failed' THEN 'failed' WHEN 'taken' THEN 'accepted'
                     ELSE 'ambiguous' END,
             reason = CASE j.early_report WHEN 'failed' THEN $2 WHEN 'taken' THEN NULL
                      ELSE j.reason END,
             error_code = CASE WHEN j.early_report IS NULL THEN j.error_code END,
             error_message = CASE j.early_report WHEN 'failed' THEN j.early_message
                             WHEN 'taken' THEN NULL ELSE $3 END,
             confirm_by_ms = CASE j.early_report WHEN 'taken'
                             THEN $1 + coalesce(j.early_window_ms, 0) ELSE j.confirm_by_ms END,
             early_report = NULL, early_message = NULL, early_window_ms = NULL,
             updated_at_ms = $1
         WHERE j.state = 'sending' AND j.relay_id = ANY($4)
         RETURNING j.id, j.account, j.state, j.reason",
        &[
            &now,
            &Reason::SendFailed.as_str(),
            &kefu_store::INTERRUPTED_MESSAGE,
            &relays,
        ],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = sql::get(row, 0)?;
            let state: String = sql::get(row, 2)?;
            let reason: Option<String> = sql::get(row, 3)?;
            Ok(Settled {
                id,
                account: sql::get(row, 1)?,
                state: JobState::parse(&state)
                    .ok_or_else(|| PgError::Data(format!("job {id} has unknown state {state}")))?,
                reason: reason.as_deref().and_then(Reason::parse),
            })
        })
        .collect()
}

impl Store for PgStore {
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { Ok(ping(&self.inner.pool).await?) })
    }

    fn tokens(self: Arc<Self>) -> Arc<dyn TokenStore> {
        self
    }

    /// Waits until both lanes have applied everything sent to them, outcomes recorded without
    /// waiting included: a relay that stops after this leaves nothing only in memory.
    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let (api, delivery) = (&self.inner.api, &self.inner.delivery);
            let (api_at, delivery_at) = (api.position(), delivery.position());
            delivery.reached(delivery_at).await;
            api.reached(api_at).await;
            Ok(())
        })
    }
}
