//! [`WechatProvider`]: one `[wechat.<name>]` account's `custom/send` and typing (protocols.md
//! §5) behind [`kefu_core::Provider`].

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use kefu_core::{
    Attempt, BoxFuture, Class, ComposeRequest, Composed, Invalid, Job, Provider, Reason, TokenStore,
};
use kefu_payload::cgibin::{
    AccountKind, Call, DEFAULT_TEXT_BUDGET, classify, read_desk_message, typing_body,
};

use super::counters::{Counters, CountersSnapshot};
use super::redact::{REDACTED, redact};
use super::token::{AccessToken, TokenConfig, TokenManager};
use crate::post::causes;
use crate::transport::{HttpClient, exchange, http_client};

/// The platform's API host.
pub const DEFAULT_API_BASE_URL: &str = "https://api.weixin.qq.com";

/// The `custom/send` path (not the `business/send` alias, which answers 40101).
pub const SEND_PATH: &str = "/cgi-bin/message/custom/send";

/// The typing path of an Official Account.
pub const OA_TYPING_PATH: &str = "/cgi-bin/message/custom/typing";

/// The typing path of a Mini Program by default: the current doc's; an older page used
/// [`OA_TYPING_PATH`], hence configurable (protocols.md §5.2, §11).
pub const DEFAULT_MP_TYPING_PATH: &str = "/cgi-bin/message/custom/business/typing";

/// The `stable_token` path.
pub const STABLE_TOKEN_PATH: &str = "/cgi-bin/stable_token";

/// The operation of a stored message job.
pub const OPERATION_SEND: &str = "custom/send";

/// The operation of a stored typing job.
pub const OPERATION_TYPING: &str = "typing";

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The smallest text budget: one character of 4 bytes.
const MIN_TEXT_BUDGET: usize = 4;

