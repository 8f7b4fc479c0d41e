//! Reads a desk's message for a yunzhenji account (`{"target_wxid","msg"}`) into one message
//! object per stored job (protocols.md §7.1), refusing before anything is stored what the
//! vendor documents no way to send.
//!
//! The desk's `msg` is a string (text) or an object keyed by one type:
//!
//! | desk `msg` | vendor `msg_type` and `content` |
//! |---|---|
//! | `"…"` | `text`, `{"items":[{"type":"text","text":"…"}]}` |
//! | `{"announcement":"…"}` (a string: the notice's text) | `announcement`, `{"text":"…"}` |
//! | `{"picture":{"url"}}` | `picture`, `{"url"}` |
//! | `{"link":{"cover","desc","title","url"}}` | `link`, the same four |
//! | `{"file":{"title","url"}}` | `file`, the same two |
//! | `{"voice":{"url","duration"}}`, duration an integer 1..=60 | `voice`, `{"url","duration","org_content":""}` |
//! | `{"multimsg":[…]}` | several of the above, one job each, in order |
//!
//! `video`, `program`, `card` and `channel` are named by the vendor without their fields
//! (§11 item 14), so they are refused with 422 until specified. The stored payload is
//! `{"msg_type","content"}`; `api_send_id` and `delayed_time` are added at send time
//! ([`send_body`](super::send_body)).

use kefu_core::Invalid;
use serde_json::{Map, Value, json};

use crate::cgibin::MAX_PARTS;
use crate::cgibin::desk::{json_type, key_name, string};

/// The longest text or announcement accepted, in bytes. The vendor documents none; WeCom cuts
/// a text message at about 2,000 characters, so 6,000 bytes of UTF-8 leaves room for every
/// real one and refuses what cannot be right.
pub const MAX_TEXT_BYTES: usize = 6000;

/// The longest URL accepted (picture, link, cover, file, voice), in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The longest title or description accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;

/// The longest `target_wxid` accepted, in bytes: a wxid, a WeCom external userid or a group id
/// (`…@chatroom`) is far shorter.
pub const MAX_WXID_BYTES: usize = 128;

/// The types the vendor names without documenting their fields.
const UNSPECIFIED: &[&str] = &["video", "program", "card", "channel"];

/// The types a desk may send.
const TYPES: &str = "a string (text), announcement, picture, link, file, voice or multimsg";

/// One message for the vendor: its `msg_type` and its `content`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `text`, `announcement`, `picture`, `link`, `file` or `voice`.
    pub msg_type: &'static str,
    /// The content object of that type.
    pub content: Value,
}

impl Message {
    /// The stored payload: `{"msg_type","content"}`, raw UTF-8 JSON.
    pub fn to_json(&self) -> Vec<u8> {
        json!({"msg_type": self.msg_type, "content": self.content})
            .to_string()
            .into_bytes()
    }
}

/// A desk's message read: the recipient and the messages, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct DeskMessage {
    /// The customer's or group's wxid.
    pub target_wxid: String,
    /// One message per job.
    pub messages: Vec<Message>,
}

/// Reads a desk's `{"target_wxid","msg"}` (without `account`).
///
/// ```
/// use kefu_payload::yunzhenji::read_desk_message;
/// let body = serde_json::json!({"target_wxid": "wxid_c", "msg": {"link": {"title": "T", "desc": "D", "url": "https://e.com", "cover": ""}}});
/// let err = read_desk_message(body.as_object().unwrap()).unwrap_err();
/// assert_eq!(err.field, "msg.link.cover");
/// ```
pub fn read_desk_message(body: &Map<String, Value>) -> Result<DeskMessage, Invalid> {
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "target_wxid" | "msg"))
    {
        return Err(Invalid::new(
            key_name(key),
            "is not a field of a message to a yunzhenji account (target_wxid, msg)",
        ));
    }
    let target_wxid = match body.get("target_wxid") {
        None | Some(Value::Null) => Err(Invalid::new(
            "target_wxid",
            "is required: the customer's or group's wxid",
        )),
        Some(value) => string(value, "target_wxid", "target_wxid"),
    }?;
    if target_wxid.len() > MAX_WXID_BYTES || target_wxid.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            "target_wxid",
            format!("is not a wxid: at most {MAX_WXID_BYTES} bytes, without spaces"),
        ));
    }
    let msg = body
        .get("msg")
        .filter(|v| !v.is_null())
        .ok_or_else(|| Invalid::new("msg", format!("is required: {TYPES}")))?;
    let messages = match msg {
        Value::Object(object) if object.contains_key("multimsg") => multimsg(object)?,
        _ => vec![read_one(msg, "msg")?],
    };
    Ok(DeskMessage {
        target_wxid,
        messages,
    })
}

