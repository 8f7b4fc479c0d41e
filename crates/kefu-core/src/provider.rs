//! The send seam: one customer-service API behind one trait.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use serde_json::{Map, Value};

use crate::attempt::Attempt;

/// A boxed future, so that [`Provider`] and the storage traits can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stored job, as the relay hands it to its account's provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id in the store (also the desk's message id).
    pub id: i64,
    /// The configured account the job goes through (`dialogue`, or an `[wechat.<name>]` name).
    pub account: String,
    /// Who receives it: an OpenID, a wxid, … Jobs of one (account, recipient) are sent in the
    /// order they were stored.
    pub recipient: String,
    /// The provider's name for the call, such as `sendmsg` or `custom/send`.
    pub operation: String,
    /// The body exactly as it goes on the wire, before any envelope (XML for the Dialogue
    /// platform, JSON for `cgi-bin`).
    pub payload: Vec<u8>,
}

/// A job a provider composed from a desk's request, to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// Who receives it.
    pub recipient: String,
    /// The provider's name for the call.
    pub operation: String,
    /// The body exactly as it goes on the wire.
    pub payload: Vec<u8>,
}

/// A desk's message, as the relay hands it to [`Provider::compose`].
#[derive(Debug, Clone, Copy)]
pub struct ComposeRequest<'a> {
    /// The desk's JSON object (without `account`, which chose the provider).
    pub body: &'a Map<String, Value>,
    /// The AppID that the recipient's own session came from, if the relay knows one, so that a
    /// bot bound to several accounts answers on the right one.
    pub session_appid: Option<&'a str>,
}

/// A desk's request that a provider refuses before anything is stored: a 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The offending field, as a path into the desk's JSON (`msg.news.articles`).
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
    /// The code the platform would have answered, when it has one for this mistake.
    pub code: Option<i64>,
}

impl Invalid {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
            code: None,
        }
    }

    /// Sets the code the platform would have answered.
    pub fn with_code(mut self, code: Option<i64>) -> Invalid {
        self.code = code;
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// One customer-service API, like lettre's `Transport`: the relay stores what
/// [`compose`](Provider::compose) returns and later hands each stored job to
/// [`send`](Provider::send). Adding a provider is one module implementing this trait and one
/// registration in the relay.
///
/// A provider never retries on its own, except what happens inside one call (a credential
/// fetch); the relay drives attempts with [`RetryPolicy::decide`](crate::RetryPolicy::decide).
pub trait Provider: Send + Sync + 'static {
    /// The kind of account, as shown in errors and metrics: `dialogue`, `official_account`, …
    fn kind(&self) -> &'static str;

    /// The desk's field that names the recipient (`openid` unless the provider says otherwise).
    fn recipient_field(&self) -> &'static str {
        "openid"
    }

    /// Turns a desk's message into the jobs to store, in order, or refuses it before anything is
    /// stored.
    fn compose(&self, request: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid>;

    /// The job that shows (`on`) or cancels a typing indicator for `recipient`, if the API has
    /// one.
    fn typing(&self, recipient: &str, on: bool) -> Result<Composed, Invalid> {
        let _ = (recipient, on);
        Err(Invalid::new(
            "typing",
            format!("a {} account has no typing indicator", self.kind()),
        ))
    }

    /// Makes one attempt at `job` and classifies its result. The future must not panic, and the
    /// attempt's message must not contain a secret.
    fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt>;

    /// How many queued jobs of one (account, recipient) one call may carry: 1 unless the API
    /// takes several messages per request (yunzhenji takes 5).
    fn max_batch(&self) -> usize {
        1
    }

    /// Makes one attempt at `jobs` (1 ..= [`max_batch`](Provider::max_batch) jobs of one
    /// account and recipient, in their order) in one call, and classifies the result of each:
    /// one [`Attempt`] per job, in the same order. The relay decides each job on its own
    /// attempt, so that a partial acceptance fails only the jobs left out. The default makes
    /// one [`send`](Provider::send) per job, which is right for `max_batch() == 1`.
    fn send_batch<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Vec<Attempt>> {
        Box::pin(async move {
            let mut attempts = Vec::with_capacity(jobs.len());
            for job in jobs {
                attempts.push(self.send(job).await);
            }
            attempts
        })
    }

    /// How long after a [`Success`](crate::Class::Success) a callback may still report that the
    /// message failed, or after an [`Ambiguous`](crate::Class::Ambiguous) attempt a callback may
    /// still show that the message was taken. `None` (the default) when the platform's answer is
    /// final. With a window, a success leaves the job `accepted` until the window passes
    /// (then `delivered`), and an ambiguous attempt that no callback confirms within the window
    /// ends `failed` with reason [`Unconfirmed`](crate::Reason::Unconfirmed).
    fn confirm_window(&self) -> Option<Duration> {
        None
    }
}
