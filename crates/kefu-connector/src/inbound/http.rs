//! The inbound routes (see the [module docs](super)).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kefu_payload::KefuState;
use serde_json::json;

use super::query::Query;
use super::yunzhenji::{MAX_BODY_BYTES, YunzhenjiRejection};
use super::{Inbound, millis};
use crate::store::{
    Admission, DIALOGUE_ACCOUNT, JobState, NewDialogue, NewWechat, NewYunzhenji, StoreError,
    YunzhenjiAdmission,
};
use kefu_core::{Reason, now_ms};

/// How long a callback may wait for the store before it is answered 503: well within the
/// platforms' 5 s deadline, so that they retry rather than time out.
const STORE_DEADLINE: Duration = Duration::from_secs(3);

/// The one answer to every refused Dialogue callback (protocols.md §3.5).
const DIALOGUE_REFUSED: &str = r#"{"errcode":400,"errmsg":"invalid callback"}"#;
const DIALOGUE_OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

/// The answers to yunzhenji's pushes, in the vendor's own spelling (`message`, not `errmsg`).
const YUNZHENJI_OK: &str = r#"{"errcode":0,"message":"ok"}"#;
const YUNZHENJI_REFUSED: &str = r#"{"errcode":400,"message":"invalid callback"}"#;

/// `GET /v1/events`, `GET /v1/sessions`, `GET /v1/sessions/{openid}`: for the authenticated
/// router.
pub fn desk_routes() -> Router<Inbound> {
    Router::new()
        .route("/v1/events", get(events))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{openid}", get(get_session))
}

/// The callback routes, which WeChat calls without the bearer key.
pub fn callback_routes() -> Router<Inbound> {
    Router::new()
        .route("/v1/callbacks/dialogue/{secret}", post(dialogue_callback))
        .route(
            "/v1/callbacks/wechat/{name}",
            get(wechat_verify).post(wechat_callback),
        )
        .route("/v1/callbacks/yunzhenji/{secret}", post(yunzhenji_callback))
}

fn json_answer(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn text_answer(status: StatusCode, body: impl Into<Bytes>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

/// A desk API error, in the shape of [`crate::api::ApiError`]'s answers.
fn desk_error(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Response {
    let mut error = json!({ "message": message.into() });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn store_unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!("inbound request failed on the store: {error}");
    desk_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable, try again",
        None,
    )
}

/// Whether this refusal's WARN line is logged (see [`super::log_limit`]), and how many were
/// left out before it.
fn sampled(limit: &super::log_limit::LogLimit) -> Option<u64> {
    limit.admit(Instant::now())
}

fn left_out_note(left_out: u64) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!(
            " ({left_out} more refusals on this route were not logged, at most {} a second are)",
            super::log_limit::LINES_PER_WINDOW
        )
    }
}

/// The account name from the URL as it may be logged: anyone can put anything there, so it is
/// cut short.
fn log_name(name: &str) -> &str {
    match name.char_indices().nth(32) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

/// Waits for an admission within [`STORE_DEADLINE`].
async fn admit<T>(admit: impl Future<Output = Result<T, StoreError>>) -> Result<T, String> {
    match tokio::time::timeout(STORE_DEADLINE, admit).await {
        Ok(Ok(admission)) => Ok(admission),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "the store did not commit within {} ms",
            STORE_DEADLINE.as_millis()
        )),
    }
}

async fn dialogue_callback(
    State(inbound): State<Inbound>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Response {
    let inbound = &inbound;
    let metrics = &inbound.inner.metrics;
    let accepted = match inbound
        .inner
        .dialogue
        .receive(&secret, &body, now_ms() / 1000)
    {
        Ok(accepted) => accepted,
        Err(rejection) => {
            metrics.callback("dialogue", "rejected", rejection.reason());
            if let Some(left_out) = sampled(&inbound.inner.refusal_logs.dialogue) {
                tracing::warn!(
                    reason = rejection.reason(),
                    body_bytes = body.len(),
                    left_out,
                    "Dialogue callback refused: {rejection}{}",
                    left_out_note(left_out)
                );
            }
            return json_answer(StatusCode::BAD_REQUEST, DIALOGUE_REFUSED);
        }
    };
    let bot_appid_matches = accepted.other_receive_id.is_none();
    if let Some(found) = &accepted.other_receive_id {
        tracing::debug!(
            receive_id = found.as_str(),
            "Dialogue callback with a receive-id other than dialogue.bot_appid, accepted (callbacks.dialogue_receive_id = log)"
        );
    }
    metrics.dialogue_receive_id(
        accepted.other_receive_id.as_deref().unwrap_or("bot_appid"),
        bot_appid_matches,
    );
    let new = NewDialogue {
        callback: accepted.callback,
        raw: accepted.raw,
        dedup_key: accepted.dedup_key,
        dedup_expires_ms: now_ms().saturating_add(millis(inbound.inner.dedup_retention)),
        webhook: inbound.inner.webhook.is_some(),
    };
    let openid_len = new.callback.userid.len();
    match admit(inbound.inner.store.admit_dialogue(new)).await {
        Ok(Admission::Stored(event)) => {
            metrics.callback("dialogue", "stored", "none");
            tracing::debug!(event = event.id, "Dialogue callback stored");
            inbound.publish(event);
            json_answer(StatusCode::OK, DIALOGUE_OK)
        }
        Ok(Admission::Duplicate | Admission::Replayed) => {
            metrics.callback("dialogue", "duplicate", "none");
            tracing::debug!(
                openid_bytes = openid_len,
                "Dialogue callback redelivered, dropped"
            );
            json_answer(StatusCode::OK, DIALOGUE_OK)
        }
        Err(error) => {
            metrics.callback("dialogue", "unavailable", "store");
            tracing::error!(
                "Dialogue callback answered 503 so that the platform retries; it may or may not have been stored (a retry of a stored one is recognised as a redelivery): {error}"
            );
            json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"errcode":-1,"errmsg":"busy, retry"}"#,
            )
        }
    }
}

