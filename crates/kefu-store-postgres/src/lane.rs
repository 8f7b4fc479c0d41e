//! A write lane: one connection that runs the commands sent to it in the order they were sent,
//! and commits everything that waited while it was busy in one transaction (group commit), as
//! the SQLite store's thread does.
//!
//! * **Call order.** A command is queued when the store method is called, not when its future is
//!   first polled, so that calls reach the database in the order they were made (the contract's
//!   "calls are taken in call order").
//! * **One transaction, one answer each.** Each command runs under a savepoint of the group's
//!   transaction: one that fails undoes its own writes only. Answers wait for the `COMMIT`, so an
//!   `Ok` means durable (`synchronous_commit=on`); when the commit, or the connection, fails,
//!   every caller of the group gets the error and nothing of it was acknowledged.
//! * **Ordered without waiting.** A detached command (an attempt's outcome) answers nobody. If
//!   its group cannot commit it waits in a buffer and runs first in the next group, so that it
//!   is still applied before anything sent after it; past [`MAX_RETRY`] waiting, one is logged
//!   and dropped (its job stays `sending` and becomes `ambiguous`: never resent).
//! * **Progress.** The lane counts the commands it has finished (committed, failed or, for a
//!   detached one, buffered). A command of another lane, or a read, can wait until this lane has
//!   finished everything sent to it before a given [`Lane::position`]: that is how the store
//!   keeps "a recorded outcome is durable no later than anything requested afterwards".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use kefu_core::BoxFuture;
use kefu_store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::PgError;
use crate::locks::{self, Locks};
use crate::sql::Conn;

/// How many commands at most share one transaction.
const MAX_GROUP: usize = 512;

/// How many detached commands at most wait for the database to come back.
const MAX_RETRY: usize = 100_000;

/// The wait before a lane tries again to apply detached commands after a failure, doubling up
/// to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often a lane whose store was dropped still tries to apply its buffered commands.
const LAST_TRIES: u32 = 5;

/// What a command sees of its group besides the connection.
pub(crate) struct Group {
    /// The group's clock, in Unix milliseconds: every time the group writes.
    pub(crate) now: i64,
    /// The id of the relay that runs the lane.
    pub(crate) relay: Arc<str>,
    /// The highest event id stored by the group's commands so far.
    newest_event: Option<i64>,
    /// Why the group's transaction cannot commit, once it cannot.
    broken: Option<PgError>,
    /// Whether the savepoint `work` exists.
    savepoint: bool,
}

impl Group {
    /// Notes that the command stored event `id`: the group announces the highest on commit.
    pub(crate) fn stored_event(&mut self, id: i64) {
        self.newest_event = Some(self.newest_event.map_or(id, |newest| newest.max(id)));
    }
}

/// A command's work in the group transaction, answered once the group is committed.
pub(crate) type Work<T> =
    Box<dyn for<'c> FnOnce(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<T, PgError>> + Send>;

/// A detached command's work: run again if its group could not commit.
pub(crate) type Repeatable = Arc<
    dyn for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<(), PgError>> + Send + Sync,
>;

/// `f` as a [`Work`] (a function, so that the closure's signature is inferred from the bound).
pub(crate) fn work<T, F>(f: F) -> Work<T>
where
    F: for<'c> FnOnce(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<T, PgError>>
        + Send
        + 'static,
{
    Box::new(f)
}

/// `f` as a [`Repeatable`].
pub(crate) fn repeatable<F>(f: F) -> Repeatable
where
    F: for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<(), PgError>>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// An answer held back until the group's commit; it is told whether the commit failed.
type Deferred = Box<dyn FnOnce(Option<&PgError>) + Send>;

/// A command that answers its caller, with the answer's type erased.
trait Call: Send {
    /// Runs the work under its savepoint; the answer is given after the commit.
    fn run<'c>(self: Box<Self>, c: &'c Conn, g: &'c mut Group) -> BoxFuture<'c, Deferred>;
    /// Answers `error` without running (the lane has no connection).
    fn fail(self: Box<Self>, error: &PgError);
}

