//! The client, its builder and the transport.

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use kefu_payload::envelope::DialogueRequest;
use kefu_payload::{KefuState, KefuStateChange, KefuStateGet, SendMsg};
use serde_json::{Map, Value};
use wxbizmsgcrypt::MsgCrypt;

use crate::envelope::{Normalized, normalize};
use crate::error::{ConfigError, Error, Kind, Operation};
use crate::transport::{HttpClient, exchange, http_client};
use kefu_core::RetryPolicy;

/// The documented base URL of the Dialogue platform's `/openapi` endpoints.
pub const DEFAULT_BASE_URL: &str = "https://chatbot.weixin.qq.com/openapi";

/// The older alias of [`DEFAULT_BASE_URL`], seen in community posts and SDK backups.
///
/// It is only ever used when configured with [`ClientBuilder::base_url`]; the client never falls
/// back to it by itself.
pub const BACKUP_BASE_URL: &str = "https://openai.weixin.qq.com/openapi";

/// What stands for the TOKEN wherever a URL or server text is shown.
const REDACTED: &str = "{TOKEN}";

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Configures a [`Client`]; made by [`Client::builder`].
///
/// Its `Debug` output never shows the TOKEN or the EncodingAESKey.
#[derive(Clone)]
pub struct ClientBuilder {
    token: String,
    encoding_aes_key: String,
    bot_appid: String,
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    pool_idle_timeout: Duration,
    max_response_bytes: usize,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("token", &"<redacted>")
            .field("encoding_aes_key", &"<redacted>")
            .field("bot_appid", &self.bot_appid)
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientBuilder {
    /// Sets the base URL, without the endpoint name: [`DEFAULT_BASE_URL`] unless set, or
    /// [`BACKUP_BASE_URL`], or `http://127.0.0.1:<port>/openapi` for a local sandbox. A trailing
    /// `/` is ignored. It must be `http` or `https`, with a host, without user info, query or
    /// fragment.
    pub fn base_url(mut self, base_url: impl Into<String>) -> ClientBuilder {
        self.base_url = base_url.into();
        self
    }

    /// Bounds establishing a connection: DNS, TCP connect and the TLS handshake together.
    /// Default 5 s. A connect timeout is a not-sent failure, safe to retry.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds a whole call: waiting for a connection, writing the request and reading the
    /// answer. Default 10 s. A request timeout is an ambiguous failure: the request may have
    /// been delivered. Keep it above the connect timeout, or a slow connect is reported as
    /// ambiguous rather than as not sent.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    /// How long an idle keep-alive connection stays in the pool. Default 30 s, below common
    /// server keep-alive limits, so that a request is rarely written onto a connection the
    /// server is closing (which would make the failure ambiguous).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The largest answer body accepted, in bytes. Default 64 KiB; a longer body is an
    /// invalid response.
    pub fn max_response_bytes(mut self, limit: usize) -> ClientBuilder {
        self.max_response_bytes = limit;
        self
    }

    /// The policy of the `*_with_retry` methods. Default [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> ClientBuilder {
        self.retry = policy;
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// Fails with a configuration error ([`Error::is_config`]) for an empty TOKEN or one that
    /// cannot stand in a URL path, an unusable EncodingAESKey, an empty bot APPID, an unusable
    /// base URL or a zero timeout. No connection is made here.
    ///
    /// The client must be used inside a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        validate_token(&self.token)?;
        if self.bot_appid.is_empty() {
            return Err(Error::config(ConfigError::EmptyAppid));
        }
        for (which, timeout) in [
            ("connect", self.connect_timeout),
            ("request", self.request_timeout),
        ] {
            if timeout.is_zero() {
                return Err(Error::config(ConfigError::ZeroTimeout { which }));
            }
        }
        let crypt = MsgCrypt::new(
            self.token.as_str(),
            &self.encoding_aes_key,
            self.bot_appid.as_bytes(),
        )
        .map_err(|e| {
            Error::config(match e {
                wxbizmsgcrypt::Error::AesKeyLength { len } => ConfigError::AesKeyLength { len },
                wxbizmsgcrypt::Error::AesKeyCharacter { position, .. } => {
                    ConfigError::AesKeyCharacter { position }
                }
                _ => ConfigError::AesKey,
            })
        })?;
        let base_url = validate_base_url(&self.base_url)?;
        let endpoint = |operation: Operation| -> Result<Endpoint, Error> {
            let uri = format!("{base_url}/{}/{}", operation.name(), self.token)
                .parse::<Uri>()
                .map_err(|_| {
                    Error::config(ConfigError::BaseUrl {
                        reason: "does not form a valid URL with the endpoint and the TOKEN",
                    })
                })?;
            let redacted = format!("{base_url}/{}/{REDACTED}", operation.name());
            Ok(Endpoint { uri, redacted })
        };
        // In `Operation::index` order.
        let endpoints = [
            endpoint(Operation::SendMsg)?,
            endpoint(Operation::KefuStateGet)?,
            endpoint(Operation::KefuStateChange)?,
        ];

        let http = http_client(self.connect_timeout, self.pool_idle_timeout)?;

        Ok(Client {
            shared: Arc::new(Shared {
                http,
                crypt,
                token: self.token.into_boxed_str(),
                endpoints,
                base_url,
                bot_appid: self.bot_appid,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                max_response_bytes: self.max_response_bytes,
                retry: self.retry,
            }),
        })
    }
}

