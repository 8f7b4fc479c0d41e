//! The inbound tables (events, redelivery and replay keys), and [`EventStore`] over them.
//!
//! Event ids come from the counter row `kefu.counters('event_id')`, updated in the transaction
//! that stores the event and locked by it until its commit (design §4; a lane group that admits
//! callbacks locks it first, see `lane::Group`): transactions that store events take their ids
//! one after the other, so ids become visible in id order and a reader
//! that asks for the events after the last id it saw never skips one. The counter never goes
//! down, so ids are never reused, also across purges.

use kefu_core::BoxFuture;
use kefu_store::event::{self, EventKind};
use kefu_store::session::Session;
use kefu_store::{
    Admission, DIALOGUE_ACCOUNT, EventPage, EventStore, NewDialogue, NewWechat, NewYunzhenji,
    PendingEvent, Purged, StoreResult, WebhookOutcome, YunzhenjiAdmission,
};
use serde_json::{Map, Value};

use crate::error::PgError;
use crate::lane::{Group, repeatable, work};
use crate::locks::{LOCK_CONVERSATIONS, Locks, WEBHOOK_LANE};
use crate::sql::{self, Conn};
use crate::store::PgStore;
use crate::{sessions, yunzhenji};

const NEWEST: &str = "SELECT value FROM kefu.counters WHERE name = 'event_id'";

/// The highest event id ever given (0 before the first), also after purges.
pub(crate) async fn newest(c: &Conn) -> Result<i64, PgError> {
    sql::get(&sql::query_one(c, NEWEST, &[]).await?, 0)
}

/// Claims a redelivery key until `expires_ms`; `false`: a live one exists, the callback is a
/// redelivery. A claim racing another relay's waits for it, so one of the two wins.
pub(crate) async fn claim_dedup(
    c: &Conn,
    key: &str,
    expires_ms: i64,
    now: i64,
) -> Result<bool, PgError> {
    Ok(sql::query_opt(
        c,
        "INSERT INTO kefu.dedup (key, event_id, expires_at_ms) VALUES ($1, NULL, $2)
         ON CONFLICT (key) DO UPDATE SET event_id = NULL, expires_at_ms = excluded.expires_at_ms
         WHERE kefu.dedup.expires_at_ms <= $3
         RETURNING 1",
        &[&key, &expires_ms, &now],
    )
    .await?
    .is_some())
}

/// An event to store, with the redelivery key claimed for it.
pub(crate) struct EventRow<'a> {
    pub(crate) account: Option<&'a str>,
    pub(crate) openid: &'a str,
    /// The event's `kind`, as the desk reads it.
    pub(crate) kind: &'a str,
    pub(crate) event: Map<String, Value>,
    pub(crate) webhook: bool,
    pub(crate) dedup_key: &'a str,
}

/// Stores an event under the next id of the counter (locked until the commit), and points its
/// redelivery key at it.
pub(crate) async fn insert_event(
    c: &Conn,
    g: &mut Group,
    row: EventRow<'_>,
) -> Result<PendingEvent, PgError> {
    let EventRow {
        account,
        openid,
        kind,
        event,
        webhook,
        dedup_key,
    } = row;
    if webhook {
        sql::execute(
            c,
            LOCK_CONVERSATIONS,
            &[&WEBHOOK_LANE, &vec![""], &vec![openid], &g.now],
        )
        .await?;
    }
    let id: i64 = sql::get(
        &sql::query_one(
            c,
            "UPDATE kefu.counters SET value = value + 1 WHERE name = 'event_id' RETURNING value",
            &[],
        )
        .await?,
        0,
    )?;
    let source = event
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let body = event::with_id(id, event);
    sql::execute(
        c,
        "INSERT INTO kefu.events (id, source, account, openid, kind, body, received_at_ms,
                                  webhook_state, not_before_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $7)",
        &[
            &id,
            &source,
            &account,
            &openid,
            &kind,
            &body,
            &g.now,
            &if webhook { "pending" } else { "none" },
        ],
    )
    .await?;
    sql::execute(
        c,
        "UPDATE kefu.dedup SET event_id = $2 WHERE key = $1",
        &[&dedup_key, &id],
    )
    .await?;
    g.stored_event(id);
    Ok(PendingEvent {
        id,
        openid: openid.to_owned(),
        body,
        attempts: 0,
        not_before_ms: g.now,
    })
}

/// Admits a Dialogue callback: drops a redelivery, else stores the event and moves the user's
/// session.
async fn admit_dialogue(c: &Conn, g: &mut Group, new: NewDialogue) -> Result<Admission, PgError> {
    if !claim_dedup(c, &new.dedup_key, new.dedup_expires_ms, g.now).await? {
        return Ok(Admission::Duplicate);
    }
    let now = g.now;
    let callback = &new.callback;
    let session = sessions::lock(c, DIALOGUE_ACCOUNT, &callback.userid).await?;
    let kind = event::dialogue_kind(callback, session.as_ref().map(|s| s.state));
    let body = event::dialogue_event(callback, kind, new.raw, now);
    let stored = insert_event(
        c,
        g,
        EventRow {
            account: None,
            openid: &callback.userid,
            kind: kind.as_str(),
            event: body,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
        },
    )
    .await?;
    let mut session =
        session.unwrap_or_else(|| Session::new(DIALOGUE_ACCOUNT, &callback.userid, now));
    session.apply_callback(callback, now);
    if kind == EventKind::Message && callback.from == Some(0) {
        session.last_user_message_at_ms = Some(now);
    }
    session.last_event_id = Some(stored.id);
    sessions::save(c, &session).await?;
    Ok(Admission::Stored(stored))
}

