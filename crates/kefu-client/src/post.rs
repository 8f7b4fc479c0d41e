//! One JSON POST of a vendor provider (yunzhenji, the company gateway) on the shared pooled
//! client, its outcome split the way protocols.md §9.2 needs: an answer, provably not sent
//! (the connect phase failed), or maybe sent (anything after the request may have left).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};

use crate::settings::SettingsError;
use crate::transport::{HttpClient, exchange};

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

/// POSTs `payload` as JSON to `endpoint`, with `header` if given, within `timeout`, reading at
/// most `limit` bytes of answer.
pub(crate) async fn post_json(
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