/// Only unreserved URL characters, so that the TOKEN is its own path segment unescaped.
fn validate_token(token: &str) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::config(ConfigError::EmptyToken));
    }
    match token
        .chars()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        Some(position) => Err(Error::config(ConfigError::TokenCharacter { position })),
        None => Ok(()),
    }
}

pub(crate) fn validate_base_url(base_url: &str) -> Result<String, Error> {
    let bad = |reason| Err(Error::config(ConfigError::BaseUrl { reason }));
    let trimmed = base_url.trim().trim_end_matches('/');
    if trimmed.contains(['?', '#']) {
        return bad("must not carry a query or a fragment");
    }
    if !trimmed.contains("://") {
        return bad("must start with https:// (or http:// for a local sandbox)");
    }
    let Ok(uri) = trimmed.parse::<Uri>() else {
        return bad("is not a valid URL");
    };
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return bad("must start with https:// (or http:// for a local sandbox)"),
    }
    match uri.authority() {
        None => return bad("has no host"),
        Some(authority) if authority.as_str().contains('@') => {
            return bad("must not carry user info");
        }
        Some(authority) if authority.host().is_empty() => return bad("has no host"),
        Some(_) => {}
    }
    Ok(trimmed.to_owned())
}

/// A thin async client for the Dialogue platform's `sendmsg`, `kefustate/get` and
/// `kefustate/change` (protocols.md §4).
///
/// Each call encrypts its XML with WXBizMsgCrypt (receive-id = bot APPID), posts
/// `{"encrypt":"…"}` as JSON to `{base}/<name>/{TOKEN}` over a pooled hyper client (HTTP/1.1
/// keep-alive, HTTP/2 where the server offers it by ALPN, rustls with the webpki roots and the
/// `ring` provider; plain `http://` works too), and normalises the answer in every spelling the
/// platform uses.
///
/// A call makes exactly one attempt. The `*_with_retry` methods loop with the client's
/// [`RetryPolicy`], which never replays a `sendmsg` whose request may have been delivered. A
/// durable outbox can instead call [`RetryPolicy::decide`] itself.
///
/// Cloning is cheap and clones share the connection pool.
///
/// ```no_run
/// use std::time::Duration;
/// use kefu_client::{Client, Operation};
///
/// # async fn demo() -> Result<(), kefu_client::Error> {
/// let client = Client::builder(
///     "TOKENTOKENTOKENTOKENTOKENTOKEN",
///     "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
///     "Gg8HejYTkUsEIlG",
/// )
/// .request_timeout(Duration::from_secs(8))
/// .build()?;
///
/// let xml = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid>\
///            <msg>您好</msg><channel>0</channel></xml>";
/// match client.call_xml(Operation::SendMsg, xml).await {
///     Ok(reply) => println!("sent, rid {:?}", reply.rid()),
///     Err(e) if e.is_ambiguous() => println!("outcome unknown, do not resend blindly: {e}"),
///     Err(e) => println!("failed: {e}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    http: HttpClient,
    crypt: MsgCrypt,
    token: Box<str>,
    /// Indexed by [`Operation::index`].
    endpoints: [Endpoint; 3],
    base_url: String,
    bot_appid: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    retry: RetryPolicy,
}

