//! A write lane: one connection that runs the commands sent to it in the order they were sent,
//! and commits everything that waited while it was busy in one transaction (group commit), as
//! the SQLite store's thread does.
//!
//! * **Call order.** A command is queued when the store method is called, not when its future is
//!   first polled, so that calls reach the database in the order they were made (the contract's
//!   "calls are taken in call order").
//! * **One transaction, one answer each.** A group runs its commands one after another in one
//!   transaction. When one of them fails, the group is rolled back and run again with each
//!   command under a savepoint, so that the one that fails undoes its own writes only: a
//!   command's work can therefore run more than once, and does nothing but its statements.
//!   (Savepoints for every group cost the server two statements per command.) Answers wait for
//!   the `COMMIT`, so an `Ok` means durable (`synchronous_commit=on`); when the commit, or the
//!   connection, fails, every caller of the group gets the error and nothing of it was
//!   acknowledged.
//! * **Set-based.** Commands of one [`Bulk`] kind that follow one another in a group (inserts
//!   without a key, markings, outcomes) run as one statement per kind, answering each command
//!   as if they had run in turn; outcomes move ahead of the markings of other jobs before them
//!   (never of their own job), so that a delivery group is a few statements whatever its size.
//!   The server's cost is mostly per statement, not per row.
//! * **Ordered without waiting.** A detached command (an attempt's outcome) answers nobody. If
//!   its group cannot commit it waits in a buffer and runs first in the next group, so that it
//!   is still applied before anything sent after it; past [`MAX_RETRY`] waiting, one is logged
//!   and dropped (its job stays `sending` and becomes `ambiguous`: never resent).
//! * **Progress.** The lane counts the commands it has finished (committed, failed or, for a
//!   detached one, buffered). A command of another lane, or a read, can wait until this lane has
//!   finished everything sent to it before a given [`Lane::position`]: that is how the store
//!   keeps "a recorded outcome is durable no later than anything requested afterwards".

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use kefu_core::BoxFuture;
use kefu_store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::PgError;
use crate::locks::{self, Locks};
use crate::sql::{self, Conn};

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
#[derive(Clone)]
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

/// A command's work in the group transaction, answered once the group is committed; run again
/// if its group is run again.
pub(crate) type Work<T> =
    Box<dyn for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<T, PgError>> + Send + Sync>;

/// A detached command's work: run again if its group could not commit.
pub(crate) type Repeatable = Arc<
    dyn for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<(), PgError>> + Send + Sync,
>;

/// `f` as a [`Work`] (a function, so that the closure's signature is inferred from the bound).
pub(crate) fn work<T, F>(f: F) -> Work<T>
where
    F: for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<T, PgError>>
        + Send
        + Sync
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

/// Commands of one kind that a group runs together when they come one after another: one set
/// of statements for all of them instead of one set each (the server's cost is mostly per
/// statement, not per row). When the group is run again carefully, each runs alone.
pub(crate) trait Bulk: Send + 'static {
    /// What one command asks for.
    type Item: Clone + Send + Sync + 'static;
    /// What one command answers.
    type Answer: Send + 'static;
    /// Whether its commands may run ahead of the commands before them in their group, when
    /// those all say which jobs they touch ([`Bulk::jobs`]) and none touches theirs: an
    /// outcome may be applied before a marking of other jobs sent just before it, as if it
    /// had been recorded a moment earlier.
    const RUNS_EARLY: bool = false;
    /// Runs `items`, in order, answering each, in order.
    fn run<'c>(
        c: &'c Conn,
        g: &'c mut Group,
        items: Vec<&'c Self::Item>,
    ) -> BoxFuture<'c, Result<Vec<Self::Answer>, PgError>>;
    /// The jobs `item` reads or writes, if it touches nothing else that another command of
    /// the lane touches; `None` keeps every command of the group in its place around it.
    fn jobs(_item: &Self::Item) -> Option<&[i64]> {
        None
    }
}

/// Runs a run of consecutive commands of one [`Bulk`] kind; `false` as [`Call::run`].
type BulkRunner = for<'c> fn(&'c Conn, &'c mut Group, &'c mut [Entry]) -> BoxFuture<'c, bool>;

