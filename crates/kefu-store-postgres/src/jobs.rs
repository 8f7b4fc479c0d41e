//! The `kefu.jobs` table: the jobs, and [`JobStore`] over it.
//!
//! Order per (account, recipient) (design §3.1): every insert or resend first upserts the
//! conversation's lease row, which locks it (and bumps its `version`), and only then takes the
//! job's `seq` from `kefu.job_seq`: an insert through its group's locks, which the group takes
//! before any command runs ([`crate::locks`]), a resend by itself once it has read the job. Two transactions storing jobs for one conversation therefore
//! take their `seq`s one after the other, and `seq` order is commit order.

use kefu_core::{BoxFuture, Job, Reason};
use kefu_store::{
    Claimed, DeskCall, Idempotent, JobState, JobStatus, JobStore, NewJob, Outcome, PendingJob,
    ResendError, Settled, StoreResult,
};
use tokio_postgres::Row;

use crate::error::PgError;
use crate::lane::{Bulk, Group, repeatable, work};
use crate::locks::{JOB_LANE, LOCK_CONVERSATIONS, Locks};
use crate::sql::{self, Conn};
use crate::store::PgStore;
use crate::{keys, sessions, yunzhenji};

/// The columns [`read_pending`] reads, in its order.
pub(crate) const PENDING_COLUMNS: &str =
    "id, account, recipient, operation, payload, attempts, not_before_ms";

/// A queued job from a row of [`PENDING_COLUMNS`].
pub(crate) fn read_pending(row: &Row) -> Result<PendingJob, PgError> {
    Ok(PendingJob {
        job: Job {
            id: sql::get(row, 0)?,
            account: sql::get(row, 1)?,
            recipient: sql::get(row, 2)?,
            operation: sql::get(row, 3)?,
            payload: sql::get(row, 4)?,
        },
        attempts: sql::unsigned(row, 5)?,
        not_before_ms: sql::get(row, 6)?,
    })
}

fn parse_state(id: i64, state: &str) -> Result<JobState, PgError> {
    JobState::parse(state)
        .ok_or_else(|| PgError::Data(format!("job {id} has unknown state {state}")))
}

/// Stores `jobs` in order; their group holds their conversations' locks already.
async fn insert_jobs(c: &Conn, now: i64, jobs: Vec<&NewJob>) -> Result<Vec<PendingJob>, PgError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<&str> = jobs.iter().map(|j| j.account.as_str()).collect();
    let recipients: Vec<&str> = jobs.iter().map(|j| j.recipient.as_str()).collect();
    let operations: Vec<&str> = jobs.iter().map(|j| j.operation.as_str()).collect();
    let payloads: Vec<&[u8]> = jobs.iter().map(|j| j.payload.as_slice()).collect();
    // nextval runs after the sort, so the seqs follow the input order.
    let mut rows: Vec<(i64, i64)> = sql::query(
        c,
        "INSERT INTO kefu.jobs (seq, account, recipient, operation, payload, state,
                                    not_before_ms, created_at_ms, updated_at_ms)
             SELECT nextval('kefu.job_seq'), t.a, t.r, t.op, t.p, 'queued', $5, $5, $5
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
                  WITH ORDINALITY AS t(a, r, op, p, ord)
             ORDER BY t.ord
             RETURNING seq, id",
        &[&accounts, &recipients, &operations, &payloads, &now],
    )
    .await?
    .iter()
    .map(|row| Ok((sql::get(row, 0)?, sql::get(row, 1)?)))
    .collect::<Result<_, PgError>>()?;
    if rows.len() != jobs.len() {
        return Err(PgError::Data(format!(
            "{} jobs given, {} stored",
            jobs.len(),
            rows.len()
        )));
    }
    rows.sort_unstable();
    Ok(jobs
        .into_iter()
        .zip(rows)
        .map(|(job, (_, id))| PendingJob {
            job: Job {
                id,
                account: job.account.clone(),
                recipient: job.recipient.clone(),
                operation: job.operation.clone(),
                payload: job.payload.clone(),
            },
            attempts: 0,
            not_before_ms: now,
        })
        .collect())
}

