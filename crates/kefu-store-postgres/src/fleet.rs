//! The PostgreSQL store's side of [`Fleet`] (design §3.2–§3.4): the store is shared, so the
//! relay pulls each conversation's head while it holds the conversation's lease row
//! (`kefu.leases`); a lease is free once its holder let it go or its holder's liveness
//! (`kefu.relays`, judged on the database's clock) lapsed. Every statement also checks that this
//! relay is alive, so that a relay that stalled past its TTL takes nothing until its heartbeat
//! brings it back.

use std::sync::LazyLock;
use std::time::Duration;

use kefu_core::BoxFuture;
use kefu_store::{Admission, ConvKey, Fleet, Head, Lane, Settled, Store as _, StoreResult};
use tokio::sync::{broadcast, watch};
use tokio_postgres::Row;

use crate::error::PgError;
use crate::locks::{JOB_LANE, WEBHOOK_LANE};
use crate::sql::{self, Conn};
use crate::store::{PgStore, settle_interrupted};
use crate::{events, jobs};

/// Whether the lease `l` may be taken by relay `$1`: free, `$1`'s, or its holder's liveness
/// lapsed; and `$1` itself alive.
const TAKEABLE: &str = "
(l.relay_id IS NULL OR l.relay_id = $1 OR NOT EXISTS (
    SELECT 1 FROM kefu.relays r WHERE r.relay_id = l.relay_id AND r.alive_until_ms > kefu.now_ms()))
AND EXISTS (SELECT 1 FROM kefu.relays me WHERE me.relay_id = $1
            AND me.alive_until_ms > kefu.now_ms())";

/// The lease (`$1` relay, `$2` lane, `$3` account, `$4` key) as `c`, for the head's
/// statement: its version, and whether this statement took it. `take`: takes it if it is free
/// (or its holder gone); otherwise only a lease this relay holds already is read. A relay
/// working through a conversation reads its head once per delivery, and holds it: that
/// statement writes nothing (it commits without waiting for a flush) and plans no `UPDATE`
/// (whose setup cost more than the read).
fn lease(take: bool) -> String {
    let held = "held AS (SELECT l.version FROM kefu.leases l
                       WHERE l.lane = $2 AND l.account = $3 AND l.key = $4 AND l.relay_id = $1
                         AND EXISTS (SELECT 1 FROM kefu.relays me WHERE me.relay_id = $1
                                     AND me.alive_until_ms > kefu.now_ms()))";
    if !take {
        return format!("WITH {held}, c AS (SELECT version, false AS taken FROM held)");
    }
    format!(
        "WITH {held},
              taken AS (UPDATE kefu.leases l SET relay_id = $1, updated_at_ms = kefu.now_ms()
                        WHERE l.lane = $2 AND l.account = $3 AND l.key = $4
                          AND l.relay_id IS DISTINCT FROM $1 AND {TAKEABLE}
                        RETURNING l.version),
              c AS (SELECT version, false AS taken FROM held
                    UNION ALL SELECT version, true FROM taken)"
    )
}

/// The head of a job conversation: its queued jobs by `seq`, then the version; one row of
/// NULL jobs when none is queued, no row when the lease was not held (or, with `take`, taken).
fn job_head(take: bool) -> String {
    format!(
        "{} SELECT j.id, j.account, j.recipient, j.operation, j.payload, j.attempts,
                   j.not_before_ms, c.version, c.taken
            FROM c LEFT JOIN LATERAL (
                SELECT {} FROM kefu.jobs WHERE account = $3 AND recipient = $4
                AND state = 'queued' ORDER BY seq LIMIT $5) j ON true",
        lease(take),
        jobs::PENDING_COLUMNS
    )
}

