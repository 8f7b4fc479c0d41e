//! The inbound side's records: callbacks to admit, events to push to the desk's webhook.

use kefu_payload::HandoffCallback;
use serde_json::{Map, Value};

use crate::message::StandardMessage;

/// An event still to be pushed to the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The event id.
    pub id: i64,
    /// The user; a user's events are pushed in id order.
    pub openid: String,
    /// The event JSON, exactly as it is sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt may start, in Unix milliseconds.
    pub not_before_ms: i64,
}

/// What became of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Stored as a new event.
    Stored(PendingEvent),
    /// A redelivery of a stored callback: dropped.
    Duplicate,
    /// The (timestamp, nonce, signature) was already used: refused.
    Replayed,
}

/// What became of a yunzhenji callback: its [`Admission`], and the state its report moved its
/// job to, if it moved one (a report kept on a job still `sending` moves nothing yet), so that
/// the relay counts the callbacks that fail a delivered or accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YunzhenjiAdmission {
    /// Stored, or dropped as a redelivery.
    pub admission: Admission,
    /// The job's new state, if the report changed it.
    pub moved_to: Option<crate::JobState>,
}

/// A Dialogue callback to admit.
#[derive(Debug, Clone)]
pub struct NewDialogue {
    /// The parsed callback.
    pub callback: HandoffCallback,
    /// Its fields as received.
    pub raw: Map<String, Value>,
    /// Its redelivery key.
    pub dedup_key: String,
    /// When the key expires, in Unix milliseconds.
    pub dedup_expires_ms: i64,
    /// Whether a webhook will push it.
    pub webhook: bool,
}

/// A WeChat callback to admit.
#[derive(Debug, Clone)]
pub struct NewWechat {
    /// The account's name.
    pub account: String,
    /// The parsed message.
    pub message: StandardMessage,
    /// The replay key: account, timestamp, nonce and the signature that authenticated it.
    pub replay_key: String,
    /// The replay key of the plain `signature` an encrypted push also carries: remembered, not
    /// checked, so that the same URL cannot carry a plaintext body (an encrypted retry has the
    /// same plain signature with a new ciphertext, and must stay a redelivery).
    pub plain_replay_key: Option<String>,
    /// When the replay key expires, in Unix milliseconds.
    pub replay_expires_ms: i64,
    /// The SHA-256 (hex) of the request body, which a plain `signature` does not cover.
    pub body_sha256: String,
    /// Its redelivery key.
    pub dedup_key: String,
    /// When the key expires, in Unix milliseconds.
    pub dedup_expires_ms: i64,
    /// Whether a webhook will push it.
    pub webhook: bool,
}

/// A yunzhenji callback (`chatMsg`, `chatMsgSendFail`) to admit.
#[derive(Debug, Clone)]
pub struct NewYunzhenji {
    /// The account's name.
    pub account: String,
    /// The customer or group the event is about: a conversation's webhook pushes keep order.
    pub conversation: String,
    /// The event for the desk, exactly as pushed, but for its `id`, which the store adds as for
    /// every event. Its `kind` names the stored event's kind.
    pub event: Map<String, Value>,
    /// api_send_svrid + event type (or a body hash when the vendor gave no svrid).
    pub dedup_key: String,
    /// When the key expires, in Unix milliseconds.
    pub dedup_expires_ms: i64,
    /// What the callback says about one of our jobs, if it names one.
    pub report: Option<SendReport>,
    /// Whether a webhook will push it.
    pub webhook: bool,
}

impl NewYunzhenji {
    /// The stored event's kind: the event's `kind`, or `other` when it names none.
    pub fn kind(&self) -> String {
        self.event
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or(crate::event::EventKind::Other.as_str())
            .to_owned()
    }
}

/// What a callback reports about one of the relay's jobs (its `api_send_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// The job the callback names.
    pub job_id: i64,
    /// What it says.
    pub kind: ReportKind,
    /// The account's confirmation window, in milliseconds: how long a job that a `chatMsg`
    /// shows taken stays `accepted`.
    pub confirm_window_ms: i64,
}

/// What a callback says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// The vendor took the message (a `chatMsg` echo): an ambiguous job becomes `accepted`.
    Taken,
    /// Sending it failed (`chatMsgSendFail`): the job becomes `failed` with reason
    /// `send_failed`.
    Failed {
        /// The vendor's text, kept as the job's error message.
        message: String,
    },
}

/// The result of a webhook attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The desk answered 2xx.
    Delivered,
    /// To be tried again no earlier than `not_before_ms`.
    Retry {
        /// Earliest next attempt, in Unix milliseconds.
        not_before_ms: i64,
        /// What went wrong.
        error: String,
    },
    /// Attempts ran out.
    Failed {
        /// What went wrong last.
        error: String,
    },
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired dedup keys.
    pub dedup_keys: usize,
    /// Expired replay keys.
    pub replay_keys: usize,
    /// Events older than the retention and no longer waiting for the webhook.
    pub events: usize,
}
