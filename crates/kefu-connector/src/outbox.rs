//! The durable outbox: an embedded SQLite database (WAL, `synchronous=FULL`) owned by one thread
//! that commits in groups.
//!
//! Every call waits for the commit that makes its change durable, but concurrent calls share one
//! commit: the store thread takes every command waiting in its queue, runs them in a single
//! transaction, commits once, and only then answers them all. That keeps each acknowledgement
//! durable while the fsync cost is spread over the whole group.
//!
//! A job's life: `queued` → `sending` (made durable *before* the request leaves) → `delivered`,
//! `failed`, `ambiguous`, or back to `queued` for a retry. A job found in `sending` at start-up was
//! interrupted mid-send: it may have reached the user, so it becomes `ambiguous` and is never sent
//! again on the connector's own initiative.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::idempotency::{self, Claim, Claimed, Saved};

/// The platform call a job makes; stored by its endpoint name.
pub use kefu_client::Operation;

fn parse_operation(name: &str) -> Option<Operation> {
    Operation::ALL.into_iter().find(|op| op.name() == name)
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its turn or for a retry.
    Queued,
    /// A request is (or was, if the connector stopped) on its way.
    Sending,
    /// The platform accepted it.
    Delivered,
    /// The platform refused it, or retries ran out; it was not delivered.
    Failed,
    /// It may or may not have reached the user; only the desk may decide to send it again.
    Ambiguous,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Sending => "sending",
            JobState::Delivered => "delivered",
            JobState::Failed => "failed",
            JobState::Ambiguous => "ambiguous",
        }
    }

    fn parse(text: &str) -> Option<JobState> {
        match text {
            "queued" => Some(JobState::Queued),
            "sending" => Some(JobState::Sending),
            "delivered" => Some(JobState::Delivered),
            "failed" => Some(JobState::Failed),
            "ambiguous" => Some(JobState::Ambiguous),
            _ => None,
        }
    }

    /// Whether the job is finished until the desk asks for a resend.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Delivered | JobState::Failed | JobState::Ambiguous
        )
    }
}

/// A job to store: one platform call for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The user; jobs of one user are delivered in the order they were stored.
    pub openid: String,
    /// The call to make.
    pub operation: Operation,
    /// The plaintext XML, exactly as it will be encrypted and sent.
    pub payload: String,
}

/// A stored job that still has to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// The job's id.
    pub id: i64,
    /// The user.
    pub openid: String,
    /// The call to make.
    pub operation: Operation,
    /// The plaintext XML.
    pub payload: String,
    /// Attempts made so far in this round (reset by a resend).
    pub attempts: u32,
    /// When the next attempt may start, in Unix milliseconds.
    pub not_before_ms: i64,
}

/// What the desk sees of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: i64,
    /// The user.
    pub openid: String,
    /// The call.
    #[serde(serialize_with = "operation_name")]
    pub operation: Operation,
    /// Where it stands.
    pub status: JobState,
    /// Attempts made in the current round.
    pub attempts: u32,
    /// The platform's code or the failure class of the last failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// What went wrong last, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Stored at, in Unix milliseconds.
    pub created_at_ms: i64,
    /// Last changed at, in Unix milliseconds.
    pub updated_at_ms: i64,
}

/// The result of an attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the platform.
    Delivered,
    /// Back in the queue, to be tried again no earlier than the given time (Unix ms).
    Retry {
        /// Earliest start of the next attempt.
        not_before_ms: i64,
        /// Why the attempt failed.
        code: Option<i64>,
        /// Description of the failure.
        message: String,
    },
    /// Not delivered, and not to be retried.
    Failed {
        /// The platform's code, if it answered with one.
        code: Option<i64>,
        /// Description of the failure.
        message: String,
    },
    /// Perhaps delivered; never retried automatically.
    Ambiguous {
        /// Description of the failure.
        message: String,
    },
}

/// Why a resend was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendError {
    /// No job has that id.
    NotFound,
    /// Only failed or ambiguous jobs may be sent again.
    NotResendable(JobState),
}