struct Reply<T> {
    work: Work<T>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T: Send + 'static> Call for Reply<T> {
    fn run<'c>(self: Box<Self>, c: &'c Conn, g: &'c mut Group) -> BoxFuture<'c, Deferred> {
        let Reply { work, reply } = *self;
        Box::pin(async move {
            let result = match enter(g) {
                Ok((savepoint, before)) => {
                    // Pipelined: the savepoint and the work's first statement leave together.
                    let (saved, result) = tokio::join!(c.batch_execute(savepoint), work(c, g));
                    let result = saved.map_err(|e| broke(g, e)).and(result);
                    leave(c, g, before, result).await
                }
                Err(error) => Err(error),
            };
            Box::new(move |failure: Option<&PgError>| {
                let _ = reply.send(match failure {
                    Some(failure) => Err(failure.clone().into()),
                    None => result.map_err(StoreError::from),
                });
            }) as Deferred
        })
    }

    fn fail(self: Box<Self>, error: &PgError) {
        let _ = self.reply.send(Err(error.clone().into()));
    }
}

/// A detached command, named for the log.
#[derive(Clone)]
struct Detached {
    what: &'static str,
    work: Repeatable,
}

enum Command {
    /// `after`: the other lane's position this command waits for; `locks`: what it will lock,
    /// for the group to lock first.
    Call {
        after: u64,
        locks: Locks,
        call: Box<dyn Call>,
    },
    Detached {
        after: u64,
        detached: Detached,
    },
}

impl Command {
    fn after(&self) -> u64 {
        match self {
            Command::Call { after, .. } | Command::Detached { after, .. } => *after,
        }
    }
}

struct Sender {
    commands: mpsc::UnboundedSender<Command>,
    /// How many commands were sent: the position of the next one.
    sent: u64,
}

/// The handle of a lane; the lane's task stops once the handle is dropped and every command
/// sent is done.
pub(crate) struct Lane {
    sender: Mutex<Sender>,
    done: watch::Receiver<u64>,
}

fn stopped() -> StoreError {
    StoreError::new("the postgres store's write lane has stopped")
}

impl Lane {
    /// Starts a lane on a connection of `pool` (which it keeps, and replaces when it breaks).
    /// With `after`, the progress of another lane, each command first waits until that lane
    /// has reached the position the command was sent with.
    pub(crate) fn start(
        name: &'static str,
        pool: Pool,
        relay: Arc<str>,
        after: Option<watch::Receiver<u64>>,
    ) -> Lane {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (done_sender, done) = watch::channel(0);
        tokio::spawn(run(name, pool, relay, receiver, done_sender, after));
        Lane {
            sender: Mutex::new(Sender { commands, sent: 0 }),
            done,
        }
    }

    fn send(&self, command: Command) -> StoreResult<()> {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        sender.commands.send(command).map_err(|_| stopped())?;
        sender.sent += 1;
        Ok(())
    }

    /// Queues `work` now; the future answers after its group's commit. `locks`: what the work
    /// will lock (see [`crate::locks`]).
    pub(crate) fn call<T: Send + 'static>(
        &self,
        after: u64,
        locks: Locks,
        work: Work<T>,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Command::Call {
            after,
            locks,
            call: Box::new(Reply { work, reply }),
        });
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Queues `work` without waiting for it; a failure is logged, naming `what`.
    pub(crate) fn detach(
        &self,
        after: u64,
        what: &'static str,
        work: Repeatable,
    ) -> StoreResult<()> {
        self.send(Command::Detached {
            after,
            detached: Detached { what, work },
        })
    }

    /// The position of the next command sent: waiting for it with [`Lane::reached`] waits for
    /// every command sent so far.
    pub(crate) fn position(&self) -> u64 {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sent
    }

    /// How many commands the lane has finished, as it changes.
    pub(crate) fn progress(&self) -> watch::Receiver<u64> {
        self.done.clone()
    }

    /// Waits until the lane has finished the first `position` commands sent to it (at once if
    /// its task has stopped).
    pub(crate) async fn reached(&self, position: u64) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done >= position).await;
    }
}

