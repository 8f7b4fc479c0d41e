//! The company gateway's `POST /wisdom-api/weixin/v1/sendCustomerMessage` (protocols.md §8):
//! its `system` header and body checks, and the `{"code":200,…,"data":{…}}` wrapping of what
//! WeChat's `custom/send` answered, which the sandbox's own `api.weixin.qq.com` plays. The
//! codes and their order are documented in [`crate`].

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cgibin::{AccountKind, WeChatApi};
use crate::state::keep;

pub use kefu_payload::gateway::DEFAULT_SYSTEM as DEFAULT_GATEWAY_SYSTEM;

/// The gateway's `msg` when the call itself worked, whatever WeChat answered.
const OK_MSG: &str = "操作成功";

/// The most calls one injection may cover.
const MAX_INJECTED_CALLS: u32 = 10_000;

/// The company gateway of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The `system` header every call must carry ([`DEFAULT_GATEWAY_SYSTEM`]).
    pub system: String,
    /// The `api.weixin.qq.com` account the gateway sends through: its users are the gateway's,
    /// with its send window and quota. `None` takes the first Official Account of
    /// [`SandboxConfig::api`](crate::SandboxConfig::api) (by default
    /// [`DEFAULT_OA_APPID`](crate::DEFAULT_OA_APPID)), else the first account.
    pub appid: Option<String>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            system: DEFAULT_GATEWAY_SYSTEM.to_owned(),
            appid: None,
        }
    }
}

/// One message the gateway accepted (WeChat answered `errcode` 0), as
/// `GET /sandbox/gateway/messages` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayMessage {
    /// Position among every accepted message, from 1.
    pub seq: u64,
    /// The `openId`.
    pub open_id: String,
    /// The `msg`.
    pub msg: String,
    /// When the sandbox accepted it, in Unix milliseconds.
    pub received_at_ms: u64,
}

/// What the next calls answer, set by `POST /sandbox/gateway/inject`: a WeChat `errcode`
/// inside `data` (with code 200), or a gateway `code` other than 200.
///
/// ```json
/// {"errcode": 40001, "count": 1, "as_string": true}
/// {"code": 402, "count": 2}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayInjection {
    /// The WeChat `errcode` to pass through in `data`; not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// The gateway `code` to answer instead of 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// How many calls answer it, 1 to 10,000.
    pub count: u32,
    /// `data.errcode` as a numeric string (`"40001"`), as the gateway's page types it.
    #[serde(default)]
    pub as_string: bool,
}

/// The body of `POST /sandbox/gateway/settings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayChange {
    /// Every answer's `data.errcode` as a numeric string (`"0"`, `"40003"`) from now on.
    #[serde(default)]
    pub errcode_as_string: Option<bool>,
}

/// The gateway's state, as `GET /sandbox/gateway` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// The `system` header expected.
    pub system: String,
    /// The account it sends through; `None` when the sandbox has no `api.weixin.qq.com`
    /// account at all (then every call answers `data.errcode` −1).
    pub appid: Option<String>,
    /// `data.errcode` written as a string.
    pub errcode_as_string: bool,
    /// The injection still pending, if any.
    pub injected: Option<GatewayInjection>,
    /// Messages accepted, including evicted records.
    pub accepted: u64,
}

/// One answer, for the response and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
    /// The outer `code`.
    pub(crate) code: i64,
    /// `data.errcode`, when the call reached WeChat.
    pub(crate) errcode: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<GatewayMessage>,
    accepted: u64,
    injected: Option<GatewayInjection>,
    errcode_as_string: bool,
}

/// The gateway.
#[derive(Debug)]
pub(crate) struct Gateway {
    system: String,
    /// The account it sends through, resolved.
    appid: Option<String>,
    max_records: usize,
    state: Mutex<State>,
}

