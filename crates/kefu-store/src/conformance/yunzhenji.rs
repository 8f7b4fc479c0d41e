//! yunzhenji callbacks: a report applied to the job it names, once, in the event's transaction.

use kefu_core::Reason;
use serde_json::Value;

use super::{Fresh, hold, restart};
use crate::{
    Admission, Claimed, JobState, NewJob, NewYunzhenji, Outcome, ReportKind, SendReport, Store,
};

const WINDOW_MS: i64 = 300_000;

/// A job of `account`, sent once and left with `outcome`.
async fn job<F: Fresh>(fresh: &F, account: &str, outcome: Option<Outcome>) -> i64 {
    let store = fresh.store();
    let outbox = &*store;
    // A conversation per job: a shared store marks only the front of a conversation, and
    // these checks leave some jobs queued while they send others.
    static RECIPIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RECIPIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let new = NewJob {
        account: account.into(),
        recipient: format!("wxid_customer_{n}"),
        operation: "wechat/sendMessage".into(),
        payload: b"{}".to_vec(),
    };
    let Claimed::Done(stored) = outbox.insert(vec![new], None, None).await.unwrap() else {
        panic!("no key was given")
    };
    let id = stored[0].id();
    if let Some(outcome) = outcome {
        hold(outbox, &[id]).await;
        outbox.mark_sending_many(&[id]).await.unwrap();
        outbox.record(id, outcome).unwrap();
        fresh.recorded().await;
    }
    id
}

fn callback(key: &str, report: Option<SendReport>) -> NewYunzhenji {
    NewYunzhenji {
        account: "yzj".into(),
        conversation: "wxid_customer".into(),
        event: serde_json::json!({"source": "yunzhenji", "account": "yzj", "kind": "send_failed"})
            .as_object()
            .cloned()
            .unwrap(),
        dedup_key: key.into(),
        dedup_expires_ms: i64::MAX,
        report,
        webhook: true,
    }
}

fn taken(job_id: i64) -> Option<SendReport> {
    Some(SendReport {
        job_id,
        kind: ReportKind::Taken,
        confirm_window_ms: WINDOW_MS,
    })
}

fn failed(job_id: i64) -> Option<SendReport> {
    Some(SendReport {
        job_id,
        kind: ReportKind::Failed {
            message: "对方已删除好友".into(),
        },
        confirm_window_ms: WINDOW_MS,
    })
}

fn ambiguous(confirm_by_ms: Option<i64>) -> Option<Outcome> {
    Some(Outcome::Ambiguous {
        message: "timed out".into(),
        confirm_by_ms,
    })
}

async fn admit(outbox: &dyn Store, new: NewYunzhenji) -> Admission {
    outbox.admit_yunzhenji(new).await.unwrap().admission
}

/// The vendor's echo of an ambiguous job turns it `accepted` until now + the window; a second
/// echo changes nothing more.
pub async fn a_chat_msg_echo_resolves_an_ambiguous_job_to_accepted_for_a_new_window<F: Fresh>(
    fresh: F,
) {
    let store = fresh.store();
    let outbox = &*store;
    let id = job(&fresh, "yzj", ambiguous(Some(1))).await;
    let before = kefu_core::now_ms();
    assert!(matches!(
        admit(outbox, callback("svrid:chatMsg", taken(id))).await,
        Admission::Stored(_)
    ));
    let status = outbox.get(id).await.unwrap().unwrap();
    assert_eq!(status.status, JobState::Accepted);
    assert_eq!(status.error_message, None);
    assert!(status.confirm_by_ms.unwrap() >= before + WINDOW_MS);
    // A second echo (another svrid) changes nothing more: it is accepted already.
    let window = status.confirm_by_ms;
    admit(outbox, callback("svrid2:chatMsg", taken(id))).await;
    assert_eq!(outbox.get(id).await.unwrap().unwrap().confirm_by_ms, window);
}

