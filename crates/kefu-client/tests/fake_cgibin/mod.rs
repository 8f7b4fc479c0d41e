//! A small fake of api.weixin.qq.com's `cgi-bin` on 127.0.0.1 with an OS-chosen port: tokens
//! from `stable_token` (normal and forced), token checks on `custom/send` and typing, scripted
//! answers, and a TokenStore in memory. Every task belongs to its test's runtime and stops
//! with it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kefu_client::kefu_payload::cgibin::AccountKind;
use kefu_client::wechat::{WechatProvider, WechatProviderBuilder};
use kefu_core::{
    Attempt, BoxFuture, ComposeRequest, Job, Provider, RetryDecision, RetryPolicy, StopReason,
    StoredToken, TokenStore, TokenStoreError,
};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

#[path = "../http1/mod.rs"]
mod http1;

/// A scripted answer.
pub use http1::Reply;

pub const APPID: &str = "wx00000000000000aa";
pub const SECRET: &str = "AppSecretAbCdEf0123456789abcdef";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    pub fn access_token(&self) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

pub fn code(errcode: i64) -> Reply {
    Reply::Json(
        200,
        format!(r#"{{"errcode":{errcode},"errmsg":"scripted {errcode} rid: rid-{errcode}"}}"#),
    )
}

#[derive(Default)]
pub struct State {
    issued: u32,
    pub current: Option<String>,
    pub valid: Vec<String>,
    /// Every token ever issued, to check that none leaks.
    pub all_tokens: Vec<String>,
    pub fetches: u32,
    pub forced: u32,
    pub expires_in: u64,
    /// Answers of `stable_token`, used before the normal behaviour.
    pub token_script: VecDeque<Reply>,
    /// Answers of send and typing calls whose token passed.
    pub call_script: VecDeque<Reply>,
    /// Every send and typing call is refused with 40001.
    pub reject_every_token: bool,
    /// Every normal-mode fetch issues a new token (the old ones stay valid).
    pub rotate_every_fetch: bool,
    pub seen: Vec<Seen>,
    pub accepted: Vec<Seen>,
}

impl State {
    fn issue(&mut self) -> String {
        self.issued += 1;
        let token = format!("ACCESS{:04}TokenXyZ-{}_q", self.issued, self.issued * 7919);
        self.all_tokens.push(token.clone());
        self.current = Some(token.clone());
        token
    }

    /// Another system forced a refresh: the current token stops working.
    pub fn supersede(&mut self) {
        let token = self.issue();
        self.valid = vec![token];
    }
}

pub struct Fake {
    pub base_url: String,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            expires_in: 7200,
            ..State::default()
        }));
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Fake {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn builder(&self, kind: AccountKind) -> WechatProviderBuilder {
        WechatProvider::builder("shop", kind, APPID, SECRET)
            .api_base_url(&self.base_url)
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(5))
    }

    pub fn provider(&self) -> WechatProvider {
        self.builder(AccountKind::OfficialAccount).build().unwrap()
    }

    pub fn fetches(&self) -> u32 {
        self.with(|s| s.fetches)
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut stream = BufReader::new(stream);
    while let Some(request) = http1::read_request(&mut stream).await {
        let (path, query) = match request.target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (request.target, String::new()),
        };
        let seen = Seen {
            path,
            query,
            headers: request.headers,
            body: request.body,
        };
        if seen.path == "/cgi-bin/stable_token" {
            // Long enough for concurrent callers to pile up behind the fetch.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reply = answer(&mut state.lock().unwrap(), seen);
        let content_type = "application/json; encoding=utf-8";
        if !http1::reply(stream.get_mut(), reply, content_type).await {
            return;
        }
    }
}

