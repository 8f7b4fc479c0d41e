//! The HTTP side: connections served with hyper directly (so that a handler can decide to close
//! its connection without answering), routing, the `/sandbox` control routes, and request logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use wxbizmsgcrypt::MsgCrypt;

use super::faults::{Fault, Faults};
use super::platform::{Endpoint, Platform};
use super::state::Store;
use super::user::{Callbacks, Say, SayError, SayOutcome, UserAction};

/// The largest `/openapi` request body read.
pub(crate) const MAX_PLATFORM_BODY: usize = 1024 * 1024;
/// The largest `/sandbox` request body read.
const MAX_CONTROL_BODY: usize = 64 * 1024;
/// How long a stopping sandbox waits for requests in flight before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

/// Everything the connections share. Deliberately not `Debug`: it holds the TOKEN.
pub(crate) struct App {
    pub(crate) platform: Platform,
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    pub(crate) callbacks: Callbacks,
    pub(crate) crypt: MsgCrypt,
    pub(crate) token: Box<str>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl App {
    /// Plays one user action: the state change under the store's lock, then the callback.
    pub(crate) async fn say(&self, openid: &str, say: Say) -> Result<SayOutcome, SayError> {
        if openid.is_empty() {
            return Err(SayError::EmptyOpenid);
        }
        if say.text.is_empty() {
            return Err(SayError::EmptyText);
        }
        let action = UserAction::Say(say.text);
        let now_secs = i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX);
        // Nothing changes unless the callback can be written.
        let callback = self.store.with_user(openid, |user| {
            let before = user.checkpoint();
            let callback = action.apply(user, openid, say.channel, say.appid.as_deref(), now_secs);
            let xml = callback.to_xml();
            if xml.is_err() {
                user.restore(before);
            }
            xml.map(|xml| (callback, xml))
        });
        let (callback, xml) = callback?;
        let status = callback.kfstate.unwrap_or(kefu_payload::KefuState::Asking);
        let delivery = self.callbacks.push(&self.crypt, &xml).await?;
        tracing::info!(
            openid,
            kfstate = status.kfstate(),
            channel = callback.channel,
            callback = ?delivery,
            target = self.callbacks.redacted_target().as_deref(),
            "the user said something"
        );
        Ok(SayOutcome {
            openid: openid.to_owned(),
            status,
            kfstate: status.kfstate(),
            xml,
            callback: delivery,
        })
    }

    /// The path for logs: the TOKEN segment of the platform endpoints (whatever was sent in
    /// it) and anything after an unknown `/openapi/<name>` replaced, and any appearance of the
    /// TOKEN elsewhere too.
    pub(crate) fn redact_path(&self, path: &str) -> String {
        let redacted = if let Some((endpoint, _)) = Endpoint::route(path) {
            format!("/openapi/{}/{{TOKEN}}", endpoint.name())
        } else if let Some(tail) = path.strip_prefix("/openapi/") {
            match tail.split_once('/') {
                Some((name, _)) if is_word(name) => format!("/openapi/{name}/{{REDACTED}}"),
                None if is_word(tail) => path.to_owned(),
                _ => "/openapi/{REDACTED}".to_owned(),
            }
        } else {
            path.to_owned()
        };
        if self.token.is_empty() {
            redacted
        } else {
            redacted.replace(&*self.token, "{TOKEN}")
        }
    }
}

/// A plausible endpoint name, which can be logged.
fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Accepts connections until `shutdown` turns true, then lets the open ones finish their
/// requests (up to a grace period) and closes them.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, Arc::clone(&app), shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still in flight after {} s; closing their connections",
            SHUTDOWN_GRACE.as_secs()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection. A handler that decides to drop the request notifies `drop_signal`;
