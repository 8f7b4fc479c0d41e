//! The operator console ([`ConsoleStore`](crate::ConsoleStore)): counts per account and state,
//! pages of jobs and of a user's events, the webhook backlog, and the operators' marks.

use kefu_core::Reason;
use kefu_payload::{HandoffCallback, KefuState};
use serde_json::Map;

use super::{Fresh, ids_of, insert_plain, job, resend_plain, sent, status};
use crate::console::MAX_PAGE;
use crate::message::StandardMessage;
use crate::{
    Admission, Claimed, DIALOGUE_ACCOUNT, JobFilter, JobRecord, JobState, NewDialogue, NewJob,
    NewWechat, OperatorAction, Outcome, PendingEvent, ResendError, StateCount, Store,
    WebhookOutcome,
};

/// A job for `recipient` on `account`, its payload `payload`.
fn job_of(account: &str, recipient: &str, payload: &[u8]) -> NewJob {
    NewJob {
        account: account.into(),
        recipient: recipient.into(),
        operation: "sendmsg".into(),
        payload: payload.to_vec(),
    }
}

fn failed(reason: Reason) -> Outcome {
    Outcome::Failed {
        code: Some(1001),
        reason,
        message: "refused".into(),
    }
}

fn ambiguous() -> Outcome {
    Outcome::Ambiguous {
        message: "timed out".into(),
        confirm_by_ms: None,
    }
}

/// A filter for every job, resolved ones included, a full page.
fn every_job() -> JobFilter {
    JobFilter {
        include_resolved: true,
        limit: MAX_PAGE,
        ..JobFilter::default()
    }
}

/// The ids of a page, in its order.
fn ids(page: &[JobRecord]) -> Vec<i64> {
    page.iter().map(|record| record.status.id).collect()
}

/// The counts, as (account, state, count), in a fixed order.
async fn counts(store: &dyn Store) -> Vec<(String, JobState, u64)> {
    let mut counts: Vec<(String, JobState, u64)> = store
        .state_counts()
        .await
        .unwrap()
        .into_iter()
        .map(
            |StateCount {
                 account,
                 state,
                 count,
             }| (account, state, count),
        )
        .collect();
    counts.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    counts
}

/// (account, state, count) for the expected counts.
fn count(account: &str, state: JobState, count: u64) -> (String, JobState, u64) {
    (account.to_owned(), state, count)
}

