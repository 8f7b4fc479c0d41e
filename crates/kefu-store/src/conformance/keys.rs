//! `Idempotency-Key`s: claimed with the work, exclusive, answered again, expired.

use super::{Fresh, hold, ids_of, insert_plain, job, restart, status};
use crate::idempotency::{Claim, Claimed, DESK_SCOPE, Earlier, Saved};
use crate::{Idempotent, JobState, Outcome, PendingJob, ResendError};

/// A key on `/v1/messages` kept for `retention_ms`, whose answer lists the ids of the work.
fn keyed(key: &str, hash: &str, retention_ms: i64) -> Idempotent {
    Idempotent {
        claim: Claim {
            scope: DESK_SCOPE.into(),
            key: key.into(),
            route: "/v1/messages".into(),
            request_hash: hash.into(),
            retention_ms,
        },
        answer: |ids| Saved {
            status: 202,
            body: format!("{ids:?}").into_bytes(),
        },
    }
}

const MINUTE_MS: i64 = 60_000;

/// The earlier answer a repeated request gets, for the work `ids`.
fn saved(ids: &[i64]) -> Claimed<Vec<i64>> {
    Claimed::Earlier(Earlier::Same(Saved {
        status: 202,
        body: format!("{ids:?}").into_bytes(),
    }))
}

fn ids(claimed: Claimed<Vec<PendingJob>>) -> Claimed<Vec<i64>> {
    match claimed {
        Claimed::Done(jobs) => Claimed::Done(ids_of(&jobs)),
        Claimed::Earlier(earlier) => Claimed::Earlier(earlier),
    }
}

/// A key stores its work once, answers a repeat with the saved answer (also after a restart),
/// and refuses another request under it.
pub async fn a_key_stores_once_across_a_restart_and_refuses_another_request<F: Fresh>(fresh: F) {
    let first_ids = {
        let store = fresh.store();
        let two = || vec![job("u", "x"), job("u", "y")];
        let first = ids(store
            .insert(two(), Some(keyed("k", "h1", MINUTE_MS)), None)
            .await
            .unwrap());
        let Claimed::Done(first_ids) = first else {
            panic!("a new key: {first:?}")
        };
        assert_eq!(first_ids.len(), 2);
        let again = store
            .insert(two(), Some(keyed("k", "h1", MINUTE_MS)), None)
            .await
            .unwrap();
        assert_eq!(ids(again), saved(&first_ids));
        first_ids
    };
    let (fresh, pending) = restart(fresh).await;
    assert_eq!(ids_of(&pending), first_ids);
    let store = fresh.store();
    let after_restart = store
        .insert(vec![job("u", "x")], Some(keyed("k", "h1", MINUTE_MS)), None)
        .await
        .unwrap();
    assert_eq!(ids(after_restart), saved(&first_ids));
    let other = store
        .insert(vec![job("u", "z")], Some(keyed("k", "h2", MINUTE_MS)), None)
        .await
        .unwrap();
    assert_eq!(
        ids(other),
        Claimed::Earlier(Earlier::Other {
            route: "/v1/messages".into()
        })
    );
    assert_eq!(store.depth().await.unwrap(), vec![(JobState::Queued, 2)]);
}

/// Of 50 requests racing with one key, exactly one stores its work; the others get its answer.
pub async fn racing_requests_with_one_key_store_once<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = Some(keyed("race", "h", MINUTE_MS));
                store.insert(vec![job("u", "x")], key, None).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(ids(task.await.unwrap().unwrap()));
    }
    let done: Vec<Vec<i64>> = answers
        .iter()
        .filter_map(|answer| match answer {
            Claimed::Done(ids) => Some(ids.clone()),
            Claimed::Earlier(_) => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "{answers:?}");
    let earlier = saved(&done[0]);
    for answer in &answers {
        assert!(
            matches!(answer, Claimed::Done(_)) || *answer == earlier,
            "{answer:?}"
        );
    }
    assert_eq!(store.depth().await.unwrap(), vec![(JobState::Queued, 1)]);
}

/// A refused resend leaves its key free; a done one answers its repeat with the first answer.
pub async fn a_keyed_resend_queues_once_and_a_refused_one_keeps_the_key_free<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let id = insert_plain(&*store, vec![job("u", "x")]).await[0].id();
    let key = || Some(keyed("r", "h", MINUTE_MS));
    // Queued, so not resendable: refused, and the key is not spent.
    assert_eq!(
        store.resend(id, key(), None).await.unwrap(),
        Claimed::Done(Err(ResendError::NotResendable(JobState::Queued)))
    );
    hold(&*store, &[id]).await;
    store.mark_sending(id).await.unwrap();
    let outcome = Outcome::Ambiguous {
        message: "timed out".into(),
        confirm_by_ms: None,
    };
    store.record(id, outcome).unwrap();
    fresh.recorded().await;
    match store.resend(id, key(), None).await.unwrap() {
        Claimed::Done(Ok(job)) => assert_eq!(job.id(), id),
        other => panic!("not queued: {other:?}"),
    }
    // Without the key, the second resend would be a 409: with it, the first answer.
    match store.resend(id, key(), None).await.unwrap() {
        Claimed::Earlier(Earlier::Same(saved)) => {
            assert_eq!(saved.body, format!("[{id}]").into_bytes());
        }
        other => panic!("not replayed: {other:?}"),
    }
    assert_eq!(status(&*store, id).await.status, JobState::Queued);
}

/// A key whose retention ended is new again, for any request, and the purge removes it; a
/// live one stays.
pub async fn an_expired_key_is_new_again_and_purged<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let claim = |payload: &str, key: &str, hash: &str, retention_ms: i64| {
        let keyed = keyed(key, hash, retention_ms);
        store.insert(vec![job("u", payload)], Some(keyed), None)
    };
    let expired = claim("x", "gone", "h1", 0).await.unwrap();
    assert!(matches!(expired, Claimed::Done(_)));
    let Claimed::Done(live) = ids(claim("y", "live", "h", MINUTE_MS).await.unwrap()) else {
        panic!("a new key")
    };
    let again = claim("z", "gone", "h2", 0).await.unwrap();
    assert!(matches!(again, Claimed::Done(_)), "{again:?}");
    assert_eq!(store.purge_keys().await.unwrap(), 1);
    let repeat = claim("y", "live", "h", MINUTE_MS).await.unwrap();
    assert_eq!(ids(repeat), saved(&live));
    assert_eq!(store.depth().await.unwrap(), vec![(JobState::Queued, 3)]);
}