/// The store failed: the disk, the file, or the database.
#[derive(Debug, thiserror::Error)]
#[error("outbox storage failed: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// A failure described by the code that found it, such as a row that cannot be read back.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError(message.into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError(error.to_string())
    }
}

fn operation_name<S: serde::Serializer>(op: &Operation, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(op.name())
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Work that another part of the connector runs inside the store's group transaction, given the
/// transaction and the group's clock (Unix milliseconds).
pub type TxWork<T> =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<T, StoreError> + Send>;

/// A [`TxWork`] with its answer, type-erased for the command queue.
type Work = Box<dyn FnOnce(&rusqlite::Transaction<'_>, i64) -> Option<DeferredAnswer> + Send>;

/// A request's `Idempotency-Key`, claimed in the transaction that does the request's work, with
/// the answer to save if the work is done (see [`crate::idempotency`]).
#[derive(Debug, Clone)]
pub struct Idempotent {
    /// The key to claim.
    pub claim: Claim,
    /// The answer to save with the key, given the ids of the jobs the work stored or queued.
    pub answer: fn(&[i64]) -> Saved,
}

enum Command {
    Insert(
        Vec<NewJob>,
        Option<TxWork<()>>,
        Option<Idempotent>,
        Reply<Claimed<Vec<PendingJob>>>,
    ),
    Run(Work),
    Ping(Reply<()>),
    MarkSending(i64, Reply<()>),
    Record(i64, Outcome),
    Get(i64, Reply<Option<JobStatus>>),
    Resend(
        i64,
        Option<Idempotent>,
        Reply<Claimed<Result<PendingJob, ResendError>>>,
    ),
    Depth(Reply<Vec<(JobState, u64)>>),
    Checkpoint(Reply<()>),
}

/// A handle on the outbox. Clones share the one store thread, which stops when the last handle
/// is dropped.
#[derive(Clone)]
pub struct Outbox {
    commands: mpsc::UnboundedSender<Command>,
}

/// How many commands at most share one transaction.
const MAX_GROUP: usize = 4096;

impl Outbox {
    /// Opens (or creates) the outbox at `path`, recovers from an interrupted run, and returns the
    /// jobs still to deliver, in order.
    pub fn open(path: &Path) -> Result<(Outbox, Vec<PendingJob>), StoreError> {
        let lock = lock_owner(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        // No exclusive locking mode: other processes may read the file while the relay runs
        // (`sqlite3 … "VACUUM INTO 'backup.sqlite3'"`, inspection); the lock file above keeps a
        // second relay out.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .and_then(|()| conn.execute_batch(idempotency::SCHEMA))?;
        let pending = recover(&mut conn)?;
        let last_seq: i64 =
            conn.query_row("SELECT IFNULL(MAX(seq), 0) FROM outbox", [], |row| {
                row.get(0)
            })?;
        let (commands, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("kefu-outbox".into())
            .spawn(move || {
                run_store(conn, last_seq, receiver);
                // Held until the connection is closed.
                drop(lock);
            })
            .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
        Ok((Outbox { commands }, pending))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| StoreError("the store thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the store thread has stopped".into()))?
    }

    /// Stores jobs durably, in order, and returns them with their ids. When this returns, the
    /// jobs survive a crash.
    pub async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<PendingJob>, StoreError> {
        self.call(|reply| Command::Insert(jobs, None, None, reply))
            .await
            .and_then(without_key)
    }

    /// Stores jobs like [`Outbox::insert`] and runs `then` in the same transaction, so that both
    /// become durable together or not at all (the desk API records a session's new state this
    /// way).
    pub async fn insert_with(
        &self,
        jobs: Vec<NewJob>,
        then: TxWork<()>,
    ) -> Result<Vec<PendingJob>, StoreError> {
        self.call(|reply| Command::Insert(jobs, Some(then), None, reply))
            .await
            .and_then(without_key)
    }

    /// Stores jobs like [`Outbox::insert_with`] (`then` may be `None`) unless `key` is already
    /// in use: then nothing is stored, and the earlier use is returned. The key is looked up,
    /// and saved with the work's answer, in the transaction that stores the jobs: two requests
    /// with one key cannot both store theirs, and the key is durable exactly when the jobs are.
    pub async fn insert_once(
        &self,
        key: Idempotent,
        jobs: Vec<NewJob>,
        then: Option<TxWork<()>>,
    ) -> Result<Claimed<Vec<PendingJob>>, StoreError> {
        self.call(|reply| Command::Insert(jobs, then, Some(key), reply))
            .await
    }

    /// Runs `work` inside the store's next group transaction and answers once that transaction
    /// is committed: when this returns `Ok`, the work's writes survive a crash.
    ///
    /// The work runs under a savepoint: if it fails, its own writes are undone and the rest of
    /// the group is unaffected. It runs on the store thread, so it must be short. The inbound
    /// side (callbacks, events, sessions) keeps its tables in this same database this way.
    pub async fn run<T: Send + 'static>(&self, work: TxWork<T>) -> Result<T, StoreError> {
        self.call(|reply| {
            Command::Run(Box::new(move |tx, now| {
                Some(deferred(reply, in_savepoint(tx, |tx| work(tx, now))))
            }))
        })
        .await
    }

    /// Runs `work` like [`Outbox::run`] without waiting for its commit. Commands run in the order
    /// they are sent, so its writes are durable no later than anything stored afterwards. A
    /// failure is logged. Fails only if the store thread has stopped.
    pub fn run_detached(&self, work: TxWork<()>) -> Result<(), StoreError> {
        self.commands
            .send(Command::Run(Box::new(move |tx, now| {
                if let Err(error) = in_savepoint(tx, |tx| work(tx, now)) {
                    tracing::error!("store work failed: {error}");
                }
                None
            })))
            .map_err(|_| StoreError("the store thread has stopped".into()))
    }

    /// Durably marks a job as being sent and counts the attempt, before the request leaves.
    pub async fn mark_sending(&self, id: i64) -> Result<(), StoreError> {
        self.call(|reply| Command::MarkSending(id, reply)).await
    }

    /// Records the outcome of an attempt, without waiting for its commit.
    ///
    /// Commands are executed in the order they are sent, so the outcome is durable no later than
    /// anything the caller stores afterwards, such as marking the user's next job `sending`. If
    /// the process dies first, the job is found `sending` at the next start and reported
    /// ambiguous: never resent, never lost. Waiting here would only add a commit to every
    /// delivery. Fails only if the store thread has stopped.
    pub fn record(&self, id: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.commands
            .send(Command::Record(id, outcome))
            .map_err(|_| StoreError("the store thread has stopped".into()))
    }

    /// The status of a job, or `None` if there is no such job.
    pub async fn get(&self, id: i64) -> Result<Option<JobStatus>, StoreError> {
        self.call(|reply| Command::Get(id, reply)).await
    }

    /// Puts a failed or ambiguous job back in the queue, at the end of its user's conversation.
    pub async fn resend(&self, id: i64) -> Result<Result<PendingJob, ResendError>, StoreError> {
        self.call(|reply| Command::Resend(id, None, reply))
            .await
            .and_then(without_key)
    }

    /// Resends like [`Outbox::resend`] unless `key` is already in use (see
    /// [`Outbox::insert_once`]). Only a resend that queued the job saves the key: a refused one
    /// leaves it free.
    pub async fn resend_once(
        &self,
        id: i64,
        key: Idempotent,
    ) -> Result<Claimed<Result<PendingJob, ResendError>>, StoreError> {
        self.call(|reply| Command::Resend(id, Some(key), reply))
            .await
    }

    /// Checks that the store thread answers and the database is readable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(Command::Ping).await
    }

    /// Copies the write-ahead log into the database file and empties it. A stopping relay does
    /// this last, so that the outbox file alone holds everything.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.call(Command::Checkpoint).await
    }

    /// The number of jobs in each state.
    pub async fn depth(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.call(Command::Depth).await
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    openid TEXT NOT NULL,
    operation TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_unfinished ON outbox (state, seq)
    WHERE state IN ('queued', 'sending');
";

/// Now, in Unix milliseconds: the clock of every stored time.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn recover(conn: &mut Connection) -> Result<Vec<PendingJob>, StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE outbox SET state = 'ambiguous', updated_at_ms = ?1,
             error_message = 'the connector stopped while this was being sent; it may have been delivered'
         WHERE state = 'sending'",
        params![now_ms()],
    )?;
    let pending = {
        let mut statement = tx.prepare(
            "SELECT id, openid, operation, payload, attempts, not_before_ms FROM outbox
             WHERE state = 'queued' ORDER BY seq",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })?;
        let mut pending = Vec::new();
        for row in rows {
            let (id, openid, operation, payload, attempts, not_before_ms) = row?;
            let operation = parse_operation(&operation)
                .ok_or_else(|| StoreError(format!("job {id} has unknown operation {operation}")))?;
            pending.push(PendingJob {
                id,
                openid,
                operation,
                payload,
                attempts,
                not_before_ms,
            });
        }
        pending
    };
    tx.commit()?;
    Ok(pending)
}

/// Takes the outbox's lock file (`<path>.lock`, held for the life of the store thread), so
/// that a second relay on the same outbox is refused: it would recover, and so poison, the jobs
/// the first one is sending.
fn lock_owner(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError(format!(
                "cannot open the lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    // A relay restarted in-process may still be closing its store thread: wait for it as
    // SQLite's busy timeout would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut locked = fs4::FileExt::try_lock(&file);
    while matches!(locked, Err(fs4::TryLockError::WouldBlock))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        locked = fs4::FileExt::try_lock(&file);
    }
    match locked {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(StoreError(format!(
            "{} is in use by another process (it holds {}); run one relay per outbox",
            path.display(),
            lock_path.display()
        ))),
        Err(fs4::TryLockError::Error(e)) => Err(StoreError(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

fn run_store(
    mut conn: Connection,
    mut last_seq: i64,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut group = Vec::new();
    let mut next = None;
    while let Some(first) = next.take().or_else(|| commands.blocking_recv()) {
        // A checkpoint cannot run inside the group's transaction: it ends a group.
        if let Command::Checkpoint(reply) = first {
            let _ = reply.send(checkpoint(&conn));
            continue;
        }
        group.push(first);
        while group.len() < MAX_GROUP {
            match commands.try_recv() {
                Ok(command @ Command::Checkpoint(_)) => {
                    next = Some(command);
                    break;
                }
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        execute_group(&mut conn, &mut last_seq, &mut group);
    }
}

/// Moves everything in the WAL into the database file and empties the WAL, so that the file
/// alone holds every committed row (a stopped relay's outbox can be copied on its own).
fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(StoreError(
            "the checkpoint could not finish: another process is reading the outbox".into(),
        ));
    }
    Ok(())
}

/// Runs a group of commands in one transaction and answers them after the commit.
///
/// `last_seq` is the highest ordering key handed out; it is kept in memory so that an insert
/// never scans the table.
fn execute_group(conn: &mut Connection, last_seq: &mut i64, group: &mut Vec<Command>) {
    let seq_before = *last_seq;
    let mut answers: Vec<DeferredAnswer> = Vec::with_capacity(group.len());
    let result = (|| -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        let now = now_ms();
        for command in group.drain(..) {
            match command {
                Command::Insert(jobs, None, None, reply) => {
                    let stored = insert(&tx, jobs, now, last_seq).map(Claimed::Done);
                    answers.push(deferred(reply, stored));
                }
                Command::Insert(jobs, then, key, reply) => {
                    let before = *last_seq;
                    let stored = in_savepoint(&tx, |tx| {
                        once(
                            tx,
                            now,
                            key,
                            |stored: &Vec<PendingJob>| {
                                Some(stored.iter().map(|job| job.id).collect())
                            },
                            |tx| {
                                let stored = insert(tx, jobs, now, last_seq)?;
                                if let Some(then) = then {
                                    then(tx, now)?;
                                }
                                Ok(stored)
                            },
                        )
                    });
                    if stored.is_err() {
                        *last_seq = before;
                    }
                    answers.push(deferred(reply, stored));
                }
                Command::Run(work) => {
                    if let Some(answer) = work(&tx, now) {
                        answers.push(answer);
                    }
                }
                Command::MarkSending(id, reply) => {
                    let done = tx
                        .prepare_cached(
                            "UPDATE outbox SET state = 'sending', attempts = attempts + 1,
                                 updated_at_ms = ?2 WHERE id = ?1",
                        )
                        .and_then(|mut statement| statement.execute(params![id, now]))
                        .map(drop)
                        .map_err(StoreError::from);
                    answers.push(deferred(reply, done));
                }
                Command::Record(id, outcome) => {
                    if let Err(error) = record(&tx, id, &outcome, now) {
                        tracing::error!(job = id, "cannot record the outcome: {error}");
                    }
                }
                Command::Get(id, reply) => {
                    let _ = reply.send(get(&tx, id));
                }
                Command::Resend(id, None, reply) => {
                    let done = resend(&tx, id, now, last_seq).map(Claimed::Done);
                    answers.push(deferred(reply, done));
                }
                Command::Resend(id, key, reply) => {
                    let before = *last_seq;
                    let done = in_savepoint(&tx, |tx| {
                        once(
                            tx,
                            now,
                            key,
                            |queued: &Result<PendingJob, ResendError>| {
                                queued.as_ref().ok().map(|job| vec![job.id])
                            },
                            |tx| resend(tx, id, now, last_seq),
                        )
                    });
                    if done.is_err() {
                        *last_seq = before;
                    }
                    answers.push(deferred(reply, done));
                }
                Command::Ping(reply) => {
                    let alive = tx
                        .query_row("SELECT 1", [], |_| Ok(()))
                        .map_err(StoreError::from);
                    let _ = reply.send(alive);
                }
                Command::Depth(reply) => {
                    let _ = reply.send(depth(&tx));
                }
                // run_store never puts one in a group.
                Command::Checkpoint(reply) => {
                    let _ = reply.send(Err(StoreError(
                        "a checkpoint cannot run inside a transaction".into(),
                    )));
                }
            }
        }
        tx.commit()?;
        Ok(())
    })();
    let failure = result.err();
    if failure.is_some() {
        *last_seq = seq_before;
    }
    for answer in answers {
        answer(failure.as_ref());
    }
}

/// Does `work` unless `key` is in use, and saves the key with the answer for the ids `done`
/// finds in the work's result (`None`: the work was refused, and the key stays free). The caller
/// runs this under a savepoint, so that a failure undoes the work and the key together.
fn once<T>(
    tx: &rusqlite::Transaction<'_>,
    now: i64,
    key: Option<Idempotent>,
    done: impl FnOnce(&T) -> Option<Vec<i64>>,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<Claimed<T>, StoreError> {
    if let Some(key) = &key {
        if let Some(earlier) = idempotency::earlier(tx, &key.claim, now)? {
            return Ok(Claimed::Earlier(earlier));
        }
    }
    let result = work(tx)?;
    if let (Some(key), Some(ids)) = (key, done(&result)) {
        let saved = (key.answer)(&ids);
        idempotency::save(tx, &key.claim, now, &saved)?;
    }
    Ok(Claimed::Done(result))
}

/// The result of a command sent without a key, which cannot have found one in use.
fn without_key<T>(claimed: Claimed<T>) -> Result<T, StoreError> {
    match claimed {
        Claimed::Done(value) => Ok(value),
        Claimed::Earlier(_) => Err(StoreError::new(
            "a request without an Idempotency-Key found an earlier use of one",
        )),
    }
}

/// A reply waiting for the group's commit; it is told whether the commit failed.
type DeferredAnswer = Box<dyn FnOnce(Option<&StoreError>)>;

/// Runs `work` under a savepoint of the group transaction: its writes are kept if it succeeds
/// and undone if it fails, leaving the other commands of the group untouched.
fn in_savepoint<T>(
    tx: &rusqlite::Transaction<'_>,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    tx.execute_batch("SAVEPOINT work")?;
    match work(tx) {
        Ok(value) => {
            tx.execute_batch("RELEASE work")?;
            Ok(value)
        }
        Err(error) => {
            tx.execute_batch("ROLLBACK TO work; RELEASE work")?;
            Err(error)
        }
    }
}

/// An answer held back until the commit: if the commit fails, every caller learns it.
fn deferred<T: 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> DeferredAnswer {
    Box::new(move |commit_failure| {
        let _ = reply.send(match commit_failure {
            Some(failure) => Err(StoreError(failure.0.clone())),
            None => result,
        });
    })
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    jobs: Vec<NewJob>,
    now: i64,
    last_seq: &mut i64,
) -> Result<Vec<PendingJob>, StoreError> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO outbox (seq, openid, operation, payload, state, not_before_ms,
                             created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?5)",
    )?;
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        *last_seq += 1;
        statement.execute(params![
            *last_seq,
            job.openid,
            job.operation.name(),
            job.payload,
            now
        ])?;
        stored.push(PendingJob {
            id: tx.last_insert_rowid(),
            openid: job.openid,
            operation: job.operation,
            payload: job.payload,
            attempts: 0,
            not_before_ms: now,
        });
    }
    Ok(stored)
}

fn record(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    outcome: &Outcome,
    now: i64,
) -> Result<(), StoreError> {
    let (state, not_before, code, message) = match outcome {
        Outcome::Delivered => (JobState::Delivered, None, None, None),
        Outcome::Retry {
            not_before_ms,
            code,
            message,
        } => (JobState::Queued, Some(*not_before_ms), *code, Some(message)),
        Outcome::Failed { code, message } => (JobState::Failed, None, *code, Some(message)),
        Outcome::Ambiguous { message } => (JobState::Ambiguous, None, None, Some(message)),
    };
    tx.prepare_cached(
        "UPDATE outbox SET state = ?2, not_before_ms = IFNULL(?3, not_before_ms),
             error_code = ?4, error_message = ?5, updated_at_ms = ?6
         WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), not_before, code, message, now])?;
    Ok(())
}

fn get(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Option<JobStatus>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT openid, operation, state, attempts, error_code, error_message,
                    created_at_ms, updated_at_ms
             FROM outbox WHERE id = ?1",
        )?
        .query_row(params![id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })
        .optional()?;
    let Some((openid, operation, state, attempts, error_code, error_message, created, updated)) =
        row
    else {
        return Ok(None);
    };
    Ok(Some(JobStatus {
        id,
        openid,
        operation: parse_operation(&operation)
            .ok_or_else(|| StoreError(format!("job {id} has unknown operation {operation}")))?,
        status: JobState::parse(&state)
            .ok_or_else(|| StoreError(format!("job {id} has unknown state {state}")))?,
        attempts,
        error_code,
        error_message,
        created_at_ms: created,
        updated_at_ms: updated,
    }))
}

