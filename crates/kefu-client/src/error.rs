//! The one error type of this crate, the platform's error codes, and the operations.

use core::fmt;
use std::error::Error as StdError;

use hyper::StatusCode;

/// A boxed error from the transport or a dependency, kept as [`Error`]'s source.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The three platform calls this client makes.
///
/// Each is `POST {base}/<name>/{TOKEN}` with the same encrypted envelope (protocols.md §4.2).
///
/// ```
/// use kefu_client::Operation;
/// assert_eq!(Operation::SendMsg.name(), "sendmsg");
/// assert!(!Operation::SendMsg.is_idempotent());
/// assert!(Operation::KefuStateChange.is_idempotent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `sendmsg`: send a message to the user. Not idempotent: a replay shows the user a
    /// duplicate message.
    SendMsg,
    /// `kefustate/get`: read the user's handoff state. Idempotent.
    KefuStateGet,
    /// `kefustate/change`: set the user's handoff state. Idempotent, since the state is absolute.
    KefuStateChange,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 3] = [
        Operation::SendMsg,
        Operation::KefuStateGet,
        Operation::KefuStateChange,
    ];

    /// The endpoint name, the path between the base URL and the TOKEN: `sendmsg`,
    /// `kefustate/get` or `kefustate/change`.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::SendMsg => "sendmsg",
            Operation::KefuStateGet => "kefustate/get",
            Operation::KefuStateChange => "kefustate/change",
        }
    }

    /// `true` when replaying the call after an ambiguous failure cannot change its effect:
    /// `kefustate/get` and `kefustate/change`. `sendmsg` is not, and is never replayed after its
    /// request may have been delivered.
    pub const fn is_idempotent(self) -> bool {
        match self {
            Operation::SendMsg => false,
            Operation::KefuStateGet | Operation::KefuStateChange => true,
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Operation::SendMsg => 0,
            Operation::KefuStateGet => 1,
            Operation::KefuStateChange => 2,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error code returned by the Dialogue platform (protocols.md §4.4), under whichever key it
/// came (`errcode`, `errorcode` or `code`).
///
/// Codes without a documented meaning are kept as they came in [`PlatformCode::Other`].
///
/// ```
/// use kefu_client::PlatformCode;
/// assert_eq!(PlatformCode::from_code(1001), PlatformCode::InvalidToken);
/// assert_eq!(PlatformCode::InvalidToken.code(), 1001);
/// assert_eq!(PlatformCode::from_code(-1), PlatformCode::SystemBusy);
/// assert!(PlatformCode::SystemBusy.is_transient());
/// assert_eq!(PlatformCode::from_code(4242), PlatformCode::Other(4242));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlatformCode {
    /// 1001: the TOKEN is not valid (token 无效).
    InvalidToken,
    /// 1002: the bot has not passed review (机器人审核没有通过).
    BotNotApproved,
    /// 1003: the signature lacks `userid` (deprecated JWT flow).
    SignatureMissingUserid,
    /// 1004: the signature field is empty (deprecated JWT flow).
    SignatureEmpty,
    /// 1005: the signature has expired or is invalid (deprecated JWT flow).
    SignatureExpired,
    /// 1006: the signature check failed, `userid` is missing (deprecated JWT flow).
    SignatureCheckFailed,
    /// 1007: `appid`, `category`, `label` or `desc` is empty (label APIs).
    LabelFieldEmpty,
    /// 1008: `appid`, `openid` or `msg` is empty.
    RequiredFieldEmpty,
    /// 1011: `appid is not valid` (undocumented; seen on channels 7 and 8 with an empty appid).
    InvalidAppid,
    /// 2928312: `unsupport, to do.` (channel 2, which is not open).
    Unsupported,
    /// −1: `系统异常,请稍候再试`, the system is busy. The only transient code.
    SystemBusy,
    /// Any other non-zero code, exactly as it came.
    Other(i64),
}

impl PlatformCode {
    /// The code for a number. Zero is not an error and maps to `Other(0)`.
    pub const fn from_code(code: i64) -> PlatformCode {
        match code {
            1001 => PlatformCode::InvalidToken,
            1002 => PlatformCode::BotNotApproved,
            1003 => PlatformCode::SignatureMissingUserid,
            1004 => PlatformCode::SignatureEmpty,
            1005 => PlatformCode::SignatureExpired,
            1006 => PlatformCode::SignatureCheckFailed,
            1007 => PlatformCode::LabelFieldEmpty,
            1008 => PlatformCode::RequiredFieldEmpty,
            1011 => PlatformCode::InvalidAppid,
            2928312 => PlatformCode::Unsupported,
            -1 => PlatformCode::SystemBusy,
            other => PlatformCode::Other(other),
        }
    }

    /// The number, as the platform sent it.
    pub const fn code(self) -> i64 {
        match self {
            PlatformCode::InvalidToken => 1001,
            PlatformCode::BotNotApproved => 1002,
            PlatformCode::SignatureMissingUserid => 1003,
            PlatformCode::SignatureEmpty => 1004,
            PlatformCode::SignatureExpired => 1005,
            PlatformCode::SignatureCheckFailed => 1006,
            PlatformCode::LabelFieldEmpty => 1007,
            PlatformCode::RequiredFieldEmpty => 1008,
            PlatformCode::InvalidAppid => 1011,
            PlatformCode::Unsupported => 2928312,
            PlatformCode::SystemBusy => -1,
            PlatformCode::Other(code) => code,
        }
    }

    /// `true` only for −1 (system busy), which is worth retrying after a pause. Every other code
    /// is terminal: the same request will fail the same way.
    pub const fn is_transient(self) -> bool {
        matches!(self, PlatformCode::SystemBusy)
    }

    /// `true` for codes that point at the configuration rather than at one message: 1001
    /// (TOKEN), 1002 (bot review) and 1011 (appid). Worth an alert.
    pub const fn is_config(self) -> bool {
        matches!(
            self,
            PlatformCode::InvalidToken | PlatformCode::BotNotApproved | PlatformCode::InvalidAppid
        )
    }

    /// `true` for the codes with a documented or reported meaning, `false` for
    /// [`PlatformCode::Other`].
    pub const fn is_known(self) -> bool {
        !matches!(self, PlatformCode::Other(_))
    }

    /// What the code means, and what to do about it.
    pub const fn meaning(self) -> &'static str {
        match self {
            PlatformCode::InvalidToken => {
                "TOKEN is not valid; copy it again from 发布管理 → 应用绑定 → 开放API"
            }
            PlatformCode::BotNotApproved => {
                "the bot has not passed review; publish it and wait for approval"
            }
            PlatformCode::SignatureMissingUserid => {
                "signature lacks userid (deprecated sign/aibot flow, not expected on this endpoint)"
            }
            PlatformCode::SignatureEmpty => {
                "signature is empty (deprecated sign/aibot flow, not expected on this endpoint)"
            }
            PlatformCode::SignatureExpired => {
                "signature expired or invalid (deprecated sign/aibot flow, not expected on this endpoint)"
            }
            PlatformCode::SignatureCheckFailed => {
                "signature check failed, userid missing (deprecated sign/aibot flow, not expected on this endpoint)"
            }
            PlatformCode::LabelFieldEmpty => {
                "appid, category, label or desc is empty; fill every required field"
            }
            PlatformCode::RequiredFieldEmpty => {
                "appid, openid or msg is empty; msg must be non-empty even with an event"
            }
            PlatformCode::InvalidAppid => {
                "appid is not valid; send the OA/MP AppID (channels 0, 5, 6) or the TOKEN (channel 7)"
            }
            PlatformCode::Unsupported => {
                "unsupported (channel 2 is not open); use a supported channel"
            }
            PlatformCode::SystemBusy => "the platform is busy; retry later",
            PlatformCode::Other(_) => {
                "undocumented code; not retried automatically, check the message and rid"
            }
        }
    }
}

