//! Access tokens for one AppID (protocols.md §6.4): `stable_token` in normal mode, cached in
//! memory and in a [`TokenStore`], refreshed ahead in the last 5 minutes, one fetch at a time,
//! compare-and-invalidate on rejection, never a loop.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use kefu_core::{Attempt, Class, Reason, StoredToken, TokenStore, now_ms};
use kefu_payload::cgibin::{StableTokenRequest, classify_token};

use super::counters::Counters;
use super::redact::redact;
use crate::transport::{HttpClient, exchange};

/// Help for the operator command that forces a new token (`token refresh --force`).
pub const FORCE_REFRESH_HELP: &str = "Forces a new access token with stable_token force_refresh=true, \
invalidating the current one at once for every replica. Only for a leaked token: the platform \
allows 20 forced refreshes a day, at least 30 s apart (otherwise it does not refresh).";

/// The platform renews a stable token in its last 5 minutes; so do we.
const REFRESH_AHEAD_MS: i64 = 5 * 60 * 1000;

/// After a refresh ahead fails, the still-valid token is used this long before trying again, so
/// that a failing token endpoint costs one fetch per period rather than one per send.
const AHEAD_RETRY_MS: i64 = 30 * 1000;

/// A wrong AppID or AppSecret, or an IP not on the whitelist (40013, 40125, 40164), is remembered
/// this long: every send meanwhile fails at once with the same attempt instead of refetching, so
/// a wrong secret costs one fetch per period, not one per send (a token storm otherwise).
const CONFIG_FAILURE_HOLD_MS: i64 = 10 * 1000;

/// A throttled fetch (45009: the AppID's daily quota of token calls) is remembered this long: the
/// quota does not come back within seconds, and every fetch meanwhile would only spend more.
const THROTTLED_HOLD_MS: i64 = 60 * 1000;

/// The longest token accepted; the platform asks to reserve 512 characters.
const MAX_TOKEN_LEN: usize = 2048;

/// A fleet fetch lease lasts the fetch timeout and this much more (saving the token, clock
/// skew between a relay and the database).
const FLEET_FETCH_MARGIN: Duration = Duration::from_secs(2);

/// How often a relay waiting for another relay's fetch looks for the token it saved.
const FLEET_FETCH_POLL: Duration = Duration::from_millis(200);

/// An access token. A secret: `Debug` hides it; only [`expose`](AccessToken::expose) shows it,
/// to put it in a request.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The token, for the request's query string only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Why no token could be had. Its message is free of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    attempt: Attempt,
}

impl TokenError {
    fn new(class: Class, code: Option<i64>, message: impl Into<String>) -> TokenError {
        TokenError {
            attempt: Attempt::new(class, code, message),
        }
    }

    /// What the relay should make of it: 40013, 40125 and 40164 are terminal `config`, 45009
    /// throttled, −1 and transport failures transient.
    pub fn class(&self) -> Class {
        self.attempt.class
    }

    /// The platform's code, if it answered one.
    pub fn code(&self) -> Option<i64> {
        self.attempt.code
    }

    /// The platform's request id, if any.
    pub fn rid(&self) -> Option<&str> {
        self.attempt.rid.as_deref()
    }