/// The head of a user's webhook pushes: events still to push by id (ids become visible in id
/// order, so none is skipped), then the version.
fn webhook_head(take: bool) -> String {
    format!(
        "{} SELECT e.id, e.openid, e.body, e.attempts, e.not_before_ms, c.version, c.taken
            FROM c LEFT JOIN LATERAL (
                SELECT id, openid, body, attempts, not_before_ms FROM kefu.events
                WHERE webhook_state = 'pending' AND openid = $4 ORDER BY id LIMIT $5) e ON true",
        lease(take)
    )
}

/// Whether relay `$1` holds the lease of (`$2` lane, `$3` account, `$4` key) and is alive.
const HOLDS: &str = "
SELECT EXISTS (SELECT 1 FROM kefu.leases l WHERE l.lane = $2 AND l.account = $3 AND l.key = $4
                 AND l.relay_id = $1)
   AND EXISTS (SELECT 1 FROM kefu.relays me WHERE me.relay_id = $1
                 AND me.alive_until_ms > kefu.now_ms())";

/// Whether the conversation of lease `l` has work: queued jobs, or events still to push.
const HAS_WORK: &str = "
(l.lane = 'job' AND EXISTS (SELECT 1 FROM kefu.jobs j WHERE j.account = l.account
                            AND j.recipient = l.key AND j.state = 'queued'))
OR (l.lane = 'webhook' AND EXISTS (SELECT 1 FROM kefu.events e WHERE e.openid = l.key
                                   AND e.webhook_state = 'pending'))";

/// Lets the lease of a conversation without work go by deleting its row, unless an insert
/// bumped its version since the head was read: rows are kept only for conversations that have
/// work, a job in flight or a holder, so that the table (which every claim scans) does not
/// grow with every user ever served. An insert racing the delete creates the row again.
///
/// One statement per lane, its tests on the parameters rather than on `l`'s columns: tests on
/// the row's columns under `NOT (… OR …)` were planned as hashed subplans, which read every
/// queued job of every conversation on each release.
fn release_empty(lane: Lane) -> &'static str {
    match lane {
        Lane::Jobs => {
            "DELETE FROM kefu.leases l
             WHERE l.lane = $2 AND l.account = $3 AND l.key = $4 AND l.relay_id = $1
               AND l.version = $5
               AND NOT EXISTS (SELECT 1 FROM kefu.jobs j WHERE j.account = $3
                               AND j.recipient = $4 AND j.state = 'queued')
               AND NOT EXISTS (SELECT 1 FROM kefu.jobs j WHERE j.account = $3
                               AND j.recipient = $4 AND j.state = 'sending')"
        }
        Lane::Webhook => {
            "DELETE FROM kefu.leases l
             WHERE l.lane = $2 AND l.account = $3 AND l.key = $4 AND l.relay_id = $1
               AND l.version = $5
               AND NOT EXISTS (SELECT 1 FROM kefu.events e WHERE e.openid = $4
                               AND e.webhook_state = 'pending')"
        }
    }
}

/// Lets the lease go, keeping its row: a job of its conversation is in flight.
const RELEASE: &str = "
UPDATE kefu.leases SET relay_id = NULL, updated_at_ms = kefu.now_ms()
WHERE lane = $2 AND account = $3 AND key = $4 AND relay_id = $1 AND version = $5";

/// Takes up to `$3` leases of lane `$2` with work that `$1` may take; two relays claiming at
/// once take different ones (`SKIP LOCKED`).
fn claim() -> String {
    format!(
        "WITH free AS (
             SELECT l.lane, l.account, l.key FROM kefu.leases l
             WHERE l.lane = $2 AND {TAKEABLE}
               AND ({HAS_WORK})
             ORDER BY l.updated_at_ms LIMIT $3 FOR UPDATE OF l SKIP LOCKED)
         UPDATE kefu.leases l SET relay_id = $1, updated_at_ms = kefu.now_ms()
         FROM free WHERE (l.lane, l.account, l.key) = (free.lane, free.account, free.key)
         RETURNING l.account, l.key"
    )
}

