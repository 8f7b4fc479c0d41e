//! What the console shows, as JSON for its page: the overview, the queue of users waiting for a
//! person, pages of failed and ambiguous messages, and one user's timeline. Nothing here reads
//! an account's secret.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kefu_core::now_ms;
use kefu_payload::KefuState;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{COUNTS_FRESH_FOR, Console, refusal};
use crate::store::console::MAX_PAGE;
use crate::store::{JobFilter, JobRecord, JobState, StateCount};

/// A store failure, as the page shows it (the log has the cause).
fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!("the console could not read the store: {error}");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store did not answer; the page tries again",
    )
}

/// The most of a message's body or an event's JSON sent to the page, which shows less.
const MAX_SHOWN_BYTES: usize = 2048;

/// `text` cut to at most [`MAX_SHOWN_BYTES`] (at a character boundary), marked when cut.
fn clip(text: &mut String) {
    if text.len() > MAX_SHOWN_BYTES {
        let cut = (0..=MAX_SHOWN_BYTES)
            .rev()
            .find(|&at| text.is_char_boundary(at))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
}

/// Jobs with their bodies clipped for the page.
fn clipped(mut jobs: Vec<JobRecord>) -> Vec<JobRecord> {
    for job in &mut jobs {
        clip(&mut job.payload);
    }
    jobs
}

/// Rows shown per page unless the page asks for another number.
const PAGE: u32 = 50;

/// `GET /console/api/overview`.
pub(super) async fn overview(State(console): State<Arc<Console>>) -> Response {
    let api = &console.api;
    let started = Instant::now();
    let ping = api.store.ping().await;
    let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
    let counts = match console.state_counts().await {
        Ok(counts) => counts,
        Err(error) => return unavailable(error),
    };
    let backlog = match api.store.webhook_backlog().await {
        Ok(backlog) => backlog,
        Err(error) => return unavailable(error),
    };
    let mut accounts = Vec::new();
    for name in api.providers.names() {
        let waiting = match api
            .store
            .sessions(name, Some(KefuState::NeedPerson), MAX_PAGE)
            .await
        {
            Ok(sessions) => sessions.len(),
            Err(error) => return unavailable(error),
        };
        accounts.push(account_view(name, &counts, waiting, console.token_of(name)));
    }
    Json(json!({
        "now_ms": now_ms(),
        "store": {
            "backend": api.store_backend,
            "healthy": ping.is_ok(),
            "ping_ms": ping_ms,
        },
        "webhook_backlog": backlog,
        "accounts": accounts,
        "last_hour": api.metrics.last_hour(),
    }))
    .into_response()
}

impl Console {
    /// The jobs by account and state, counted at most once per [`COUNTS_FRESH_FOR`]: counting
    /// reads every job, and every open overview asks every few seconds.
    async fn state_counts(&self) -> crate::store::StoreResult<Vec<StateCount>> {
        let mut cached = self.counts.lock().await;
        if let Some((at, counts)) = cached.as_ref() {
            if at.elapsed() < COUNTS_FRESH_FOR {
                return Ok(counts.clone());
            }
        }
        let counts = self.api.store.state_counts().await?;
        *cached = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// The access-token status of a `[wechat.<name>]` account that sends, if `name` is one.
    fn token_of(&self, name: &str) -> Option<kefu_client::wechat::TokenStatus> {
        self.api
            .wechat
            .get(name)
            .map(|provider| provider.tokens().status())
    }
}

/// Every state, in the order the console lists them.
const STATES: [JobState; 6] = [
    JobState::Queued,
    JobState::Sending,
    JobState::Accepted,
    JobState::Delivered,
    JobState::Failed,
    JobState::Ambiguous,
];

fn account_view(
    name: &str,
    counts: &[StateCount],
    waiting: usize,
    token: Option<kefu_client::wechat::TokenStatus>,
) -> Value {
    let states: serde_json::Map<String, Value> = STATES
        .iter()
        .map(|state| {
            let count = counts
                .iter()
                .filter(|count| count.account == name && count.state == *state)
                .map(|count| count.count)
                .sum::<u64>();
            (state.as_str().to_owned(), json!(count))
        })
        .collect();
    json!({
        "name": name,
        "states": states,
        "needperson": waiting,
        // The count stops at one page of sessions.
        "needperson_more": waiting >= MAX_PAGE as usize,
        "token": token,
    })
}

/// One user waiting for a person.
#[derive(Debug, Serialize)]
struct Waiting {
    account: String,
    openid: String,
    since_ms: i64,
    waited_ms: i64,
}

/// `GET /console/api/queue`: users waiting for a person on every account, longest first.
pub(super) async fn queue(State(console): State<Arc<Console>>) -> Response {
    let api = &console.api;
    let now = now_ms();
    let mut waiting = Vec::new();
    for name in api.providers.names() {
        let sessions = match api
            .store
            .sessions(name, Some(KefuState::NeedPerson), MAX_PAGE)
            .await
        {
            Ok(sessions) => sessions,
            Err(error) => return unavailable(error),
        };
        waiting.extend(sessions.into_iter().map(|session| {
            let since_ms = session.requested_at_ms.unwrap_or(session.state_since_ms);
            Waiting {
                account: session.account,
                openid: session.openid,
                since_ms,
                waited_ms: now.saturating_sub(since_ms),
            }
        }));
    }
    waiting.sort_by_key(|w| std::cmp::Reverse(w.waited_ms));
    Json(json!({ "now_ms": now, "waiting": waiting })).into_response()
}

/// The query of `GET /console/api/messages`.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesQuery {
    account: Option<String>,
    reason: Option<String>,
    /// `failed`, `ambiguous`, or both when absent.
    state: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    before: Option<i64>,
    #[serde(default)]
    resolved: bool,
    limit: Option<u32>,
}

/// Blank text fields of a query mean "any".
fn given(field: Option<String>) -> Option<String> {
    field.filter(|text| !text.trim().is_empty())
}

/// A page and the cursor of the next one.
fn page(jobs: Vec<JobRecord>, limit: u32) -> Value {
    let next = (jobs.len() >= limit as usize)
        .then(|| jobs.last().map(|job| job.status.id))
        .flatten();
    json!({ "messages": jobs, "next_before": next })
}

/// `GET /console/api/messages`: failed and ambiguous messages, newest first.
pub(super) async fn messages(
    State(console): State<Arc<Console>>,
    Query(query): Query<MessagesQuery>,
) -> Response {
    let states = match given(query.state).as_deref() {
        None => vec![JobState::Failed, JobState::Ambiguous],
        Some("failed") => vec![JobState::Failed],
        Some("ambiguous") => vec![JobState::Ambiguous],
        Some(_) => {
            return refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "state: expected failed, ambiguous, or nothing for both",
            );
        }
    };
    let limit = query.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let filter = JobFilter {
        account: given(query.account),
        states,
        reason: given(query.reason),
        changed_since_ms: query.since_ms,
        changed_before_ms: query.until_ms,
        include_resolved: query.resolved,
        before_id: query.before,
        limit,
        ..JobFilter::default()
    };
    match console.api.store.jobs(filter).await {
        Ok(jobs) => Json(page(clipped(jobs), limit)).into_response(),
        Err(error) => unavailable(error),
    }
}

