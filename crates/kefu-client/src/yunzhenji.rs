//! yunzhenji (云真机) `wechat/sendMessage` (protocols.md §7): [`YunzhenjiProvider`] implements
//! [`kefu_core::Provider`] for one `[yunzhenji.<name>]` account, sending from the WeCom account
//! (`wxid`) the vendor drives, up to 5 messages per call.
//!
//! ```no_run
//! use kefu_client::yunzhenji::YunzhenjiProvider;
//! use kefu_core::{ComposeRequest, Job, Provider};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = YunzhenjiProvider::builder("shop", "APPID", "ACCESS_TOKEN", "wxid_account").build()?;
//! let body = serde_json::json!({"target_wxid": "wxid_customer", "msg": "您好"});
//! let composed = provider.compose(ComposeRequest { body: body.as_object().unwrap(), session_appid: None })?;
//! let jobs: Vec<Job> = composed
//!     .into_iter()
//!     .enumerate()
//!     .map(|(id, c)| Job { id: id as i64 + 1, account: "shop".into(), recipient: c.recipient, operation: c.operation, payload: c.payload })
//!     .collect();
//! for attempt in provider.send_batch(&jobs).await {
//!     // Success means accepted: the callbacks confirm delivery within confirm_window().
//!     println!("{:?} {}", attempt.class, attempt.message);
//! }
//! # Ok(()) }
//! ```

use core::fmt;
use std::time::Duration;

use kefu_core::{
    Attempt, BoxFuture, Class, ComposeRequest, Composed, Invalid, Job, Provider, Reason,
};
use kefu_payload::yunzhenji::{
    Account, MAX_BATCH, classify_batch, read_desk_message, send_body, stored_message,
};

use crate::post::{Endpoint, PostSettings, Posted, Poster};
use crate::settings::{SettingsError, token_like};
use crate::wechat::redact::redact;

/// The vendor's host.
pub const DEFAULT_BASE_URL: &str = "https://oapi-yzj.miaokol.com";

/// The send path.
pub const SEND_PATH: &str = "/wechat/sendMessage";

/// The operation of a stored message job.
pub const OPERATION_SEND: &str = "sendMessage";

/// How long after acceptance a `chatMsgSendFail` may still come, by default (protocols.md
/// §7.2: undocumented, so configurable).
pub const DEFAULT_CONFIRM_WINDOW: Duration = Duration::from_secs(300);

/// Configures a [`YunzhenjiProvider`]; made by [`YunzhenjiProvider::builder`]. `Debug` hides
/// the access token.
#[derive(Clone)]
pub struct YunzhenjiProviderBuilder {
    name: String,
    app_id: String,
    access_token: String,
    wxid: String,
    base_url: String,
    confirm_window: Duration,
    post: PostSettings,
}

impl fmt::Debug for YunzhenjiProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YunzhenjiProviderBuilder")
            .field("name", &self.name)
            .field("app_id", &self.app_id)
            .field("access_token", &"<redacted>")
            .field("wxid", &self.wxid)
            .field("base_url", &self.base_url)
            .field("confirm_window", &self.confirm_window)
            .field("post", &self.post)
            .finish_non_exhaustive()
    }
}

impl YunzhenjiProviderBuilder {
    /// The vendor's host: [`DEFAULT_BASE_URL`] unless set; a sandbox's
    /// `http://127.0.0.1:<port>` in tests. A trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// How long an accepted message waits for a `chatMsgSendFail` before it counts as
    /// delivered, and an ambiguous one for a `chatMsg` before it counts as unconfirmed.
    /// Default [`DEFAULT_CONFIRM_WINDOW`].
    pub fn confirm_window(mut self, window: Duration) -> Self {
        self.confirm_window = window;
        self
    }

    crate::post::post_setters!();

    /// Checks the settings and builds the provider. No connection is made here.
    pub fn build(self) -> Result<YunzhenjiProvider, SettingsError> {
        if self.name.trim().is_empty() {
            return Err(SettingsError::Empty { field: "name" });
        }
        token_like("app_id", &self.app_id)?;
        token_like("access_token", &self.access_token)?;
        token_like("wxid", &self.wxid)?;
        if self.confirm_window.is_zero() {
            return Err(SettingsError::Zero {
                which: "confirm window",
            });
        }
        let endpoint = Endpoint::new(&self.base_url, SEND_PATH)?;
        let poster = self.post.build()?;
        Ok(YunzhenjiProvider {
            name: self.name,
            app_id: self.app_id,
            access_token: self.access_token,
            wxid: self.wxid,
            endpoint,
            confirm_window: self.confirm_window,
            poster,
        })
    }
}

