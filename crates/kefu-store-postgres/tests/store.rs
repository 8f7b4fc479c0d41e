//! `PgStore` over the throwaway cluster, beyond the conformance suite: two relays on one
//! database (claims racing, event ids under concurrent writers, groups locking users in
//! opposite orders, recovery of only a relay's own previous run), the order between outcomes
//! recorded without waiting and what follows them, and durability across a server restart.

use std::collections::HashSet;
use std::sync::Arc;

use kefu_core::Reason;
use kefu_store::idempotency::DESK_SCOPE;
use kefu_store::{
    Admission, Claim, Claimed, ConvKey, Earlier, EventStore as _, Fleet as _, Head, Idempotent,
    JobState, JobStore as _, NewJob, NewYunzhenji, Outcome, PendingJob, ReportKind, Saved,
    SendReport, Store as _,
};
use kefu_store_postgres::testing::{Cluster, claimed_jobs, fresh_database, postgres_available};
use kefu_store_postgres::{PgConfig, PgStore};

fn job(recipient: &str, payload: &str) -> NewJob {
    NewJob {
        account: "shop".into(),
        recipient: recipient.into(),
        operation: "custom/send".into(),
        payload: payload.as_bytes().to_vec(),
    }
}

async fn open(config: &PgConfig) -> (PgStore, Vec<PendingJob>) {
    PgStore::open(config).await.unwrap()
}

/// Takes `recipient`'s conversation for `store`'s relay, as a relay does before it marks its
/// jobs `sending`; returns its head.
async fn hold(store: &PgStore, recipient: &str) -> Option<Vec<PendingJob>> {
    match store
        .head(&ConvKey::jobs("shop", recipient), 32)
        .await
        .unwrap()
    {
        Some((_, Head::Jobs(jobs))) => Some(jobs),
        Some((_, other)) => panic!("{other:?}"),
        None => None,
    }
}

async fn insert(store: &PgStore, jobs: Vec<NewJob>) -> Vec<PendingJob> {
    match store.insert(jobs, None, None).await.unwrap() {
        Claimed::Done(stored) => stored,
        other => panic!("{other:?}"),
    }
}

fn payloads(jobs: &[PendingJob]) -> Vec<String> {
    jobs.iter()
        .map(|j| String::from_utf8_lossy(&j.job.payload).into_owned())
        .collect()
}

fn keyed(key: &str) -> Idempotent {
    Idempotent {
        claim: Claim {
            scope: DESK_SCOPE.into(),
            key: key.into(),
            route: "/v1/messages".into(),
            request_hash: "h".into(),
            retention_ms: 60_000,
        },
        answer: |ids| Saved {
            status: 202,
            body: format!("{ids:?}").into_bytes(),
        },
    }
}

fn callback(key: &str, report: Option<SendReport>, webhook: bool) -> NewYunzhenji {
    NewYunzhenji {
        account: "shop".into(),
        conversation: "wxid_customer".into(),
        event: serde_json::json!({"source": "yunzhenji", "account": "shop", "kind": "message"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        dedup_key: key.into(),
        dedup_expires_ms: i64::MAX,
        report,
        webhook,
    }
}

async fn admit(store: &PgStore, new: NewYunzhenji) -> Admission {
    store.admit_yunzhenji(new).await.unwrap().admission
}

fn stored_id(admission: Admission) -> i64 {
    match admission {
        Admission::Stored(event) => event.id,
        other => panic!("not stored: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_with_one_key_on_two_relays_store_once() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let store = if n % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                store
                    .insert(vec![job("u", "x")], Some(keyed("race")), None)
                    .await
            })
        })
        .collect();
    let mut done = Vec::new();
    let mut earlier = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Claimed::Done(stored) => done.push(stored[0].id()),
            Claimed::Earlier(Earlier::Same(saved)) => earlier.push(saved.body),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(done.len(), 1, "exactly one request does the work");
    let answer = format!("[{}]", done[0]).into_bytes();
    assert!(earlier.iter().all(|body| *body == answer));
    assert_eq!(one.depth().await.unwrap(), vec![(JobState::Queued, 1)]);
}

/// Regression guard for the ordering rule: an outcome recorded without waiting is applied
/// before a resend, a read, or the next `mark_sending` requested after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_recorded_without_waiting_is_seen_by_everything_requested_after_it() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (store, _) = open(&db.config).await;
    for n in 0..20 {
        // A user per job: a resent job goes first in its conversation, before any later one.
        let user = format!("u{n}");
        let id = insert(&store, vec![job(&user, &n.to_string())]).await[0].id();
        hold(&store, &user).await.unwrap();
        assert_eq!(store.mark_sending_many(&[id]).await.unwrap(), [id]);
        let failed = Outcome::Failed {
            code: Some(45015),
            reason: Reason::Config,
            message: "refused".into(),
        };
        store.record(id, failed).unwrap();
        if n % 2 == 0 {
            assert_eq!(
                store.get(id).await.unwrap().unwrap().status,
                JobState::Failed
            );
        } else {
            assert!(matches!(
                store.resend(id, None, None).await.unwrap(),
                Claimed::Done(Ok(_))
            ));
        }
    }
    store.checkpoint().await.unwrap();
}