/// A relay row lapsed a day ago, with no send left to settle, is deleted.
const FORGET_GONE: &str = "
DELETE FROM kefu.relays r WHERE r.alive_until_ms < kefu.now_ms() - 86400000
AND NOT EXISTS (SELECT 1 FROM kefu.jobs j WHERE j.state = 'sending' AND j.relay_id = r.relay_id)";

fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Jobs => JOB_LANE,
        Lane::Webhook => WEBHOOK_LANE,
    }
}

/// The head in `rows`, and whether the statement took the lease (rather than keeping it).
fn read_head(lane: Lane, rows: &[Row]) -> Result<Option<(i64, Head, bool)>, PgError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    // The one row of an empty head has no item.
    let items = rows
        .iter()
        .filter(|row| !matches!(row.try_get::<_, Option<i64>>(0), Ok(None)));
    Ok(Some(match lane {
        Lane::Jobs => (
            sql::get(first, 7)?,
            Head::Jobs(items.map(jobs::read_pending).collect::<Result<_, _>>()?),
            sql::get(first, 8)?,
        ),
        Lane::Webhook => (
            sql::get(first, 5)?,
            Head::Events(items.map(events::read_pending).collect::<Result<_, _>>()?),
            sql::get(first, 6)?,
        ),
    }))
}

/// Keeps or takes `key` and reads its head: first as its holder, and only if this relay does
/// not hold it, by the statement that takes it. A statement that took the lease may have
/// waited for an insert's lock on it, and then sees that insert's version but not its items
/// (they came after its snapshot): the head is read again, by a statement of its own, so that
/// the version never runs ahead of the items (a release at that version would leave them
/// behind).
async fn head(
    c: &Conn,
    relay: &str,
    key: &ConvKey,
    limit: usize,
) -> Result<Option<(i64, Head)>, PgError> {
    // Written once: they are looked up in the connection's statement cache by their text.
    static HEADS: LazyLock<[String; 4]> = LazyLock::new(|| {
        [
            job_head(false),
            job_head(true),
            webhook_head(false),
            webhook_head(true),
        ]
    });
    let statement = |take: bool| {
        let lane = match key.lane {
            Lane::Jobs => 0,
            Lane::Webhook => 2,
        };
        HEADS[lane + usize::from(take)].as_str()
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&relay, &lane_name(key.lane), &key.account, &key.key, &limit];
    let as_holder = statement(false);
    let mut read = read_head(key.lane, &sql::query(c, as_holder, &params).await?)?;
    if read.is_none() {
        read = read_head(key.lane, &sql::query(c, statement(true), &params).await?)?;
        if let Some((_, _, true)) = read {
            read = read_head(key.lane, &sql::query(c, as_holder, &params).await?)?;
        }
    }
    Ok(read.map(|(version, head, _)| (version, head)))
}

async fn claim_idle(
    c: &Conn,
    relay: &str,
    lane: Lane,
    max: usize,
) -> Result<Vec<ConvKey>, PgError> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    sql::query(c, &claim(), &[&relay, &lane_name(lane), &max])
        .await?
        .iter()
        .map(|row| {
            Ok(ConvKey {
                lane,
                account: sql::get(row, 0)?,
                key: sql::get(row, 1)?,
            })
        })
        .collect()
}

async fn sweep(c: &Conn) -> Result<Vec<Settled>, PgError> {
    let gone: Vec<String> = sql::query(
        c,
        "SELECT relay_id FROM kefu.relays WHERE alive_until_ms < kefu.now_ms()",
        &[],
    )
    .await?
    .iter()
    .map(|row| sql::get(row, 0))
    .collect::<Result<_, _>>()?;
    let settled = settle_interrupted(c, kefu_core::now_ms(), &gone).await?;
    sql::execute(c, FORGET_GONE, &[]).await?;
    Ok(settled)
}