fn multimsg(object: &Map<String, Value>) -> Result<Vec<Message>, Invalid> {
    if object.len() != 1 {
        return Err(Invalid::new(
            "msg",
            "with multimsg, msg must hold multimsg alone",
        ));
    }
    let parts = match object.get("multimsg") {
        Some(Value::Array(parts)) if !parts.is_empty() => parts,
        Some(Value::Array(_)) => {
            return Err(Invalid::new(
                "msg.multimsg",
                "must hold at least one message",
            ));
        }
        _ => {
            return Err(Invalid::new(
                "msg.multimsg",
                format!("must be an array of messages: {TYPES}"),
            ));
        }
    };
    if parts.len() > MAX_PARTS {
        return Err(Invalid::new(
            "msg.multimsg",
            format!(
                "holds {} messages; one desk message may become at most {MAX_PARTS}",
                parts.len()
            ),
        ));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let path = format!("msg.multimsg[{i}]");
            if matches!(part, Value::Object(o) if o.contains_key("multimsg")) {
                return Err(Invalid::new(path, "a multimsg cannot nest another"));
            }
            read_one(part, &path)
        })
        .collect()
}

fn read_one(value: &Value, path: &str) -> Result<Message, Invalid> {
    let (msg_type, inner) = match value {
        Value::String(_) => {
            let text = bounded(value, path, "text", MAX_TEXT_BYTES)?;
            return Ok(Message {
                msg_type: "text",
                content: json!({"items": [{"type": "text", "text": text}]}),
            });
        }
        Value::Object(object) if object.len() == 1 => match object.iter().next() {
            Some((key, inner)) => (key.as_str(), inner),
            None => return Err(one_type(path)),
        },
        _ => return Err(one_type(path)),
    };
    let at = format!("{path}.{}", key_name(msg_type));
    if UNSPECIFIED.contains(&msg_type) {
        return Err(Invalid::new(
            at,
            format!(
                "{msg_type} is named by yunzhenji but its fields are not yet specified, so it cannot be sent; send {TYPES}"
            ),
        ));
    }
    let (msg_type, content) = match msg_type {
        "announcement" => (
            "announcement",
            json!({"text": bounded(inner, &at, "the announcement", MAX_TEXT_BYTES)?}),
        ),
        "picture" => {
            let f = Fields::new(inner, &at, &["url"])?;
            ("picture", json!({"url": f.url("url")?}))
        }
        "link" => {
            let f = Fields::new(inner, &at, &["cover", "desc", "title", "url"])?;
            let content = json!({"cover": f.url("cover")?, "desc": f.title("desc")?,
                                 "title": f.title("title")?, "url": f.url("url")?});
            ("link", content)
        }
        "file" => {
            let f = Fields::new(inner, &at, &["title", "url"])?;
            (
                "file",
                json!({"title": f.title("title")?, "url": f.url("url")?}),
            )
        }
        "voice" => {
            let f = Fields::new(inner, &at, &["url", "duration"])?;
            let content =
                json!({"url": f.url("url")?, "duration": f.duration()?, "org_content": ""});
            ("voice", content)
        }
        _ => return Err(one_type(path)),
    };
    Ok(Message { msg_type, content })
}

fn one_type(path: &str) -> Invalid {
    Invalid::new(
        path,
        format!("must be a string (text) or an object keyed by one message type: {TYPES}"),
    )
}

/// A non-empty string without control characters, at most `max` bytes.
fn bounded(value: &Value, path: &str, what: &str, max: usize) -> Result<String, Invalid> {
    let text = string(value, path, what)?;
    if text.len() > max {
        return Err(Invalid::new(
            path,
            format!("{what} is {} bytes; at most {max} are accepted", text.len()),
        ));
    }
    Ok(text)
}

