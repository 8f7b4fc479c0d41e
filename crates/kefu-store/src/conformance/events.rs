//! Inbound events: admission once, replays, sessions, the feed and its ids, webhook outcomes.

use kefu_payload::{HandoffCallback, KefuState};
use serde_json::{Map, Value};

use super::{Fresh, restart};
use crate::message::StandardMessage;
use crate::{
    Admission, DIALOGUE_ACCOUNT, NewDialogue, NewWechat, PendingEvent, Purged, Store,
    WebhookOutcome,
};

const DAY_MS: i64 = 86_400_000;

fn callback(userid: &str, kfstate: KefuState, text: &str) -> HandoffCallback {
    HandoffCallback {
        userid: userid.into(),
        appid: "wx1".into(),
        content: Some(text.into()),
        from: Some(0),
        kfstate: Some(kfstate),
        channel: Some(0),
        createtime: Some(1_700_000_000),
        ..HandoffCallback::default()
    }
}

/// A Dialogue callback under redelivery key `key`, for the webhook.
fn dialogue(key: &str, callback: HandoffCallback) -> NewDialogue {
    NewDialogue {
        callback,
        raw: Map::new(),
        dedup_key: key.into(),
        dedup_expires_ms: i64::MAX,
        webhook: true,
    }
}

async fn stored(store: &dyn Store, new: NewDialogue) -> PendingEvent {
    match store.admit_dialogue(new).await.unwrap() {
        Admission::Stored(event) => event,
        other => panic!("not stored: {other:?}"),
    }
}

fn kind_of(event: &PendingEvent) -> Value {
    let body: Value = serde_json::from_str(&event.body).unwrap();
    assert_eq!(body["id"], event.id, "the body carries its id");
    body["kind"].clone()
}

/// The fleet's newest event id, which long polls wait on, reaches every event an admission
/// stored (a shared backend: through its notification, so this waits for it, untimed).
pub async fn the_newest_event_follows_admissions<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let mut newest = store.newest_event();
    let before = *newest.borrow();
    let event = stored(
        &*store,
        dialogue("n1", callback("oN", KefuState::NeedPerson, "hi")),
    )
    .await;
    assert!(event.id > before);
    let seen = *newest.wait_for(|newest| *newest >= event.id).await.unwrap();
    assert_eq!(seen, event.id, "no id beyond the one stored");
}

/// A callback is stored once (a redelivery is dropped), moves the user's session, and waits
/// for the webhook across a restart until delivered.
pub async fn admits_once_tracks_the_session_and_survives_a_restart<F: Fresh>(fresh: F) {
    let (first_id, second_id) = {
        let store = fresh.store();
        let (pending, newest) = store.pending_events().await.unwrap();
        assert!(pending.is_empty());
        assert_eq!(newest, 0);
        let first = dialogue("k1", callback("oU", KefuState::NeedPerson, "我要转人工"));
        let event = stored(&*store, first.clone()).await;
        assert_eq!(kind_of(&event), "handoff_requested");
        assert_eq!(
            store.admit_dialogue(first).await.unwrap(),
            Admission::Duplicate
        );
        let next = dialogue("k2", callback("oU", KefuState::NeedPerson, "在吗"));
        let second = stored(&*store, next).await;
        assert!(second.id > event.id);
        assert_eq!(kind_of(&second), "message", "already waiting for a person");
        store
            .record_webhook(event.id, WebhookOutcome::Delivered)
            .unwrap();
        fresh.recorded().await;
        (event.id, second.id)
    };
    let (fresh, _) = restart(fresh).await;
    let store = fresh.store();
    let (pending, newest) = store.pending_events().await.unwrap();
    assert_eq!(newest, second_id);
    let pending: Vec<i64> = pending.iter().map(|event| event.id).collect();
    assert_eq!(pending, [second_id]);
    let queue = store
        .sessions(DIALOGUE_ACCOUNT, Some(KefuState::NeedPerson), 10)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].openid, "oU");
    assert_eq!(queue[0].last_event_id, Some(second_id));
    assert!(queue[0].last_user_message_at_ms.is_some());
    let page = store.events_after(first_id, 10).await.unwrap();
    let ids: Vec<i64> = page.events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [second_id]);
}

/// A WeChat push of user `oU` on account `oa`: `replay` is its signature key (with the plain
/// signature after a comma, for an encrypted push), `body` its body's hash, `dedup` its
/// redelivery key; all expire at `expires_ms`.
fn wechat(replay: &str, body: &str, dedup: &str, expires_ms: i64) -> NewWechat {
    let mut keys = replay.split(',');
    NewWechat {
        account: "oa".into(),
        message: StandardMessage {
            from_user_name: "oU".into(),
            msg_type: Some("text".into()),
            content: Some("hi".into()),
            msg_id: Some("1".into()),
            ..StandardMessage::default()
        },
        replay_key: keys.next().unwrap_or_default().to_owned(),
        plain_replay_key: keys.next().map(str::to_owned),
        replay_expires_ms: expires_ms,
        body_sha256: body.into(),
        dedup_key: dedup.into(),
        dedup_expires_ms: expires_ms,
        webhook: false,
    }
}