/// Two relays admit events while a reader follows the feed: it never finds an id below one it
/// has already read (ids become visible in id order), and no admission fails on a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_skips_an_event_of_concurrent_writers() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;
    const EACH: usize = 40;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = if w % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                for n in 0..EACH {
                    // Several users, each with webhook pushes (a lease row locked per user):
                    // no two relays' groups may wait on each other for those and the counter.
                    let mut new = callback(&format!("w{w}-{n}"), None, true);
                    new.conversation = format!("u{}", (n + w) % 3);
                    store.admit_yunzhenji(new).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = one.clone();
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut after = 0;
            while seen.len() < 4 * EACH {
                let page = store.events_after(after, 7).await.unwrap();
                for (id, _) in page.events {
                    assert!(id > after, "id {id} after {after}");
                    seen.push(id);
                    after = id;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let expected: Vec<i64> = (1..=(4 * EACH) as i64).collect();
    assert_eq!(seen, expected, "every id once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_only_its_own_previous_runs_sending_jobs() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (store, _) = open(&db.config).await;
    let ids: Vec<i64> = insert(
        &store,
        vec![job("u", "a"), job("v", "b"), job("w", "c"), job("x", "d")],
    )
    .await
    .iter()
    .map(PendingJob::id)
    .collect();
    for recipient in ["u", "v", "w"] {
        hold(&store, recipient).await.unwrap();
    }
    assert_eq!(store.mark_sending_many(&ids[..1]).await.unwrap(), ids[..1]);
    assert_eq!(
        store.mark_sending_many(&ids[1..3]).await.unwrap(),
        ids[1..3]
    );
    // A vendor reported on two of them while they were being sent.
    let report = |job_id, kind| {
        Some(SendReport {
            job_id,
            kind,
            confirm_window_ms: 300_000,
        })
    };
    let failed = ReportKind::Failed {
        message: "对方已删除好友".into(),
    };
    admit(&store, callback("r1", report(ids[1], failed), false)).await;
    admit(
        &store,
        callback("r2", report(ids[2], ReportKind::Taken), false),
    )
    .await;
    // Another relay, under another name, is sending one too.
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (other, _) = open(&other_config).await;
    hold(&other, "x").await.unwrap();
    assert!(other.mark_sending(ids[3]).await.unwrap());
    // The first relay dies: its sessions end, and its successor under the same name takes over
    // at once.
    let first = store.relay().clone();
    drop(store);
    db.sessions_ended(&first).await.unwrap();

    let (store, pending) = open(&db.config).await;
    assert!(pending.is_empty(), "a relay of a fleet claims its work");
    let status = |id| {
        let store = store.clone();
        async move { store.get(id).await.unwrap().unwrap() }
    };
    let ambiguous = status(ids[0]).await;
    assert_eq!(ambiguous.status, JobState::Ambiguous);
    assert!(ambiguous.error_message.unwrap().contains("stopped"));
    let failed = status(ids[1]).await;
    assert_eq!(
        (
            failed.status,
            failed.reason,
            failed.error_message.as_deref()
        ),
        (
            JobState::Failed,
            Some(Reason::SendFailed),
            Some("对方已删除好友")
        )
    );
    let accepted = status(ids[2]).await;
    assert_eq!(accepted.status, JobState::Accepted);
    assert!(accepted.confirm_by_ms.is_some());
    assert_eq!(status(ids[3]).await.status, JobState::Sending);
}

/// What was acknowledged survives `pg_ctl restart` (fsync on), and the store carries on after
/// it without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_server_restart_and_the_store_carries_on() {
    if !postgres_available() {
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(true))
        .await
        .unwrap()
        .unwrap();
    let cluster = Arc::new(cluster);
    let name = cluster.create_database(None).await.unwrap();
    let config = cluster.config(&name);
    let (store, _) = open(&config).await;
    let acked = insert(&store, vec![job("u", "1"), job("u", "2")]).await;
    let event = stored_id(admit(&store, callback("k", None, true)).await);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    // The lanes' connections died with the server: a call may fail once, then they reconnect.
    let mut after = None;
    for _ in 0..20 {
        match store.insert(vec![job("u", "3")], None, None).await {
            Ok(Claimed::Done(stored)) => {
                after = Some(stored);
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(
        after.is_some(),
        "the store did not carry on after the restart"
    );
    drop(store);

    let (store, _) = open(&config).await;
    let pending = claimed_jobs(&store).await.unwrap();
    assert_eq!(payloads(&pending), ["1", "2", "3"]);
    assert_eq!(pending[0].id(), acked[0].id());
    let page = store.events_after(0, 10).await.unwrap();
    assert_eq!(
        page.events
            .iter()
            .map(|(id, _)| *id)
            .collect::<HashSet<_>>(),
        HashSet::from([event])
    );
}

/// Two relays' groups admitting callbacks of the same users in opposite orders: each group
/// takes the event counter before the users' lease rows, so neither waits on the other (were
/// the counter taken in the middle, PostgreSQL would break the cycle by failing one admission).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_admitting_the_same_users_in_opposite_orders_do_not_deadlock() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;
    let admission = |key: String, user: &str| {
        let mut new = callback(&key, None, true);
        new.conversation = user.into();
        new
    };
    for round in 0..20 {
        // Each pair is queued at once, so that it shares one group of its relay.
        let a = [
            one.admit_yunzhenji(admission(format!("a{round}"), "u1")),
            one.admit_yunzhenji(admission(format!("b{round}"), "u2")),
        ];
        let b = [
            two.admit_yunzhenji(admission(format!("c{round}"), "u2")),
            two.admit_yunzhenji(admission(format!("d{round}"), "u1")),
        ];
        let [a1, a2] = a;
        let [b1, b2] = b;
        let (a1, a2, b1, b2) = tokio::join!(a1, a2, b1, b2);
        for result in [a1, a2, b1, b2] {
            if let Err(error) = result {
                panic!("round {round}: {error}");
            }
        }
    }
}

/// The same for job inserts: each group locks all its conversations first, in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_inserting_for_the_same_users_in_opposite_orders_do_not_deadlock() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;
    for round in 0..20 {
        let n = round.to_string();
        let a1 = one.insert(vec![job("u1", &n)], None, None);
        let a2 = one.insert(vec![job("u2", &n)], None, None);
        let b1 = two.insert(vec![job("u2", &n)], None, None);
        let b2 = two.insert(vec![job("u1", &n)], None, None);
        let (a1, a2, b1, b2) = tokio::join!(a1, a2, b1, b2);
        for result in [a1, a2, b1, b2] {
            if let Err(error) = result {
                panic!("round {round}: {error}");
            }
        }
    }
    assert_eq!(one.depth().await.unwrap(), vec![(JobState::Queued, 80)]);
}

/// The same callback reaching two relays at once is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_raced_on_two_relays_is_stored_once() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;
    for round in 0..10 {
        let key = format!("k{round}");
        let (a, b) = tokio::join!(
            one.admit_yunzhenji(callback(&key, None, true)),
            two.admit_yunzhenji(callback(&key, None, true))
        );
        let stored = [a.unwrap().admission, b.unwrap().admission]
            .iter()
            .filter(|admission| matches!(admission, Admission::Stored(_)))
            .count();
        assert_eq!(stored, 1, "round {round}");
    }
    assert_eq!(one.events_after(0, 100).await.unwrap().events.len(), 10);
}

/// A job is marked `sending` once: a second relay that takes its conversation over (the first
/// stopped) is refused for a batch that holds it, and marks none of that batch; while the first
/// holds the conversation, the second marks nothing of it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_longer_queued_is_not_marked_sending_again() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (one, _) = open(&db.config).await;
    let stored = insert(&one, vec![job("u", "a"), job("u", "b")]).await;
    let ids: Vec<i64> = stored.iter().map(PendingJob::id).collect();
    let mut other_config = db.config.clone();
    other_config.relay_name = "other".into();
    let (two, _) = open(&other_config).await;

    assert_eq!(payloads(&hold(&one, "u").await.unwrap()), ["a", "b"]);
    assert_eq!(one.mark_sending_many(&ids[..1]).await.unwrap(), ids[..1]);
    assert_eq!(hold(&two, "u").await, None, "the first relay holds it");
    assert!(!two.mark_sending(ids[1]).await.unwrap());

    one.stop().await.unwrap();
    assert_eq!(payloads(&hold(&two, "u").await.unwrap()), ["b"]);
    assert_eq!(
        two.mark_sending_many(&ids).await.unwrap(),
        Vec::<i64>::new()
    );
    assert!(!two.mark_sending(ids[0]).await.unwrap());
    let second = two.get(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (second.status, second.attempts),
        (JobState::Queued, 0),
        "a refused batch marks none of its jobs"
    );
    assert!(
        !two.mark_sending(ids[1]).await.unwrap(),
        "the job before it may still be on the wire: it waits for the sweep"
    );
}
