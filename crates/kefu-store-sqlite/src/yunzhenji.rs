//! yunzhenji's callbacks: each stored as an event for the desk, with what it reports about one
//! of the relay's jobs applied to that job in the same transaction (the rules are in
//! [`kefu_store`]'s contract).

use kefu_core::Reason;
use rusqlite::{Transaction, params};

use super::inbound::{EventRow, insert_event, is_duplicate};
use super::sql;
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
    let kind = new.kind();
    let event = new.event;
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
