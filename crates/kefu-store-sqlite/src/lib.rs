//! kefu-store-sqlite: kefu-connector's embedded backend of the [`kefu_store`] traits
//! ([`SqliteStore`]): one SQLite database (WAL, `synchronous=FULL`), owned by one relay (a lock
//! file refuses a second) and by one thread in it, which commits in groups.
//!
//! Every call waits for the commit that makes its change durable, but concurrent calls share one
//! commit: the store thread takes every command waiting in its queue, runs them in a single
//! transaction, commits once, and only then answers them all. That keeps each acknowledgement
//! durable while the fsync cost is spread over the whole group. Each command runs under a
//! savepoint, so that one failing undoes its own writes and leaves the group's others.
//!
//! A job's life: `queued` → `sending` (made durable *before* the request leaves) → `delivered`,
//! `failed`, `ambiguous`, or back to `queued` for a retry; at a platform that confirms by
//! callback, `accepted` or `ambiguous` with a `confirm_by_ms`, settled later by a callback or by
//! the end of the window (see [`kefu_store`]). A job found in `sending` at start-up was
//! interrupted mid-send: it may have reached the user, so it becomes `ambiguous` and is never sent
//! again on the connector's own initiative.
//!
//! The tables and their versions are in [`schema`].

#![forbid(unsafe_code)]

mod console;
mod fleet;
mod inbound;
mod jobs;
mod keys;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod yunzhenji;

use std::path::Path;
use std::sync::Arc;

use kefu_core::{BoxFuture, TokenStore};
use rusqlite::{Connection, Transaction};
use tokio::sync::{mpsc, oneshot, watch};

use kefu_store::{PendingJob, Store, StoreError, StoreResult};

/// A SQLite failure as the store's error. (`StoreError` belongs to kefu-store, which knows no
/// backend, so the conversion is a function here rather than a `From`.)
fn sql(error: rusqlite::Error) -> StoreError {
    StoreError::new(error.to_string())
}

/// What a command sees of its group besides the transaction.
struct Group {
    /// The group's clock, in Unix milliseconds: every time written by the group.
    now: i64,
    /// The highest ordering key handed out to a job, kept in memory so that an insert never
    /// scans the table.
    last_seq: i64,
}

/// Work run inside the store's group transaction.
type TxWork<T> = Box<dyn FnOnce(&Transaction<'_>, &mut Group) -> Result<T, StoreError> + Send>;

/// A [`TxWork`] with its answer, type-erased for the command queue.
type Work = Box<dyn FnOnce(&Transaction<'_>, &mut Group) -> Option<DeferredAnswer> + Send>;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Run(Work),
    Checkpoint(Reply<()>),
}

/// The SQLite store. Clones share the one store thread, which stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SqliteStore {
    commands: mpsc::UnboundedSender<Command>,
    /// The newest event id, raised by this store's admissions (see `fleet.rs`).
    newest: Arc<watch::Sender<i64>>,
}

/// How many commands at most share one transaction.
const MAX_GROUP: usize = 4096;

fn stopped() -> StoreError {
    StoreError::new("the store thread has stopped")
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, brings its schema to the newest version,
    /// recovers from an interrupted run, and returns the jobs still to deliver, in order.
    pub fn open(path: &Path) -> Result<(SqliteStore, Vec<PendingJob>), StoreError> {
        let (lock, mut conn) = open_migrated(path)?;
        let pending = jobs::recover(&mut conn)?;
        let newest = {
            let tx = conn.transaction().map_err(sql)?;
            inbound::latest_event_id(&tx)?
        };
        let last_seq: i64 = conn
            .query_row("SELECT IFNULL(MAX(seq), 0) FROM outbox", [], |row| {
                row.get(0)
            })
            .map_err(sql)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("kefu-outbox".into())
            .spawn(move || {
                run_store(conn, last_seq, receiver);
                // Held until the connection is closed.
                drop(lock);
            })
            .map_err(|e| StoreError::new(format!("cannot start the store thread: {e}")))?;
        Ok((
            SqliteStore {
                commands,
                newest: Arc::new(watch::channel(newest).0),
            },
            pending,
        ))
    }

    /// Brings the file at `path` to the newest schema ([`schema::LATEST`]) without starting a
    /// store or recovering its jobs, and returns its version before. It takes the file's lock, so
    /// it is refused while a relay runs on the file.
    pub fn migrate_file(path: &Path) -> Result<usize, StoreError> {
        let before = schema::file_version(path)?;
        open_migrated(path)?;
        Ok(before)
    }

    /// Runs `work` inside the store's next group transaction, under a savepoint, and answers
    /// once that transaction is committed: when this returns `Ok`, the work's writes are
    /// durable. It runs on the store thread, so it must be short.
    async fn run<T: Send + 'static>(&self, work: TxWork<T>) -> Result<T, StoreError> {
        self.boxed(work).await
    }

    /// Runs `work`, which only reads, in the store's next group transaction and answers at
    /// once, without waiting for the commit: a read has nothing to make durable.
    fn read<T: Send + 'static>(&self, work: TxWork<T>) -> BoxFuture<'_, StoreResult<T>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Run(Box::new(move |tx, group| {
                    let _ = reply.send(work(tx, group));
                    None
                })))
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// [`SqliteStore::run`] for the traits, with the command sent at once, before the future
    /// is first polled: calls reach the store in the order they are made, which the relay's
    /// sequencing of deliveries relies on (see the contract in [`kefu_store`]).
    fn boxed<T: Send + 'static>(&self, work: TxWork<T>) -> BoxFuture<'_, StoreResult<T>> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .commands
            .send(Command::Run(Box::new(move |tx, group| {
                Some(deferred(reply, in_savepoint(tx, group, work)))
            })))
            .map_err(|_| stopped());
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Runs `work` like [`SqliteStore::run`] without waiting for its commit. Commands run in the
    /// order they are sent, so its writes are durable no later than anything sent afterwards. A
    /// failure is logged, naming `what`. Fails only if the store thread has stopped.
    fn run_detached(&self, what: &'static str, work: TxWork<()>) -> Result<(), StoreError> {
        self.commands
            .send(Command::Run(Box::new(move |tx, group| {
                if let Err(error) = in_savepoint(tx, group, work) {
                    tracing::error!("cannot record {what}: {error}");
                }
                None
            })))
            .map_err(|_| stopped())
    }
}