/// One operation's URL, and the same with the TOKEN replaced by `{TOKEN}`.
struct Endpoint {
    uri: Uri,
    redacted: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.shared;
        f.debug_struct("Client")
            .field("base_url", &s.base_url)
            .field("token", &"<redacted>")
            .field("bot_appid", &s.bot_appid)
            .field("connect_timeout", &s.connect_timeout)
            .field("request_timeout", &s.request_timeout)
            .field("retry", &s.retry)
            .finish()
    }
}

/// A successful answer: code 0, `success` not false, `ret` 0 if present.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    message: Option<String>,
    rid: Option<String>,
    json: Map<String, Value>,
}

impl Reply {
    /// The HTTP status (a 2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The platform's message (`errmsg`, `errormsg` or `msg`), if non-empty.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The platform's request id, if any.
    pub fn rid(&self) -> Option<&str> {
        self.rid.as_deref()
    }

    /// The whole JSON object, for fields this crate does not model.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }
}

/// The `kefustate` switch of a `kefustate/get` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KefuSwitch {
    /// `on`: an agent is connected and the bot stays silent.
    On,
    /// `off`: no agent is connected.
    Off,
}

impl KefuSwitch {
    /// The wire string, `on` or `off`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KefuSwitch::On => "on",
            KefuSwitch::Off => "off",
        }
    }
}

impl fmt::Display for KefuSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful `kefustate/get` answer (protocols.md §4.6).
///
/// Both fields are optional: doc revisions differ on which the platform returns, and `status`
/// only comes with [`StateQuery::All`](kefu_payload::StateQuery::All). Values outside the
/// documented sets read as `None`; the raw JSON stays available in
/// [`reply`](KefuStateReply::reply).
#[derive(Debug, Clone)]
pub struct KefuStateReply {
    kefustate: Option<KefuSwitch>,
    status: Option<KefuState>,
    reply: Reply,
}

impl KefuStateReply {
    fn from_reply(reply: Reply) -> KefuStateReply {
        let text = |key: &str| match reply.json.get(key) {
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            _ => None,
        };
        let kefustate = text("kefustate").and_then(|s| {
            if s.eq_ignore_ascii_case("on") {
                Some(KefuSwitch::On)
            } else if s.eq_ignore_ascii_case("off") {
                Some(KefuSwitch::Off)
            } else {
                None
            }
        });
        let status = text("status").and_then(|s| s.to_ascii_lowercase().parse().ok());
        KefuStateReply {
            kefustate,
            status,
            reply,
        }
    }

    /// `kefustate`: whether an agent is connected, if the answer said.
    pub fn kefustate(&self) -> Option<KefuSwitch> {
        self.kefustate
    }

    /// `status`: `asking`, `personserving`, `complete` or `needperson`, if the answer said.
    pub fn status(&self) -> Option<KefuState> {
        self.status
    }

    /// The platform's request id, if any.
    pub fn rid(&self) -> Option<&str> {
        self.reply.rid()
    }

    /// The whole answer.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }
}

impl Client {
    /// Starts configuring a client for one bot.
    ///
    /// * `token`: the TOKEN from 发布管理 → 应用绑定 → 开放API, a path segment of every URL and
    ///   the only authentication;
    /// * `encoding_aes_key`: the 43-character EncodingAESKey;
    /// * `bot_appid`: the bot APPID, the WXBizMsgCrypt receive-id (not the OA/MP AppID, which
    ///   goes inside the XML).
    ///
    /// Nothing is checked until [`ClientBuilder::build`].
    pub fn builder(
        token: impl Into<String>,
        encoding_aes_key: impl Into<String>,
        bot_appid: impl Into<String>,
    ) -> ClientBuilder {
        ClientBuilder {
            token: token.into(),
            encoding_aes_key: encoding_aes_key.into(),
            bot_appid: bot_appid.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            retry: RetryPolicy::default(),
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The URL of an operation with the TOKEN replaced by `{TOKEN}`, safe to log.
    pub fn redacted_url(&self, operation: Operation) -> &str {
        &self.shared.endpoints[operation.index()].redacted
    }

    /// The policy used by the `*_with_retry` methods.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.shared.retry
    }

    /// Sends a message to the user (`sendmsg`), in one attempt.
    ///
    /// On an [ambiguous](Error::is_ambiguous) failure the user may or may not have seen the
    /// message: report it, do not resend blindly.
    ///
    /// ```no_run
    /// use kefu_client::Client;
    /// use kefu_client::kefu_payload::{Channel, Event, SendMsg};
    ///
    /// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let msg = SendMsg::builder("oUSER", Channel::OfficialAccount, "客服已接入")
    ///     .appid("wx0000000000000000")
    ///     .event(Event::WaiterEnter)
    ///     .kefuname("客服小红")
    ///     .build()?;
    /// match client.send(&msg).await {
    ///     Ok(reply) => println!("sent, rid {:?}", reply.rid()),
    ///     Err(e) if e.is_ambiguous() => println!("outcome unknown: {e}"),
    ///     Err(e) => println!("not delivered: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, msg: &SendMsg) -> Result<Reply, Error> {
        let xml = payload_xml(Operation::SendMsg, self, msg.to_xml())?;
        self.call_xml(Operation::SendMsg, &xml).await
    }

