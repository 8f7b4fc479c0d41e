//! What one attempt at a platform call came to: the classes of protocols.md §9.2.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Why a job failed for good, as the desk sees it in `GET /v1/messages/{id}` (`reason`).
///
/// ```
/// use kefu_core::Reason;
/// assert_eq!(Reason::WindowClosed.as_str(), "window_closed");
/// assert_eq!(Reason::parse("quota_exhausted"), Some(Reason::QuotaExhausted));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The user's send window is closed, or the user unfollowed (OA 45015).
    WindowClosed,
    /// The messages allowed per user interaction are used up (OA 45047).
    QuotaExhausted,
    /// The recipient is wrong: an OpenID of another AppID, or a user who does not follow.
    Recipient,
    /// The content was refused: too long, a bad media id, too many articles.
    Content,
    /// The account's configuration is wrong: credentials, permissions, a token that keeps failing.
    Config,
    /// An API quota is used up; sending again later may work.
    Throttled,
    /// The platform blocked the message by policy (OA 70000).
    Policy,
    /// The platform accepted the message and later reported that sending it failed (yunzhenji's
    /// `chatMsgSendFail`).
    SendFailed,
    /// The call's answer was lost and no callback confirmed it within the confirmation window,
    /// so the message most likely never left; the desk decides whether to send it again.
    Unconfirmed,
    /// Anything else; the platform's code is kept beside the reason.
    Unknown,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 10] = [
        Reason::WindowClosed,
        Reason::QuotaExhausted,
        Reason::Recipient,
        Reason::Content,
        Reason::Config,
        Reason::Throttled,
        Reason::Policy,
        Reason::SendFailed,
        Reason::Unconfirmed,
        Reason::Unknown,
    ];

    /// The name the desk sees and the store keeps.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::WindowClosed => "window_closed",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::Recipient => "recipient",
            Reason::Content => "content",
            Reason::Config => "config",
            Reason::Throttled => "throttled",
            Reason::Policy => "policy",
            Reason::SendFailed => "send_failed",
            Reason::Unconfirmed => "unconfirmed",
            Reason::Unknown => "unknown",
        }
    }

    /// The reason named `name`, if any.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an attempt's result (protocols.md §9.2). Providers classify; the relay acts on
/// the class through [`RetryPolicy::decide`](crate::RetryPolicy::decide) alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The platform accepted the call (or, for typing, had nothing to do). For a provider with
    /// a [confirmation window](crate::Provider::confirm_window) the message is then `accepted`,
    /// not yet delivered.
    Success,
    /// The call did not take effect and may be tried again with backoff: the request never left
    /// (connect, DNS, TLS), the platform answered "system busy", or the call is idempotent and
    /// its failure ambiguous.
    Transient,
    /// The platform refused the call's credential before processing it (OA 40001, 40014,
    /// 42001). The provider has already dropped that credential (compare-and-invalidate); the
    /// call may be replayed once, at once, with a fresh one.
    RefreshReplay,
    /// An API quota is used up (OA 45009, 45011). No immediate retry.
    Throttled,
    /// Retrying cannot help.
    Terminal(Reason),
    /// The call may have taken effect, and replaying it could show the user a duplicate. Never
    /// retried on the relay's own initiative. For a provider with a
    /// [confirmation window](crate::Provider::confirm_window) a callback may still resolve it.
    Ambiguous,
}

/// One attempt's result, as a provider reports it.
///
/// `message` is safe to log and to show the desk: providers keep every secret (tokens in paths,
/// queries and bodies) out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// What the relay should make of it.
    pub class: Class,
    /// The platform's code, when it answered with one.
    pub code: Option<i64>,
    /// A description of the result, free of secrets.
    pub message: String,
    /// The platform's request id (`rid`), for support tickets.
    pub rid: Option<String>,
    /// The call may have taken effect although its class allows another attempt (an idempotent
    /// call whose answer was lost): if no later attempt succeeds, the outcome is reported
    /// ambiguous rather than failed.
    pub maybe_applied: bool,
}

impl Attempt {
    /// A success without a code or a rid.
    ///
    /// ```
    /// use kefu_core::{Attempt, Class};
    /// assert_eq!(Attempt::success().class, Class::Success);
    /// ```
    pub fn success() -> Attempt {
        Attempt::new(Class::Success, None, "ok")
    }

    /// An attempt of class `class`, with the platform's `code` and a description.
    pub fn new(class: Class, code: Option<i64>, message: impl Into<String>) -> Attempt {
        Attempt {
            class,
            code,
            message: message.into(),
            rid: None,
            maybe_applied: false,
        }
    }

    /// Marks the call as one that may have taken effect (see [`Attempt::maybe_applied`]).
    pub fn with_maybe_applied(mut self, maybe_applied: bool) -> Attempt {
        self.maybe_applied = maybe_applied;
        self
    }

    /// Sets the platform's request id.
    pub fn with_rid(mut self, rid: Option<String>) -> Attempt {
        self.rid = rid;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_by_name_and_by_serde() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
        assert_eq!(Reason::parse("nope"), None);
    }
}