async fn wechat_verify(
    State(inbound): State<Inbound>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let inbound = &inbound;
    let query = Query::parse(query.as_deref().unwrap_or_default());
    let verified = inbound
        .inner
        .accounts
        .check(&name, |account| account.verify_url(&query));
    match verified {
        Ok(echo) => {
            let remembered = inbound
                .inner
                .accounts
                .check(&name, |account| {
                    Ok(account.url_verification_replay_key(&query))
                })
                .ok()
                .flatten();
            if let Some((key, timestamp)) = remembered {
                let window = inbound.inner.replay_window;
                let expires_ms = timestamp
                    .max(now_ms() / 1000)
                    .saturating_mul(1000)
                    .saturating_add(millis(window));
                let remembered = inbound
                    .inner
                    .store
                    .remember_url_verification(key, expires_ms)
                    .await;
                if let Err(error) = remembered {
                    tracing::error!(
                        "the URL verification's signature could not be remembered against replay: {error}"
                    );
                }
            }
            inbound.inner.metrics.callback("wechat", "verified", "none");
            tracing::info!(account = name.as_str(), "WeChat URL verification passed");
            text_answer(StatusCode::OK, echo)
        }
        Err(rejection) => refuse_wechat(
            inbound,
            &inbound.inner.refusal_logs.wechat_verify,
            "WeChat URL verification",
            &name,
            &rejection,
        ),
    }
}

/// Counts a refused WeChat callback, logs it within the route's rate limit, and answers it.
fn refuse_wechat(
    inbound: &Inbound,
    log_limit: &super::log_limit::LogLimit,
    what: &str,
    name: &str,
    rejection: &super::wechat::WechatRejection,
) -> Response {
    inbound
        .inner
        .metrics
        .callback("wechat", "rejected", rejection.reason());
    if let Some(left_out) = sampled(log_limit) {
        tracing::warn!(
            account = log_name(name),
            reason = rejection.reason(),
            left_out,
            "{what} refused: {rejection}{}",
            left_out_note(left_out)
        );
    }
    text_answer(
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST),
        rejection.answer(),
    )
}

async fn wechat_callback(
    State(inbound): State<Inbound>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let inbound = &inbound;
    let metrics = &inbound.inner.metrics;
    let query = Query::parse(query.as_deref().unwrap_or_default());
    let window = inbound.inner.replay_window;
    let now = now_ms();
    let received = inbound.inner.accounts.check(&name, |account| {
        account.receive(&query, &body, now / 1000, window.as_secs())
    });
    let refuse = |rejection: super::wechat::WechatRejection| {
        refuse_wechat(
            inbound,
            &inbound.inner.refusal_logs.wechat_push,
            "WeChat callback",
            &name,
            &rejection,
        )
    };
    let received = match received {
        Ok(received) => received,
        Err(rejection) => return refuse(rejection),
    };
    let replay_expires_ms = received
        .timestamp
        .max(now / 1000)
        .saturating_mul(1000)
        .saturating_add(millis(window));
    let new = NewWechat {
        account: name.clone(),
        message: received.message,
        replay_key: received.replay_key,
        plain_replay_key: received.plain_replay_key,
        replay_expires_ms,
        body_sha256: received.body_sha256,
        dedup_key: received.dedup_key,
        dedup_expires_ms: now.saturating_add(millis(inbound.inner.dedup_retention)),
        webhook: inbound.inner.webhook.is_some(),
    };
    match admit(inbound.inner.store.admit_wechat(new)).await {
        Ok(Admission::Stored(event)) => {
            metrics.callback("wechat", "stored", "none");
            tracing::debug!(
                account = name.as_str(),
                event = event.id,
                "WeChat callback stored"
            );
            inbound.publish(event);
            text_answer(StatusCode::OK, "success")
        }
        Ok(Admission::Duplicate) => {
            metrics.callback("wechat", "duplicate", "none");
            tracing::debug!(
                account = name.as_str(),
                "WeChat callback redelivered, dropped"
            );
            text_answer(StatusCode::OK, "success")
        }
        Ok(Admission::Replayed) => refuse(super::wechat::WechatRejection::Replayed),
        Err(error) => {
            metrics.callback("wechat", "unavailable", "store");
            tracing::error!(
                account = name.as_str(),
                "WeChat callback answered 503 so that WeChat retries; it may or may not have been stored (a retry of a stored one is recognised as a redelivery): {error}"
            );
            text_answer(StatusCode::SERVICE_UNAVAILABLE, "busy, retry")
        }
    }
}

