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
//! slowed per client address (`sessions::Throttle`) and argon2 runs at most two at a time.
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

use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
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

/// The largest login form read.
const LOGIN_BODY_BYTES: usize = 4096;

/// How long the overview's counts are reused: counting every job costs a scan.
pub(crate) const COUNTS_FRESH_FOR: Duration = Duration::from_secs(5);

/// Password checks running at once at most: argon2 costs 19 MiB and tens of milliseconds.
const CHECKS_AT_ONCE: usize = 2;

/// What the console's routes share.
pub(crate) struct Console {
    api: Arc<ApiState>,
    password_hash: String,
    secure_cookie: SecureCookie,
    sessions: Sessions,
    throttle: Throttle,
    checks: Arc<Semaphore>,
    trusted_proxies: Vec<IpAddr>,
    /// The jobs by account and state, read at most once per [`COUNTS_FRESH_FOR`] however many
    /// consoles are open.
    counts: tokio::sync::Mutex<Option<(Instant, Vec<crate::store::StateCount>)>>,
}

/// The console's routes, to merge into the API's router.
pub(crate) fn router(api: Arc<ApiState>, config: &ConsoleConfig) -> Router<Arc<ApiState>> {
    let console = Arc::new(Console {
        api,
        password_hash: config.password_hash.expose().to_owned(),
        secure_cookie: config.secure_cookie,
        sessions: Sessions::new(config.session_ttl),
        throttle: Throttle::default(),
        checks: Arc::new(Semaphore::new(CHECKS_AT_ONCE)),
        trusted_proxies: config.trusted_proxies.clone(),
        counts: tokio::sync::Mutex::new(None),
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
        .route(
            "/console/login",
            get(login_page)
                .post(login)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_BYTES)),
        )
        .route("/console/assets/{file}", get(assets::file))
        .route("/console/{*rest}", axum::routing::any(no_page))
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
/// was sent to (through a trusted proxy, the one `X-Forwarded-Host` names). A browser sends
/// `Origin` with every `POST`; a request without one is no browser's cross-site form.
fn foreign_origin(headers: &HeaderMap, via_proxy: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let forwarded = via_proxy.then(|| headers.get("x-forwarded-host")).flatten();
    let host = forwarded
        .or_else(|| headers.get(header::HOST))
        .and_then(|host| host.to_str().ok())
        .map(str::trim)
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
        let proxied = via_proxy(
            &console.trusted_proxies,
            request.extensions().get::<PeerAddr>(),
        );
        if !valid || foreign_origin(headers, proxied) {
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

/// Any other path under `/console`: 404, with the console's headers.
async fn no_page(request: Request) -> Response {
    crate::api::no_route(request.uri().path())
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

/// The operator's name as records keep it: printable characters only (no control characters,
/// no bidirectional overrides that would show it reversed), at most [`MAX_NAME_CHARS`].
fn clean_name(name: &str) -> String {
    let bidi = |c: &char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    name.chars()
        .filter(|c| !c.is_control() && !bidi(c))
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The longest password checked: argon2 takes any length, the relay does not need to.
const MAX_PASSWORD_BYTES: usize = 1024;
/// How long a login waits for a password check to be free; then it is told to come back.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Whether the request came through one of the `trusted` proxies.
fn via_proxy(trusted: &[IpAddr], peer: Option<&PeerAddr>) -> bool {
    peer.is_some_and(|peer| trusted.contains(&peer.0.ip()))
}

/// The client's address: the connection's, or through a trusted proxy the nearest address in
/// `X-Forwarded-For` that is not one of the `trusted` proxies.
fn client_of(trusted: &[IpAddr], peer: Option<&PeerAddr>, headers: &HeaderMap) -> IpAddr {
    let direct = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip());
    if !via_proxy(trusted, peer) {
        return direct;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // What is left of it was written by someone the proxies do not vouch for.
            Err(_) => return direct,
        }
    }
    direct
}

/// The login page of a refusal that asks the client to wait `wait`.
fn come_back_later(status: StatusCode, message: &str, wait: Duration) -> Response {
    let mut response = assets::login_page(status, message);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn login(State(console): State<Arc<Console>>, request: Request) -> Response {
    let peer = request.extensions().get::<PeerAddr>().copied();
    let headers = request.headers().clone();
    let client = client_of(&console.trusted_proxies, peer.as_ref(), &headers);
    if foreign_origin(&headers, via_proxy(&console.trusted_proxies, peer.as_ref())) {
        return assets::login_page(
            StatusCode::FORBIDDEN,
            "This login came from another site and was refused.",
        );
    }
    // Counted as a wrong password from here until it proves right; one at a time per client.
    let attempt = match console.throttle.begin(client, Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::warn!(%client, wait_s = wait.as_secs_f32().ceil(), "console login refused: too many wrong passwords");
            return come_back_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong passwords from this address: wait a little, then try again.",
                wait,
            );
        }
    };
    let form = match Form::<LoginForm>::from_request(request, &()).await {
        Ok(Form(form)) if form.password.len() <= MAX_PASSWORD_BYTES => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return assets::login_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large: a password has at most 1024 bytes.",
            );
        }
        _ => {
            return assets::login_page(
                StatusCode::BAD_REQUEST,
                "The form was not understood: send the password field (at most 1024 bytes).",
            );
        }
    };
    let permit = match tokio::time::timeout(
        CHECK_QUEUE_WAIT,
        Arc::clone(&console.checks).acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            return assets::login_page(StatusCode::SERVICE_UNAVAILABLE, "The relay is stopping.");
        }
        Err(_) => {
            tracing::warn!(%client, "console login refused: password checks are all busy");
            return come_back_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many logins at once: try again in a moment.",
                Duration::from_secs(1),
            );
        }
    };
    let hash = console.password_hash.clone();
    let password = form.password;
    // The permit goes with the check: it is held until argon2 is done, even if the client
    // hangs up and this request is dropped.
    let matched = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        password::verify_password(&hash, &password)
    })
    .await
    .unwrap_or(false);
    if !matched {
        attempt.failed(Instant::now());
        tracing::warn!(%client, "console login refused: wrong password");
        return assets::login_page(StatusCode::UNAUTHORIZED, "Wrong password.");
    }
    attempt.succeeded();
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