impl Store for SqliteStore {
    fn tokens(self: Arc<Self>) -> Arc<dyn TokenStore> {
        self
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.boxed(Box::new(|tx, _| {
            tx.query_row("SELECT 1", [], |_| Ok(())).map_err(sql)
        }))
    }

    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Checkpoint(reply))
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }
}

/// Takes the file's lock, opens it in WAL mode with `synchronous=FULL` and migrates it: the
/// lock is held for as long as the returned file lives.
fn open_migrated(path: &Path) -> Result<(std::fs::File, Connection), StoreError> {
    let lock = lock_owner(path)?;
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(1))
        .map_err(sql)?;
    // No exclusive locking mode: other processes may read the file while the relay runs
    // (`sqlite3 … "VACUUM INTO 'backup.sqlite3'"`, inspection); the lock file keeps a second
    // relay out.
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
        .map_err(sql)?;
    schema::migrate(&mut conn)?;
    Ok((lock, conn))
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
            StoreError::new(format!(
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
        Err(fs4::TryLockError::WouldBlock) => Err(StoreError::new(format!(
            "{} is in use by another process (it holds {}); run one relay per outbox",
            path.display(),
            lock_path.display()
        ))),
        Err(fs4::TryLockError::Error(e)) => Err(StoreError::new(format!(
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
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(sql)?;
    if busy != 0 {
        return Err(StoreError::new(
            "the checkpoint could not finish: another process is reading the outbox",
        ));
    }
    Ok(())
}

/// Runs a group of commands in one transaction and answers them after the commit.
fn execute_group(conn: &mut Connection, last_seq: &mut i64, group: &mut Vec<Command>) {
    let mut answers: Vec<DeferredAnswer> = Vec::with_capacity(group.len());
    let mut state = Group {
        now: kefu_core::now_ms(),
        last_seq: *last_seq,
    };
    let result = (|| -> Result<(), StoreError> {
        let tx = conn.transaction().map_err(sql)?;
        for command in group.drain(..) {
            match command {
                Command::Run(work) => {
                    if let Some(answer) = work(&tx, &mut state) {
                        answers.push(answer);
                    }
                }
                // run_store never puts one in a group.
                Command::Checkpoint(reply) => {
                    let _ = reply.send(Err(StoreError::new(
                        "a checkpoint cannot run inside a transaction",
                    )));
                }
            }
        }
        tx.commit().map_err(sql)?;
        Ok(())
    })();
    let failure = result.err();
    // The ordering keys of a group that did not commit were never stored: hand them out again.
    if failure.is_none() {
        *last_seq = state.last_seq;
    }
    for answer in answers {
        answer(failure.as_ref());
    }
}

/// A reply waiting for the group's commit; it is told whether the commit failed.
type DeferredAnswer = Box<dyn FnOnce(Option<&StoreError>)>;

/// Runs `work` under a savepoint of the group transaction: its writes are kept if it succeeds
/// and undone if it fails (the ordering keys it took included), leaving the other commands of
/// the group untouched.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    group: &mut Group,
    work: impl FnOnce(&Transaction<'_>, &mut Group) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let seq_before = group.last_seq;
    tx.execute_batch("SAVEPOINT work").map_err(sql)?;
    match work(tx, group) {
        Ok(value) => {
            tx.execute_batch("RELEASE work").map_err(sql)?;
            Ok(value)
        }
        Err(error) => {
            group.last_seq = seq_before;
            tx.execute_batch("ROLLBACK TO work; RELEASE work")
                .map_err(sql)?;
            Err(error)
        }
    }
}

/// An answer held back until the commit: if the commit fails, every caller learns it.
fn deferred<T: 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> DeferredAnswer {
    Box::new(move |commit_failure| {
        let _ = reply.send(match commit_failure {
            Some(failure) => Err(failure.clone()),
            None => result,
        });
    })
}