fn resend(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    now: i64,
    last_seq: &mut i64,
) -> Result<Result<PendingJob, ResendError>, StoreError> {
    let Some(status) = get(tx, id)? else {
        return Ok(Err(ResendError::NotFound));
    };
    if !matches!(status.status, JobState::Failed | JobState::Ambiguous) {
        return Ok(Err(ResendError::NotResendable(status.status)));
    }
    *last_seq += 1;
    tx.execute(
        "UPDATE outbox SET state = 'queued', attempts = 0, not_before_ms = ?2, updated_at_ms = ?2,
             error_code = NULL, error_message = NULL, seq = ?3
         WHERE id = ?1",
        params![id, now, *last_seq],
    )?;
    let payload: String = tx.query_row(
        "SELECT payload FROM outbox WHERE id = ?1",
        params![id],
        |row| row.get(0),
    )?;
    Ok(Ok(PendingJob {
        id,
        openid: status.openid,
        operation: status.operation,
        payload,
        attempts: 0,
        not_before_ms: now,
    }))
}

fn depth(tx: &rusqlite::Transaction<'_>) -> Result<Vec<(JobState, u64)>, StoreError> {
    let mut statement = tx.prepare_cached("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, count) = row?;
        if let Some(state) = JobState::parse(&state) {
            counts.push((state, count));
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(openid: &str, payload: &str) -> NewJob {
        NewJob {
            openid: openid.into(),
            operation: Operation::SendMsg,
            payload: payload.into(),
        }
    }

    #[tokio::test]
    async fn jobs_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let (outbox, pending) = Outbox::open(&path).unwrap();
            assert!(pending.is_empty());
            let ids: Vec<i64> = outbox
                .insert(vec![job("a", "1"), job("b", "2"), job("a", "3")])
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect();
            assert_eq!(ids.len(), 3);
            outbox.mark_sending(ids[1]).await.unwrap();
        }
        let (outbox, pending) = Outbox::open(&path).unwrap();
        let payloads: Vec<_> = pending.iter().map(|j| j.payload.as_str()).collect();
        assert_eq!(payloads, ["1", "3"]);
        // The job interrupted mid-send is never resent on our own initiative.
        let interrupted = outbox.get(2).await.unwrap().unwrap();
        assert_eq!(interrupted.status, JobState::Ambiguous);
        assert!(
            interrupted
                .error_message
                .unwrap()
                .contains("may have been delivered")
        );
    }

    #[test]
    fn a_second_owner_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let _first = Outbox::open(&path).unwrap();
        let error = Outbox::open(&path).err().unwrap().to_string();
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
        let (outbox, _) = Outbox::open(&path).unwrap();
        outbox
            .insert(vec![job("o1", "1"), job("o2", "2")])
            .await
            .unwrap();
        outbox.checkpoint().await.unwrap();
        let wal = dir.path().join("outbox.sqlite3-wal");
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
        // The file copied alone, without its WAL, holds the jobs.
        let copy = dir.path().join("copy.sqlite3");
        std::fs::copy(&path, &copy).unwrap();
        assert_eq!(jobs_in(&copy), 2);
        // The store goes on after it.
        outbox.insert(vec![job("o3", "3")]).await.unwrap();
    }

    #[tokio::test]
    async fn another_process_can_back_it_up_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let (outbox, _) = Outbox::open(&path).unwrap();
        outbox
            .insert(vec![job("o1", "1"), job("o2", "2")])
            .await
            .unwrap();
        // What `sqlite3 outbox.sqlite3 "VACUUM INTO 'backup.sqlite3'"` does.
        let backup = dir.path().join("backup.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
            .unwrap();
        // The relay keeps writing while a reader is open.
        outbox.insert(vec![job("o3", "3")]).await.unwrap();
        assert_eq!(jobs_in(&backup), 2);
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let outbox = outbox.clone();
                tokio::spawn(async move { outbox.insert(vec![job("u", &i.to_string())]).await })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap().unwrap().iter().map(|j| j.id));
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let depth = outbox.depth().await.unwrap();
        assert_eq!(depth, vec![(JobState::Queued, 200)]);
    }

    #[tokio::test]
    async fn outcomes_and_resend() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        let ids: Vec<i64> = outbox
            .insert(vec![job("u", "x"), job("u", "y")])
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        outbox.mark_sending(ids[0]).await.unwrap();
        outbox
            .record(
                ids[0],
                Outcome::Failed {
                    code: Some(1001),
                    message: "TOKEN invalid".into(),
                },
            )
            .unwrap();
        let status = outbox.get(ids[0]).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.error_code, Some(1001));
        assert_eq!(status.attempts, 1);

        assert_eq!(
            outbox.resend(ids[1]).await.unwrap(),
            Err(ResendError::NotResendable(JobState::Queued))
        );
        assert_eq!(
            outbox.resend(999).await.unwrap(),
            Err(ResendError::NotFound)
        );
        let again = outbox.resend(ids[0]).await.unwrap().unwrap();
        assert_eq!(again.payload, "x");
        let status = outbox.get(ids[0]).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Queued);
        assert_eq!(status.error_code, None);
        assert_eq!(outbox.get(12345).await.unwrap(), None);
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

    fn saved(body: &str) -> Claimed<Vec<i64>> {
        Claimed::Earlier(idempotency::Earlier::Same(Saved {
            status: 202,
            body: body.as_bytes().to_vec(),
        }))
    }

    fn ids(claimed: Claimed<Vec<PendingJob>>) -> Claimed<Vec<i64>> {
        match claimed {
            Claimed::Done(jobs) => Claimed::Done(jobs.iter().map(|job| job.id).collect()),
            Claimed::Earlier(earlier) => Claimed::Earlier(earlier),
        }
    }

    #[tokio::test]
    async fn a_key_stores_once_across_a_reopen_and_refuses_another_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite3");
        {
            let (outbox, _) = Outbox::open(&path).unwrap();
            let first = outbox
                .insert_once(keyed("k", "h1"), vec![job("u", "x"), job("u", "y")], None)
                .await
                .unwrap();
            assert_eq!(ids(first), Claimed::Done(vec![1, 2]));
            let again = outbox
                .insert_once(keyed("k", "h1"), vec![job("u", "x"), job("u", "y")], None)
                .await
                .unwrap();
            assert_eq!(ids(again), saved("[1, 2]"));
        }
        let (outbox, pending) = Outbox::open(&path).unwrap();
        assert_eq!(pending.len(), 2);
        let after_restart = outbox
            .insert_once(keyed("k", "h1"), vec![job("u", "x")], None)
            .await
            .unwrap();
        assert_eq!(ids(after_restart), saved("[1, 2]"));
        let other = outbox
            .insert_once(keyed("k", "h2"), vec![job("u", "z")], None)
            .await
            .unwrap();
        assert_eq!(
            ids(other),
            Claimed::Earlier(idempotency::Earlier::Other {
                route: "/v1/messages".into()
            })
        );
        assert_eq!(outbox.depth().await.unwrap(), vec![(JobState::Queued, 2)]);
    }

    #[tokio::test]
    async fn racing_requests_with_one_key_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        // Sent together, they share group transactions: the lookup must see the claim made
        // earlier in the same uncommitted transaction.
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    outbox
                        .insert_once(keyed("race", "h"), vec![job("u", "x")], None)
                        .await
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            match ids(task.await.unwrap().unwrap()) {
                Claimed::Done(ids) => {
                    assert_eq!(ids, vec![1]);
                    done += 1;
                }
                earlier => assert_eq!(earlier, saved("[1]")),
            }
        }
        assert_eq!(done, 1);
        assert_eq!(outbox.depth().await.unwrap(), vec![(JobState::Queued, 1)]);
    }

    #[tokio::test]
    async fn failed_work_leaves_the_key_free_and_nothing_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        let failed = outbox
            .insert_once(
                keyed("k", "h"),
                vec![job("u", "x")],
                Some(Box::new(|_, _| {
                    Err(StoreError::new("session write failed"))
                })),
            )
            .await;
        assert!(failed.is_err());
        assert_eq!(outbox.depth().await.unwrap(), vec![]);
        let retried = outbox
            .insert_once(
                keyed("k", "h"),
                vec![job("u", "x")],
                Some(Box::new(|_, _| Ok(()))),
            )
            .await
            .unwrap();
        assert_eq!(ids(retried), Claimed::Done(vec![1]));
    }

    #[tokio::test]
    async fn a_keyed_resend_queues_once_and_a_refused_one_keeps_the_key_free() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        let id = outbox.insert(vec![job("u", "x")]).await.unwrap()[0].id;
        // Queued, so not resendable: refused, and the key is not spent.
        assert_eq!(
            outbox.resend_once(id, keyed("r", "h")).await.unwrap(),
            Claimed::Done(Err(ResendError::NotResendable(JobState::Queued)))
        );
        outbox.mark_sending(id).await.unwrap();
        outbox
            .record(
                id,
                Outcome::Ambiguous {
                    message: "timed out".into(),
                },
            )
            .unwrap();
        match outbox.resend_once(id, keyed("r", "h")).await.unwrap() {
            Claimed::Done(Ok(job)) => assert_eq!(job.id, id),
            other => panic!("not queued: {other:?}"),
        }
        // Without the key, the second resend would be a 409: with it, the first answer.
        match outbox.resend_once(id, keyed("r", "h")).await.unwrap() {
            Claimed::Earlier(idempotency::Earlier::Same(saved)) => {
                assert_eq!(saved.body, format!("[{id}]").into_bytes());
            }
            other => panic!("not replayed: {other:?}"),
        }
    }
}