/// What is wrong with an account's settings. Never shows the AppSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The account name is empty.
    EmptyName,
    /// The AppID is empty or holds a character other than ASCII letters, digits, `-` and `_`.
    Appid,
    /// The AppSecret is empty.
    EmptySecret,
    /// The API base URL cannot be used.
    BaseUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The typing path cannot be used.
    TypingPath,
    /// The text budget is below 4 bytes.
    TextBudget,
    /// A timeout is zero.
    ZeroTimeout {
        /// Which one.
        which: &'static str,
    },
    /// The TLS configuration could not be built.
    Tls,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::EmptyName => f.write_str("the account name is empty"),
            BuildError::Appid => f.write_str(
                "appid must be the account's AppID (wx…): ASCII letters, digits, '-' and '_'",
            ),
            BuildError::EmptySecret => f.write_str(
                "secret (the AppSecret) is empty; copy it from the console's development settings",
            ),
            BuildError::BaseUrl { reason } => write!(f, "api_base_url {reason}"),
            BuildError::TypingPath => f.write_str(
                "typing_path must be an absolute path such as /cgi-bin/message/custom/business/typing, without query or fragment",
            ),
            BuildError::TextBudget => write!(
                f,
                "the text budget must be at least {MIN_TEXT_BUDGET} bytes (one character)"
            ),
            BuildError::ZeroTimeout { which } => write!(f, "the {which} timeout must be non-zero"),
            BuildError::Tls => f.write_str("the TLS configuration could not be built"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Configures a [`WechatProvider`]; made by [`WechatProvider::builder`]. `Debug` hides the
/// AppSecret.
#[derive(Clone)]
pub struct WechatProviderBuilder {
    name: String,
    kind: AccountKind,
    appid: String,
    secret: String,
    api_base_url: String,
    typing_path: Option<String>,
    text_budget: usize,
    store: Option<Arc<dyn TokenStore>>,
    http: Option<HttpClient>,
    connect_timeout: Duration,
    request_timeout: Duration,
    fetch_timeout: Duration,
    max_response_bytes: usize,
}

impl fmt::Debug for WechatProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatProviderBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("typing_path", &self.typing_path)
            .field("text_budget", &self.text_budget)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

impl WechatProviderBuilder {
    /// The API host: [`DEFAULT_API_BASE_URL`] unless set; a sandbox's `http://127.0.0.1:<port>`
    /// in tests. A trailing `/` is ignored.
    pub fn api_base_url(mut self, url: impl Into<String>) -> Self {
        self.api_base_url = url.into();
        self
    }

    /// The typing path: [`OA_TYPING_PATH`] for an Official Account and
    /// [`DEFAULT_MP_TYPING_PATH`] for a Mini Program unless set.
    pub fn typing_path(mut self, path: impl Into<String>) -> Self {
        self.typing_path = Some(path.into());
        self
    }

    /// The byte budget above which text is split into several messages. Default 2,000.
    pub fn text_budget_bytes(mut self, budget: usize) -> Self {
        self.text_budget = budget;
        self
    }

    /// Where tokens are kept across restarts (and shared by a fleet). Without one, tokens live
    /// in memory only.
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A pooled client to share with other providers. Without one, the provider builds its own
    /// with the connect timeout.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Bounds DNS, TCP connect and TLS of a call of its own client. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds a whole `custom/send` or typing call. Default 10 s. A send that times out is
    /// ambiguous and never resent.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bounds a whole `stable_token` call, so that a hung fetch cannot hold sends. Default 5 s.
    pub fn token_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest answer accepted, in bytes. Default 64 KiB.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Checks the settings and builds the provider. No connection is made here.
    pub fn build(self) -> Result<WechatProvider, BuildError> {
        if self.name.is_empty() {
            return Err(BuildError::EmptyName);
        }
        if self.appid.is_empty()
            || !self
                .appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(BuildError::Appid);
        }
        if self.secret.is_empty() {
            return Err(BuildError::EmptySecret);
        }
        if self.text_budget < MIN_TEXT_BUDGET {
            return Err(BuildError::TextBudget);
        }
        for (which, timeout) in [
            ("connect", self.connect_timeout),
            ("request", self.request_timeout),
            ("token fetch", self.fetch_timeout),
        ] {
            if timeout.is_zero() {
                return Err(BuildError::ZeroTimeout { which });
            }
        }
        let base = crate::client::validate_base_url(&self.api_base_url).map_err(|e| {
            match e.config_error() {
                Some(crate::ConfigError::BaseUrl { reason }) => BuildError::BaseUrl { reason },
                _ => BuildError::BaseUrl {
                    reason: "is not a valid URL",
                },
            }
        })?;
        let typing_path = self.typing_path.unwrap_or_else(|| {
            match self.kind {
                AccountKind::OfficialAccount => OA_TYPING_PATH,
                AccountKind::MiniProgram => DEFAULT_MP_TYPING_PATH,
            }
            .to_owned()
        });
        if !typing_path.starts_with('/')
            || typing_path.contains(['?', '#'])
            || typing_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(BuildError::TypingPath);
        }
        let stable_token = format!("{base}{STABLE_TOKEN_PATH}")
            .parse::<Uri>()
            .map_err(|_| BuildError::BaseUrl {
                reason: "does not form a valid URL with the paths",
            })?;
        let http = match self.http {
            Some(http) => http,
            None => http_client(self.connect_timeout, DEFAULT_POOL_IDLE_TIMEOUT)
                .map_err(|_| BuildError::Tls)?,
        };
        let counters = Arc::new(Counters::default());
        let tokens = TokenManager::new(TokenConfig {
            account: self.name.clone(),
            appid: self.appid,
            secret: self.secret,
            url: stable_token,
            redacted_url: format!("{base}{STABLE_TOKEN_PATH}"),
            http: http.clone(),
            store: self.store,
            fetch_timeout: self.fetch_timeout,
            max_response_bytes: self.max_response_bytes,
            counters: counters.clone(),
        });
        Ok(WechatProvider {
            name: self.name,
            kind: self.kind,
            send_url: format!("{base}{SEND_PATH}"),
            typing_url: format!("{base}{typing_path}"),
            text_budget: self.text_budget,
            http,
            tokens: Arc::new(tokens),
            request_timeout: self.request_timeout,
            max_response_bytes: self.max_response_bytes,
            counters,
        })
    }
}

/// One Official Account or Mini Program account's customer-service messages (protocols.md §5):
/// `custom/send` for every msgtype its kind carries, and typing, with access tokens from a
/// [`TokenManager`].
///
/// * [`compose`](Provider::compose) reads the desk's `{"openid","msg","kf_account"?}` into one
///   `custom/send` job per message (text over the budget becomes several), refusing what the
///   platform would refuse with the field's path.
/// * [`send`](Provider::send) makes one attempt and classifies it (§5.4). A send whose request
///   may have been written is ambiguous and never resent; a typing call is idempotent, so its
///   ambiguous failures are transient. On a rejected token (40001, 40014, 42001) the attempt
///   has already compare-and-invalidated it and fetched a fresh one, so that the relay's one
///   `ReplayNow` uses it; a rejected token fetched back unchanged ends `config`.
/// * `access_token` never appears in an attempt's message or a log line.
pub struct WechatProvider {
    name: String,
    kind: AccountKind,
    send_url: String,
    typing_url: String,
    text_budget: usize,
    http: HttpClient,
    tokens: Arc<TokenManager>,
    request_timeout: Duration,
    max_response_bytes: usize,
    counters: Arc<Counters>,
}

impl fmt::Debug for WechatProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("send_url", &self.send_url)
            .field("typing_url", &self.typing_url)
            .field("text_budget", &self.text_budget)
            .finish_non_exhaustive()
    }
}