/// What one insert stores: its jobs, and the desk call recorded on the user's session.
#[derive(Clone)]
struct NewInsert {
    jobs: Vec<NewJob>,
    desk_call: Option<DeskCall>,
}

/// Inserts without an `Idempotency-Key`, run together when a group has several in a row: the
/// sessions in two statements and the jobs in one, however many there are.
struct Inserts;

impl Bulk for Inserts {
    type Item = NewInsert;
    type Answer = Vec<PendingJob>;

    fn run<'c>(
        c: &'c Conn,
        g: &'c mut Group,
        items: Vec<&'c NewInsert>,
    ) -> BoxFuture<'c, Result<Vec<Vec<PendingJob>>, PgError>> {
        Box::pin(insert_many(c, g.now, items))
    }
}

/// Stores `inserts` in order: their desk calls on the sessions, then their jobs. Pipelined: the
/// sessions' read and the jobs' insert leave together (the group holds the locks of both
/// already, and neither reads what the other writes).
async fn insert_many(
    c: &Conn,
    now: i64,
    inserts: Vec<&NewInsert>,
) -> Result<Vec<Vec<PendingJob>>, PgError> {
    let calls = inserts
        .iter()
        .filter_map(|i| i.desk_call.as_ref())
        .collect();
    let jobs = inserts.iter().flat_map(|i| &i.jobs).collect();
    let (acted, stored) = tokio::join!(
        sessions::desk_actions(c, now, calls),
        insert_jobs(c, now, jobs)
    );
    acted?;
    let mut stored = stored?.into_iter();
    Ok(inserts
        .iter()
        .map(|insert| stored.by_ref().take(insert.jobs.len()).collect())
        .collect())
}

/// An insert with an `Idempotency-Key`: the key, then the insert.
async fn insert_once(
    c: &Conn,
    g: &mut Group,
    insert: NewInsert,
    key: Idempotent,
) -> Result<Claimed<Vec<PendingJob>>, PgError> {
    if let Some(earlier) = keys::claim(c, &key.claim, g.now).await? {
        return Ok(Claimed::Earlier(earlier));
    }
    let stored = insert_many(c, g.now, vec![&insert])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let ids: Vec<i64> = stored.iter().map(PendingJob::id).collect();
    keys::save(c, &key.claim, &(key.answer)(&ids)).await?;
    Ok(Claimed::Done(stored))
}

/// Markings, run together when a group has several in a row: one statement for every run of
/// them that marks no job twice.
struct Markings;

impl Bulk for Markings {
    type Item = Vec<i64>;
    type Answer = Vec<i64>;

    fn jobs(ids: &Vec<i64>) -> Option<&[i64]> {
        Some(ids)
    }

    fn run<'c>(
        c: &'c Conn,
        g: &'c mut Group,
        items: Vec<&'c Vec<i64>>,
    ) -> BoxFuture<'c, Result<Vec<Vec<i64>>, PgError>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(items.len());
            for run in disjoint_runs(&items, |ids| ids.as_slice()) {
                answers.extend(mark_sending(c, g, run).await?);
            }
            Ok(answers)
        })
    }
}

/// `items` cut, in order, into runs in which no id comes twice: one statement applies a run,
/// and an id twice in it would be applied once, not in turn.
fn disjoint_runs<'i, T>(items: &[&'i T], ids: impl Fn(&T) -> &[i64]) -> Vec<Vec<&'i T>> {
    let mut runs: Vec<Vec<&T>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let fresh = ids(item).iter().all(|id| !seen.contains(id));
        if !fresh || runs.is_empty() {
            runs.push(Vec::new());
            seen.clear();
        }
        seen.extend(ids(item).iter().copied());
        if let Some(run) = runs.last_mut() {
            run.push(item);
        }
    }
    runs
}

