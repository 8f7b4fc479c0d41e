//! The one HTTP client build of the workspace: hyper's pooled client over rustls (webpki roots,
//! the `ring` provider), HTTP/1.1 and HTTP/2 by ALPN, plain `http://` too, with the whole
//! connect phase bounded. The platform client and the relay's webhook both use it.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::BoxError;

/// The connector of [`HttpClient`].
pub type Connector = TimeoutConnector<HttpsConnector<HttpConnector>>;

/// A pooled HTTP client sending whole bodies.
pub type HttpClient = HyperClient<Connector, Full<Bytes>>;

/// A client whose connect phase (DNS, TCP, TLS) gives up after `connect_timeout`, as a
/// connect error (the request was not sent), and whose idle connections close after
/// `pool_idle_timeout`. Fails only if the TLS configuration cannot be built.
pub fn http_client(
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let connector = TimeoutConnector {
        inner: https,
        timeout: connect_timeout,
    };
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// The connect phase (DNS, TCP connect, TLS handshake) took longer than the connect timeout.
#[derive(Debug)]
pub(crate) struct ConnectTimeout(Duration);

impl fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect (DNS, TCP, TLS) timed out after {:?}", self.0)
    }
}

impl std::error::Error for ConnectTimeout {}

/// Bounds the whole connect phase, TLS included, so that a stalled handshake is a connect
/// error (not sent) rather than a request timeout (ambiguous).
#[derive(Clone)]
pub struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<Uri> for TimeoutConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout(timeout)) as BoxError),
            }
        })
    }
}
