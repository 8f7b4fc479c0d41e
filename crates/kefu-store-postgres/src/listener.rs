//! The listener (design §4): one dedicated connection, outside the pool, that `LISTEN`s for the
//! fleet's new events (`kefu_events`) and released work (`kefu_work`), reads the event counter
//! every `poll_ms` and after each reconnect (notifications sent while it was away are lost), and
//! holds the fleet's leadership: a session advisory lock, which the server releases when the
//! session ends, so that a dead leader's successor takes over without waiting for a lease.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_store::raise_newest;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client};

use crate::config::{PgConfig, RelayId};
use crate::connect::connect_one;
use crate::error::PgError;

/// The leadership lock, in the `kefu` namespace (key 0 is the migrator's).
const LEADER_LOCK: (i32, i32) = (1_801_807_477, 2);

/// The wait before connecting again after the listener's connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// Whether, and since when, this relay leads the fleet.
#[derive(Default)]
pub(crate) struct Leadership(Mutex<Option<Instant>>);

impl Leadership {
    /// Whether this relay holds the leadership lock now.
    pub(crate) fn is_leader(&self) -> bool {
        self.since().is_some()
    }

    /// Whether this relay has led for at least `period` without a break.
    pub(crate) fn led_for(&self, period: Duration) -> bool {
        self.since().is_some_and(|since| since.elapsed() >= period)
    }

    fn since(&self) -> Option<Instant> {
        match self.0.lock() {
            Ok(since) => *since,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Records whether this relay holds the lock now (`false` also when it let it go).
    pub(crate) fn set(&self, leading: bool) {
        let mut since = match self.0.lock() {
            Ok(since) => since,
            Err(poisoned) => poisoned.into_inner(),
        };
        match (leading, since.is_some()) {
            (true, false) => {
                *since = Some(Instant::now());
                tracing::info!("this relay now leads the fleet's periodic work");
            }
            (false, true) => {
                *since = None;
                tracing::info!("this relay no longer leads the fleet's periodic work");
            }
            _ => {}
        }
    }
}

/// Starts the listener for `relay`: it runs until aborted, reconnecting after a failure; while
/// its connection is down this relay does not lead.
pub(crate) fn listen(
    config: PgConfig,
    relay: RelayId,
    newest: watch::Sender<i64>,
    leadership: Arc<Leadership>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let error = session(&config, &relay, &newest, &leadership).await;
            leadership.set(false);
            if !failing {
                tracing::warn!("the listener's database connection failed; reconnecting: {error}");
            }
            failing = true;
            tokio::time::sleep(RECONNECT).await;
        }
    })
}

/// One session of the listener; returns why it ended.
async fn session(
    config: &PgConfig,
    relay: &RelayId,
    newest: &watch::Sender<i64>,
    leadership: &Leadership,
) -> PgError {
    let (client, mut connection) = match connect_one(config, relay).await {
        Ok(connected) => connected,
        Err(error) => return error,
    };
    // The connection is driven here, not spawned, to receive the notifications; it stops when
    // the client is dropped or the server goes away.
    let (notes, mut notified) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if notes.send(note.payload().parse::<i64>().ok()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    // Aborted also when the listener itself is (the store stops): the session then ends, and
    // the server releases the leadership lock at once.
    let driver = AbortOnDrop(driver);
    let ended = serve(config, &client, &mut notified, newest, leadership).await;
    drop(client);
    drop(driver);
    ended
}

/// Aborts its task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens, follows the counter and keeps or seeks the leadership, until the connection fails.
async fn serve(
    config: &PgConfig,
    client: &Client,
    notified: &mut mpsc::UnboundedReceiver<Option<i64>>,
    newest: &watch::Sender<i64>,
    leadership: &Leadership,
) -> PgError {
    // Only PostgreSQL 14 and newer know the setting; this session is idle by design.
    let _ = client.batch_execute("SET idle_session_timeout = 0").await;
    if let Err(error) = client
        .batch_execute("LISTEN kefu_events; LISTEN kefu_work")
        .await
    {
        return error.into();
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(config.poll_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = notified.recv() => match note {
                // `kefu_work` (a relay let its conversations go) carries no id: the claim loop
                // finds that work on its next round.
                Some(Some(id)) => raise_newest(newest, id),
                Some(None) => {}
                None => return PgError::Data("the listener's connection closed".into()),
            },
            _ = ticks.tick() => {
                if let Err(error) = poll(client, newest, leadership).await {
                    return error;
                }
            }
        }
    }
}

/// Reads the counter, and takes the leadership if this relay does not hold it yet (a session
/// lock is reentrant: taking it again while held would only stack it).
async fn poll(
    client: &Client,
    newest: &watch::Sender<i64>,
    leadership: &Leadership,
) -> Result<(), PgError> {
    let row = client
        .query_one(
            "SELECT value FROM kefu.counters WHERE name = 'event_id'",
            &[],
        )
        .await?;
    raise_newest(newest, row.try_get(0)?);
    if !leadership.is_leader() {
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LEADER_LOCK.0, &LEADER_LOCK.1],
            )
            .await?
            .try_get(0)?;
        leadership.set(taken);
    }
    Ok(())
}
