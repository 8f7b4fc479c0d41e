//! The listener (design §4): one dedicated connection, outside the pool, that `LISTEN`s for the
//! fleet's new events (`kefu_events`) and its new or released work (`kefu_work`: a relay's
//! stored jobs name their conversations, [`stored_note`]), reads the event counter
//! every `poll_ms` and after each reconnect (notifications sent while it was away are lost), and
//! holds the fleet's leadership: a session advisory lock, which the server releases when the
//! session ends, so that a dead leader's successor takes over without waiting for a lease.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_store::{ConvKey, raise_newest};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client};

use crate::config::{PgConfig, RelayId};
use crate::connect::connect_one;
use crate::error::PgError;

/// The leadership lock, in the `kefu` namespace (key 0 is the migrator's).
const LEADER_LOCK: (i32, i32) = (1_801_807_477, 2);

/// The longest `kefu_work` payload sent; the server refuses 8000 bytes and more.
const MAX_NOTE: usize = 7_000;

/// The `kefu_work` payload of a commit by `relay` that stored jobs into the conversations
/// `jobs` (account, recipient): JSON, each conversation once (a group stores many jobs into a
/// busy one), without the conversations if they would not fit.
pub(crate) fn stored_note(relay: &str, jobs: &[(String, String)]) -> String {
    let jobs: std::collections::BTreeSet<&(String, String)> = jobs.iter().collect();
    let note = json!({ "relay": relay, "jobs": jobs }).to_string();
    if note.len() <= MAX_NOTE {
        return note;
    }
    json!({ "relay": relay, "jobs": [] }).to_string()
}

/// The conversations of a [`stored_note`] that a relay other than `me` sent; `None` for this
/// relay's own, or a payload that is not one (a stopped relay's).
fn read_stored_note(payload: &str, me: &str) -> Option<Vec<ConvKey>> {
    let note: Value = serde_json::from_str(payload).ok()?;
    if note.get("relay")?.as_str()? == me {
        return None;
    }
    note.get("jobs")?
        .as_array()?
        .iter()
        .map(|pair| {
            Some(ConvKey::jobs(
                pair.get(0)?.as_str()?,
                pair.get(1)?.as_str()?,
            ))
        })
        .collect()
}

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
    stored_elsewhere: broadcast::Sender<Vec<ConvKey>>,
    leadership: Arc<Leadership>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        let heard = Heard {
            newest,
            stored_elsewhere,
        };
        loop {
            let error = session(&config, &relay, &heard, &leadership).await;
            leadership.set(false);
            if !failing {
                tracing::warn!("the listener's database connection failed; reconnecting: {error}");
            }
            failing = true;
            tokio::time::sleep(RECONNECT).await;
        }
    })
}

/// Where the listener tells what it heard.
struct Heard {
    /// The newest event id.
    newest: watch::Sender<i64>,
    /// The job conversations other relays stored into.
    stored_elsewhere: broadcast::Sender<Vec<ConvKey>>,
}

/// A notification, as the listener acts on it.
enum Note {
    /// A new event's id (`kefu_events`).
    Event(i64),
    /// Jobs another relay stored (`kefu_work`).
    StoredElsewhere(Vec<ConvKey>),
    /// Nothing to do: this relay's own work, or a payload it does not read.
    Nothing,
}

/// One session of the listener; returns why it ended.
async fn session(
    config: &PgConfig,
    relay: &RelayId,
    heard: &Heard,
    leadership: &Leadership,
) -> PgError {
    let (client, mut connection) = match connect_one(config, relay).await {
        Ok(connected) => connected,
        Err(error) => return error,
    };
    // The connection is driven here, not spawned, to receive the notifications; it stops when
    // the client is dropped or the server goes away.
    let (notes, mut notified) = mpsc::unbounded_channel();
    let me = relay.as_str().to_owned();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    let note = match note.channel() {
                        "kefu_events" => note.payload().parse().map_or(Note::Nothing, Note::Event),
                        "kefu_work" => read_stored_note(note.payload(), &me)
                            .map_or(Note::Nothing, Note::StoredElsewhere),
                        _ => Note::Nothing,
                    };
                    if notes.send(note).is_err() {
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
    let ended = serve(config, &client, &mut notified, heard, leadership).await;
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
    notified: &mut mpsc::UnboundedReceiver<Note>,
    heard: &Heard,
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
                Some(Note::Event(id)) => raise_newest(&heard.newest, id),
                // Nobody listening (a relay without job deliveries) is no error.
                Some(Note::StoredElsewhere(keys)) => drop(heard.stored_elsewhere.send(keys)),
                // A stopped relay's `kefu_work` names no conversation: the claim loop finds
                // its work on its next round.
                Some(Note::Nothing) => {}
                None => return PgError::Data("the listener's connection closed".into()),
            },
            _ = ticks.tick() => {
                if let Err(error) = poll(client, &heard.newest, leadership).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
            .collect()
    }

    #[test]
    fn a_stored_note_names_its_conversations_to_every_relay_but_its_sender() {
        let note = stored_note(
            "r1",
            &jobs(&[("shop", "o2"), ("shop", "o\"1"), ("shop", "o2")]),
        );
        assert_eq!(
            read_stored_note(&note, "r2"),
            Some(vec![
                ConvKey::jobs("shop", "o\"1"),
                ConvKey::jobs("shop", "o2")
            ])
        );
        assert_eq!(read_stored_note(&note, "r1"), None);
    }

    #[test]
    fn too_many_conversations_to_name_make_a_note_that_names_none() {
        let many: Vec<(String, String)> = (0..1_000)
            .map(|i| ("shop".to_owned(), format!("openid-{i:024}")))
            .collect();
        let note = stored_note("r1", &many);
        assert!(note.len() <= MAX_NOTE, "{}", note.len());
        assert_eq!(read_stored_note(&note, "r2"), Some(Vec::new()));
    }

    #[test]
    fn a_stopped_relays_note_or_garbage_names_nothing() {
        for payload in ["", "r1", "{}", "[1]", r#"{"relay":"r1","jobs":[[1,2]]}"#] {
            assert_eq!(read_stored_note(payload, "r2"), None, "{payload}");
        }
    }
}
