//! yunzhenji's pushes (protocols.md §7.2): `POST` JSON to
//! `/v1/callbacks/yunzhenji/{callback_secret}`.
//!
//! The vendor documents no callback authentication, so the URL's secret segment is the
//! credential, and it says which account the push is for. It is compared in constant time with
//! every account's secret, all of them each time; a wrong one is answered as an unknown route,
//! so that the route reveals nothing about the secrets. The schema is unconfirmed (§11 item 14):
//! [`read_callback`] finds the fields wherever the vendor puts them, and the body is kept as
//! received in the event's `raw`.
//!
//! What the relay relies on, and what the desk gets:
//!
//! | push | recognised by | event `kind` | job report |
//! |---|---|---|---|
//! | `chatMsg` without `api_send_id` | a customer's message (or one the account sent outside the relay) | `message` | none |
//! | `chatMsg` with `api_send_id` | the echo of a send: our message id in decimal | `sent` | taken: an ambiguous send becomes `accepted` |
//! | `chatMsgSendFail` | a failed send, `api_send_id` naming it | `send_failed` | failed: `failed` with reason `send_failed` and the vendor's text |
//!
//! The redelivery key is the account, the event type, `api_send_svrid` and `api_send_id`, or the
//! SHA-256 of the body when there is no svrid. The two forms are tagged apart, and the svrid form
//! holds its parts as a JSON array, so that no push can take another's key: a push carrying a
//! genuine report's svrid but another (or no) `api_send_id` does not turn the genuine report into
//! a "redelivery" that is dropped.

use kefu_payload::yunzhenji::{CallbackError, CallbackKind, VendorCallback, read_callback};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::event::{EventKind, yunzhenji_event};
use crate::config::{Secret, YunzhenjiAccount};
use crate::store::{ReportKind, SendReport};

/// The largest push read: a chat message with its content, with room to spare. A larger body is
/// no push the relay can use, and is refused before it is read whole.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a push was refused after its secret matched. The `Display` text is for the log: it names
/// the failed step and never holds a secret or the message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum YunzhenjiRejection {
    /// The body is larger than [`MAX_BODY_BYTES`] or could not be read.
    #[error("the body is larger than {MAX_BODY_BYTES} bytes or could not be read")]
    Body,
    /// The body is no callback the relay understands.
    #[error("{0}")]
    Parse(CallbackError),
}

impl YunzhenjiRejection {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            YunzhenjiRejection::Body => "body",
            YunzhenjiRejection::Parse(_) => "parse",
        }
    }
}

/// One account, as its pushes need it.
struct Account {
    name: String,
    wxid: String,
    secret: Secret,
    confirm_window_ms: i64,
}

/// A push that parsed, ready to store.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event for the desk, without its `id`.
    pub event: Map<String, Value>,
    /// The customer or group the push is about, which orders its events.
    pub conversation: String,
    /// The redelivery key.
    pub dedup_key: String,
    /// What it says about one of our messages, if it names one.
    pub report: Option<SendReport>,
    /// The event's kind, for metrics and logs.
    pub kind: EventKind,
}

/// Checks and reads the pushes of every yunzhenji account.
pub struct YunzhenjiReceiver {
    accounts: Vec<Account>,
}

impl YunzhenjiReceiver {
    /// A receiver for the configured accounts.
    pub fn new(accounts: &[YunzhenjiAccount]) -> YunzhenjiReceiver {
        YunzhenjiReceiver {
            accounts: accounts
                .iter()
                .map(|account| Account {
                    name: account.name.clone(),
                    wxid: account.wxid.clone(),
                    secret: account.callback_secret.clone(),
                    confirm_window_ms: super::millis(account.confirm_window),
                })
                .collect(),
        }
    }

    /// The index of the account whose callback secret `secret` is. Every account's secret is
    /// compared, in constant time, whichever matches: the time taken says nothing about them.
    pub fn account(&self, secret: &str) -> Option<usize> {
        let mut found = None;
        for (index, account) in self.accounts.iter().enumerate() {
            if bool::from(secret.as_bytes().ct_eq(account.secret.expose().as_bytes())) {
                found = Some(index);
            }
        }
        found
    }

    /// The name of the account at `index` (from [`YunzhenjiReceiver::account`]).
    pub fn name(&self, index: usize) -> &str {
        self.accounts
            .get(index)
            .map_or("", |account| account.name.as_str())
    }