/// One yunzhenji account (protocols.md §7):
///
/// * [`compose`](Provider::compose) reads the desk's `{"target_wxid","msg"}` into one job per
///   message (`multimsg` gives several), refusing with the field's path what the vendor
///   documents no way to send;
/// * [`send_batch`](Provider::send_batch) posts up to [`max_batch`](Provider::max_batch) jobs
///   of one target in one call, each with `api_send_id` = its job id, and answers one attempt
///   per job: success when accepted (delivery is then confirmed by the absence of a
///   `chatMsgSendFail` within [`confirm_window`](Provider::confirm_window)); terminal
///   (unknown) when left out of `data` or when the call was refused (`errcode` ≠ 0, with the
///   vendor's `message`); transient when nothing was sent; ambiguous when the request may
///   have arrived (a timeout after writing, a reset, a 5xx, an unreadable answer), to be
///   settled by a `chatMsg` echoing its `api_send_id`, never by a blind resend;
/// * the `access_token` travels in the body, and never appears in an attempt's message or a
///   log line.
pub struct YunzhenjiProvider {
    name: String,
    app_id: String,
    access_token: String,
    wxid: String,
    endpoint: Endpoint,
    confirm_window: Duration,
    poster: Poster,
}

impl fmt::Debug for YunzhenjiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YunzhenjiProvider")
            .field("name", &self.name)
            .field("app_id", &self.app_id)
            .field("wxid", &self.wxid)
            .field("url", &self.endpoint.shown)
            .field("confirm_window", &self.confirm_window)
            .finish_non_exhaustive()
    }
}

impl YunzhenjiProvider {
    /// Starts configuring the account `name` (its `[yunzhenji.<name>]` name) with the vendor's
    /// APP ID and access token and the sending WeCom account's wxid.
    pub fn builder(
        name: impl Into<String>,
        app_id: impl Into<String>,
        access_token: impl Into<String>,
        wxid: impl Into<String>,
    ) -> YunzhenjiProviderBuilder {
        YunzhenjiProviderBuilder {
            name: name.into(),
            app_id: app_id.into(),
            access_token: access_token.into(),
            wxid: wxid.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            confirm_window: DEFAULT_CONFIRM_WINDOW,
            post: PostSettings::default(),
        }
    }

    /// The account's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sending WeCom account's wxid, which the callbacks name as `wxid` and as the sender
    /// of our own messages.
    pub fn wxid(&self) -> &str {
        &self.wxid
    }

    /// `text` with the access token replaced, wherever an error or the vendor echoed it.
    fn redact(&self, text: &str) -> String {
        redact(text, Some(&self.access_token))
    }

    async fn batch(&self, jobs: &[Job]) -> Vec<Attempt> {
        let refuse_all = |why: String| {
            vec![Attempt::new(Class::Terminal(Reason::Unknown), None, why); jobs.len()]
        };
        let Some(first) = jobs.first() else {
            return Vec::new();
        };
        if jobs.len() > MAX_BATCH {
            return refuse_all(format!(
                "{} jobs in one call; yunzhenji takes at most {MAX_BATCH}; not sent",
                jobs.len()
            ));
        }
        if jobs.iter().any(|job| job.recipient != first.recipient) {
            return refuse_all("the jobs of one call must share a target_wxid; not sent".into());
        }
        let mut attempts: Vec<Option<Attempt>> = vec![None; jobs.len()];
        let mut sent = Vec::new();
        let mut messages = Vec::new();
        for (at, job) in jobs.iter().enumerate() {
            let read = if job.operation == OPERATION_SEND {
                stored_message(&job.payload).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "{:?} is not an operation of a yunzhenji account ({OPERATION_SEND})",
                    job.operation
                ))
            };
            match read {
                Ok(message) => {
                    sent.push((at, job.id.to_string()));
                    messages.push((job.id, message));
                }
                Err(why) => {
                    attempts[at] = Some(Attempt::new(
                        Class::Terminal(Reason::Unknown),
                        None,
                        format!("{why}; not sent"),
                    ));
                }
            }
        }
        if !messages.is_empty() {
            let account = Account {
                app_id: &self.app_id,
                access_token: &self.access_token,
                wxid: &self.wxid,
            };
            let body = send_body(account, &first.recipient, messages);
            let ids: Vec<String> = sent.iter().map(|(_, id)| id.clone()).collect();
            for ((at, _), attempt) in sent.iter().zip(self.post(body, &ids).await) {
                if let Some(slot) = attempts.get_mut(*at) {
                    *slot = Some(attempt);
                }
            }
        }
        attempts
            .into_iter()
            .map(|attempt| {
                attempt.unwrap_or_else(|| {
                    Attempt::new(Class::Ambiguous, None, "no outcome was recorded")
                })
            })
            .collect()
    }

    /// One call for the messages `ids`, one attempt each.
    async fn post(&self, body: Vec<u8>, ids: &[String]) -> Vec<Attempt> {
        let request_bytes = body.len();
        let started = tokio::time::Instant::now();
        let posted = self.poster.post(&self.endpoint, None, body).await;
        let shown = &self.endpoint.shown;
        let attempts = match posted {
            Posted::Answer { status, body } => classify_batch(status, &body, ids)
                .into_iter()
                .map(|a| Attempt {
                    message: format!("{OPERATION_SEND}: {}", self.redact(&a.message)),
                    ..a
                })
                .collect(),
            Posted::NotSent(why) => vec![
                Attempt::new(
                    Class::Transient,
                    None,
                    format!(
                        "{OPERATION_SEND} ({shown}): {}; not sent",
                        self.redact(&why)
                    ),
                );
                ids.len()
            ],
            Posted::MaybeSent(why) => vec![
                Attempt::new(
                    Class::Ambiguous,
                    None,
                    format!(
                        "{OPERATION_SEND} ({shown}): {}; the messages may have been taken, so they are not resent",
                        self.redact(&why)
                    ),
                );
                ids.len()
            ],
        };
        for (id, attempt) in ids.iter().zip(&attempts) {
            tracing::debug!(
                account = %self.name,
                operation = OPERATION_SEND,
                job = %id,
                class = ?attempt.class,
                errcode = attempt.code,
                batch = ids.len(),
                request_bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "yunzhenji call: {}",
                attempt.message
            );
        }
        attempts
    }
}