/// A command that answers its caller, with the answer's type erased.
trait Call: Send {
    /// The bulk kind it belongs to, and how a run of them is run; `None` if it runs alone.
    fn bulk(&self) -> Option<(TypeId, BulkRunner)> {
        None
    }
    /// The jobs it touches and whether it runs early, as its [`Bulk`] kind says.
    fn moves(&self) -> Option<(&[i64], bool)> {
        None
    }
    /// Itself, for a [`BulkRunner`] to find its item.
    fn as_any(&self) -> &dyn Any;
    /// Itself, for a [`BulkRunner`] to keep its result.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Runs the work, under a savepoint when `careful`, and keeps its result for the answer;
    /// `false` if it failed without a savepoint (the group must be run again, carefully).
    fn run<'c>(&'c mut self, c: &'c Conn, g: &'c mut Group, careful: bool) -> BoxFuture<'c, bool>;
    /// Answers, once the group's transaction has ended: `failure` if it did not commit.
    fn answer(self: Box<Self>, failure: Option<&PgError>);
    /// Answers `error` without running (the lane has no connection).
    fn fail(self: Box<Self>, error: &PgError);
}

/// Where a command's answer goes, and its result until the group's transaction ends.
struct Answer<T> {
    reply: oneshot::Sender<StoreResult<T>>,
    result: Option<Result<T, PgError>>,
}

impl<T> Answer<T> {
    fn new(reply: oneshot::Sender<StoreResult<T>>) -> Answer<T> {
        Answer {
            reply,
            result: None,
        }
    }

    /// Keeps how the run went; `false` if the group must be run again carefully.
    fn keep(&mut self, attempted: Attempted<T>) -> bool {
        let (result, went_on) = match attempted {
            Attempted::Done(result) => (result, true),
            Attempted::Redo(error) => (Err(error), false),
        };
        self.result = Some(result);
        went_on
    }

    /// Answers, once the group's transaction has ended: `failure` if it did not commit.
    fn answer(self, failure: Option<&PgError>) {
        let _ = self.reply.send(match (failure, self.result) {
            (Some(failure), _) => Err(failure.clone().into()),
            (None, Some(result)) => result.map_err(StoreError::from),
            (None, None) => Err(stopped()),
        });
    }

    /// Answers `error` without running.
    fn fail(self, error: &PgError) {
        let _ = self.reply.send(Err(error.clone().into()));
    }
}

struct Reply<T> {
    work: Work<T>,
    answer: Answer<T>,
}

impl<T: Send + 'static> Call for Reply<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn run<'c>(&'c mut self, c: &'c Conn, g: &'c mut Group, careful: bool) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let attempted = attempt(c, g, careful, &self.work).await;
            self.answer.keep(attempted)
        })
    }

    fn answer(self: Box<Self>, failure: Option<&PgError>) {
        self.answer.answer(failure);
    }

    fn fail(self: Box<Self>, error: &PgError) {
        self.answer.fail(error);
    }
}

/// A command of a [`Bulk`] kind.
struct BulkReply<B: Bulk> {
    item: B::Item,
    answer: Answer<B::Answer>,
}

impl<B: Bulk> Call for BulkReply<B> {
    fn bulk(&self) -> Option<(TypeId, BulkRunner)> {
        Some((TypeId::of::<B>(), run_bulk::<B>))
    }

    fn moves(&self) -> Option<(&[i64], bool)> {
        B::jobs(&self.item).map(|jobs| (jobs, B::RUNS_EARLY))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    /// Alone: only a group run carefully runs one this way.
    fn run<'c>(&'c mut self, c: &'c Conn, g: &'c mut Group, careful: bool) -> BoxFuture<'c, bool> {
        let item = self.item.clone();
        let alone: Work<B::Answer> = work(move |c, g| {
            let item = item.clone();
            Box::pin(async move {
                let answers = B::run(c, g, vec![&item]).await?;
                answers
                    .into_iter()
                    .next()
                    .ok_or_else(|| PgError::Data("a bulk command gave no answer".into()))
            })
        });
        Box::pin(async move {
            let attempted = attempt(c, g, careful, &*alone).await;
            self.answer.keep(attempted)
        })
    }

    fn answer(self: Box<Self>, failure: Option<&PgError>) {
        self.answer.answer(failure);
    }

    fn fail(self: Box<Self>, error: &PgError) {
        self.answer.fail(error);
    }
}

