//! The desk-facing HTTP API of `serve`.
//!
//! | Route | What it does |
//! |---|---|
//! | `POST /v1/messages` | stores a message durably, then answers `202 {"id"}` |
//! | `POST /v1/messages` with `"account"` | stores the message for that account's provider (absent: `dialogue`) |
//! | `POST /v1/typing` | `{"account","openid","typing":true\|false}`: stores a typing indicator job |
//! | `GET /v1/messages/{id}` | the message's status, with its `account`, and for a failed one its `error_code` and `reason` |
//! | `POST /v1/messages/{id}/resend` | sends a failed or ambiguous message again |
//! | `POST /v1/sessions/{openid}/enter` | kefustate → personserving, then `waiterEnter` |
//! | `POST /v1/sessions/{openid}/switch` | `waiterSwitch` |
//! | `POST /v1/sessions/{openid}/evaluate` | `waiterQualityEvaluate` |
//! | `POST /v1/sessions/{openid}/quit` | `waiterQuit`, then kefustate → complete |
//! | `GET /v1/sessions/{openid}`, `GET /v1/sessions?state=…` | conversation state (see [`crate::inbound`]) |
//! | `GET /v1/events?after=…&wait=…` | inbound events, long poll (see [`crate::inbound`]) |
//! | `/v1/callbacks/…` | WeChat's callbacks, without the bearer key (see [`crate::inbound`]) |
//! | `POST /v1/tokens/{account}/refresh` | `{"force": true}`: forces a new access token for a `[wechat.<name>]` account (what `token refresh --force` calls; see [`crate::token`]) |
//! | `GET /healthz` | `{"status": "ok", "store": "sqlite"}` (or `"postgres"`); 503 with `"status": "unavailable"` when the store does not answer |
//! | `GET /metrics` | Prometheus text |
//! | `/console/…` | the operator console, with its own login (see [`crate::console`]; absent unless `console.password_hash` is set) |
//!
//! Every `/v1` route but the callbacks, and `/metrics`, demands `Authorization: Bearer
//! <server.api_key>` (the scheme in any case), compared in constant time. `/metrics` counts the
//! callbacks' refusals, so it is not public: a Prometheus without the key scrapes it on its own
//! listener, `metrics.listen` (see [`metrics_router`]).
//! A request is validated completely before anything is stored: malformed JSON is 400, a body of
//! the wrong shape or a message the platform would refuse is 422, and either names the field.
//! Every error outside the callbacks, 404, 405 and 413 included, answers
//! `{"error": {"message", …}}`; 413 names `server.max_body_bytes`.
//!
//! Every `POST` that creates work accepts an `Idempotency-Key` header (see
//! [`crate::idempotency`]): repeated with the same key and request, it answers the first `202`
//! again, byte for byte, with `Idempotent-Replayed: true`, and creates nothing; with the same key
//! on another request it is 422.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kefu_client::dialogue::{DialogueProvider, Outgoing};
use kefu_core::{ComposeRequest, Composed, Invalid, Provider};
use kefu_payload::{Channel, Event, KefuState, Msg};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::delivery::Dispatcher;
use crate::idempotency::{self, Claim, Claimed, Earlier, Saved};
use crate::inbound::Inbound;
use crate::inbound::session::DeskAction;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::store::{
    DIALOGUE_ACCOUNT, DeskCall, Idempotent, NewJob, PendingJob, ResendError, Store,
};

/// What the API needs.
#[derive(Clone)]
pub struct ApiState {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Where stored jobs go.
    pub dispatcher: Dispatcher,
    /// Metrics to count requests in.
    pub metrics: Arc<Metrics>,
    /// The desks' bearer key.
    pub api_key: Secret,
    /// The accounts messages go through.
    pub providers: Arc<Providers>,
    /// The Dialogue platform, whose handoff (`/v1/sessions/{openid}/…`) has calls of its own.
    pub dialogue: Arc<DialogueProvider>,
    /// The store's kind, which `/healthz` names: `"sqlite"` or `"postgres"`.
    pub store_backend: &'static str,
    /// The inbound side: callbacks, events and sessions.
    pub inbound: Inbound,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// The `[wechat.<name>]` accounts that send, for the operator's forced token refresh.
    pub wechat: Arc<crate::token::WechatAccounts>,
}