/// A failure report turns an accepted, ambiguous or delivered job `failed` (`send_failed`, the
/// vendor's text), once: the relay counts the move.
pub async fn a_send_failure_fails_an_accepted_ambiguous_or_delivered_job<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let outbox = &*store;
    let accepted = job(
        &fresh,
        "yzj",
        Some(Outcome::Accepted {
            confirm_by_ms: i64::MAX,
        }),
    )
    .await;
    let ambiguous_job = job(&fresh, "yzj", ambiguous(Some(i64::MAX))).await;
    let delivered = job(&fresh, "yzj", Some(Outcome::Delivered)).await;
    for (n, id) in [accepted, ambiguous_job, delivered].into_iter().enumerate() {
        let key = format!("{n}:chatMsgSendFail");
        let admitted = outbox.admit_yunzhenji(callback(&key, failed(id))).await;
        assert_eq!(
            admitted.unwrap().moved_to,
            Some(JobState::Failed),
            "the relay counts it"
        );
        let again = format!("{n}:again");
        let admitted = outbox.admit_yunzhenji(callback(&again, failed(id))).await;
        assert_eq!(admitted.unwrap().moved_to, None, "failed already");
        let status = outbox.get(id).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Failed, "job {id}");
        assert_eq!(status.reason, Some(Reason::SendFailed));
        assert_eq!(status.error_message.as_deref(), Some("对方已删除好友"));
        assert_eq!(status.confirm_by_ms, None);
    }
}

/// A redelivered callback is dropped before its report is applied.
pub async fn a_duplicate_is_dropped_before_its_report_is_applied<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let outbox = &*store;
    let id = job(&fresh, "yzj", ambiguous(Some(i64::MAX))).await;
    admit(outbox, callback("svrid:chatMsg", None)).await;
    // The same key again, now naming the job: a redelivery, so nothing is applied.
    assert_eq!(
        admit(outbox, callback("svrid:chatMsg", taken(id))).await,
        Admission::Duplicate
    );
    assert_eq!(
        outbox.get(id).await.unwrap().unwrap().status,
        JobState::Ambiguous
    );
    assert_eq!(outbox.events_after(0, 10).await.unwrap().events.len(), 1);
}

/// A report on another account's job, an unknown job, or a job in another state changes
/// nothing, and its event is still kept.
pub async fn reports_for_another_account_unknown_ids_or_other_states_change_nothing<F: Fresh>(
    fresh: F,
) {
    let store = fresh.store();
    let outbox = &*store;
    let other = job(&fresh, "shop", ambiguous(Some(i64::MAX))).await;
    let queued = job(&fresh, "yzj", None).await;
    let unconfirmed = job(
        &fresh,
        "yzj",
        Some(Outcome::Failed {
            code: None,
            reason: Reason::Unconfirmed,
            message: "none".into(),
        }),
    )
    .await;
    let delivered = job(&fresh, "yzj", Some(Outcome::Delivered)).await;
    let reports = [
        taken(other),
        failed(other),
        taken(queued),
        failed(queued),
        taken(unconfirmed),
        failed(unconfirmed),
        taken(delivered),
        failed(9_999),
    ];
    let before: Vec<_> = states_of(outbox, &[other, queued, unconfirmed]).await;
    for (n, report) in reports.into_iter().enumerate() {
        let admitted = admit(outbox, callback(&n.to_string(), report)).await;
        assert!(
            matches!(admitted, Admission::Stored(_)),
            "the event is kept"
        );
    }
    assert_eq!(
        states_of(outbox, &[other, queued, unconfirmed]).await,
        before
    );
    assert_eq!(
        outbox.get(delivered).await.unwrap().unwrap().status,
        JobState::Delivered
    );
}

async fn states_of(
    outbox: &dyn Store,
    ids: &[i64],
) -> Vec<(JobState, Option<Reason>, Option<i64>)> {
    let mut states = Vec::new();
    for id in ids {
        let status = outbox.get(*id).await.unwrap().unwrap();
        states.push((status.status, status.reason, status.confirm_by_ms));
    }
    states
}

/// The stored event carries its id and kind, for the callback's conversation.
pub async fn the_event_gets_its_id_and_kind<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let outbox = &*store;
    let Admission::Stored(stored) = admit(outbox, callback("a", None)).await else {
        panic!("not stored")
    };
    let body: Value = serde_json::from_str(&stored.body).unwrap();
    assert_eq!(body["id"], stored.id);
    assert_eq!(body["kind"], "send_failed");
    assert_eq!(stored.openid, "wxid_customer");
}

