//! The plaintext of the standard WeChat callbacks (Official Account, Mini Program, WeCom), in
//! XML or JSON, read into the few fields the connector needs, with every field kept raw.
//!
//! XML is read with kefu-payload's hardened reader into a JSON object ([`kefu_payload::read_tree`]):
//! unknown elements are kept, not refused; DTDs, unknown entities, characters XML 1.0 forbids and
//! deep nesting are refused.

use serde_json::{Map, Value};

/// Why a plaintext could not be read. Messages name the problem, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The XML is not well-formed, declares a DTD, has another root than `<xml>`, holds a
    /// character XML 1.0 forbids, or nests too deep.
    #[error("{0}")]
    Xml(kefu_payload::Error),
    /// The JSON is not valid, or not an object.
    #[error("JSON: {0}")]
    Json(String),
    /// A required field is missing or empty.
    #[error("{0} is missing or empty")]
    MissingField(&'static str),
    /// An identifier is longer than the platform's (see [`kefu_payload::limits`]): no genuine
    /// message carries it, and the desk could not act on it.
    #[error("{0}")]
    TooLong(kefu_payload::Error),
    /// A numeric field holds something else.
    #[error("{field} must be a whole number of seconds, got {found:?}")]
    InvalidNumber {
        /// The field.
        field: &'static str,
        /// What it holds.
        found: String,
    },
}

/// A standard callback message or event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandardMessage {
    /// `ToUserName`: the receiving account (`gh_…`, a CorpID).
    pub to_user_name: Option<String>,
    /// `FromUserName`: the user's openid (or WeCom userid).
    pub from_user_name: String,
    /// `CreateTime`: Unix seconds.
    pub create_time: Option<i64>,
    /// `MsgType`: `text`, `image`, …, or `event`.
    pub msg_type: Option<String>,
    /// `Content`, for text messages.
    pub content: Option<String>,
    /// `MsgId`, for messages (events have none).
    pub msg_id: Option<String>,
    /// `Event`, for `MsgType` = `event`.
    pub event: Option<String>,
    /// Every field as received: XML read as described in the module docs, or the JSON object.
    pub raw: Map<String, Value>,
}

impl StandardMessage {
    /// Reads an XML plaintext.
    pub fn parse_xml(input: &str) -> Result<StandardMessage, MessageError> {
        StandardMessage::from_raw(xml_to_json(input)?)
    }

    /// Reads a JSON plaintext (an object; numbers are accepted where WeChat's XML has text).
    pub fn parse_json(input: &str) -> Result<StandardMessage, MessageError> {
        match serde_json::from_str::<Value>(input) {
            Ok(Value::Object(raw)) => StandardMessage::from_raw(raw),
            Ok(_) => Err(MessageError::Json("the body is not a JSON object".into())),
            Err(error) => Err(MessageError::Json(error.to_string())),
        }
    }

    /// Reads XML when the text starts with `<` (after whitespace), JSON otherwise.
    pub fn parse(input: &str) -> Result<StandardMessage, MessageError> {
        if input.trim_start().starts_with('<') {
            StandardMessage::parse_xml(input)
        } else {
            StandardMessage::parse_json(input)
        }
    }

    fn from_raw(raw: Map<String, Value>) -> Result<StandardMessage, MessageError> {
        // The WeCom smart robot's JSON spells them in lower case and nests the sender.
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| lookup(&raw, name))
                .filter(|text| !text.is_empty())
        };
        let from_user_name = field(&["FromUserName", "from/userid"])
            .ok_or(MessageError::MissingField("FromUserName"))?;
        kefu_payload::limits::check(
            "FromUserName",
            &from_user_name,
            kefu_payload::limits::OPENID,
        )
        .map_err(MessageError::TooLong)?;
        let create_time = match field(&["CreateTime", "create_time"]) {
            None => None,
            Some(text) => {
                Some(
                    text.trim()
                        .parse::<i64>()
                        .map_err(|_| MessageError::InvalidNumber {
                            field: "CreateTime",
                            found: text.clone(),
                        })?,
                )
            }
        };
        Ok(StandardMessage {
            to_user_name: field(&["ToUserName"]),
            from_user_name,
            create_time,
            msg_type: field(&["MsgType", "msgtype"]),
            content: field(&["Content", "text/content"]),
            msg_id: field(&["MsgId", "MsgID", "msgid"]),
            event: field(&["Event", "event/eventtype"]),
            raw,
        })
    }

    /// The redelivery key (protocols.md §9.3): `MsgId` when there is one, else the sender, the
    /// time and the event (or message type).
    pub fn dedup_key(&self) -> String {
        match &self.msg_id {
            Some(id) => format!("msgid:{id}"),
            None => format!(
                "event:{}:{}:{}",
                self.from_user_name,
                self.create_time.unwrap_or_default(),
                self.event
                    .as_deref()
                    .or(self.msg_type.as_deref())
                    .unwrap_or_default()
            ),
        }
    }
}

