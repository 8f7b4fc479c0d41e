//! The `outbox` table: the jobs, and [`JobStore`] over it.

use kefu_core::{BoxFuture, Job, Reason};
use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, params};

use super::{Group, SqliteStore, inbound, keys, sql, yunzhenji};
use kefu_store::{
    Claimed, DeskCall, INTERRUPTED_MESSAGE, Idempotent, JobState, JobStatus, JobStore, NewJob,
    Outcome, PendingJob, ResendError, Settled, StoreError, StoreResult,
};

/// Turns the jobs left `sending` by an interrupted run into `ambiguous` (or settles them by
/// the report a callback made while they were being sent), and returns the queued ones in
/// order.
pub(super) fn recover(conn: &mut Connection) -> Result<Vec<PendingJob>, StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    let now = kefu_core::now_ms();
    tx.execute(
        "UPDATE outbox SET state = 'failed', reason = ?2, error_code = NULL,
             error_message = early_message, updated_at_ms = ?3
         WHERE state = 'sending' AND early_report = ?1",
        params![yunzhenji::EARLY_FAILED, Reason::SendFailed.as_str(), now],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE outbox SET state = 'accepted', confirm_by_ms = ?2 + IFNULL(early_window_ms, 0),
             error_code = NULL, reason = NULL, error_message = NULL, updated_at_ms = ?2
         WHERE state = 'sending' AND early_report = ?1",
        params![yunzhenji::EARLY_TAKEN, now],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE outbox SET state = 'ambiguous', updated_at_ms = ?1, error_message = ?2
         WHERE state = 'sending'",
        params![now, INTERRUPTED_MESSAGE],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE outbox SET early_report = NULL, early_message = NULL, early_window_ms = NULL
         WHERE early_report IS NOT NULL",
        [],
    )
    .map_err(sql)?;
    let pending = {
        let mut statement = tx
            .prepare(
                "SELECT id, account, recipient, operation, payload, attempts, not_before_ms
             FROM outbox WHERE state = 'queued' ORDER BY seq",
            )
            .map_err(sql)?;
        statement
            .query_map([], read_pending)
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?
    };
    tx.commit().map_err(sql)?;
    Ok(pending)
}

fn read_pending(row: &Row<'_>) -> rusqlite::Result<PendingJob> {
    Ok(PendingJob {
        job: Job {
            id: row.get(0)?,
            account: row.get(1)?,
            recipient: row.get(2)?,
            operation: row.get(3)?,
            payload: row.get(4)?,
        },
        attempts: row.get(5)?,
        not_before_ms: row.get(6)?,
    })
}

fn insert(
    tx: &Transaction<'_>,
    group: &mut Group,
    jobs: Vec<NewJob>,
) -> Result<Vec<PendingJob>, StoreError> {
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO outbox (seq, account, recipient, operation, payload, state, not_before_ms,
                             created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?6)",
        )
        .map_err(sql)?;
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        group.last_seq += 1;
        statement
            .execute(params![
                group.last_seq,
                job.account,
                job.recipient,
                job.operation,
                job.payload,
                group.now
            ])
            .map_err(sql)?;
        stored.push(PendingJob {
            job: Job {
                id: tx.last_insert_rowid(),
                account: job.account,
                recipient: job.recipient,
                operation: job.operation,
                payload: job.payload,
            },
            attempts: 0,
            not_before_ms: group.now,
        });
    }
    Ok(stored)
}

fn mark_sending(tx: &Transaction<'_>, now: i64, ids: &[i64]) -> Result<(), StoreError> {
    let mut statement = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at_ms = ?2
         WHERE id = ?1",
        )
        .map_err(sql)?;
    for id in ids {
        statement.execute(params![id, now]).map_err(sql)?;
    }
    Ok(())
}

