//! The HTTP side: connections served by the accept loop `serve` shares (with its timeouts and
//! connection limit, and a closer by which a handler can drop its connection without
//! answering), routing, the `/sandbox` control routes, and request logs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use kefu_payload::envelope::DialogueCallback;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wxbizmsgcrypt::MsgCrypt;

use crate::faults::{Fault, Faults};
use crate::oa::{OaPushOutcome, OaSay, OfficialAccount};
use kefu_client::Operation;

use crate::platform::{Platform, route};
use crate::push::{CallbackDelivery, Target};
use crate::state::{Pushed, Store};
use crate::user::{
    AskForPerson, HANDOFF_KEYWORD, Redelivery, Say, SayError, SayOutcome, UserAction,
};
use kefu_http_server::{self as http_server, Closer, RequestBody, ServerLimits};

/// The largest `/openapi` request body read.
pub(crate) const MAX_PLATFORM_BODY: usize = 1024 * 1024;
/// The largest `/sandbox` request body read.
const MAX_CONTROL_BODY: usize = 64 * 1024;
/// How long a stopping sandbox waits for requests in flight before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Body = Full<Bytes>;

/// Everything the connections share. Deliberately not `Debug`: it holds the TOKEN.
pub(crate) struct App {
    pub(crate) platform: Platform,
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    /// Where handoff callbacks go.
    pub(crate) callbacks: Target,
    pub(crate) crypt: MsgCrypt,
    pub(crate) token: Box<str>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The Official Account whose pushes the sandbox emulates, if configured.
    pub(crate) oa: Option<OfficialAccount>,
}

impl App {
    /// The user types a message.
    pub(crate) async fn say(&self, openid: &str, say: Say) -> Result<SayOutcome, SayError> {
        if openid.is_empty() {
            return Err(SayError::EmptyOpenid);
        }
        if say.text.is_empty() {
            return Err(SayError::EmptyText);
        }
        self.act(
            openid,
            UserAction::Say(say.text),
            say.channel,
            say.appid.as_deref(),
        )
        .await
    }

    /// The user hits the platform's handoff skill.
    pub(crate) async fn ask_for_person(
        &self,
        openid: &str,
        ask: AskForPerson,
    ) -> Result<SayOutcome, SayError> {
        let text = ask.text.unwrap_or_else(|| HANDOFF_KEYWORD.to_owned());
        if openid.is_empty() {
            return Err(SayError::EmptyOpenid);
        }
        if text.is_empty() {
            return Err(SayError::EmptyText);
        }
        self.act(openid, UserAction::AskForPerson(text), None, None)
            .await
    }

    /// The user rates the service on the pending rating card.
    pub(crate) async fn rate(&self, openid: &str, assessment: i64) -> Result<SayOutcome, SayError> {
        let rating = u8::try_from(assessment)
            .ok()
            .filter(|rating| (1..=5).contains(rating))
            .ok_or(SayError::Assessment { found: assessment })?;
        self.act(openid, UserAction::Rate(rating), None, None).await
    }

