//! Reads yunzhenji's `chatMsg` and `chatMsgSendFail` pushes (protocols.md §7.2), whose schema the
//! vendor has not published (§11 item 14).
//!
//! The sandbox pushes this shape, our best reading of the vendor's pages:
//!
//! ```json
//! {"event":"chatMsg","app_id":"…","wxid":"<account>",
//!  "data":{"api_send_id":"42","api_send_svrid":"…","from_wxid":"…","to_wxid":"…",
//!          "msg_type":"text","content":{"items":[{"type":"text","text":"您好"}]},
//!          "create_time":1700000000}}
//! {"event":"chatMsgSendFail","app_id":"…","wxid":"…",
//!  "data":{"api_send_id":"42","api_send_svrid":"…","to_wxid":"…","message":"<why>"}}
//! ```
//!
//! Since a real capture may nest or name the fields otherwise, each field is looked for wherever
//! it is: the JSON tree is walked breadth first, at most [`MAX_DEPTH`] levels of objects and
//! arrays deep, and key names are compared without case, `_` or `-` (`api_send_id`,
//! `apiSendId` and `API-SEND-ID` are one key). For each field the key names below are tried in
//! order, each one at every depth, shallowest first, before the next name; the first value of
//! the right JSON type wins. These are the fields relied on, so that one real capture confirms or
//! corrects them:
//!
//! | field | key names, in order | values taken |
//! |---|---|---|
//! | kind | `event`, `event_type`, `callback_type`, `notify_type`, `cmd`, `type`, `action` | a string equal, without case, to `chatMsg` or `chatMsgSendFail` |
//! | `api_send_id` | `api_send_id` | a non-empty string (trimmed) or a number (as its decimal text; `42.0` as `42`) |
//! | `api_send_svrid` | `api_send_svrid`, `send_svrid`, `svrid` | likewise |
//! | sender | `from_wxid`, `sender_wxid`, `sender`, `from_user`, `from` | a non-empty string |
//! | receiver | `to_wxid`, `receiver_wxid`, `receiver`, `target_wxid`, `to_user`, `to` | a non-empty string |
//! | `msg_type` | `msg_type`, `message_type`, `content_type` | a non-empty string |
//! | content | `content`, `msg_content` | any value but `null` |
//! | text of a `chatMsg` | from the content: the `text` of its `items` whose `type` is `text` or absent, joined; else its `text` string; else the content itself when a string | |
//! | text of a `chatMsgSendFail` | `message`, `reason`, `fail_reason`, `errmsg`, `error_msg`, `error` | a non-empty string |
//! | `create_time` | `create_time`, `created_at`, `send_time`, `msg_time`, `timestamp` | a positive integer or a string of digits: Unix seconds, or milliseconds (from 10^11 on, which as seconds would be past the year 5000) converted to seconds |
//!
//! The top-level `wxid` (the account) is deliberately no candidate for the sender or the
//! receiver: it names our own account in both directions.

use core::fmt;
use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::cgibin::response::integer;

/// How many levels of objects and arrays below the top the walk looks into.
pub const MAX_DEPTH: usize = 8;

/// The most objects the walk visits: a bound on work for a wide body within the caller's size
/// limit.
const MAX_OBJECTS: usize = 4096;

/// Event-type keys, in precedence order (normalised: lower case, without `_` and `-`).
const EVENT_KEYS: &[&str] = &[
    "event",
    "eventtype",
    "callbacktype",
    "notifytype",
    "cmd",
    "type",
    "action",
];
const SEND_ID_KEYS: &[&str] = &["apisendid"];
const SVRID_KEYS: &[&str] = &["apisendsvrid", "sendsvrid", "svrid"];
const SENDER_KEYS: &[&str] = &["fromwxid", "senderwxid", "sender", "fromuser", "from"];
const RECEIVER_KEYS: &[&str] = &[
    "towxid",
    "receiverwxid",
    "receiver",
    "targetwxid",
    "touser",
    "to",
];
const MSG_TYPE_KEYS: &[&str] = &["msgtype", "messagetype", "contenttype"];
const CONTENT_KEYS: &[&str] = &["content", "msgcontent"];
const TIME_KEYS: &[&str] = &[
    "createtime",
    "createdat",
    "sendtime",
    "msgtime",
    "timestamp",
];
const FAILURE_KEYS: &[&str] = &[
    "message",
    "reason",
    "failreason",
    "errmsg",
    "errormsg",
    "error",
];