/// The API router, with authentication, the body limit and request metrics.
pub fn router(
    state: ApiState,
    max_body_bytes: usize,
    console: Option<&crate::config::ConsoleConfig>,
) -> Router {
    // Shared, not cloned per request: the state holds the account's configuration.
    let state = Arc::new(state);
    let console = match console {
        Some(config) => crate::console::router(Arc::clone(&state), config),
        None => Router::new(),
    };
    let authenticated = Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/typing", post(post_typing))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/messages/{id}/resend", post(resend_message))
        .route("/v1/sessions/{openid}/{action}", post(session_action))
        .route(
            "/v1/tokens/{account}/refresh",
            post(crate::token::refresh_route),
        )
        .merge(crate::inbound::http::desk_routes().with_state(state.inbound.clone()))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(authenticated)
        .merge(console)
        .merge(crate::inbound::http::callback_routes().with_state(state.inbound.clone()))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            rejections_as_api_errors,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

/// `GET /metrics` alone, without the bearer key: for the `metrics.listen` listener, which the
/// operator keeps where only the scraper reaches it.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move { metrics_text(&metrics) }
        }),
    )
}

/// An error answer: `{"error": {"message", "field"?, "platform_code"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    platform_code: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            platform_code: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    fn unavailable(error: impl std::fmt::Display) -> ApiError {
        tracing::error!("request failed on the outbox: {error}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the outbox is unavailable; nothing was stored, try again",
        )
    }
}

impl ApiError {
    /// The HTTP status: 400 for malformed JSON, 422 for a body of the wrong shape or a message
    /// the platform would refuse, and so on.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong, for the desk.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if one is.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The code the platform would have answered, if it has one for this mistake.
    pub fn platform_code(&self) -> Option<i64> {
        self.platform_code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "message": self.message });
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        if let Some(code) = self.platform_code {
            error["platform_code"] = json!(code);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

async fn authenticate(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if presents_key(&headers, &state.api_key) {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer key: send `Authorization: Bearer <server.api_key>`",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

async fn not_found(request: Request) -> Response {
    no_route(request.uri().path())
}

/// The answer to a path without a route; also the answer to a callback route's wrong secret, so
/// that the two cannot be told apart.
pub(crate) fn no_route(path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {path}: the desk API is under /v1/messages, /v1/sessions and /v1/events"),
    )
    .into_response()
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Puts axum's own refusals (an extractor's plain-text 400, the body limit's 413) in the API's
/// error shape; the 413 names the setting. Callbacks keep them as they are, because WeChat reads
/// their answers in its own shapes.
async fn rejections_as_api_errors(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let callback = request.uri().path().starts_with("/v1/callbacks/");
    let response = next.run(request).await;
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    if callback || !response.status().is_client_error() || !plain_text {
        return response;
    }
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!(
                "the body is larger than server.max_body_bytes ({limit} bytes); send less, or raise server.max_body_bytes"
            ),
        )
        .into_response();
    }
    // axum's rejection texts are short; the bound only keeps a surprise from costing memory.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    ApiError::new(status, text).into_response()
}

/// Whether the request's `Authorization` header carries the key. RFC 9110 §11.1 makes the scheme
/// name case-insensitive (`bearer`, `BEARER`), and one or more spaces may follow it; the key itself
/// is compared exactly, in constant time.
fn presents_key(headers: &HeaderMap, key: &Secret) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, credentials)| credentials.trim_start_matches(' '))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(key.expose().as_bytes()))
}

async fn count_request(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    // The route template, never the raw path: paths carry openids.
    let route = match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/v1/messages") => "/v1/messages",
        Some("/v1/typing") => "/v1/typing",
        Some("/v1/messages/{id}") => "/v1/messages/{id}",
        Some("/v1/messages/{id}/resend") => "/v1/messages/{id}/resend",
        Some("/v1/sessions/{openid}/{action}") => "/v1/sessions/{openid}/{action}",
        Some("/v1/sessions/{openid}") => "/v1/sessions/{openid}",
        Some("/v1/sessions") => "/v1/sessions",
        Some("/v1/events") => "/v1/events",
        Some("/v1/tokens/{account}/refresh") => "/v1/tokens/{account}/refresh",
        Some("/v1/callbacks/dialogue/{secret}") => "/v1/callbacks/dialogue/{secret}",
        Some("/v1/callbacks/wechat/{name}") => "/v1/callbacks/wechat/{name}",
        Some("/v1/callbacks/yunzhenji/{secret}") => "/v1/callbacks/yunzhenji/{secret}",
        Some("/healthz") => "/healthz",
        Some("/metrics") => "/metrics",
        Some(route) if route.starts_with("/console") => "/console",
        _ => "other",
    };
    let response = next.run(request).await;
    state.metrics.request(route, response.status().as_u16());
    response
}

