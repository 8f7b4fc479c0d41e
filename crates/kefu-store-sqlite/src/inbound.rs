//! The inbound tables (events, redelivery and replay keys, sessions), and [`EventStore`] and
//! [`SessionStore`] over them. They share the jobs' group commits.

use kefu_core::BoxFuture;
use kefu_payload::KefuState;
use rusqlite::{OptionalExtension as _, Transaction, params};
use serde_json::{Map, Value};

use super::{SqliteStore, sql, yunzhenji};
use kefu_store::event::{self, EventKind};
use kefu_store::session::{ChangedBy, Session};
use kefu_store::{
    Admission, DIALOGUE_ACCOUNT, DeskCall, EventPage, EventStore, NewDialogue, NewWechat,
    NewYunzhenji, PendingEvent, Purged, SessionStore, StoreError, StoreResult, WebhookOutcome,
    YunzhenjiAdmission,
};

/// The events still to push, in order, and the highest event id.
fn pending_events(tx: &Transaction<'_>) -> Result<(Vec<PendingEvent>, i64), StoreError> {
    let mut statement = tx
        .prepare(
            "SELECT id, openid, body, attempts, not_before_ms FROM inbound_events
         WHERE webhook_state = 'pending' ORDER BY id",
        )
        .map_err(sql)?;
    let pending = statement
        .query_map([], |row| {
            Ok(PendingEvent {
                id: row.get(0)?,
                openid: row.get(1)?,
                body: row.get(2)?,
                attempts: row.get(3)?,
                not_before_ms: row.get(4)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok((pending, latest_event_id(tx)?))
}

/// The highest event id ever given (0 before the first), also after purges.
pub(crate) fn latest_event_id(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    let from_sequence: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'inbound_events'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(from_sequence.unwrap_or_default())
}

pub(super) fn is_duplicate(tx: &Transaction<'_>, key: &str, now: i64) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM inbound_dedup WHERE key = ?1 AND expires_at_ms > ?2")
        .map_err(sql)?
        .query_row(params![key, now], |_| Ok(()))
        .optional()
        .map_err(sql)?
        .is_some())
}

/// An event row to insert, with its dedup key.
pub(super) struct EventRow<'a> {
    pub(super) account: Option<&'a str>,
    pub(super) openid: &'a str,
    /// The event's `kind`, as the desk reads it.
    pub(super) kind: &'a str,
    pub(super) event: Map<String, Value>,
    pub(super) webhook: bool,
    pub(super) dedup_key: &'a str,
    pub(super) dedup_expires_ms: i64,
}

pub(super) fn insert_event(
    tx: &Transaction<'_>,
    now: i64,
    row: EventRow<'_>,
) -> Result<PendingEvent, StoreError> {
    let EventRow {
        account,
        openid,
        kind,
        event,
        webhook,
        dedup_key,
        dedup_expires_ms,
    } = row;
    let source = event
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    tx.prepare_cached(
        "INSERT INTO inbound_events (source, account, openid, kind, body, received_at_ms,
                                     webhook_state, not_before_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?5, ?5)",
    )
    .map_err(sql)?
    .execute(params![
        source,
        account,
        openid,
        kind,
        now,
        if webhook { "pending" } else { "none" }
    ])
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    let body = event::with_id(id, event);
    tx.prepare_cached("UPDATE inbound_events SET body = ?2 WHERE id = ?1")
        .map_err(sql)?
        .execute(params![id, body])
        .map_err(sql)?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO inbound_dedup (key, event_id, expires_at_ms) VALUES (?1, ?2, ?3)",
    )
    .map_err(sql)?
    .execute(params![dedup_key, id, dedup_expires_ms])
    .map_err(sql)?;
    Ok(PendingEvent {
        id,
        openid: openid.to_owned(),
        body,
        attempts: 0,
        not_before_ms: now,
    })
}

