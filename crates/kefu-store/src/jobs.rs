//! The jobs the relay stores: what the desk handed over, one platform call each.

use kefu_core::{Composed, Job, Reason};
use serde::Serialize;

use crate::ReportKind;
use crate::idempotency::{Claim, Saved};
use crate::session::{DeskAction, Session};

/// The account of the Dialogue platform: the account of every job stored before accounts
/// existed, and of every desk message that names none.
pub const DIALOGUE_ACCOUNT: &str = "dialogue";

/// The error message of a job that recovery found `sending` and turned `ambiguous`, as the
/// desk reads it on the job: the same on every backend.
pub const INTERRUPTED_MESSAGE: &str =
    "the connector stopped while this was being sent; it may have been delivered";

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its turn or for a retry.
    Queued,
    /// A request is (or was, if the connector stopped) on its way.
    Sending,
    /// The platform accepted it.
    Delivered,
    /// The platform took it, and may still report within its confirmation window
    /// ([`Provider::confirm_window`](kefu_core::Provider::confirm_window)) that sending it
    /// failed: it becomes `delivered` when the window passes without such a report, `failed`
    /// when one comes.
    Accepted,
    /// The platform refused it, or retries ran out; it was not delivered.
    Failed,
    /// It may or may not have reached the user; only the desk may decide to send it again.
    Ambiguous,
}

impl JobState {
    /// The stored spelling, which is also the desk's.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Sending => "sending",
            JobState::Delivered => "delivered",
            JobState::Accepted => "accepted",
            JobState::Failed => "failed",
            JobState::Ambiguous => "ambiguous",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<JobState> {
        match text {
            "queued" => Some(JobState::Queued),
            "sending" => Some(JobState::Sending),
            "delivered" => Some(JobState::Delivered),
            "accepted" => Some(JobState::Accepted),
            "failed" => Some(JobState::Failed),
            "ambiguous" => Some(JobState::Ambiguous),
            _ => None,
        }
    }

    /// Whether the job is finished until the desk asks for a resend.
    ///
    /// `accepted` is not final: its confirmation window, or a report within it, still changes
    /// it. It is not resendable either, and delivery is done with it: the recipient's next job
    /// goes out without waiting for the window.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Delivered | JobState::Failed | JobState::Ambiguous
        )
    }
}

/// A job to store: one platform call for one recipient of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The configured account that sends it.
    pub account: String,
    /// Who receives it; jobs of one (account, recipient) are delivered in the order stored.
    pub recipient: String,
    /// The provider's name for the call.
    pub operation: String,
    /// The body exactly as it goes on the wire.
    pub payload: Vec<u8>,
}

impl NewJob {
    /// The job `account`'s provider composed.
    pub fn composed(account: &str, composed: Composed) -> NewJob {
        NewJob {
            account: account.to_owned(),
            recipient: composed.recipient,
            operation: composed.operation,
            payload: composed.payload,
        }
    }
}

/// A stored job that still has to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// The job, as its provider sends it.
    pub job: Job,
    /// Attempts made so far in this round (reset by a resend).
    pub attempts: u32,
    /// When the next attempt may start, in Unix milliseconds.
    pub not_before_ms: i64,
}

impl PendingJob {
    /// The job's id.
    pub fn id(&self) -> i64 {
        self.job.id
    }
}

/// What the desk sees of a job (`GET /v1/messages/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: i64,
    /// The account that sends it.
    pub account: String,
    /// The recipient, under the desk's name for it.
    pub openid: String,
    /// The provider's name for the call.
    pub operation: String,
    /// Where it stands.
    pub status: JobState,
    /// Attempts made in the current round.
    pub attempts: u32,
    /// The platform's code of the last failure, if it answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Why a failed job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// What went wrong last, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the job's confirmation window ends, in Unix milliseconds, while it is `accepted`
    /// or an `ambiguous` job that a callback may still confirm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_by_ms: Option<i64>,
    /// Stored at, in Unix milliseconds.
    pub created_at_ms: i64,
    /// Last changed at, in Unix milliseconds.
    pub updated_at_ms: i64,
}

/// The result of an attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the platform, for good.
    Delivered,
    /// Taken by a platform that may still report a failure until `confirm_by_ms`.
    Accepted {
        /// When the confirmation window ends, in Unix milliseconds.
        confirm_by_ms: i64,
    },
    /// Back in the queue, to be tried again no earlier than the given time (Unix ms).
    Retry {
        /// Earliest start of the next attempt.
        not_before_ms: i64,
        /// The platform's code, if it answered with one.
        code: Option<i64>,
        /// Description of the failure.
        message: String,
    },
    /// Not delivered, and not to be retried.
    Failed {
        /// The platform's code, if it answered with one.
        code: Option<i64>,
        /// Why, as the desk sees it.
        reason: Reason,
        /// Description of the failure.
        message: String,
    },
    /// Perhaps delivered; never retried automatically.
    Ambiguous {
        /// Description of the failure.
        message: String,
        /// For a platform that confirms by callback, when its window ends (Unix ms): a report
        /// that it took the message makes the job `accepted` until then, and none makes it
        /// `failed` ([`Reason::Unconfirmed`]). `None`: ambiguous until the desk decides.
        confirm_by_ms: Option<i64>,
    },
}