impl WechatProvider {
    /// Starts configuring the account `name` (its `[wechat.<name>]` name, the label of its
    /// metrics) of `kind`, with its AppID and AppSecret.
    pub fn builder(
        name: impl Into<String>,
        kind: AccountKind,
        appid: impl Into<String>,
        secret: impl Into<String>,
    ) -> WechatProviderBuilder {
        WechatProviderBuilder {
            name: name.into(),
            kind,
            appid: appid.into(),
            secret: secret.into(),
            api_base_url: DEFAULT_API_BASE_URL.to_owned(),
            typing_path: None,
            text_budget: DEFAULT_TEXT_BUDGET,
            store: None,
            http: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The account's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's kind.
    pub fn account_kind(&self) -> AccountKind {
        self.kind
    }

    /// The account's token manager, for the operator's forced refresh.
    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    /// The account's counters, to export as metrics labelled by [`name`](WechatProvider::name).
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// One call of `operation` to `base` with `token`, classified.
    async fn call(
        &self,
        call: Call,
        operation: &str,
        base: &str,
        token: &AccessToken,
        payload: &[u8],
    ) -> Attempt {
        let shown = format!("{base}?access_token={REDACTED}");
        let uri = match format!("{base}?access_token={}", token.expose()).parse::<Uri>() {
            Ok(uri) => uri,
            Err(_) => {
                return Attempt::new(
                    Class::Terminal(Reason::Unknown),
                    None,
                    format!("{operation} ({shown}): the URL could not be formed; not sent"),
                );
            }
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("kefu-client/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::copy_from_slice(payload)));
        let Ok(request) = request else {
            return Attempt::new(
                Class::Terminal(Reason::Unknown),
                None,
                format!("{operation} ({shown}): the request could not be built; not sent"),
            );
        };
        let started = tokio::time::Instant::now();
        let exchanged = tokio::time::timeout(
            self.request_timeout,
            exchange(&self.http, request, self.max_response_bytes),
        )
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let secret = Some(token.expose());
        let attempt = match exchanged {
            Ok(Ok((status, body))) => {
                let attempt = classify(call, status.as_u16(), &body);
                Attempt {
                    message: format!("{operation}: {}", redact(&attempt.message, secret)),
                    ..attempt
                }
            }
            Ok(Err(error)) if error.is_connect() => Attempt::new(
                Class::Transient,
                None,
                format!(
                    "{operation} ({shown}): could not connect (DNS, TCP or TLS){}; not sent",
                    redact(&causes(&error), secret)
                ),
            ),
            Ok(Err(error)) => {
                let what = match error.invalid_response() {
                    Some(reason) => format!("the answer is unreadable: {reason}"),
                    None => format!(
                        "the connection failed after the request was written{}",
                        redact(&causes(&error), secret)
                    ),
                };
                maybe_sent(call, operation, &shown, &what)
            }
            Err(_) => maybe_sent(
                call,
                operation,
                &shown,
                &format!(
                    "no answer within the request timeout of {} ms",
                    self.request_timeout.as_millis()
                ),
            ),
        };
        tracing::debug!(
            account = %self.name,
            operation,
            class = ?attempt.class,
            errcode = attempt.code,
            rid = attempt.rid.as_deref(),
            request_bytes = payload.len(),
            elapsed_ms,
            "wechat call: {}",
            attempt.message
        );
        attempt
    }

    async fn attempt(&self, call: Call, operation: &str, base: &str, payload: &[u8]) -> Attempt {
        let token = match self.tokens.token().await {
            Ok(token) => token,
            // Nothing was sent: the token's failure is the attempt's.
            Err(error) => return error.into_attempt(),
        };
        let attempt = self.call(call, operation, base, &token, payload).await;
        match attempt.class {
            Class::RefreshReplay => match self.tokens.refresh_after_rejection(&token).await {
                Ok(_) => Attempt {
                    message: format!("{}; a fresh token is ready for the replay", attempt.message),
                    ..attempt
                },
                // The platform refused the call before processing it, so the token's failure
                // (config, throttled, transient) is the call's.
                Err(error) => Attempt {
                    class: error.class(),
                    message: format!("{}; then {error}", attempt.message),
                    ..attempt
                },
            },
            Class::Terminal(Reason::Config) => {
                self.counters.config_failure();
                attempt
            }
            _ => attempt,
        }
    }
}

/// The attempt of a call whose request may have reached the platform: ambiguous for a send,
/// which is never resent; transient for typing, which is idempotent.
fn maybe_sent(call: Call, operation: &str, shown: &str, what: &str) -> Attempt {
    let (class, consequence) = match call {
        Call::Typing | Call::Token => (Class::Transient, "typing may be retried"),
        Call::Send => (
            Class::Ambiguous,
            "the message may have been delivered, so it is not resent",
        ),
    };
    Attempt::new(
        class,
        None,
        format!("{operation} ({shown}): {what}; {consequence}"),
    )
}

impl Provider for WechatProvider {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn compose(&self, request: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
        let sends = read_desk_message(self.kind, request.body, self.text_budget)?;
        Ok(sends
            .into_iter()
            .map(|send| Composed {
                payload: send.to_json(),
                recipient: send.touser,
                operation: OPERATION_SEND.to_owned(),
            })
            .collect())
    }

    fn typing(&self, recipient: &str, on: bool) -> Result<Composed, Invalid> {
        let typing = typing_body(recipient, on)?;
        Ok(Composed {
            payload: typing.to_json(),
            recipient: typing.touser,
            operation: OPERATION_TYPING.to_owned(),
        })
    }

    fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let (call, base) = match job.operation.as_str() {
                OPERATION_SEND => (Call::Send, &self.send_url),
                OPERATION_TYPING => (Call::Typing, &self.typing_url),
                other => {
                    return Attempt::new(
                        Class::Terminal(Reason::Unknown),
                        None,
                        format!(
                            "{other:?} is not an operation of {} account ({OPERATION_SEND}, {OPERATION_TYPING}); not sent",
                            self.kind.with_article()
                        ),
                    );
                }
            };
            self.attempt(call, &job.operation, base, &job.payload).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPID: &str = "wx00000000000000aa";
    const SECRET: &str = "AppSecretAbCdEf0123456789abcdef";

    fn builder(kind: AccountKind) -> WechatProviderBuilder {
        WechatProvider::builder("shop", kind, APPID, SECRET)
    }

    #[tokio::test]
    async fn settings_are_checked_and_the_secret_never_shown() {
        let oa = AccountKind::OfficialAccount;
        let cases: Vec<(WechatProviderBuilder, BuildError)> = vec![
            (
                WechatProvider::builder("", oa, APPID, SECRET),
                BuildError::EmptyName,
            ),
            (
                WechatProvider::builder("shop", oa, "", SECRET),
                BuildError::Appid,
            ),
            (
                WechatProvider::builder("shop", oa, "wx 1", SECRET),
                BuildError::Appid,
            ),
            (
                WechatProvider::builder("shop", oa, APPID, ""),
                BuildError::EmptySecret,
            ),
            (
                builder(oa).api_base_url("api.weixin.qq.com"),
                BuildError::BaseUrl {
                    reason: "must start with https:// (or http:// for a local sandbox)",
                },
            ),
            (
                builder(oa).api_base_url("https://x/?q=1"),
                BuildError::BaseUrl {
                    reason: "must not carry a query or a fragment",
                },
            ),
            (builder(oa).typing_path("typing"), BuildError::TypingPath),
            (builder(oa).typing_path("/t?x=1"), BuildError::TypingPath),
            (builder(oa).text_budget_bytes(3), BuildError::TextBudget),
            (
                builder(oa).token_fetch_timeout(Duration::ZERO),
                BuildError::ZeroTimeout {
                    which: "token fetch",
                },
            ),
        ];
        for (builder, want) in cases {
            assert!(!format!("{builder:?}").contains(SECRET));
            let err = builder.build().unwrap_err();
            assert_eq!(err, want);
            assert!(!err.to_string().contains(SECRET));
        }
    }

    #[tokio::test]
    async fn urls_and_paths_by_kind() {
        let oa = builder(AccountKind::OfficialAccount)
            .api_base_url("http://127.0.0.1:9/")
            .build()
            .unwrap();
        assert_eq!(
            oa.send_url,
            "http://127.0.0.1:9/cgi-bin/message/custom/send"
        );
        assert_eq!(
            oa.typing_url,
            "http://127.0.0.1:9/cgi-bin/message/custom/typing"
        );
        assert_eq!(oa.kind(), "official_account");
        let mp = builder(AccountKind::MiniProgram).build().unwrap();
        assert_eq!(
            mp.typing_url,
            "https://api.weixin.qq.com/cgi-bin/message/custom/business/typing"
        );
        assert_eq!(mp.kind(), "mini_program");
        let debug = format!("{mp:?} {:?}", mp.tokens());
        assert!(!debug.contains(SECRET), "{debug}");
    }

    #[tokio::test]
    async fn an_unknown_operation_is_not_sent() {
        let provider = builder(AccountKind::OfficialAccount)
            .api_base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let job = Job {
            id: 1,
            account: "shop".into(),
            recipient: "oUSER".into(),
            operation: "sendmsg".into(),
            payload: Vec::new(),
        };
        let attempt = provider.send(&job).await;
        assert_eq!(attempt.class, Class::Terminal(Reason::Unknown));
        assert!(attempt.message.contains("not sent"), "{}", attempt.message);
        assert_eq!(provider.counters().token_fetches, 0);
    }
}