/// A yunzhenji push. A wrong secret is answered exactly as a path without a route, before the
/// body is read; nothing in the logs or the metrics holds the path.
async fn yunzhenji_callback(
    State(inbound): State<Inbound>,
    Path(secret): Path<String>,
    request: Request,
) -> Response {
    let inbound = &inbound;
    let metrics = &inbound.inner.metrics;
    let receiver = &inbound.inner.yunzhenji;
    let refusals = &inbound.inner.refusal_logs.yunzhenji;
    let Some(index) = receiver.account(&secret) else {
        metrics.callback("yunzhenji", "rejected", "secret");
        if let Some(left_out) = sampled(refusals) {
            tracing::warn!(
                reason = "secret",
                left_out,
                "yunzhenji callback refused: no account has this callback secret; answered as an unknown route{}",
                left_out_note(left_out)
            );
        }
        return crate::api::no_route(request.uri().path());
    };
    let account = receiver.name(index).to_owned();
    let now = now_ms();
    let received = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => receiver
            .receive(index, &body, now)
            .map(|received| (received, body.len())),
        Err(_) => Err(YunzhenjiRejection::Body),
    };
    let (received, body_bytes) = match received {
        Ok(received) => received,
        Err(rejection) => {
            metrics.callback("yunzhenji", "rejected", rejection.reason());
            if let Some(left_out) = sampled(refusals) {
                tracing::warn!(
                    account = account.as_str(),
                    reason = rejection.reason(),
                    left_out,
                    "yunzhenji callback refused: {rejection}{}",
                    left_out_note(left_out)
                );
            }
            return json_answer(StatusCode::BAD_REQUEST, YUNZHENJI_REFUSED);
        }
    };
    let kind = received.kind;
    let new = NewYunzhenji {
        account: account.clone(),
        conversation: received.conversation,
        event: received.event,
        dedup_key: received.dedup_key,
        dedup_expires_ms: now.saturating_add(millis(inbound.inner.dedup_retention)),
        report: received.report,
        webhook: inbound.inner.webhook.is_some(),
    };
    let admitted = admit(inbound.inner.store.admit_yunzhenji(new)).await;
    if let Ok(YunzhenjiAdmission {
        moved_to: Some(JobState::Failed),
        ..
    }) = &admitted
    {
        // A failure report fails the job here, not in delivery: count it with the others.
        metrics.confirmation_failed(account.as_str(), Reason::SendFailed);
    }
    match admitted.map(|admitted| admitted.admission) {
        Ok(Admission::Stored(event)) => {
            metrics.callback("yunzhenji", "stored", "none");
            tracing::debug!(
                account = account.as_str(),
                event = event.id,
                kind = kind.as_str(),
                body_bytes,
                "yunzhenji callback stored"
            );
            inbound.publish(event);
            json_answer(StatusCode::OK, YUNZHENJI_OK)
        }
        Ok(Admission::Duplicate | Admission::Replayed) => {
            metrics.callback("yunzhenji", "duplicate", "none");
            tracing::debug!(
                account = account.as_str(),
                kind = kind.as_str(),
                "yunzhenji callback redelivered, dropped"
            );
            json_answer(StatusCode::OK, YUNZHENJI_OK)
        }
        Err(error) => {
            metrics.callback("yunzhenji", "unavailable", "store");
            tracing::error!(
                account = account.as_str(),
                "yunzhenji callback answered 503 so that the vendor retries; it may or may not have been stored (a retry of a stored one is recognised as a redelivery): {error}"
            );
            json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"errcode":-1,"message":"busy, retry"}"#,
            )
        }
    }
}

/// Reads an optional whole number from the query; the error names the parameter.
fn number<T: std::str::FromStr>(query: &Query, name: &str) -> Result<Option<T>, String> {
    match query.get(name) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, got {text:?}")),
    }
}