/// The job columns an [`Outcome`] writes, the same on every backend. Recording an outcome also
/// spends any early report waiting on the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeColumns<'a> {
    /// The job's new state.
    pub state: JobState,
    /// The earliest start of the next attempt; `None` keeps the job's.
    pub not_before_ms: Option<i64>,
    /// The platform's code, if it answered with one.
    pub error_code: Option<i64>,
    /// Why the job failed, as the desk reads it.
    pub reason: Option<&'a str>,
    /// The failure's description.
    pub error_message: Option<&'a str>,
    /// When the job's confirmation window ends (Unix ms), for a job still to be confirmed.
    pub confirm_by_ms: Option<i64>,
}

impl Outcome {
    /// The columns this outcome writes on its job.
    pub fn columns(&self) -> OutcomeColumns<'_> {
        let none = OutcomeColumns {
            state: JobState::Delivered,
            not_before_ms: None,
            error_code: None,
            reason: None,
            error_message: None,
            confirm_by_ms: None,
        };
        match self {
            Outcome::Delivered => none,
            Outcome::Accepted { confirm_by_ms } => OutcomeColumns {
                state: JobState::Accepted,
                confirm_by_ms: Some(*confirm_by_ms),
                ..none
            },
            Outcome::Retry {
                not_before_ms,
                code,
                message,
            } => OutcomeColumns {
                state: JobState::Queued,
                not_before_ms: Some(*not_before_ms),
                error_code: *code,
                error_message: Some(message),
                ..none
            },
            Outcome::Failed {
                code,
                reason,
                message,
            } => OutcomeColumns {
                state: JobState::Failed,
                error_code: *code,
                reason: Some(reason.as_str()),
                error_message: Some(message),
                ..none
            },
            Outcome::Ambiguous {
                message,
                confirm_by_ms,
            } => OutcomeColumns {
                state: JobState::Ambiguous,
                error_message: Some(message),
                confirm_by_ms: *confirm_by_ms,
                ..none
            },
        }
    }

    /// The outcome to record for an attempt when a callback reported on its job while the
    /// request was still on its way (a vendor may push before it answers): a failure report
    /// fails a job the attempt left accepted, ambiguous or delivered (reason `send_failed`, the
    /// vendor's text); a report that the vendor took it makes an ambiguous job with a window
    /// `accepted` until that window ends. Any other outcome stands.
    pub fn after_report(self, report: &ReportKind) -> Outcome {
        match (self, report) {
            (
                Outcome::Accepted { .. } | Outcome::Delivered | Outcome::Ambiguous { .. },
                ReportKind::Failed { message },
            ) => Outcome::Failed {
                code: None,
                reason: Reason::SendFailed,
                message: message.clone(),
            },
            (
                Outcome::Ambiguous {
                    confirm_by_ms: Some(confirm_by_ms),
                    ..
                },
                ReportKind::Taken,
            ) => Outcome::Accepted { confirm_by_ms },
            (outcome, _) => outcome,
        }
    }
}

/// A confirmation that [`JobStore::settle_confirmations`](crate::JobStore::settle_confirmations)
/// settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The job's id.
    pub id: i64,
    /// The job's account.
    pub account: String,
    /// Its new state: `delivered` (an accepted job no failure was reported for) or `failed`
    /// (an ambiguous job nothing confirmed).
    pub state: JobState,
    /// Why it failed ([`Reason::Unconfirmed`]), or `None` when delivered.
    pub reason: Option<Reason>,
}

/// Why a resend was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendError {
    /// No job has that id.
    NotFound,
    /// Only failed or ambiguous jobs may be sent again (not an `accepted` one, which the
    /// platform took).
    NotResendable(JobState),
}

/// A request's `Idempotency-Key`, claimed atomically with the request's work, with the answer
/// to save if the work is done (see [`crate::idempotency`]).
#[derive(Debug, Clone)]
pub struct Idempotent {
    /// The key to claim.
    pub claim: Claim,
    /// The answer to save with the key, given the ids of the jobs the work stored or queued.
    pub answer: fn(&[i64]) -> Saved,
}

/// A desk call (`enter`, `switch`, `quit`) to record on the user's session, atomically with the
/// jobs that carry it to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskCall {
    /// The account of the session.
    pub account: String,
    /// The user.
    pub openid: String,
    /// What the desk did.
    pub action: DeskAction,
    /// The agent the desk named.
    pub agent: Option<String>,
    /// The user's channel, as the desk gave it.
    pub channel: Option<u8>,
    /// The AppID the calls carry, if any.
    pub appid: Option<String>,
}

impl DeskCall {
    /// The user's session once this call is recorded on it: `session` as stored (a new one when
    /// the user was never seen), moved by the desk's action, with the channel and AppID the call
    /// names.
    pub fn recorded_on(&self, session: Option<Session>, now_ms: i64) -> Session {
        let mut session =
            session.unwrap_or_else(|| Session::new(&self.account, &self.openid, now_ms));
        session.apply_desk(self.action, self.agent.as_deref(), now_ms);
        if let Some(channel) = self.channel {
            session.channel = Some(channel);
        }
        if let Some(appid) = self.appid.as_deref().filter(|a| !a.is_empty()) {
            session.appid = Some(appid.to_owned());
        }
        session
    }
}
