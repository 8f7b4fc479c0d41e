//! One JSON POST of a vendor provider (yunzhenji, the company gateway) on the shared pooled
//! client, its outcome split the way protocols.md §9.2 needs: an answer, provably not sent
//! (the connect phase failed), or maybe sent (anything after the request may have left).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};

use crate::settings::SettingsError;
use crate::transport::{HttpClient, exchange, http_client};

/// Where a provider posts: the URI, and the same as text for messages (no secret in it).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) uri: Uri,
    pub(crate) shown: String,
}

impl Endpoint {
    /// `base` (checked like every base URL) joined with `path`.
    pub(crate) fn new(base: &str, path: &str) -> Result<Endpoint, SettingsError> {
        let base = crate::client::validate_base_url(base).map_err(|e| match e.config_error() {
            Some(crate::ConfigError::BaseUrl { reason }) => SettingsError::BaseUrl { reason },
            _ => SettingsError::BaseUrl {
                reason: "is not a valid URL",
            },
        })?;
        let shown = format!("{base}{path}");
        let uri = shown.parse::<Uri>().map_err(|_| SettingsError::BaseUrl {
            reason: "does not form a valid URL with the path",
        })?;
        Ok(Endpoint { uri, shown })
    }
}

/// What became of a POST.
#[derive(Debug)]
pub(crate) enum Posted {
    /// The server answered (any status), within the size limit.
    Answer {
        /// The HTTP status.
        status: u16,
        /// The whole body.
        body: Bytes,
    },
    /// Nothing was sent: the connect phase (DNS, TCP, TLS) failed or the request could not be
    /// built. The text says why; it may quote error texts, so callers redact it.
    NotSent(String),
    /// The request may have reached the server: a timeout after writing, a reset, an unreadable
    /// or oversized answer. The text says why; callers redact it.
    MaybeSent(String),
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The transport setters of a vendor provider's builder, whose settings are in a field `post`
/// ([`PostSettings`]): one text for both builders.
macro_rules! post_setters {
    () => {
        /// Bounds DNS, TCP connect and TLS of a call of its own client. Default 5 s.
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.post.connect_timeout = timeout;
            self
        }

        /// Bounds a whole call. Default 10 s. A call that times out is ambiguous and never
        /// resent.
        pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.post.request_timeout = timeout;
            self
        }

        /// A pooled client to share with other providers. Without one, the provider builds
        /// its own with the connect timeout.
        pub fn http(mut self, http: crate::transport::HttpClient) -> Self {
            self.post.http = Some(http);
            self
        }
    };
}
pub(crate) use post_setters;

/// A vendor provider's transport settings, as its builder collects them.
#[derive(Debug, Clone)]
pub(crate) struct PostSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) http: Option<HttpClient>,
}

impl Default for PostSettings {
    fn default() -> PostSettings {
        PostSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            http: None,
        }
    }
}

impl PostSettings {
    /// Checks the timeouts and takes the shared client, or builds one with the connect timeout.
    pub(crate) fn build(self) -> Result<Poster, SettingsError> {
        for (which, value) in [
            ("connect timeout", self.connect_timeout),
            ("request timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(SettingsError::Zero { which });
            }
        }
        let http = match self.http {
            Some(http) => http,
            None => http_client(self.connect_timeout, DEFAULT_POOL_IDLE_TIMEOUT)
                .map_err(|_| SettingsError::Tls)?,
        };
        Ok(Poster {
            http,
            request_timeout: self.request_timeout,
        })
    }
}

/// Posts JSON for a vendor provider.
pub(crate) struct Poster {
    http: HttpClient,
    request_timeout: Duration,
}

impl Poster {
    /// POSTs `payload` as JSON to `endpoint`, with `header` if given, within the request
    /// timeout, reading at most 64 KiB of answer.
    pub(crate) async fn post(
        &self,
        endpoint: &Endpoint,
        header: Option<(HeaderName, HeaderValue)>,
        payload: Vec<u8>,
    ) -> Posted {
        post_json(
            &self.http,
            endpoint,
            header,
            payload,
            self.request_timeout,
            MAX_RESPONSE_BYTES,
        )
        .await
    }
}

/// POSTs `payload` as JSON to `endpoint`, with `header` if given, within `timeout`, reading at
/// most `limit` bytes of answer.
async fn post_json(
    http: &HttpClient,
    endpoint: &Endpoint,
    header: Option<(HeaderName, HeaderValue)>,
    payload: Vec<u8>,
    timeout: Duration,
    limit: usize,
) -> Posted {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(endpoint.uri.clone())
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        )
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("kefu-client/", env!("CARGO_PKG_VERSION"))),
        );
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let Ok(request) = request.body(Full::new(Bytes::from(payload))) else {
        return Posted::NotSent("the request could not be built".to_owned());
    };
    match tokio::time::timeout(timeout, exchange(http, request, limit)).await {
        Ok(Ok((status, body))) => Posted::Answer {
            status: status.as_u16(),
            body,
        },
        Ok(Err(error)) if error.is_connect() => Posted::NotSent(format!(
            "could not connect (DNS, TCP or TLS){}",
            causes(&error)
        )),
        Ok(Err(error)) => Posted::MaybeSent(match error.invalid_response() {
            Some(reason) => format!("the answer is unreadable: {reason}"),
            None => format!(
                "the connection failed after the request was written{}",
                causes(&error)
            ),
        }),
        Err(_) => Posted::MaybeSent(format!(
            "no answer within the request timeout of {} ms",
            timeout.as_millis()
        )),
    }
}

/// The causes under a transport error, `: cause: cause…`, for an attempt's message.
pub(crate) fn causes(error: &crate::Error) -> String {
    let mut text = String::new();
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