    /// [`send`](Client::send) with the client's [`RetryPolicy`]: retried when the request was
    /// not sent or the platform answered −1, never after an ambiguous failure.
    pub async fn send_with_retry(&self, msg: &SendMsg) -> Result<Reply, Error> {
        let xml = payload_xml(Operation::SendMsg, self, msg.to_xml())?;
        self.call_xml_with_retry(Operation::SendMsg, &xml).await
    }

    /// Reads the user's handoff state (`kefustate/get`), in one attempt.
    ///
    /// ```no_run
    /// use kefu_client::Client;
    /// use kefu_client::kefu_payload::{KefuStateGet, StateQuery};
    ///
    /// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let get = KefuStateGet::new("wx0000000000000000", "oUSER", StateQuery::All)?;
    /// let state = client.kefustate_get_with_retry(&get).await?;
    /// println!("kefustate {:?}, status {:?}", state.kefustate(), state.status());
    /// # Ok(()) }
    /// ```
    pub async fn kefustate_get(&self, request: &KefuStateGet) -> Result<KefuStateReply, Error> {
        let xml = payload_xml(Operation::KefuStateGet, self, request.to_xml())?;
        let reply = self.call_xml(Operation::KefuStateGet, &xml).await?;
        Ok(KefuStateReply::from_reply(reply))
    }

    /// [`kefustate_get`](Client::kefustate_get) with the client's [`RetryPolicy`]. The call is
    /// idempotent, so ambiguous failures are retried too.
    pub async fn kefustate_get_with_retry(
        &self,
        request: &KefuStateGet,
    ) -> Result<KefuStateReply, Error> {
        let xml = payload_xml(Operation::KefuStateGet, self, request.to_xml())?;
        let reply = self
            .call_xml_with_retry(Operation::KefuStateGet, &xml)
            .await?;
        Ok(KefuStateReply::from_reply(reply))
    }