/// Marks queued jobs `sending`, each marking all or none, and returns the ids each marked
/// (design §3.3): a job no longer queued may be another relay's send in flight, and must not
/// be sent again, nor the jobs behind it in its conversation; and only while this relay holds
/// the job's conversation and is alive on the database's clock, so that a relay that lost its
/// lease (it stalled past its TTL, and another took over) sends nothing more; and only the
/// front of the conversation: while an earlier job is still queued or being sent (its outcome
/// not yet applied, or its relay gone and not yet swept), a later one waits, so that a retried
/// job never goes out after the job behind it.
///
/// The markings answer as if run one after another: a job that an earlier marking of the run
/// marks is still queued when a later one is checked, which refuses the later one's jobs
/// behind it just as the job in flight would.
async fn mark_sending(
    c: &Conn,
    g: &mut Group,
    markings: Vec<&Vec<i64>>,
) -> Result<Vec<Vec<i64>>, PgError> {
    let mut ids = Vec::new();
    let mut calls = Vec::new();
    // How many distinct jobs each marking asks for, by its index.
    let mut wanted = Vec::with_capacity(markings.len());
    for (call, marking) in markings.iter().enumerate() {
        let call = i32::try_from(call).unwrap_or(i32::MAX);
        ids.extend(marking.iter().copied());
        calls.extend(std::iter::repeat_n(call, marking.len()));
        let distinct: std::collections::HashSet<&i64> = marking.iter().collect();
        wanted.push(i64::try_from(distinct.len()).unwrap_or(i64::MAX));
    }
    // One statement: the jobs that qualify are locked first, and a marking's marked only if
    // every one it asked for does.
    let rows = sql::query(
        c,
        "WITH input AS (SELECT t.id, t.call FROM unnest($1::bigint[], $2::int[]) AS t(id, call)),
         asked AS MATERIALIZED (
             -- By id alone, so that only the primary key can answer it: the plans must not
             -- depend on statistics, which a young table lacks, and a cached plan keeps.
             SELECT j.id, j.account, j.recipient, j.seq, j.state FROM kefu.jobs j
             WHERE j.id = ANY($1) FOR UPDATE OF j),
         -- Each marking's ids as one array, so that the test below costs one array per job
         -- rather than a scan of every marking's ids.
         batches AS MATERIALIZED (SELECT call, array_agg(id) AS ids FROM input GROUP BY call),
         candidates AS (
             SELECT j.id, i.call FROM asked j JOIN input i ON i.id = j.id
             JOIN batches b ON b.call = i.call
             WHERE j.state = 'queued'
               AND EXISTS (SELECT 1 FROM kefu.leases l WHERE l.lane = 'job'
                           AND l.account = j.account AND l.key = j.recipient
                           AND l.relay_id = $3)
               AND EXISTS (SELECT 1 FROM kefu.relays r WHERE r.relay_id = $3
                           AND r.alive_until_ms > kefu.now_ms())
               -- Two tests, not one with state IN (...): each is answered by its partial
               -- index, where the IN would scan the table. OFFSET 0 keeps each a subquery run
               -- per job with the job's conversation as its index condition; turned into a
               -- join, it was planned as a scan of every conversation's entries.
               AND NOT EXISTS (SELECT 1 FROM kefu.jobs e WHERE e.account = j.account
                               AND e.recipient = j.recipient AND e.seq < j.seq
                               AND e.state = 'queued' AND e.id <> ALL(b.ids) OFFSET 0)
               AND NOT EXISTS (SELECT 1 FROM kefu.jobs e WHERE e.account = j.account
                               AND e.recipient = j.recipient AND e.seq < j.seq
                               AND e.state = 'sending' OFFSET 0)),
         -- Materialised: inlined, it was evaluated again for every job updated.
         complete AS MATERIALIZED (
             SELECT c.call FROM candidates c GROUP BY c.call
             HAVING count(DISTINCT c.id) = ($5::int8[])[c.call + 1])
         UPDATE kefu.jobs j SET state = 'sending', attempts = j.attempts + 1, relay_id = $3,
             updated_at_ms = $4
         FROM candidates c
         WHERE j.id = c.id AND c.call IN (SELECT call FROM complete)
         RETURNING j.id, c.call",
        &[&ids, &calls, &&*g.relay, &g.now, &wanted],
    )
    .await?;
    let mut marked = vec![Vec::new(); markings.len()];
    for row in &rows {
        let id: i64 = sql::get(row, 0)?;
        let call: i32 = sql::get(row, 1)?;
        if let Some(ids) = usize::try_from(call)
            .ok()
            .and_then(|call| marked.get_mut(call))
        {
            ids.push(id);
        }
    }
    Ok(marked)
}