/// What [`remember_plain_signature`] records as the body of a URL verification, which has
/// none: any push under the same signature then has another body, and is refused as a replay.
const URL_VERIFICATION: &str = "url-verification";

/// Remembers a plain signature's replay key with the first body it came with: a later body
/// under the same key is the replay, so only the expiry may move (later, never earlier).
async fn remember_plain_signature(
    c: &Conn,
    key: &str,
    body_sha256: &str,
    expires_ms: i64,
) -> Result<(), PgError> {
    sql::execute(
        c,
        "INSERT INTO kefu.replay (key, body_sha256, expires_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE
         SET expires_at_ms = greatest(kefu.replay.expires_at_ms, excluded.expires_at_ms)",
        &[&key, &body_sha256, &expires_ms],
    )
    .await?;
    Ok(())
}

/// Admits a WeChat callback: refuses a replay, drops a redelivery, else stores the event.
///
/// A (timestamp, nonce, signature) already accepted is a replay when it comes with another
/// body (a plain `signature` covers no body); with the same body it is the same request sent
/// again, dropped like any redelivery.
async fn admit_wechat(c: &Conn, g: &mut Group, new: NewWechat) -> Result<Admission, PgError> {
    let claimed = sql::query_opt(
        c,
        "INSERT INTO kefu.replay (key, body_sha256, expires_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET body_sha256 = excluded.body_sha256,
             expires_at_ms = excluded.expires_at_ms
         WHERE kefu.replay.expires_at_ms <= $4
         RETURNING 1",
        &[
            &new.replay_key,
            &new.body_sha256,
            &new.replay_expires_ms,
            &g.now,
        ],
    )
    .await?;
    if claimed.is_none() {
        let seen = sql::query_opt(
            c,
            "SELECT body_sha256 FROM kefu.replay WHERE key = $1",
            &[&new.replay_key],
        )
        .await?;
        let seen: Option<String> = seen.as_ref().map(|row| sql::get(row, 0)).transpose()?;
        return Ok(if seen.as_deref() == Some(new.body_sha256.as_str()) {
            Admission::Duplicate
        } else {
            Admission::Replayed
        });
    }
    if let Some(plain) = &new.plain_replay_key {
        remember_plain_signature(c, plain, &new.body_sha256, new.replay_expires_ms).await?;
    }
    if !claim_dedup(c, &new.dedup_key, new.dedup_expires_ms, g.now).await? {
        return Ok(Admission::Duplicate);
    }
    let now = g.now;
    let openid = &new.message.from_user_name;
    let session = sessions::lock(c, &new.account, openid).await?;
    let kind = event::wechat_kind(&new.message);
    let body = event::wechat_event(&new.account, &new.message, kind, now);
    let stored = insert_event(
        c,
        g,
        EventRow {
            account: Some(&new.account),
            openid,
            kind: kind.as_str(),
            event: body,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
        },
    )
    .await?;
    let mut session = session.unwrap_or_else(|| Session::new(&new.account, openid, now));
    session.updated_at_ms = now;
    session.last_event_id = Some(stored.id);
    if event::opens_send_window(&new.message) {
        session.last_user_message_at_ms = Some(now);
    }
    sessions::save(c, &session).await?;
    Ok(Admission::Stored(stored))
}

/// An event still to push, from `id, openid, body, attempts, not_before_ms`.
pub(crate) fn read_pending(row: &tokio_postgres::Row) -> Result<PendingEvent, PgError> {
    Ok(PendingEvent {
        id: sql::get(row, 0)?,
        openid: sql::get(row, 1)?,
        body: sql::get(row, 2)?,
        attempts: sql::unsigned(row, 3)?,
        not_before_ms: sql::get(row, 4)?,
    })
}