/// The query of `GET /console/api/users/{account}/{openid}`.
#[derive(Debug, Deserialize)]
pub(super) struct UserQuery {
    before_job: Option<i64>,
    before_event: Option<i64>,
}

/// `GET /console/api/users/{account}/{openid}`: the user's session, and a page each of their
/// messages and events, newest first; the page merges them into one timeline.
pub(super) async fn user(
    State(console): State<Arc<Console>>,
    Path((account, openid)): Path<(String, String)>,
    Query(query): Query<UserQuery>,
) -> Response {
    let store = &console.api.store;
    let session = match store.session(&account, &openid).await {
        Ok(session) => session,
        Err(error) => return unavailable(error),
    };
    let filter = JobFilter {
        account: Some(account.clone()),
        recipient: Some(openid.clone()),
        include_resolved: true,
        before_id: query.before_job,
        limit: PAGE,
        ..JobFilter::default()
    };
    let jobs = match store.jobs(filter).await {
        Ok(jobs) => clipped(jobs),
        Err(error) => return unavailable(error),
    };
    let mut events = match store
        .user_events(&account, &openid, query.before_event, PAGE)
        .await
    {
        Ok(events) => events,
        Err(error) => return unavailable(error),
    };
    for event in &mut events {
        clip(&mut event.body);
    }
    let next_event = (events.len() >= PAGE as usize)
        .then(|| events.last().map(|event| event.id))
        .flatten();
    let next_job = (jobs.len() >= PAGE as usize)
        .then(|| jobs.last().map(|job| job.status.id))
        .flatten();
    Json(json!({
        "account": account,
        "openid": openid,
        "session": session,
        "messages": jobs,
        "events": events,
        "next_before_job": next_job,
        "next_before_event": next_event,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_is_clipped_at_a_character_boundary() {
        let mut short = "短".to_owned();
        clip(&mut short);
        assert_eq!(short, "短");
        let mut long = "短".repeat(1000);
        clip(&mut long);
        assert!(long.len() <= MAX_SHOWN_BYTES + '…'.len_utf8());
        assert!(long.ends_with('…'));
        assert!(long.trim_end_matches('…').chars().all(|c| c == '短'));
    }
}
