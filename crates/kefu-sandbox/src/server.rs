//! The HTTP side: connections served by the accept loop `serve` shares (with its timeouts and
//! connection limit, and a closer by which a handler can drop its connection without
//! answering), the platforms' endpoints with their faults, routing to the `/sandbox` control
//! routes, the simulated users' actions, and request logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use kefu_client::Operation;
use kefu_http_server::{self as http_server, Closer, RequestBody, ServerLimits};
use kefu_payload::envelope::DialogueCallback;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wxbizmsgcrypt::MsgCrypt;

use crate::cgibin::{self, WeChatApi};
use crate::dialogue::{Platform, route};
use crate::faults::{Fault, Faults};
use crate::gateway::Gateway;
use crate::oa::{OaPushOutcome, OaSay, OfficialAccount};
use crate::push::{CallbackDelivery, Target};
use crate::state::{Pushed, Store};
use crate::user::{
    AskForPerson, HANDOFF_KEYWORD, Redelivery, Say, SayError, SayOutcome, UserAction,
};
use crate::yunzhenji::Yunzhenji;

/// The largest `/openapi` request body read.
pub(crate) const MAX_PLATFORM_BODY: usize = 1024 * 1024;
/// How long a stopping sandbox waits for requests in flight before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) type Body = Full<Bytes>;

/// Everything the connections share. Deliberately not `Debug`: it holds the TOKEN.
pub(crate) struct App {
    pub(crate) platform: Platform,
    /// `api.weixin.qq.com`.
    pub(crate) api: WeChatApi,
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    /// Where handoff callbacks go.
    pub(crate) callbacks: Target,
    pub(crate) crypt: MsgCrypt,
    pub(crate) token: Box<str>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The Official Account whose pushes the sandbox emulates, if configured.
    pub(crate) oa: Option<OfficialAccount>,
    /// yunzhenji's `wechat/sendMessage` and its pushes.
    pub(crate) yunzhenji: Arc<Yunzhenji>,
    /// The company gateway.
    pub(crate) gateway: Gateway,
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
        let now_ms = unix_ms();
        let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let outcome = oa.say(openid, say, now_secs).await?;
        // The user wrote, whatever became of the push: the account may answer now.
        self.api.user_wrote(oa.appid(), openid, now_ms);
        Ok(outcome)
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

/// Unix time in milliseconds, unsigned as the sandbox's records keep it.
pub(crate) fn unix_ms() -> u64 {
    u64::try_from(kefu_client::kefu_core::now_ms()).unwrap_or(0)
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
    if let Some(route) = cgibin::Route::of(&path) {
        return cgi_bin(&app, route, request, closer, started).await;
    }
    if let Some(vendor) = Vendor::of(&path) {
        return vendor_send(&app, vendor, request, closer, started).await;
    }
    let response = crate::control::control(&app, request).await;
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
    let body = match read_platform_body(app, &path, request).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let fault = app.faults.roll();
    wait_latency(app).await;
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

/// Reads a platform request's body (at most [`MAX_PLATFORM_BODY`]); `Err` is the answer to a
/// body too large or unreadable.
async fn read_platform_body(
    app: &App,
    path: &str,
    request: Request<RequestBody>,
) -> Result<Bytes, Box<Response<Body>>> {
    match Limited::new(request.into_body(), MAX_PLATFORM_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let rid = app.platform.rid();
            tracing::info!(path, status = 413, rid, "platform request too large");
            Err(Box::new(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({
                    "errmsg": format!("the request body exceeds {MAX_PLATFORM_BODY} bytes"),
                    "rid": rid,
                })
                .to_string(),
            )))
        }
        Err(error) => {
            tracing::debug!(path, "reading the request body failed: {error}");
            Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                None,
            )))
        }
    }
}

/// The configured latency before a platform answer, cut short when the sandbox stops (rather
/// than make its caller wait).
async fn wait_latency(app: &App) {
    let latency = app.faults.latency();
    if !latency.is_zero() {
        let mut shutdown = app.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
    }
}

