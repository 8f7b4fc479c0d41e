//! The simulated user: what they do, how it moves their handoff state, and the handoff callback
//! (`POST {"encrypted": …}`) the platform pushes to the connector for it.
//!
//! Each thing a user can do is a [`UserAction`]; [`UserAction::apply`] turns it into the state
//! change and the callback plaintext, and [`Callbacks::push`] delivers it. Ratings and leaving
//! are further variants of the same enum.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kefu_payload::envelope::DialogueCallback;
use kefu_payload::{HandoffCallback, KefuState};
use serde::{Deserialize, Serialize};
use wxbizmsgcrypt::MsgCrypt;

use super::state::UserEntry;

/// The AppID a simulated user is on when neither the request nor anything earlier names one.
pub const DEFAULT_USER_APPID: &str = "wx0000000000000000";

/// How long the platform waits for the connector to answer a callback (protocols.md §9.3: the
/// WeChat-wide 5 s rule).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a callback answer kept in [`CallbackDelivery::Delivered`].
const MAX_CALLBACK_ANSWER: usize = 64 * 1024;

/// The text of a user message that asks for a human, as the platform's handoff skill
/// recognises it (protocols.md §4.6).
const HANDOFF_KEYWORD: &str = "转人工";

/// A message the simulated user types: the body of `POST /sandbox/users/{openid}/say`.
///
/// ```json
/// {"text": "我要转人工", "channel": 0, "appid": "wx0000000000000000"}
/// ```
///
/// `channel` defaults to the user's last channel, then 0; `appid` to the user's last AppID, then
/// [`DEFAULT_USER_APPID`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    /// What the user types. Must not be empty.
    pub text: String,
    /// The channel the user writes on (any number, even an undocumented one such as 8).
    #[serde(default)]
    pub channel: Option<u8>,
    /// The Official Account or Mini Program AppID the user writes to.
    #[serde(default)]
    pub appid: Option<String>,
}

impl Say {
    /// The user types `text`, on their usual channel and AppID.
    pub fn new(text: impl Into<String>) -> Say {
        Say {
            text: text.into(),
            channel: None,
            appid: None,
        }
    }

    /// On this channel.
    #[must_use]
    pub fn channel(mut self, channel: u8) -> Say {
        self.channel = Some(channel);
        self
    }

    /// To this Official Account or Mini Program AppID.
    #[must_use]
    pub fn appid(mut self, appid: impl Into<String>) -> Say {
        self.appid = Some(appid.into());
        self
    }
}

/// What happened to the callback of a user action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallbackDelivery {
    /// The sandbox has no callback URL (`--callback-url`), so nothing was sent. The state change
    /// still happened.
    NotConfigured,
    /// The connector answered; `status` is its HTTP status, whatever it was.
    Delivered {
        /// The HTTP status of the answer.
        status: u16,
        /// The answer body (lossy UTF-8, at most 64 KiB).
        body: String,
        /// How long the exchange took.
        elapsed_ms: u64,
    },
    /// The callback could not be delivered, or no answer came within 5 s.
    Failed {
        /// What went wrong (the URL is never included: its path is a secret).
        error: String,
        /// How long the attempt took.
        elapsed_ms: u64,
    },
}

impl CallbackDelivery {
    /// `true` when the connector answered with a 2xx status.
    pub fn is_success(&self) -> bool {
        matches!(self, CallbackDelivery::Delivered { status, .. } if (200..300).contains(status))
    }
}

/// The answer to a user action: the user's state afterwards, the callback plaintext and what
/// became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SayOutcome {
    /// The user.
    pub openid: String,
    /// The handoff state after the action (and the one the callback carries).
    pub status: KefuState,
    /// The same state as the callback numbers it.
    pub kfstate: u8,
    /// The callback plaintext the platform encrypted.
    pub xml: String,
    /// What became of the callback.
    pub callback: CallbackDelivery,
}