/// Parses a JSON body: malformed JSON is 400, the wrong shape is 422 naming the field.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let syntax = |error: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {error}"),
        )
    };
    // serde would also read a struct from a JSON array, by position: a body that is well-formed
    // JSON but not an object is refused by name instead.
    let starts_object = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_none_or(|&byte| byte == b'{');
    if !starts_object && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be one JSON object, such as {\"openid\": …, \"channel\": 0, \"msg\": …}",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // serde_json reports some shape errors as syntax errors: a number, list or object where
        // an enum such as `event` is expected gives "expected value". Only a body that is not
        // JSON at all is 400; well-formed JSON of the wrong shape is 422 like any other.
        if !inner.is_data() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            return syntax(inner);
        }
        if path != "." {
            return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{path}: {inner}"))
                .field(path);
        }
        // A missing or unknown top-level field is reported at the root; its name is in the text.
        let message = inner.to_string();
        let api = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message.clone());
        match message.split('`').nth(1) {
            Some(field)
                if message.starts_with("missing field") || message.starts_with("unknown field") =>
            {
                api.field(field)
            }
            _ => api,
        }
    })?;
    deserializer.end().map_err(syntax)?;
    Ok(value)
}

/// What a request that creates work got: the work done now, or the answer of the same request
/// done earlier with its `Idempotency-Key`.
pub(crate) enum Stored {
    /// The ids of the jobs stored or queued now.
    Now(Vec<i64>),
    /// The saved answer, to give again.
    Earlier(Saved),
}

/// A request's `Idempotency-Key`, checked before anything else: a malformed one is 400.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    idempotency::key_of(headers).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, error.to_string()).field("Idempotency-Key")
    })
}

impl ApiState {
    /// The claim of a request's key, with the answer to save with it if the work is done. The
    /// request is its method (always `POST` here), route template, path parameters and body.
    fn idempotent(
        &self,
        key: String,
        (route, params): (&str, &[&str]),
        body: &[u8],
        answer: fn(&[i64]) -> Saved,
    ) -> Idempotent {
        let claim = Claim {
            scope: idempotency::DESK_SCOPE.to_owned(),
            key,
            route: route.to_owned(),
            request_hash: idempotency::request_hash("POST", route, params, body),
            retention_ms: i64::try_from(self.idempotency_retention.as_millis()).unwrap_or(i64::MAX),
        };
        Idempotent { claim, answer }
    }

    /// Stores jobs, and records `session` (a desk call on the user's session) in the same
    /// transaction, unless `key` was used before; hands what was stored to delivery.
    async fn store(
        &self,
        jobs: Vec<NewJob>,
        session: Option<DeskCall>,
        key: Option<Idempotent>,
    ) -> Result<Stored, ApiError> {
        // Callers run in a task of their own (see `detached`): what is stored is handed to
        // delivery even if the desk has hung up, or a retry would be told about a job that
        // nobody delivers.
        let (ticket, stored) = self
            .dispatcher
            .sequenced(|| self.store.insert(jobs, key, session));
        let claimed = stored.await.map_err(ApiError::unavailable)?;
        match claimed {
            Claimed::Done(pending) => {
                let ids = pending.iter().map(PendingJob::id).collect();
                ticket.release(pending);
                Ok(Stored::Now(ids))
            }
            Claimed::Earlier(earlier) => replay(earlier),
        }
    }

    /// The AppID the session of `recipient` on `account` came from, if the relay knows one.
    async fn session_appid(
        &self,
        account: &str,
        recipient: &str,
    ) -> Result<Option<String>, ApiError> {
        let session = self
            .store
            .session(account, recipient)
            .await
            .map_err(ApiError::unavailable)?;
        Ok(session.and_then(|session| session.appid))
    }
}