    /// Plays one user action: the state change and the encrypted callback under the store's
    /// lock (so nothing changes unless the callback can be written, and the callback kept for
    /// `redeliver` is the one of the last state change), then the push.
    pub(crate) async fn act(
        &self,
        openid: &str,
        action: UserAction,
        channel: Option<u8>,
        appid: Option<&str>,
    ) -> Result<SayOutcome, SayError> {
        if openid.is_empty() {
            return Err(SayError::EmptyOpenid);
        }
        let now_secs = i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX);
        let pushed = self.store.with_user(openid, |user| {
            let before = user.checkpoint();
            let built = action
                .apply(user, openid, channel, appid, now_secs)
                .and_then(|callback| {
                    let xml = callback.to_xml()?;
                    let encrypted = self.crypt.encrypt(xml.as_bytes())?;
                    Ok(Pushed {
                        xml,
                        encrypted,
                        kfstate: callback.kfstate.unwrap_or(kefu_payload::KefuState::Asking),
                    })
                });
            match built {
                Ok(pushed) => {
                    user.pushed(pushed.clone());
                    Ok((pushed, user.channel()))
                }
                Err(error) => {
                    user.restore(before);
                    Err(error)
                }
            }
        });
        let (pushed, channel) = pushed?;
        let delivery = self.push_callback(&pushed.encrypted).await;
        tracing::info!(
            openid,
            action = action.name(),
            kfstate = pushed.kfstate.kfstate(),
            channel,
            callback = ?delivery,
            target = self.callbacks.redacted().as_deref(),
            "the user did something"
        );
        Ok(outcome(openid, pushed, delivery))
    }

    /// Posts the user's last handoff callback again.
    pub(crate) async fn redeliver(
        &self,
        openid: &str,
        how: Redelivery,
    ) -> Result<SayOutcome, SayError> {
        let Some(mut pushed) = self.store.last_push(openid) else {
            return Err(SayError::NothingToRedeliver {
                openid: openid.to_owned(),
                what: "handoff callback",
            });
        };
        if how == Redelivery::Reencrypt {
            pushed.encrypted = self.crypt.encrypt(pushed.xml.as_bytes())?;
        }
        let delivery = self.push_callback(&pushed.encrypted).await;
        tracing::info!(
            openid,
            reencrypted = how == Redelivery::Reencrypt,
            kfstate = pushed.kfstate.kfstate(),
            callback = ?delivery,
            target = self.callbacks.redacted().as_deref(),
            "a handoff callback was sent again"
        );
        Ok(outcome(openid, pushed, delivery))
    }

    /// `POST {"encrypted": …}` to the callback URL.
    async fn push_callback(&self, encrypted: &str) -> CallbackDelivery {
        let body = DialogueCallback {
            encrypted: encrypted.to_owned(),
        }
        .to_json();
        self.callbacks
            .post(None, "application/json", Bytes::from(body))
            .await
    }

    /// The user writes to the Official Account.
    pub(crate) async fn oa_say(&self, openid: &str, say: OaSay) -> Result<OaPushOutcome, SayError> {
        let oa = self.oa.as_ref().ok_or(SayError::NoOfficialAccount)?;
        let now_secs = i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX);
        oa.say(openid, say, now_secs).await
    }

    /// Sends the user's last Official Account push again.
    pub(crate) async fn oa_redeliver(
        &self,
        openid: &str,
        how: Redelivery,
    ) -> Result<OaPushOutcome, SayError> {
        let oa = self.oa.as_ref().ok_or(SayError::NoOfficialAccount)?;
        oa.redeliver(openid, how).await
    }

    /// The path for logs: the TOKEN segment of the platform endpoints (whatever was sent in
    /// it) and anything after an unknown `/openapi/<name>` replaced, and any appearance of the
    /// TOKEN elsewhere too.
    pub(crate) fn redact_path(&self, path: &str) -> String {
        let redacted = if let Some((operation, _)) = route(path) {
            format!("/openapi/{}/{{TOKEN}}", operation.name())
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

fn outcome(openid: &str, pushed: Pushed, callback: CallbackDelivery) -> SayOutcome {
    SayOutcome {
        openid: openid.to_owned(),
        status: pushed.kfstate,
        kfstate: pushed.kfstate.kfstate(),
        xml: pushed.xml,
        encrypted: pushed.encrypted,
        callback,
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

/// Serves connections (see [`kefu_http_server`]) until `shutdown` turns true, then lets the
/// open ones finish their requests (up to a grace period) and closes them.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    // A handler that decides to drop the request closes its connection with the connection's
    // closer: the socket goes with no response written.
    let service = |closer: Closer| {
        let app = Arc::clone(&app);
        move |request| handle(Arc::clone(&app), request, closer.clone())
    };
    http_server::serve(listener, limits, None, service, stopping, SHUTDOWN_GRACE).await;
}

/// Routes one request and logs it.
async fn handle(app: Arc<App>, request: Request<RequestBody>, closer: Closer) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Some((operation, segment)) = route(&path) {
        let segment = segment.to_owned();
        return openapi(&app, operation, &segment, request, closer, started).await;
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
    operation: Operation,
    segment: &str,
    request: Request<RequestBody>,
    closer: Closer,
    started: Instant,
) -> Response<Body> {
    let path = format!("/openapi/{}/{{TOKEN}}", operation.name());
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
            closer.close_now();
            return std::future::pending().await;
        }
        Some(Fault::SystemError) => app.platform.system_error(),
        None => app.platform.handle(
            operation,
            segment,
            content_type.as_deref(),
            &body,
            unix_ms(),
        ),
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
async fn control(app: &App, request: Request<RequestBody>) -> Response<Body> {
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
        ["sandbox", "users", openid, action] if !openid.is_empty() => {
            let Some(route) = UserRoute::parse(action) else {
                return not_found();
            };
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let openid = (*openid).to_owned();
            user_route(app, &openid, route, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        ["sandbox", "oa", "users", openid, action] if !openid.is_empty() => {
            let route = match *action {
                "say" => OaRoute::Say,
                "redeliver" => OaRoute::Redeliver,
                _ => return not_found(),
            };
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let openid = (*openid).to_owned();
            oa_route(app, &openid, route, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        _ => not_found(),
    }
}

/// Every route, for the 404 answer.
const ROUTES: &str = "POST /openapi/sendmsg/{TOKEN}, POST /openapi/kefustate/get/{TOKEN}, POST /openapi/kefustate/change/{TOKEN}, GET /sandbox/messages[?openid=…], GET /sandbox/users/{openid}, POST /sandbox/users/{openid}/say, /ask-for-person, /rate, /enter, /leave and /redeliver, POST /sandbox/oa/users/{openid}/say and /redeliver";

fn not_found() -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("no such route; the sandbox serves {ROUTES}"),
        None,
    )
}

/// `POST /sandbox/users/{openid}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserRoute {
    Say,
    AskForPerson,
    Rate,
    Enter,
    Leave,
    Redeliver,
}

impl UserRoute {
    fn parse(segment: &str) -> Option<UserRoute> {
        Some(match segment {
            "say" => UserRoute::Say,
            "ask-for-person" => UserRoute::AskForPerson,
            "rate" => UserRoute::Rate,
            "enter" => UserRoute::Enter,
            "leave" => UserRoute::Leave,
            "redeliver" => UserRoute::Redeliver,
            _ => return None,
        })
    }
}

/// `POST /sandbox/oa/users/{openid}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OaRoute {
    Say,
    Redeliver,
}

/// The body of `rate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    assessment: i64,
}

/// The body of `enter` and `leave`: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// The body of `redeliver`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeliverBody {
    #[serde(default)]
    reencrypt: bool,
}