/// Why a user action was refused. Nothing was changed or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SayError {
    /// The openid is empty.
    #[error("openid must not be empty")]
    EmptyOpenid,
    /// The text is empty: a user cannot send an empty message.
    #[error("text must not be empty: a user cannot send an empty message")]
    EmptyText,
    /// A field holds a character XML cannot carry.
    #[error("cannot write the callback: {0}")]
    Payload(#[from] kefu_payload::Error),
    /// The callback could not be encrypted.
    #[error("cannot encrypt the callback: {0}")]
    Encrypt(#[from] wxbizmsgcrypt::Error),
}

impl SayError {
    /// The request field the error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SayError::EmptyOpenid => Some("openid"),
            SayError::EmptyText => Some("text"),
            SayError::Payload(error) => error.field().map(|f| match f {
                "msg" | "content/msg" => "text",
                "userid" => "openid",
                other => other,
            }),
            SayError::Encrypt(_) => None,
        }
    }
}

/// Something the simulated user does. Every action produces one callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserAction {
    /// The user types a message (`from` = 0, no event).
    Say(String),
}

impl UserAction {
    /// Applies the action to the user under the store's lock and returns the callback the
    /// platform sends for it.
    ///
    /// A message containing "转人工" moves a user who is talking to the bot (`asking` or
    /// `complete`) to `needperson` first, as the platform's handoff skill does; the bot is
    /// silent while an agent serves the user, so `personserving` stays.
    pub(crate) fn apply(
        &self,
        user: &mut UserEntry<'_>,
        openid: &str,
        channel: Option<u8>,
        appid: Option<&str>,
        now_secs: i64,
    ) -> HandoffCallback {
        let channel = channel.or(user.channel()).unwrap_or(0);
        let appid = appid
            .or(user.appid())
            .unwrap_or(DEFAULT_USER_APPID)
            .to_owned();
        user.note(&appid, channel);
        let content = match self {
            UserAction::Say(text) => {
                if text.contains(HANDOFF_KEYWORD)
                    && matches!(user.state(), KefuState::Asking | KefuState::Complete)
                {
                    user.set_state(KefuState::NeedPerson);
                }
                text.clone()
            }
        };
        HandoffCallback {
            userid: openid.to_owned(),
            appid,
            content: Some(content),
            event: None,
            from: Some(0),
            kfstate: Some(user.state()),
            channel: Some(channel),
            assessment: Some(0),
            createtime: Some(now_secs),
            ..HandoffCallback::default()
        }
    }
}

/// Delivery of handoff callbacks to the connector. Deliberately not `Debug`: the URL's path is
/// a secret.
pub(crate) struct Callbacks {
    target: Option<Uri>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Callbacks {
    /// Delivery to `target` (an already validated `http://` URL), or nowhere.
    pub(crate) fn new(target: Option<Uri>) -> Callbacks {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(HttpConnector::new());
        Callbacks { target, client }
    }

    /// The callback URL without its path, safe to log.
    pub(crate) fn redacted_target(&self) -> Option<String> {
        self.target.as_ref().map(redact_url)
    }

    /// Encrypts `xml` and posts `{"encrypted": …}` as the platform does.
    pub(crate) async fn push(
        &self,
        crypt: &MsgCrypt,
        xml: &str,
    ) -> Result<CallbackDelivery, SayError> {
        let Some(target) = &self.target else {
            return Ok(CallbackDelivery::NotConfigured);
        };
        let body = DialogueCallback {
            encrypted: crypt.encrypt(xml.as_bytes())?,
        }
        .to_json();
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static("kefu-connector-sandbox"),
        );

        let started = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| chain(&e))?;
            let status = response.status().as_u16();
            let collected = Limited::new(response.into_body(), MAX_CALLBACK_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {}", chain(&*e)))?;
            Ok::<_, String>((status, collected.to_bytes()))
        };
        let outcome = tokio::time::timeout(CALLBACK_TIMEOUT, exchange).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(match outcome {
            Ok(Ok((status, body))) => CallbackDelivery::Delivered {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
                elapsed_ms,
            },
            Ok(Err(error)) => CallbackDelivery::Failed { error, elapsed_ms },
            Err(_) => CallbackDelivery::Failed {
                error: format!(
                    "no answer within {} s; the platform gives up after that",
                    CALLBACK_TIMEOUT.as_secs()
                ),
                elapsed_ms,
            },
        })
    }
}

