//! The checks of `wechat/sendMessage` that need no state: the body, its required fields, and
//! each message's type and content (protocols.md §7.1). The vendor publishes no error codes, so
//! the codes here are the sandbox's own (documented in [`crate`]).

use serde_json::{Map, Value};

/// The most messages one call takes (§7.1).
pub(crate) const MAX_MESSAGES: usize = 5;

/// The longest a voice message may last, in seconds.
const MAX_VOICE_SECS: u64 = 60;

/// One refusal: `{"errcode": code, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// −1: the vendor is busy (a fault).
    SystemError,
    /// 40000: the body is not a JSON object.
    NotJson,
    /// 40001: a required field is missing, empty or of the wrong JSON type.
    Field(String),
    /// 40002: `app_id` and `access_token` do not name an account. Which one is wrong is not
    /// said: a refusal reveals nothing an attacker can use.
    Credentials,
    /// 40003: `wxid` is not the account's WeCom account.
    Wxid,
    /// 40004: `messages` holds 0 or more than [`MAX_MESSAGES`] messages.
    Count(usize),
    /// 40005: an unknown `msg_type` at this index.
    MsgType(usize),
    /// 40006: a content field missing or invalid, as `messages[i].content.<field>`.
    Content(String),
    /// 40007: a voice duration outside 1..=60 s at this index.
    Duration(usize),
}

impl Refusal {
    /// The `errcode`.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Refusal::SystemError => -1,
            Refusal::NotJson => 40000,
            Refusal::Field(_) => 40001,
            Refusal::Credentials => 40002,
            Refusal::Wxid => 40003,
            Refusal::Count(_) => 40004,
            Refusal::MsgType(_) => 40005,
            Refusal::Content(_) => 40006,
            Refusal::Duration(_) => 40007,
        }
    }

    /// The `message`.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::SystemError => "系统繁忙,请稍后再试".to_owned(),
            Refusal::NotJson => "请求体须为 JSON 对象".to_owned(),
            Refusal::Field(field) => format!("参数缺失或类型错误: {field}"),
            Refusal::Credentials => "app_id 或 access_token 无效".to_owned(),
            Refusal::Wxid => "wxid 不是该应用的企微号".to_owned(),
            Refusal::Count(count) => {
                format!("messages 须为 1 到 {MAX_MESSAGES} 条, 收到 {count} 条")
            }
            Refusal::MsgType(idx) => format!("messages[{idx}].msg_type 不支持"),
            Refusal::Content(field) => format!("参数缺失或无效: {field}"),
            Refusal::Duration(idx) => {
                format!("messages[{idx}].content.duration 须为 1 到 {MAX_VOICE_SECS} 秒")
            }
        }
    }
}

/// The fields every call needs, before the account is looked at.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) app_id: &'a str,
    pub(crate) access_token: &'a str,
    pub(crate) wxid: &'a str,
    pub(crate) target_wxid: &'a str,
    pub(crate) messages: &'a [Value],
}

/// One message that passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) msg_type: String,
    pub(crate) content: Value,
    /// As sent (a string or an integer): it is echoed as it came.
    pub(crate) api_send_id: Option<Value>,
    /// Unix seconds; 0 sends at once.
    pub(crate) delayed_time: u64,
}

/// The body as a JSON object (40000 otherwise).
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Refusal::NotJson),
    }
}

/// The required fields, in the documented order: `app_id`, `access_token`, `wxid`,
/// `target_wxid` (non-empty strings) and `messages` (an array).
pub(crate) fn call(body: &Map<String, Value>) -> Result<Call<'_>, Refusal> {
    let text = |field: &str| match body.get(field) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.as_str()),
        _ => Err(Refusal::Field(field.to_owned())),
    };
    Ok(Call {
        app_id: text("app_id")?,
        access_token: text("access_token")?,
        wxid: text("wxid")?,
        target_wxid: text("target_wxid")?,
        messages: match body.get("messages") {
            Some(Value::Array(messages)) => messages,
            _ => return Err(Refusal::Field("messages".to_owned())),
        },
    })
}

