//! yunzhenji's callbacks: each stored as an event for the desk, with what it reports about one
//! of the relay's jobs applied to that job in the same transaction (the rules are in
//! [`kefu_store`]'s contract).

use kefu_core::Reason;
use rusqlite::{Transaction, params};
use serde_json::Value;

use super::inbound::{EventRow, insert_event, is_duplicate};
use super::sql;
use kefu_store::event::EventKind;
use kefu_store::{
    Admission, JobState, NewYunzhenji, ReportKind, SendReport, StoreError, YunzhenjiAdmission,
};

/// Admits a yunzhenji callback: drops a redelivery, else stores its event and applies its
/// report to the job it names, in the one transaction.
pub(super) fn admit(
    tx: &Transaction<'_>,
    now: i64,
    new: NewYunzhenji,
) -> Result<YunzhenjiAdmission, StoreError> {
    if is_duplicate(tx, &new.dedup_key, now)? {
        return Ok(YunzhenjiAdmission {
            admission: Admission::Duplicate,
            moved_to: None,
        });
    }
    let event = new.event;
    let kind = event
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(EventKind::Other.as_str())
        .to_owned();
    let stored = insert_event(
        tx,
        now,
        EventRow {
            account: Some(&new.account),
            openid: &new.conversation,
            kind: &kind,
            event,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
            dedup_expires_ms: new.dedup_expires_ms,
        },
    )?;
    let moved_to = match &new.report {
        Some(report) => apply_report(tx, now, &new.account, report)?,
        None => None,
    };
    Ok(YunzhenjiAdmission {
        admission: Admission::Stored(stored),
        moved_to,
    })
}

/// How a report on a job still `sending` is kept until the attempt's outcome is recorded.
pub(super) const EARLY_TAKEN: &str = "taken";
/// See [`EARLY_TAKEN`].
pub(super) const EARLY_FAILED: &str = "failed";

/// The report kept on a job while it was `sending`, from its stored columns.
pub(super) fn early_report(kind: Option<&str>, message: Option<String>) -> Option<ReportKind> {
    match kind? {
        EARLY_TAKEN => Some(ReportKind::Taken),
        EARLY_FAILED => Some(ReportKind::Failed {
            message: message.unwrap_or_default(),
        }),
        _ => None,
    }
}