/// The [`BulkReply`] of kind `B` that `entry` holds, if it does.
fn bulk_reply<B: Bulk>(entry: &Entry) -> Option<&BulkReply<B>> {
    match entry {
        Entry::Call(call) => call.as_any().downcast_ref(),
        Entry::Detached(_) => None,
    }
}

/// Runs `entries`, every one a [`BulkReply<B>`], together, bare (a group run carefully runs
/// each alone); `false` if that failed, and the group must be run again carefully.
fn run_bulk<'c, B: Bulk>(
    c: &'c Conn,
    g: &'c mut Group,
    entries: &'c mut [Entry],
) -> BoxFuture<'c, bool> {
    Box::pin(async move {
        if let Some(broken) = g.broken.clone() {
            for entry in entries.iter_mut() {
                set_result::<B>(entry, Err(broken.clone()));
            }
            return true;
        }
        let items = entries
            .iter()
            .filter_map(bulk_reply::<B>)
            .map(|reply| &reply.item)
            .collect();
        match B::run(c, g, items).await {
            Ok(answers) if answers.len() == entries.len() => {
                for (entry, answer) in entries.iter_mut().zip(answers) {
                    set_result::<B>(entry, Ok(answer));
                }
                true
            }
            // Without a savepoint, the transaction may hold part of the run's writes; and a
            // run that did not answer each command is run again command by command.
            _ => false,
        }
    })
}

fn set_result<B: Bulk>(entry: &mut Entry, result: Result<B::Answer, PgError>) {
    if let Entry::Call(call) = entry {
        if let Some(reply) = call.as_any_mut().downcast_mut::<BulkReply<B>>() {
            reply.answer.result = Some(result);
        }
    }
}

/// How a command's run went.
enum Attempted<T> {
    /// Its result, to answer (a failure under a savepoint undid its own writes only).
    Done(Result<T, PgError>),
    /// It failed without a savepoint: the transaction holds its partial writes, or is aborted.
    Redo(PgError),
}

/// Runs `work`: carefully, under a savepoint that a failure rolls back to; otherwise bare.
async fn attempt<T, W>(c: &Conn, g: &mut Group, careful: bool, work: &W) -> Attempted<T>
where
    W: for<'c> Fn(&'c Conn, &'c mut Group) -> BoxFuture<'c, Result<T, PgError>> + ?Sized,
{
    if let Some(broken) = &g.broken {
        return Attempted::Done(Err(broken.clone()));
    }
    if !careful {
        return match work(c, g).await {
            Ok(value) => Attempted::Done(Ok(value)),
            Err(error) => Attempted::Redo(error),
        };
    }
    let (savepoint, before) = enter(g);
    // Pipelined: the savepoint and the work's first statement leave together.
    let (saved, result) = tokio::join!(c.batch_execute(savepoint), work(c, g));
    let result = saved.map_err(|e| broke(g, e)).and(result);
    Attempted::Done(leave(c, g, before, result).await)
}

/// A detached command, named for the log.
#[derive(Clone)]
struct Detached {
    what: &'static str,
    work: DetachedWork,
}

#[derive(Clone)]
enum DetachedWork {
    /// Run alone.
    Alone(Repeatable),
    /// An item of a [`Bulk`] kind whose answers are `()`, run with its neighbours of that kind.
    Bulk {
        kind: TypeId,
        runner: DetachedRunner,
        item: Arc<dyn Any + Send + Sync>,
        /// The jobs it touches and whether it runs early ([`Call::moves`]).
        moves: Option<(Vec<i64>, bool)>,
    },
}

/// Runs the items of consecutive detached commands of one bulk kind together.
type DetachedRunner = for<'c> fn(
    &'c Conn,
    &'c mut Group,
    Vec<&'c (dyn Any + Send + Sync)>,
) -> BoxFuture<'c, Result<(), PgError>>;

fn run_detached_bulk<'c, B: Bulk<Answer = ()>>(
    c: &'c Conn,
    g: &'c mut Group,
    items: Vec<&'c (dyn Any + Send + Sync)>,
) -> BoxFuture<'c, Result<(), PgError>> {
    let items: Option<Vec<&B::Item>> = items
        .into_iter()
        .map(|item| item.downcast_ref::<B::Item>())
        .collect();
    Box::pin(async move {
        let items = items
            .ok_or_else(|| PgError::Data("a bulk run holds a command of another kind".into()))?;
        B::run(c, g, items).await.map(drop)
    })
}