/// A desk's `POST /v1/messages` body, read: the account it names and the fields its provider
/// composes from.
#[derive(Debug, Clone)]
pub struct DeskMessage {
    /// The account (`dialogue` when the body names none).
    pub account: String,
    /// The body without `account`.
    pub body: Map<String, Value>,
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: invalid.message,
            field: Some(invalid.field).filter(|field| !field.is_empty()),
            platform_code: invalid.code,
        }
    }
}

/// Reads a `POST /v1/messages` body: malformed JSON is 400, anything but an object 422, and so
/// is an `account` that is not a name.
pub fn parse_message(body: &[u8]) -> Result<DeskMessage, ApiError> {
    let mut body: Map<String, Value> = parse_body(body)?;
    let account = match body.remove("account") {
        None => DIALOGUE_ACCOUNT.to_owned(),
        Some(Value::String(name)) => name,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "account: the account is a configured name, such as \"dialogue\"",
            )
            .field("account"));
        }
    };
    Ok(DeskMessage { account, body })
}

impl DeskMessage {
    /// The account's provider, or 422 naming the account.
    pub fn provider<'a>(
        &self,
        providers: &'a Providers,
    ) -> Result<&'a Arc<dyn Provider>, ApiError> {
        providers.get(&self.account).ok_or_else(|| {
            let known: Vec<&str> = providers.names().collect();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "account: no account named {:?} is configured (configured: {})",
                    self.account,
                    known.join(", ")
                ),
            )
            .field("account")
        })
    }

    /// Who the message is for, if the body names the recipient as `provider` expects.
    pub fn recipient(&self, provider: &dyn Provider) -> Option<&str> {
        self.body
            .get(provider.recipient_field())
            .and_then(Value::as_str)
    }

    /// The jobs `provider` composes from the message, in order, for a recipient whose session
    /// came from `session_appid`. Pure, so that the fuzzer can drive it.
    pub fn compose(
        &self,
        provider: &dyn Provider,
        session_appid: Option<&str>,
    ) -> Result<Vec<NewJob>, ApiError> {
        let composed = provider.compose(ComposeRequest {
            body: &self.body,
            session_appid,
        })?;
        Ok(composed
            .into_iter()
            .map(|job| NewJob::composed(&self.account, job))
            .collect())
    }
}

/// The job of a composition, stored under `account`.
fn job_of(account: &str, composed: Result<Composed, Invalid>) -> Result<NewJob, ApiError> {
    Ok(NewJob::composed(account, composed?))
}

/// The earlier answer to give again, or 422 if the key was used for another request.
fn replay(earlier: Earlier) -> Result<Stored, ApiError> {
    match earlier {
        Earlier::Same(saved) => Ok(Stored::Earlier(saved)),
        Earlier::Other { route } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key: this key was used for another request (POST {route}, or another path or body); send a new key with a new request, and the same key only with the same request"
            ),
        )
        .field("Idempotency-Key")),
    }
}

/// The `202` of work queued, as saved with a key: one serialization, so that an answer given
/// again is the same bytes as the first.
fn accepted(body: &serde_json::Value) -> Saved {
    Saved {
        status: StatusCode::ACCEPTED.as_u16(),
        body: body.to_string().into_bytes(),
    }
}

/// `{"id", "status"}`, and `ids` too when the message became several jobs (a long text split, an
/// OA/MP `multimsg`), so that the desk can follow every part.
fn message_accepted(ids: &[i64]) -> Saved {
    let id = ids.first().copied().unwrap_or_default();
    if ids.len() > 1 {
        accepted(&json!({ "id": id, "ids": ids, "status": "queued" }))
    } else {
        accepted(&json!({ "id": id, "status": "queued" }))
    }
}

fn session_accepted(ids: &[i64]) -> Saved {
    accepted(&json!({ "ids": ids, "status": "queued" }))
}