/// Checks every message: 1 to 5 of them, each a known `msg_type` with its content.
pub(crate) fn messages(messages: &[Value]) -> Result<Vec<Message>, Refusal> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(Refusal::Count(messages.len()));
    }
    messages
        .iter()
        .enumerate()
        .map(|(idx, message)| one(idx, message))
        .collect()
}

fn one(idx: usize, message: &Value) -> Result<Message, Refusal> {
    let field = |name: &str| Refusal::Field(format!("messages[{idx}].{name}"));
    let Value::Object(message) = message else {
        return Err(Refusal::Field(format!("messages[{idx}]")));
    };
    let msg_type = match message.get("msg_type") {
        Some(Value::String(msg_type)) if !msg_type.is_empty() => msg_type,
        _ => return Err(field("msg_type")),
    };
    let api_send_id = match message.get("api_send_id") {
        None | Some(Value::Null) => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => return Err(field("api_send_id")),
    };
    let delayed_time = match message.get("delayed_time") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| field("delayed_time"))?,
        Some(_) => return Err(field("delayed_time")),
    };
    let Some(Value::Object(content)) = message.get("content") else {
        return Err(field("content"));
    };
    content_of(idx, msg_type, content)?;
    Ok(Message {
        msg_type: msg_type.clone(),
        content: Value::Object(content.clone()),
        api_send_id,
        delayed_time,
    })
}

/// The content fields of each type (§7.1). The types the vendor lists without fields (video,
/// program, card, channel) take any object: their fields are unconfirmed.
fn content_of(idx: usize, msg_type: &str, content: &Map<String, Value>) -> Result<(), Refusal> {
    let required = |name: &str| match content.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(()),
        _ => Err(Refusal::Content(format!("messages[{idx}].content.{name}"))),
    };
    match msg_type {
        "text" => text_items(idx, content),
        "announcement" => required("text"),
        "picture" => required("url"),
        "link" => ["cover", "desc", "title", "url"]
            .into_iter()
            .try_for_each(required),
        "file" => ["title", "url"].into_iter().try_for_each(required),
        "voice" => {
            required("url")?;
            match content.get("duration").and_then(Value::as_u64) {
                Some(secs) if (1..=MAX_VOICE_SECS).contains(&secs) => {}
                Some(_) => return Err(Refusal::Duration(idx)),
                None if content.get("duration").is_some_and(Value::is_number) => {
                    return Err(Refusal::Duration(idx));
                }
                None => {
                    return Err(Refusal::Content(format!(
                        "messages[{idx}].content.duration"
                    )));
                }
            }
            match content.get("org_content") {
                None | Some(Value::String(_)) => Ok(()),
                Some(_) => Err(Refusal::Content(format!(
                    "messages[{idx}].content.org_content"
                ))),
            }
        }
        "video" | "program" | "card" | "channel" => Ok(()),
        _ => Err(Refusal::MsgType(idx)),
    }
}

