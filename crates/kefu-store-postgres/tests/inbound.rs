//! `PgStore`'s callbacks and sessions over the throwaway cluster: redeliveries and replays,
//! the session moved by callbacks and desk calls, and a dedup key claimed by two relays at once.

use kefu_payload::{HandoffCallback, KefuState};
use kefu_store::message::StandardMessage;
use kefu_store::session::DeskAction;
use kefu_store::{
    Admission, Claimed, DIALOGUE_ACCOUNT, DeskCall, EventStore as _, JobStore as _, NewDialogue,
    NewJob, NewWechat, SessionStore as _,
};
use kefu_store_postgres::PgStore;
use kefu_store_postgres::testing::fresh_database;
use serde_json::{Map, Value};

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

fn dialogue(key: &str, callback: HandoffCallback) -> NewDialogue {
    NewDialogue {
        callback,
        raw: Map::new(),
        dedup_key: key.into(),
        dedup_expires_ms: i64::MAX,
        webhook: true,
    }
}

/// A WeChat text from `oU`: `replay` is "key" or "key,plain key"; keys live until `expires_ms`.
fn wechat(replay: &str, body: &str, dedup: &str, expires_ms: i64) -> NewWechat {
    NewWechat {
        account: "oa".into(),
        message: StandardMessage {
            from_user_name: "oU".into(),
            msg_type: Some("text".into()),
            content: Some("hi".into()),
            msg_id: Some("1".into()),
            ..StandardMessage::default()
        },
        replay_key: replay.split(',').next().unwrap_or_default().to_owned(),
        plain_replay_key: replay.split(',').nth(1).map(str::to_owned),
        replay_expires_ms: expires_ms,
        body_sha256: body.into(),
        dedup_key: dedup.into(),
        dedup_expires_ms: expires_ms,
        webhook: false,
    }
}

fn kind(admission: &Admission) -> String {
    match admission {
        Admission::Stored(event) => {
            let body: Value = serde_json::from_str(&event.body).unwrap_or_default();
            body["kind"].as_str().unwrap_or_default().to_owned()
        }
        other => panic!("not stored: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialogue_callbacks_move_the_session_once_and_desk_calls_are_stored_with_their_jobs() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (store, _) = PgStore::open(&db.config).await.unwrap();
    let first = dialogue("k1", callback("oU", KefuState::NeedPerson, "我要转人工"));
    let stored = store.admit_dialogue(first.clone()).await.unwrap();
    assert_eq!(kind(&stored), "handoff_requested");
    assert_eq!(
        store.admit_dialogue(first).await.unwrap(),
        Admission::Duplicate
    );
    let next = dialogue("k2", callback("oU", KefuState::NeedPerson, "在吗"));
    assert_eq!(kind(&store.admit_dialogue(next).await.unwrap()), "message");
    let queue = store
        .sessions(DIALOGUE_ACCOUNT, Some(KefuState::NeedPerson), 10)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].last_event_id, Some(2));
    assert!(queue[0].last_user_message_at_ms.is_some());
    assert_eq!(queue[0].channel, Some(0));

    let call = DeskCall {
        account: DIALOGUE_ACCOUNT.into(),
        openid: "oU".into(),
        action: DeskAction::Enter,
        agent: Some("小明".into()),
        channel: Some(1),
        appid: Some("wx2".into()),
    };
    let job = NewJob {
        account: DIALOGUE_ACCOUNT.into(),
        recipient: "oU".into(),
        operation: "kefustate/change".into(),
        payload: b"<xml/>".to_vec(),
    };
    assert!(matches!(
        store.insert(vec![job], None, Some(call)).await.unwrap(),
        Claimed::Done(_)
    ));
    let session = store
        .session(DIALOGUE_ACCOUNT, "oU")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.state, KefuState::PersonServing);
    assert_eq!(session.agent.as_deref(), Some("小明"));
    assert_eq!(
        (session.channel, session.appid.as_deref()),
        (Some(1), Some("wx2"))
    );
    assert_eq!(session.last_event_id, Some(2));
    assert!(store.session("oa", "oU").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_refused_redeliveries_dropped_and_expired_keys_free_again() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (store, _) = PgStore::open(&db.config).await.unwrap();
    let live = i64::MAX;
    let admit = |new: NewWechat| {
        let store = store.clone();
        async move { store.admit_wechat(new).await.unwrap() }
    };
    assert!(matches!(
        admit(wechat("r1", "b1", "d1", live)).await,
        Admission::Stored(_)
    ));
    // The same request again is a redelivery; the same signature on another body a replay.
    assert_eq!(
        admit(wechat("r1", "b1", "d1", live)).await,
        Admission::Duplicate
    );
    assert_eq!(
        admit(wechat("r1", "b2", "d2", live)).await,
        Admission::Replayed
    );
    assert_eq!(
        admit(wechat("r2", "b3", "d1", live)).await,
        Admission::Duplicate
    );
    // An encrypted push's plain signature is remembered: reused on another body, it is a
    // replay; an encrypted retry under it, with a new ciphertext, is still a redelivery.
    assert!(matches!(
        admit(wechat("r3,p3", "b4", "d4", live)).await,
        Admission::Stored(_)
    ));
    assert_eq!(
        admit(wechat("p3", "b5", "d5", live)).await,
        Admission::Replayed
    );
    assert_eq!(
        admit(wechat("r4,p3", "b6", "d4", live)).await,
        Admission::Duplicate
    );
    // A URL verification's signature is refused on any push.
    store
        .remember_url_verification("v1".into(), live)
        .await
        .unwrap();
    assert_eq!(
        admit(wechat("v1", "b7", "d7", live)).await,
        Admission::Replayed
    );
    // Keys that expired no longer count, and a purge removes them.
    assert!(matches!(
        admit(wechat("x1", "b8", "x2", 1)).await,
        Admission::Stored(_)
    ));
    assert!(matches!(
        admit(wechat("x1", "b9", "x2", 1)).await,
        Admission::Stored(_)
    ));
    let purged = store.purge_events(i64::MAX).await.unwrap();
    assert_eq!(
        (purged.dedup_keys, purged.replay_keys, purged.events),
        (1, 1, 0)
    );
    let session = store.session("oa", "oU").await.unwrap().unwrap();
    assert_eq!(session.last_event_id, Some(4));
    assert!(session.last_user_message_at_ms.is_some());
}

/// The same callback reaching two relays at once is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_raced_on_two_relays_is_stored_once() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = PgStore::open(&db.config).await.unwrap();
    let mut other = db.config.clone();
    other.relay_name = "other".into();
    let (two, _) = PgStore::open(&other).await.unwrap();
    for round in 0..10 {
        let key = format!("k{round}");
        let new = dialogue(&key, callback("oU", KefuState::Asking, "hi"));
        let (a, b) = tokio::join!(one.admit_dialogue(new.clone()), two.admit_dialogue(new));
        let stored = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|admission| matches!(admission, Admission::Stored(_)))
            .count();
        assert_eq!(stored, 1, "round {round}");
    }
    assert_eq!(one.events_after(0, 100).await.unwrap().events.len(), 10);
}