/// The answer of a request that created work: `make` builds it from the ids of what was
/// stored now; an answer given again is marked `Idempotent-Replayed: true`.
fn answer(stored: Stored, make: fn(&[i64]) -> Saved) -> Response {
    let (saved, replayed) = match stored {
        Stored::Now(ids) => (make(&ids), false),
        Stored::Earlier(saved) => (saved, true),
    };
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        saved.body,
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            idempotency::REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// Runs a request's work in a task of its own. A desk that gives up on its request closes the
/// connection, and the server then drops the handler: work that reads the store before it
/// writes (a session's AppID) must go on regardless, or a request fully sent would be stored or
/// not depending on when the desk hung up.
async fn detached(
    work: impl Future<Output = Result<Response, ApiError>> + Send + 'static,
) -> Result<Response, ApiError> {
    tokio::spawn(work).await.map_err(ApiError::unavailable)?
}

async fn post_message(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    detached(store_message(state, headers, body)).await
}

async fn store_message(
    state: Arc<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let message = parse_message(&body)?;
    let provider = message.provider(&state.providers)?;
    let session_appid = match message.recipient(provider.as_ref()) {
        Some(recipient) => state.session_appid(&message.account, recipient).await?,
        None => None,
    };
    let jobs = message.compose(provider.as_ref(), session_appid.as_deref())?;
    let key = key.map(|key| state.idempotent(key, ("/v1/messages", &[]), &body, message_accepted));
    let stored = state.store(jobs, None, key).await?;
    Ok(answer(stored, message_accepted))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingRequest {
    account: String,
    openid: String,
    typing: bool,
}

async fn post_typing(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    detached(store_typing(state, headers, body)).await
}

async fn store_typing(
    state: Arc<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request: TypingRequest = parse_body(&body)?;
    let message = DeskMessage {
        account: request.account,
        body: Map::new(),
    };
    let provider = message.provider(&state.providers)?;
    let job = job_of(
        &message.account,
        provider.typing(&request.openid, request.typing),
    )?;
    let key = key.map(|key| state.idempotent(key, ("/v1/typing", &[]), &body, message_accepted));
    let stored = state.store(vec![job], None, key).await?;
    Ok(answer(stored, message_accepted))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no message has id {id:?}; ids are the numbers POST /v1/messages returned"),
        )
    })
}

async fn get_message(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    match state.store.get(id).await.map_err(ApiError::unavailable)? {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no message has id {id}"),
        )),
    }
}

/// Queues job `id` again (claiming `key` with it, marking it resent by `operator` if an
/// operator asked) and hands it to delivery: the resend of the API and of the operator console.
/// It runs in a task of its own, as in [`ApiState::store`]: a job queued again is handed to
/// delivery even if the caller has hung up.
pub(crate) async fn resend_job(
    state: &Arc<ApiState>,
    id: i64,
    key: Option<Idempotent>,
    operator: Option<String>,
) -> Result<Result<Stored, ResendError>, ApiError> {
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let (ticket, queued) = state
            .dispatcher
            .sequenced(|| state.store.resend(id, key, operator));
        let claimed = queued.await.map_err(ApiError::unavailable)?;
        match claimed {
            Claimed::Done(Ok(job)) => {
                ticket.release(vec![job]);
                Ok(Ok(Stored::Now(vec![id])))
            }
            Claimed::Done(Err(refused)) => Ok(Err(refused)),
            Claimed::Earlier(earlier) => replay(earlier).map(Ok),
        }
    })
    .await
    .map_err(ApiError::unavailable)?
}