/// One of the `api.weixin.qq.com` endpoints. The path is logged, never the query (it holds the
/// `access_token`).
async fn cgi_bin(
    app: &App,
    route: cgibin::Route,
    request: Request<RequestBody>,
    closer: Closer,
    started: Instant,
) -> Response<Body> {
    let query = request.uri().query().map(str::to_owned);
    processed_despite_drops(app, request, closer, started, |body, system_error| {
        let reply = if system_error {
            app.api.system_error()
        } else {
            app.api.handle(route, query.as_deref(), body, unix_ms())
        };
        Answered {
            status: StatusCode::OK,
            body: reply.body,
            code: reply.code,
            errcode: None,
            rid: reply.rid,
        }
    })
    .await
}

/// The vendors' send endpoints, which stand in for other hosts than `api.weixin.qq.com`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    /// yunzhenji's `POST /wechat/sendMessage`.
    Yunzhenji,
    /// The company gateway's `POST /wisdom-api/weixin/v1/sendCustomerMessage`.
    Gateway,
}

impl Vendor {
    fn of(path: &str) -> Option<Vendor> {
        match path {
            "/wechat/sendMessage" => Some(Vendor::Yunzhenji),
            "/wisdom-api/weixin/v1/sendCustomerMessage" => Some(Vendor::Gateway),
            _ => None,
        }
    }
}

/// A vendor's send endpoint. Neither the body (yunzhenji's holds the `access_token`) nor the
/// `system` header is logged.
async fn vendor_send(
    app: &App,
    vendor: Vendor,
    request: Request<RequestBody>,
    closer: Closer,
    started: Instant,
) -> Response<Body> {
    if let Err(refused) = crate::control::expect(request.method(), Method::POST) {
        return *refused;
    }
    let header = |name| request.headers().get(name).map(|v| v.as_bytes().to_vec());
    let system = header("system");
    let content_type =
        header(CONTENT_TYPE.as_str()).map(|v| String::from_utf8_lossy(&v).into_owned());
    processed_despite_drops(
        app,
        request,
        closer,
        started,
        |body, system_error| match vendor {
            Vendor::Yunzhenji => {
                let reply = if system_error {
                    app.yunzhenji.system_error()
                } else {
                    app.yunzhenji.handle(body, unix_ms())
                };
                Answered {
                    status: StatusCode::OK,
                    body: reply.body,
                    code: reply.code,
                    errcode: None,
                    rid: None,
                }
            }
            Vendor::Gateway => {
                let answer = if system_error {
                    app.gateway.system_error()
                } else {
                    app.gateway.handle(
                        &app.api,
                        system.as_deref(),
                        content_type.as_deref(),
                        body,
                        unix_ms(),
                    )
                };
                Answered {
                    status: answer.status,
                    body: answer.body,
                    code: answer.code,
                    errcode: answer.errcode,
                    rid: None,
                }
            }
        },
    )
    .await
}

/// What an endpoint answered, for the response and the log.
struct Answered {
    status: StatusCode,
    body: String,
    /// The code of the answer (`errcode`, or the gateway's outer `code`).
    code: i64,
    /// The gateway's inner `data.errcode`.
    errcode: Option<i64>,
    rid: Option<String>,
}

/// Reads the body, draws the faults, waits the latency, and answers with `process`, which is
/// told whether to answer the system error. A dropped request **is** processed, as when the
/// platform acted and the answer was lost; then the connection closes without an answer.
async fn processed_despite_drops(
    app: &App,
    request: Request<RequestBody>,
    closer: Closer,
    started: Instant,
    process: impl FnOnce(&[u8], bool) -> Answered,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let body = match read_platform_body(app, &path, request).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let fault = app.faults.roll();
    wait_latency(app).await;
    let answer = process(&body, fault == Some(Fault::SystemError));
    tracing::info!(
        path,
        status = answer.status.as_u16(),
        code = answer.code,
        errcode = answer.errcode,
        rid = answer.rid.as_deref(),
        fault = fault.map(Fault::as_str),
        request_bytes = body.len(),
        elapsed_ms = elapsed_ms(started),
        "platform request"
    );
    if fault == Some(Fault::Drop) {
        closer.close_now();
        return std::future::pending().await;
    }
    json_response(answer.status, answer.body)
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": {"message": …, "field"?: …}}`, the shape of the desk API's errors.
pub(crate) fn error_response(
    status: StatusCode,
    message: &str,
    field: Option<&str>,
) -> Response<Body> {
    let mut error = json!({ "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    json_response(status, json!({ "error": error }).to_string())
}