/// Puts back in the queue the jobs of a marking whose answer was lost, if it committed: they
/// were not sent.
async fn unmark(c: &Conn, g: &mut Group, ids: Vec<i64>) -> Result<(), PgError> {
    sql::execute(
        c,
        "UPDATE kefu.jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),
             updated_at_ms = $3
         WHERE id = ANY($1) AND state = 'sending' AND relay_id = $2",
        &[&ids, &&*g.relay, &g.now],
    )
    .await?;
    Ok(())
}

/// Outcomes, recorded together when a group has several in a row.
struct Outcomes;

impl Bulk for Outcomes {
    type Item = (i64, Outcome);
    type Answer = ();
    /// An outcome may be applied before markings of other jobs that were asked for just
    /// before it: as if it had been recorded a moment earlier. Of a job of the same
    /// conversation, the marking then sees the outcome rather than the job in flight, and
    /// answers as it would have a moment later.
    const RUNS_EARLY: bool = true;

    fn jobs((id, _): &(i64, Outcome)) -> Option<&[i64]> {
        Some(std::slice::from_ref(id))
    }

    fn run<'c>(
        c: &'c Conn,
        g: &'c mut Group,
        items: Vec<&'c (i64, Outcome)>,
    ) -> BoxFuture<'c, Result<Vec<()>, PgError>> {
        Box::pin(async move {
            for run in disjoint_runs(&items, |(id, _)| std::slice::from_ref(id)) {
                record(c, g, run).await?;
            }
            Ok(vec![(); items.len()])
        })
    }
}