impl Provider for YunzhenjiProvider {
    fn kind(&self) -> &'static str {
        "yunzhenji"
    }

    fn recipient_field(&self) -> &'static str {
        "target_wxid"
    }

    fn compose(&self, request: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
        let read = read_desk_message(request.body)?;
        Ok(read
            .messages
            .iter()
            .map(|message| Composed {
                recipient: read.target_wxid.clone(),
                operation: OPERATION_SEND.to_owned(),
                payload: message.to_json(),
            })
            .collect())
    }

    fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            self.batch(std::slice::from_ref(job))
                .await
                .pop()
                .unwrap_or_else(|| Attempt::new(Class::Ambiguous, None, "no outcome was recorded"))
        })
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn send_batch<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Vec<Attempt>> {
        Box::pin(self.batch(jobs))
    }

    fn confirm_window(&self) -> Option<Duration> {
        Some(self.confirm_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "YzjAccessTokenSecret123";

    #[tokio::test]
    async fn settings_are_checked_and_the_token_never_shown() {
        let b = || YunzhenjiProvider::builder("shop", "APP", TOKEN, "wxid_a");
        let cases = [
            (
                YunzhenjiProvider::builder("", "APP", TOKEN, "w"),
                SettingsError::Empty { field: "name" },
            ),
            (
                YunzhenjiProvider::builder("s", "", TOKEN, "w"),
                SettingsError::Empty { field: "app_id" },
            ),
            (
                YunzhenjiProvider::builder("s", "A", " ", "w"),
                SettingsError::Empty {
                    field: "access_token",
                },
            ),
            (
                YunzhenjiProvider::builder("s", "A", "a b", "w"),
                SettingsError::Invalid {
                    field: "access_token",
                },
            ),
            (
                YunzhenjiProvider::builder("s", "A", TOKEN, ""),
                SettingsError::Empty { field: "wxid" },
            ),
            (
                b().base_url("oapi-yzj.miaokol.com"),
                SettingsError::BaseUrl {
                    reason: "must start with https:// (or http:// for a local sandbox)",
                },
            ),
            (
                b().confirm_window(Duration::ZERO),
                SettingsError::Zero {
                    which: "confirm window",
                },
            ),
        ];
        for (builder, want) in cases {
            assert!(!format!("{builder:?}").contains(TOKEN));
            let err = builder.build().unwrap_err();
            assert_eq!(err, want);
            assert!(!err.to_string().contains(TOKEN));
        }
        let provider = b().base_url("http://127.0.0.1:9/").build().unwrap();
        assert!(!format!("{provider:?}").contains(TOKEN));
        assert_eq!(
            provider.endpoint.shown,
            "http://127.0.0.1:9/wechat/sendMessage"
        );
        assert_eq!(
            (
                provider.kind(),
                provider.recipient_field(),
                provider.max_batch()
            ),
            ("yunzhenji", "target_wxid", 5)
        );
        assert_eq!(provider.confirm_window(), Some(DEFAULT_CONFIRM_WINDOW));
        assert_eq!(
            b().build().unwrap().endpoint.shown,
            "https://oapi-yzj.miaokol.com/wechat/sendMessage"
        );
    }

    #[tokio::test]
    async fn jobs_that_cannot_go_are_not_sent() {
        let provider = YunzhenjiProvider::builder("shop", "APP", TOKEN, "wxid_a")
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let job = |id, recipient: &str| Job {
            id,
            account: "shop".into(),
            recipient: recipient.into(),
            operation: OPERATION_SEND.into(),
            payload: br#"{"msg_type":"text","content":{}}"#.to_vec(),
        };
        let six: Vec<Job> = (1..=6).map(|i| job(i, "c")).collect();
        for attempt in provider.send_batch(&six).await {
            assert_eq!(attempt.class, Class::Terminal(Reason::Unknown));
            assert!(attempt.message.contains("not sent"));
        }
        let mixed = [job(1, "c"), job(2, "d")];
        assert!(
            provider
                .send_batch(&mixed)
                .await
                .iter()
                .all(|a| a.message.contains("not sent"))
        );
        let mut bad = job(1, "c");
        bad.operation = "custom/send".into();
        let attempt = provider.send(&bad).await;
        assert!(attempt.message.contains("not sent"), "{}", attempt.message);
        assert!(provider.send_batch(&[]).await.is_empty());
    }
}
