//! The one hyper/rustls client build of kefu-connector, and the exchange every call makes on
//! it: pooled HTTP/1.1 keep-alive, HTTP/2 where the server offers it by ALPN, rustls with the
//! webpki roots and the `ring` provider, plain `http://` for sandboxes and tests, and a connect
//! timeout that bounds DNS, TCP and TLS together, so that a stalled handshake is a not-sent
//! failure rather than an ambiguous one.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::error::{BoxError, ConfigError, Error, InvalidResponse, Kind};

/// A pooled HTTPS (or plain HTTP) client, built by [`http_client`].
pub type HttpClient = HyperClient<Connector, Full<Bytes>>;

/// Builds the pooled client: `connect_timeout` bounds DNS, TCP connect and the TLS handshake
/// together; idle keep-alive connections are closed after `pool_idle_timeout`.
///
/// Fails only if the TLS configuration cannot be built ([`Error::is_config`]). Must be called
/// inside a Tokio runtime's context when the client is used.
pub fn http_client(
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
) -> Result<HttpClient, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| Error::config(ConfigError::Tls).with_source(e))?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let connector = Connector {
        inner: https,
        timeout: connect_timeout,
    };
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// Sends `request` and reads the whole answer, refusing a body over `limit` bytes.
///
/// A failure before the request left is [`Error::is_connect`]; after, it is ambiguous.
pub(crate) async fn exchange(
    http: &HttpClient,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<(StatusCode, Bytes), Error> {
    let response = http.request(request).await.map_err(transport_error)?;
    let status = response.status();
    match Limited::new(response.into_body(), limit).collect().await {
        Ok(collected) => Ok((status, collected.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Error::new(Kind::InvalidResponse {
                status,
                reason: InvalidResponse::TooLarge { limit },
            }))
        }
        Err(e) => Err(Error::new(Kind::Transport {
            timeout: has_timeout(&*e),
        })
        .with_source(e)),
    }
}

/// Splits a pooled-client error between not sent (connect phase) and ambiguous.
fn transport_error(error: hyper_util::client::legacy::Error) -> Error {
    let timeout = has_timeout(&error);
    let kind = if error.is_connect() {
        Kind::Connect { timeout }
    } else {
        Kind::Transport { timeout }
    };
    Error::new(kind).with_source(error)
}

/// `true` when a timeout appears anywhere in the source chain.
fn has_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<ConnectTimeout>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The connect phase (DNS, TCP connect, TLS handshake) took longer than the connect timeout.
#[derive(Debug)]
struct ConnectTimeout(Duration);

impl fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect (DNS, TCP, TLS) timed out after {:?}", self.0)
    }
}

impl std::error::Error for ConnectTimeout {}

/// The connector of [`HttpClient`]: HTTPS or HTTP, with the whole connect phase, TLS included,
/// bounded by the connect timeout.
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimeout(timeout)) as BoxError),
            }
        })
    }
}