/// Which push a callback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// `chatMsg`: a message the account sent (ours, echoing `api_send_id`, sent or not) or
    /// received (a customer's, without `api_send_id`).
    ChatMsg,
    /// `chatMsgSendFail`: one of our sends failed.
    ChatMsgSendFail,
}

impl CallbackKind {
    /// The vendor's name of the event, as a stable key (deduplication, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::ChatMsg => "chatMsg",
            CallbackKind::ChatMsgSendFail => "chatMsgSendFail",
        }
    }

    fn parse(value: &str) -> Option<CallbackKind> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("chatMsg") {
            Some(CallbackKind::ChatMsg)
        } else if value.eq_ignore_ascii_case("chatMsgSendFail") {
            Some(CallbackKind::ChatMsgSendFail)
        } else {
            None
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a callback says, wherever the vendor put it (see the module's table).
#[derive(Debug, Clone, PartialEq)]
pub struct VendorCallback {
    /// The event.
    pub kind: CallbackKind,
    /// The relay's id echoed, as a string whether it came as a string or a number.
    pub api_send_id: Option<String>,
    /// The vendor's message id.
    pub api_send_svrid: Option<String>,
    /// Who sent the message (`from_wxid`, …).
    pub sender: Option<String>,
    /// Who received it (`to_wxid`, …): a customer, a group or the account.
    pub receiver: Option<String>,
    /// The message type (`text`, `picture`, …).
    pub msg_type: Option<String>,
    /// The message content as it came.
    pub content: Option<Value>,
    /// The text of a text message, or a failure's reason.
    pub text: Option<String>,
    /// When the vendor says the message was sent, Unix seconds.
    pub create_time: Option<i64>,
}

/// Why a body is not a callback this relay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackError {
    /// The body is not JSON.
    NotJson,
    /// The body is JSON but not an object.
    NotObject,
    /// No event-type key was found.
    NoEvent,
    /// An event-type key was found, naming neither `chatMsg` nor `chatMsgSendFail`.
    UnknownEvent,
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallbackError::NotJson => "the callback body is not JSON",
            CallbackError::NotObject => "the callback body is not a JSON object",
            CallbackError::NoEvent => "the callback names no event type",
            CallbackError::UnknownEvent => {
                "the callback's event type is neither chatMsg nor chatMsgSendFail"
            }
        })
    }
}

impl std::error::Error for CallbackError {}

/// Reads a yunzhenji callback body; the caller bounds its size.
///
/// ```
/// use kefu_payload::yunzhenji::{CallbackKind, parse_callback};
/// let body = br#"{"event":"chatMsgSendFail","data":{"api_send_id":42,"message":"offline"}}"#;
/// let callback = parse_callback(body).unwrap();
/// assert_eq!(callback.kind, CallbackKind::ChatMsgSendFail);
/// assert_eq!(callback.api_send_id.as_deref(), Some("42"));
/// assert_eq!(callback.text.as_deref(), Some("offline"));
/// ```
pub fn parse_callback(body: &[u8]) -> Result<VendorCallback, CallbackError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| CallbackError::NotJson)?;
    let Value::Object(top) = &value else {
        return Err(CallbackError::NotObject);
    };
    read_callback(top)
}