/// Admits a Dialogue callback: drops a redelivery, else stores the event and moves the user's
/// session.
fn admit_dialogue(
    tx: &Transaction<'_>,
    now: i64,
    new: NewDialogue,
) -> Result<Admission, StoreError> {
    if is_duplicate(tx, &new.dedup_key, now)? {
        return Ok(Admission::Duplicate);
    }
    let callback = &new.callback;
    let session = load_session(tx, DIALOGUE_ACCOUNT, &callback.userid)?;
    let kind = event::dialogue_kind(callback, session.as_ref().map(|s| s.state));
    let body = event::dialogue_event(callback, kind, new.raw, now);
    let stored = insert_event(
        tx,
        now,
        EventRow {
            account: None,
            openid: &callback.userid,
            kind: kind.as_str(),
            event: body,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
            dedup_expires_ms: new.dedup_expires_ms,
        },
    )?;
    let mut session =
        session.unwrap_or_else(|| Session::new(DIALOGUE_ACCOUNT, &callback.userid, now));
    session.apply_callback(callback, now);
    if kind == EventKind::Message && callback.from == Some(0) {
        session.last_user_message_at_ms = Some(now);
    }
    session.last_event_id = Some(stored.id);
    save_session(tx, &session)?;
    Ok(Admission::Stored(stored))
}

/// What [`remember_url_verification`] records as the body of a URL verification, which has
/// none: any push under the same signature then has another body, and is refused as a replay.
const URL_VERIFICATION: &str = "url-verification";

/// Remembers the plain signature of a URL verification that passed until `expires_ms`, so that
/// a push reusing its (timestamp, nonce, signature) is refused as a replay.
fn remember_url_verification(
    tx: &Transaction<'_>,
    key: &str,
    expires_ms: i64,
) -> Result<(), StoreError> {
    remember_plain_signature(tx, key, URL_VERIFICATION, expires_ms)
}

/// Remembers a plain signature's replay key with the first body it came with: a later body
/// under the same key is the replay, so only the expiry may move (later, never earlier).
fn remember_plain_signature(
    tx: &Transaction<'_>,
    key: &str,
    body_sha256: &str,
    expires_ms: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO inbound_replay (key, body_sha256, expires_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET expires_at_ms = max(expires_at_ms, excluded.expires_at_ms)",
    ).map_err(sql)?
    .execute(params![key, body_sha256, expires_ms]).map_err(sql)?;
    Ok(())
}

