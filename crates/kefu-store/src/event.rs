//! The inbound event: one schema for the Dialogue platform's handoff callback and the standard
//! WeChat callbacks. The relay's `inbound` module describes the fields.

use kefu_payload::yunzhenji::VendorCallback;
use kefu_payload::{CallbackEvent, HandoffCallback, KefuState};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::message::StandardMessage;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Dialogue platform's handoff callback (人工客服回调).
    Dialogue,
    /// A standard callback of a configured WeChat account.
    Wechat,
    /// A push of a configured yunzhenji account.
    Yunzhenji,
}

impl Source {
    /// The schema spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dialogue => "dialogue",
            Source::Wechat => "wechat",
            Source::Yunzhenji => "yunzhenji",
        }
    }
}

/// What an event means to the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message: from the user, or (Dialogue `from` ≠ 0) a bot answer or an agent inside the
    /// platform.
    Message,
    /// The user opened the conversation (`userEnter`, `user_enter_tempsession`).
    UserEnter,
    /// The user left (`userQuit`).
    UserQuit,
    /// An agent joined (`customerStuffEnter`, an echoed `waiterEnter`, `kf_create_session`).
    AgentEnter,
    /// An agent left (`customerStuffQuit`, an echoed `waiterQuit`, `kf_close_session`).
    AgentQuit,
    /// The user asked for a person: the conversation entered `needperson`.
    HandoffRequested,
    /// The user rated the service (`assessment` 1 to 5).
    Rating,
    /// Anything else (another event, a state report without content); see `event` and `raw`.
    Other,
    /// yunzhenji: the account sent one of the relay's messages (`chatMsg` with `api_send_id`);
    /// sent, which is not yet delivered.
    Sent,
    /// yunzhenji: one of the relay's messages could not be sent (`chatMsgSendFail`).
    SendFailed,
}

impl EventKind {
    /// The schema spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::UserEnter => "user_enter",
            EventKind::UserQuit => "user_quit",
            EventKind::AgentEnter => "agent_enter",
            EventKind::AgentQuit => "agent_quit",
            EventKind::HandoffRequested => "handoff_requested",
            EventKind::Rating => "rating",
            EventKind::Other => "other",
            EventKind::Sent => "sent",
            EventKind::SendFailed => "send_failed",
        }
    }
}

/// The kind of a Dialogue callback, given the user's state before it (`None` for a user never
/// seen): its event first, then a rating, then a new request for a person, then content.
pub fn dialogue_kind(callback: &HandoffCallback, before: Option<KefuState>) -> EventKind {
    match &callback.event {
        Some(CallbackEvent::UserEnter) => return EventKind::UserEnter,
        Some(CallbackEvent::UserQuit) => return EventKind::UserQuit,
        Some(CallbackEvent::CustomerStuffEnter | CallbackEvent::WaiterEnter) => {
            return EventKind::AgentEnter;
        }
        Some(CallbackEvent::CustomerStuffQuit | CallbackEvent::WaiterQuit) => {
            return EventKind::AgentQuit;
        }
        Some(_) => return EventKind::Other,
        None => {}
    }
    if matches!(callback.assessment, Some(1..=5)) {
        return EventKind::Rating;
    }
    if callback.kfstate == Some(KefuState::NeedPerson) && before != Some(KefuState::NeedPerson) {
        return EventKind::HandoffRequested;
    }
    if callback.content.as_deref().is_some_and(|c| !c.is_empty()) {
        return EventKind::Message;
    }
    EventKind::Other
}

/// The kind of a standard WeChat callback.
pub fn wechat_kind(message: &StandardMessage) -> EventKind {
    if message.msg_type.as_deref() != Some("event") {
        return EventKind::Message;
    }
    match message.event.as_deref() {
        Some("user_enter_tempsession") => EventKind::UserEnter,
        Some("kf_create_session") => EventKind::AgentEnter,
        Some("kf_close_session") => EventKind::AgentQuit,
        _ => EventKind::Other,
    }
}

/// Whether an OA/MP callback opens the platform's send window (protocols.md §5.3): a message
/// the user wrote, or one of the events the platform counts as an interaction (a click,
/// scancode_push or scancode_waitmsg menu, following the account, scanning a QR code). An
/// unfollow, a link menu or a location report opens nothing: a send after it would get 45015.
pub fn opens_send_window(message: &StandardMessage) -> bool {
    if message.msg_type.as_deref() != Some("event") {
        return true;
    }
    const TRIGGERS: [&str; 5] = [
        "CLICK",
        "scancode_push",
        "scancode_waitmsg",
        "subscribe",
        "SCAN",
    ];
    message
        .event
        .as_deref()
        .is_some_and(|event| TRIGGERS.iter().any(|t| t.eq_ignore_ascii_case(event)))
}