/// Reads a yunzhenji callback that the caller has already parsed, for a caller that keeps the
/// parsed body (as the relay keeps it as the event's `raw`) instead of parsing it twice.
pub fn read_callback(top: &Map<String, Value>) -> Result<VendorCallback, CallbackError> {
    let objects = walk(top);
    let kind = event(&objects)?;
    let content = find(&objects, CONTENT_KEYS, |v| {
        (!v.is_null()).then(|| v.clone())
    });
    let text = match kind {
        CallbackKind::ChatMsg => content.as_ref().and_then(content_text),
        CallbackKind::ChatMsgSendFail => find(&objects, FAILURE_KEYS, string),
    };
    Ok(VendorCallback {
        kind,
        api_send_id: find(&objects, SEND_ID_KEYS, id),
        api_send_svrid: find(&objects, SVRID_KEYS, id),
        sender: find(&objects, SENDER_KEYS, string),
        receiver: find(&objects, RECEIVER_KEYS, string),
        msg_type: find(&objects, MSG_TYPE_KEYS, string),
        content,
        text,
        create_time: find(&objects, TIME_KEYS, unix_seconds),
    })
}

/// Every object of the tree, breadth first (shallowest first), within [`MAX_DEPTH`] and
/// [`MAX_OBJECTS`].
fn walk(top: &Map<String, Value>) -> Vec<&Map<String, Value>> {
    let mut objects = vec![top];
    let mut queue: VecDeque<(&Value, usize)> = top.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = queue.pop_front() {
        if depth > MAX_DEPTH || objects.len() >= MAX_OBJECTS {
            continue;
        }
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => {
                objects.push(map);
                Box::new(map.values())
            }
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        queue.extend(children.map(|child| (child, depth + 1)));
    }
    objects
}