/// Admits a WeChat callback: refuses a replay, drops a redelivery, else stores the event.
///
/// A (timestamp, nonce, signature) already accepted is a replay when it comes with another
/// body: a plain `signature` covers no body, so a captured one could carry any message. With
/// the same body it is the same request sent again, such as WeChat's own retry after an answer
/// was lost: it was stored the first time, so it is dropped like any redelivery.
fn admit_wechat(tx: &Transaction<'_>, now: i64, new: NewWechat) -> Result<Admission, StoreError> {
    let seen: Option<String> = tx
        .prepare_cached(
            "SELECT body_sha256 FROM inbound_replay WHERE key = ?1 AND expires_at_ms > ?2",
        )
        .map_err(sql)?
        .query_row(params![new.replay_key, now], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    match seen {
        Some(body) if body == new.body_sha256 => return Ok(Admission::Duplicate),
        Some(_) => return Ok(Admission::Replayed),
        None => {}
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO inbound_replay (key, body_sha256, expires_at_ms)
         VALUES (?1, ?2, ?3)",
    )
    .map_err(sql)?
    .execute(params![
        new.replay_key,
        new.body_sha256,
        new.replay_expires_ms
    ])
    .map_err(sql)?;
    if let Some(plain) = &new.plain_replay_key {
        remember_plain_signature(tx, plain, &new.body_sha256, new.replay_expires_ms)?;
    }
    if is_duplicate(tx, &new.dedup_key, now)? {
        return Ok(Admission::Duplicate);
    }
    let kind = event::wechat_kind(&new.message);
    let body = event::wechat_event(&new.account, &new.message, kind, now);
    let stored = insert_event(
        tx,
        now,
        EventRow {
            account: Some(&new.account),
            openid: &new.message.from_user_name,
            kind: kind.as_str(),
            event: body,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
            dedup_expires_ms: new.dedup_expires_ms,
        },
    )?;
    let openid = &new.message.from_user_name;
    let mut session = load_session(tx, &new.account, openid)?
        .unwrap_or_else(|| Session::new(&new.account, openid, now));
    session.updated_at_ms = now;
    session.last_event_id = Some(stored.id);
    if event::opens_send_window(&new.message) {
        session.last_user_message_at_ms = Some(now);
    }
    save_session(tx, &session)?;
    Ok(Admission::Stored(stored))
}

/// Events with an id above `after`, in order, at most `limit`: (id, body).
fn events_after(
    tx: &Transaction<'_>,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut statement = tx
        .prepare_cached("SELECT id, body FROM inbound_events WHERE id > ?1 ORDER BY id LIMIT ?2")
        .map_err(sql)?;
    let rows = statement
        .query_map(params![after, limit], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

const SESSION_COLUMNS: &str = "account, openid, state, agent, channel, appid, changed_by,
    state_since_ms, requested_at_ms, created_at_ms, updated_at_ms, last_event_id,
    desk_pending_until_ms, last_user_message_at_ms";

fn read_session(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Session, String, String)> {
    Ok((
        Session {
            account: row.get(0)?,
            openid: row.get(1)?,
            state: KefuState::Asking,
            agent: row.get(3)?,
            channel: row.get(4)?,
            appid: row.get(5)?,
            changed_by: ChangedBy::Callback,
            state_since_ms: row.get(7)?,
            requested_at_ms: row.get(8)?,
            created_at_ms: row.get(9)?,
            updated_at_ms: row.get(10)?,
            last_event_id: row.get(11)?,
            desk_pending_until_ms: row.get(12)?,
            last_user_message_at_ms: row.get(13)?,
        },
        row.get(2)?,
        row.get(6)?,
    ))
}

fn finish_session(
    (mut session, state, changed_by): (Session, String, String),
) -> Result<Session, StoreError> {
    session.state = state.parse().map_err(|_| {
        StoreError::new(format!(
            "session {} has unknown state {state:?}",
            session.openid
        ))
    })?;
    session.changed_by = ChangedBy::parse(&changed_by).ok_or_else(|| {
        StoreError::new(format!(
            "session {} has unknown changed_by {changed_by:?}",
            session.openid
        ))
    })?;
    Ok(session)
}

/// One user's session on `account`, if the user was ever seen there.
fn load_session(
    tx: &Transaction<'_>,
    account: &str,
    openid: &str,
) -> Result<Option<Session>, StoreError> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE account = ?1 AND openid = ?2"
        ))
        .map_err(sql)?
        .query_row(params![account, openid], read_session)
        .optional()
        .map_err(sql)?;
    row.map(finish_session).transpose()
}

/// Sessions of `account` in `state` (all when `None`), longest in their state first, at most
/// `limit`.
fn list_sessions(
    tx: &Transaction<'_>,
    account: &str,
    state: Option<KefuState>,
    limit: u32,
) -> Result<Vec<Session>, StoreError> {
    let mut statement = tx
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE account = ?1 AND (?2 IS NULL OR state = ?2)
         ORDER BY state_since_ms, openid LIMIT ?3"
        ))
        .map_err(sql)?;
    let rows = statement
        .query_map(
            params![account, state.map(KefuState::as_str), limit],
            read_session,
        )
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    rows.into_iter().map(finish_session).collect()
}

fn save_session(tx: &Transaction<'_>, session: &Session) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .map_err(sql)?
    .execute(params![
        session.account,
        session.openid,
        session.state.as_str(),
        session.agent,
        session.channel,
        session.appid,
        session.changed_by.as_str(),
        session.state_since_ms,
        session.requested_at_ms,
        session.created_at_ms,
        session.updated_at_ms,
        session.last_event_id,
        session.desk_pending_until_ms,
        session.last_user_message_at_ms,
    ])
    .map_err(sql)?;
    Ok(())
}