impl Gateway {
    /// The gateway for `settings`, sending through one of `api`'s accounts. Refuses an empty
    /// `system` or an AppID that is not an account of `api`.
    pub(crate) fn new(
        settings: &GatewaySettings,
        api: &WeChatApi,
        max_records: usize,
    ) -> Result<Gateway, (&'static str, String)> {
        if settings.system.is_empty() || !settings.system.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((
                "--gateway-system",
                "the system header must be non-empty printable ASCII".to_owned(),
            ));
        }
        let appid = match &settings.appid {
            Some(appid) if api.snapshot(appid).is_none() => {
                return Err((
                    "--gateway-appid",
                    format!(
                        "no api.weixin.qq.com account has the AppID {appid}; add it with --api-account"
                    ),
                ));
            }
            Some(appid) => Some(appid.clone()),
            None => api
                .accounts()
                .find(|(_, kind)| *kind == AccountKind::Oa)
                .or_else(|| api.accounts().next())
                .map(|(appid, _)| appid.to_owned()),
        };
        Ok(Gateway {
            system: settings.system.clone(),
            appid,
            max_records,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// HTTP 500 `{"code":500,…}`: the answer of a failing gateway.
    pub(crate) fn system_error(&self) -> Answer {
        failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "系统异常,请联系管理员",
        )
    }

    /// Answers one call: `system` is the raw header, if any.
    pub(crate) fn handle(
        &self,
        api: &WeChatApi,
        system: Option<&[u8]>,
        content_type: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Answer {
        match system {
            None => return failure(StatusCode::OK, 401, "缺少请求头 system"),
            Some(system) if system != self.system.as_bytes() => {
                return failure(StatusCode::OK, 402, "system 无效: 调用系统未授权");
            }
            Some(_) => {}
        }
        let json = content_type.is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return failure(StatusCode::OK, 415, "Content-Type 须为 application/json");
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return failure(StatusCode::OK, 400, "请求体须为 JSON 对象");
        };
        let text = |field: &str| match object.get(field) {
            Some(Value::String(value)) if !value.is_empty() => Some(value.as_str()),
            _ => None,
        };
        let Some(open_id) = text("openId") else {
            return failure(StatusCode::OK, 400, "openId 不能为空");
        };
        let Some(msg) = text("msg") else {
            return failure(StatusCode::OK, 400, "msg 不能为空");
        };
        let (data, as_string) = match self.injected() {
            Some(GatewayInjection {
                code: Some(code), ..
            }) => {
                return failure(StatusCode::OK, code, "injected by the sandbox");
            }
            Some(injection) => {
                let errcode = injection.errcode.unwrap_or(-1);
                let errmsg = format!(
                    "injected by the sandbox (POST /sandbox/gateway/inject) rid: {}",
                    api.rid()
                );
                (
                    json!({"errcode": errcode, "errmsg": errmsg}),
                    injection.as_string,
                )
            }
            None => {
                let reply = self
                    .appid
                    .as_deref()
                    .and_then(|appid| api.send_text(appid, open_id, msg, now_ms));
                let data = reply
                    .and_then(|reply| serde_json::from_str(&reply.body).ok())
                    .unwrap_or_else(|| json!({"errcode": -1, "errmsg": "system error"}));
                if data["errcode"] == 0 {
                    self.record(open_id, msg, now_ms);
                }
                (data, false)
            }
        };
        self.wrap(data, as_string)
    }

    /// `{"code":200,"msg":"操作成功","data":…}`, with `data.errcode` a string when asked.
    fn wrap(&self, mut data: Value, as_string: bool) -> Answer {
        let errcode = data["errcode"].as_i64();
        if as_string || self.lock().errcode_as_string {
            if let Some(code) = errcode {
                data["errcode"] = json!(code.to_string());
            }
        }
        Answer {
            status: StatusCode::OK,
            body: json!({"code": 200, "msg": OK_MSG, "data": data}).to_string(),
            code: 200,
            errcode,
        }
    }

    fn record(&self, open_id: &str, msg: &str, now_ms: u64) {
        let mut state = self.lock();
        state.accepted += 1;
        let message = GatewayMessage {
            seq: state.accepted,
            open_id: open_id.to_owned(),
            msg: msg.to_owned(),
            received_at_ms: now_ms,
        };
        keep(&mut state.messages, message, self.max_records);
    }

    /// The pending injection of the next call, counted down.
    fn injected(&self) -> Option<GatewayInjection> {
        let mut state = self.lock();
        let injection = state.injected.as_mut()?;
        let now = *injection;
        injection.count = injection.count.saturating_sub(1);
        if injection.count == 0 {
            state.injected = None;
        }
        Some(now)
    }

    /// Sets what the next calls answer, replacing an injection still pending.
    pub(crate) fn inject(&self, injection: GatewayInjection) -> Result<GatewayStatus, String> {
        let valid = match (injection.errcode, injection.code) {
            (Some(errcode), None) => errcode != 0,
            (None, Some(code)) => code != 200,
            _ => false,
        };
        if !valid || !(1..=MAX_INJECTED_CALLS).contains(&injection.count) {
            return Err(
                "give either errcode (not 0) or code (not 200), and count from 1 to 10000"
                    .to_owned(),
            );
        }
        self.lock().injected = Some(injection);
        Ok(self.status())
    }

    /// Applies a change of settings.
    pub(crate) fn change(&self, change: GatewayChange) -> GatewayStatus {
        if let Some(as_string) = change.errcode_as_string {
            self.lock().errcode_as_string = as_string;
        }
        self.status()
    }

    /// The accepted messages in order, all or one user's.
    pub(crate) fn messages(&self, open_id: Option<&str>) -> Vec<GatewayMessage> {
        self.lock()
            .messages
            .iter()
            .filter(|m| open_id.is_none_or(|o| m.open_id == o))
            .cloned()
            .collect()
    }

    /// The settings and counters.
    pub(crate) fn status(&self) -> GatewayStatus {
        let state = self.lock();
        GatewayStatus {
            system: self.system.clone(),
            appid: self.appid.clone(),
            errcode_as_string: state.errcode_as_string,
            injected: state.injected,
            accepted: state.accepted,
        }
    }
}

/// A gateway failure: `{"code":N,"msg":"…","data":null}`.
fn failure(status: StatusCode, code: i64, msg: &str) -> Answer {
    Answer {
        status,
        body: json!({"code": code, "msg": msg, "data": null}).to_string(),
        code,
        errcode: None,
    }
}