/// The `Set-Cookie` value that removes the login cookie: the same cookie, empty and expired.
fn cleared_cookie() -> String {
    session_cookie("", Duration::ZERO, false)
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
        assert!(!foreign_origin(
            &headers(&[("host", "127.0.0.1:8080")]),
            false
        ));
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(!foreign_origin(&same, false));
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(foreign_origin(&evil, false));
        assert!(foreign_origin(&headers(&[("origin", "null")]), false));
        // Through a trusted proxy, the host the browser asked for is X-Forwarded-Host.
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://console.example"),
            ("x-forwarded-host", "console.example"),
        ]);
        assert!(!foreign_origin(&proxied, true));
        assert!(
            foreign_origin(&proxied, false),
            "only a trusted proxy's header counts"
        );
    }

    #[test]
    fn the_client_is_read_from_x_forwarded_for_only_through_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let peer = PeerAddr("10.0.0.2:40000".parse().unwrap());
        let forwarded = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(
            client_of(&[], Some(&peer), &forwarded),
            proxy,
            "no proxy trusted"
        );
        assert_eq!(
            client_of(&[proxy], Some(&peer), &forwarded),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "the nearest hop the proxies do not vouch for"
        );
        let garbled = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip")]);
        assert_eq!(client_of(&[proxy], Some(&peer), &garbled), proxy);
        let direct = PeerAddr("192.0.2.1:5000".parse().unwrap());
        assert_eq!(
            client_of(&[proxy], Some(&direct), &forwarded),
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "a client that is no proxy cannot name another address"
        );
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
        assert_eq!(
            cleared_cookie(),
            "kefu_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn an_operator_name_keeps_printable_characters_only() {
        assert_eq!(clean_name(" ana\n\u{1b}[31m "), "ana[31m");
        assert_eq!(clean_name("\u{202e}ana\u{2066}"), "ana");
        assert_eq!(clean_name(&"x".repeat(100)).len(), MAX_NAME_CHARS);
    }
}
