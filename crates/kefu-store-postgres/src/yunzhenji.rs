//! yunzhenji's callbacks: each stored as an event for the desk, with what it reports about one
//! of the relay's jobs applied to that job in the same transaction (the rules are in
//! `kefu_store`'s contract).

use kefu_core::Reason;
use kefu_store::{Admission, JobState, NewYunzhenji, ReportKind, SendReport, YunzhenjiAdmission};

use crate::error::PgError;
use crate::events::{EventRow, claim_dedup, insert_event};
use crate::lane::Group;
use crate::sql::{self, Conn};

/// How a report on a job still `sending` is kept until the attempt's outcome is recorded.
const EARLY_TAKEN: &str = "taken";
/// See [`EARLY_TAKEN`].
const EARLY_FAILED: &str = "failed";

/// The report kept on a job while it was `sending`, from its stored columns.
pub(crate) fn early_report(kind: Option<&str>, message: Option<String>) -> Option<ReportKind> {
    match kind? {
        EARLY_TAKEN => Some(ReportKind::Taken),
        EARLY_FAILED => Some(ReportKind::Failed {
            message: message.unwrap_or_default(),
        }),
        _ => None,
    }
}

/// Admits a yunzhenji callback: drops a redelivery, else stores its event and applies its
/// report to the job it names, in the one transaction.
pub(crate) async fn admit(
    c: &Conn,
    g: &mut Group,
    new: NewYunzhenji,
) -> Result<YunzhenjiAdmission, PgError> {
    if !claim_dedup(c, &new.dedup_key, new.dedup_expires_ms, g.now).await? {
        return Ok(YunzhenjiAdmission {
            admission: Admission::Duplicate,
            moved_to: None,
        });
    }
    // The job first, then the event: the event counter is locked last (design §9.1).
    let moved_to = match &new.report {
        Some(report) => apply_report(c, g.now, &new.account, report).await?,
        None => None,
    };
    let kind = new.kind();
    let event = new.event;
    let stored = insert_event(
        c,
        g,
        EventRow {
            account: Some(&new.account),
            openid: &new.conversation,
            kind: &kind,
            event,
            webhook: new.webhook,
            dedup_key: &new.dedup_key,
        },
    )
    .await?;
    Ok(YunzhenjiAdmission {
        admission: Admission::Stored(stored),
        moved_to,
    })
}

/// Applies a callback's report to the job it names, if that job is `account`'s and in a state
/// the report may change. A job still `sending` keeps the report for its attempt's outcome
/// (`Outcome::after_report`); a failure report outweighs an echo there, as it does once the job
/// is settled.
///
/// Returns the job's new state if the report changed it.
async fn apply_report(
    c: &Conn,
    now: i64,
    account: &str,
    report: &SendReport,
) -> Result<Option<JobState>, PgError> {
    match &report.kind {
        ReportKind::Taken => {
            let moved = sql::execute(
                c,
                "UPDATE kefu.jobs SET state = 'accepted', confirm_by_ms = $3, error_code = NULL,
                     reason = NULL, error_message = NULL, updated_at_ms = $4
                 WHERE id = $1 AND account = $2 AND state = 'ambiguous'",
                &[
                    &report.job_id,
                    &account,
                    &now.saturating_add(report.confirm_window_ms),
                    &now,
                ],
            )
            .await?;
            sql::execute(
                c,
                "UPDATE kefu.jobs SET early_report = $3, early_window_ms = $4
                 WHERE id = $1 AND account = $2 AND state = 'sending' AND early_report IS NULL",
                &[
                    &report.job_id,
                    &account,
                    &EARLY_TAKEN,
                    &report.confirm_window_ms,
                ],
            )
            .await?;
            Ok((moved > 0).then_some(JobState::Accepted))
        }
        ReportKind::Failed { message } => {
            let moved = sql::execute(
                c,
                "UPDATE kefu.jobs SET state = 'failed', reason = $3, error_code = NULL,
                     error_message = $4, confirm_by_ms = NULL, updated_at_ms = $5
                 WHERE id = $1 AND account = $2
                   AND state IN ('accepted', 'ambiguous', 'delivered')",
                &[
                    &report.job_id,
                    &account,
                    &Reason::SendFailed.as_str(),
                    message,
                    &now,
                ],
            )
            .await?;
            sql::execute(
                c,
                "UPDATE kefu.jobs SET early_report = $3, early_message = $4
                 WHERE id = $1 AND account = $2 AND state = 'sending'",
                &[&report.job_id, &account, &EARLY_FAILED, message],
            )
            .await?;
            Ok((moved > 0).then_some(JobState::Failed))
        }
    }
}
