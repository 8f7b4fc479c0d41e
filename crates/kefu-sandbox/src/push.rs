//! Pushes from the emulated platform to a configured URL (the handoff callback, the Official
//! Account's message push): one HTTP POST, timed, with what the target answered.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};

/// How long the platform waits for the target to answer a push (protocols.md §9.3: the
/// WeChat-wide 5 s rule).
pub(crate) const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer kept in [`CallbackDelivery::Delivered`].
const MAX_ANSWER: usize = 64 * 1024;

/// What happened to a push: the handoff callback of a user action, or an Official Account
/// message push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallbackDelivery {
    /// The sandbox has no URL for this push (`--callback-url`, `--oa-callback-url`), so nothing
    /// was sent. The state change, if any, still happened.
    NotConfigured,
    /// The target answered; `status` is its HTTP status, whatever it was.
    Delivered {
        /// The HTTP status of the answer.
        status: u16,
        /// The answer body (lossy UTF-8, at most 64 KiB).
        body: String,
        /// How long the exchange took.
        elapsed_ms: u64,
    },
    /// The push could not be delivered, or no answer came within 5 s.
    Failed {
        /// What went wrong (the URL is never included: its path may be a secret).
        error: String,
        /// How long the attempt took.
        elapsed_ms: u64,
    },
}

impl CallbackDelivery {
    /// `true` when the target answered with a 2xx status.
    pub fn is_success(&self) -> bool {
        matches!(self, CallbackDelivery::Delivered { status, .. } if (200..300).contains(status))
    }
}

/// One push target. Deliberately not `Debug`: the URL's path may be a secret.
pub(crate) struct Target {
    // Replaceable while running: a relay on port 0 learns its address only after the sandbox it
    // delivers to has started.
    uri: std::sync::RwLock<Option<Uri>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Target {
    /// Pushes to `uri` (an already validated `http://` URL), or nowhere.
    pub(crate) fn new(uri: Option<Uri>) -> Target {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(HttpConnector::new());
        Target {
            uri: std::sync::RwLock::new(uri),
            client,
        }
    }

    fn uri(&self) -> Option<Uri> {
        self.uri
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Points the pushes at `uri` (an already validated `http://` URL).
    pub(crate) fn set(&self, uri: Uri) {
        *self
            .uri
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(uri);
    }

    /// The URL without its path and query, safe to log.
    pub(crate) fn redacted(&self) -> Option<String> {
        self.uri().as_ref().map(redact_url)
    }

    /// POSTs `body` to the URL, with `query` appended to the URL's own query (if any), and
    /// reports the answer. Never fails: an undeliverable push is an outcome.
    pub(crate) async fn post(
        &self,
        query: Option<&str>,
        content_type: &'static str,
        body: Bytes,
    ) -> CallbackDelivery {
        let Some(target) = self.uri() else {
            return CallbackDelivery::NotConfigured;
        };
        let started = Instant::now();
        let uri = match with_query(&target, query) {
            Ok(uri) => uri,
            Err(error) => {
                return CallbackDelivery::Failed {
                    error,
                    elapsed_ms: elapsed_ms(started),
                };
            }
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static("kefu-connector-sandbox"),
        );

        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| chain(&e))?;
            let status = response.status().as_u16();
            let collected = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {}", chain(&*e)))?;
            Ok::<_, String>((status, collected.to_bytes()))
        };
        let outcome = tokio::time::timeout(PUSH_TIMEOUT, exchange).await;
        let elapsed_ms = elapsed_ms(started);
        match outcome {
            Ok(Ok((status, body))) => CallbackDelivery::Delivered {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
                elapsed_ms,
            },
            Ok(Err(error)) => CallbackDelivery::Failed { error, elapsed_ms },
            Err(_) => CallbackDelivery::Failed {
                error: format!(
                    "no answer within {} s; the platform gives up after that",
                    PUSH_TIMEOUT.as_secs()
                ),
                elapsed_ms,
            },
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `target` with `query` appended to its query string. The error never repeats the URL.
fn with_query(target: &Uri, query: Option<&str>) -> Result<Uri, String> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(target.clone());
    };
    let path = target.path();
    let path_and_query = match target.query() {
        Some(own) if !own.is_empty() => format!("{path}?{own}&{query}"),
        _ => format!("{path}?{query}"),
    };
    let mut parts = target.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| "the push URL with its query is not a valid URL".to_owned())?,
    );
    Uri::from_parts(parts).map_err(|_| "the push URL with its query is not a valid URL".to_owned())
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

/// Checks a push URL: absolute `http://`, with a host. The message never repeats the URL.
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
    use super::*;

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
    fn queries_are_appended_to_the_url_s_own() {
        let bare: Uri = "http://127.0.0.1:9/wx".parse().unwrap();
        assert_eq!(with_query(&bare, None).unwrap(), bare);
        assert_eq!(
            with_query(&bare, Some("a=1&b=2")).unwrap().to_string(),
            "http://127.0.0.1:9/wx?a=1&b=2"
        );
        let own: Uri = "http://127.0.0.1:9/wx?k=v".parse().unwrap();
        assert_eq!(
            with_query(&own, Some("a=1")).unwrap().to_string(),
            "http://127.0.0.1:9/wx?k=v&a=1"
        );
        let root: Uri = "http://127.0.0.1:9".parse().unwrap();
        assert_eq!(
            with_query(&root, Some("a=1")).unwrap().to_string(),
            "http://127.0.0.1:9/?a=1"
        );
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