    /// Reads a push for the account at `index`; nothing is stored unless it parses.
    pub fn receive(
        &self,
        index: usize,
        body: &[u8],
        received_at_ms: i64,
    ) -> Result<Received, YunzhenjiRejection> {
        let account = self.accounts.get(index).ok_or(YunzhenjiRejection::Body)?;
        let raw = match serde_json::from_slice(body) {
            Ok(Value::Object(raw)) => raw,
            Ok(_) => return Err(YunzhenjiRejection::Parse(CallbackError::NotObject)),
            Err(_) => return Err(YunzhenjiRejection::Parse(CallbackError::NotJson)),
        };
        let callback = read_callback(&raw).map_err(YunzhenjiRejection::Parse)?;
        let job_id = callback
            .api_send_id
            .as_deref()
            .and_then(|id| id.parse::<i64>().ok())
            .filter(|id| *id > 0);
        let (kind, report) = match callback.kind {
            CallbackKind::ChatMsgSendFail => (
                EventKind::SendFailed,
                Some(ReportKind::Failed {
                    message: callback
                        .text
                        .clone()
                        .unwrap_or_else(|| "chatMsgSendFail without a reason".to_owned()),
                }),
            ),
            CallbackKind::ChatMsg if callback.api_send_id.is_some() => {
                (EventKind::Sent, Some(ReportKind::Taken))
            }
            CallbackKind::ChatMsg => (EventKind::Message, None),
        };
        let report = report.zip(job_id).map(|(kind, job_id)| SendReport {
            job_id,
            kind,
            confirm_window_ms: account.confirm_window_ms,
        });
        let conversation = conversation(&callback, &account.wxid, kind);
        let dedup_key = match &callback.api_send_svrid {
            Some(svrid) => format!(
                "yunzhenji:{}:{}:svrid:{}",
                account.name,
                callback.kind.as_str(),
                serde_json::json!([svrid, callback.api_send_id])
            ),
            None => format!(
                "yunzhenji:{}:{}:sha256:{}",
                account.name,
                callback.kind.as_str(),
                hex::encode(Sha256::digest(body))
            ),
        };
        let event = yunzhenji_event(
            &account.name,
            &callback,
            kind,
            &conversation,
            job_id,
            raw,
            received_at_ms,
        );
        Ok(Received {
            event,
            conversation,
            dedup_key,
            report,
            kind,
        })
    }
}

