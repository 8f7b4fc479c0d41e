//! `api.weixin.qq.com` for Official Accounts and Mini Programs: `stable_token`, `custom/send`
//! and the typing calls, with the platform's checks, codes and `errmsg … rid: …` bodies, and
//! what the accounts' users did. No I/O: the server hands each request in with the time.
//! The routes and the order of the checks are documented in [`crate`].

mod accounts;
mod codes;
mod message;
mod token;
mod users;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use percent_encoding::percent_decode_str;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

pub use accounts::{
    AccountKind, ApiAccount, ApiSettings, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, DEFAULT_OA_APPID,
    DEFAULT_OA_SECRET,
};
pub use users::ApiUser;

use codes::Refusal;
use token::Tokens;
use users::Rules;

/// The emulated `cgi-bin` endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `POST /cgi-bin/stable_token`.
    StableToken,
    /// `POST /cgi-bin/message/custom/send`.
    Send,
    /// `POST /cgi-bin/message/custom/business/send`, the alias that answers 40101.
    BusinessSend,
    /// The typing path of this kind of account.
    Typing(AccountKind),
}

impl Route {
    /// The route of a request path, if it is one of the emulated ones.
    pub(crate) fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/cgi-bin/stable_token" => Route::StableToken,
            "/cgi-bin/message/custom/send" => Route::Send,
            "/cgi-bin/message/custom/business/send" => Route::BusinessSend,
            "/cgi-bin/message/custom/typing" => Route::Typing(AccountKind::Oa),
            "/cgi-bin/message/custom/business/typing" => Route::Typing(AccountKind::Mp),
            _ => return None,
        })
    }
}

/// One answer: always HTTP 200, like the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The JSON body.
    pub(crate) body: String,
    /// The `errcode` (0 on success, and for a granted token), for logs.
    pub(crate) code: i64,
    /// The `rid` of a refusal, for logs.
    pub(crate) rid: Option<String>,
}

/// One request the platform accepted, as `GET /sandbox/accounts/{appid}/messages` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// Position among every account's accepted requests, from 1. Gaps at the start mean the
    /// oldest were evicted (see [`SandboxConfig::max_messages`](crate::SandboxConfig::max_messages)).
    pub seq: u64,
    /// The account's AppID.
    pub appid: String,
    /// The path: `/cgi-bin/message/custom/send` or a typing path.
    pub path: String,
    /// The user.
    pub openid: String,
    /// `custom/send`'s `msgtype`, or the typing `command`.
    pub kind: String,
    /// The body exactly as received.
    pub body: String,
    /// When the sandbox accepted it, in Unix milliseconds.
    pub received_at_ms: u64,
}

/// An account's counters, as `GET /sandbox/accounts/{appid}` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiAccountSnapshot {
    /// The AppID.
    pub appid: String,
    /// Official Account or Mini Program.
    pub kind: AccountKind,
    /// `stable_token` calls answered with a token.
    pub token_fetches: u64,
    /// Force refreshes that took effect.
    pub force_refreshes: u64,
    /// Supersessions by the admin call.
    pub supersessions: u64,
    /// Requests accepted (`custom/send` and typing), including evicted ones.
    pub accepted: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    token_fetches: u64,
    force_refreshes: u64,
    supersessions: u64,
    accepted: u64,
}

#[derive(Debug)]
struct State {
    tokens: Tokens,
    counters: Vec<Counters>,
    users: Vec<HashMap<String, ApiUser>>,
    requests: VecDeque<ApiRequest>,
    seq: u64,
    /// Per account: the errcode the next calls answer, and how many calls are left.
    injected: Vec<Option<Injection>>,
}

/// An error the next `custom/send` and typing calls of an account answer, set by
/// `POST /sandbox/accounts/{appid}/inject`: for a desk's CI to meet the codes a sandbox cannot
/// otherwise produce (45009, 45011, 70000, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// The `errcode` to answer; not 0.
    pub errcode: i64,
    /// How many calls answer it, from 1.
    pub count: u32,
}

/// The most calls one injection may cover.
pub const MAX_INJECTED_CALLS: u32 = 10_000;

