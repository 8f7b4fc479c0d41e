//! Several `PgStore`s on one database, as a fleet of relays (design §3, §4): one live holder per
//! conversation, a takeover once the holder's liveness lapses, only a gone relay's sends made
//! ambiguous, the release race, the fenced `mark_sending`, the fleet's newest event id and stored
//! conversations, and one leader at a time. Short TTLs keep the waits short; a wait polls for the state it expects
//! (with a generous bound) and never asserts on how long it took.

use std::future::Future;
use std::time::Duration;

use kefu_store::{
    Admission, ConvKey, EventStore as _, Fleet as _, Head, JobState, JobStore as _, Lane, NewJob,
    NewYunzhenji, Outcome, PendingJob, Store as _,
};
use kefu_store_postgres::testing::{TestDb, fresh_database};
use kefu_store_postgres::{PgConfig, PgStore};

/// A relay's liveness outlives its last heartbeat by this much.
const TTL_MS: u64 = 600;

fn config(db: &TestDb, name: &str) -> PgConfig {
    let mut config = db.config.clone();
    config.relay_name = name.into();
    config.lease_ttl_ms = TTL_MS;
    config.heartbeat_ms = 100;
    config.poll_ms = 50;
    config
}

async fn relay(db: &TestDb, name: &str) -> PgStore {
    PgStore::open(&config(db, name)).await.unwrap().0
}

/// Polls `check` until it gives an answer; panics after 30 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1_500 {
        if let Some(answer) = check().await {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never happened");
}

fn conversation(recipient: &str) -> ConvKey {
    ConvKey::jobs("shop", recipient)
}

async fn insert(store: &PgStore, recipient: &str, payload: &str) -> i64 {
    let job = NewJob {
        account: "shop".into(),
        recipient: recipient.into(),
        operation: "custom/send".into(),
        payload: payload.as_bytes().to_vec(),
    };
    match store.insert(vec![job], None, None).await.unwrap() {
        kefu_store::Claimed::Done(stored) => stored[0].id(),
        other => panic!("{other:?}"),
    }
}

/// The jobs of `recipient`'s head if `store` takes it, `None` if another live relay holds it.
async fn head(store: &PgStore, recipient: &str) -> Option<Vec<i64>> {
    match store.head(&conversation(recipient), 32).await.unwrap() {
        Some((_, Head::Jobs(jobs))) => Some(jobs.iter().map(PendingJob::id).collect()),
        Some((_, other)) => panic!("{other:?}"),
        None => None,
    }
}