/// Applies a callback's report to the job it names, if that job is `account`'s and in a state
/// the report may change (see the confirmation rules in [`kefu_store`]). A job still
/// `sending` keeps the report for its attempt's outcome ([`Outcome::after_report`]); a failure
/// report outweighs an echo there, as it does once the job is settled.
///
/// Returns the job's new state if the report changed it.
///
/// [`Outcome::after_report`]: kefu_store::Outcome::after_report
fn apply_report(
    tx: &Transaction<'_>,
    now: i64,
    account: &str,
    report: &SendReport,
) -> Result<Option<JobState>, StoreError> {
    match &report.kind {
        ReportKind::Taken => {
            let moved = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'accepted', confirm_by_ms = ?3, error_code = NULL,
                     reason = NULL, error_message = NULL, updated_at_ms = ?4
                 WHERE id = ?1 AND account = ?2 AND state = 'ambiguous'",
                )
                .map_err(sql)?
                .execute(params![
                    report.job_id,
                    account,
                    now.saturating_add(report.confirm_window_ms),
                    now
                ])
                .map_err(sql)?;
            tx.prepare_cached(
                "UPDATE outbox SET early_report = ?3, early_window_ms = ?4
                 WHERE id = ?1 AND account = ?2 AND state = 'sending' AND early_report IS NULL",
            )
            .map_err(sql)?
            .execute(params![
                report.job_id,
                account,
                EARLY_TAKEN,
                report.confirm_window_ms
            ])
            .map_err(sql)?;
            Ok((moved > 0).then_some(JobState::Accepted))
        }
        ReportKind::Failed { message } => {
            let moved = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'failed', reason = ?3, error_code = NULL,
                     error_message = ?4, confirm_by_ms = NULL, updated_at_ms = ?5
                 WHERE id = ?1 AND account = ?2
                   AND state IN ('accepted', 'ambiguous', 'delivered')",
                )
                .map_err(sql)?
                .execute(params![
                    report.job_id,
                    account,
                    Reason::SendFailed.as_str(),
                    message,
                    now
                ])
                .map_err(sql)?;
            tx.prepare_cached(
                "UPDATE outbox SET early_report = ?3, early_message = ?4
                 WHERE id = ?1 AND account = ?2 AND state = 'sending'",
            )
            .map_err(sql)?
            .execute(params![report.job_id, account, EARLY_FAILED, message])
            .map_err(sql)?;
            Ok((moved > 0).then_some(JobState::Failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use kefu_store::{Claimed, EventStore as _, JobState, JobStore as _, NewJob, Outcome};

    const WINDOW_MS: i64 = 300_000;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = SqliteStore::open(&dir.path().join("y.sqlite3")).unwrap();
        (dir, outbox)
    }

    /// A job of `account`, sent once and left with `outcome`.
    async fn job(outbox: &SqliteStore, account: &str, outcome: Option<Outcome>) -> i64 {
        let new = NewJob {
            account: account.into(),
            recipient: "wxid_customer".into(),
            operation: "wechat/sendMessage".into(),
            payload: b"{}".to_vec(),
        };
        let Claimed::Done(stored) = outbox.insert(vec![new], None, None).await.unwrap() else {
            panic!("no key was given")
        };
        let id = stored[0].id();
        if let Some(outcome) = outcome {
            outbox.mark_sending_many(&[id]).await.unwrap();
            outbox.record(id, outcome).unwrap();
        }
        id
    }

    fn callback(key: &str, report: Option<SendReport>) -> NewYunzhenji {
        NewYunzhenji {
            account: "yzj".into(),
            conversation: "wxid_customer".into(),
            event:
                serde_json::json!({"source": "yunzhenji", "account": "yzj", "kind": "send_failed"})
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

    async fn admit(outbox: &SqliteStore, new: NewYunzhenji) -> Admission {
        outbox.admit_yunzhenji(new).await.unwrap().admission
    }

    #[tokio::test]
    async fn a_chat_msg_echo_resolves_an_ambiguous_job_to_accepted_for_a_new_window() {
        let (_dir, outbox) = open().await;
        let id = job(&outbox, "yzj", ambiguous(Some(1))).await;
        let before = kefu_core::now_ms();
        assert!(matches!(
            admit(&outbox, callback("svrid:chatMsg", taken(id))).await,
            Admission::Stored(_)
        ));
        let status = outbox.get(id).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Accepted);
        assert_eq!(status.error_message, None);
        assert!(status.confirm_by_ms.unwrap() >= before + WINDOW_MS);
        // A second echo (another svrid) changes nothing more: it is accepted already.
        let window = status.confirm_by_ms;
        admit(&outbox, callback("svrid2:chatMsg", taken(id))).await;
        assert_eq!(outbox.get(id).await.unwrap().unwrap().confirm_by_ms, window);
    }

    #[tokio::test]
    async fn a_send_failure_fails_an_accepted_ambiguous_or_delivered_job() {
        let (_dir, outbox) = open().await;
        let accepted = job(
            &outbox,
            "yzj",
            Some(Outcome::Accepted {
                confirm_by_ms: i64::MAX,
            }),
        )
        .await;
        let ambiguous_job = job(&outbox, "yzj", ambiguous(Some(i64::MAX))).await;
        let delivered = job(&outbox, "yzj", Some(Outcome::Delivered)).await;
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

    #[tokio::test]
    async fn a_duplicate_is_dropped_before_its_report_is_applied() {
        let (_dir, outbox) = open().await;
        let id = job(&outbox, "yzj", ambiguous(Some(i64::MAX))).await;
        admit(&outbox, callback("svrid:chatMsg", None)).await;
        // The same key again, now naming the job: a redelivery, so nothing is applied.
        assert_eq!(
            admit(&outbox, callback("svrid:chatMsg", taken(id))).await,
            Admission::Duplicate
        );
        assert_eq!(
            outbox.get(id).await.unwrap().unwrap().status,
            JobState::Ambiguous
        );
        assert_eq!(outbox.events_after(0, 10).await.unwrap().events.len(), 1);
    }

    #[tokio::test]
    async fn reports_for_another_account_unknown_ids_or_other_states_change_nothing() {
        let (_dir, outbox) = open().await;
        let other = job(&outbox, "shop", ambiguous(Some(i64::MAX))).await;
        let queued = job(&outbox, "yzj", None).await;
        let unconfirmed = job(
            &outbox,
            "yzj",
            Some(Outcome::Failed {
                code: None,
                reason: Reason::Unconfirmed,
                message: "none".into(),
            }),
        )
        .await;
        let delivered = job(&outbox, "yzj", Some(Outcome::Delivered)).await;
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
        let before: Vec<_> = states_of(&outbox, &[other, queued, unconfirmed]).await;
        for (n, report) in reports.into_iter().enumerate() {
            let admitted = admit(&outbox, callback(&n.to_string(), report)).await;
            assert!(
                matches!(admitted, Admission::Stored(_)),
                "the event is kept"
            );
        }
        assert_eq!(
            states_of(&outbox, &[other, queued, unconfirmed]).await,
            before
        );
        assert_eq!(
            outbox.get(delivered).await.unwrap().unwrap().status,
            JobState::Delivered
        );
    }

    async fn states_of(
        outbox: &SqliteStore,
        ids: &[i64],
    ) -> Vec<(JobState, Option<Reason>, Option<i64>)> {
        let mut states = Vec::new();
        for id in ids {
            let status = outbox.get(*id).await.unwrap().unwrap();
            states.push((status.status, status.reason, status.confirm_by_ms));
        }
        states
    }

    #[tokio::test]
    async fn the_event_gets_its_id_and_kind() {
        let (_dir, outbox) = open().await;
        let Admission::Stored(stored) = admit(&outbox, callback("a", None)).await else {
            panic!("not stored")
        };
        let body: Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(body["id"], stored.id);
        assert_eq!(body["kind"], "send_failed");
        assert_eq!(stored.openid, "wxid_customer");
    }

    /// A job of `account` whose request is on its way.
    async fn sending(outbox: &SqliteStore, account: &str) -> i64 {
        let id = job(outbox, account, None).await;
        outbox.mark_sending_many(&[id]).await.unwrap();
        id
    }

    #[tokio::test]
    async fn a_report_that_comes_before_the_answer_settles_the_attempt_when_it_is_recorded() {
        let (_dir, outbox) = open().await;
        let failed_first = sending(&outbox, "yzj").await;
        let echoed_first = sending(&outbox, "yzj").await;
        let echoed_then_failed = sending(&outbox, "yzj").await;
        let of_another_account = sending(&outbox, "shop").await;
        admit(&outbox, callback("1", failed(failed_first))).await;
        admit(&outbox, callback("2", taken(echoed_first))).await;
        admit(&outbox, callback("3", taken(echoed_then_failed))).await;
        admit(&outbox, callback("4", failed(echoed_then_failed))).await;
        admit(&outbox, callback("5", failed(of_another_account))).await;
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
        let ids = [
            failed_first,
            echoed_first,
            echoed_then_failed,
            of_another_account,
        ];
        assert_eq!(
            states_of(&outbox, &ids).await,
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
        outbox.resend(failed_first, None).await.unwrap();
        outbox.mark_sending_many(&[failed_first]).await.unwrap();
        outbox.record(failed_first, accepted()).unwrap();
        assert_eq!(
            outbox.get(failed_first).await.unwrap().unwrap().status,
            JobState::Accepted
        );
    }

    #[tokio::test]
    async fn a_restart_settles_jobs_left_sending_by_their_early_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.sqlite3");
        let ids = {
            let (outbox, _) = SqliteStore::open(&path).unwrap();
            let failed_first = sending(&outbox, "yzj").await;
            let echoed_first = sending(&outbox, "yzj").await;
            let silent = sending(&outbox, "yzj").await;
            admit(&outbox, callback("1", failed(failed_first))).await;
            admit(&outbox, callback("2", taken(echoed_first))).await;
            [failed_first, echoed_first, silent]
        };
        let before = kefu_core::now_ms();
        let (outbox, _) = SqliteStore::open(&path).unwrap();
        let states = states_of(&outbox, &ids).await;
        assert_eq!(
            states[0],
            (JobState::Failed, Some(Reason::SendFailed), None)
        );
        assert_eq!((states[1].0, states[1].1), (JobState::Accepted, None));
        assert!(states[1].2.unwrap() >= before + WINDOW_MS);
        assert_eq!(states[2], (JobState::Ambiguous, None, None));
    }
}