/// A job of `account` whose request is on its way.
async fn sending<F: Fresh>(fresh: &F, account: &str) -> i64 {
    let id = job(fresh, account, None).await;
    let outbox = fresh.store();
    hold(&*outbox, &[id]).await;
    outbox.mark_sending_many(&[id]).await.unwrap();
    id
}

/// A report on a job still `sending` is kept (a failure outweighs an echo) and applied when
/// the attempt's outcome is recorded, only on the report's account; a recorded outcome
/// spends it.
pub async fn a_report_that_comes_before_the_answer_settles_the_attempt_when_it_is_recorded<
    F: Fresh,
>(
    fresh: F,
) {
    let store = fresh.store();
    let outbox = &*store;
    let failed_first = sending(&fresh, "yzj").await;
    let echoed_first = sending(&fresh, "yzj").await;
    let echoed_then_failed = sending(&fresh, "yzj").await;
    let of_another_account = sending(&fresh, "shop").await;
    admit(outbox, callback("1", failed(failed_first))).await;
    admit(outbox, callback("2", taken(echoed_first))).await;
    admit(outbox, callback("3", taken(echoed_then_failed))).await;
    admit(outbox, callback("4", failed(echoed_then_failed))).await;
    admit(outbox, callback("5", failed(of_another_account))).await;
    assert_eq!(
        outbox.get(failed_first).await.unwrap().unwrap().status,
        JobState::Sending,
        "kept for the attempt's outcome"
    );
    let accepted = || Outcome::Accepted {
        confirm_by_ms: i64::MAX,
    };
    outbox.record(failed_first, accepted()).unwrap();
    outbox
        .record(echoed_first, ambiguous(Some(77)).unwrap())
        .unwrap();
    outbox.record(echoed_then_failed, accepted()).unwrap();
    outbox.record(of_another_account, accepted()).unwrap();
    fresh.recorded().await;
    let ids = [
        failed_first,
        echoed_first,
        echoed_then_failed,
        of_another_account,
    ];
    assert_eq!(
        states_of(outbox, &ids).await,
        vec![
            (JobState::Failed, Some(Reason::SendFailed), None),
            (JobState::Accepted, None, Some(77)),
            (JobState::Failed, Some(Reason::SendFailed), None),
            (JobState::Accepted, None, Some(i64::MAX)),
        ]
    );
    let status = outbox.get(failed_first).await.unwrap().unwrap();
    assert_eq!(status.error_message.as_deref(), Some("对方已删除好友"));
    // Once recorded, the early report is spent: a resend's attempt starts clean.
    outbox.resend(failed_first, None, None).await.unwrap();
    hold(outbox, &[failed_first]).await;
    outbox.mark_sending_many(&[failed_first]).await.unwrap();
    outbox.record(failed_first, accepted()).unwrap();
    fresh.recorded().await;
    assert_eq!(
        outbox.get(failed_first).await.unwrap().unwrap().status,
        JobState::Accepted
    );
}

/// A restart settles a job left `sending` by its early report (failure: `failed`; echo:
/// `accepted` for a new window) instead of turning it `ambiguous`.
pub async fn a_restart_settles_jobs_left_sending_by_their_early_reports<F: Fresh>(fresh: F) {
    let ids = {
        let store = fresh.store();
        let outbox = &*store;
        let failed_first = sending(&fresh, "yzj").await;
        let echoed_first = sending(&fresh, "yzj").await;
        let silent = sending(&fresh, "yzj").await;
        admit(outbox, callback("1", failed(failed_first))).await;
        admit(outbox, callback("2", taken(echoed_first))).await;
        [failed_first, echoed_first, silent]
    };
    let before = kefu_core::now_ms();
    let (fresh, _) = restart(fresh).await;
    let store = fresh.store();
    let states = states_of(&*store, &ids).await;
    assert_eq!(
        states[0],
        (JobState::Failed, Some(Reason::SendFailed), None)
    );
    assert_eq!((states[1].0, states[1].1), (JobState::Accepted, None));
    assert!(states[1].2.unwrap() >= before + WINDOW_MS);
    assert_eq!(states[2], (JobState::Ambiguous, None, None));
}
