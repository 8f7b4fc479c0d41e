//! yunzhenji's `POST /wechat/sendMessage` (protocols.md §7): its checks, what it accepted, and
//! the `chatMsg` / `chatMsgSendFail` pushes that follow, delivered in the background. The
//! routes, codes and push shapes are documented in [`crate`].

mod check;
mod pushes;
mod settings;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tokio::sync::watch;

pub use settings::{
    DEFAULT_YZJ_ACCESS_TOKEN, DEFAULT_YZJ_APP_ID, DEFAULT_YZJ_WXID, YunzhenjiAccount,
    YunzhenjiSettings,
};

use crate::push::{CallbackDelivery, Target};
use crate::state::keep;
use check::Refusal;
use pushes::Planned;

/// The furthest a message's `delayed_time` postpones its pushes.
const MAX_SCHEDULED: Duration = Duration::from_secs(24 * 3600);

/// The `message` of a simulated `chatMsgSendFail`.
const FAILURE_MESSAGE: &str = "消息发送失败 (sandbox failure_rate)";

/// One message yunzhenji accepted, as `GET /sandbox/yunzhenji/messages` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YunzhenjiMessage {
    /// Position among every accepted message, from 1.
    pub seq: u64,
    /// The account's `app_id`.
    pub app_id: String,
    /// The sending WeCom account.
    pub wxid: String,
    /// The customer or group it went to.
    pub target_wxid: String,
    /// Its index in the call's `messages`.
    pub idx: usize,
    /// Its `msg_type`.
    pub msg_type: String,
    /// Its `content`, as sent.
    pub content: Value,
    /// Its `api_send_id`, as a string (a number is written in decimal), if sent.
    pub api_send_id: Option<String>,
    /// The vendor's id for it.
    pub api_send_svrid: String,
    /// Its `delayed_time` (0: at once).
    pub delayed_time: u64,
    /// `true` when the sandbox decided it fails (a `chatMsgSendFail` follows its `chatMsg`).
    pub fails: bool,
    /// When the sandbox accepted it, in Unix milliseconds.
    pub received_at_ms: u64,
}

/// One push to the callback URL, as `GET /sandbox/yunzhenji/pushes` lists it, once it was
/// delivered or given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YunzhenjiPush {
    /// Position among every finished push, from 1.
    pub seq: u64,
    /// `chatMsg` or `chatMsgSendFail`.
    pub event: String,
    /// The `api_send_id` it carries, as a string, if any (a customer's message has none).
    pub api_send_id: Option<String>,
    /// The `api_send_svrid` it carries.
    pub api_send_svrid: String,
    /// The JSON body posted.
    pub body: Value,
    /// How many times it was posted (at most 3).
    pub attempts: u32,
    /// What the last attempt got.
    pub callback: CallbackDelivery,
}

/// The state of the yunzhenji side, as `GET /sandbox/yunzhenji` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YunzhenjiStatus {
    /// The callback URL without its path (which may hold a secret), if set.
    pub callback: Option<String>,
    /// How long after a call its pushes start.
    pub push_delay_ms: u64,
    /// The fraction of accepted messages that fail.
    pub failure_rate: f64,
    /// How many messages the next valid call accepts, if limited.
    pub partial_next: Option<usize>,
    /// Messages accepted, including evicted records.
    pub accepted: u64,
    /// Pushes finished (delivered or given up), including evicted records.
    pub pushes: u64,
}

/// The body of `POST /sandbox/yunzhenji/settings`: what to change.
///
/// ```json
/// {"callback_url": "http://127.0.0.1:8080/v1/callbacks/yunzhenji/secret", "push_delay_ms": 200, "failure_rate": 0.5}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YunzhenjiChange {
    /// Where the pushes go from now on (`http://` only).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// How long after a call its pushes start, from now on.
    #[serde(default)]
    pub push_delay_ms: Option<u64>,
    /// The fraction of messages accepted from now on that fail, 0.0..=1.0.
    #[serde(default)]
    pub failure_rate: Option<f64>,
}

/// The body of `POST /sandbox/yunzhenji/customers/{wxid}/say`: a customer writes to the WeCom
/// account (or in a group it is in).
///
/// ```json
/// {"text": "你好", "app_id": "yzj-sandbox", "group": "R:10696051737"}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerSays {
    /// What the customer writes. Must not be empty.
    pub text: String,
    /// The account written to; the first configured one when absent.
    #[serde(default)]
    pub app_id: Option<String>,
    /// The group the customer writes in (the push's `to_wxid`); the account's wxid when absent.
    #[serde(default)]
    pub group: Option<String>,
}

impl CustomerSays {
    /// The customer writes `text` to the first account.
    pub fn new(text: impl Into<String>) -> CustomerSays {
        CustomerSays {
            text: text.into(),
            app_id: None,
            group: None,
        }
    }
}