/// The event JSON of a Dialogue callback, without its `id` (given when it is stored).
pub fn dialogue_event(
    callback: &HandoffCallback,
    kind: EventKind,
    raw: Map<String, Value>,
    received_at_ms: i64,
) -> Map<String, Value> {
    let agent = callback.customer_info.as_ref().map(|info| {
        json!({
            "name": info.name,
            "avatar": info.avatar,
            "openid": info.openid,
        })
    });
    object(json!({
        "source": Source::Dialogue.as_str(),
        "account": null,
        "kind": kind.as_str(),
        "openid": callback.userid,
        "appid": Some(callback.appid.as_str()).filter(|a| !a.is_empty()),
        "channel": callback.channel,
        "from": callback.from,
        "content": callback.content,
        "msgtype": callback.msgtype,
        "event": callback.event.as_ref().map(CallbackEvent::as_str),
        "kfstate": callback.kfstate.map(KefuState::as_str),
        "assessment": callback.assessment.filter(|a| *a != 0),
        "agent": agent,
        "msg_id": null,
        "created_at": callback.createtime,
        "received_at_ms": received_at_ms,
        "raw": raw,
    }))
}

/// The event JSON of a standard WeChat callback, without its `id`.
pub fn wechat_event(
    account: &str,
    message: &StandardMessage,
    kind: EventKind,
    received_at_ms: i64,
) -> Map<String, Value> {
    let agent = message
        .raw
        .get("KfAccount")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(|name| json!({"name": name, "avatar": null, "openid": null}));
    object(json!({
        "source": Source::Wechat.as_str(),
        "account": account,
        "kind": kind.as_str(),
        "openid": message.from_user_name,
        "appid": message.to_user_name,
        "channel": null,
        "from": null,
        "content": message.content,
        "msgtype": message.msg_type,
        "event": message.event,
        "kfstate": null,
        "assessment": null,
        "agent": agent,
        "msg_id": message.msg_id,
        "created_at": message.create_time,
        "received_at_ms": received_at_ms,
        "raw": message.raw,
    }))
}