/// Lets every lease of `relay` go, marks it stopped, and wakes the fleet.
async fn stop(c: &Conn, relay: &str) -> Result<(), PgError> {
    sql::execute(
        c,
        "UPDATE kefu.leases SET relay_id = NULL, updated_at_ms = kefu.now_ms()
         WHERE relay_id = $1",
        &[&relay],
    )
    .await?;
    sql::execute(
        c,
        "UPDATE kefu.relays SET alive_until_ms = 0, stopped_at_ms = kefu.now_ms()
         WHERE relay_id = $1",
        &[&relay],
    )
    .await?;
    sql::query(c, "SELECT pg_notify('kefu_work', '')", &[]).await?;
    Ok(())
}

impl PgStore {
    /// `admitted`, once its event (if it stored one) is announced.
    pub(crate) fn announced<'a>(
        &'a self,
        admitted: BoxFuture<'a, StoreResult<Admission>>,
    ) -> BoxFuture<'a, StoreResult<Admission>> {
        Box::pin(async move {
            let admission = admitted.await?;
            self.announce(&admission);
            Ok(admission)
        })
    }
}

impl Fleet for PgStore {
    fn shared(&self) -> bool {
        true
    }

    /// Read once the delivery lane has applied the outcomes recorded before, so that a job
    /// whose outcome is on its way is not taken for one still `sending` and skipped.
    fn head(&self, key: &ConvKey, limit: usize) -> BoxFuture<'_, StoreResult<Option<(i64, Head)>>> {
        let key = key.clone();
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(head(&c, self.relay().as_str(), &key, limit).await?)
        })
    }

    fn holds(&self, key: &ConvKey) -> BoxFuture<'_, StoreResult<bool>> {
        let key = key.clone();
        Box::pin(async move {
            let c = self.pooled().await?;
            let row = sql::query_one(
                &c,
                HOLDS,
                &[
                    &self.relay().as_str(),
                    &lane_name(key.lane),
                    &key.account,
                    &key.key,
                ],
            )
            .await?;
            Ok(sql::get(&row, 0)?)
        })
    }

    fn release(&self, key: &ConvKey, version: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let key = key.clone();
        Box::pin(async move {
            let c = self.pooled().await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
                &self.relay().as_str(),
                &lane_name(key.lane),
                &key.account,
                &key.key,
                &version,
            ];
            if sql::execute(&c, release_empty(key.lane), &params).await? == 1 {
                return Ok(true);
            }
            Ok(sql::execute(&c, RELEASE, &params).await? == 1)
        })
    }

    fn claim_idle(&self, lane: Lane, max: usize) -> BoxFuture<'_, StoreResult<Vec<ConvKey>>> {
        Box::pin(async move {
            let c = self.pooled().await?;
            Ok(claim_idle(&c, self.relay().as_str(), lane, max).await?)
        })
    }

    fn poll_every(&self) -> Duration {
        self.periods().1
    }

    fn is_leader(&self) -> bool {
        self.leadership().is_leader()
    }

    /// Only once this relay has led for a whole TTL: after a database restart every heartbeat
    /// has lapsed, and the first relay back must not take the others' sends in flight for a
    /// dead relay's.
    fn sweep_gone(&self) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        Box::pin(async move {
            if !self.leadership().led_for(self.periods().0) {
                return Ok(Vec::new());
            }
            let c = self.pooled().await?;
            Ok(sweep(&c).await?)
        })
    }

    fn newest_event(&self) -> watch::Receiver<i64> {
        self.newest()
    }

    fn stored_elsewhere(&self) -> Option<broadcast::Receiver<Vec<ConvKey>>> {
        Some(PgStore::stored_elsewhere(self))
    }

    /// Applies the outcomes recorded so far first: a sweep of the stopped relay would otherwise
    /// turn its last deliveries into `ambiguous` ones, and drop their outcomes. Then ends the
    /// heartbeat and the listener, so that nothing marks the relay alive again.
    fn stop(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.checkpoint().await?;
            self.end_background();
            let c = self.pooled().await?;
            Ok(stop(&c, self.relay().as_str()).await?)
        })
    }
}