/// The text of a field at a `/`-separated path: strings as they are, numbers and booleans
/// written out; objects, arrays and null are not text.
fn lookup(raw: &Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('/');
    let mut value = raw.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Reads `<xml>…</xml>` into a JSON object with kefu-payload's hardened reader (see
/// [`kefu_payload::read_tree`]).
pub fn xml_to_json(input: &str) -> Result<Map<String, Value>, MessageError> {
    kefu_payload::read_tree(input).map_err(MessageError::Xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT &amp; <b>]]></Content>\n<MsgId>6054768590064713728</MsgId>\n<Unknown><Deep a=\"1\">x</Deep><Deep>y</Deep></Unknown>\n</xml>";

    #[test]
    fn reads_a_text_message_and_keeps_unknown_fields() {
        let message = StandardMessage::parse(TEXT).unwrap();
        assert_eq!(message.to_user_name.as_deref(), Some("gh_10f6c3c3ac5a"));
        assert_eq!(message.from_user_name, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
        assert_eq!(message.create_time, Some(1_409_735_668));
        assert_eq!(message.msg_type.as_deref(), Some("text"));
        assert_eq!(message.content.as_deref(), Some("abcdteT &amp; <b>"));
        assert_eq!(message.msg_id.as_deref(), Some("6054768590064713728"));
        assert_eq!(message.event, None);
        assert_eq!(message.raw["Unknown"], json!({"Deep": ["x", "y"]}));
        assert_eq!(message.dedup_key(), "msgid:6054768590064713728");
    }

    #[test]
    fn reads_an_event_and_keys_it_without_msgid() {
        let message = StandardMessage::parse(
            "<?xml version=\"1.0\"?><xml><ToUserName>gh_1</ToUserName><FromUserName>oU</FromUserName><CreateTime>123</CreateTime><MsgType>event</MsgType><Event>subscribe</Event><EventKey/></xml>",
        )
        .unwrap();
        assert_eq!(message.event.as_deref(), Some("subscribe"));
        assert_eq!(message.raw["EventKey"], json!(""));
        assert_eq!(message.dedup_key(), "event:oU:123:subscribe");
    }

    #[test]
    fn reads_json_with_numbers() {
        let message = StandardMessage::parse(
            r#"{"ToUserName":"gh_1","FromUserName":"oU","CreateTime":1700000000,"MsgType":"text","Content":"hi","MsgId":23637352235060880}"#,
        )
        .unwrap();
        assert_eq!(message.create_time, Some(1_700_000_000));
        assert_eq!(message.msg_id.as_deref(), Some("23637352235060880"));
        assert_eq!(message.raw["MsgId"], json!(23637352235060880_u64));
        let robot = StandardMessage::parse(
            r#"{"msgid":"m1","from":{"userid":"zhangsan"},"msgtype":"text","text":{"content":"hello"}}"#,
        )
        .unwrap();
        assert_eq!(robot.from_user_name, "zhangsan");
        assert_eq!(robot.content.as_deref(), Some("hello"));
        assert_eq!(robot.dedup_key(), "msgid:m1");
    }

    #[test]
    fn refuses_what_it_must() {
        for (input, expected) in [
            ("<xml><a>1</a>", "ends before"),
            ("<root><a/></root>", "root element is <root>"),
            ("<!DOCTYPE x [<!ENTITY e \"e\">]><xml/>", "DOCTYPE"),
            ("<xml><a>&e;</a></xml>", "entity &e;"),
            ("<xml><a>\u{1}</a></xml>", "U+0001"),
            ("<xml><a/></xml><b/>", "after the end"),
            ("<xml/>text", "outside the root"),
            ("<xml><a>1</b></xml>", "malformed XML"),
            ("[1]", "not a JSON object"),
            ("{", "JSON"),
            (
                "<xml><ToUserName>x</ToUserName></xml>",
                "FromUserName is missing",
            ),
            (
                "<xml><FromUserName>u</FromUserName><CreateTime>soon</CreateTime></xml>",
                "CreateTime must be",
            ),
        ] {
            let error = StandardMessage::parse(input).unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(
            xml_to_json(&deep).unwrap_err(),
            MessageError::Xml(kefu_payload::Error::TooDeep { max: 32 })
        );
    }

    #[test]
    fn empty_root_is_an_empty_object() {
        assert_eq!(xml_to_json("<xml></xml>").unwrap(), Map::new());
        assert_eq!(xml_to_json("<xml/>").unwrap(), Map::new());
    }

    /// Regression (issue 9): a plaintext push with a 60 KB `FromUserName` was stored as a
    /// session that no desk call could then name.
    #[test]
    fn an_overlong_sender_is_refused() {
        let xml = format!(
            "<xml><FromUserName>{}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
            "o".repeat(129)
        );
        let error = StandardMessage::parse_xml(&xml).unwrap_err();
        assert!(matches!(error, MessageError::TooLong(_)), "{error}");
        assert!(error.to_string().contains("FromUserName"), "{error}");
        let fits = xml.replacen(&"o".repeat(129), &"o".repeat(128), 1);
        assert!(StandardMessage::parse_xml(&fits).is_ok());
    }
}