    /// Sets the user's handoff state (`kefustate/change`), in one attempt.
    ///
    /// ```no_run
    /// use kefu_client::Client;
    /// use kefu_client::kefu_payload::{KefuState, KefuStateChange};
    ///
    /// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let change = KefuStateChange::new("wx0000000000000000", "oUSER", KefuState::PersonServing)?;
    /// client.kefustate_change_with_retry(&change).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kefustate_change(&self, request: &KefuStateChange) -> Result<Reply, Error> {
        let xml = payload_xml(Operation::KefuStateChange, self, request.to_xml())?;
        self.call_xml(Operation::KefuStateChange, &xml).await
    }

    /// [`kefustate_change`](Client::kefustate_change) with the client's [`RetryPolicy`]. The
    /// state is absolute, so ambiguous failures are retried too.
    pub async fn kefustate_change_with_retry(
        &self,
        request: &KefuStateChange,
    ) -> Result<Reply, Error> {
        let xml = payload_xml(Operation::KefuStateChange, self, request.to_xml())?;
        self.call_xml_with_retry(Operation::KefuStateChange, &xml)
            .await
    }

    /// Makes one attempt of `operation` with a ready-made XML plaintext (`<xml>…</xml>`):
    /// encrypts it, posts it and normalises the answer.
    ///
    /// The typed methods build the XML with `kefu-payload`; this one is for XML built
    /// elsewhere.
    pub async fn call_xml(&self, operation: Operation, xml: &str) -> Result<Reply, Error> {
        let s = &*self.shared;
        let endpoint = self.redacted_url(operation);
        let with_call = |e: Error| e.with_call(operation, endpoint);

        let encrypt = s
            .crypt
            .encrypt(xml.as_bytes())
            .map_err(|e| with_call(Error::new(Kind::Payload).with_source(e)))?;
        let body = DialogueRequest { encrypt }.to_json();
        let request_bytes = body.len();

        let uri = s.endpoints[operation.index()].uri.clone();
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("kefu-client/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| with_call(Error::new(Kind::Payload).with_source(e)))?;

        let started = tokio::time::Instant::now();
        let exchanged = tokio::time::timeout(s.request_timeout, self.exchange(request)).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (status, response) = match exchanged {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                let error = with_call(error);
                tracing::debug!(
                    operation = operation.name(),
                    request_bytes,
                    xml_bytes = xml.len(),
                    elapsed_ms,
                    not_sent = error.is_not_sent(),
                    timeout = error.is_timeout(),
                    "kefu call failed: {error}"
                );
                return Err(error);
            }
            Err(_elapsed) => {
                let error = with_call(Error::new(Kind::Transport { timeout: true }));
                tracing::debug!(
                    operation = operation.name(),
                    request_bytes,
                    xml_bytes = xml.len(),
                    elapsed_ms,
                    timeout = true,
                    "kefu call failed: {error}"
                );
                return Err(error);
            }
        };

        let token = &*s.token;
        let redact = |text: &str| redact(text, token);
        match normalize(status, &response, &redact) {
            Normalized::Success { map, env } => {
                let reply = Reply {
                    status,
                    message: env.message.as_deref().map(redact),
                    rid: env.rid.as_deref().map(redact),
                    json: map,
                };
                tracing::debug!(
                    operation = operation.name(),
                    status = status.as_u16(),
                    errcode = 0,
                    rid = reply.rid(),
                    request_bytes,
                    xml_bytes = xml.len(),
                    response_bytes = response.len(),
                    elapsed_ms,
                    "kefu call succeeded"
                );
                Ok(reply)
            }
            Normalized::Failure { error } => {
                let error = with_call(error);
                tracing::debug!(
                    operation = operation.name(),
                    status = status.as_u16(),
                    errcode = error.platform_code().map(|c| c.code()),
                    rid = error.rid(),
                    request_bytes,
                    xml_bytes = xml.len(),
                    response_bytes = response.len(),
                    elapsed_ms,
                    "kefu call failed: {error}"
                );
                Err(error)
            }
        }
    }

    /// [`call_xml`](Client::call_xml) in a loop driven by the client's [`RetryPolicy`]: retried
    /// when the request was not sent or the platform was busy (and, for the idempotent
    /// `kefustate` calls, after ambiguous failures), never after an ambiguous `sendmsg`.
    pub async fn call_xml_with_retry(
        &self,
        operation: Operation,
        xml: &str,
    ) -> Result<Reply, Error> {
        crate::retry::retry(&self.shared.retry, operation, || {
            self.call_xml(operation, xml)
        })
        .await
    }

    /// Sends the request and reads the whole answer, within the body limit.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Error> {
        exchange(&self.shared.http, request, self.shared.max_response_bytes).await
    }
}

/// Maps a payload serialisation failure to a not-sent payload error.
fn payload_xml(
    operation: Operation,
    client: &Client,
    xml: Result<String, kefu_payload::Error>,
) -> Result<String, Error> {
    xml.map_err(|e| {
        Error::new(Kind::Payload)
            .with_source(e)
            .with_call(operation, client.redacted_url(operation))
    })
}