/// Records a desk call on the user's session.
pub(super) fn desk_action(
    tx: &Transaction<'_>,
    now: i64,
    call: &DeskCall,
) -> Result<(), StoreError> {
    let session = call.recorded_on(load_session(tx, &call.account, &call.openid)?, now);
    save_session(tx, &session)
}

/// Records a webhook attempt's outcome.
fn record_webhook(
    tx: &Transaction<'_>,
    now: i64,
    id: i64,
    outcome: &WebhookOutcome,
) -> Result<(), StoreError> {
    let (state, not_before, error) = match outcome {
        WebhookOutcome::Delivered => ("delivered", None, None),
        WebhookOutcome::Retry {
            not_before_ms,
            error,
        } => ("pending", Some(*not_before_ms), Some(error.as_str())),
        WebhookOutcome::Failed { error } => ("failed", None, Some(error.as_str())),
    };
    tx.prepare_cached(
        "UPDATE inbound_events SET webhook_state = ?2, attempts = attempts + 1,
             not_before_ms = IFNULL(?3, not_before_ms), last_error = ?4, updated_at_ms = ?5
         WHERE id = ?1",
    )
    .map_err(sql)?
    .execute(params![id, state, not_before, error, now])
    .map_err(sql)?;
    Ok(())
}

/// Removes expired keys, and events received before `events_before_ms` that the webhook no
/// longer needs.
fn purge(tx: &Transaction<'_>, now: i64, events_before_ms: i64) -> Result<Purged, StoreError> {
    Ok(Purged {
        dedup_keys: tx.execute(
            "DELETE FROM inbound_dedup WHERE expires_at_ms <= ?1",
            params![now],
        ).map_err(sql)?,
        replay_keys: tx.execute(
            "DELETE FROM inbound_replay WHERE expires_at_ms <= ?1",
            params![now],
        ).map_err(sql)?,
        events: tx.execute(
            "DELETE FROM inbound_events WHERE received_at_ms < ?1 AND webhook_state <> 'pending'",
            params![events_before_ms],
        ).map_err(sql)?,
    })
}

impl EventStore for SqliteStore {
    fn pending_events(&self) -> BoxFuture<'_, StoreResult<(Vec<PendingEvent>, i64)>> {
        self.boxed(Box::new(|tx, _| pending_events(tx)))
    }

    fn admit_dialogue(&self, new: NewDialogue) -> BoxFuture<'_, StoreResult<Admission>> {
        let admitted = self.boxed(Box::new(move |tx, group| {
            admit_dialogue(tx, group.now, new)
        }));
        Box::pin(async move { self.announced(admitted.await) })
    }

    fn admit_wechat(&self, new: NewWechat) -> BoxFuture<'_, StoreResult<Admission>> {
        let admitted = self.boxed(Box::new(move |tx, group| admit_wechat(tx, group.now, new)));
        Box::pin(async move { self.announced(admitted.await) })
    }

    fn admit_yunzhenji(&self, new: NewYunzhenji) -> BoxFuture<'_, StoreResult<YunzhenjiAdmission>> {
        let admitted = self.boxed(Box::new(move |tx, group| {
            yunzhenji::admit(tx, group.now, new)
        }));
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
        self.boxed(Box::new(move |tx, _| {
            remember_url_verification(tx, &key, expires_ms)
        }))
    }

    fn events_after(&self, after: i64, limit: u32) -> BoxFuture<'_, StoreResult<EventPage>> {
        self.boxed(Box::new(move |tx, _| {
            Ok(EventPage {
                events: events_after(tx, after, limit)?,
                newest: latest_event_id(tx)?,
            })
        }))
    }

    fn record_webhook(&self, id: i64, outcome: WebhookOutcome) -> StoreResult<()> {
        self.run_detached(
            "a webhook outcome",
            Box::new(move |tx, group| record_webhook(tx, group.now, id, &outcome)),
        )
    }

    fn purge_events(&self, retention_ms: i64) -> BoxFuture<'_, StoreResult<Purged>> {
        self.boxed(Box::new(move |tx, group| {
            purge(tx, group.now, group.now.saturating_sub(retention_ms))
        }))
    }
}