/// The events still to push, in order, and the highest event id.
async fn pending_events(c: &Conn) -> Result<(Vec<PendingEvent>, i64), PgError> {
    let pending = sql::query(
        c,
        "SELECT id, openid, body, attempts, not_before_ms FROM kefu.events
         WHERE webhook_state = 'pending' ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(read_pending)
    .collect::<Result<Vec<_>, _>>()?;
    Ok((pending, newest(c).await?))
}

/// Events with an id above `after`, at most `limit`, then the newest id: read after the events,
/// so that it is at least the highest of them.
async fn events_after(c: &Conn, after: i64, limit: u32) -> Result<EventPage, PgError> {
    let events = sql::query(
        c,
        "SELECT id, body FROM kefu.events WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|row| Ok((sql::get(row, 0)?, sql::get(row, 1)?)))
    .collect::<Result<Vec<_>, PgError>>()?;
    Ok(EventPage {
        events,
        newest: newest(c).await?,
    })
}

/// Records a push's outcome, only on an event still to push: a late outcome (another relay took
/// the user's pushes over meanwhile and finished them) changes nothing.
async fn record_webhook(
    c: &Conn,
    g: &mut Group,
    id: i64,
    outcome: &WebhookOutcome,
) -> Result<(), PgError> {
    let (state, not_before, error) = match outcome {
        WebhookOutcome::Delivered => ("delivered", None, None),
        WebhookOutcome::Retry {
            not_before_ms,
            error,
        } => ("pending", Some(*not_before_ms), Some(error.as_str())),
        WebhookOutcome::Failed { error } => ("failed", None, Some(error.as_str())),
    };
    sql::execute(
        c,
        "UPDATE kefu.events SET webhook_state = $2, attempts = attempts + 1,
             not_before_ms = coalesce($3, not_before_ms), last_error = $4, updated_at_ms = $5
         WHERE id = $1 AND webhook_state = 'pending'",
        &[&id, &state, &not_before, &error, &g.now],
    )
    .await?;
    Ok(())
}

/// Removes expired keys, and the events received before `$2` that the webhook no longer needs,
/// in one statement.
const PURGE: &str = "
WITH dedup AS (DELETE FROM kefu.dedup WHERE expires_at_ms <= $1 RETURNING 1),
     replay AS (DELETE FROM kefu.replay WHERE expires_at_ms <= $1 RETURNING 1),
     events AS (DELETE FROM kefu.events WHERE received_at_ms < $2 AND webhook_state <> 'pending'
                RETURNING 1)
SELECT (SELECT count(*) FROM dedup), (SELECT count(*) FROM replay), (SELECT count(*) FROM events)";

async fn purge(c: &Conn, now: i64, events_before_ms: i64) -> Result<Purged, PgError> {
    let row = sql::query_one(c, PURGE, &[&now, &events_before_ms]).await?;
    Ok(Purged {
        dedup_keys: sql::count(&row, 0)?,
        replay_keys: sql::count(&row, 1)?,
        events: sql::count(&row, 2)?,
    })
}

impl EventStore for PgStore {
    fn pending_events(&self) -> BoxFuture<'_, StoreResult<(Vec<PendingEvent>, i64)>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(pending_events(&c).await?)
        })
    }

    fn admit_dialogue(&self, new: NewDialogue) -> BoxFuture<'_, StoreResult<Admission>> {
        let mut locks = Locks::default()
            .counter()
            .session(DIALOGUE_ACCOUNT, &new.callback.userid);
        if new.webhook {
            locks = locks.webhook(&new.callback.userid);
        }
        let admitted = self.api(
            locks,
            work(move |c, g| Box::pin(admit_dialogue(c, g, new.clone()))),
        );
        self.announced(admitted)
    }

    fn admit_wechat(&self, new: NewWechat) -> BoxFuture<'_, StoreResult<Admission>> {
        let openid = &new.message.from_user_name;
        let mut locks = Locks::default().counter().session(&new.account, openid);
        if new.webhook {
            locks = locks.webhook(openid);
        }
        let admitted = self.api(
            locks,
            work(move |c, g| Box::pin(admit_wechat(c, g, new.clone()))),
        );
        self.announced(admitted)
    }

    fn admit_yunzhenji(&self, new: NewYunzhenji) -> BoxFuture<'_, StoreResult<YunzhenjiAdmission>> {
        let mut locks = Locks::default().counter();
        if new.webhook {
            locks = locks.webhook(&new.conversation);
        }
        let admitted = self.api(
            locks,
            work(move |c, g| Box::pin(yunzhenji::admit(c, g, new.clone()))),
        );
        Box::pin(async move {
            let admitted = admitted.await?;
            self.announce(&admitted.admission);
            Ok(admitted)
        })
    }

    fn remember_url_verification(
        &self,
        key: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.api(
            Locks::default(),
            work(move |c, _| {
                let key = key.clone();
                Box::pin(async move {
                    remember_plain_signature(c, &key, URL_VERIFICATION, expires_ms).await
                })
            }),
        )
    }

    fn events_after(&self, after: i64, limit: u32) -> BoxFuture<'_, StoreResult<EventPage>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(events_after(&c, after, limit).await?)
        })
    }

    fn record_webhook(&self, id: i64, outcome: WebhookOutcome) -> StoreResult<()> {
        self.detach(
            "a webhook outcome",
            repeatable(move |c, g| {
                let outcome = outcome.clone();
                Box::pin(async move { record_webhook(c, g, id, &outcome).await })
            }),
        )
    }

    fn purge_events(&self, retention_ms: i64) -> BoxFuture<'_, StoreResult<Purged>> {
        Box::pin(async move {
            let c = self.reader().await?;
            let now = kefu_core::now_ms();
            Ok(purge(&c, now, now.saturating_sub(retention_ms)).await?)
        })
    }
}