/// `scheme://authority/…`: a URL without its path and query.
pub(crate) fn redact_url(uri: &Uri) -> String {
    format!(
        "{}://{}/…",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// An error and its sources, joined with ": " (hyper's own message alone says little).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// Checks a callback URL: absolute `http://`, with a host. The message never repeats the URL.
pub(crate) fn parse_callback_url(text: &str) -> Result<Uri, String> {
    const EXPECTED: &str = "give an absolute http:// URL such as http://127.0.0.1:8080/callback/<unguessable> (the sandbox does not speak https)";
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|_| format!("not a URL; {EXPECTED}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(format!("the scheme is not http; {EXPECTED}")),
        None => return Err(format!("the URL is not absolute; {EXPECTED}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("the URL has no host; {EXPECTED}"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::state::Store;
    use super::*;

    fn say(store: &Store, openid: &str, action: &UserAction) -> HandoffCallback {
        store.with_user(openid, |user| {
            action.apply(user, openid, None, None, 1_700_000_000)
        })
    }

    #[test]
    fn a_plain_message_keeps_the_state_and_reports_it() {
        let store = Store::new(10);
        let callback = say(&store, "o", &UserAction::Say("你好".into()));
        assert_eq!(
            callback.to_xml().unwrap(),
            "<xml><userid>o</userid><appid>wx0000000000000000</appid><content><msg>你好</msg></content><event></event><from>0</from><kfstate>0</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>"
        );
        assert_eq!(store.state("o"), KefuState::Asking);
    }

    #[test]
    fn asking_for_a_human_moves_to_needperson_first() {
        let store = Store::new(10);
        let callback = say(&store, "o", &UserAction::Say("我要转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
        assert_eq!(store.state("o"), KefuState::NeedPerson);
        // Later messages carry 3 too.
        let callback = say(&store, "o", &UserAction::Say("在吗".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
        // While an agent serves the user, the skill does not fire.
        store.set_state("o", "wx1", KefuState::PersonServing);
        let callback = say(&store, "o", &UserAction::Say("转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::PersonServing));
        // After the agent finished, it fires again.
        store.set_state("o", "wx1", KefuState::Complete);
        let callback = say(&store, "o", &UserAction::Say("再转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
    }

    #[test]
    fn channel_and_appid_default_to_what_the_user_last_used() {
        let store = Arc::new(Store::new(10));
        store.with_user("o", |user| {
            UserAction::Say("a".into()).apply(user, "o", Some(7), Some("wxA"), 1)
        });
        let callback = say(&store, "o", &UserAction::Say("b".into()));
        assert_eq!(callback.channel, Some(7));
        assert_eq!(callback.appid, "wxA");
        assert_eq!(store.snapshot("o").channel, Some(7));
    }

    #[test]
    fn callback_urls_are_checked_without_echoing_them() {
        assert!(parse_callback_url("http://127.0.0.1:9/cb/secret").is_ok());
        for bad in [
            "https://example.com/cb/secret",
            "/cb/secret",
            "not a url secret",
            "http:///secret",
        ] {
            let err = parse_callback_url(bad).unwrap_err();
            assert!(!err.contains("secret"), "{err}");
            assert!(err.contains("http://"), "{err}");
        }
        let uri: Uri = "http://127.0.0.1:9/cb/secret?x=1".parse().unwrap();
        assert_eq!(redact_url(&uri), "http://127.0.0.1:9/…");
    }

    #[test]
    fn say_requests_are_strict() {
        let say: Say = serde_json::from_str(r#"{"text":"hi","channel":5,"appid":"wx1"}"#).unwrap();
        assert_eq!(say, Say::new("hi").channel(5).appid("wx1"));
        let err = serde_json::from_str::<Say>(r#"{"txt":"hi"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `txt`"), "{err}");
        assert_eq!(SayError::EmptyText.field(), Some("text"));
    }

    #[test]
    fn delivery_outcomes_serialise_with_a_tag() {
        let json = serde_json::to_value(CallbackDelivery::NotConfigured).unwrap();
        assert_eq!(json, serde_json::json!({"outcome": "not_configured"}));
        let delivered = CallbackDelivery::Delivered {
            status: 200,
            body: "{}".into(),
            elapsed_ms: 3,
        };
        assert!(delivered.is_success());
        assert_eq!(
            serde_json::to_value(&delivered).unwrap()["outcome"],
            "delivered"
        );
    }
}
