//! The operator console: `serve`'s pages at `/console` for the decisions the relay leaves to
//! people (an ambiguous message, a failure that needs another channel, a token that keeps
//! failing, users waiting for a person). It is off unless `[console] password_hash` is set.
//!
//! | Route | What it does |
//! |---|---|
//! | `GET /console/login`, `POST /console/login` | the login form; the post's `password` is checked against the argon2 hash |
//! | `POST /console/logout` | ends the session |
//! | `GET /console` | the console (overview, queue, messages, a user's timeline), as one page of static files |
//! | `GET /console/assets/…` | its script and style sheet, embedded in the binary |
//! | `GET /console/api/overview` | per account: jobs by state, token status; the webhook backlog; the store's health; the last hour's deliveries and latency |
//! | `GET /console/api/queue` | users waiting for a person (`needperson`), longest first |
//! | `GET /console/api/messages?…` | failed and ambiguous messages, newest first, a page at a time |
//! | `GET /console/api/users/{account}/{openid}` | one user's session, messages and events |
//! | `POST /console/api/resend`, `POST /console/api/resolve` | `{"ids": […], "action": "…"}`: the API's resend, or marking resolved |
//!
//! Safety: a login is a random cookie (`HttpOnly`, `SameSite=Strict`, `Path=/console`, an
//! expiry, `Secure` behind TLS) whose SHA-256 keys the session in memory; every `POST` but the
//! login carries the session's CSRF token in `X-CSRF-Token`, and one with a foreign `Origin` is
//! refused; every answer carries a `Content-Security-Policy` that allows no inline script and
//! nothing from elsewhere. The page builds its text with `textContent` only, so a message's
//! `<script>` is shown, not run. No account secret is read by any route. Wrong passwords are
//! slowed per client address ([`sessions::Throttle`]) and argon2 runs at most two at a time.
//! Every action is logged with the operator and the session, and is idempotent: a resend
//! carries the page's action id as its `Idempotency-Key`, so that the same click sent twice
//! queues the job once.
//!
//! Sessions live in the relay's memory: behind a load balancer, keep an operator on one relay
//! (a restart logs everyone out). The counts, pages and marks come from the shared store, so
//! every relay shows the fleet's; the charts are this relay's own deliveries.

mod actions;
mod assets;
pub mod password;
mod sessions;
mod views;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::api::ApiState;
use crate::config::{ConsoleConfig, SecureCookie};
use crate::http_server::PeerAddr;
use sessions::{Session, Sessions, Throttle};

/// The session cookie's name.
const COOKIE: &str = "kefu_console";

/// The policy of every console answer: scripts and styles from the console's own files only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Password checks running at once at most: argon2 costs 19 MiB and tens of milliseconds.
const CHECKS_AT_ONCE: usize = 2;

/// What the console's routes share.
pub(crate) struct Console {
    api: Arc<ApiState>,
    password_hash: String,
    secure_cookie: SecureCookie,
    sessions: Sessions,
    throttle: Throttle,
    checks: Semaphore,
}

/// The console's routes, to merge into the API's router.
pub(crate) fn router(api: Arc<ApiState>, config: &ConsoleConfig) -> Router<Arc<ApiState>> {
    let console = Arc::new(Console {
        api,
        password_hash: config.password_hash.expose().to_owned(),
        secure_cookie: config.secure_cookie,
        sessions: Sessions::new(config.session_ttl),
        throttle: Throttle::default(),
        checks: Semaphore::new(CHECKS_AT_ONCE),
    });
    let logged_in = Router::new()
        .route("/console", get(assets::shell))
        .route("/console/", get(assets::shell))
        .route("/console/api/overview", get(views::overview))
        .route("/console/api/queue", get(views::queue))
        .route("/console/api/messages", get(views::messages))
        .route("/console/api/users/{account}/{openid}", get(views::user))
        .route("/console/api/resend", post(actions::resend))
        .route("/console/api/resolve", post(actions::resolve))
        .route("/console/logout", post(actions::logout))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&console),
            require_session,
        ));
    Router::new()
        .merge(logged_in)
        .route("/console/login", get(login_page).post(login))
        .route("/console/assets/{file}", get(assets::file))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// The headers of every console answer: the policy, no sniffing, no referrer to other sites
/// (`no-referrer` would make a browser send `Origin: null`, which the origin check refuses), no caching of
/// what the console shows.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The value of the session cookie in the request, if any.
fn cookie_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether a `POST` may be from another site: its `Origin` names another host than the one it
/// was sent to. (A browser sends `Origin` with every `POST`; a request without one is no
/// browser's cross-site form.)
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority != Some(host) || host.is_empty()
}

/// A JSON refusal, in the API's error shape.
fn refusal(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"message": message}})),
    )
        .into_response()
}

