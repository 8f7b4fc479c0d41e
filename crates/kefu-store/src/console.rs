//! What the operator console reads and records ([`ConsoleStore`]): counts per account and
//! state, pages of jobs and of a user's events, the webhook backlog, and the operators' marks on
//! jobs (who resent or resolved one, and when).

use kefu_core::BoxFuture;
use serde::Serialize;

use crate::{JobState, JobStatus, StoreResult};

/// The most rows one page may ask for; a larger `limit` is read as this.
pub const MAX_PAGE: u32 = 200;

/// How many jobs of one account are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    /// The account.
    pub account: String,
    /// The state.
    pub state: JobState,
    /// How many of the account's jobs are in it.
    pub count: u64,
}

/// Which jobs a page holds, newest (highest id) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this account's.
    pub account: Option<String>,
    /// Only this recipient's (with `account`: one conversation).
    pub recipient: Option<String>,
    /// Only jobs in one of these states; empty: any state.
    pub states: Vec<JobState>,
    /// Only jobs failed for this reason (`Reason::as_str`).
    pub reason: Option<String>,
    /// Only jobs last changed at or after this time (Unix ms).
    pub changed_since_ms: Option<i64>,
    /// Only jobs last changed before this time (Unix ms).
    pub changed_before_ms: Option<i64>,
    /// Whether jobs an operator resolved are included.
    pub include_resolved: bool,
    /// Only jobs with an id below this one: the next page after a page whose last id it is.
    pub before_id: Option<i64>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// What an operator last did to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// Put it back in the queue.
    Resend,
    /// Marked it handled elsewhere: it leaves the list of failed and ambiguous jobs.
    Resolve,
}

impl OperatorAction {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Resend => "resend",
            OperatorAction::Resolve => "resolve",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<OperatorAction> {
        match text {
            "resend" => Some(OperatorAction::Resend),
            "resolve" => Some(OperatorAction::Resolve),
            _ => None,
        }
    }
}

/// An operator's mark on a job: what was done, by whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorMark {
    /// What was done.
    pub action: OperatorAction,
    /// Who did it, as the console names the operator's session.
    pub operator: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

impl OperatorMark {
    /// The mark kept in a job's three columns (action, operator, time): `None` unless all
    /// three are set; `Err` with the action's spelling when it is not one this build knows.
    pub fn from_columns(
        action: Option<String>,
        operator: Option<String>,
        at_ms: Option<i64>,
    ) -> Result<Option<OperatorMark>, String> {
        match (action, operator, at_ms) {
            (Some(action), Some(operator), Some(at_ms)) => Ok(Some(OperatorMark {
                action: OperatorAction::parse(&action).ok_or(action)?,
                operator,
                at_ms,
            })),
            _ => Ok(None),
        }
    }
}

/// A job as the console shows it: its status, the body it sends, and the last operator's mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    /// The job's status, as `GET /v1/messages/{id}` gives it.
    #[serde(flatten)]
    pub status: JobStatus,
    /// The body as it goes on the wire, as text (bytes that are not UTF-8 replaced).
    pub payload: String,
    /// What an operator last did to it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<OperatorMark>,
}

/// An inbound event of one user, as stored for the desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    /// The event id.
    pub id: i64,
    /// Received at (Unix ms).
    pub received_at_ms: i64,
    /// The event's kind (`user_message`, `need_person`, …).
    pub kind: String,
    /// The event JSON, exactly as the desk receives it.
    pub body: String,
    /// The webhook's delivery state: `pending`, `delivered`, `failed`, or `none`.
    pub webhook_state: String,
}

/// What the operator console reads and records. Reads see at least every write whose future
/// has resolved, like [`JobStore::get`](crate::JobStore::get).
pub trait ConsoleStore: Send + Sync + 'static {
    /// How many jobs each account has in each state (only the pairs that have some), with
    /// resolved jobs not counted as `failed` or `ambiguous`.
    fn state_counts(&self) -> BoxFuture<'_, StoreResult<Vec<StateCount>>>;

    /// A page of jobs, newest first.
    fn jobs(&self, filter: JobFilter) -> BoxFuture<'_, StoreResult<Vec<JobRecord>>>;

    /// A page of one user's events on `account`, newest first, with ids below `before_id`.
    fn user_events<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
        before_id: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EventRecord>>>;

    /// How many events wait for the webhook (`pending`).
    fn webhook_backlog(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Marks the `failed` or `ambiguous` jobs among `ids` resolved by `operator`, durably, and
    /// returns the ids it marked. A job already resolved, or in another state, is left as it is
    /// (so that a repeated call changes nothing).
    fn resolve(&self, ids: Vec<i64>, operator: String) -> BoxFuture<'_, StoreResult<Vec<i64>>>;
}