/// The lane's task: takes every command waiting, runs them as one group, and repeats.
async fn run(
    name: &'static str,
    pool: Pool,
    relay: Arc<str>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    done: watch::Sender<u64>,
    mut after: Option<watch::Receiver<u64>>,
) {
    let mut conn: Option<Object> = None;
    let mut retry: VecDeque<Detached> = VecDeque::new();
    let mut backoff = MIN_BACKOFF;
    let mut closed = false;
    let mut last_tries = 0;
    loop {
        let mut group = Vec::new();
        if retry.is_empty() {
            if closed {
                return;
            }
            match commands.recv().await {
                Some(command) => group.push(command),
                None => return,
            }
        } else if closed {
            last_tries += 1;
            if last_tries > LAST_TRIES {
                tracing::error!(
                    lane = name,
                    lost = retry.len(),
                    "the store was dropped while the database was unreachable: outcomes not recorded (their jobs stay sending, and become ambiguous)"
                );
                return;
            }
            tokio::time::sleep(backoff).await;
        } else {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => group.push(command),
                    None => closed = true,
                },
                () = tokio::time::sleep(backoff) => {}
            }
        }
        while group.len() < MAX_GROUP {
            match commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        let need = group.iter().map(Command::after).max().unwrap_or(0);
        if let Some(other) = after.as_mut().filter(|_| need > 0) {
            // Only a stopped lane ends the wait early, and then nothing more will come of it.
            let _ = other.wait_for(|reached| *reached >= need).await;
        }
        let taken = group.len() as u64;
        let committed = execute(&pool, &mut conn, &relay, &mut retry, group).await;
        done.send_modify(|done| *done += taken);
        backoff = if committed {
            MIN_BACKOFF
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
    }
}

/// Runs one group (the buffered detached commands first) in one transaction; `false` if it
/// could not commit.
async fn execute(
    pool: &Pool,
    conn: &mut Option<Object>,
    relay: &Arc<str>,
    retry: &mut VecDeque<Detached>,
    mut commands: Vec<Command>,
) -> bool {
    let mut g = Group {
        now: kefu_core::now_ms(),
        relay: relay.clone(),
        newest_event: None,
        broken: None,
        savepoint: false,
    };
    if conn.as_ref().is_some_and(|c| c.is_closed()) {
        *conn = None;
    }
    if conn.is_none() {
        match pool.get().await {
            Ok(fresh) => *conn = Some(fresh),
            Err(error) => g.broken = Some(error.into()),
        }
    }
    let mut detached: Vec<Detached> = retry.drain(..).collect();
    let Some(c) = conn.as_deref().filter(|_| g.broken.is_none()) else {
        let error = g
            .broken
            .unwrap_or_else(|| PgError::Unavailable("no connection".into()));
        for command in commands {
            match command {
                Command::Call { call, .. } => call.fail(&error),
                Command::Detached { detached: d, .. } => detached.push(d),
            }
        }
        requeue(retry, detached);
        return false;
    };
    let mut locks = Locks::default();
    for command in &mut commands {
        if let Command::Call { locks: more, .. } = command {
            locks.absorb(more);
        }
    }
    // A group that may store events takes the counter before any other lock, and holds it to
    // the commit: taken by a command in the middle, it would come after a former command's
    // locks, and two relays' groups could wait on each other.
    let begin = if locks.has_counter() {
        "BEGIN; SELECT 1 FROM kefu.counters WHERE name = 'event_id' FOR UPDATE"
    } else {
        "BEGIN"
    };
    let (begun, locked) = tokio::join!(c.batch_execute(begin), locks::take(c, g.now, locks));
    if let Err(error) = begun {
        g.broken = Some(error.into());
    } else if let Err(error) = locked {
        g.broken = Some(error);
    }
    let mut answers = Vec::with_capacity(commands.len());
    for d in &detached {
        run_detached(c, &mut g, d).await;
    }
    for command in commands {
        match command {
            Command::Call { call, .. } => answers.push(call.run(c, &mut g).await),
            Command::Detached { detached: d, .. } => {
                run_detached(c, &mut g, &d).await;
                detached.push(d);
            }
        }
    }
    if let (None, Some(newest)) = (&g.broken, g.newest_event) {
        // One notification per transaction that stored events, sent on commit: the group
        // already holds the event counter, so it serialises nothing more.
        if let Err(error) = c
            .execute(
                "SELECT pg_notify('kefu_events', $1)",
                &[&newest.to_string()],
            )
            .await
        {
            g.broken = Some(error.into());
        }
    }
    if g.broken.is_none() {
        if let Err(error) = c.batch_execute("COMMIT").await {
            g.broken = Some(error.into());
        }
    }
    let committed = g.broken.is_none();
    if !committed {
        if c.batch_execute("ROLLBACK").await.is_err() || c.is_closed() {
            *conn = None;
        }
        requeue(retry, detached);
    }
    for answer in answers {
        answer(g.broken.as_ref());
    }
    committed
}

