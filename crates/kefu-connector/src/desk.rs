//! A small client of the relay's desk API, as an agent desk uses it. The demo plays the desk with
//! it, and the end-to-end tests and the load benchmark drive the relay through it.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A desk's connection to the relay: its base URL and bearer key.
#[derive(Clone)]
pub struct Desk {
    base: String,
    bearer: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// An answer of the desk API.
#[derive(Debug, Clone)]
pub struct DeskReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body, or `Value::Null` when the body is not JSON.
    pub body: Value,
    /// The raw body.
    pub text: String,
}

/// The request could not be made (connect or I/O failure).
#[derive(Debug, thiserror::Error)]
#[error("desk request to {path} failed: {message}")]
pub struct DeskError {
    path: String,
    message: String,
}

impl Desk {
    /// A desk talking to the relay at `base` (such as `http://127.0.0.1:8080`) with `api_key`.
    pub fn new(base: impl Into<String>, api_key: &str) -> Desk {
        Desk {
            base: base.into().trim_end_matches('/').to_owned(),
            bearer: format!("Bearer {api_key}"),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<DeskReply, DeskError> {
        self.request(Method::POST, path, Bytes::from(body.to_string()))
            .await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`, as a desk sends it when it may
    /// retry the request (at the same relay or another one of a fleet).
    pub async fn post_with_key(
        &self,
        path: &str,
        body: &Value,
        key: &str,
    ) -> Result<DeskReply, DeskError> {
        self.send(Method::POST, path, Bytes::from(body.to_string()), Some(key))
            .await
    }

    /// `POST path` with a raw body, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<DeskReply, DeskError> {
        self.request(Method::POST, path, body.into()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<DeskReply, DeskError> {
        self.request(Method::GET, path, Bytes::new()).await
    }

    /// The same desk with another key, for authentication tests.
    pub fn with_key(&self, api_key: &str) -> Desk {
        Desk {
            bearer: format!("Bearer {api_key}"),
            ..self.clone()
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<DeskReply, DeskError> {
        self.send(method, path, body, None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<DeskReply, DeskError> {
        let failed = |message: String| DeskError {
            path: path.to_owned(),
            message,
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, &self.bearer)
            .header(header::CONTENT_TYPE, "application/json");
        let request = match idempotency_key {
            Some(key) => request.header(crate::idempotency::HEADER, key),
            None => request,
        }
        .body(Full::new(body))
        .map_err(|e| failed(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(DeskReply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        })
    }
}
