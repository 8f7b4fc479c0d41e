//! What an operator does from the console: resend messages (the API's resend, with the page's
//! action id as the `Idempotency-Key`), mark them resolved, and log out. Each is logged with the
//! operator and the session, and each is idempotent.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Console, LoggedIn, cleared_cookie, cookie_of, refusal};
use crate::api::{Stored, resend_job};
use crate::idempotency::{self, Claim};
use crate::store::{Idempotent, ResendError};

/// Messages one action may name at most.
const MAX_IDS: usize = 200;

/// The body of `POST /console/api/resend` and `/resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Selection {
    ids: Vec<i64>,
    /// The page's id for this click: the same click sent again does nothing more.
    #[serde(default)]
    action: String,
}

/// Reads a selection, or says what is wrong with it.
fn selection(body: &[u8]) -> Result<Selection, &'static str> {
    let selection: Selection = serde_json::from_slice(body)
        .map_err(|_| "expected {\"ids\": [message ids], \"action\": \"an id for this click\"}")?;
    if selection.ids.is_empty() || selection.ids.len() > MAX_IDS {
        return Err("ids: name from 1 to 200 messages");
    }
    Ok(selection)
}

/// Whether an action id is one the page makes: 8 to 64 letters, digits, `-` or `_`.
fn valid_action(action: &str) -> bool {
    (8..=64).contains(&action.len())
        && action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The claim that makes one job's resend of one click happen once.
fn claim(console: &Console, action: &str, id: i64) -> Idempotent {
    let route = "/console/api/resend";
    let id_text = id.to_string();
    Idempotent {
        claim: Claim {
            scope: CONSOLE_SCOPE.to_owned(),
            key: format!("{action}/{id}"),
            route: route.to_owned(),
            request_hash: idempotency::request_hash("POST", route, &[&id_text], b""),
            retention_ms: i64::try_from(console.api.idempotency_retention.as_millis())
                .unwrap_or(i64::MAX),
        },
        answer: resent_answer,
    }
}

/// The scope of the console's resends among the stored keys: apart from the desks'.
const CONSOLE_SCOPE: &str = "console";

fn resent_answer(ids: &[i64]) -> idempotency::Saved {
    idempotency::Saved {
        status: 202,
        body: json!({ "id": ids.first() }).to_string().into_bytes(),
    }
}

/// `POST /console/api/resend`: queues each failed or ambiguous message again, once per click.
pub(super) async fn resend(
    State(console): State<Arc<Console>>,
    axum::Extension(session): LoggedIn,
    body: Bytes,
) -> Response {
    let selection = match selection(&body) {
        Ok(selection) => selection,
        Err(wrong) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, wrong),
    };
    if !valid_action(&selection.action) {
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "action: expected the page's id for this click (8 to 64 letters, digits, - or _)",
        );
    }
    let operator = session.operator();
    let mut results = Vec::new();
    for id in selection.ids {
        let key = claim(&console, &selection.action, id);
        let result = match resend_job(&console.api, id, Some(key), Some(operator.clone())).await {
            Ok(Ok(Stored::Now(_))) => json!({"id": id, "result": "queued"}),
            Ok(Ok(Stored::Earlier(_))) => json!({"id": id, "result": "already_queued"}),
            Ok(Err(ResendError::NotFound)) => json!({"id": id, "result": "not_found"}),
            Ok(Err(ResendError::NotResendable(state))) => {
                json!({"id": id, "result": "not_resendable", "state": state})
            }
            Err(error) => {
                return refusal(error.status(), error.message());
            }
        };
        tracing::info!(
            operator = %operator,
            session = %session.handle,
            action = "resend",
            job = id,
            result = result["result"].as_str().unwrap_or_default(),
            "console action"
        );
        results.push(result);
    }
    Json(json!({ "results": results })).into_response()
}

/// `POST /console/api/resolve`: marks failed and ambiguous messages resolved.
pub(super) async fn resolve(
    State(console): State<Arc<Console>>,
    axum::Extension(session): LoggedIn,
    body: Bytes,
) -> Response {
    let selection = match selection(&body) {
        Ok(selection) => selection,
        Err(wrong) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, wrong),
    };
    let operator = session.operator();
    let resolved = match console
        .api
        .store
        .resolve(selection.ids.clone(), operator.clone())
        .await
    {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::error!("the console could not resolve messages: {error}");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store did not answer; nothing was resolved, try again",
            );
        }
    };
    let unchanged: Vec<i64> = selection
        .ids
        .iter()
        .copied()
        .filter(|id| !resolved.contains(id))
        .collect();
    tracing::info!(
        operator = %operator,
        session = %session.handle,
        action = "resolve",
        resolved = ?resolved,
        unchanged = ?unchanged,
        "console action"
    );
    Json(json!({ "resolved": resolved, "unchanged": unchanged })).into_response()
}

/// `POST /console/logout`: ends the session.
pub(super) async fn logout(
    State(console): State<Arc<Console>>,
    axum::Extension(session): LoggedIn,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(cookie) = cookie_of(&headers) {
        console.sessions.close(cookie);
    }
    tracing::info!(operator = %session.operator(), session = %session.handle, "console logout");
    let mut response = Json(json!({"logged_out": true})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_id_is_a_short_token() {
        assert!(valid_action("0123abcd"));
        assert!(valid_action("a-b_c-d-e-f-0123456789"));
        assert!(!valid_action("short"));
        assert!(!valid_action(&"x".repeat(65)));
        assert!(!valid_action("has space"));
        assert!(!valid_action("slash/../x"));
    }

    #[test]
    fn a_selection_names_one_to_two_hundred_ids() {
        assert!(selection(br#"{"ids":[1,2],"action":"abcdefgh"}"#).is_ok());
        assert!(selection(br#"{"ids":[]}"#).is_err());
        let many = format!("{{\"ids\":{:?}}}", (0..201).collect::<Vec<i64>>());
        assert!(selection(many.as_bytes()).is_err());
        assert!(selection(br#"{"ids":[1],"extra":1}"#).is_err());
        assert!(selection(b"not json").is_err());
    }
}