/// A signature reused on another body is a replay, the same request again a redelivery; a
/// URL verification's signature counts too; expired keys count no more and are purged.
pub async fn replays_are_refused_and_expired_keys_no_longer_count<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let live = i64::MAX;
    store
        .remember_url_verification("v1".into(), live)
        .await
        .unwrap();
    // (signature keys, body, redelivery key, expiry, what the push is)
    let pushes = [
        ("r1", "b1", "d1", live, "stored"),
        ("r1", "b1", "d1", live, "redelivery"),
        ("r1", "b2", "d2", live, "replay"),
        ("r2", "b3", "d1", live, "redelivery"),
        // An encrypted push's plain signature is remembered: reused on another body, it is a
        // replay. An encrypted retry under it, with a new ciphertext, is still a redelivery.
        ("r3,p3", "b4", "d4", live, "stored"),
        ("p3", "b5", "d5", live, "replay"),
        ("r4,p3", "b6", "d4", live, "redelivery"),
        // A URL verification's signature, reused by a push.
        ("v1", "b7", "d7", live, "replay"),
        // Keys that expired (here: at once) no longer count.
        ("r9", "b9", "d9", 1, "stored"),
        ("r9", "b9", "d9", 1, "stored"),
    ];
    for (replay, body, dedup, expires_ms, expected) in pushes {
        let admitted = store
            .admit_wechat(wechat(replay, body, dedup, expires_ms))
            .await
            .unwrap();
        let seen = match admitted {
            Admission::Stored(_) => "stored",
            Admission::Duplicate => "redelivery",
            Admission::Replayed => "replay",
        };
        assert_eq!(seen, expected, "{replay} {body} {dedup}");
    }
    assert_eq!(
        store.purge_events(DAY_MS).await.unwrap(),
        Purged {
            dedup_keys: 1,
            replay_keys: 1,
            events: 0
        }
    );
    // The user's session on that account knows that the user wrote; the Dialogue platform's
    // user of the same id is another.
    let session = store.session("oa", "oU").await.unwrap().unwrap();
    assert_eq!(session.account, "oa");
    assert!(session.last_user_message_at_ms.is_some());
    assert_eq!(store.session(DIALOGUE_ACCOUNT, "oU").await.unwrap(), None);
}

/// The feed pages in id order with the newest id; a purge of every event leaves the newest id,
/// and the next event's id is above it: ids are never reused.
pub async fn events_are_paged_in_order_and_ids_survive_a_purge<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut new = dialogue(&format!("k{n}"), callback("oU", KefuState::Asking, "hi"));
        new.webhook = false;
        ids.push(stored(&*store, new).await.id);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let first = store.events_after(0, 2).await.unwrap();
    let paged: Vec<i64> = first.events.iter().map(|(id, _)| *id).collect();
    assert_eq!(paged, ids[..2]);
    assert_eq!(first.newest, ids[2]);
    let rest = store.events_after(ids[1], 10).await.unwrap();
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].0, ids[2]);
    let body: Value = serde_json::from_str(&rest.events[0].1).unwrap();
    assert_eq!(body["id"], ids[2]);
    // A retention a day into the future: every event was received before it.
    let purged = store.purge_events(-DAY_MS).await.unwrap();
    assert_eq!(purged.events, 3);
    let empty = store.events_after(0, 10).await.unwrap();
    assert!(empty.events.is_empty());
    assert_eq!(empty.newest, ids[2], "the newest id survives the purge");
    assert_eq!(store.pending_events().await.unwrap().1, ids[2]);
    let mut new = dialogue("k3", callback("oU", KefuState::Asking, "hi"));
    new.webhook = false;
    assert!(stored(&*store, new).await.id > ids[2]);
}

/// A webhook attempt's outcome: delivered and failed events wait no more, a retry waits with
/// its attempt counted until its time; the purge keeps an event still waiting.
pub async fn a_webhook_outcome_is_recorded<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let mut ids = Vec::new();
    for n in 0..3 {
        let new = dialogue(&format!("w{n}"), callback("oU", KefuState::Asking, "hi"));
        ids.push(stored(&*store, new).await.id);
    }
    let (pending, _) = store.pending_events().await.unwrap();
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(pending.iter().all(|event| event.attempts == 0));
    store
        .record_webhook(ids[0], WebhookOutcome::Delivered)
        .unwrap();
    let retry = WebhookOutcome::Retry {
        not_before_ms: 5,
        error: "503".into(),
    };
    store.record_webhook(ids[1], retry).unwrap();
    let failed = WebhookOutcome::Failed {
        error: "410".into(),
    };
    store.record_webhook(ids[2], failed).unwrap();
    fresh.recorded().await;
    let (pending, _) = store.pending_events().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, pending[0].attempts, pending[0].not_before_ms),
        (ids[1], 1, 5)
    );
    let purged = store.purge_events(-DAY_MS).await.unwrap();
    assert_eq!(purged.events, 2, "the one still waiting is kept");
    assert_eq!(store.pending_events().await.unwrap().0.len(), 1);
}

/// Event ids become visible in id order: a reader that follows the feed with the last id it
/// saw, while admissions run concurrently, misses none of them.
pub async fn a_reader_following_the_feed_misses_no_event<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..25 {
                    let user = format!("o{writer}");
                    let callback = callback(&user, KefuState::Asking, "hi");
                    let mut new = dialogue(&format!("{writer}:{n}"), callback);
                    new.webhook = false;
                    ids.push(stored(&*store, new).await.id);
                }
                ids
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = 0;
    // Ends once a page read after every writer finished is empty: each round before that
    // either reads events or lets the writers run.
    loop {
        let finished = writers.iter().all(|writer| writer.is_finished());
        let page = store.events_after(after, 50).await.unwrap();
        if finished && page.events.is_empty() {
            break;
        }
        for (id, _) in page.events {
            assert!(id > after, "{id} after {after}");
            seen.push(id);
            after = id;
        }
        tokio::task::yield_now().await;
    }
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    written.sort_unstable();
    assert_eq!(seen, written);
}