/// The platform for the configured accounts. Deliberately not `Debug`: it holds AppSecrets.
pub(crate) struct WeChatApi {
    accounts: Vec<ApiAccount>,
    rules: Rules,
    max_requests: usize,
    state: Mutex<State>,
    rids: Mutex<StdRng>,
}

impl WeChatApi {
    /// The platform for `settings` (already checked), keeping at most `max_requests` accepted
    /// requests; `seed` makes the `rid`s repeatable.
    pub(crate) fn new(settings: &ApiSettings, max_requests: usize, seed: u64) -> WeChatApi {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let count = settings.accounts.len();
        WeChatApi {
            accounts: settings.accounts.clone(),
            rules: Rules {
                send_window_ms: ms(settings.send_window),
                quota: settings.quota_per_message,
                typing_interaction_ms: ms(settings.typing_interaction),
                typing_duration_ms: ms(settings.typing_duration),
            },
            max_requests,
            state: Mutex::new(State {
                tokens: Tokens::new(count, settings.token_lifetime),
                counters: vec![Counters::default(); count],
                users: vec![HashMap::new(); count],
                requests: VecDeque::new(),
                seq: 0,
                injected: vec![None; count],
            }),
            // A stream of its own, so that these rids shift neither the faults nor the
            // Dialogue platform's rids.
            rids: Mutex::new(StdRng::seed_from_u64(seed ^ 0x6367_692d_6269_6e21)),
        }
    }

    /// The AppIDs and kinds, for the startup log.
    pub(crate) fn accounts(&self) -> impl Iterator<Item = (&str, AccountKind)> {
        self.accounts.iter().map(|a| (a.appid.as_str(), a.kind))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn index(&self, appid: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.appid == appid)
    }

    /// A fresh `rid`: three groups of 8 lowercase hexadecimal digits, like the platform's.
    pub(crate) fn rid(&self) -> String {
        let [a, b, c]: [u32; 3] = self
            .rids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        format!("{a:08x}-{b:08x}-{c:08x}")
    }

    /// `{"errcode":N,"errmsg":"… rid: …"}`.
    fn refuse(&self, refusal: Refusal) -> Reply {
        let rid = self.rid();
        Reply {
            body: json!({
                "errcode": refusal.code(),
                "errmsg": format!("{} rid: {rid}", refusal.message()),
            })
            .to_string(),
            code: refusal.code(),
            rid: Some(rid),
        }
    }

    /// The `-1` answer of a busy platform.
    pub(crate) fn system_error(&self) -> Reply {
        self.refuse(Refusal::SystemError)
    }