impl SessionStore for SqliteStore {
    fn session<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        let (account, openid) = (account.to_owned(), openid.to_owned());
        self.read(Box::new(move |tx, _| load_session(tx, &account, &openid)))
    }

    fn sessions<'a>(
        &'a self,
        account: &'a str,
        state: Option<KefuState>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>> {
        let account = account.to_owned();
        self.read(Box::new(move |tx, _| {
            list_sessions(tx, &account, state, limit)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_store::message::StandardMessage;
    use kefu_store::session::DeskAction;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap();
        (dir, outbox)
    }

    #[tokio::test]
    async fn only_a_message_or_a_trigger_event_opens_the_send_window() {
        let (_dir, outbox) = open().await;
        let admit = |n: u32, msg_type: &str, event: Option<&str>, now: i64| {
            let outbox = outbox.clone();
            let new = NewWechat {
                account: "oa".into(),
                message: StandardMessage {
                    from_user_name: "oU".into(),
                    msg_type: Some(msg_type.into()),
                    event: event.map(str::to_owned),
                    ..StandardMessage::default()
                },
                replay_key: format!("r{n}"),
                plain_replay_key: None,
                replay_expires_ms: i64::MAX,
                body_sha256: format!("b{n}"),
                dedup_key: format!("d{n}"),
                dedup_expires_ms: i64::MAX,
                webhook: false,
            };
            async move {
                outbox
                    .run(Box::new(move |tx, _| admit_wechat(tx, now, new)))
                    .await
                    .unwrap();
                outbox
                    .run(Box::new(|tx, _| load_session(tx, "oa", "oU")))
                    .await
                    .unwrap()
                    .unwrap()
                    .last_user_message_at_ms
            }
        };
        assert_eq!(admit(1, "event", Some("unsubscribe"), 1_000).await, None);
        assert_eq!(admit(2, "event", Some("VIEW"), 2_000).await, None);
        assert_eq!(admit(3, "text", None, 3_000).await, Some(3_000));
        assert_eq!(
            admit(4, "event", Some("unsubscribe"), 4_000).await,
            Some(3_000),
            "an unfollow does not move the window"
        );
        assert_eq!(
            admit(5, "event", Some("LOCATION"), 5_000).await,
            Some(3_000)
        );
        assert_eq!(
            admit(6, "event", Some("subscribe"), 6_000).await,
            Some(6_000)
        );
        assert_eq!(admit(7, "event", Some("CLICK"), 7_000).await, Some(7_000));
        assert_eq!(admit(8, "event", Some("SCAN"), 8_000).await, Some(8_000));
        assert_eq!(admit(9, "image", None, 9_000).await, Some(9_000));
    }

    fn call(action: DeskAction) -> DeskCall {
        DeskCall {
            account: DIALOGUE_ACCOUNT.into(),
            openid: "oU".into(),
            action,
            agent: (action == DeskAction::Enter).then(|| "小明".into()),
            channel: (action == DeskAction::Enter).then_some(1),
            appid: None,
        }
    }

    #[tokio::test]
    async fn desk_actions_and_failed_work_rolls_back() {
        let (_dir, outbox) = open().await;
        outbox
            .run(Box::new(|tx, g| {
                desk_action(tx, g.now, &call(DeskAction::Enter))
            }))
            .await
            .unwrap();
        let failed = outbox
            .run(Box::new(|tx, g| {
                desk_action(tx, g.now, &call(DeskAction::Quit))?;
                Err::<(), _>(StoreError::new("boom"))
            }))
            .await;
        assert!(failed.is_err());
        let session = outbox
            .run(Box::new(|tx, _| load_session(tx, DIALOGUE_ACCOUNT, "oU")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.state, KefuState::PersonServing);
        assert_eq!(session.agent.as_deref(), Some("小明"));
        assert_eq!(session.changed_by, ChangedBy::Desk);
        assert_eq!(session.channel, Some(1));
    }
}