/// Buffers `detached` again, in order, up to [`MAX_RETRY`].
fn requeue(retry: &mut VecDeque<Detached>, detached: Vec<Detached>) {
    for d in detached {
        if retry.len() >= MAX_RETRY {
            tracing::error!(
                "cannot record {}: the database has been unreachable for too long",
                d.what
            );
            continue;
        }
        retry.push_back(d);
    }
}

/// Runs a detached command under its savepoint. A statement it gets refused is logged and the
/// command dropped; a deadlock or serialisation failure fails the group, so that the command is
/// tried again in order.
async fn run_detached(c: &Conn, g: &mut Group, d: &Detached) {
    let Ok((savepoint, before)) = enter(g) else {
        return;
    };
    let (saved, result) = tokio::join!(c.batch_execute(savepoint), (d.work)(c, g));
    let result = saved.map_err(|e| broke(g, e)).and(result);
    if let Err(error) = leave(c, g, before, result).await {
        if matches!(error.code(), Some("40P01" | "40001")) {
            g.broken.get_or_insert(error);
        } else if g.broken.is_none() {
            tracing::error!("cannot record {}: {error}", d.what);
        }
    }
}

/// The statement that starts a command's savepoint (releasing the previous command's in the
/// same round trip), to send ahead of the command's own; and the group state to restore if
/// the command fails.
fn enter(g: &mut Group) -> Result<(&'static str, Option<i64>), PgError> {
    if let Some(broken) = &g.broken {
        return Err(broken.clone());
    }
    let sql = if g.savepoint {
        "RELEASE SAVEPOINT work; SAVEPOINT work"
    } else {
        "SAVEPOINT work"
    };
    g.savepoint = true;
    Ok((sql, g.newest_event))
}

/// Marks the group's transaction as unable to commit, because of `error`.
fn broke(g: &mut Group, error: tokio_postgres::Error) -> PgError {
    let error = PgError::from(error);
    g.broken.get_or_insert(error.clone());
    error
}

/// Ends a command: a failed one is rolled back to its savepoint, leaving the group's others.
async fn leave<T>(
    c: &Conn,
    g: &mut Group,
    before: Option<i64>,
    result: Result<T, PgError>,
) -> Result<T, PgError> {
    if result.is_err() {
        g.newest_event = before;
        if let Err(error) = c.batch_execute("ROLLBACK TO SAVEPOINT work").await {
            g.broken.get_or_insert(error.into());
        }
    }
    result
}