fn record(tx: &Transaction<'_>, now: i64, id: i64, outcome: Outcome) -> Result<(), StoreError> {
    let early = tx
        .prepare_cached("SELECT early_report, early_message FROM outbox WHERE id = ?1")
        .map_err(sql)?
        .query_row(params![id], |row| {
            Ok(yunzhenji::early_report(
                row.get::<_, Option<String>>(0)?.as_deref(),
                row.get(1)?,
            ))
        })
        .optional()
        .map_err(sql)?
        .flatten();
    let outcome = match &early {
        Some(report) => outcome.after_report(report),
        None => outcome,
    };
    let columns = outcome.columns();
    tx.prepare_cached(
        "UPDATE outbox SET state = ?2, not_before_ms = IFNULL(?3, not_before_ms),
             error_code = ?4, reason = ?5, error_message = ?6, updated_at_ms = ?7,
             confirm_by_ms = ?8, early_report = NULL, early_message = NULL,
             early_window_ms = NULL
         WHERE id = ?1",
    )
    .map_err(sql)?
    .execute(params![
        id,
        columns.state.as_str(),
        columns.not_before_ms,
        columns.error_code,
        columns.reason,
        columns.error_message,
        now,
        columns.confirm_by_ms
    ])
    .map_err(sql)?;
    Ok(())
}

/// Why an ambiguous job whose window passed failed, as the desk reads it.
const UNCONFIRMED: &str = "no callback confirmed within the confirmation window that the platform took this message; it most likely never left, and the desk may send it again";

/// Settles every confirmation whose window ended at or before `now_ms`.
fn settle(tx: &Transaction<'_>, now: i64, now_ms: i64) -> Result<Vec<Settled>, StoreError> {
    let due = {
        let mut statement = tx
            .prepare_cached(
                "SELECT id, account, state FROM outbox
             WHERE confirm_by_ms IS NOT NULL AND confirm_by_ms <= ?1 ORDER BY confirm_by_ms, id",
            )
            .map_err(sql)?;
        statement
            .query_map(params![now_ms], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?
    };
    let mut settled = Vec::with_capacity(due.len());
    for (id, account, state) in due {
        let (state, reason, message) = match JobState::parse(&state) {
            Some(JobState::Accepted) => (JobState::Delivered, None, None),
            Some(JobState::Ambiguous) => (
                JobState::Failed,
                Some(Reason::Unconfirmed),
                Some(UNCONFIRMED),
            ),
            // Only these two keep a window; a stray one is cleared, not acted on.
            _ => {
                tx.prepare_cached("UPDATE outbox SET confirm_by_ms = NULL WHERE id = ?1")
                    .map_err(sql)?
                    .execute(params![id])
                    .map_err(sql)?;
                continue;
            }
        };
        tx.prepare_cached(
            "UPDATE outbox SET state = ?2, reason = ?3, error_message = IFNULL(?4, error_message),
                 confirm_by_ms = NULL, updated_at_ms = ?5
             WHERE id = ?1",
        )
        .map_err(sql)?
        .execute(params![
            id,
            state.as_str(),
            reason.map(Reason::as_str),
            message,
            now
        ])
        .map_err(sql)?;
        settled.push(Settled {
            id,
            account,
            state,
            reason,
        });
    }
    Ok(settled)
}

/// The columns [`read_status`] reads, in its order.
pub(crate) const STATUS_COLUMNS: &str = "id, account, recipient, operation, state, attempts,
    error_code, reason, error_message, created_at_ms, updated_at_ms, confirm_by_ms";

/// A job's status as read from a row of [`STATUS_COLUMNS`], with its state and reason as
/// stored, for [`checked_status`].
pub(crate) type RawStatus = (JobStatus, String, Option<String>);

/// A row of [`STATUS_COLUMNS`] (more columns may follow).
pub(crate) fn read_status(row: &Row<'_>) -> rusqlite::Result<RawStatus> {
    Ok((
        JobStatus {
            id: row.get(0)?,
            account: row.get(1)?,
            openid: row.get(2)?,
            operation: row.get(3)?,
            status: JobState::Queued,
            attempts: row.get(5)?,
            error_code: row.get(6)?,
            reason: None,
            error_message: row.get(8)?,
            confirm_by_ms: row.get(11)?,
            created_at_ms: row.get(9)?,
            updated_at_ms: row.get(10)?,
        },
        row.get(4)?,
        row.get(7)?,
    ))
}

/// The status of a row, its stored state and reason checked.
pub(crate) fn checked_status(
    (mut status, state, reason): RawStatus,
) -> Result<JobStatus, StoreError> {
    let id = status.id;
    status.status = JobState::parse(&state)
        .ok_or_else(|| StoreError::new(format!("job {id} has unknown state {state}")))?;
    status.reason = match reason {
        None => None,
        Some(name) => Some(
            Reason::parse(&name)
                .ok_or_else(|| StoreError::new(format!("job {id} has unknown reason {name}")))?,
        ),
    };
    Ok(status)
}

fn get(tx: &Transaction<'_>, id: i64) -> Result<Option<JobStatus>, StoreError> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT {STATUS_COLUMNS} FROM outbox WHERE id = ?1"
        ))
        .map_err(sql)?
        .query_row(params![id], read_status)
        .optional()
        .map_err(sql)?;
    row.map(checked_status).transpose()
}