    /// Answers one request: `query` is the raw query string, `body` the raw body.
    pub(crate) fn handle(
        &self,
        route: Route,
        query: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Reply {
        let answer = match route {
            Route::StableToken => self.stable_token(body, now_ms),
            Route::BusinessSend => Err(Refusal::MissingParameter),
            Route::Send => self.send(query, body, now_ms),
            Route::Typing(kind) => self.typing(kind, query, body, now_ms),
        };
        answer.unwrap_or_else(|refusal| self.refuse(refusal))
    }

    fn stable_token(&self, body: &[u8], now_ms: u64) -> Result<Reply, Refusal> {
        let body = message::json_object(body)?;
        if body.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
            return Err(Refusal::InvalidGrantType);
        }
        let appid = text(&body, "appid", Refusal::MissingAppid)?;
        let secret = text(&body, "secret", Refusal::MissingSecret)?;
        let force = match body.get("force_refresh") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(force)) => *force,
            Some(_) => return Err(Refusal::DataFormat),
        };
        let index = self.index(appid).ok_or(Refusal::InvalidAppid)?;
        let expected = self.accounts[index].secret.as_bytes();
        if !bool::from(expected.ct_eq(secret.as_bytes())) {
            return Err(Refusal::InvalidAppsecret);
        }
        let mut state = self.lock();
        let (grant, forced) = state.tokens.fetch(index, force, now_ms);
        let counters = &mut state.counters[index];
        counters.token_fetches += 1;
        counters.force_refreshes += u64::from(forced);
        Ok(Reply {
            body: json!({"access_token": grant.access_token, "expires_in": grant.expires_in})
                .to_string(),
            code: 0,
            rid: None,
        })
    }

    /// The token of the query: 41001 without one, 40001 or 42001 for one that does not work.
    fn account(&self, state: &State, query: Option<&str>, now_ms: u64) -> Result<usize, Refusal> {
        let token = query
            .unwrap_or("")
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| *key == "access_token")
            .map(|(_, value)| percent_decode_str(value).decode_utf8_lossy())
            .filter(|token| !token.is_empty())
            .ok_or(Refusal::MissingAccessToken)?;
        state.tokens.check(&token, now_ms)
    }

    fn send(&self, query: Option<&str>, raw: &[u8], now_ms: u64) -> Result<Reply, Refusal> {
        // The body is parsed without the lock, which other requests wait for.
        let index = self.account(&self.lock(), query, now_ms)?;
        self.send_as(index, raw, now_ms)
    }

    /// A text that a system holding the account's token (the company gateway) sends through
    /// `custom/send`: the same checks, record and answer. `None` for an unknown AppID.
    pub(crate) fn send_text(
        &self,
        appid: &str,
        openid: &str,
        text: &str,
        now_ms: u64,
    ) -> Option<Reply> {
        let index = self.index(appid)?;
        let raw = json!({"touser": openid, "msgtype": "text", "text": {"content": text}});
        let answer = self.send_as(index, raw.to_string().as_bytes(), now_ms);
        Some(answer.unwrap_or_else(|refusal| self.refuse(refusal)))
    }

    /// `custom/send` past the token check, for the account at `index`.
    fn send_as(&self, index: usize, raw: &[u8], now_ms: u64) -> Result<Reply, Refusal> {
        if let Some(reply) = self.injected(index) {
            return Ok(reply);
        }
        let body = message::json_object(raw)?;
        let openid = message::touser(&body)?;
        let msgtype = message::check_send(&body, self.accounts[index].kind)?;
        let mut state = self.lock();
        let user = state.users[index]
            .get_mut(openid)
            .ok_or(Refusal::InvalidOpenid)?;
        user.may_send(self.rules, now_ms)?;
        user.sent(now_ms);
        let path = "/cgi-bin/message/custom/send";
        let request = self.request(index, path, openid, msgtype, raw, now_ms);
        accept(&mut state, index, request, self.max_requests);
        Ok(ok())
    }

    fn typing(
        &self,
        path_kind: AccountKind,
        query: Option<&str>,
        raw: &[u8],
        now_ms: u64,
    ) -> Result<Reply, Refusal> {
        let index = self.account(&self.lock(), query, now_ms)?;
        if let Some(reply) = self.injected(index) {
            return Ok(reply);
        }
        if self.accounts[index].kind != path_kind {
            return Err(Refusal::InvalidAccountType);
        }
        let body = message::json_object(raw)?;
        let openid = message::touser(&body)?;
        let typing = message::typing_command(&body)?;
        let rules = self.rules;
        let mut state = self.lock();
        state.users[index]
            .get_mut(openid)
            .ok_or(Refusal::InvalidOpenid)?
            .typing(typing, rules, now_ms)?;
        let path = match path_kind {
            AccountKind::Oa => "/cgi-bin/message/custom/typing",
            AccountKind::Mp => "/cgi-bin/message/custom/business/typing",
        };
        let command = if typing { "Typing" } else { "CancelTyping" };
        let request = self.request(index, path, openid, command, raw, now_ms);
        accept(&mut state, index, request, self.max_requests);
        Ok(ok())
    }

    /// The record of an accepted request, numbered by [`accept`].
    fn request(
        &self,
        index: usize,
        path: &str,
        openid: &str,
        kind: &str,
        raw: &[u8],
        now_ms: u64,
    ) -> ApiRequest {
        ApiRequest {
            seq: 0,
            appid: self.accounts[index].appid.clone(),
            path: path.to_owned(),
            openid: openid.to_owned(),
            kind: kind.to_owned(),
            // The body parsed as JSON, so it is UTF-8.
            body: String::from_utf8_lossy(raw).into_owned(),
            received_at_ms: now_ms,
        }
    }

    /// The user writes to the account: the send window opens and the quota starts again.
    /// `None` for an unknown AppID.
    pub(crate) fn user_wrote(&self, appid: &str, openid: &str, now_ms: u64) -> Option<ApiUser> {
        let index = self.index(appid)?;
        let mut state = self.lock();
        let user = state.users[index]
            .entry(openid.to_owned())
            .or_insert_with(|| ApiUser::new(openid));
        user.wrote(now_ms);
        Some(user.clone())
    }

    /// A user of the account as the rules see them (a user who never wrote has nothing set).
    pub(crate) fn user(&self, appid: &str, openid: &str) -> Option<ApiUser> {
        let index = self.index(appid)?;
        let state = self.lock();
        Some(
            state.users[index]
                .get(openid)
                .cloned()
                .unwrap_or_else(|| ApiUser::new(openid)),
        )
    }

    /// The account's counters.
    pub(crate) fn snapshot(&self, appid: &str) -> Option<ApiAccountSnapshot> {
        let index = self.index(appid)?;
        let counters = self.lock().counters[index];
        Some(ApiAccountSnapshot {
            appid: appid.to_owned(),
            kind: self.accounts[index].kind,
            token_fetches: counters.token_fetches,
            force_refreshes: counters.force_refreshes,
            supersessions: counters.supersessions,
            accepted: counters.accepted,
        })
    }

    /// The account's accepted requests in order, all or one user's.
    pub(crate) fn requests(&self, appid: &str, openid: Option<&str>) -> Option<Vec<ApiRequest>> {
        self.index(appid)?;
        let state = self.lock();
        Some(
            state
                .requests
                .iter()
                .filter(|r| r.appid == appid && openid.is_none_or(|o| r.openid == o))
                .cloned()
                .collect(),
        )
    }

    /// Makes the account's next `injection.count` calls of `custom/send` and typing (with a
    /// valid token) answer `injection.errcode`, replacing an injection still pending. `None` for
    /// an unknown AppID.
    pub(crate) fn inject(&self, appid: &str, injection: Injection) -> Option<Injection> {
        let index = self.index(appid)?;
        self.lock().injected[index] = Some(injection);
        Some(injection)
    }

    /// The injected answer of the account's next call, if one is pending; counts it down.
    fn injected(&self, index: usize) -> Option<Reply> {
        let errcode = {
            let mut state = self.lock();
            let slot = &mut state.injected[index];
            let injection = slot.as_mut()?;
            let errcode = injection.errcode;
            injection.count = injection.count.saturating_sub(1);
            if injection.count == 0 {
                *slot = None;
            }
            errcode
        };
        let rid = self.rid();
        Some(Reply {
            body: json!({
                "errcode": errcode,
                "errmsg": format!("injected by the sandbox (POST /sandbox/accounts/{{appid}}/inject) rid: {rid}"),
            })
            .to_string(),
            code: errcode,
            rid: Some(rid),
        })
    }

    /// Supersedes every token of the account, as a `/cgi-bin/token` call or a leaked-token
    /// rotation elsewhere would: the next call with one gets 40001.
    pub(crate) fn supersede(&self, appid: &str) -> Option<ApiAccountSnapshot> {
        let index = self.index(appid)?;
        {
            let mut state = self.lock();
            state.tokens.revoke(index);
            state.counters[index].supersessions += 1;
        }
        self.snapshot(appid)
    }
}

/// Counts and keeps an accepted request (at most `max` of them; the oldest go first).
fn accept(state: &mut State, index: usize, mut request: ApiRequest, max: usize) {
    state.seq += 1;
    state.counters[index].accepted += 1;
    if max == 0 {
        return;
    }
    if state.requests.len() == max {
        state.requests.pop_front();
    }
    request.seq = state.seq;
    state.requests.push_back(request);
}

/// `{"errcode":0,"errmsg":"ok"}`.
fn ok() -> Reply {
    Reply {
        body: r#"{"errcode":0,"errmsg":"ok"}"#.to_owned(),
        code: 0,
        rid: None,
    }
}

/// A string field of `stable_token`: missing or empty is `missing`, another JSON type 47001.
fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    missing: Refusal,
) -> Result<&'a str, Refusal> {
    match body.get(field) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(missing),
        Some(_) => Err(Refusal::DataFormat),
    }
}
