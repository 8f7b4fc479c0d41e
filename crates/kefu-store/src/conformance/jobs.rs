//! Jobs: order, outcomes, resends, confirmations, and what a restart does to them.

use std::collections::BTreeMap;

use kefu_core::Reason;
use kefu_payload::KefuState;

use super::{Fresh, hold, ids_of, insert_plain, job, resend_plain, restart, sent, status};
use crate::session::{ChangedBy, DeskAction, Session};
use crate::{
    Claimed, DIALOGUE_ACCOUNT, DeskCall, INTERRUPTED_MESSAGE, JobState, Outcome, PendingJob,
    ResendError, Settled,
};

/// Regression (issue 10): two requests for one user could reach delivery in the order their
/// commits were reported rather than stored. The relay sequences on the call; the store must
/// therefore take a call when it is made, not when its future is first polled.
pub async fn calls_are_taken_in_call_order_not_poll_order<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let first = store.insert(vec![job("a", "first")], None, None);
    let second = store.insert(vec![job("a", "second")], None, None);
    let resent = store.resend(1, None, None);
    let (second, first) = (second.await.unwrap(), first.await.unwrap());
    let id = |claimed: Claimed<Vec<PendingJob>>| match claimed {
        Claimed::Done(stored) => stored[0].id(),
        other => panic!("{other:?}"),
    };
    let first = id(first);
    assert!(first < id(second));
    // The resend was asked for after the first insert: it found the job already stored (a
    // backend whose first id is not 1 finds no job 1 at all).
    let resent = resent.await.unwrap();
    let expected = if first == 1 {
        ResendError::NotResendable(JobState::Queued)
    } else {
        ResendError::NotFound
    };
    assert_eq!(resent, Claimed::Done(Err(expected)));
}

/// The payloads of `pending`, per recipient, in order.
fn per_recipient(pending: &[PendingJob]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut queues: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for job in pending {
        let queue = queues.entry(job.job.recipient.clone()).or_default();
        queue.push(job.job.payload.clone());
    }
    queues
}

/// A restart hands back every queued job, in order per recipient (a resend moves a job to the
/// end), and turns a job the stopped relay was sending `ambiguous`: never sent again.
pub async fn a_restart_keeps_the_queue_in_order_and_never_resends_a_job_it_was_sending<F: Fresh>(
    fresh: F,
) {
    let (interrupted, resent) = {
        let store = fresh.store();
        let jobs = vec![job("a", "1"), job("b", "2"), job("a", "3"), job("a", "4")];
        let ids = ids_of(&insert_plain(&*store, jobs).await);
        hold(&*store, &[ids[1]]).await;
        store.mark_sending(ids[1]).await.unwrap();
        sent(&fresh, ids[0], failed()).await;
        resend_plain(&*store, ids[0]).await.unwrap();
        (ids[1], ids[0])
    };
    let (fresh, pending) = restart(fresh).await;
    let queues = per_recipient(&pending);
    let a: Vec<&[u8]> = queues["a"].iter().map(Vec::as_slice).collect();
    assert_eq!(a, [&b"3"[..], b"4", b"1"]);
    assert!(!queues.contains_key("b"), "{queues:?}");
    let store = fresh.store();
    let interrupted = status(&*store, interrupted).await;
    assert_eq!(interrupted.status, JobState::Ambiguous);
    assert_eq!(
        interrupted.error_message.as_deref(),
        Some(INTERRUPTED_MESSAGE)
    );
    assert_eq!(status(&*store, resent).await.status, JobState::Queued);
}

fn failed() -> Outcome {
    Outcome::Failed {
        code: Some(1001),
        reason: Reason::Config,
        message: "TOKEN invalid".into(),
    }
}

/// Concurrent inserts (which a backend may commit together) all land, each with its own id.
pub async fn concurrent_inserts_all_land<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { insert_plain(&*store, vec![job("u", &i.to_string())]).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(ids_of(&task.await.unwrap()));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(store.depth().await.unwrap(), vec![(JobState::Queued, 200)]);
}