/// A key without case, `_` or `-`.
fn normalise(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The first value, by key precedence then depth, that `take` accepts.
fn find<T>(
    objects: &[&Map<String, Value>],
    keys: &[&str],
    take: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    keys.iter().find_map(|key| {
        objects.iter().find_map(|object| {
            object
                .iter()
                .filter(|(k, _)| normalise(k) == *key)
                .find_map(|(_, v)| take(v))
        })
    })
}

fn event(objects: &[&Map<String, Value>]) -> Result<CallbackKind, CallbackError> {
    if let Some(kind) = find(objects, EVENT_KEYS, |v| {
        v.as_str().and_then(CallbackKind::parse)
    }) {
        return Ok(kind);
    }
    // A `type` key is also an item's type (`{"type":"text"}`), so its presence alone says little;
    // only a top-level event-type key tells an unknown event from a missing one.
    let top_has_event = objects.first().is_some_and(|top| {
        top.keys()
            .any(|k| EVENT_KEYS.contains(&normalise(k).as_str()))
    });
    Err(if top_has_event {
        CallbackError::UnknownEvent
    } else {
        CallbackError::NoEvent
    })
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An id from a non-empty string (trimmed) or a number; a whole number written as a float
/// (`42.0`, as some JSON encoders do) reads as the integer the relay sent.
fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Values from here on are milliseconds: as seconds they would be past the year 5000.
const FIRST_MILLISECOND_VALUE: i64 = 100_000_000_000;

/// Unix seconds from a positive integer or string of digits, in seconds or milliseconds
/// (the vendor's unit is unknown, and either is common in such APIs).
fn unix_seconds(value: &Value) -> Option<i64> {
    match integer(value)? {
        n if n <= 0 => None,
        n if n >= FIRST_MILLISECOND_VALUE => Some(n / 1000),
        n => Some(n),
    }
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(_) => string(content),
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("items") {
                let texts: Vec<&str> = items
                    .iter()
                    .filter_map(Value::as_object)
                    .filter(|item| item.get("type").is_none_or(|t| t.as_str() == Some("text")))
                    .filter_map(|item| item.get("text").and_then(Value::as_str))
                    .collect();
                if !texts.is_empty() {
                    return Some(texts.concat());
                }
            }
            map.get("text").and_then(string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<VendorCallback, CallbackError> {
        parse_callback(value.to_string().as_bytes())
    }

    #[test]
    fn the_documented_chat_msg() {
        let callback = parse(json!({
            "event": "chatMsg", "app_id": "A", "wxid": "ACCOUNT",
            "data": {"api_send_id": "42", "api_send_svrid": "1685,7,1675997660116ABKocO",
                     "from_wxid": "ACCOUNT", "to_wxid": "CUSTOMER", "msg_type": "text",
                     "content": {"items": [{"type": "text", "text": "您好"}, {"type": "text", "text": "!"}]},
                     "create_time": 1_700_000_000}
        }))
        .unwrap();
        assert_eq!(
            callback,
            VendorCallback {
                kind: CallbackKind::ChatMsg,
                api_send_id: Some("42".into()),
                api_send_svrid: Some("1685,7,1675997660116ABKocO".into()),
                sender: Some("ACCOUNT".into()),
                receiver: Some("CUSTOMER".into()),
                msg_type: Some("text".into()),
                content: Some(
                    json!({"items": [{"type": "text", "text": "您好"}, {"type": "text", "text": "!"}]})
                ),
                text: Some("您好!".into()),
                create_time: Some(1_700_000_000),
            }
        );
    }

    #[test]
    fn the_documented_send_failure() {
        let callback = parse(json!({
            "event": "chatMsgSendFail", "app_id": "A", "wxid": "ACCOUNT",
            "data": {"api_send_id": "42", "api_send_svrid": "S", "to_wxid": "CUSTOMER",
                     "message": "对方已删除"}
        }))
        .unwrap();
        assert_eq!(callback.kind, CallbackKind::ChatMsgSendFail);
        assert_eq!(callback.api_send_id.as_deref(), Some("42"));
        assert_eq!(callback.api_send_svrid.as_deref(), Some("S"));
        assert_eq!(callback.receiver.as_deref(), Some("CUSTOMER"));
        assert_eq!(callback.sender, None);
        assert_eq!(callback.text.as_deref(), Some("对方已删除"));
    }

    #[test]
    fn a_customer_message_has_no_send_id() {
        let callback = parse(json!({
            "event": "chatMsg", "wxid": "ACCOUNT",
            "data": {"api_send_svrid": "S", "from_wxid": "CUSTOMER", "to_wxid": "ACCOUNT",
                     "msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]}}
        }))
        .unwrap();
        assert_eq!(callback.api_send_id, None);
        assert_eq!(callback.sender.as_deref(), Some("CUSTOMER"));
        assert_eq!(callback.receiver.as_deref(), Some("ACCOUNT"));
        assert_eq!(callback.text.as_deref(), Some("hi"));
    }

    #[test]
    fn a_flat_shape_with_other_spellings() {
        let callback = parse(json!({
            "Type": "CHATMSG", "apiSendId": 42, "apiSendSvrid": 7,
            "sender": "ACCOUNT", "receiver": "GROUP@chatroom", "msgType": "text",
            "content": "plain"
        }))
        .unwrap();
        assert_eq!(callback.kind, CallbackKind::ChatMsg);
        assert_eq!(callback.api_send_id.as_deref(), Some("42"));
        assert_eq!(callback.api_send_svrid.as_deref(), Some("7"));
        assert_eq!(callback.sender.as_deref(), Some("ACCOUNT"));
        assert_eq!(callback.receiver.as_deref(), Some("GROUP@chatroom"));
        assert_eq!(callback.msg_type.as_deref(), Some("text"));
        assert_eq!(callback.text.as_deref(), Some("plain"));
    }

    #[test]
    fn the_time_in_seconds_or_milliseconds() {
        let time = |value: Value| {
            parse(json!({"event": "chatMsg", "data": value}))
                .unwrap()
                .create_time
        };
        assert_eq!(
            time(json!({"createTime": 1_700_000_000})),
            Some(1_700_000_000)
        );
        assert_eq!(
            time(json!({"timestamp": 1_700_000_000_123_i64})),
            Some(1_700_000_000)
        );
        assert_eq!(
            time(json!({"create_time": " 1700000000 "})),
            Some(1_700_000_000)
        );
        assert_eq!(
            time(json!({"msg_time": 1_700_000_000})),
            Some(1_700_000_000)
        );
        assert_eq!(
            time(json!({"create_time": "yesterday", "timestamp": 5})),
            Some(5)
        );
        for nothing in [
            json!({}),
            json!({"create_time": 0}),
            json!({"create_time": -3}),
            json!({"create_time": 1.5}),
            json!({"create_time": 1e300}),
            json!({"create_time": [1]}),
        ] {
            assert_eq!(time(nothing.clone()), None, "{nothing}");
        }
    }

    #[test]
    fn a_nested_shape() {
        let callback = parse(json!({
            "code": 0,
            "payload": {"callback_type": "ChatMsgSendFail",
                        "list": [{"msg": {"api_send_id": " 43 ", "to": "CUSTOMER",
                                          "reason": "rate limited"}}]}
        }))
        .unwrap();
        assert_eq!(callback.kind, CallbackKind::ChatMsgSendFail);
        assert_eq!(callback.api_send_id.as_deref(), Some("43"));
        assert_eq!(callback.receiver.as_deref(), Some("CUSTOMER"));
        assert_eq!(callback.text.as_deref(), Some("rate limited"));
    }

    #[test]
    fn specific_names_win_over_generic_ones_and_shallow_over_deep() {
        let callback = parse(json!({
            "event": "chatMsg", "from": "GENERIC",
            "data": {"from_wxid": "SPECIFIC", "quote": {"from_wxid": "DEEPER"}}
        }))
        .unwrap();
        assert_eq!(callback.sender.as_deref(), Some("SPECIFIC"));
    }

    #[test]
    fn an_item_type_is_not_an_event() {
        let err = parse(json!({"content": {"items": [{"type": "text", "text": "x"}]}}));
        assert_eq!(err, Err(CallbackError::NoEvent));
        assert_eq!(
            parse(json!({"event": "friendAdd"})),
            Err(CallbackError::UnknownEvent)
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(parse_callback(b""), Err(CallbackError::NotJson));
        assert_eq!(
            parse_callback(b"event=chatMsg"),
            Err(CallbackError::NotJson)
        );
        assert_eq!(parse_callback(b"{\"event\":"), Err(CallbackError::NotJson));
        assert_eq!(parse_callback(&[0xff, 0xfe]), Err(CallbackError::NotJson));
        assert_eq!(parse_callback(b"[1,2]"), Err(CallbackError::NotObject));
        assert_eq!(
            parse_callback(b"\"chatMsg\""),
            Err(CallbackError::NotObject)
        );
        assert_eq!(parse_callback(b"{}"), Err(CallbackError::NoEvent));
        assert_eq!(parse(json!({"event": 1})), Err(CallbackError::UnknownEvent));
        assert_eq!(
            parse(json!({"event": "chatMsg", "api_send_id": [1]}))
                .unwrap()
                .api_send_id,
            None
        );
        let float =
            parse_callback(br#"{"event":"chatMsg","api_send_id":42.0,"svrid":1.5}"#).unwrap();
        assert_eq!(float.api_send_id.as_deref(), Some("42"));
        assert_eq!(float.api_send_svrid.as_deref(), Some("1.5"));
    }

    #[test]
    fn the_walk_stops_at_max_depth() {
        let mut value = json!({"api_send_id": "deep"});
        for _ in 0..MAX_DEPTH {
            value = json!({ "x": value });
        }
        let shallow = json!({"event": "chatMsg", "wrap": value.clone()});
        assert_eq!(parse(shallow).unwrap().api_send_id, None);
        let within = json!({"event": "chatMsg", "wrap": value["x"].clone()});
        assert_eq!(parse(within).unwrap().api_send_id.as_deref(), Some("deep"));
    }

    #[test]
    fn a_deep_body_is_no_panic() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_callback(body.as_bytes()), Err(CallbackError::NotJson));
    }
}