/// Records attempts' outcomes, only on jobs this relay still has `sending`: one that a sweep
/// settled meanwhile (this relay stalled past its TTL) stays as the sweep left it, never queued
/// again. The common case, jobs no callback reported on while they were being sent, is one
/// statement for them all; a job with such a report is read then, and the report applied to
/// its outcome ([`Outcome::after_report`]).
async fn record(c: &Conn, g: &mut Group, outcomes: Vec<&(i64, Outcome)>) -> Result<(), PgError> {
    let columns: Vec<_> = outcomes
        .iter()
        .map(|(_, outcome)| outcome.columns())
        .collect();
    let ids: Vec<i64> = outcomes.iter().map(|(id, _)| *id).collect();
    let states: Vec<&str> = columns.iter().map(|c| c.state.as_str()).collect();
    let not_before: Vec<Option<i64>> = columns.iter().map(|c| c.not_before_ms).collect();
    let codes: Vec<Option<i64>> = columns.iter().map(|c| c.error_code).collect();
    let reasons: Vec<Option<&str>> = columns.iter().map(|c| c.reason).collect();
    let messages: Vec<Option<&str>> = columns.iter().map(|c| c.error_message).collect();
    let confirm_by: Vec<Option<i64>> = columns.iter().map(|c| c.confirm_by_ms).collect();
    let recorded: std::collections::HashSet<i64> = sql::query(
        c,
        "UPDATE kefu.jobs j SET state = t.state, not_before_ms = coalesce(t.not_before, j.not_before_ms),
             error_code = t.code, reason = t.reason, error_message = t.message,
             updated_at_ms = $8, confirm_by_ms = t.confirm_by, early_message = NULL,
             early_window_ms = NULL
         FROM unnest($1::bigint[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                     $7::int8[]) AS t(id, state, not_before, code, reason, message, confirm_by)
         WHERE j.id = t.id AND j.state = 'sending' AND j.relay_id = $9
           AND j.early_report IS NULL
         RETURNING j.id",
        &[
            &ids, &states, &not_before, &codes, &reasons, &messages, &confirm_by, &g.now,
            &&*g.relay,
        ],
    )
    .await?
    .iter()
    .map(|row| sql::get(row, 0))
    .collect::<Result<_, PgError>>()?;
    for (id, outcome) in outcomes {
        if !recorded.contains(id) {
            record_reported(c, g, *id, outcome).await?;
        }
    }
    Ok(())
}

/// Records the outcome of job `id` if this relay still has it `sending` with a report waiting:
/// the report applied to the outcome, and spent.
async fn record_reported(c: &Conn, g: &Group, id: i64, outcome: &Outcome) -> Result<(), PgError> {
    let Some(row) = sql::query_opt(
        c,
        "SELECT early_report, early_message FROM kefu.jobs
         WHERE id = $1 AND state = 'sending' AND relay_id = $2 FOR UPDATE",
        &[&id, &&*g.relay],
    )
    .await?
    else {
        return Ok(());
    };
    let early: Option<String> = sql::get(&row, 0)?;
    let outcome = match yunzhenji::early_report(early.as_deref(), sql::get(&row, 1)?) {
        Some(report) => outcome.clone().after_report(&report),
        None => outcome.clone(),
    };
    let columns = outcome.columns();
    sql::execute(
        c,
        "UPDATE kefu.jobs SET state = $2, not_before_ms = coalesce($3, not_before_ms),
             error_code = $4, reason = $5, error_message = $6, updated_at_ms = $7,
             confirm_by_ms = $8, early_report = NULL, early_message = NULL,
             early_window_ms = NULL
         WHERE id = $1 AND state = 'sending' AND relay_id = $9",
        &[
            &id,
            &columns.state.as_str(),
            &columns.not_before_ms,
            &columns.error_code,
            &columns.reason,
            &columns.error_message,
            &g.now,
            &columns.confirm_by_ms,
            &&*g.relay,
        ],
    )
    .await?;
    Ok(())
}

/// Why an ambiguous job whose window passed failed, as the desk reads it.
const UNCONFIRMED: &str = "no callback confirmed within the confirmation window that the platform took this message; it most likely never left, and the desk may send it again";

/// Settles, in one statement, every confirmation whose window ended at or before `$1`
/// (clearing a stray window on a job in another state), and returns the settled jobs with their
/// state before.
const SETTLE: &str = "
WITH due AS (
    SELECT id, account, state, confirm_by_ms FROM kefu.jobs
    WHERE confirm_by_ms IS NOT NULL AND confirm_by_ms <= $1 FOR UPDATE),
settled AS (
    UPDATE kefu.jobs j SET
        state = CASE due.state WHEN 'accepted' THEN 'delivered' ELSE 'failed' END,
        reason = CASE due.state WHEN 'accepted' THEN NULL ELSE $4 END,
        error_message = CASE due.state WHEN 'accepted' THEN j.error_message ELSE $2 END,
        confirm_by_ms = NULL, updated_at_ms = $3
    FROM due WHERE j.id = due.id AND due.state IN ('accepted', 'ambiguous')
    RETURNING due.id, due.account, due.state, due.confirm_by_ms),
stray AS (
    UPDATE kefu.jobs j SET confirm_by_ms = NULL
    FROM due WHERE j.id = due.id AND due.state NOT IN ('accepted', 'ambiguous'))
SELECT id, account, state FROM settled ORDER BY confirm_by_ms, id";

async fn settle(c: &Conn, now: i64, now_ms: i64) -> Result<Vec<Settled>, PgError> {
    let rows = sql::query(
        c,
        SETTLE,
        &[&now_ms, &UNCONFIRMED, &now, &Reason::Unconfirmed.as_str()],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = sql::get(row, 0)?;
            let before: String = sql::get(row, 2)?;
            let (state, reason) = match parse_state(id, &before)? {
                JobState::Accepted => (JobState::Delivered, None),
                _ => (JobState::Failed, Some(Reason::Unconfirmed)),
            };
            Ok(Settled {
                id,
                account: sql::get(row, 1)?,
                state,
                reason,
            })
        })
        .collect()
}