fn resend(
    tx: &Transaction<'_>,
    group: &mut Group,
    id: i64,
    operator: Option<&str>,
) -> Result<Result<PendingJob, ResendError>, StoreError> {
    let Some(status) = get(tx, id)? else {
        return Ok(Err(ResendError::NotFound));
    };
    if !matches!(status.status, JobState::Failed | JobState::Ambiguous) {
        return Ok(Err(ResendError::NotResendable(status.status)));
    }
    group.last_seq += 1;
    tx.execute(
        "UPDATE outbox SET state = 'queued', attempts = 0, not_before_ms = ?2, updated_at_ms = ?2,
             error_code = NULL, reason = NULL, error_message = NULL, seq = ?3,
             confirm_by_ms = NULL,
             operator_action = CASE WHEN ?4 IS NULL THEN NULL ELSE 'resend' END,
             operator = ?4, operator_at_ms = CASE WHEN ?4 IS NULL THEN NULL ELSE ?2 END
         WHERE id = ?1",
        params![id, group.now, group.last_seq, operator],
    )
    .map_err(sql)?;
    Ok(Ok(tx
        .query_row(
            "SELECT id, account, recipient, operation, payload, attempts, not_before_ms
         FROM outbox WHERE id = ?1",
            params![id],
            read_pending,
        )
        .map_err(sql)?))
}

fn depth(tx: &Transaction<'_>) -> Result<Vec<(JobState, u64)>, StoreError> {
    let mut statement = tx
        .prepare_cached("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        .map_err(sql)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
        })
        .map_err(sql)?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, count) = row.map_err(sql)?;
        if let Some(state) = JobState::parse(&state) {
            counts.push((state, count));
        }
    }
    Ok(counts)
}

impl JobStore for SqliteStore {
    fn insert(
        &self,
        jobs: Vec<NewJob>,
        key: Option<Idempotent>,
        desk_call: Option<DeskCall>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Vec<PendingJob>>>> {
        self.boxed(Box::new(move |tx, group| {
            keys::once(
                tx,
                group,
                key,
                |stored: &Vec<PendingJob>| Some(stored.iter().map(PendingJob::id).collect()),
                |tx, group| {
                    let stored = insert(tx, group, jobs)?;
                    if let Some(call) = desk_call {
                        inbound::desk_action(tx, group.now, &call)?;
                    }
                    Ok(stored)
                },
            )
        }))
    }

    fn mark_sending(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        self.boxed(Box::new(move |tx, group| {
            mark_sending(tx, group.now, &[id]).map(|()| true)
        }))
    }

    /// One relay owns the file: nothing to fence, every id is marked.
    fn mark_sending_many(&self, ids: &[i64]) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        let ids = ids.to_vec();
        self.boxed(Box::new(move |tx, group| {
            mark_sending(tx, group.now, &ids).map(|()| ids)
        }))
    }

    fn record(&self, id: i64, outcome: Outcome) -> StoreResult<()> {
        self.run_detached(
            "a delivery outcome",
            Box::new(move |tx, group| record(tx, group.now, id, outcome)),
        )
    }