/// Why a control request on the yunzhenji side was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YunzhenjiError {
    /// A value is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl YunzhenjiError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> YunzhenjiError {
        YunzhenjiError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            YunzhenjiError::Invalid { field, .. } => field,
        }
    }
}

/// One answer of `wechat/sendMessage`: always HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) body: String,
    pub(crate) code: i64,
}

#[derive(Debug)]
struct State {
    messages: VecDeque<YunzhenjiMessage>,
    pushes: VecDeque<YunzhenjiPush>,
    accepted: u64,
    pushed: u64,
    push_delay: Duration,
    failure_rate: f64,
    partial_next: Option<usize>,
    rng: StdRng,
}

/// The vendor. Deliberately not `Debug`: it holds access tokens.
pub(crate) struct Yunzhenji {
    accounts: Vec<YunzhenjiAccount>,
    target: Target,
    shutdown: watch::Receiver<bool>,
    max_records: usize,
    state: Mutex<State>,
}

impl Yunzhenji {
    /// The vendor for `settings` (already checked, with a validated `target`), keeping at most
    /// `max_records` messages and as many pushes; `seed` makes the failures and ids repeatable.
    pub(crate) fn new(
        settings: &YunzhenjiSettings,
        target: Target,
        max_records: usize,
        seed: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Yunzhenji {
        Yunzhenji {
            accounts: settings.accounts.clone(),
            target,
            shutdown,
            max_records,
            state: Mutex::new(State {
                messages: VecDeque::new(),
                pushes: VecDeque::new(),
                accepted: 0,
                pushed: 0,
                push_delay: settings.push_delay,
                failure_rate: settings.failure_rate,
                partial_next: None,
                // A stream of its own, so that these draws shift no other.
                rng: StdRng::seed_from_u64(seed ^ 0x797a_6a21_7975_6e7a),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `app_id`s, for the startup log.
    pub(crate) fn app_ids(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| a.app_id.as_str())
    }

    /// The callback URL without its path, safe to log.
    pub(crate) fn redacted_target(&self) -> Option<String> {
        self.target.redacted()
    }

    /// `{"errcode":-1,"message":…}`, the answer of a busy vendor.
    pub(crate) fn system_error(&self) -> Reply {
        refuse(&Refusal::SystemError)
    }

    /// Answers one call; the pushes of the messages it accepted go out in the background.
    pub(crate) fn handle(self: &Arc<Self>, body: &[u8], now_ms: u64) -> Reply {
        match self.accept(body, now_ms) {
            Ok((reply, planned)) => {
                self.schedule(planned);
                reply
            }
            Err(refusal) => refuse(&refusal),
        }
    }

    fn accept(&self, body: &[u8], now_ms: u64) -> Result<(Reply, Vec<Planned>), Refusal> {
        let object = check::json_object(body)?;
        let call = check::call(&object)?;
        let account = self
            .accounts
            .iter()
            .find(|a| {
                a.app_id == call.app_id
                    && bool::from(
                        a.access_token
                            .as_bytes()
                            .ct_eq(call.access_token.as_bytes()),
                    )
            })
            .ok_or(Refusal::Credentials)?;
        if account.wxid != call.wxid {
            return Err(Refusal::Wxid);
        }
        let messages = check::messages(call.messages)?;
        let mut state = self.lock();
        let accepting = state
            .partial_next
            .take()
            .map_or(messages.len(), |limit| limit.min(messages.len()));
        let delay = state.push_delay;
        let mut data = Vec::with_capacity(accepting);
        let mut echoes = Vec::with_capacity(accepting);
        let mut failures = Vec::new();
        for (idx, message) in messages.into_iter().take(accepting).enumerate() {
            // One draw per message whatever the rate, so that a seed repeats.
            let fails = state.rng.random::<f64>() < state.failure_rate;
            let svrid = svrid(&mut state.rng, &account.wxid, call.target_wxid, now_ms);
            let id = &message.api_send_id;
            data.push(with_id(json!({"idx": idx, "api_send_svrid": svrid}), id));
            // A message scheduled later (delayed_time) is sent then, within a day's bound.
            let scheduled = Duration::from_millis(
                message
                    .delayed_time
                    .saturating_mul(1000)
                    .saturating_sub(now_ms),
            );
            let after = delay.max(scheduled.min(MAX_SCHEDULED));
            let sent_at_ms = now_ms.saturating_add(u64::try_from(after.as_millis()).unwrap_or(0));
            let echo = json!({
                "api_send_svrid": svrid,
                "from_wxid": account.wxid,
                "to_wxid": call.target_wxid,
                "msg_type": message.msg_type,
                "content": message.content,
                "create_time": sent_at_ms / 1000,
            });
            echoes.push(Planned::new("chatMsg", account, after, with_id(echo, id)));
            if fails {
                let failure = json!({
                    "api_send_svrid": svrid,
                    "to_wxid": call.target_wxid,
                    "message": FAILURE_MESSAGE,
                });
                let failure = with_id(failure, id);
                failures.push(Planned::new("chatMsgSendFail", account, after, failure));
            }
            state.accepted += 1;
            let record = YunzhenjiMessage {
                seq: state.accepted,
                app_id: account.app_id.clone(),
                wxid: account.wxid.clone(),
                target_wxid: call.target_wxid.to_owned(),
                idx,
                api_send_id: id.as_ref().map(id_string),
                msg_type: message.msg_type,
                content: message.content,
                api_send_svrid: svrid,
                delayed_time: message.delayed_time,
                fails,
                received_at_ms: now_ms,
            };
            keep(&mut state.messages, record, self.max_records);
        }
        // chatMsg comes for every handed-over message, delivered or not; the failures after.
        echoes.extend(failures);
        let reply = Reply {
            body: json!({"errcode": 0, "data": data}).to_string(),
            code: 0,
        };
        Ok((reply, echoes))
    }

    /// The recorded messages in order, all or one target's.
    pub(crate) fn messages(&self, target_wxid: Option<&str>) -> Vec<YunzhenjiMessage> {
        self.lock()
            .messages
            .iter()
            .filter(|m| target_wxid.is_none_or(|t| m.target_wxid == t))
            .cloned()
            .collect()
    }

    /// The finished pushes in order.
    pub(crate) fn pushes(&self) -> Vec<YunzhenjiPush> {
        self.lock().pushes.iter().cloned().collect()
    }

    /// What the side is set to, and its counters.
    pub(crate) fn status(&self) -> YunzhenjiStatus {
        let state = self.lock();
        YunzhenjiStatus {
            callback: self.target.redacted(),
            push_delay_ms: u64::try_from(state.push_delay.as_millis()).unwrap_or(u64::MAX),
            failure_rate: state.failure_rate,
            partial_next: state.partial_next,
            accepted: state.accepted,
            pushes: state.pushed,
        }
    }

    /// Applies a change of settings: all of it, or nothing when a value is invalid.
    pub(crate) fn change(
        &self,
        change: &YunzhenjiChange,
    ) -> Result<YunzhenjiStatus, YunzhenjiError> {
        let uri = change
            .callback_url
            .as_deref()
            .map(crate::push::parse_callback_url)
            .transpose()
            .map_err(|reason| YunzhenjiError::invalid("callback_url", reason))?;
        let delay = change.push_delay_ms.map(Duration::from_millis);
        delay
            .map(settings::check_delay)
            .transpose()
            .map_err(|reason| YunzhenjiError::invalid("push_delay_ms", reason))?;
        let rate = change
            .failure_rate
            .map(crate::faults::check_rate)
            .transpose()
            .map_err(|reason| YunzhenjiError::invalid("failure_rate", reason))?;
        if let Some(uri) = uri {
            self.target.set(uri);
        }
        {
            let mut state = self.lock();
            if let Some(rate) = rate {
                state.failure_rate = rate;
            }
            if let Some(delay) = delay {
                state.push_delay = delay;
            }
        }
        Ok(self.status())
    }

    /// The next valid call accepts only its first `accept` messages: its `data` misses the
    /// others, which are neither recorded nor pushed.
    pub(crate) fn accept_only(&self, accept: usize) -> YunzhenjiStatus {
        self.lock().partial_next = Some(accept);
        self.status()
    }

    /// A customer writes: a `chatMsg` without `api_send_id` is pushed at once (with the
    /// retries), and reported.
    pub(crate) async fn customer_says(
        &self,
        customer: &str,
        says: CustomerSays,
        now_ms: u64,
    ) -> Result<YunzhenjiPush, YunzhenjiError> {
        if customer.is_empty() {
            return Err(YunzhenjiError::invalid("wxid", "must not be empty"));
        }
        if says.text.is_empty() {
            return Err(YunzhenjiError::invalid("text", "must not be empty"));
        }
        let account = match &says.app_id {
            None => self.accounts.first(),
            Some(app_id) => self.accounts.iter().find(|a| &a.app_id == app_id),
        }
        .ok_or_else(|| YunzhenjiError::invalid("app_id", "no yunzhenji account has it"))?;
        let to = says.group.as_deref().unwrap_or(&account.wxid);
        let svrid = svrid(&mut self.lock().rng, customer, to, now_ms);
        let data = json!({
            "api_send_svrid": svrid,
            "from_wxid": customer,
            "to_wxid": to,
            "msg_type": "text",
            "content": {"items": [{"type": "text", "text": says.text}]},
            "create_time": now_ms / 1000,
        });
        let planned = Planned::new("chatMsg", account, Duration::ZERO, data);
        Ok(self.push(planned).await)
    }
}

/// `object` with `"api_send_id"` set to `id`, when the message was sent with one.
fn with_id(mut object: Value, id: &Option<Value>) -> Value {
    if let Some(id) = id {
        object["api_send_id"] = id.clone();
    }
    object
}

/// An `api_send_id` as a string: a string as it is, a number in decimal.
fn id_string(id: &Value) -> String {
    match id {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

/// A vendor message id shaped like the documented one (`168…,7…,1675997660116ABKocO`): the
/// two parties, the time in milliseconds and five random letters.
fn svrid(rng: &mut StdRng, from: &str, to: &str, now_ms: u64) -> String {
    let letters: String = (0..5)
        .map(|_| {
            let i = rng.random_range(0..52u8);
            char::from(if i < 26 { b'A' + i } else { b'a' + i - 26 })
        })
        .collect();
    format!("{from},{to},{now_ms}{letters}")
}

/// `{"errcode":N,"message":"…"}`: the vendor's key is `message`, not `errmsg`.
fn refuse(refusal: &Refusal) -> Reply {
    Reply {
        body: json!({"errcode": refusal.code(), "message": refusal.message()}).to_string(),
        code: refusal.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor(failure_rate: f64, seed: u64) -> Yunzhenji {
        let settings = YunzhenjiSettings {
            failure_rate,
            ..YunzhenjiSettings::default()
        };
        let (_, shutdown) = watch::channel(false);
        Yunzhenji::new(&settings, Target::new(None), 100, seed, shutdown)
    }

    fn call(count: usize) -> Vec<u8> {
        let messages: Vec<Value> = (0..count)
            .map(|i| json!({"msg_type": "picture", "content": {"url": "u"}, "api_send_id": i}))
            .collect();
        json!({"app_id": DEFAULT_YZJ_APP_ID, "access_token": DEFAULT_YZJ_ACCESS_TOKEN,
            "wxid": DEFAULT_YZJ_WXID, "target_wxid": "7881", "messages": messages})
        .to_string()
        .into_bytes()
    }

    fn failures(vendor: &Yunzhenji) -> Vec<bool> {
        for _ in 0..8 {
            let (_, planned) = vendor.accept(&call(5), 1_700_000_000_000).unwrap();
            let fails = planned
                .iter()
                .filter(|p| p.body()["event"] == "chatMsgSendFail")
                .count();
            let recorded = vendor.messages(None);
            assert_eq!(
                recorded.iter().rev().take(5).filter(|m| m.fails).count(),
                fails
            );
        }
        vendor.messages(None).into_iter().map(|m| m.fails).collect()
    }

    #[test]
    fn failures_repeat_with_the_seed_and_honour_the_rate() {
        let a = failures(&vendor(0.5, 7));
        assert_eq!(a, failures(&vendor(0.5, 7)));
        assert_ne!(a, failures(&vendor(0.5, 8)));
        assert!(a.contains(&true) && a.contains(&false));
        assert!(failures(&vendor(0.0, 7)).iter().all(|f| !f));
        assert!(failures(&vendor(1.0, 7)).iter().all(|f| *f));
    }

    #[test]
    fn svrids_look_like_the_vendor_s_and_ids_read_as_strings() {
        let mut rng = StdRng::seed_from_u64(1);
        let id = svrid(&mut rng, "1688", "7881", 1_675_997_660_116);
        let (prefix, letters) = id.split_at(id.len() - 5);
        assert_eq!(prefix, "1688,7881,1675997660116");
        assert!(letters.bytes().all(|b| b.is_ascii_alphabetic()), "{id}");
        assert_ne!(id, svrid(&mut rng, "1688", "7881", 1_675_997_660_116));
        assert_eq!(id_string(&json!("k-1")), "k-1");
        assert_eq!(id_string(&json!(42)), "42");
        assert_eq!(with_id(json!({}), &None), json!({}));
        assert_eq!(
            with_id(json!({}), &Some(json!(7))),
            json!({"api_send_id": 7})
        );
    }

    #[test]
    fn a_partial_limit_applies_to_one_valid_call() {
        let vendor = vendor(0.0, 1);
        vendor.accept_only(1);
        assert!(vendor.accept(b"{}", 0).is_err());
        let (reply, planned) = vendor.accept(&call(3), 0).unwrap();
        assert_eq!(planned.len(), 1);
        let reply: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(reply["data"].as_array().unwrap().len(), 1);
        let (_, planned) = vendor.accept(&call(3), 0).unwrap();
        assert_eq!(planned.len(), 3);
        assert_eq!(vendor.status().accepted, 4);
    }
}