/// `{"items":[{"type":"text","text":"…"}, …]}`: at least one item, each with a `type`; a text
/// item needs its text. Other item types (emoji, @-mentions) are unconfirmed and pass.
fn text_items(idx: usize, content: &Map<String, Value>) -> Result<(), Refusal> {
    let items = match content.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(Refusal::Content(format!("messages[{idx}].content.items"))),
    };
    for (i, item) in items.iter().enumerate() {
        let at = |name: &str| Refusal::Content(format!("messages[{idx}].content.items[{i}]{name}"));
        let Value::Object(item) = item else {
            return Err(at(""));
        };
        match item.get("type") {
            Some(Value::String(kind)) if kind == "text" => match item.get("text") {
                Some(Value::String(text)) if !text.is_empty() => {}
                _ => return Err(at(".text")),
            },
            Some(Value::String(kind)) if !kind.is_empty() => {}
            _ => return Err(at(".type")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(messages: Value) -> Result<Vec<Message>, Refusal> {
        super::messages(messages.as_array().unwrap())
    }

    fn text(text: &str) -> Value {
        json!({"msg_type": "text", "content": {"items": [{"type": "text", "text": text}]}})
    }

    #[test]
    fn the_required_fields_in_order() {
        let full = json!({"app_id": "a", "access_token": "t", "wxid": "w", "target_wxid": "x", "messages": []});
        let object = full.as_object().unwrap();
        assert!(call(object).is_ok());
        for field in ["app_id", "access_token", "wxid", "target_wxid", "messages"] {
            let mut missing = object.clone();
            missing.remove(field);
            assert_eq!(call(&missing).unwrap_err(), Refusal::Field(field.into()));
            let mut wrong = object.clone();
            wrong.insert(field.into(), json!(5));
            assert_eq!(call(&wrong).unwrap_err(), Refusal::Field(field.into()));
        }
        assert_eq!(json_object(b"[1]").unwrap_err(), Refusal::NotJson);
        assert_eq!(json_object(b"{").unwrap_err().code(), 40000);
    }

    #[test]
    fn one_to_five_messages() {
        assert_eq!(check(json!([])).unwrap_err(), Refusal::Count(0));
        let six: Vec<Value> = (0..6).map(|i| text(&i.to_string())).collect();
        assert_eq!(check(json!(six)).unwrap_err(), Refusal::Count(6));
        assert_eq!(check(json!(six[..5])).unwrap().len(), 5);
    }

    #[test]
    fn every_documented_type_and_its_fields() {
        let valid = json!([
            text("您好"),
            {"msg_type": "announcement", "content": {"text": "公告"}},
            {"msg_type": "picture", "content": {"url": "https://p"}},
            {"msg_type": "link", "content": {"cover": "c", "desc": "d", "title": "t", "url": "u"}},
            {"msg_type": "file", "content": {"title": "t", "url": "u"}},
        ]);
        assert_eq!(check(valid).unwrap().len(), 5);
        let voice = json!([{"msg_type": "voice", "content": {"url": "v.mp3", "duration": 60, "org_content": ""}, "api_send_id": 7, "delayed_time": 1641280299}]);
        let voice = check(voice).unwrap();
        assert_eq!(voice[0].api_send_id, Some(json!(7)));
        assert_eq!(voice[0].delayed_time, 1641280299);
        let cases = [
            (json!({"msg_type": "gif", "content": {}}), 40005),
            (json!({"msg_type": "text"}), 40001),
            (json!({"msg_type": "text", "content": {"items": []}}), 40006),
            (
                json!({"msg_type": "text", "content": {"items": [{"type": "text"}]}}),
                40006,
            ),
            (
                json!({"msg_type": "text", "content": {"items": [{"text": "x"}]}}),
                40006,
            ),
            (
                json!({"msg_type": "announcement", "content": {"text": ""}}),
                40006,
            ),
            (
                json!({"msg_type": "link", "content": {"cover": "c", "desc": "d", "title": "t"}}),
                40006,
            ),
            (json!({"msg_type": "file", "content": {"url": "u"}}), 40006),
            (
                json!({"msg_type": "voice", "content": {"url": "u", "duration": 61}}),
                40007,
            ),
            (
                json!({"msg_type": "voice", "content": {"url": "u", "duration": 0}}),
                40007,
            ),
            (
                json!({"msg_type": "voice", "content": {"url": "u", "duration": -3}}),
                40007,
            ),
            (json!({"msg_type": "voice", "content": {"url": "u"}}), 40006),
            (
                json!({"msg_type": "picture", "content": {"url": "u"}, "api_send_id": 1.5}),
                40001,
            ),
            (
                json!({"msg_type": "picture", "content": {"url": "u"}, "api_send_id": {}}),
                40001,
            ),
            (
                json!({"msg_type": "picture", "content": {"url": "u"}, "delayed_time": "0"}),
                40001,
            ),
            (json!("text"), 40001),
        ];
        for (message, code) in cases {
            let error = check(json!([text("ok"), message])).unwrap_err();
            assert_eq!(error.code(), code, "{message}: {error:?}");
            assert!(
                error.message().contains("messages[1]"),
                "{}",
                error.message()
            );
        }
        // The types without documented fields take any object.
        assert!(check(json!([{"msg_type": "video", "content": {"anything": 1}}])).is_ok());
    }
}