async fn resend_message(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let id = parse_id(&id)?;
    // The parsed id, so that `/v1/messages/07/resend` is the same request as `/7/resend`.
    let id_text = id.to_string();
    let route = ("/v1/messages/{id}/resend", &[id_text.as_str()][..]);
    let key = key.map(|key| state.idempotent(key, route, &body, message_accepted));
    let queued = resend_job(&state, id, key, None).await?;
    match queued {
        Ok(stored) => Ok(answer(stored, message_accepted)),
        Err(ResendError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no message has id {id}"),
        )),
        Err(ResendError::NotResendable(current)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "message {id} is {}; only failed or ambiguous messages can be sent again",
                serde_json::to_value(current)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    channel: Channel,
    appid: Option<String>,
    msg: Option<Msg>,
    kefuname: Option<String>,
    kefuavatar: Option<String>,
    ans_node_name: Option<String>,
}

async fn session_action(
    State(state): State<Arc<ApiState>>,
    Path((openid, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    detached(store_session_action(state, openid, action, headers, body)).await
}

async fn store_session_action(
    state: Arc<ApiState>,
    openid: String,
    action: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (event, default_text) = match action.as_str() {
        "enter" => (Event::WaiterEnter, "客服已接入,请问有什么可以帮您?"),
        "switch" => (Event::WaiterSwitch, "正在为您转接其他客服"),
        "evaluate" => (Event::WaiterQualityEvaluate, "请对本次服务进行评价"),
        "quit" => (Event::WaiterQuit, "客服已离开,感谢您的咨询"),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown session action {other:?}; use enter, switch, evaluate or quit"),
            ));
        }
    };
    let request: SessionRequest = parse_body(&body)?;
    if matches!(event, Event::WaiterEnter | Event::WaiterSwitch) && request.kefuname.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("kefuname: {action} needs the agent's name to show to the user"),
        )
        .field("kefuname"));
    }
    let known = state.session_appid(DIALOGUE_ACCOUNT, &openid).await?;
    let appid = state
        .dialogue
        .appid_for(request.appid.clone(), known.as_deref(), request.channel);
    // The kefustate calls carry the same appid as the sendmsg: on channel 7 the TOKEN stands in
    // for a missing one (protocols.md §4.4). The session never shows the TOKEN.
    let kefustate_appid = appid.clone();
    let session_appid = request
        .appid
        .clone()
        .or_else(|| appid.clone().filter(|_| request.channel != Channel::WebH5));
    let desk_call = match event {
        Event::WaiterEnter => Some(DeskAction::Enter),
        Event::WaiterSwitch => Some(DeskAction::Switch),
        Event::WaiterQuit => Some(DeskAction::Quit),
        Event::WaiterQualityEvaluate => None,
    }
    .map(|action| {
        Inbound::desk_call(
            openid.clone(),
            action,
            request.kefuname.clone(),
            request.channel.code(),
            session_appid.clone(),
        )
    });
    let dialogue = &state.dialogue;
    let message = job_of(
        DIALOGUE_ACCOUNT,
        dialogue.sendmsg(Outgoing {
            openid: &openid,
            channel: request.channel,
            appid,
            msg: request.msg.unwrap_or_else(|| Msg::text(default_text)),
            event: Some(event),
            kefuname: request.kefuname,
            kefuavatar: request.kefuavatar,
            ans_node_name: request.ans_node_name,
        }),
    )?;
    let kefustate = |state| {
        job_of(
            DIALOGUE_ACCOUNT,
            dialogue.kefustate(&openid, kefustate_appid.as_deref(), state),
        )
    };
    // The order the platform needs (protocols.md §4.8): the bot falls silent before the agent
    // greets, and the agent says goodbye before the session is closed.
    let jobs = match event {
        Event::WaiterEnter => vec![kefustate(KefuState::PersonServing)?, message],
        Event::WaiterQuit => vec![message, kefustate(KefuState::Complete)?],
        _ => vec![message],
    };
    let route = (
        "/v1/sessions/{openid}/{action}",
        &[openid.as_str(), &action][..],
    );
    let key = key.map(|key| state.idempotent(key, route, &body, session_accepted));
    // The session's new state is stored with the jobs that bring it about.
    let stored = state.store(jobs, desk_call, key).await?;
    Ok(answer(stored, session_accepted))
}

async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    health(state.store_backend, state.store.ping().await)
}

/// `{"status": "ok", "store": …}`, or 503 with `"status": "unavailable"` when the store did not
/// answer. Why it did not goes to the log only: the route is open to anyone who can reach it.
fn health(store: &'static str, answered: crate::store::StoreResult<()>) -> Response {
    match answered {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "store": store})),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(store, "health check failed: {error}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": store})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    metrics_text(&state.metrics)
}