/// Resolving marks only failed and ambiguous jobs, once; a resolved job leaves the counts of
/// failed and ambiguous jobs and the pages without resolved jobs; a resend clears the mark, and
/// a noted resend shows who resent it.
pub async fn resolve_marks_failed_or_ambiguous_jobs_once_and_a_resend_clears_the_mark<F: Fresh>(
    fresh: F,
) {
    let store = fresh.store();
    let mut jobs = vec![job("a", "0"), job("a", "1"), job("a", "2"), job("a", "3")];
    jobs.push(job_of("shop", "b", b"4"));
    let id = ids_of(&insert_plain(&*store, jobs).await);
    sent(&fresh, id[0], failed(Reason::Config)).await;
    sent(&fresh, id[1], ambiguous()).await;
    sent(&fresh, id[2], Outcome::Delivered).await;
    sent(&fresh, id[4], failed(Reason::Recipient)).await;
    let dialogue = DIALOGUE_ACCOUNT;
    assert_eq!(
        counts(&*store).await,
        [
            count(dialogue, JobState::Ambiguous, 1),
            count(dialogue, JobState::Delivered, 1),
            count(dialogue, JobState::Failed, 1),
            count(dialogue, JobState::Queued, 1),
            count("shop", JobState::Failed, 1),
        ]
    );
    assert!(
        store
            .jobs(every_job())
            .await
            .unwrap()
            .iter()
            .all(|record| record.mark.is_none())
    );

    // Only the failed one of these, once; an unknown id is ignored.
    let unknown = id[4] + 1_000;
    let asked = vec![id[2], id[0], id[3], id[0], unknown];
    let resolved = store.resolve(asked.clone(), "ops".into()).await.unwrap();
    assert_eq!(resolved, [id[0]]);
    assert_eq!(
        store.resolve(asked, "ops".into()).await.unwrap(),
        Vec::<i64>::new()
    );
    let mut both = store
        .resolve(vec![id[4], id[1]], "lead".into())
        .await
        .unwrap();
    both.sort_unstable();
    assert_eq!(both, [id[1], id[4]]);
    // The resolved jobs keep their state.
    assert_eq!(status(&*store, id[0]).await.status, JobState::Failed);
    assert_eq!(
        counts(&*store).await,
        [
            count(dialogue, JobState::Delivered, 1),
            count(dialogue, JobState::Queued, 1)
        ]
    );
    let unresolved = JobFilter {
        include_resolved: false,
        ..every_job()
    };
    assert_eq!(
        ids(&store.jobs(unresolved.clone()).await.unwrap()),
        [id[3], id[2]]
    );
    let all = store.jobs(every_job()).await.unwrap();
    assert_eq!(ids(&all), [id[4], id[3], id[2], id[1], id[0]]);
    let mark = all[4].mark.clone().expect("job 0 is marked");
    assert_eq!(
        (mark.action, mark.operator.as_str()),
        (OperatorAction::Resolve, "ops")
    );
    assert!(mark.at_ms > 0);
    assert_eq!(
        all[3].mark.as_ref().map(|m| m.operator.as_str()),
        Some("lead")
    );
    assert_eq!(all[2].mark, None, "a delivered job is not resolved");

    // A resend puts the job back, unmarked, among the unresolved.
    resend_plain(&*store, id[0]).await.unwrap();
    let page = store.jobs(unresolved.clone()).await.unwrap();
    assert_eq!(ids(&page), [id[3], id[2], id[0]]);
    assert_eq!(page[2].status.status, JobState::Queued);
    assert_eq!(page[2].mark, None, "the resend cleared the mark");
    assert_eq!(
        counts(&*store).await,
        [
            count(dialogue, JobState::Delivered, 1),
            count(dialogue, JobState::Queued, 2)
        ]
    );
    // An operator's resend marks the job in its own transaction; of an unknown job, nothing.
    sent(&fresh, id[3], Outcome::Delivered).await;
    sent(&fresh, id[0], failed(Reason::Config)).await;
    assert!(matches!(
        store.resend(id[0], None, Some("ops".into())).await.unwrap(),
        Claimed::Done(Ok(_))
    ));
    assert!(matches!(
        store
            .resend(unknown, None, Some("ops".into()))
            .await
            .unwrap(),
        Claimed::Done(Err(ResendError::NotFound))
    ));
    let page = store.jobs(unresolved).await.unwrap();
    let resent = page.iter().find(|r| r.status.id == id[0]).unwrap();
    let mark = resent.mark.clone().expect("the resend is marked");
    assert_eq!(
        (mark.action, mark.operator.as_str()),
        (OperatorAction::Resend, "ops")
    );
    // A queued job cannot be resolved; failed again, it can, though resent once.
    assert_eq!(
        store.resolve(vec![id[0]], "ops".into()).await.unwrap(),
        Vec::<i64>::new()
    );
    sent(&fresh, id[0], failed(Reason::Config)).await;
    assert_eq!(
        store.resolve(vec![id[0]], "ops".into()).await.unwrap(),
        [id[0]]
    );
    let all = store.jobs(every_job()).await.unwrap();
    let mark = all[4].mark.clone().expect("job 0 is marked again");
    assert_eq!(all[4].status.id, id[0]);
    assert_eq!(mark.action, OperatorAction::Resolve);
    assert_eq!(all[1].mark, None, "a delivered job is not resolved");
}