/// Lets a request through only with a live session, and a `POST` only with its CSRF token
/// and no foreign origin; the session goes to the handler as an extension.
async fn require_session(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let session =
        cookie_of(headers).and_then(|cookie| console.sessions.find(cookie, Instant::now()));
    let Some(session) = session else {
        if request.method() == axum::http::Method::GET && !request.uri().path().contains("/api/") {
            return see_other("/console/login");
        }
        return refusal(
            StatusCode::UNAUTHORIZED,
            "not logged in, or the login expired: log in again at /console/login",
        );
    };
    if request.method() == axum::http::Method::POST {
        let presented = headers
            .get("x-csrf-token")
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let valid = bool::from(presented.ct_eq(session.csrf.as_bytes()));
        if !valid || foreign_origin(headers) {
            tracing::warn!(
                session = %session.handle,
                path = request.uri().path(),
                "console action refused: missing or wrong CSRF token, or a foreign Origin"
            );
            return refusal(
                StatusCode::FORBIDDEN,
                "the action lacks this page's CSRF token: reload the console and try again",
            );
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// A `303 See Other` to `location`.
fn see_other(location: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response()
}

async fn login_page() -> Response {
    assets::login_page(StatusCode::OK, "")
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    password: String,
    /// Who is logging in, for the records (optional).
    #[serde(default)]
    operator: String,
}

/// The longest operator name kept.
const MAX_NAME_CHARS: usize = 40;

/// The operator's name as records keep it: printable characters only, at most
/// [`MAX_NAME_CHARS`].
fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

async fn login(State(console): State<Arc<Console>>, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip());
    let headers = request.headers().clone();
    if foreign_origin(&headers) {
        return assets::login_page(
            StatusCode::FORBIDDEN,
            "This login came from another site and was refused.",
        );
    }
    if let Some(wait) = console.throttle.wait(client, Instant::now()) {
        tracing::warn!(%client, wait_s = wait.as_secs_f32().ceil(), "console login refused: too many wrong passwords");
        let mut response = assets::login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords from this address: wait a little, then try again.",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &()).await else {
        return assets::login_page(
            StatusCode::BAD_REQUEST,
            "The form was not understood: send the password field.",
        );
    };
    let Ok(_check) = console.checks.acquire().await else {
        return assets::login_page(StatusCode::SERVICE_UNAVAILABLE, "The relay is stopping.");
    };
    let hash = console.password_hash.clone();
    let password = form.password;
    let matched = tokio::task::spawn_blocking(move || password::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    if !matched {
        console.throttle.failed(client, Instant::now());
        tracing::warn!(%client, "console login refused: wrong password");
        return assets::login_page(StatusCode::UNAUTHORIZED, "Wrong password.");
    }
    console.throttle.succeeded(client);
    let (cookie, session) = console
        .sessions
        .open(clean_name(&form.operator), Instant::now());
    tracing::info!(operator = %session.operator(), %client, "console login");
    let mut response = see_other("/console");
    let secure = match console.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => behind_tls(&headers),
    };
    let value = session_cookie(&cookie, console.sessions.ttl(), secure);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

use axum::extract::FromRequest as _;

/// Whether a TLS proxy in front says the request came over HTTPS.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a login.
fn session_cookie(cookie: &str, ttl: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={cookie}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the login cookie.
fn cleared_cookie() -> &'static str {
    "kefu_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
}

/// The session a logged-in request carries (set by [`require_session`]).
type LoggedIn = axum::Extension<Session>;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; kefu_console=abc; b=2")]);
        assert_eq!(cookie_of(&h), Some("abc"));
        assert_eq!(cookie_of(&headers(&[("cookie", "kefu_consoleX=1")])), None);
        assert_eq!(cookie_of(&HeaderMap::new()), None);
    }

    #[test]
    fn an_origin_must_be_the_host() {
        assert!(!foreign_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!foreign_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(foreign_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(foreign_origin(&headers(&[("origin", "null")])));
    }

    #[test]
    fn the_login_cookie_is_http_only_strict_and_secure_behind_tls() {
        let cookie = session_cookie("c0ffee", Duration::from_secs(60), false);
        assert_eq!(
            cookie,
            "kefu_console=c0ffee; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("c", Duration::from_secs(1), true).ends_with("; Secure"));
        assert!(behind_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(!behind_tls(&headers(&[("x-forwarded-proto", "http")])));
        assert!(!behind_tls(&HeaderMap::new()));
    }

    #[test]
    fn an_operator_name_keeps_printable_characters_only() {
        assert_eq!(clean_name(" ana\n\u{1b}[31m "), "ana[31m");
        assert_eq!(clean_name(&"x".repeat(100)).len(), MAX_NAME_CHARS);
    }
}