impl RedeliverBody {
    fn how(&self) -> Redelivery {
        if self.reencrypt {
            Redelivery::Reencrypt
        } else {
            Redelivery::SameCiphertext
        }
    }
}

/// One of the user's actions. `Err` is a response for a body that could not be read or parsed.
async fn user_route(
    app: &App,
    openid: &str,
    route: UserRoute,
    request: Request<RequestBody>,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let body = read_body(request).await?;
    let result = match route {
        UserRoute::Say => {
            let say = parse::<Say>(
                &body,
                false,
                r#"{"text": "…", "channel"?: 0, "appid"?: "wx…"}"#,
            )?;
            app.say(openid, say).await
        }
        UserRoute::AskForPerson => {
            let ask = parse::<AskForPerson>(&body, true, r#"{"text"?: "转人工"} or nothing"#)?;
            app.ask_for_person(openid, ask).await
        }
        UserRoute::Rate => {
            let rate = parse::<RateBody>(&body, false, r#"{"assessment": 1..=5}"#)?;
            app.rate(openid, rate.assessment).await
        }
        UserRoute::Enter | UserRoute::Leave => {
            parse::<NoFields>(&body, true, "{} or nothing")?;
            let action = if route == UserRoute::Enter {
                UserAction::Enter
            } else {
                UserAction::Leave
            };
            app.act(openid, action, None, None).await
        }
        UserRoute::Redeliver => {
            let redeliver =
                parse::<RedeliverBody>(&body, true, r#"{"reencrypt"?: false} or nothing"#)?;
            app.redeliver(openid, redeliver.how()).await
        }
    };
    Ok(match result {
        Ok(outcome) => json_value(delivery_status(&outcome.callback), &outcome),
        Err(error) => say_error(&error),
    })
}

/// One of the Official Account routes. `Err` is a response for a body that could not be read or
/// parsed.
async fn oa_route(
    app: &App,
    openid: &str,
    route: OaRoute,
    request: Request<RequestBody>,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let body = read_body(request).await?;
    let result = match route {
        OaRoute::Say => {
            let say = parse::<OaSay>(
                &body,
                false,
                r#"{"text": "…", "format"?: "xml"|"json", "mode"?: "safe"|"compatible"|"plain"}"#,
            )?;
            app.oa_say(openid, say).await
        }
        OaRoute::Redeliver => {
            let redeliver =
                parse::<RedeliverBody>(&body, true, r#"{"reencrypt"?: false} or nothing"#)?;
            app.oa_redeliver(openid, redeliver.how()).await
        }
    };
    Ok(match result {
        Ok(outcome) => json_value(delivery_status(&outcome.callback), &outcome),
        Err(error) => say_error(&error),
    })
}

/// 200 unless the push could not be delivered (502). The target's own status, even a 5xx, is
/// an answer and reported as such.
fn delivery_status(delivery: &CallbackDelivery) -> StatusCode {
    match delivery {
        CallbackDelivery::Failed { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    }
}

/// 409 for a request the state does not allow now, 422 for an invalid one.
fn say_error(error: &SayError) -> Response<Body> {
    let status = if error.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    error_response(status, &error.to_string(), error.field())
}

/// Reads a control request body (at most 64 KiB).
async fn read_body(request: Request<RequestBody>) -> Result<Bytes, Box<Response<Body>>> {
    match Limited::new(request.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Box::new(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body exceeds {MAX_CONTROL_BODY} bytes"),
                None,
            )))
        }
        Err(_) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
            None,
        ))),
    }
}

/// Parses a JSON body; an empty one (or only whitespace) reads as `{}` when `optional`.
fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    optional: bool,
    shape: &str,
) -> Result<T, Box<Response<Body>>> {
    let body: &[u8] = if optional && body.trim_ascii().is_empty() {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            &format!("the body must be {shape}: {error}"),
            None,
        ))
    })
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