async fn state(store: &PgStore, id: i64) -> JobState {
    store.get(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_has_one_live_holder() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let id = insert(&b, "u", "1").await;
    assert_eq!(head(&a, "u").await, Some(vec![id]));
    assert_eq!(head(&b, "u").await, None, "a holds it");
    assert!(b.claim_idle(Lane::Jobs, 10).await.unwrap().is_empty());
    assert!(b.mark_sending_many(&[id]).await.unwrap().is_empty());
    // Its holder still has it after another relay stored into it.
    insert(&b, "u", "2").await;
    assert_eq!(head(&a, "u").await.map(|ids| ids.len()), Some(2));
    assert_eq!(a.mark_sending_many(&[id]).await.unwrap(), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_conversation_is_taken_over_once_its_liveness_lapses() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let id = insert(&a, "u", "1").await;
    assert_eq!(head(&a, "u").await, Some(vec![id]));
    assert_eq!(head(&b, "u").await, None);
    drop(a);
    let claimed = eventually("the takeover", || async {
        let claimed = b.claim_idle(Lane::Jobs, 10).await.unwrap();
        (!claimed.is_empty()).then_some(claimed)
    })
    .await;
    assert_eq!(claimed, [conversation("u")]);
    assert_eq!(head(&b, "u").await, Some(vec![id]));
    assert_eq!(b.mark_sending_many(&[id]).await.unwrap(), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_gone_relays_sends_become_ambiguous() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let of_a = insert(&a, "u", "1").await;
    let of_b = insert(&b, "v", "2").await;
    head(&a, "u").await.unwrap();
    head(&b, "v").await.unwrap();
    assert_eq!(a.mark_sending_many(&[of_a]).await.unwrap(), [of_a]);
    assert_eq!(b.mark_sending_many(&[of_b]).await.unwrap(), [of_b]);
    drop(a);
    let swept = eventually("the sweep", || async {
        let swept = b.sweep_gone().await.unwrap();
        (!swept.is_empty()).then_some(swept)
    })
    .await;
    assert!(b.is_leader(), "only the leader sweeps");
    assert_eq!(
        swept.iter().map(|s| (s.id, s.state)).collect::<Vec<_>>(),
        [(of_a, JobState::Ambiguous)]
    );
    assert_eq!(state(&b, of_b).await, JobState::Sending);
    b.record(of_b, Outcome::Delivered).unwrap();
    b.checkpoint().await.unwrap();
    assert_eq!(state(&b, of_b).await, JobState::Delivered);
    assert_eq!(state(&b, of_a).await, JobState::Ambiguous);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_an_insert_is_refused() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let first = insert(&a, "u", "1").await;
    head(&a, "u").await.unwrap();
    a.mark_sending_many(&[first]).await.unwrap();
    a.record(first, Outcome::Delivered).unwrap();
    let Some((version, Head::Jobs(empty))) = a.head(&conversation("u"), 32).await.unwrap() else {
        panic!("a holds it");
    };
    assert!(empty.is_empty());
    // Another relay stores into it between the head and the release.
    let second = insert(&b, "u", "2").await;
    assert!(!a.release(&conversation("u"), version).await.unwrap());
    let Some((_, Head::Jobs(again))) = a.head(&conversation("u"), 32).await.unwrap() else {
        panic!("a still holds it");
    };
    assert_eq!(
        again.iter().map(PendingJob::id).collect::<Vec<_>>(),
        [second]
    );
    a.mark_sending_many(&[second]).await.unwrap();
    a.record(second, Outcome::Delivered).unwrap();
    let (version, _) = a.head(&conversation("u"), 32).await.unwrap().unwrap();
    assert!(a.release(&conversation("u"), version).await.unwrap());
    assert_eq!(head(&b, "u").await, None, "let go, and nothing waits");
    let third = insert(&b, "u", "3").await;
    assert_eq!(head(&b, "u").await, Some(vec![third]), "let go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_sending_marks_nothing_once_the_lease_or_the_liveness_is_lost() {
    let Some(db) = fresh_database().await else {
        return;
    };
    // A heartbeat so slow that a lapse the test makes stays until the test is done.
    let mut slow = config(&db, "a");
    slow.heartbeat_ms = 60_000;
    slow.lease_ttl_ms = 180_000;
    let a = PgStore::open(&slow).await.unwrap().0;
    let b = relay(&db, "b").await;
    let ids = [insert(&a, "u", "1").await, insert(&a, "v", "2").await];
    head(&a, "u").await.unwrap();
    head(&a, "v").await.unwrap();
    let admin = db.admin().await.unwrap();
    let lapse = "UPDATE kefu.relays SET alive_until_ms = 0 WHERE relay_id = $1";
    admin.execute(lapse, &[&a.relay().as_str()]).await.unwrap();
    // Still the holder of "v", but no longer alive.
    assert!(a.mark_sending_many(&ids[1..]).await.unwrap().is_empty());
    // "u" was taken over.
    assert_eq!(head(&b, "u").await, Some(vec![ids[0]]));
    admin
        .execute(
            "UPDATE kefu.relays SET alive_until_ms = kefu.now_ms() + 180000 WHERE relay_id = $1",
            &[&a.relay().as_str()],
        )
        .await
        .unwrap();
    assert!(a.mark_sending_many(&ids[..1]).await.unwrap().is_empty());
    assert!(!a.mark_sending(ids[0]).await.unwrap());
    assert_eq!(state(&a, ids[0]).await, JobState::Queued);
    assert_eq!(a.mark_sending_many(&ids[1..]).await.unwrap(), ids[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_event_rises_for_an_event_another_relay_stored() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let mut newest = b.newest_event();
    let new = NewYunzhenji {
        account: "shop".into(),
        conversation: "wxid_user".into(),
        event: serde_json::Map::new(),
        dedup_key: "k".into(),
        dedup_expires_ms: i64::MAX,
        report: None,
        webhook: true,
    };
    let Admission::Stored(event) = a.admit_yunzhenji(new).await.unwrap().admission else {
        panic!("not stored");
    };
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        newest.wait_for(|newest| *newest >= event.id),
    )
    .await
    .expect("relay b never heard of the event")
    .map(|newest| *newest)
    .unwrap();
    assert_eq!(seen, event.id);
    // The user's pushes are one conversation of the webhook lane, which b may claim.
    let claimed = b.claim_idle(Lane::Webhook, 10).await.unwrap();
    assert_eq!(claimed, [ConvKey::webhook("wxid_user")]);
    let Some((_, Head::Events(events))) = b.head(&claimed[0], 10).await.unwrap() else {
        panic!("b holds it");
    };
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [event.id]);
}

/// Inserts a job for `recipient` through `from` until `heard` hears of it: a listener hears
/// only once it listens.
async fn until_heard(
    from: &PgStore,
    heard: &mut tokio::sync::broadcast::Receiver<Vec<ConvKey>>,
    recipient: &str,
) {
    for _ in 0..150 {
        insert(from, recipient, "x").await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Ok(keys)) = tokio::time::timeout_at(deadline, heard.recv()).await {
            if keys == [conversation(recipient)] {
                return;
            }
        }
    }
    panic!("the insert for {recipient} was never heard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_hears_which_conversations_another_stored_jobs_into_and_not_its_own() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let mut heard_by_a = a.stored_elsewhere().expect("a shared store tells");
    let mut heard_by_b = b.stored_elsewhere().expect("a shared store tells");
    until_heard(&b, &mut heard_by_a, "oB").await;
    until_heard(&a, &mut heard_by_b, "oA").await;
    insert(&a, "oA", "y").await;
    insert(&b, "oC", "z").await;
    // a hears b's next insert and nothing of its own; b hears a's and nothing of its own.
    for (heard, own, other) in [
        (&mut heard_by_a, ["oA"].as_slice(), "oC"),
        (&mut heard_by_b, ["oB", "oC"].as_slice(), "oA"),
    ] {
        loop {
            let keys = tokio::time::timeout(Duration::from_secs(30), heard.recv())
                .await
                .expect("the other relay's insert is heard")
                .unwrap();
            for own in own {
                assert_ne!(keys, [conversation(own)], "a relay heard its own insert");
            }
            if keys == [conversation(other)] {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_leads_and_another_takes_over_when_it_stops() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let relays = [relay(&db, "a").await, relay(&db, "b").await];
    let leader = eventually("a leader", || async {
        let leading: Vec<usize> = (0..2).filter(|&n| relays[n].is_leader()).collect();
        assert!(leading.len() < 2, "two leaders at once");
        leading.first().copied()
    })
    .await;
    let other = 1 - leader;
    assert!(!relays[other].is_leader());
    relays[leader].stop().await.unwrap();
    assert!(!relays[leader].is_leader());
    eventually("the handover", || async {
        relays[other].is_leader().then_some(())
    })
    .await;
    assert!(!relays[leader].is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outcome_leaves_a_swept_send_ambiguous() {
    let Some(db) = fresh_database().await else {
        return;
    };
    // A relay that stalls past its TTL (its heartbeat too slow to bring it back meanwhile),
    // then records its send's outcome after the sweep.
    let b = relay(&db, "b").await;
    eventually("b leads", || async { b.is_leader().then_some(()) }).await;
    let mut slow = config(&db, "a");
    slow.heartbeat_ms = 60_000;
    slow.lease_ttl_ms = 180_000;
    let a = PgStore::open(&slow).await.unwrap().0;
    let id = insert(&a, "u", "1").await;
    head(&a, "u").await.unwrap();
    assert_eq!(a.mark_sending_many(&[id]).await.unwrap(), [id]);
    let admin = db.admin().await.unwrap();
    admin
        .execute(
            "UPDATE kefu.relays SET alive_until_ms = 0 WHERE relay_id = $1",
            &[&a.relay().as_str()],
        )
        .await
        .unwrap();
    // The leader sweeps it once it has led for a whole TTL.
    eventually("the sweep", || async {
        (!b.sweep_gone().await.unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(state(&a, id).await, JobState::Ambiguous);
    a.record(id, Outcome::Delivered).unwrap();
    a.checkpoint().await.unwrap();
    assert_eq!(
        state(&a, id).await,
        JobState::Ambiguous,
        "never queued or settled again by the relay that lost it"
    );
}

/// The number of lease rows of lane `job`.
async fn job_leases(db: &TestDb) -> i64 {
    let admin = db.admin().await.unwrap();
    admin
        .query_one("SELECT count(*) FROM kefu.leases WHERE lane = 'job'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_let_go_without_work_keeps_no_lease_row() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    for user in ["u1", "u2", "u3"] {
        let id = insert(&a, user, "1").await;
        assert_eq!(head(&a, user).await, Some(vec![id]));
        a.mark_sending_many(&[id]).await.unwrap();
        a.record(id, Outcome::Delivered).unwrap();
        let (version, _) = a.head(&conversation(user), 32).await.unwrap().unwrap();
        assert!(a.release(&conversation(user), version).await.unwrap());
    }
    assert_eq!(
        job_leases(&db).await,
        0,
        "every user served ever would stay"
    );

    // A user written to again gets a row again, and another relay takes it.
    let again = insert(&a, "u2", "2").await;
    assert_eq!(job_leases(&db).await, 1);
    assert_eq!(
        b.claim_idle(Lane::Jobs, 8).await.unwrap(),
        [conversation("u2")]
    );
    assert_eq!(head(&b, "u2").await, Some(vec![again]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_while_the_one_before_it_is_still_being_sent() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let a = relay(&db, "a").await;
    let first = insert(&a, "u", "1").await;
    let second = insert(&a, "u", "2").await;
    assert_eq!(head(&a, "u").await, Some(vec![first, second]));
    assert_eq!(a.mark_sending_many(&[first]).await.unwrap(), [first]);
    // A relay that reads the head now, before the first job's outcome (say a retry) is
    // applied, sees only the second: it must not go out before the first.
    assert_eq!(head(&a, "u").await, Some(vec![second]));
    assert!(a.mark_sending_many(&[second]).await.unwrap().is_empty());
    assert_eq!(state(&a, second).await, JobState::Queued);

    a.record(first, Outcome::Delivered).unwrap();
    a.checkpoint().await.unwrap();
    assert_eq!(a.mark_sending_many(&[second]).await.unwrap(), [second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_a_users_pushes_only_until_another_takes_them() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a, b) = (relay(&db, "a").await, relay(&db, "b").await);
    let user = ConvKey::webhook("wxid_hold");
    assert!(
        !a.holds(&user).await.unwrap(),
        "nothing stored, nothing held"
    );
    let new = NewYunzhenji {
        account: "shop".into(),
        conversation: "wxid_hold".into(),
        event: serde_json::Map::new(),
        dedup_key: "k".into(),
        dedup_expires_ms: i64::MAX,
        report: None,
        webhook: true,
    };
    a.admit_yunzhenji(new).await.unwrap();
    assert!(a.head(&user, 8).await.unwrap().is_some());
    assert!(a.holds(&user).await.unwrap());
    assert!(!b.holds(&user).await.unwrap());

    // As when a stalled past its liveness and b took the user over meanwhile.
    db.admin()
        .await
        .unwrap()
        .execute(
            "UPDATE kefu.leases SET relay_id = $1 WHERE lane = 'webhook' AND key = 'wxid_hold'",
            &[&b.relay().as_str()],
        )
        .await
        .unwrap();
    assert!(!a.holds(&user).await.unwrap(), "a must stop pushing");
    assert!(b.holds(&user).await.unwrap());
}

/// An attempt the platform answered busy (−1): the job is queued again.
fn busy() -> Outcome {
    Outcome::Retry {
        not_before_ms: 0,
        code: Some(-1),
        message: "busy".into(),
    }
}

/// A group runs consecutive markings, and consecutive outcomes, as one statement each: the
/// answers must be those of one call after another.
#[tokio::test]
async fn markings_and_outcomes_sent_together_answer_as_if_made_one_after_another() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let a = relay(&db, "a").await;
    let first = insert(&a, "u", "1").await;
    let second = insert(&a, "u", "2").await;
    let other = insert(&a, "v", "1").await;
    assert_eq!(head(&a, "u").await, Some(vec![first, second]));
    assert_eq!(head(&a, "v").await, Some(vec![other]));

    // Sent before the lane's task runs (this runtime has one thread): one group.
    let behind = a.mark_sending_many(&[second]);
    let front = a.mark_sending_many(&[first]);
    let elsewhere = a.mark_sending_many(&[other, other]);
    let again = a.mark_sending_many(&[first]);
    assert!(
        behind.await.unwrap().is_empty(),
        "the job behind a queued one"
    );
    assert_eq!(front.await.unwrap(), [first]);
    assert_eq!(
        elsewhere.await.unwrap(),
        [other],
        "an id asked twice in one marking"
    );
    assert!(
        again.await.unwrap().is_empty(),
        "a job an earlier marking took"
    );
    assert_eq!(state(&a, second).await, JobState::Queued);

    // The second outcome of a job finds it no longer sending, as it would one after another.
    a.record(first, Outcome::Delivered).unwrap();
    a.record(first, busy()).unwrap();
    a.record(other, Outcome::Delivered).unwrap();
    a.checkpoint().await.unwrap();
    assert_eq!(state(&a, first).await, JobState::Delivered);
    assert_eq!(state(&a, other).await, JobState::Delivered);
    assert_eq!(a.mark_sending_many(&[second]).await.unwrap(), [second]);
}

/// Outcomes may be applied ahead of the markings sent just before them in their group, but
/// never ahead of a marking of their own job: a stale marking of a job in flight must be
/// refused, not find the job queued again by its outcome and send it a second time.
#[tokio::test]
async fn an_outcome_never_overtakes_a_marking_of_its_own_job() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let a = relay(&db, "a").await;
    let first = insert(&a, "u", "1").await;
    let other = insert(&a, "v", "1").await;
    assert_eq!(head(&a, "u").await, Some(vec![first]));
    assert_eq!(head(&a, "v").await, Some(vec![other]));
    assert_eq!(a.mark_sending_many(&[first]).await.unwrap(), [first]);

    // Sent before the lane's task runs (this runtime has one thread): one group.
    let stale = a.mark_sending_many(&[first]);
    let elsewhere = a.mark_sending_many(&[other]);
    a.record(first, busy()).unwrap();
    assert!(
        stale.await.unwrap().is_empty(),
        "a job in flight marked again"
    );
    assert_eq!(elsewhere.await.unwrap(), [other]);
    a.checkpoint().await.unwrap();
    assert_eq!(state(&a, first).await, JobState::Queued);
    assert_eq!(a.get(first).await.unwrap().unwrap().attempts, 1);
}

/// A command that fails in a run of its kind fails alone: the group is run again with each
/// command on its own, and the others are stored and answered.
#[tokio::test]
async fn a_command_that_fails_in_a_bulk_run_fails_alone() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let a = relay(&db, "a").await;
    let job = |recipient: &str, operation: &str| NewJob {
        account: "shop".into(),
        recipient: recipient.into(),
        operation: operation.into(),
        payload: b"x".to_vec(),
    };
    // Sent before the lane's task runs (this runtime has one thread): one group. PostgreSQL
    // refuses a NUL in text.
    let inserts = [
        a.insert(vec![job("u1", "custom/send")], None, None),
        a.insert(vec![job("u2", "custom/\0send")], None, None),
        a.insert(vec![job("u3", "custom/send")], None, None),
    ];
    let mut answers = Vec::new();
    for insert in inserts {
        answers.push(insert.await);
    }
    assert!(answers[1].is_err(), "{answers:?}");
    let mut stored = Vec::new();
    for (answer, recipient) in [(&answers[0], "u1"), (&answers[2], "u3")] {
        let Ok(kefu_store::Claimed::Done(jobs)) = answer else {
            panic!("{answers:?}");
        };
        assert_eq!(head(&a, recipient).await, Some(vec![jobs[0].id()]));
        stored.push(jobs[0].id());
    }
    assert_eq!(head(&a, "u2").await, Some(vec![]));

    // Outcomes: the one that cannot be written is logged and dropped (its job stays sending,
    // and would become ambiguous); the other is applied.
    let [good, bad] = [stored[0], stored[1]];
    assert_eq!(a.mark_sending_many(&[good]).await.unwrap(), [good]);
    assert_eq!(a.mark_sending_many(&[bad]).await.unwrap(), [bad]);
    a.record(
        bad,
        Outcome::Failed {
            code: None,
            reason: kefu_core::Reason::Config,
            message: "not\0text".into(),
        },
    )
    .unwrap();
    a.record(good, Outcome::Delivered).unwrap();
    a.checkpoint().await.unwrap();
    assert_eq!(state(&a, good).await, JobState::Delivered);
    assert_eq!(state(&a, bad).await, JobState::Sending);
}