    /// The failure as the attempt of a call that could not be made for want of a token.
    pub fn into_attempt(self) -> Attempt {
        self.attempt
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attempt.message)?;
        if let Some(rid) = &self.attempt.rid {
            write!(f, ", rid {rid}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenError {}

/// The cached token and what is known of it.
struct Cached {
    token: AccessToken,
    expires_at_ms: i64,
    /// Until then, a token inside the refresh-ahead window is used without fetching.
    hold_until_ms: i64,
}

/// The last fetch's failure, shared with the callers that waited for that fetch and, when it is
/// terminal `config` or throttled, with every caller until `until_ms`.
struct Failure {
    error: TokenError,
    /// The number of the fetch that failed (see `TokenManager::fetches`).
    fetch: u64,
    /// Until then, callers fail with `error` without fetching; 0 for a transient failure.
    until_ms: i64,
}

/// The access tokens of one AppID (protocols.md §6.4).
///
/// * Source: `POST {api_base_url}/cgi-bin/stable_token` with `force_refresh=false`, idempotent
///   across replicas; `/cgi-bin/token` is never called.
/// * Cache: in memory, and in the [`TokenStore`] if one is given, so that a restart reuses the
///   stored token. A token is fetched again once it is within 5 minutes of its expiry; if that
///   fetch fails, the still-valid token keeps serving (the next try is 30 s later).
/// * Fleet: relays sharing the token store fetch one at a time per AppID
///   ([`TokenStore::begin_fetch`]); a relay whose turn it is not waits for the token the other
///   saves, serving meanwhile a token still valid, and fetches itself once the other's lease
///   runs out.
/// * Single flight: at most one fetch at a time; callers that waited re-check the cache before
///   fetching (double-check), and share the failure of a fetch that ended while they waited
///   rather than fetching again. A `config` failure is remembered 10 s and a throttled one 60 s,
///   during which callers fail at once with the same attempt. Each fetch is bounded by the fetch
///   timeout.
/// * Rejection (40001, 40014, 42001): [`refresh_after_rejection`](TokenManager::refresh_after_rejection)
///   drops the token only if it is still the one that failed (memory and store), fetches in
///   normal mode, and fails `config` if the platform gives the same token back.
pub struct TokenManager {
    account: String,
    appid: String,
    secret: Box<str>,
    url: Uri,
    redacted_url: String,
    http: HttpClient,
    store: Option<Arc<dyn TokenStore>>,
    fetch_timeout: Duration,
    max_response_bytes: usize,
    cached: Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
    /// Fetches ended so far: a caller that saw `n` before it queued shares the failure of any
    /// fetch numbered above `n`.
    fetches: AtomicU64,
    failure: Mutex<Option<Failure>>,
    counters: Arc<Counters>,
    /// When a fetch last brought a token, and the last fetch that failed, for [`TokenStatus`].
    history: Mutex<FetchHistory>,
}

/// When fetches last succeeded and failed.
#[derive(Debug, Clone, Default)]
struct FetchHistory {
    /// When a fetch last brought a token (Unix ms).
    last_refresh_ms: Option<i64>,
    /// When a fetch last failed (Unix ms), with its error.
    last_error: Option<(i64, String)>,
}

/// What an operator sees of an account's access token: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenStatus {
    /// When the token this relay holds expires (Unix ms); `None` before the first one.
    pub expires_at_ms: Option<i64>,
    /// When this relay last fetched a token (Unix ms).
    pub last_refresh_ms: Option<i64>,
    /// When this relay's last failed fetch was (Unix ms), with its error.
    pub last_error_ms: Option<i64>,
    /// The last failed fetch's error (it names no secret).
    pub last_error: Option<String>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("account", &self.account)
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("url", &self.redacted_url)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

/// What a [`TokenManager`] is made of; built by the provider's builder.
pub(crate) struct TokenConfig {
    pub(crate) account: String,
    pub(crate) appid: String,
    pub(crate) secret: String,
    pub(crate) url: Uri,
    pub(crate) redacted_url: String,
    pub(crate) http: HttpClient,
    pub(crate) store: Option<Arc<dyn TokenStore>>,
    pub(crate) fetch_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) counters: Arc<Counters>,
}

impl TokenManager {
    pub(crate) fn new(config: TokenConfig) -> TokenManager {
        TokenManager {
            account: config.account,
            appid: config.appid,
            secret: config.secret.into_boxed_str(),
            url: config.url,
            redacted_url: config.redacted_url,
            http: config.http,
            store: config.store,
            fetch_timeout: config.fetch_timeout,
            max_response_bytes: config.max_response_bytes,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            failure: Mutex::new(None),
            counters: config.counters,
            history: Mutex::new(FetchHistory::default()),
        }
    }

    /// A token to call with: the cached one while it is more than 5 minutes from expiry, else
    /// the stored one, else a fetched one.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cached_fresh(now_ms()) {
            return Ok(token);
        }
        if let Some(error) = self.failure_held(now_ms()) {
            return self.cached_valid(now_ms()).ok_or(error);
        }
        let seen = self.fetches.load(Ordering::SeqCst);
        let _fetching = match self.fetching.try_lock() {
            Ok(guard) => guard,
            // A fetch is under way: a token still valid serves rather than waits for it.
            Err(_) => match self.cached_valid(now_ms()) {
                Some(token) => return Ok(token),
                None => self.fetching.lock().await,
            },
        };
        // Someone may have fetched while this caller waited for the lock.
        if let Some(token) = self.cached_fresh(now_ms()) {
            return Ok(token);
        }
        if let Some(error) = self.failure_since(seen) {
            return self.cached_valid(now_ms()).ok_or(error);
        }
        if let Some(token) = self.stored_fresh().await {
            return Ok(token);
        }
        match self.fetch_in_turn().await {
            Ok(token) => Ok(token),
            Err(error) => {
                let now = now_ms();
                let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
                match cached.as_mut() {
                    // Still valid: the failed fetch was a refresh ahead.
                    Some(c) if c.expires_at_ms > now => {
                        c.hold_until_ms = now + AHEAD_RETRY_MS;
                        tracing::warn!(
                            account = %self.account,
                            expires_in_s = (c.expires_at_ms - now) / 1000,
                            "access token refresh ahead failed, the current token keeps serving: {error}"
                        );
                        Ok(c.token.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// After the platform rejected `failed` (40001, 40014, 42001): drops it from memory and
    /// store if it is still the current one (compare-and-invalidate), then gets a token again
    /// in normal mode. A token equal to `failed` is a `config` failure: replaying with it could
    /// only fail again.
    pub async fn refresh_after_rejection(
        &self,
        failed: &AccessToken,
    ) -> Result<AccessToken, TokenError> {
        self.invalidate(failed).await;
        let fresh = self.token().await?;
        if fresh == *failed {
            self.counters.same_token();
            self.counters.config_failure();
            tracing::error!(
                account = %self.account,
                "stable_token gave back the access token the platform had just rejected; check that no other system forces refreshes for this AppID"
            );
            return Err(TokenError::new(
                Class::Terminal(Reason::Config),
                None,
                "the platform rejected the access token and stable_token gave the same one back; check that no other system forces refreshes for this AppID",
            ));
        }
        self.counters.refresh_replay();
        Ok(fresh)
    }

    /// Drops `failed` from memory and store if it is still the token held there; `true` if
    /// the memory held it.
    pub async fn invalidate(&self, failed: &AccessToken) -> bool {
        let dropped = {
            let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            match cached.as_ref() {
                Some(c) if c.token == *failed => {
                    *cached = None;
                    true
                }
                _ => false,
            }
        };
        if let Some(store) = &self.store {
            if let Err(e) = store.invalidate(&self.appid, failed.expose()).await {
                tracing::warn!(account = %self.account, "token store invalidate failed: {e}");
            }
        }
        dropped
    }

    /// Forces a new token (`force_refresh=true`), which invalidates the current one for every
    /// replica at once. An operator's action for a leaked token, never automatic: see
    /// [`FORCE_REFRESH_HELP`]. Returns the new token's lifetime in seconds.
    pub async fn force_refresh(&self) -> Result<u64, TokenError> {
        let _fetching = self.fetching.lock().await;
        let token = self.fetch(true).await?;
        let lifetime = {
            let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            cached
                .as_ref()
                .map_or(0, |c| ((c.expires_at_ms - now_ms()) / 1000).max(0) as u64)
        };
        // The stored token may be an older one that expires later; it no longer works.
        if let Some(store) = &self.store {
            match store.load(&self.appid).await {
                Ok(Some(stored)) if stored.token != token.expose() => {
                    if let Err(e) = store.invalidate(&self.appid, &stored.token).await {
                        tracing::warn!(account = %self.account, "token store invalidate failed: {e}");
                    }
                    self.save(&token).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(account = %self.account, "token store load failed: {e}"),
            }
        }
        Ok(lifetime)
    }

    /// What an operator may see of the token: its expiry, the last refresh and the last error.
    pub fn status(&self) -> TokenStatus {
        let expires_at_ms = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| c.expires_at_ms);
        let FetchHistory {
            last_refresh_ms,
            last_error,
        } = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TokenStatus {
            expires_at_ms,
            last_refresh_ms,
            last_error_ms: last_error.as_ref().map(|(at, _)| *at),
            last_error: last_error.map(|(_, error)| error),
        }
    }

    /// The remembered `config` or throttled failure, while it holds.
    fn failure_held(&self, now: i64) -> Option<TokenError> {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure
            .as_ref()
            .filter(|f| now < f.until_ms)
            .map(|f| f.error.clone())
    }

    /// The failure of a fetch that ended after the caller saw `seen` fetches, if the last one
    /// failed.
    fn failure_since(&self, seen: u64) -> Option<TokenError> {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure
            .as_ref()
            .filter(|f| f.fetch > seen)
            .map(|f| f.error.clone())
    }

    /// Records how fetch number `fetch` ended, under the fetch lock.
    fn record(&self, fetch: u64, result: &Result<AccessToken, TokenError>) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        *failure = result.as_ref().err().map(|error| Failure {
            error: error.clone(),
            fetch,
            until_ms: match error.class() {
                Class::Terminal(Reason::Config) => now_ms().saturating_add(CONFIG_FAILURE_HOLD_MS),
                Class::Throttled => now_ms().saturating_add(THROTTLED_HOLD_MS),
                _ => 0,
            },
        });
    }

    fn cached_fresh(&self, now: i64) -> Option<AccessToken> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|c| {
                c.expires_at_ms - now > REFRESH_AHEAD_MS
                    || (now < c.hold_until_ms && now < c.expires_at_ms)
            })
            .map(|c| c.token.clone())
    }

    fn cached_valid(&self, now: i64) -> Option<AccessToken> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|c| now < c.expires_at_ms)
            .map(|c| c.token.clone())
    }

    /// The stored token, if it is fresh. A stored token that is still valid is kept in memory
    /// even when it is due for a refresh, so that it can serve if the refresh fails.
    async fn stored_fresh(&self) -> Option<AccessToken> {
        let store = self.store.as_ref()?;
        match store.load(&self.appid).await {
            Ok(Some(stored)) if stored.expires_at_ms > now_ms() && url_safe(&stored.token) => {
                let token = AccessToken(Arc::from(stored.token.as_str()));
                self.remember(&token, stored.expires_at_ms);
                let fresh = stored.expires_at_ms - now_ms() > REFRESH_AHEAD_MS;
                tracing::debug!(account = %self.account, fresh, "access token found in the token store");
                fresh.then_some(token)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(account = %self.account, "token store load failed, fetching: {e}");
                None
            }
        }
    }

    fn remember(&self, token: &AccessToken, expires_at_ms: i64) {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        *cached = Some(Cached {
            token: token.clone(),
            expires_at_ms,
            hold_until_ms: 0,
        });
    }

    async fn save(&self, token: &AccessToken) {
        let Some(store) = &self.store else { return };
        let expires_at_ms = {
            let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            match cached.as_ref() {
                Some(c) if c.token == *token => c.expires_at_ms,
                _ => return,
            }
        };
        let stored = StoredToken {
            token: token.expose().to_owned(),
            fetched_at_ms: now_ms(),
            expires_at_ms,
        };
        if let Err(e) = store.save(&self.appid, &stored).await {
            tracing::warn!(account = %self.account, "token store save failed: {e}");
        }
    }

    /// A token fetched in normal mode by this relay once the relays sharing the token store
    /// agree it is its turn (one fetcher per AppID across the fleet), or the token the relay
    /// whose turn it was saved meanwhile. A store that cannot be asked, or a turn that outlasts
    /// its lease (its relay died), fetches anyway: the lease saves quota, `stable_token` in
    /// normal mode being idempotent across relays.
    async fn fetch_in_turn(&self) -> Result<AccessToken, TokenError> {
        let Some(store) = &self.store else {
            return self.fetch(false).await;
        };
        let lease = self.fetch_timeout + FLEET_FETCH_MARGIN;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let give_up_at = tokio::time::Instant::now() + lease;
        loop {
            match store.begin_fetch(&self.appid, lease_ms).await {
                Ok(true) => {
                    // Another relay may have saved a token between this relay's look at the
                    // store and its turn.
                    let result = match self.stored_fresh().await {
                        Some(token) => Ok(token),
                        None => self.fetch(false).await,
                    };
                    if let Err(e) = store.end_fetch(&self.appid).await {
                        tracing::warn!(account = %self.account, "token store could not end this relay's fetch: {e}");
                    }
                    return result;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(account = %self.account, "token store could not grant a fetch, fetching: {e}");
                    return self.fetch(false).await;
                }
            }
            // Another relay refreshes ahead: the token still valid keeps serving meanwhile.
            if let Some(token) = self.cached_valid(now_ms()) {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= give_up_at {
                tracing::warn!(account = %self.account, "another relay's access token fetch outlasted its lease, fetching");
                return self.fetch(false).await;
            }
            tokio::time::sleep(FLEET_FETCH_POLL).await;
            if let Some(token) = self.stored_fresh().await {
                return Ok(token);
            }
        }
    }

    /// One `stable_token` call, bounded by the fetch timeout; the token is kept in memory and
    /// in the store.
    async fn fetch(&self, force_refresh: bool) -> Result<AccessToken, TokenError> {
        self.counters.token_fetch();
        let result = self.fetch_once(force_refresh).await;
        let fetch = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        self.record(fetch, &result);
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            match &result {
                Ok(_) => history.last_refresh_ms = Some(now_ms()),
                Err(error) => history.last_error = Some((now_ms(), error.to_string())),
            }
        }
        match &result {
            Ok(_) => tracing::info!(account = %self.account, force_refresh, "access token fetched"),
            Err(error) => {
                self.counters.token_fetch_failure();
                if error.class() == Class::Terminal(Reason::Config) {
                    self.counters.config_failure();
                }
                tracing::warn!(
                    account = %self.account,
                    force_refresh,
                    errcode = error.code(),
                    rid = error.rid(),
                    "access token fetch failed: {error}"
                );
            }
        }
        result
    }

    async fn fetch_once(&self, force_refresh: bool) -> Result<AccessToken, TokenError> {
        let body = StableTokenRequest {
            appid: &self.appid,
            secret: &self.secret,
            force_refresh,
        }
        .to_json();
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("kefu-client/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| {
                TokenError::new(
                    Class::Terminal(Reason::Unknown),
                    None,
                    "the stable_token request could not be built",
                )
            })?;
        let fetched_at = now_ms();
        let exchanged = tokio::time::timeout(
            self.fetch_timeout,
            exchange(&self.http, request, self.max_response_bytes),
        )
        .await;
        let (status, answer) = match exchanged {
            Ok(Ok(answer)) => answer,
            // A token fetch is idempotent in normal mode: any transport failure is transient.
            Ok(Err(error)) => {
                return Err(TokenError::new(
                    Class::Transient,
                    None,
                    format!(
                        "stable_token ({}): {}",
                        self.redacted_url,
                        redact(&error.to_string(), None)
                    ),
                ));
            }
            Err(_) => {
                return Err(TokenError::new(
                    Class::Transient,
                    None,
                    format!(
                        "stable_token ({}): no answer within the fetch timeout of {} ms",
                        self.redacted_url,
                        self.fetch_timeout.as_millis()
                    ),
                ));
            }
        };
        let (token, expires_in) = match classify_token(status.as_u16(), &answer) {
            Ok(answer) => answer,
            Err(attempt) => {
                return Err(TokenError {
                    attempt: Attempt {
                        message: format!("stable_token: {}", attempt.message),
                        ..attempt
                    },
                });
            }
        };
        if !url_safe(&token) {
            return Err(TokenError::new(
                Class::Terminal(Reason::Unknown),
                None,
                format!(
                    "stable_token answered a token of {} bytes that cannot stand in a URL query",
                    token.len()
                ),
            ));
        }
        let token = AccessToken(Arc::from(token.as_str()));
        let lifetime_ms = i64::try_from(expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.remember(&token, fetched_at.saturating_add(lifetime_ms));
        self.save(&token).await;
        Ok(token)
    }
}

/// `true` for a token that can stand in a URL query unescaped, as the platform's do.
fn url_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_never_shown() {
        assert!(url_safe("ACCESS_TOKEN-abc.123~"));
        for bad in [
            "",
            "a b",
            "a&b",
            "a#b",
            "a%2Fb",
            "令牌",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(!url_safe(bad), "{bad}");
        }
        let token = AccessToken(Arc::from("SECRET_TOKEN"));
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert_eq!(token.expose(), "SECRET_TOKEN");
    }

    #[test]
    fn token_errors_read_as_attempts() {
        let error = TokenError {
            attempt: Attempt::new(Class::Throttled, Some(45009), "stable_token: 45009")
                .with_rid(Some("r-1".into())),
        };
        assert_eq!(error.to_string(), "stable_token: 45009, rid r-1");
        assert_eq!(
            (error.class(), error.code(), error.rid()),
            (Class::Throttled, Some(45009), Some("r-1"))
        );
        assert_eq!(error.into_attempt().code, Some(45009));
        assert!(FORCE_REFRESH_HELP.contains("20 forced refreshes a day, at least 30 s apart"));
    }
}