fn bad_parameter(name: &str, message: String) -> Response {
    desk_error(StatusCode::BAD_REQUEST, message, Some(name))
}

async fn events(State(inbound): State<Inbound>, RawQuery(query): RawQuery) -> Response {
    let inbound = &inbound;
    let query = Query::parse(query.as_deref().unwrap_or_default());
    let after: i64 = match number(&query, "after") {
        Ok(after) => after.unwrap_or(0),
        Err(message) => return bad_parameter("after", message),
    };
    let wait = match number::<u64>(&query, "wait") {
        Ok(wait) => Duration::from_secs(wait.unwrap_or(0)).min(inbound.inner.max_wait),
        Err(message) => return bad_parameter("wait", message),
    };
    let limit = match number::<u32>(&query, "limit") {
        Ok(limit) => limit.unwrap_or(100).clamp(1, 1000),
        Err(message) => return bad_parameter("limit", message),
    };
    let deadline = Instant::now() + wait;
    let mut latest = inbound.inner.latest.subscribe();
    let mut stopping = inbound.inner.stopping.subscribe();
    loop {
        let (page, newest) = match inbound.inner.store.events_after(after, limit).await {
            Ok(found) => (found.events, found.newest),
            Err(error) => return store_unavailable(error),
        };
        if after > newest {
            // A cursor from the future: the desk's store or ours was reset. Waiting would miss
            // every event stored under the ids in between.
            return after_beyond_newest(after, newest);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !page.is_empty() || remaining.is_zero() || *stopping.borrow() {
            let next = page.last().map_or(after, |(id, _)| *id);
            let mut body = String::from("{\"events\":[");
            for (index, (_, event)) in page.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                body.push_str(event);
            }
            body.push_str(&format!("],\"next\":{next}}}"));
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        tokio::select! {
            _ = latest.wait_for(|id| *id > after) => {}
            () = tokio::time::sleep(remaining) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
}

/// `409 {"error":{"message","field":"after","newest"}}`: the cursor is past the newest event.
fn after_beyond_newest(after: i64, newest: i64) -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(json!({ "error": {
            "message": format!(
                "after={after} is beyond the newest event id {newest}: was the relay's store replaced, or the desk's cursor kept from another relay? Read again from after={newest} (new events only) or after=0 (everything still kept)"
            ),
            "field": "after",
            "newest": newest,
        }})),
    )
        .into_response()
}

/// The `account` a session route names, `dialogue` when it names none; an account that is not
/// configured is a 422 naming it, not an empty answer that looks like an unknown user.
fn account_of<'a>(inbound: &Inbound, query: &'a Query) -> Result<&'a str, Box<Response>> {
    let account = query
        .get("account")
        .filter(|name| !name.is_empty())
        .unwrap_or(DIALOGUE_ACCOUNT);
    if account == DIALOGUE_ACCOUNT || inbound.inner.accounts.knows(account) {
        Ok(account)
    } else {
        Err(Box::new(desk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "account {account:?} is not configured: name a [wechat.<name>] account, or none for the Dialogue platform"
            ),
            Some("account"),
        )))
    }
}

async fn get_session(
    State(inbound): State<Inbound>,
    Path(openid): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    use kefu_payload::limits;
    let query = Query::parse(query.as_deref().unwrap_or_default());
    if let Err(error) = limits::check("openid", &openid, limits::OPENID) {
        return desk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.to_string(),
            Some("openid"),
        );
    }
    let account = match account_of(&inbound, &query) {
        Ok(account) => account,
        Err(refused) => return *refused,
    };
    match inbound.inner.store.session(account, &openid).await {
        Ok(Some(session)) => axum::Json(session).into_response(),
        Ok(None) => desk_error(
            StatusCode::NOT_FOUND,
            "no callback or session call has named this user yet",
            None,
        ),
        Err(error) => store_unavailable(error),
    }
}

async fn list_sessions(State(inbound): State<Inbound>, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref().unwrap_or_default());
    let wanted = match query.get("state") {
        None | Some("") => None,
        Some(text) => match text.parse::<KefuState>() {
            Ok(state) => Some(state),
            Err(_) => {
                return desk_error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "state must be asking, needperson, personserving or complete, got {text:?}"
                    ),
                    Some("state"),
                );
            }
        },
    };
    let limit = match number::<u32>(&query, "limit") {
        Ok(limit) => limit.unwrap_or(100).clamp(1, 1000),
        Err(message) => return bad_parameter("limit", message),
    };
    let account = match account_of(&inbound, &query) {
        Ok(account) => account,
        Err(refused) => return *refused,
    };
    match inbound.inner.store.sessions(account, wanted, limit).await {
        Ok(sessions) => axum::Json(json!({ "sessions": sessions })).into_response(),
        Err(error) => store_unavailable(error),
    }
}