/// The event JSON of a yunzhenji push, without its `id`: `openid` is the customer or group it
/// is about, `message_id` the relay's message it names, and `raw` the body as received.
pub fn yunzhenji_event(
    account: &str,
    callback: &VendorCallback,
    kind: EventKind,
    conversation: &str,
    message_id: Option<i64>,
    raw: Map<String, Value>,
    received_at_ms: i64,
) -> Map<String, Value> {
    let failure = kind == EventKind::SendFailed;
    // As for the other sources, `content` is text, or rich content as JSON text.
    let content = callback.content.as_ref().map(|content| match content {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    object(json!({
        "source": Source::Yunzhenji.as_str(),
        "account": account,
        "kind": kind.as_str(),
        "openid": conversation,
        "appid": null,
        "channel": null,
        "from": null,
        "content": content,
        "msgtype": callback.msg_type,
        "event": callback.kind.as_str(),
        "kfstate": null,
        "assessment": null,
        "agent": null,
        "msg_id": callback.api_send_svrid,
        "created_at": callback.create_time,
        "received_at_ms": received_at_ms,
        "sender": callback.sender,
        "receiver": callback.receiver,
        "text": callback.text.as_ref().filter(|_| !failure),
        "message_id": message_id,
        "api_send_id": callback.api_send_id,
        "error": callback.text.as_ref().filter(|_| failure),
        "raw": raw,
    }))
}

/// The keys only yunzhenji's events fill, `null` in the others: every event has every key.
const YUNZHENJI_KEYS: [&str; 6] = [
    "sender",
    "receiver",
    "text",
    "message_id",
    "api_send_id",
    "error",
];

fn object(value: Value) -> Map<String, Value> {
    let mut map = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for key in YUNZHENJI_KEYS {
        map.entry(key).or_insert(Value::Null);
    }
    map
}

/// The stored event body: `id` first, then the rest.
pub fn with_id(id: i64, event: Map<String, Value>) -> String {
    let mut body = Map::with_capacity(event.len() + 1);
    body.insert("id".into(), json!(id));
    body.extend(event);
    Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_payload::CustomerInfo;

    fn callback() -> HandoffCallback {
        HandoffCallback {
            userid: "oU".into(),
            appid: "wx1".into(),
            content: Some("我要转人工".into()),
            from: Some(0),
            kfstate: Some(KefuState::NeedPerson),
            channel: Some(0),
            assessment: Some(0),
            createtime: Some(1_700_000_000),
            ..HandoffCallback::default()
        }
    }

    #[test]
    fn send_window_triggers_are_the_platforms() {
        let event = |msg_type: &str, event: Option<&str>| StandardMessage {
            msg_type: Some(msg_type.into()),
            event: event.map(str::to_owned),
            ..StandardMessage::default()
        };
        for opens in [
            event("text", None),
            event("voice", None),
            event("event", Some("CLICK")),
            event("event", Some("scancode_push")),
            event("event", Some("scancode_waitmsg")),
            event("event", Some("subscribe")),
            event("event", Some("SCAN")),
        ] {
            assert!(opens_send_window(&opens), "{opens:?}");
        }
        for closed in [
            event("event", Some("unsubscribe")),
            event("event", Some("VIEW")),
            event("event", Some("LOCATION")),
            event("event", Some("kf_close_session")),
            event("event", None),
        ] {
            assert!(!opens_send_window(&closed), "{closed:?}");
        }
    }

    #[test]
    fn dialogue_kinds() {
        let cb = callback();
        assert_eq!(dialogue_kind(&cb, None), EventKind::HandoffRequested);
        assert_eq!(
            dialogue_kind(&cb, Some(KefuState::Asking)),
            EventKind::HandoffRequested
        );
        assert_eq!(
            dialogue_kind(&cb, Some(KefuState::NeedPerson)),
            EventKind::Message
        );
        let rating = HandoffCallback {
            assessment: Some(5),
            kfstate: Some(KefuState::PersonServing),
            ..callback()
        };
        assert_eq!(dialogue_kind(&rating, None), EventKind::Rating);
        for (event, kind) in [
            (CallbackEvent::UserEnter, EventKind::UserEnter),
            (CallbackEvent::UserQuit, EventKind::UserQuit),
            (CallbackEvent::CustomerStuffEnter, EventKind::AgentEnter),
            (CallbackEvent::WaiterQuit, EventKind::AgentQuit),
            (CallbackEvent::WaiterSwitch, EventKind::Other),
            (CallbackEvent::Other("x".into()), EventKind::Other),
        ] {
            let cb = HandoffCallback {
                event: Some(event),
                ..callback()
            };
            assert_eq!(dialogue_kind(&cb, None), kind);
        }
        let bare = HandoffCallback {
            content: Some(String::new()),
            kfstate: Some(KefuState::Asking),
            ..callback()
        };
        assert_eq!(dialogue_kind(&bare, None), EventKind::Other);
    }

    #[test]
    fn dialogue_event_json() {
        let cb = HandoffCallback {
            event: Some(CallbackEvent::CustomerStuffEnter),
            customer_info: Some(CustomerInfo {
                name: "小红".into(),
                avatar: "https://a".into(),
                openid: "oA".into(),
            }),
            ..callback()
        };
        let event = dialogue_event(&cb, EventKind::AgentEnter, Map::new(), 5);
        let body: Value = serde_json::from_str(&with_id(7, event)).unwrap();
        assert_eq!(
            body,
            json!({
                "id": 7, "source": "dialogue", "account": null, "kind": "agent_enter",
                "openid": "oU", "appid": "wx1", "channel": 0, "from": 0,
                "content": "我要转人工", "msgtype": null, "event": "customerStuffEnter",
                "kfstate": "needperson", "assessment": null,
                "agent": {"name": "小红", "avatar": "https://a", "openid": "oA"},
                "msg_id": null, "created_at": 1700000000, "received_at_ms": 5,
                "sender": null, "receiver": null, "text": null, "message_id": null,
                "api_send_id": null, "error": null, "raw": {}
            })
        );
    }

    #[test]
    fn wechat_kinds() {
        let mut message = StandardMessage {
            from_user_name: "oU".into(),
            msg_type: Some("text".into()),
            ..StandardMessage::default()
        };
        assert_eq!(wechat_kind(&message), EventKind::Message);
        message.msg_type = Some("event".into());
        for (event, kind) in [
            ("user_enter_tempsession", EventKind::UserEnter),
            ("kf_create_session", EventKind::AgentEnter),
            ("kf_close_session", EventKind::AgentQuit),
            ("subscribe", EventKind::Other),
        ] {
            message.event = Some(event.into());
            assert_eq!(wechat_kind(&message), kind);
        }
    }
}