fn metrics_text(metrics: &Metrics) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn providers() -> Providers {
        let env = [
            ("KEFU_DIALOGUE_TOKEN", "TOKEN0123456789"),
            (
                "KEFU_DIALOGUE_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
        ];
        let config = Config::from_settings(&env).unwrap();
        let mut providers = Providers::new();
        providers.register(
            DIALOGUE_ACCOUNT,
            Arc::new(crate::serve::dialogue_provider(&config).unwrap()),
        );
        providers
    }

    /// What the API makes of a `POST /v1/messages` body, before the store.
    fn message_job(body: &[u8], providers: &Providers) -> Result<Vec<NewJob>, ApiError> {
        let message = parse_message(body)?;
        message.compose(message.provider(providers)?.as_ref(), None)
    }

    #[test]
    fn an_account_is_a_configured_name() {
        let providers = providers();
        let jobs = message_job(
            br#"{"account":"dialogue","openid":"o1","channel":0,"appid":"wx1","msg":"hi"}"#,
            &providers,
        )
        .unwrap();
        assert_eq!(jobs[0].account, DIALOGUE_ACCOUNT);
        let unknown = message_job(
            br#"{"account":"shop","openid":"o1","msg":"hi"}"#,
            &providers,
        )
        .unwrap_err();
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(unknown.field_name(), Some("account"));
        assert!(unknown.message().contains("\"shop\""), "{unknown:?}");
        let not_a_name =
            message_job(br#"{"account":7,"openid":"o1","msg":"hi"}"#, &providers).unwrap_err();
        assert_eq!(not_a_name.field_name(), Some("account"));
    }

    /// Found by fuzz/fuzz_targets/desk_api.rs ("valid JSON is never 400"): serde_json reports
    /// a non-string where an enum is expected as a syntax error, and the API answered 400 "the
    /// body is not valid JSON" to well-formed JSON.
    #[test]
    fn well_formed_json_of_the_wrong_shape_is_422() {
        for event in ["{}", "5", "[]", "{\n\t\t}"] {
            let body = format!(r#"   {{"openid":"o1","channel":7,"msg":"hi","event":{event}}}  "#);
            let error = message_job(body.as_bytes(), &providers()).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(error.field_name(), Some("event"), "{body}");
            assert!(error.message().starts_with("event: "), "{error:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_422() {
        for body in [r#"["o1", 7, null, "hi"]"#, " 5", r#""o1""#, "null"] {
            let error = message_job(body.as_bytes(), &providers()).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(
                error
                    .message()
                    .starts_with("the body must be one JSON object"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_key_is_exact() {
        let key = Secret::new("0123456789abcdef-desk");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            presents_key(&headers, &key)
        };
        for accepted in [
            "Bearer 0123456789abcdef-desk",
            "bearer 0123456789abcdef-desk",
            "BEARER 0123456789abcdef-desk",
            "bEaReR  0123456789abcdef-desk",
        ] {
            assert!(with(accepted), "{accepted}");
        }
        for refused in [
            "Bearer 0123456789ABCDEF-desk",
            "Bearer 0123456789abcdef-desk ",
            "Basic 0123456789abcdef-desk",
            "Bearer0123456789abcdef-desk",
            "Bearer",
            "0123456789abcdef-desk",
            "",
        ] {
            assert!(!with(refused), "{refused}");
        }
        assert!(!presents_key(&HeaderMap::new(), &key));
    }

    #[test]
    fn malformed_json_is_400() {
        for body in [
            r#"{"openid":"o1","event":{"#,
            r#"{"openid":"o1","event":{}"#,
            r#"{"openid":"o1","channel":7,"msg":"hi"} x"#,
            "",
        ] {
            let error = message_job(body.as_bytes(), &providers()).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body}");
            assert!(
                error.message().starts_with("the body is not valid JSON"),
                "{error:?}"
            );
        }
    }

    /// The answer names the store and its state, never why it failed.
    #[tokio::test]
    async fn health_names_the_store_and_nothing_more() {
        use http_body_util::BodyExt as _;
        let cases = [
            ("sqlite", Ok(()), 200, r#"{"status":"ok","store":"sqlite"}"#),
            (
                "postgres",
                Ok(()),
                200,
                r#"{"status":"ok","store":"postgres"}"#,
            ),
            (
                "postgres",
                Err(crate::store::StoreError::new(
                    "postgres store unavailable: connection refused to 10.0.0.7",
                )),
                503,
                r#"{"status":"unavailable","store":"postgres"}"#,
            ),
        ];
        for (store, answered, status, body) in cases {
            let response = health(store, answered);
            assert_eq!(response.status().as_u16(), status);
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), body);
        }
    }
}