fn answer(state: &mut State, seen: Seen) -> Reply {
    state.seen.push(seen.clone());
    match seen.path.as_str() {
        "/cgi-bin/stable_token" => {
            state.fetches += 1;
            if let Some(reply) = state.token_script.pop_front() {
                return reply;
            }
            let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
            assert_eq!(body["grant_type"], "client_credential");
            if body["appid"] != APPID {
                return code(40013);
            }
            if body["secret"] != SECRET {
                return code(40125);
            }
            let token = if body["force_refresh"] == true {
                state.forced += 1;
                state.supersede();
                state.current.clone().unwrap()
            } else {
                match state.current.clone() {
                    Some(token) if !state.rotate_every_fetch => token,
                    _ => {
                        let token = state.issue();
                        state.valid.push(token.clone());
                        token
                    }
                }
            };
            Reply::Json(
                200,
                format!(
                    r#"{{"access_token":"{token}","expires_in":{}}}"#,
                    state.expires_in
                ),
            )
        }
        "/cgi-bin/message/custom/send"
        | "/cgi-bin/message/custom/typing"
        | "/cgi-bin/message/custom/business/typing" => {
            let Some(token) = seen.access_token().map(str::to_owned) else {
                return code(41001);
            };
            if state.reject_every_token || !state.valid.contains(&token) {
                return Reply::Json(
                    200,
                    r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest rid: 6a1-40001"}"#.to_owned(),
                );
            }
            if let Some(reply) = state.call_script.pop_front() {
                return reply;
            }
            state.accepted.push(seen);
            Reply::Json(200, r#"{"errcode":0,"errmsg":"ok"}"#.to_owned())
        }
        _ => Reply::Json(404, "not found".to_owned()),
    }
}

/// Tokens by AppID in memory, with the TokenStore contract.
#[derive(Default)]
pub struct MemoryStore {
    pub tokens: Mutex<HashMap<String, StoredToken>>,
    /// The fleet's fetch leases by AppID: which relay fetches, until when.
    pub leases: Mutex<HashMap<String, (&'static str, Instant)>>,
}

impl TokenStore for MemoryStore {
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        Box::pin(async move { Ok(self.tokens.lock().unwrap().get(appid).cloned()) })
    }

    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            let mut tokens = self.tokens.lock().unwrap();
            match tokens.get(appid) {
                Some(stored) if stored.expires_at_ms > token.expires_at_ms => {}
                _ => {
                    tokens.insert(appid.to_owned(), token.clone());
                }
            }
            Ok(())
        })
    }

    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(async move {
            let mut tokens = self.tokens.lock().unwrap();
            if tokens.get(appid).is_some_and(|t| t.token == failed) {
                tokens.remove(appid);
                return Ok(true);
            }
            Ok(false)
        })
    }
}

/// One relay's view of a [`MemoryStore`] shared by a fleet: the tokens are shared, and so are
/// the fetch leases, granted per AppID to one relay at a time until it ends its fetch or the
/// lease runs out.
pub struct FleetMember {
    pub store: Arc<MemoryStore>,
    pub relay: &'static str,
}

impl TokenStore for FleetMember {
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        self.store.load(appid)
    }

    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        self.store.save(appid, token)
    }

    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        self.store.invalidate(appid, failed)
    }

    fn begin_fetch<'a>(
        &'a self,
        appid: &'a str,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(async move {
            let mut leases = self.store.leases.lock().unwrap();
            let now = Instant::now();
            let granted = match leases.get(appid) {
                Some((holder, until)) => *holder == self.relay || *until < now,
                None => true,
            };
            if granted {
                let until = now + Duration::from_millis(lease_ms as u64);
                leases.insert(appid.to_owned(), (self.relay, until));
            }
            Ok(granted)
        })
    }

    fn end_fetch<'a>(&'a self, appid: &'a str) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            let mut leases = self.store.leases.lock().unwrap();
            if leases
                .get(appid)
                .is_some_and(|(holder, _)| *holder == self.relay)
            {
                leases.remove(appid);
            }
            Ok(())
        })
    }
}

/// The jobs the provider composes from a desk body.
pub fn jobs(provider: &WechatProvider, body: serde_json::Value) -> Vec<Job> {
    provider
        .compose(ComposeRequest {
            body: body.as_object().unwrap(),
            session_appid: None,
        })
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, c)| Job {
            id: i as i64 + 1,
            account: "shop".into(),
            recipient: c.recipient,
            operation: c.operation,
            payload: c.payload,
        })
        .collect()
}

pub fn text_job(provider: &WechatProvider, text: &str) -> Job {
    jobs(
        provider,
        serde_json::json!({"openid": "oUSER", "msg": text}),
    )
    .remove(0)
}

/// Drives one job as the relay will: attempts until `RetryPolicy::decide` says done or stop,
/// with no waiting (the tests' backoffs are not the point) and a hard bound that fails the test
/// on a loop.
pub async fn drive(provider: &WechatProvider, job: &Job) -> (RetryDecision, Vec<Attempt>) {
    let policy = RetryPolicy::default();
    let mut attempts = Vec::new();
    let mut replays = 0;
    let mut attempt_no = 1;
    loop {
        assert!(attempts.len() < 10, "a loop: {attempts:?}");
        let attempt = provider.send(job).await;
        let decision = policy.decide(
            attempt.class,
            attempt_no,
            replays,
            Duration::from_millis(1),
            0.5,
        );
        attempts.push(attempt);
        match decision {
            RetryDecision::ReplayNow => replays += 1,
            RetryDecision::RetryAfter(_) => attempt_no += 1,
            RetryDecision::Done | RetryDecision::Stop(_) => return (decision, attempts),
        }
    }
}

pub fn stopped(reason: StopReason) -> RetryDecision {
    RetryDecision::Stop(reason)
}