/// The fields of one typed object, each refusal naming `at.field`.
struct Fields<'a> {
    fields: &'a Map<String, Value>,
    at: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, at: &'a str, known: &[&str]) -> Result<Fields<'a>, Invalid> {
        let Value::Object(fields) = value else {
            return Err(Invalid::new(
                at,
                format!(
                    "must be an object with {}, not {}",
                    known.join(", "),
                    json_type(value)
                ),
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Invalid::new(
                format!("{at}.{}", key_name(unknown)),
                format!("is not a field here; it takes {}", known.join(", ")),
            ));
        }
        Ok(Fields { fields, at })
    }

    fn get(&self, field: &str) -> Result<(&'a Value, String), Invalid> {
        let path = format!("{}.{field}", self.at);
        match self.fields.get(field) {
            None | Some(Value::Null) => Err(Invalid::new(path, "is required")),
            Some(value) => Ok((value, path)),
        }
    }

    fn url(&self, field: &str) -> Result<String, Invalid> {
        let (value, path) = self.get(field)?;
        let url = bounded(value, &path, field, MAX_URL_BYTES)?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || url.chars().any(char::is_whitespace)
        {
            return Err(Invalid::new(
                path,
                "must be an http:// or https:// URL without spaces",
            ));
        }
        Ok(url)
    }

    fn title(&self, field: &str) -> Result<String, Invalid> {
        let (value, path) = self.get(field)?;
        bounded(value, &path, field, MAX_TITLE_BYTES)
    }

    fn duration(&self) -> Result<u64, Invalid> {
        let (value, path) = self.get("duration")?;
        match value.as_u64() {
            Some(seconds @ 1..=60) => Ok(seconds),
            _ => Err(Invalid::new(
                path,
                "must be an integer number of seconds from 1 to 60",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: Value) -> Result<DeskMessage, Invalid> {
        read_desk_message(body.as_object().unwrap())
    }

    fn refusal(msg: Value) -> Invalid {
        read(json!({"target_wxid": "wxid_c", "msg": msg})).unwrap_err()
    }

    #[test]
    fn every_type() {
        let read = read(json!({"target_wxid": "wxid_c", "msg": {"multimsg": [
            "您好",
            {"announcement": "通知"},
            {"picture": {"url": "https://e.com/p.png"}},
            {"link": {"cover": "https://e.com/c.png", "desc": "D", "title": "T", "url": "https://e.com"}},
            {"file": {"title": "a.pdf", "url": "https://e.com/a.pdf"}},
            {"voice": {"url": "https://e.com/v.mp3", "duration": 60}},
        ]}}))
        .unwrap();
        assert_eq!(read.target_wxid, "wxid_c");
        let wire: Vec<String> = read
            .messages
            .iter()
            .map(|m| String::from_utf8(m.to_json()).unwrap())
            .collect();
        assert_eq!(
            wire,
            [
                r#"{"content":{"items":[{"text":"您好","type":"text"}]},"msg_type":"text"}"#,
                r#"{"content":{"text":"通知"},"msg_type":"announcement"}"#,
                r#"{"content":{"url":"https://e.com/p.png"},"msg_type":"picture"}"#,
                r#"{"content":{"cover":"https://e.com/c.png","desc":"D","title":"T","url":"https://e.com"},"msg_type":"link"}"#,
                r#"{"content":{"title":"a.pdf","url":"https://e.com/a.pdf"},"msg_type":"file"}"#,
                r#"{"content":{"duration":60,"org_content":"","url":"https://e.com/v.mp3"},"msg_type":"voice"}"#,
            ]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!(""), "msg"),
            (json!(1), "msg"),
            (
                json!({"link": {"cover": "https://c", "desc": "d", "title": "t"}}),
                "msg.link.url",
            ),
            (
                json!({"link": {"cover": "https://c", "desc": "d", "title": "t", "url": 1}}),
                "msg.link.url",
            ),
            (
                json!({"link": {"cover": "c", "desc": "d", "title": "t", "url": "https://u"}}),
                "msg.link.cover",
            ),
            (
                json!({"picture": {"url": "https://u", "x": 1}}),
                "msg.picture.x",
            ),
            (json!({"picture": "https://u"}), "msg.picture"),
            (
                json!({"voice": {"url": "https://v", "duration": 0}}),
                "msg.voice.duration",
            ),
            (
                json!({"voice": {"url": "https://v", "duration": 61}}),
                "msg.voice.duration",
            ),
            (
                json!({"voice": {"url": "https://v", "duration": 1.5}}),
                "msg.voice.duration",
            ),
            (json!({"voice": {"url": "https://v"}}), "msg.voice.duration"),
            (json!({"announcement": {"text": "x"}}), "msg.announcement"),
            (json!({"video": {"url": "https://v"}}), "msg.video"),
            (
                json!({"multimsg": ["a", {"card": {}}]}),
                "msg.multimsg[1].card",
            ),
            (json!({"multimsg": []}), "msg.multimsg"),
            (
                json!({"multimsg": [{"multimsg": ["a"]}]}),
                "msg.multimsg[0]",
            ),
            (json!({"multimsg": ["a"], "x": 1}), "msg"),
            (json!({"picture": {"url": "https://u"}, "file": {}}), "msg"),
            (json!("a\u{1}b"), "msg"),
            (json!("x".repeat(MAX_TEXT_BYTES + 1)), "msg"),
            (
                json!({"file": {"title": "t", "url": format!("https://{}", "u".repeat(MAX_URL_BYTES))}}),
                "msg.file.url",
            ),
        ];
        for (msg, field) in cases {
            let err = refusal(msg.clone());
            assert_eq!(err.field, field, "{msg}: {err}");
            assert!(!err.message.is_empty());
        }
        assert!(
            refusal(json!({"program": {}}))
                .message
                .contains("not yet specified")
        );
        let parts: Vec<Value> = (0..=MAX_PARTS).map(|i| json!(i.to_string())).collect();
        assert_eq!(refusal(json!({"multimsg": parts})).field, "msg.multimsg");
    }

    #[test]
    fn the_body_is_checked() {
        let err = read(json!({"msg": "hi"})).unwrap_err();
        assert_eq!(err.field, "target_wxid");
        let err = read(json!({"target_wxid": "a b", "msg": "hi"})).unwrap_err();
        assert_eq!(err.field, "target_wxid");
        let err = read(json!({"target_wxid": "w", "openid": "o", "msg": "hi"})).unwrap_err();
        assert_eq!(err.field, "openid");
        let err = read(json!({"target_wxid": "w"})).unwrap_err();
        assert_eq!(err.field, "msg");
    }
}