/// Replaces every occurrence of the TOKEN.
/// Replaces the TOKEN where it stands as a whole word, such as the last segment of an echoed
/// URL path (`/sendmsg/<TOKEN>`), with `{TOKEN}`.
///
/// Only whole words: a short TOKEN such as `T` is also a substring of ordinary words, and
/// replacing every substring mangled the platform's messages (`{TOKEN}OKEN is not valid`).
fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    // ASCII only: the TOKEN is ASCII, and the platform's Chinese messages put no space around it.
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(token) {
        let before = rest[..at]
            .chars()
            .next_back()
            .or_else(|| out.chars().next_back());
        let after = rest[at + token.len()..].chars().next();
        out.push_str(&rest[..at]);
        if is_word(before) || is_word(after) {
            // Part of a longer word: keep its first character and look again after it.
            let first = token.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[at..at + first]);
            rest = &rest[at + first..];
        } else {
            out.push_str(REDACTED);
            rest = &rest[at + token.len()..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn build(token: &str, key: &str, appid: &str, base: &str) -> Result<Client, Error> {
        Client::builder(token, key, appid).base_url(base).build()
    }

    #[test]
    fn builder_rejects_bad_input_without_echoing_secrets() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            ("", KEY, "app", DEFAULT_BASE_URL, "TOKEN is empty"),
            ("tok/en", KEY, "app", DEFAULT_BASE_URL, "position 3"),
            ("tok en", KEY, "app", DEFAULT_BASE_URL, "position 3"),
            ("tok%2Fen", KEY, "app", DEFAULT_BASE_URL, "position 3"),
            ("token", "short", "app", DEFAULT_BASE_URL, "43"),
            (
                "token",
                &KEY.replace('G', "!"),
                "app",
                DEFAULT_BASE_URL,
                "position 42",
            ),
            ("token", KEY, "", DEFAULT_BASE_URL, "bot APPID is empty"),
            ("token", KEY, "app", "ftp://x/openapi", "https://"),
            (
                "token",
                KEY,
                "app",
                "chatbot.weixin.qq.com/openapi",
                "https://",
            ),
            ("token", KEY, "app", "https://u:p@x/openapi", "user info"),
            ("token", KEY, "app", "https://x/openapi?a=b", "query"),
            ("token", KEY, "app", "https://x/openapi#f", "fragment"),
            ("token", KEY, "app", "not a url", "base URL"),
        ];
        for (token, key, appid, base, want) in cases {
            let err = build(token, key, appid, base).unwrap_err();
            assert!(err.is_config() && err.is_not_sent(), "{err}");
            let text = err.to_string();
            assert!(text.contains(want), "{text:?} should contain {want:?}");
            if !token.is_empty() {
                assert!(!text.contains(token), "{text}");
                assert!(!format!("{err:?}").contains(token));
            }
            assert!(!text.contains(key) && !format!("{err:?}").contains(key));
        }
        let err = Client::builder("token", KEY, "app")
            .request_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(
            err.config_error(),
            Some(&ConfigError::ZeroTimeout { which: "request" })
        );
    }

    #[test]
    fn urls_carry_the_token_and_display_redacts_it() {
        let token = "AbCdEfGhIjKlMnOpQrStUvWxYz0123";
        for (base, want) in [
            (DEFAULT_BASE_URL, DEFAULT_BASE_URL),
            (BACKUP_BASE_URL, BACKUP_BASE_URL),
            (
                "http://127.0.0.1:8080/openapi/",
                "http://127.0.0.1:8080/openapi",
            ),
            (" https://example.com ", "https://example.com"),
        ] {
            let client = build(token, KEY, "Gg8HejYTkUsEIlG", base).unwrap();
            assert_eq!(client.base_url(), want);
            for op in Operation::ALL {
                let uri = &client.shared.endpoints[op.index()].uri;
                assert_eq!(uri.to_string(), format!("{want}/{}/{token}", op.name()));
                assert_eq!(
                    client.redacted_url(op),
                    format!("{want}/{}/{{TOKEN}}", op.name())
                );
            }
            let debug = format!("{client:?}");
            assert!(!debug.contains(token) && !debug.contains(KEY), "{debug}");
        }
        let builder = Client::builder(token, KEY, "Gg8HejYTkUsEIlG");
        let debug = format!("{builder:?}");
        assert!(!debug.contains(token) && !debug.contains(KEY), "{debug}");
    }

    #[test]
    fn client_is_shareable() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Client>();
        check::<ClientBuilder>();
        check::<Reply>();
        check::<KefuStateReply>();
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("a TOK b TOK", "TOK"), "a {TOKEN} b {TOKEN}");
        assert_eq!(redact("nothing", "TOK"), "nothing");
        assert_eq!(
            redact("POST /openapi/sendmsg/TOK?x=1 failed", "TOK"),
            "POST /openapi/sendmsg/{TOKEN}?x=1 failed"
        );
    }

    /// A short TOKEN is a substring of ordinary words: only the whole word is the TOKEN.
    #[test]
    fn redaction_leaves_words_that_contain_a_short_token() {
        assert_eq!(
            redact("TOKEN is not valid: /sendmsg/T", "T"),
            "TOKEN is not valid: /sendmsg/{TOKEN}"
        );
        assert_eq!(
            redact("OK, path /kefustate/get/OK was OKAY", "OK"),
            "{TOKEN}, path /kefustate/get/{TOKEN} was OKAY"
        );
        assert_eq!(redact("TT T", "T"), "TT {TOKEN}");
        assert_eq!(redact("令牌T错误", "T"), "令牌{TOKEN}错误");
        assert_eq!(redact("", "T"), "");
    }
}