impl fmt::Display for PlatformCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

/// Why a response that came back could not be read as success or as a platform error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidResponse {
    /// The body is not a JSON object.
    NotJson,
    /// The JSON has none of `errcode`, `errorcode` or `code`.
    MissingCode,
    /// The first code key present holds neither an integer nor a numeric string.
    MalformedCode,
    /// The code is 0 but `success` is false or `ret` is non-zero.
    Contradictory,
    /// The body is longer than the configured limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidResponse::NotJson => f.write_str("the body is not a JSON object"),
            InvalidResponse::MissingCode => {
                f.write_str("the JSON carries no errcode, errorcode or code")
            }
            InvalidResponse::MalformedCode => {
                f.write_str("the code is neither an integer nor a numeric string")
            }
            InvalidResponse::Contradictory => {
                f.write_str("the code is 0 but success is false or ret is non-zero")
            }
            InvalidResponse::TooLarge { limit } => {
                write!(f, "the body exceeds the {limit}-byte limit")
            }
        }
    }
}

/// What is wrong with the client's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOKEN is empty.
    EmptyToken,
    /// The TOKEN holds a character that cannot stand in a URL path segment unescaped. Only the
    /// position is kept, never the character.
    TokenCharacter {
        /// Zero-based character position.
        position: usize,
    },
    /// The EncodingAESKey is not 43 characters long.
    AesKeyLength {
        /// The number of characters found.
        len: usize,
    },
    /// The EncodingAESKey holds a character outside the base64 alphabet. Only the position is
    /// kept, never the character.
    AesKeyCharacter {
        /// Zero-based character position.
        position: usize,
    },
    /// The EncodingAESKey is unusable for another reason.
    AesKey,
    /// The bot APPID is empty.
    EmptyAppid,
    /// The base URL cannot be used.
    BaseUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout is zero.
    ZeroTimeout {
        /// Which one.
        which: &'static str,
    },
    /// The TLS configuration could not be built; see the source.
    Tls,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyToken => {
                f.write_str("TOKEN is empty; copy it from 发布管理 → 应用绑定 → 开放API")
            }
            ConfigError::TokenCharacter { position } => write!(
                f,
                "TOKEN has a character at position {position} that is not allowed in a URL path (A-Z, a-z, 0-9, '-', '.', '_', '~'); copy it again"
            ),
            ConfigError::AesKeyLength { len } => write!(
                f,
                "EncodingAESKey must be exactly 43 characters, got {len}; copy it again from the console"
            ),
            ConfigError::AesKeyCharacter { position } => write!(
                f,
                "EncodingAESKey has a character at position {position} that is not base64 (A-Z, a-z, 0-9, +, /); copy it again from the console"
            ),
            ConfigError::AesKey => f.write_str(
                "EncodingAESKey is unusable; copy the 43 characters again from the console",
            ),
            ConfigError::EmptyAppid => f.write_str(
                "bot APPID is empty; it is the receive-id of every encrypted body (not the OA/MP AppID)",
            ),
            ConfigError::BaseUrl { reason } => write!(f, "base URL {reason}"),
            ConfigError::ZeroTimeout { which } => write!(f, "the {which} timeout must be non-zero"),
            ConfigError::Tls => f.write_str("the TLS configuration could not be built"),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// Bad configuration, caught by the builder.
    Config(ConfigError),
    /// The payload could not be serialised or encrypted. Nothing was sent.
    Payload,
    /// DNS, TCP connect or TLS failed: the request never left.
    Connect { timeout: bool },
    /// The request may have been written, then the exchange failed.
    Transport { timeout: bool },
    /// A non-2xx status.
    HttpStatus { status: StatusCode },
    /// A 2xx with a non-zero code.
    Platform {
        code: PlatformCode,
        status: StatusCode,
    },
    /// A 2xx that is neither success nor a platform error.
    InvalidResponse {
        status: StatusCode,
        reason: InvalidResponse,
    },
}