/// An outcome is recorded with its code and reason; only a failed or ambiguous job is resent,
/// and a resend clears the outcome.
pub async fn outcomes_are_recorded_and_only_a_failed_or_ambiguous_job_is_resent<F: Fresh>(
    fresh: F,
) {
    let store = fresh.store();
    let ids = ids_of(&insert_plain(&*store, vec![job("u", "x"), job("u", "y")]).await);
    hold(&*store, &[ids[0]]).await;
    store.mark_sending(ids[0]).await.unwrap();
    store.record(ids[0], failed()).unwrap();
    fresh.recorded().await;
    let failed = status(&*store, ids[0]).await;
    assert_eq!(failed.status, JobState::Failed);
    assert_eq!(failed.error_code, Some(1001));
    assert_eq!(failed.reason, Some(Reason::Config));
    assert_eq!(failed.account, DIALOGUE_ACCOUNT);
    assert_eq!(failed.attempts, 1);

    assert_eq!(
        resend_plain(&*store, ids[1]).await,
        Err(ResendError::NotResendable(JobState::Queued))
    );
    let unknown = ids[1] + 1_000;
    assert_eq!(
        resend_plain(&*store, unknown).await,
        Err(ResendError::NotFound)
    );
    let again = resend_plain(&*store, ids[0]).await.unwrap();
    assert_eq!(again.job.payload, b"x");
    let queued = status(&*store, ids[0]).await;
    assert_eq!(queued.status, JobState::Queued);
    assert_eq!(queued.error_code, None);
    assert_eq!(queued.reason, None);
    assert_eq!(store.get(unknown).await.unwrap(), None);
}

/// Stores three jobs for one user; returns their ids.
async fn three_jobs(store: &dyn crate::Store) -> Vec<i64> {
    let jobs = vec![job("u", "a"), job("u", "b"), job("u", "c")];
    ids_of(&insert_plain(store, jobs).await)
}

fn ambiguous(confirm_by_ms: Option<i64>) -> Outcome {
    Outcome::Ambiguous {
        message: "timed out".into(),
        confirm_by_ms,
    }
}

/// An accepted job becomes delivered, and an ambiguous one with a window failed
/// (`unconfirmed`), when the window ends, once; an ambiguous one without a window waits for
/// the desk.
pub async fn confirmations_settle_once_when_their_window_ends<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let ids = three_jobs(&*store).await;
    sent(&fresh, ids[0], Outcome::Accepted { confirm_by_ms: 100 }).await;
    sent(&fresh, ids[1], ambiguous(Some(200))).await;
    sent(&fresh, ids[2], ambiguous(None)).await;
    let accepted = status(&*store, ids[0]).await;
    assert_eq!(
        (accepted.status, accepted.confirm_by_ms),
        (JobState::Accepted, Some(100))
    );
    assert!(!accepted.status.is_final());
    // Not resendable: the platform took it.
    assert_eq!(
        resend_plain(&*store, ids[0]).await,
        Err(ResendError::NotResendable(JobState::Accepted))
    );

    assert_eq!(store.settle_confirmations(99).await.unwrap(), vec![]);
    assert_eq!(
        store.settle_confirmations(150).await.unwrap(),
        vec![Settled {
            id: ids[0],
            account: DIALOGUE_ACCOUNT.into(),
            state: JobState::Delivered,
            reason: None,
        }]
    );
    assert_eq!(
        store.settle_confirmations(200).await.unwrap(),
        vec![Settled {
            id: ids[1],
            account: DIALOGUE_ACCOUNT.into(),
            state: JobState::Failed,
            reason: Some(Reason::Unconfirmed),
        }]
    );
    assert_eq!(store.settle_confirmations(i64::MAX).await.unwrap(), vec![]);
    let delivered = status(&*store, ids[0]).await;
    assert_eq!(
        (delivered.status, delivered.confirm_by_ms),
        (JobState::Delivered, None)
    );
    let unconfirmed = status(&*store, ids[1]).await;
    assert_eq!(unconfirmed.status, JobState::Failed);
    assert_eq!(unconfirmed.reason, Some(Reason::Unconfirmed));
    let message = unconfirmed.error_message.unwrap_or_default();
    assert!(message.contains("confirmation window"), "{message}");
    assert_eq!(status(&*store, ids[2]).await.status, JobState::Ambiguous);
}