/// The columns [`read_status`] reads, in its order.
pub(crate) const STATUS_COLUMNS: &str = "id, account, recipient, operation, state, attempts,
    error_code, reason, error_message, created_at_ms, updated_at_ms, confirm_by_ms";

/// A job's status from a row of [`STATUS_COLUMNS`] (more columns may follow), its stored state
/// and reason checked.
pub(crate) fn read_status(row: &Row) -> Result<JobStatus, PgError> {
    let id: i64 = sql::get(row, 0)?;
    let state: String = sql::get(row, 4)?;
    let reason: Option<String> = sql::get(row, 7)?;
    Ok(JobStatus {
        id,
        account: sql::get(row, 1)?,
        openid: sql::get(row, 2)?,
        operation: sql::get(row, 3)?,
        status: parse_state(id, &state)?,
        attempts: sql::unsigned(row, 5)?,
        error_code: sql::get(row, 6)?,
        reason: match reason {
            None => None,
            Some(name) => Some(
                Reason::parse(&name)
                    .ok_or_else(|| PgError::Data(format!("job {id} has unknown reason {name}")))?,
            ),
        },
        error_message: sql::get(row, 8)?,
        confirm_by_ms: sql::get(row, 11)?,
        created_at_ms: sql::get(row, 9)?,
        updated_at_ms: sql::get(row, 10)?,
    })
}

async fn get(c: &Conn, id: i64) -> Result<Option<JobStatus>, PgError> {
    let row = sql::query_opt(
        c,
        &format!("SELECT {STATUS_COLUMNS} FROM kefu.jobs WHERE id = $1"),
        &[&id],
    )
    .await?;
    row.as_ref().map(read_status).transpose()
}

/// A resend: the key, then the job (locked), its conversation, and a new `seq`.
async fn resend(
    c: &Conn,
    g: &mut Group,
    id: i64,
    key: Option<Idempotent>,
    operator: Option<String>,
) -> Result<Claimed<Result<PendingJob, ResendError>>, PgError> {
    if let Some(key) = &key {
        if let Some(earlier) = keys::claim(c, &key.claim, g.now).await? {
            return Ok(Claimed::Earlier(earlier));
        }
    }
    let queued = requeue(c, g.now, id, operator.as_deref()).await?;
    if let Some(key) = key {
        match &queued {
            Ok(job) => keys::save(c, &key.claim, &(key.answer)(&[job.id()])).await?,
            Err(_) => keys::release(c, &key.claim).await?,
        }
    }
    Ok(Claimed::Done(queued))
}

async fn requeue(
    c: &Conn,
    now: i64,
    id: i64,
    operator: Option<&str>,
) -> Result<Result<PendingJob, ResendError>, PgError> {
    let Some(row) = sql::query_opt(
        c,
        "SELECT state, account, recipient FROM kefu.jobs WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    else {
        return Ok(Err(ResendError::NotFound));
    };
    let state: String = sql::get(&row, 0)?;
    let state = parse_state(id, &state)?;
    if !matches!(state, JobState::Failed | JobState::Ambiguous) {
        return Ok(Err(ResendError::NotResendable(state)));
    }
    let account: String = sql::get(&row, 1)?;
    let recipient: String = sql::get(&row, 2)?;
    let sql = format!(
        "UPDATE kefu.jobs SET state = 'queued', attempts = 0, not_before_ms = $2,
             updated_at_ms = $2, error_code = NULL, reason = NULL, error_message = NULL,
             seq = nextval('kefu.job_seq'), confirm_by_ms = NULL,
             operator_action = CASE WHEN $3::text IS NULL THEN NULL ELSE 'resend' END,
             operator = $3, operator_at_ms = CASE WHEN $3::text IS NULL THEN NULL ELSE $2::int8 END
         WHERE id = $1
         RETURNING {PENDING_COLUMNS}"
    );
    let rows = sql::execute_then_query(
        c,
        (
            LOCK_CONVERSATIONS,
            &[
                &JOB_LANE,
                &vec![account.as_str()],
                &vec![recipient.as_str()],
                &now,
            ],
        ),
        (&sql, &[&id, &now, &operator]),
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| PgError::Data(format!("job {id} vanished while it was locked")))?;
    Ok(Ok(read_pending(row)?))
}