/// Pages run newest first by id, each after the last id of the one before, at most `limit`
/// (at most [`MAX_PAGE`]); the filters by account, recipient, state, reason and time of the
/// last change each narrow the page; the payload is shown as text.
pub async fn job_pages_are_filtered_and_run_newest_first<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let mut jobs: Vec<NewJob> = (0..7).map(|n| job("u", &format!("p{n}"))).collect();
    jobs.push(job("v", "other recipient"));
    jobs.push(job_of("shop", "u", &[0xff, b'a']));
    let id = ids_of(&insert_plain(&*store, jobs).await);
    sent(&fresh, id[0], failed(Reason::Config)).await;
    sent(&fresh, id[1], failed(Reason::Recipient)).await;
    sent(&fresh, id[2], ambiguous()).await;
    sent(&fresh, id[3], Outcome::Delivered).await;

    // One conversation, three at a time.
    let conversation = JobFilter {
        account: Some(DIALOGUE_ACCOUNT.into()),
        recipient: Some("u".into()),
        limit: 3,
        ..JobFilter::default()
    };
    let first = store.jobs(conversation.clone()).await.unwrap();
    assert_eq!(ids(&first), [id[6], id[5], id[4]]);
    assert_eq!(first[0].payload, "p6");
    assert_eq!(first[0].status, status(&*store, id[6]).await);
    let next = |before: &[JobRecord]| JobFilter {
        before_id: before.last().map(|record| record.status.id),
        ..conversation.clone()
    };
    let second = store.jobs(next(&first)).await.unwrap();
    assert_eq!(ids(&second), [id[3], id[2], id[1]]);
    let third = store.jobs(next(&second)).await.unwrap();
    assert_eq!(ids(&third), [id[0]]);
    assert_eq!(store.jobs(next(&third)).await.unwrap(), []);

    // One account; one recipient across accounts.
    let shop = JobFilter {
        account: Some("shop".into()),
        ..every_job()
    };
    let page = store.jobs(shop).await.unwrap();
    assert_eq!(ids(&page), [id[8]]);
    assert_eq!(
        page[0].payload, "\u{fffd}a",
        "bytes that are not UTF-8 replaced"
    );
    let u = JobFilter {
        recipient: Some("u".into()),
        ..every_job()
    };
    let page = store.jobs(u).await.unwrap();
    assert_eq!(page.len(), 8);
    assert_eq!(page[0].status.id, id[8]);

    // States, and reasons.
    let states = |states: Vec<JobState>| JobFilter {
        states,
        ..every_job()
    };
    let page = store.jobs(states(vec![JobState::Failed])).await.unwrap();
    assert_eq!(ids(&page), [id[1], id[0]]);
    let attention = states(vec![JobState::Failed, JobState::Ambiguous]);
    let page = store.jobs(attention.clone()).await.unwrap();
    assert_eq!(ids(&page), [id[2], id[1], id[0]]);
    let page = store
        .jobs(states(vec![JobState::Delivered, JobState::Ambiguous]))
        .await
        .unwrap();
    assert_eq!(ids(&page), [id[3], id[2]]);
    let queued = store.jobs(states(vec![JobState::Queued])).await.unwrap();
    assert_eq!(ids(&queued), [id[8], id[7], id[6], id[5], id[4]]);
    let config = JobFilter {
        reason: Some(Reason::Config.as_str().into()),
        ..attention.clone()
    };
    let page = store.jobs(config).await.unwrap();
    assert_eq!(ids(&page), [id[0]]);
    assert_eq!(page[0].status.reason, Some(Reason::Config));

    // The time of the last change: at or after `since`, before `before`.
    let all = store.jobs(every_job()).await.unwrap();
    assert_eq!(all.len(), 9);
    let changed = all[6].status.updated_at_ms;
    let expected = |keep: &dyn Fn(i64) -> bool| -> Vec<i64> {
        all.iter()
            .filter(|record| keep(record.status.updated_at_ms))
            .map(|record| record.status.id)
            .collect()
    };
    let since = JobFilter {
        changed_since_ms: Some(changed),
        ..every_job()
    };
    let page = store.jobs(since).await.unwrap();
    assert_eq!(ids(&page), expected(&|at| at >= changed));
    assert!(ids(&page).contains(&all[6].status.id));
    let before = JobFilter {
        changed_before_ms: Some(changed),
        ..every_job()
    };
    let page = store.jobs(before).await.unwrap();
    assert_eq!(ids(&page), expected(&|at| at < changed));
    assert!(!ids(&page).contains(&all[6].status.id));
    let window = JobFilter {
        changed_since_ms: Some(changed),
        changed_before_ms: Some(changed),
        ..every_job()
    };
    assert_eq!(store.jobs(window).await.unwrap(), []);

    // A page of none is empty.
    let none = JobFilter {
        limit: 0,
        ..every_job()
    };
    assert_eq!(store.jobs(none).await.unwrap(), []);
}

/// A page holds at most [`MAX_PAGE`] jobs, whatever the limit asked for.
pub async fn a_page_holds_at_most_max_page_jobs<F: Fresh>(fresh: F) {
    let store = fresh.store();
    let count = usize::try_from(MAX_PAGE).unwrap() + 5;
    let jobs = (0..count).map(|n| job("u", &n.to_string())).collect();
    let id = ids_of(&insert_plain(&*store, jobs).await);
    let huge = JobFilter {
        limit: u32::MAX,
        ..every_job()
    };
    let page = store.jobs(huge.clone()).await.unwrap();
    assert_eq!(page.len(), count - 5);
    assert_eq!(page[0].status.id, id[count - 1]);
    let rest = JobFilter {
        before_id: page.last().map(|record| record.status.id),
        ..huge
    };
    assert_eq!(
        ids(&store.jobs(rest).await.unwrap()),
        id[..5].iter().rev().copied().collect::<Vec<_>>()
    );
}