/// the connection is then dropped on the spot, closing the socket with no response written.
async fn connection(stream: TcpStream, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let drop_signal = Arc::new(Notify::new());
    let service = {
        let app = Arc::clone(&app);
        let drop_signal = Arc::clone(&drop_signal);
        service_fn(move |request| {
            let app = Arc::clone(&app);
            let drop_signal = Arc::clone(&drop_signal);
            async move { Ok::<_, Infallible>(handle(app, request, drop_signal).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!("connection ended: {error}");
                }
                break;
            }
            () = drop_signal.notified() => break,
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Routes one request and logs it.
async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    drop_signal: Arc<Notify>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Some((endpoint, segment)) = Endpoint::route(&path) {
        let segment = segment.to_owned();
        return openapi(&app, endpoint, &segment, request, drop_signal, started).await;
    }
    let response = control(&app, request).await;
    tracing::info!(
        method = %method,
        path = %app.redact_path(&path),
        status = response.status().as_u16(),
        elapsed_ms = elapsed_ms(started),
        "sandbox request"
    );
    response
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One of the three platform endpoints.
async fn openapi(
    app: &App,
    endpoint: Endpoint,
    segment: &str,
    request: Request<Incoming>,
    drop_signal: Arc<Notify>,
    started: Instant,
) -> Response<Body> {
    let path = format!("/openapi/{}/{{TOKEN}}", endpoint.name());
    if request.method() != Method::POST {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} only accepts POST", path),
            None,
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        tracing::info!(method = %request.method(), path, status = 405, "platform request");
        return response;
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let body = match Limited::new(request.into_body(), MAX_PLATFORM_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let rid = app.platform.rid();
            tracing::info!(path, status = 413, rid, "platform request too large");
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({
                    "errmsg": format!("the request body exceeds {MAX_PLATFORM_BODY} bytes"),
                    "rid": rid,
                })
                .to_string(),
            );
        }
        Err(error) => {
            tracing::debug!(path, "reading the request body failed: {error}");
            return error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                None,
            );
        }
    };

    let fault = app.faults.roll();
    let latency = app.faults.latency();
    if !latency.is_zero() {
        let mut shutdown = app.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            // A stopping sandbox answers at once rather than make its caller wait.
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
    }
    let answer = match fault {
        Some(Fault::Drop) => {
            tracing::info!(
                path,
                fault = Fault::Drop.as_str(),
                request_bytes = body.len(),
                elapsed_ms = elapsed_ms(started),
                "platform request dropped: closing the connection without an answer"
            );
            drop_signal.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::SystemError) => app.platform.system_error(),
        None => app
            .platform
            .handle(endpoint, segment, content_type.as_deref(), &body, unix_ms()),
    };
    tracing::info!(
        path,
        status = answer.status.as_u16(),
        errcode = answer.code,
        rid = answer.rid,
        fault = fault.map(Fault::as_str),
        request_bytes = body.len(),
        elapsed_ms = elapsed_ms(started),
        "platform request"
    );
    json_response(answer.status, answer.body)
}

/// The `/sandbox` control routes.
async fn control(app: &App, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let Some(segments) = decode_segments(&path) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the path holds a percent-encoded sequence that is not UTF-8",
            None,
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["sandbox", "messages"] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            match messages_query(request.uri().query()) {
                Ok(openid) => json_value(StatusCode::OK, &app.store.messages(openid.as_deref())),
                Err(message) => error_response(StatusCode::BAD_REQUEST, &message, None),
            }
        }
        ["sandbox", "users", openid] if !openid.is_empty() => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            json_value(StatusCode::OK, &app.store.snapshot(openid))
        }
        ["sandbox", "users", openid, "say"] if !openid.is_empty() => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let openid = (*openid).to_owned();
            say(app, &openid, request).await
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            "no such route; the sandbox serves POST /openapi/sendmsg/{TOKEN}, POST /openapi/kefustate/get/{TOKEN}, POST /openapi/kefustate/change/{TOKEN}, GET /sandbox/messages[?openid=…], GET /sandbox/users/{openid} and POST /sandbox/users/{openid}/say",
            None,
        ),
    }
}

/// `POST /sandbox/users/{openid}/say`.
async fn say(app: &App, openid: &str, request: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(request.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body exceeds {MAX_CONTROL_BODY} bytes"),
                None,
            );
        }
        Err(_) => {
            return error_response(StatusCode::BAD_REQUEST, "the body could not be read", None);
        }
    };
    let say: Say = match serde_json::from_slice(&body) {
        Ok(say) => say,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be {{\"text\": \"…\", \"channel\"?: 0, \"appid\"?: \"wx…\"}}: {error}"
                ),
                None,
            );
        }
    };
    match app.say(openid, say).await {
        Ok(outcome) => {
            let status = match outcome.callback {
                super::user::CallbackDelivery::Failed { .. } => StatusCode::BAD_GATEWAY,
                _ => StatusCode::OK,
            };
            json_value(status, &outcome)
        }
        Err(error) => error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &error.to_string(),
            error.field(),
        ),
    }
}

/// Reads `?openid=…`; any other parameter is refused, so that a typo does not silently list
/// everything.
fn messages_query(query: Option<&str>) -> Result<Option<String>, String> {
    let mut openid = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("the {key} parameter is not UTF-8 once percent-decoded"))?;
        match key {
            "openid" if openid.is_none() => openid = Some(value.into_owned()),
            "openid" => return Err("openid is given twice".to_owned()),
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; the only one is openid"
                ));
            }
        }
    }
    Ok(openid)
}

/// The path's segments after the leading `/`, percent-decoded; `None` when one is not UTF-8.
fn decode_segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches('/')
        .split('/')
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_value<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => json_response(status, body),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write the answer: {error}"),
            None,
        ),
    }
}

/// `{"error": {"message": …, "field"?: …}}`, the shape of the desk API's errors.
fn error_response(status: StatusCode, message: &str, field: Option<&str>) -> Response<Body> {
    let mut error = json!({ "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    json_response(status, json!({ "error": error }).to_string())
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this route only accepts {allow}"),
        None,
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_query_takes_only_openid() {
        assert_eq!(messages_query(None), Ok(None));
        assert_eq!(messages_query(Some("")), Ok(None));
        assert_eq!(
            messages_query(Some("openid=o%2B1")),
            Ok(Some("o+1".to_owned()))
        );
        assert_eq!(
            messages_query(Some("openid=a+b")),
            Ok(Some("a+b".to_owned()))
        );
        assert!(
            messages_query(Some("openId=o"))
                .unwrap_err()
                .contains("openId")
        );
        assert!(messages_query(Some("openid=a&openid=b")).is_err());
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(
            decode_segments("/sandbox/users/o%E4%BD%A0/say"),
            Some(vec![
                "sandbox".into(),
                "users".into(),
                "o你".into(),
                "say".into()
            ])
        );
        assert_eq!(decode_segments("/sandbox/users/%FF"), None);
    }
}