impl Detached {
    /// Its bulk kind, if it has one.
    fn bulk(&self) -> Option<TypeId> {
        match &self.work {
            DetachedWork::Alone(_) => None,
            DetachedWork::Bulk { kind, .. } => Some(*kind),
        }
    }

    /// As [`Call::moves`].
    fn moves(&self) -> Option<(&[i64], bool)> {
        match &self.work {
            DetachedWork::Bulk {
                moves: Some((jobs, early)),
                ..
            } => Some((jobs, *early)),
            _ => None,
        }
    }
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
            call: Box::new(Reply {
                work,
                answer: Answer::new(reply),
            }),
        });
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Queues `item`, a command of bulk kind `B`, now; the future answers after its group's
    /// commit. `locks`: what it will lock (see [`crate::locks`]).
    pub(crate) fn bulk<B: Bulk>(
        &self,
        after: u64,
        locks: Locks,
        item: B::Item,
    ) -> BoxFuture<'static, StoreResult<B::Answer>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Command::Call {
            after,
            locks,
            call: Box::new(BulkReply::<B> {
                item,
                answer: Answer::new(reply),
            }),
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
            detached: Detached {
                what,
                work: DetachedWork::Alone(work),
            },
        })
    }

    /// Queues `item`, of bulk kind `B`, without waiting for it; a failure is logged, naming
    /// `what`.
    pub(crate) fn detach_bulk<B: Bulk<Answer = ()>>(
        &self,
        after: u64,
        what: &'static str,
        item: B::Item,
    ) -> StoreResult<()> {
        self.send(Command::Detached {
            after,
            detached: Detached {
                what,
                work: DetachedWork::Bulk {
                    kind: TypeId::of::<B>(),
                    runner: run_detached_bulk::<B>,
                    moves: B::jobs(&item).map(|jobs| (jobs.to_vec(), B::RUNS_EARLY)),
                    item: Arc::new(item),
                },
            },
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

/// A command of a group being run.
enum Entry {
    Call(Box<dyn Call>),
    Detached(Detached),
}

/// Runs one group (the buffered detached commands first) in one transaction; `false` if it
/// could not commit.
async fn execute(
    pool: &Pool,
    conn: &mut Option<Object>,
    relay: &Arc<str>,
    retry: &mut VecDeque<Detached>,
    commands: Vec<Command>,
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
    let mut entries: Vec<Entry> = retry.drain(..).map(Entry::Detached).collect();
    let mut locks = Locks::default();
    for command in commands {
        match command {
            Command::Call {
                locks: mut more,
                call,
                ..
            } => {
                locks.absorb(&mut more);
                entries.push(Entry::Call(call));
            }
            Command::Detached { detached, .. } => entries.push(Entry::Detached(detached)),
        }
    }
    let mut entries = early_first(entries);
    let Some(c) = conn.as_deref().filter(|_| g.broken.is_none()) else {
        let error = g
            .broken
            .unwrap_or_else(|| PgError::Unavailable("no connection".into()));
        let mut detached = Vec::new();
        for entry in entries {
            match entry {
                Entry::Call(call) => call.fail(&error),
                Entry::Detached(d) => detached.push(d),
            }
        }
        requeue(retry, detached);
        return false;
    };
    let fresh = g.clone();
    let mut careful = false;
    loop {
        begin(c, &mut g, &locks).await;
        if run_all(c, &mut g, &mut entries, careful).await || careful {
            break;
        }
        // A command failed without a savepoint: undo the group, and run it again with one for
        // each command.
        if c.batch_execute("ROLLBACK").await.is_err() {
            g.broken
                .get_or_insert(PgError::Unavailable("the rollback failed".into()));
            break;
        }
        g = fresh.clone();
        careful = true;
    }
    if g.broken.is_none() {
        // Sent on commit, one of each per transaction: `kefu_events` if it stored events (the
        // group holds the event counter already, so it serialises nothing more), and
        // `kefu_work` with the conversations if it stored jobs, for a relay that keeps one.
        let newest = g.newest_event.map(|id| id.to_string());
        let stored =
            (!locks.jobs().is_empty()).then(|| crate::listener::stored_note(relay, locks.jobs()));
        if let Err(error) = tokio::try_join!(
            notify(c, "SELECT pg_notify('kefu_events', $1)", newest),
            notify(c, "SELECT pg_notify('kefu_work', $1)", stored),
        ) {
            g.broken = Some(error);
        }
    }
    if g.broken.is_none() {
        if let Err(error) = c.batch_execute("COMMIT").await {
            g.broken = Some(error.into());
        }
    }
    let committed = g.broken.is_none();
    if !committed && (c.batch_execute("ROLLBACK").await.is_err() || c.is_closed()) {
        *conn = None;
    }
    let mut detached = Vec::new();
    for entry in entries {
        match entry {
            Entry::Call(call) => call.answer(g.broken.as_ref()),
            Entry::Detached(d) => detached.push(d),
        }
    }
    if !committed {
        requeue(retry, detached);
    }
    committed
}

/// Sends `payload` with the `pg_notify` statement `sql`, if there is one.
async fn notify(c: &Conn, sql: &str, payload: Option<String>) -> Result<(), PgError> {
    match payload {
        Some(payload) => sql::query(c, sql, &[&payload]).await.map(drop),
        None => Ok(()),
    }
}

/// Begins the group's transaction and takes its locks, pipelined. A group that may store
/// events takes the counter before any other lock, and holds it to the commit: taken by a
/// command in the middle, it would come after a former command's locks, and two relays'
/// groups could wait on each other.
async fn begin(c: &Conn, g: &mut Group, locks: &Locks) {
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
}

/// Runs every command of the group in order, consecutive commands of one bulk kind together
/// unless `careful`; `false` as soon as one fails without a savepoint.
async fn run_all(c: &Conn, g: &mut Group, entries: &mut [Entry], careful: bool) -> bool {
    let mut next = 0;
    while next < entries.len() {
        // A kind and whether its commands are detached: a run is all calls or all detached.
        let kind = |entry: &Entry| match entry {
            _ if careful => None,
            Entry::Call(call) => call.bulk().map(|(kind, _)| (kind, false)),
            Entry::Detached(d) => d.bulk().map(|kind| (kind, true)),
        };
        let went_on = if let Some(bulk) = kind(&entries[next]) {
            let end = next
                + entries[next..]
                    .iter()
                    .take_while(|entry| kind(entry) == Some(bulk))
                    .count();
            let run = &mut entries[next..end];
            next = end;
            run_together(c, g, run).await
        } else {
            let went_on = match &mut entries[next] {
                Entry::Call(call) => call.run(c, g, careful).await,
                Entry::Detached(d) => run_detached(c, g, d, careful).await,
            };
            next += 1;
            went_on
        };
        if !went_on {
            return false;
        }
    }
    true
}

/// Runs `run`, consecutive commands of one bulk kind, together; `false` if that failed, and the
/// group must be run again carefully.
async fn run_together(c: &Conn, g: &mut Group, run: &mut [Entry]) -> bool {
    match run.first() {
        Some(Entry::Call(call)) => match call.bulk() {
            Some((_, runner)) => runner(c, g, run).await,
            None => false,
        },
        Some(Entry::Detached(first)) => {
            let DetachedWork::Bulk { runner, .. } = &first.work else {
                return false;
            };
            let runner = *runner;
            if g.broken.is_some() {
                // Buffered again with the group, as each would be alone.
                return true;
            }
            let items = run
                .iter()
                .filter_map(|entry| match entry {
                    Entry::Detached(Detached {
                        work: DetachedWork::Bulk { item, .. },
                        ..
                    }) => Some(&**item),
                    _ => None,
                })
                .collect();
            runner(c, g, items).await.is_ok()
        }
        None => true,
    }
}

impl Entry {
    fn moves(&self) -> Option<(&[i64], bool)> {
        match self {
            Entry::Call(call) => call.moves(),
            Entry::Detached(d) => d.moves(),
        }
    }
}

/// Puts the commands that run early ([`Bulk::RUNS_EARLY`]) ahead of the others, so that more
/// of each kind run together: within each stretch of commands that all say which jobs they
/// touch, and only if no early one shares a job with any other command of the stretch (then
/// the stretch keeps its order). Every other command stays in its place, and so does the
/// order among the early ones and among the rest.
fn early_first(entries: Vec<Entry>) -> Vec<Entry> {
    let mut ordered = Vec::with_capacity(entries.len());
    let mut stretch = Vec::new();
    for entry in entries {
        if entry.moves().is_some() {
            stretch.push(entry);
        } else {
            ordered.append(&mut reorder_stretch(std::mem::take(&mut stretch)));
            ordered.push(entry);
        }
    }
    ordered.append(&mut reorder_stretch(stretch));
    ordered
}

fn reorder_stretch(stretch: Vec<Entry>) -> Vec<Entry> {
    let early = |entry: &Entry| entry.moves().is_some_and(|(_, early)| early);
    let jobs = |entry: &Entry| {
        entry
            .moves()
            .map(|(jobs, _)| jobs.to_vec())
            .unwrap_or_default()
    };
    let mut others_touch = std::collections::HashSet::new();
    for entry in stretch.iter().filter(|entry| !early(entry)) {
        others_touch.extend(jobs(entry));
    }
    let shares = stretch
        .iter()
        .filter(|entry| early(entry))
        .any(|entry| jobs(entry).iter().any(|id| others_touch.contains(id)));
    if shares {
        return stretch;
    }
    let (mut first, rest): (Vec<Entry>, Vec<Entry>) = stretch.into_iter().partition(early);
    first.extend(rest);
    first
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

/// Runs a detached command; `false` if it failed without a savepoint. Under one, a statement
/// it gets refused is logged and the command dropped; a deadlock or serialisation failure
/// fails the group, so that the command is tried again in order.
async fn run_detached(c: &Conn, g: &mut Group, d: &Detached, careful: bool) -> bool {
    let work = match &d.work {
        DetachedWork::Alone(work) => work.clone(),
        DetachedWork::Bulk { runner, item, .. } => {
            let (runner, item) = (*runner, item.clone());
            repeatable(move |c, g| {
                let item = item.clone();
                Box::pin(async move { runner(c, g, vec![&*item]).await })
            })
        }
    };
    match attempt(c, g, careful, &*work).await {
        Attempted::Redo(_) => false,
        Attempted::Done(Ok(())) => true,
        Attempted::Done(Err(error)) => {
            if matches!(error.code(), Some("40P01" | "40001")) {
                g.broken.get_or_insert(error);
            } else if g.broken.is_none() {
                tracing::error!("cannot record {}: {error}", d.what);
            }
            true
        }
    }
}

/// The statement that starts a command's savepoint (releasing the previous command's in the
/// same round trip), to send ahead of the command's own; and the group state to restore if
/// the command fails.
fn enter(g: &mut Group) -> (&'static str, Option<i64>) {
    let sql = if g.savepoint {
        "RELEASE SAVEPOINT work; SAVEPOINT work"
    } else {
        "SAVEPOINT work"
    };
    g.savepoint = true;
    (sql, g.newest_event)
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

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::connect::connect;
    use crate::testing::fresh_database;

    /// A call that inserts `v` into `lane_test`, then fails if asked to.
    fn insert(lane: &Lane, v: i32, fail: bool) -> BoxFuture<'static, StoreResult<i32>> {
        lane.call(
            0,
            Locks::default(),
            work(move |c, _| {
                Box::pin(async move {
                    c.execute("INSERT INTO lane_test (v) VALUES ($1)", &[&v])
                        .await?;
                    if fail {
                        c.execute("SELECT 1 / 0", &[]).await?;
                    }
                    Ok(v)
                })
            }),
        )
    }

    #[tokio::test]
    async fn a_command_that_fails_undoes_its_own_writes_only_and_its_group_commits() {
        let Some(db) = fresh_database().await else {
            return;
        };
        let admin = db.admin().await.unwrap();
        admin
            .batch_execute("CREATE TABLE lane_test (v integer)")
            .await
            .unwrap();
        let relay = db.relay();
        let pool = connect(&db.config, &relay).await.unwrap();
        let lane = Lane::start("test", pool, relay.as_str().into(), None);
        // Sent before the lane's task runs (this runtime has one thread): one group.
        let calls = [
            insert(&lane, 1, false),
            insert(&lane, 2, true),
            insert(&lane, 3, false),
        ];
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await);
        }
        assert_eq!(answers[0].as_ref().ok(), Some(&1), "{answers:?}");
        assert!(answers[1].is_err(), "{answers:?}");
        assert_eq!(answers[2].as_ref().ok(), Some(&3), "{answers:?}");
        let stored: Vec<i32> = admin
            .query("SELECT v FROM lane_test ORDER BY v", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(stored, [1, 3]);
        assert_eq!(lane.progress().borrow().to_owned(), 3);
    }
}