fn callback(userid: &str, text: &str) -> HandoffCallback {
    HandoffCallback {
        userid: userid.into(),
        appid: "wx1".into(),
        content: Some(text.into()),
        from: Some(0),
        kfstate: Some(KefuState::Asking),
        channel: Some(0),
        createtime: Some(1_700_000_000),
        ..HandoffCallback::default()
    }
}

/// Admits a Dialogue callback of `userid` for the webhook.
async fn dialogue(store: &dyn Store, key: &str, userid: &str) -> PendingEvent {
    let new = NewDialogue {
        callback: callback(userid, key),
        raw: Map::new(),
        dedup_key: key.into(),
        dedup_expires_ms: i64::MAX,
        webhook: true,
    };
    match store.admit_dialogue(new).await.unwrap() {
        Admission::Stored(event) => event,
        other => panic!("not stored: {other:?}"),
    }
}

/// Admits a WeChat push of `openid` on account `account`, without a webhook.
async fn wechat(store: &dyn Store, key: &str, account: &str, openid: &str) -> PendingEvent {
    let new = NewWechat {
        account: account.into(),
        message: StandardMessage {
            from_user_name: openid.into(),
            msg_type: Some("text".into()),
            content: Some("hi".into()),
            msg_id: Some(key.into()),
            ..StandardMessage::default()
        },
        replay_key: format!("replay-{key}"),
        plain_replay_key: None,
        replay_expires_ms: i64::MAX,
        body_sha256: key.into(),
        dedup_key: format!("dedup-{key}"),
        dedup_expires_ms: i64::MAX,
        webhook: false,
    };
    match store.admit_wechat(new).await.unwrap() {
        Admission::Stored(event) => event,
        other => panic!("not stored: {other:?}"),
    }
}

/// A user's events come newest first, per (account, user) (Dialogue callbacks are the
/// Dialogue account's), a page at a time, with their webhook state; the backlog counts the
/// events still to push.
pub async fn a_users_events_come_newest_first_and_the_backlog_counts_pending_ones<F: Fresh>(
    fresh: F,
) {
    let store = fresh.store();
    assert_eq!(store.webhook_backlog().await.unwrap(), 0);
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(dialogue(&*store, &format!("d{n}"), "oU").await);
    }
    let theirs = dialogue(&*store, "d3", "oV").await;
    let pushed = wechat(&*store, "w0", "oa", "oU").await;
    assert_eq!(store.webhook_backlog().await.unwrap(), 4);

    let first = store
        .user_events(DIALOGUE_ACCOUNT, "oU", None, 2)
        .await
        .unwrap();
    let first_ids: Vec<i64> = first.iter().map(|event| event.id).collect();
    assert_eq!(first_ids, [mine[2].id, mine[1].id]);
    assert_eq!(first[0].body, mine[2].body);
    assert_eq!(first[0].webhook_state, "pending");
    assert!(first[0].received_at_ms > 0);
    assert!(!first[0].kind.is_empty());
    let second = store
        .user_events(DIALOGUE_ACCOUNT, "oU", Some(mine[1].id), 2)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, mine[0].id);
    assert_eq!(
        store
            .user_events(DIALOGUE_ACCOUNT, "oU", Some(mine[0].id), 2)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        store
            .user_events(DIALOGUE_ACCOUNT, "oU", None, 0)
            .await
            .unwrap(),
        []
    );

    let other = store.user_events("oa", "oU", None, 10).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        (
            other[0].id,
            other[0].body.as_str(),
            other[0].webhook_state.as_str()
        ),
        (pushed.id, pushed.body.as_str(), "none")
    );
    assert_eq!(store.user_events("shop", "oU", None, 10).await.unwrap(), []);
    let v = store
        .user_events(DIALOGUE_ACCOUNT, "oV", None, 10)
        .await
        .unwrap();
    assert_eq!(v.iter().map(|e| e.id).collect::<Vec<_>>(), [theirs.id]);

    store
        .record_webhook(mine[2].id, WebhookOutcome::Delivered)
        .unwrap();
    store
        .record_webhook(
            theirs.id,
            WebhookOutcome::Failed {
                error: "410".into(),
            },
        )
        .unwrap();
    fresh.recorded().await;
    assert_eq!(store.webhook_backlog().await.unwrap(), 2);
    let page = store
        .user_events(DIALOGUE_ACCOUNT, "oU", None, 1)
        .await
        .unwrap();
    assert_eq!(page[0].webhook_state, "delivered");
    let page = store
        .user_events(DIALOGUE_ACCOUNT, "oV", None, 1)
        .await
        .unwrap();
    assert_eq!(page[0].webhook_state, "failed");
}