/// The customer or group a push is about: whom the desk answers (`target_wxid`). A send's echo
/// or failure is about its receiver; a received message about its group (the receiver, when it
/// is not the account) or else its sender.
fn conversation(callback: &VendorCallback, account_wxid: &str, kind: EventKind) -> String {
    let receiver = callback.receiver.as_deref();
    let sender = callback.sender.as_deref();
    let chosen = match kind {
        EventKind::Message => receiver
            .filter(|receiver| *receiver != account_wxid)
            .or(sender.filter(|sender| *sender != account_wxid))
            .or(receiver),
        _ => receiver.or(sender),
    };
    chosen.unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn receiver() -> YunzhenjiReceiver {
        let account = |name: &str, secret: &str| YunzhenjiAccount {
            name: name.into(),
            app_id: "app".into(),
            access_token: Secret::new("token"),
            wxid: "1688".into(),
            base_url: "http://127.0.0.1:1".into(),
            callback_secret: Secret::new(secret),
            confirm_window: Duration::from_secs(5),
        };
        YunzhenjiReceiver::new(&[account("a", SECRET), account("b", OTHER)])
    }

    #[test]
    fn the_secret_picks_the_account() {
        let receiver = receiver();
        assert_eq!(receiver.account(SECRET), Some(0));
        assert_eq!(receiver.account(OTHER), Some(1));
        assert_eq!(receiver.name(1), "b");
        for wrong in [
            "",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdefX",
        ] {
            assert_eq!(receiver.account(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn a_customer_message_is_a_message_event_without_a_report() {
        let body = br#"{"event":"chatMsg","app_id":"app","wxid":"1688","data":{"api_send_svrid":"s1","from_wxid":"7cust","to_wxid":"1688","msg_type":"text","content":{"items":[{"type":"text","text":"hi"}]},"create_time":1700000000}}"#;
        let received = receiver().receive(0, body, 5).unwrap();
        assert_eq!(received.kind, EventKind::Message);
        assert_eq!(received.conversation, "7cust");
        assert!(received.report.is_none());
        assert_eq!(
            received.dedup_key,
            r#"yunzhenji:a:chatMsg:svrid:["s1",null]"#
        );
        let event = Value::Object(received.event);
        assert_eq!(event["source"], "yunzhenji");
        assert_eq!(event["kind"], "message");
        assert_eq!(event["account"], "a");
        assert_eq!(event["openid"], "7cust");
        assert_eq!(event["sender"], "7cust");
        assert_eq!(event["receiver"], "1688");
        assert_eq!(event["text"], "hi");
        assert_eq!(event["msg_id"], "s1");
        assert_eq!(event["message_id"], Value::Null);
        assert_eq!(event["raw"]["data"]["create_time"], 1_700_000_000);
        assert_eq!(event["created_at"], 1_700_000_000);
    }

    #[test]
    fn a_group_message_is_about_the_group() {
        let body = br#"{"event":"chatMsg","data":{"from_wxid":"7cust","to_wxid":"group@chatroom","content":"hi"}}"#;
        let received = receiver().receive(0, body, 5).unwrap();
        assert_eq!(received.conversation, "group@chatroom");
    }

    #[test]
    fn an_echo_reports_our_message_taken() {
        let body = br#"{"event":"chatMsg","data":{"api_send_id":42,"api_send_svrid":"s2","from_wxid":"1688","to_wxid":"7cust"}}"#;
        let received = receiver().receive(1, body, 5).unwrap();
        assert_eq!(received.kind, EventKind::Sent);
        assert_eq!(received.conversation, "7cust");
        assert_eq!(
            received.report,
            Some(SendReport {
                job_id: 42,
                kind: ReportKind::Taken,
                confirm_window_ms: 5000
            })
        );
        let event = Value::Object(received.event);
        assert_eq!(event["message_id"], 42);
        assert_eq!(event["api_send_id"], "42");
        assert_eq!(event["account"], "b");
    }

    #[test]
    fn a_failure_reports_our_message_failed_with_the_vendors_text() {
        let body = br#"{"event":"chatMsgSendFail","data":{"api_send_id":"42","to_wxid":"7cust","message":"offline"}}"#;
        let received = receiver().receive(0, body, 5).unwrap();
        assert_eq!(received.kind, EventKind::SendFailed);
        assert_eq!(
            received.report.map(|report| report.kind),
            Some(ReportKind::Failed {
                message: "offline".into()
            })
        );
        assert!(
            received
                .dedup_key
                .starts_with("yunzhenji:a:chatMsgSendFail:sha256:"),
            "no svrid: the body's hash"
        );
        let event = Value::Object(received.event);
        assert_eq!(event["kind"], "send_failed");
        assert_eq!(event["error"], "offline");
    }

    #[test]
    fn no_push_takes_the_redelivery_key_of_another_report() {
        let key = |body: &[u8]| receiver().receive(0, body, 5).unwrap().dedup_key;
        let genuine = key(br#"{"event":"chatMsgSendFail","data":{"api_send_id":"42","api_send_svrid":"S","message":"x"}}"#);
        let same_svrid_no_id =
            key(br#"{"event":"chatMsgSendFail","data":{"api_send_svrid":"S","message":"x"}}"#);
        let same_svrid_other_id = key(
            br#"{"event":"chatMsgSendFail","data":{"api_send_id":"43","api_send_svrid":"S","message":"x"}}"#,
        );
        assert_ne!(genuine, same_svrid_no_id);
        assert_ne!(genuine, same_svrid_other_id);

        let without_svrid =
            br#"{"event":"chatMsgSendFail","data":{"api_send_id":"42","message":"x"}}"#;
        let hashed = key(without_svrid);
        let hash = hashed.rsplit(':').next().unwrap();
        let posing = format!(
            r#"{{"event":"chatMsgSendFail","data":{{"api_send_svrid":"sha256:{hash}","message":"x"}}}}"#
        );
        assert_ne!(key(posing.as_bytes()), hashed);
        assert_eq!(
            key(without_svrid),
            hashed,
            "a true redelivery keeps its key"
        );
    }

    #[test]
    fn an_id_that_is_not_ours_reports_nothing() {
        let body = br#"{"event":"chatMsgSendFail","data":{"api_send_id":"k-0001","message":"x"}}"#;
        let received = receiver().receive(0, body, 5).unwrap();
        assert!(received.report.is_none());
    }

    #[test]
    fn what_does_not_parse_is_refused() {
        for body in [&b"not json"[..], b"[1]", br#"{"event":"other"}"#, b"{}"] {
            let rejection = receiver().receive(0, body, 5).unwrap_err();
            assert_eq!(rejection.reason(), "parse", "{rejection}");
        }
    }
}