/// Why a call failed.
///
/// Like `reqwest::Error` and `hyper::Error`, it is one opaque type with predicates to test
/// the kind of failure, and accessors for what is known:
///
/// | Predicate | When |
/// |---|---|
/// | [`is_config`](Error::is_config) | the builder rejected its input |
/// | [`is_payload`](Error::is_payload) | the payload could not be built or encrypted |
/// | [`is_connect`](Error::is_connect) | DNS, TCP connect or TLS failed before the request left |
/// | [`is_not_sent`](Error::is_not_sent) | nothing reached the platform (any of the three above) |
/// | [`is_ambiguous`](Error::is_ambiguous) | the request may have taken effect: a transport failure after it was written, a request timeout, HTTP 5xx, or a 2xx that reads as neither success nor error |
/// | [`is_timeout`](Error::is_timeout) | the connect or the request timeout fired |
/// | [`is_platform`](Error::is_platform) | the platform answered a non-zero code ([`platform_code`](Error::platform_code)) |
/// | [`is_http_status`](Error::is_http_status) | the answer had a non-2xx status ([`status`](Error::status)) |
/// | [`is_invalid_response`](Error::is_invalid_response) | a 2xx body that is not JSON, has no code, or contradicts itself |
/// | [`is_transient`](Error::is_transient) | worth retrying for any operation: connect failures and −1 |
///
/// Neither `Display` nor `Debug` ever shows the TOKEN (it is a URL path segment: the endpoint
/// is shown as `…/sendmsg/{TOKEN}`), the EncodingAESKey or the request body. Text that came
/// from the server is shown with any occurrence of the TOKEN replaced by `{TOKEN}`.
///
/// ```
/// use kefu_client::Client;
/// let err = Client::builder("", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "Gg8HejYTkUsEIlG")
///     .build()
///     .unwrap_err();
/// assert!(err.is_config() && err.is_not_sent());
/// assert!(!err.is_ambiguous());
/// assert!(err.to_string().contains("TOKEN is empty"));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    operation: Option<Operation>,
    /// The redacted endpoint, `https://host/openapi/sendmsg/{TOKEN}`.
    endpoint: Option<String>,
    message: Option<String>,
    rid: Option<String>,
    body: Option<String>,
    attempts: u32,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                operation: None,
                endpoint: None,
                message: None,
                rid: None,
                body: None,
                attempts: 1,
                source: None,
            }),
        }
    }

    pub(crate) fn config(reason: ConfigError) -> Error {
        Error::new(Kind::Config(reason))
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn with_call(mut self, operation: Operation, endpoint: &str) -> Error {
        self.inner.operation = Some(operation);
        self.inner.endpoint = Some(endpoint.to_owned());
        self
    }

    pub(crate) fn with_reply(
        mut self,
        message: Option<String>,
        rid: Option<String>,
        body: Option<String>,
    ) -> Error {
        self.inner.message = message;
        self.inner.rid = rid;
        self.inner.body = body;
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Error {
        self.inner.attempts = attempts.max(1);
        self
    }

    #[cfg(test)]
    pub(crate) fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    /// `true` when the builder rejected its input (see [`Error::config_error`]).
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// What the builder rejected, for a configuration error.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.inner.kind {
            Kind::Config(reason) => Some(reason),
            _ => None,
        }
    }

    /// `true` when the payload could not be serialised or encrypted. Nothing was sent, and
    /// retrying cannot help.
    pub fn is_payload(&self) -> bool {
        matches!(self.inner.kind, Kind::Payload)
    }

    /// The payload failure (for example a character XML cannot carry), for a payload error
    /// raised while serialising a `kefu-payload` request.
    pub fn payload_error(&self) -> Option<&kefu_payload::Error> {
        match self.inner.kind {
            Kind::Payload => self
                .inner
                .source
                .as_ref()
                .and_then(|e| e.downcast_ref::<kefu_payload::Error>()),
            _ => None,
        }
    }

    /// `true` when the connection could not be established (DNS, TCP connect or TLS handshake,
    /// including the connect timeout), so the request provably never left. Safe to retry, even
    /// for `sendmsg`.
    pub fn is_connect(&self) -> bool {
        matches!(self.inner.kind, Kind::Connect { .. })
    }

    /// `true` when nothing reached the platform: a configuration, payload or connect failure.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Config(_) | Kind::Payload | Kind::Connect { .. }
        )
    }

    /// `true` when the request may have reached the platform and taken effect, but no usable
    /// answer came back: a transport failure after the request was written (connection reset,
    /// closed without an answer, request timeout), an HTTP 5xx, or a 2xx that is neither success
    /// nor a platform error.
    ///
    /// For `sendmsg` this means the user may or may not have seen the message. It is never
    /// retried automatically; report it so that a person can decide to resend.
    pub fn is_ambiguous(&self) -> bool {
        match self.inner.kind {
            Kind::Transport { .. } | Kind::InvalidResponse { .. } => true,
            Kind::HttpStatus { status } => status.is_server_error(),
            _ => false,
        }
    }

    /// `true` for a transport failure (connect or after the request was written), as opposed
    /// to an answer that came back.
    pub fn is_transport(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Connect { .. } | Kind::Transport { .. }
        )
    }

    /// `true` when the connect timeout (DNS, TCP and TLS) or the request timeout fired. A
    /// connect timeout is also [`is_connect`](Error::is_connect); a request timeout is also
    /// [`is_ambiguous`](Error::is_ambiguous).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Connect { timeout: true } | Kind::Transport { timeout: true }
        )
    }

    /// `true` when the platform answered with a non-zero code; see
    /// [`platform_code`](Error::platform_code).
    pub fn is_platform(&self) -> bool {
        matches!(self.inner.kind, Kind::Platform { .. })
    }

    /// The platform's error code, for a platform error.
    pub fn platform_code(&self) -> Option<PlatformCode> {
        match self.inner.kind {
            Kind::Platform { code, .. } => Some(code),
            _ => None,
        }
    }

    /// `true` when the answer had a non-2xx HTTP status; see [`status`](Error::status).
    pub fn is_http_status(&self) -> bool {
        matches!(self.inner.kind, Kind::HttpStatus { .. })
    }

    /// The HTTP status of the answer, when one came back (also for platform errors and invalid
    /// responses, which arrive with a 2xx).
    pub fn status(&self) -> Option<StatusCode> {
        match self.inner.kind {
            Kind::HttpStatus { status }
            | Kind::InvalidResponse { status, .. }
            | Kind::Platform { status, .. } => Some(status),
            _ => None,
        }
    }

    /// `true` when a 2xx body could not be read as success or as a platform error; see
    /// [`invalid_response`](Error::invalid_response).
    pub fn is_invalid_response(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidResponse { .. })
    }

    /// What was wrong with the body, for an invalid response.
    pub fn invalid_response(&self) -> Option<InvalidResponse> {
        match self.inner.kind {
            Kind::InvalidResponse { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// `true` when the failure is worth retrying whatever the operation: the request never
    /// left ([`is_connect`](Error::is_connect)), or the platform answered −1 (system busy).
    /// Ambiguous failures are not included; see [`crate::classify`] for the per-operation
    /// decision.
    pub fn is_transient(&self) -> bool {
        match self.inner.kind {
            Kind::Connect { .. } => true,
            Kind::Platform { code, .. } => code.is_transient(),
            _ => false,
        }
    }

    /// The operation that failed, unless the builder failed.
    pub fn operation(&self) -> Option<Operation> {
        self.inner.operation
    }

    /// The platform's message (`errmsg`, `errormsg` or `msg`), when the answer carried one.
    pub fn message(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }

    /// The platform's request id (`rid`), when the answer carried one. Quote it when asking the
    /// platform for help.
    pub fn rid(&self) -> Option<&str> {
        self.inner.rid.as_deref()
    }

    /// The start of the response body (at most 512 bytes, lossily decoded, TOKEN redacted), for
    /// an HTTP status error or an invalid response.
    pub fn body(&self) -> Option<&str> {
        self.inner.body.as_deref()
    }

    /// How many attempts were made before this error was returned: 1 for a single call, more
    /// when a retry loop gave up.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        if let Some(operation) = inner.operation {
            write!(f, "{operation}")?;
            if let Some(endpoint) = &inner.endpoint {
                write!(f, " ({endpoint})")?;
            }
            f.write_str(": ")?;
        }
        match &inner.kind {
            Kind::Config(reason) => write!(f, "invalid configuration: {reason}")?,
            Kind::Payload => f.write_str("the payload could not be built or encrypted; nothing was sent")?,
            Kind::Connect { timeout: false } => f.write_str(
                "could not connect (DNS, TCP or TLS failed); the request was not sent and is safe to retry; check the base URL and the network",
            )?,
            Kind::Connect { timeout: true } => f.write_str(
                "connect timed out (DNS, TCP or TLS); the request was not sent and is safe to retry",
            )?,
            Kind::Transport { timeout: false } => f.write_str(
                "the connection failed after the request was written; it may have taken effect, so it is not retried automatically",
            )?,
            Kind::Transport { timeout: true } => f.write_str(
                "no answer before the request timeout; the request may have taken effect, so it is not retried automatically",
            )?,
            Kind::HttpStatus { status } => {
                write!(f, "HTTP status {status}")?;
                if status.is_server_error() {
                    f.write_str("; the request may have taken effect")?;
                }
            }
            Kind::Platform { code, .. } => {
                write!(f, "the platform answered code {code}")?;
            }
            Kind::InvalidResponse { status, reason } => write!(
                f,
                "unreadable answer (HTTP {status}): {reason}; the request may have taken effect"
            )?,
        }
        if let Some(message) = &inner.message {
            write!(f, ", message {message:?}")?;
        }
        if let Some(rid) = &inner.rid {
            write!(f, ", rid {rid}")?;
        }
        if inner.attempts > 1 {
            write!(f, " (after {} attempts)", inner.attempts)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut d = f.debug_struct("kefu_client::Error");
        d.field("kind", &inner.kind);
        if let Some(operation) = inner.operation {
            d.field("operation", &operation);
        }
        if let Some(endpoint) = &inner.endpoint {
            d.field("endpoint", endpoint);
        }
        if let Some(message) = &inner.message {
            d.field("message", message);
        }
        if let Some(rid) = &inner.rid {
            d.field("rid", rid);
        }
        if let Some(body) = &inner.body {
            d.field("body_len", &body.len());
        }
        if inner.attempts > 1 {
            d.field("attempts", &inner.attempts);
        }
        if let Some(source) = &inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static + StdError>() {}
        check::<Error>();
    }

    #[test]
    fn platform_codes_round_trip() {
        for code in [
            1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1011, 2928312, -1, 0, 1009, 77,
        ] {
            assert_eq!(PlatformCode::from_code(code).code(), code);
        }
        assert!(!PlatformCode::from_code(1009).is_known());
        assert!(PlatformCode::from_code(1011).is_known());
        assert!(PlatformCode::InvalidToken.is_config());
        assert!(!PlatformCode::RequiredFieldEmpty.is_transient());
        assert!(PlatformCode::SystemBusy.is_transient());
    }

    #[test]
    fn predicates_by_kind() {
        let connect = Error::new(Kind::Connect { timeout: false });
        assert!(connect.is_connect() && connect.is_not_sent() && connect.is_transient());
        assert!(!connect.is_ambiguous() && !connect.is_timeout());

        let timeout = Error::new(Kind::Transport { timeout: true });
        assert!(timeout.is_ambiguous() && timeout.is_timeout() && !timeout.is_not_sent());

        let s500 = Error::new(Kind::HttpStatus {
            status: StatusCode::INTERNAL_SERVER_ERROR,
        });
        assert!(s500.is_http_status() && s500.is_ambiguous());
        assert_eq!(s500.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));

        let s404 = Error::new(Kind::HttpStatus {
            status: StatusCode::NOT_FOUND,
        });
        assert!(s404.is_http_status() && !s404.is_ambiguous() && !s404.is_transient());

        let busy = Error::new(Kind::Platform {
            code: PlatformCode::SystemBusy,
            status: StatusCode::OK,
        });
        assert!(busy.is_platform() && busy.is_transient() && !busy.is_ambiguous());
        assert_eq!(busy.platform_code(), Some(PlatformCode::SystemBusy));
    }

    #[test]
    fn display_names_the_redacted_endpoint() {
        let err = Error::new(Kind::Platform {
            code: PlatformCode::InvalidToken,
            status: StatusCode::OK,
        })
        .with_call(
            Operation::SendMsg,
            "https://chatbot.weixin.qq.com/openapi/sendmsg/{TOKEN}",
        )
        .with_reply(
            Some("TOKEN is not valid".into()),
            Some("621bb347".into()),
            None,
        );
        assert_eq!(
            err.to_string(),
            "sendmsg (https://chatbot.weixin.qq.com/openapi/sendmsg/{TOKEN}): the platform answered code 1001 (TOKEN is not valid; copy it again from 发布管理 → 应用绑定 → 开放API), message \"TOKEN is not valid\", rid 621bb347"
        );
    }
}