/// A resend clears the window of the attempt before it.
pub async fn a_resend_of_an_ambiguous_job_ends_its_window<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let id = insert_plain(&*store, vec![job("u", "a")]).await[0].id();
    sent(&fresh, id, ambiguous(Some(100))).await;
    resend_plain(&*store, id).await.unwrap();
    assert_eq!(store.settle_confirmations(i64::MAX).await.unwrap(), vec![]);
    let queued = status(&*store, id).await;
    assert_eq!(
        (queued.status, queued.confirm_by_ms),
        (JobState::Queued, None)
    );
}

/// `mark_sending_many` marks every job of the batch, counts an attempt for each, and says so:
/// the relay that holds the conversation gets every id back.
pub async fn a_batch_is_marked_sending_together<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let ids = three_jobs(&*store).await;
    hold(&*store, &ids[..2]).await;
    let marked = store.mark_sending_many(&ids[..2]).await.unwrap();
    assert_eq!(marked, ids[..2]);
    let mut depth = store.depth().await.unwrap();
    depth.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(depth, vec![(JobState::Queued, 1), (JobState::Sending, 2)]);
    assert_eq!(status(&*store, ids[0]).await.attempts, 1);
    assert_eq!(status(&*store, ids[2]).await.attempts, 0);
}

/// The desk call stored with an insert moves the user's session in the same transaction.
pub async fn a_desk_call_moves_the_session_with_its_jobs<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let call = DeskCall {
        account: DIALOGUE_ACCOUNT.into(),
        openid: "oU".into(),
        action: DeskAction::Enter,
        agent: Some("小明".into()),
        channel: Some(1),
        appid: None,
    };
    let stored = store
        .insert(vec![job("oU", "enter")], None, Some(call))
        .await
        .unwrap();
    assert!(matches!(stored, Claimed::Done(ref jobs) if jobs.len() == 1));
    let session = store
        .session(DIALOGUE_ACCOUNT, "oU")
        .await
        .unwrap()
        .unwrap();
    let moved = (
        session.state,
        session.agent.as_deref(),
        session.changed_by,
        session.channel,
    );
    let expected = (
        KefuState::PersonServing,
        Some("小明"),
        ChangedBy::Desk,
        Some(1),
    );
    assert_eq!(moved, expected);
    let serving = store
        .sessions(DIALOGUE_ACCOUNT, Some(KefuState::PersonServing), 10)
        .await
        .unwrap();
    let openids: Vec<&str> = serving.iter().map(|s| s.openid.as_str()).collect();
    assert_eq!(openids, ["oU"]);
    assert_eq!(store.session("another", "oU").await.unwrap(), None);
}

/// Desk calls made one after another without waiting (which a store may store together) move
/// each user's session in call order, and each user's only.
pub async fn desk_calls_made_together_move_sessions_in_call_order<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let call = |openid: &str, action: DeskAction, agent: &str, channel: Option<u8>| DeskCall {
        account: DIALOGUE_ACCOUNT.into(),
        openid: openid.into(),
        action,
        agent: Some(agent.into()),
        channel,
        appid: None,
    };
    let enter = call("oU", DeskAction::Enter, "小明", Some(1));
    let switch = call("oU", DeskAction::Switch, "小红", None);
    let other = call("oV", DeskAction::Enter, "小刚", Some(2));
    let calls = [
        store.insert(vec![job("oU", "enter")], None, Some(enter.clone())),
        store.insert(vec![job("oU", "switch")], None, Some(switch.clone())),
        store.insert(vec![job("oV", "enter")], None, Some(other.clone())),
    ];
    for stored in calls {
        assert!(matches!(stored.await, Ok(Claimed::Done(ref jobs)) if jobs.len() == 1));
    }
    let moved = |session: Session| {
        (
            session.state,
            session.agent,
            session.channel,
            session.changed_by,
        )
    };
    let expected_u = switch.recorded_on(Some(enter.recorded_on(None, 0)), 0);
    let expected_v = other.recorded_on(None, 0);
    let u = store
        .session(DIALOGUE_ACCOUNT, "oU")
        .await
        .unwrap()
        .unwrap();
    let v = store
        .session(DIALOGUE_ACCOUNT, "oV")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved(u), moved(expected_u));
    assert_eq!(moved(v), moved(expected_v));
}