async fn depth(c: &Conn) -> Result<Vec<(JobState, u64)>, PgError> {
    let rows = sql::query(
        c,
        "SELECT state, count(*) FROM kefu.jobs GROUP BY state",
        &[],
    )
    .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let state: String = sql::get(row, 0)?;
        let count: i64 = sql::get(row, 1)?;
        if let Some(state) = JobState::parse(&state) {
            counts.push((state, u64::try_from(count).unwrap_or(0)));
        }
    }
    Ok(counts)
}

impl JobStore for PgStore {
    fn insert(
        &self,
        jobs: Vec<NewJob>,
        key: Option<Idempotent>,
        desk_call: Option<DeskCall>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Vec<PendingJob>>>> {
        let mut locks = Locks::default();
        if let Some(call) = &desk_call {
            locks = locks.session(&call.account, &call.openid);
        }
        for job in &jobs {
            locks = locks.job(&job.account, &job.recipient);
        }
        let insert = NewInsert { jobs, desk_call };
        match key {
            None => {
                let stored = self.api_bulk::<Inserts>(locks, insert);
                Box::pin(async move { Ok(Claimed::Done(stored.await?)) })
            }
            Some(key) => self.api_unordered(
                locks,
                work(move |c, g| Box::pin(insert_once(c, g, insert.clone(), key.clone()))),
            ),
        }
    }

    fn mark_sending(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let marked = self.mark_sending_many(&[id]);
        Box::pin(async move { Ok(!marked.await?.is_empty()) })
    }

    /// A marking that fails may still have committed, its answer lost with the connection; the
    /// caller sends nothing on an error, so the jobs are put back in the queue once the database
    /// answers (nothing changes if the marking never committed), rather than stay `sending`
    /// until this relay stops and be called ambiguous then.
    fn mark_sending_many(&self, ids: &[i64]) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        let ids = ids.to_vec();
        let marking = self.delivery_bulk::<Markings>(ids.clone());
        Box::pin(async move {
            let marked = marking.await;
            if marked.is_err() {
                let unmarking = repeatable(move |c, g| Box::pin(unmark(c, g, ids.clone())));
                if let Err(error) = self.detach("an unanswered marking", unmarking) {
                    tracing::warn!(
                        "jobs whose marking failed stay sending until this relay stops: {error}"
                    );
                }
            }
            marked
        })
    }

    fn record(&self, id: i64, outcome: Outcome) -> StoreResult<()> {
        self.detach_bulk::<Outcomes>("a delivery outcome", (id, outcome))
    }

    fn get(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<JobStatus>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(get(&c, id).await?)
        })
    }

    fn resend(
        &self,
        id: i64,
        key: Option<Idempotent>,
        operator: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Claimed<Result<PendingJob, ResendError>>>> {
        // Its conversation is known only once the job is read: it is locked then.
        self.api(
            Locks::default(),
            work(move |c, g| Box::pin(resend(c, g, id, key.clone(), operator.clone()))),
        )
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(JobState, u64)>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(depth(&c).await?)
        })
    }

    fn purge_keys(&self) -> BoxFuture<'_, StoreResult<usize>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(keys::purge(&c, kefu_core::now_ms()).await?)
        })
    }

    fn settle_confirmations(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(settle(&c, kefu_core::now_ms(), now_ms).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::disjoint_runs;

    #[test]
    fn runs_are_cut_where_an_id_comes_again() {
        let (a, b, c, d) = (vec![1, 2], vec![3], vec![2], vec![4, 4]);
        let items = [&a, &b, &c, &d];
        let runs = disjoint_runs(&items, |ids: &Vec<i64>| ids.as_slice());
        assert_eq!(runs, [vec![&a, &b], vec![&c, &d]]);
        assert!(disjoint_runs(&[], |ids: &Vec<i64>| ids.as_slice()).is_empty());
    }
}