    fn get(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<JobStatus>>> {
        self.read(Box::new(move |tx, _| get(tx, id)))
    }

    fn resend(
        &self,
        id: i64,
        key: Option<Idempotent>,
        operator: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Result<PendingJob, ResendError>>>> {
        self.boxed(Box::new(move |tx, group| {
            keys::once(
                tx,
                group,
                key,
                |queued: &Result<PendingJob, ResendError>| {
                    queued.as_ref().ok().map(|job| vec![job.id()])
                },
                |tx, group| resend(tx, group, id, operator.as_deref()),
            )
        }))
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(JobState, u64)>>> {
        self.read(Box::new(|tx, _| depth(tx)))
    }

    fn purge_keys(&self) -> BoxFuture<'_, StoreResult<usize>> {
        self.boxed(Box::new(|tx, group| keys::purge(tx, group.now)))
    }

    fn settle_confirmations(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        self.boxed(Box::new(move |tx, group| settle(tx, group.now, now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use kefu_store::idempotency::{self, Claim, Saved};
    use kefu_store::{DIALOGUE_ACCOUNT, Store as _};

    fn job(openid: &str, payload: &str) -> NewJob {
        NewJob {
            account: DIALOGUE_ACCOUNT.into(),
            recipient: openid.into(),
            operation: "sendmsg".into(),
            payload: payload.into(),
        }
    }

    /// Stores `jobs` without a key or a desk call.
    async fn insert_plain(store: &SqliteStore, jobs: Vec<NewJob>) -> Vec<PendingJob> {
        match store.insert(jobs, None, None).await.unwrap() {
            Claimed::Done(stored) => stored,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_owner_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let _first = SqliteStore::open(&path).unwrap();
        let error = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("in use by another process"), "{error}");
    }

    /// The number of jobs in the database file at `path`, read by a connection of its own.
    fn jobs_in(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_checkpoint_leaves_everything_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let (outbox, _) = SqliteStore::open(&path).unwrap();
        insert_plain(&outbox, vec![job("o1", "1"), job("o2", "2")]).await;
        outbox.checkpoint().await.unwrap();
        let wal = dir.path().join("outbox.sqlite3-wal");
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
        // The file copied alone, without its WAL, holds the jobs.
        let copy = dir.path().join("copy.sqlite3");
        std::fs::copy(&path, &copy).unwrap();
        assert_eq!(jobs_in(&copy), 2);
        // The store goes on after it.
        insert_plain(&outbox, vec![job("o3", "3")]).await;
    }

    #[tokio::test]
    async fn another_process_can_back_it_up_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let (outbox, _) = SqliteStore::open(&path).unwrap();
        insert_plain(&outbox, vec![job("o1", "1"), job("o2", "2")]).await;
        // What `sqlite3 outbox.sqlite3 "VACUUM INTO 'backup.sqlite3'"` does.
        let backup = dir.path().join("backup.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
            .unwrap();
        // The relay keeps writing while a reader is open.
        insert_plain(&outbox, vec![job("o3", "3")]).await;
        assert_eq!(jobs_in(&backup), 2);
    }

    fn keyed(key: &str, hash: &str) -> Idempotent {
        Idempotent {
            claim: Claim {
                scope: idempotency::DESK_SCOPE.into(),
                key: key.into(),
                route: "/v1/messages".into(),
                request_hash: hash.into(),
                retention_ms: 60_000,
            },
            answer: |ids| Saved {
                status: 202,
                body: format!("{ids:?}").into_bytes(),
            },
        }
    }

    fn ids(claimed: Claimed<Vec<PendingJob>>) -> Claimed<Vec<i64>> {
        match claimed {
            Claimed::Done(jobs) => Claimed::Done(jobs.iter().map(PendingJob::id).collect()),
            Claimed::Earlier(earlier) => Claimed::Earlier(earlier),
        }
    }

    #[tokio::test]
    async fn failed_work_leaves_the_key_free_and_nothing_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = SqliteStore::open(&dir.path().join("o.sqlite3")).unwrap();
        let failed = outbox
            .run(Box::new(|tx, group| {
                keys::once(
                    tx,
                    group,
                    Some(keyed("k", "h")),
                    |_: &()| Some(vec![1]),
                    |tx, group| {
                        insert(tx, group, vec![job("u", "x")])?;
                        Err(StoreError::new("session write failed"))
                    },
                )
            }))
            .await;
        assert!(failed.is_err());
        assert_eq!(outbox.depth().await.unwrap(), vec![]);
        let retried = outbox
            .insert(vec![job("u", "x")], Some(keyed("k", "h")), None)
            .await
            .unwrap();
        assert_eq!(ids(retried), Claimed::Done(vec![1]));
    }
}

/// A file written before schema versions, with a job of each kind and a session.
#[cfg(test)]
mod migration {
    use rusqlite::Connection;

    use super::*;
    use crate::schema;
    use kefu_store::{DIALOGUE_ACCOUNT, SessionStore as _};

    const OLD: &str = "
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, openid TEXT NOT NULL,
            operation TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, not_before_ms INTEGER NOT NULL,
            error_code INTEGER, error_message TEXT, created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL);
        CREATE TABLE sessions (
            openid TEXT PRIMARY KEY, state TEXT NOT NULL, agent TEXT, channel INTEGER,
            appid TEXT, changed_by TEXT NOT NULL, state_since_ms INTEGER NOT NULL,
            requested_at_ms INTEGER, created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL, last_event_id INTEGER,
            desk_pending_until_ms INTEGER);
        INSERT INTO outbox VALUES (1, 1, 'oA', 'sendmsg', '<xml>1</xml>', 'queued', 0, 0, NULL,
                                   NULL, 0, 0);
        INSERT INTO outbox VALUES (2, 2, 'oA', 'kefustate/change', '<xml>2</xml>', 'failed', 3,
                                   0, 1001, 'TOKEN invalid', 0, 0);
        INSERT INTO sessions VALUES ('oA', 'personserving', '小明', 0, 'wx1', 'desk', 5, NULL,
                                     1, 5, 7, NULL);
    ";

    #[tokio::test]
    async fn an_old_file_is_migrated_in_place_and_its_jobs_are_the_dialogue_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        Connection::open(&path).unwrap().execute_batch(OLD).unwrap();
        let (store, pending) = SqliteStore::open(&path).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].job.account, DIALOGUE_ACCOUNT);
        assert_eq!(pending[0].job.recipient, "oA");
        assert_eq!(pending[0].job.payload, b"<xml>1</xml>");
        let failed = store.get(2).await.unwrap().unwrap();
        assert_eq!(failed.account, DIALOGUE_ACCOUNT);
        assert_eq!(failed.operation, "kefustate/change");
        assert_eq!(failed.error_code, Some(1001));
        let session = store
            .session(DIALOGUE_ACCOUNT, "oA")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.agent.as_deref(), Some("小明"));
        assert_eq!(session.last_event_id, Some(7));
        // A resent old job keeps its bytes.
        let queued = store.resend(2, None, None).await.unwrap();
        match queued {
            Claimed::Done(Ok(job)) => assert_eq!(job.job.payload, b"<xml>2</xml>"),
            other => panic!("{other:?}"),
        }
        drop(store);
        // Opening again changes nothing more.
        assert_eq!(version_of(&path), schema::LATEST as i64);
    }

    /// The schema version of the file at `path`, read by a connection of its own.
    fn version_of(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_version_2_file_is_migrated_in_place_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            schema::create_at(&conn, 2).unwrap();
            conn.execute_batch(
                "INSERT INTO outbox (id, seq, account, recipient, operation, payload, state,
                                     not_before_ms, created_at_ms, updated_at_ms, error_message)
                 VALUES (1, 1, 'shop', 'oA', 'custom/send', X'7B7D', 'queued', 0, 0, 0, NULL),
                        (2, 2, 'shop', 'oA', 'custom/send', X'7B7D', 'ambiguous', 0, 0, 0,
                         'timed out')",
            )
            .unwrap();
        }
        let (store, pending) = SqliteStore::open(&path).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].job.payload, b"{}");
        let ambiguous = store.get(2).await.unwrap().unwrap();
        assert_eq!(ambiguous.status, JobState::Ambiguous);
        assert_eq!(ambiguous.confirm_by_ms, None);
        // An old ambiguous job has no window: settling leaves it for the desk.
        assert_eq!(store.settle_confirmations(i64::MAX).await.unwrap(), vec![]);
        store.mark_sending_many(&[1]).await.unwrap();
        store
            .record(1, Outcome::Accepted { confirm_by_ms: 5 })
            .unwrap();
        assert_eq!(store.get(1).await.unwrap().unwrap().confirm_by_ms, Some(5));
        drop(store);
        assert_eq!(version_of(&path), schema::LATEST as i64);
    }

    #[test]
    fn a_file_of_a_newer_relay_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let error = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("schema version 99"), "{error}");
    }
}
