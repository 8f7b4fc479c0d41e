//! The plaintext of the standard WeChat callbacks (Official Account, Mini Program, WeCom), in
//! XML or JSON, read into the few fields the connector needs, with every field kept raw.
//!
//! The XML reader turns `<xml>…</xml>` into a JSON object: an element with only text becomes a
//! string, an element with child elements becomes an object (its text between children is
//! dropped), and a name repeated among siblings becomes an array. Unknown elements are kept, not
//! refused. DTDs are refused, only the five predefined entities and character references are
//! resolved, characters XML 1.0 forbids are refused, and nesting is limited.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};
use serde_json::{Map, Value};

/// How deep elements may nest below the root.
const MAX_DEPTH: usize = 32;

/// Why a plaintext could not be read. Messages name the problem, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The XML is not well-formed.
    #[error("XML syntax error at byte {offset}: {message}")]
    Xml {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A `<!DOCTYPE` was found; DTDs are never processed.
    #[error("a <!DOCTYPE> at byte {offset}; DTDs are refused")]
    Doctype {
        /// Byte offset of the declaration.
        offset: u64,
    },
    /// The root element is not `<xml>`.
    #[error("the root element is <{found}>, expected <xml>")]
    WrongRoot {
        /// The root found.
        found: String,
    },
    /// A character XML 1.0 cannot carry.
    #[error("character U+{code:04X} at byte {offset} is not allowed in XML 1.0")]
    IllegalChar {
        /// Byte offset.
        offset: usize,
        /// The code point.
        code: u32,
    },
    /// Elements nest deeper than the limit.
    #[error("elements nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
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

const fn is_xml_char(character: char) -> bool {
    matches!(
        character,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
    )
}

fn syntax(offset: u64, message: impl std::fmt::Display) -> MessageError {
    MessageError::Xml {
        offset,
        message: message.to_string(),
    }
}

/// An element being read: its name, its text so far and its children.
struct Node {
    name: String,
    text: String,
    children: Vec<(String, Value)>,
}

impl Node {
    fn new(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    fn into_value(self) -> (String, Value) {
        if self.children.is_empty() {
            return (self.name, Value::String(self.text));
        }
        let mut object = Map::new();
        for (name, value) in self.children {
            match object.get_mut(&name) {
                Some(Value::Array(items)) => items.push(value),
                Some(first) => {
                    let first = first.take();
                    object.insert(name, Value::Array(vec![first, value]));
                }
                None => {
                    object.insert(name, value);
                }
            }
        }
        (self.name, Value::Object(object))
    }
}

/// Reads `<xml>…</xml>` into a JSON object, as the module docs describe. A root with no child
/// elements gives an empty object.
///
/// (A name repeated among siblings becomes an array, and an element that is itself an array's
/// first item is indistinguishable from a one-item list: the raw view is for reading, not for
/// writing back.)
pub fn xml_to_json(input: &str) -> Result<Map<String, Value>, MessageError> {
    if let Some((offset, character)) = input.char_indices().find(|(_, c)| !is_xml_char(*c)) {
        return Err(MessageError::IllegalChar {
            offset,
            code: u32::from(character),
        });
    }
    let mut reader = Reader::from_str(input);
    reader.config_mut().enable_all_checks(true);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let offset = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|error| syntax(reader.error_position(), error))?;
        let (name, empty) = match &event {
            Event::Start(start) => (Some(start.name().as_ref().to_vec()), false),
            Event::Empty(start) => (Some(start.name().as_ref().to_vec()), true),
            _ => (None, false),
        };
        if let Some(name) = name {
            let name = std::str::from_utf8(&name).map_err(|e| syntax(offset, e))?;
            if root.is_some() {
                return Err(syntax(
                    offset,
                    format_args!("element <{name}> after the end of the root element"),
                ));
            }
            if stack.is_empty() && name != "xml" {
                return Err(MessageError::WrongRoot {
                    found: name.to_owned(),
                });
            }
            if stack.len() > MAX_DEPTH {
                return Err(MessageError::TooDeep);
            }
            stack.push(Node::new(name));
            if !empty {
                continue;
            }
        }
        match event {
            Event::Start(_) => {}
            Event::Empty(_) | Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(syntax(offset, "a closing tag without its opening tag"));
                };
                let (name, value) = node.into_value();
                match stack.last_mut() {
                    Some(parent) => parent.children.push((name, value)),
                    None => {
                        root = Some(match value {
                            Value::Object(object) => object,
                            _ => Map::new(),
                        });
                    }
                }
            }
            Event::Text(text) => {
                let content = text.xml10_content().map_err(|e| syntax(offset, e))?;
                push_text(&mut stack, offset, &content)?;
            }
            Event::CData(cdata) => {
                let content = cdata.xml10_content().map_err(|e| syntax(offset, e))?;
                push_text(&mut stack, offset, &content)?;
            }
            Event::GeneralRef(reference) => {
                let character = resolve_reference(&reference, offset)?;
                push_text(&mut stack, offset, character.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => return Err(MessageError::Doctype { offset }),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => {
                return match root {
                    Some(root) if stack.is_empty() => Ok(root),
                    Some(_) | None if !stack.is_empty() => Err(syntax(
                        offset,
                        "the document ends before the root element is closed with </xml>",
                    )),
                    _ => Err(syntax(offset, "no root element <xml>")),
                };
            }
        }
    }
}

fn push_text(stack: &mut [Node], offset: u64, text: &str) -> Result<(), MessageError> {
    match stack.last_mut() {
        Some(node) => {
            node.text.push_str(text);
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) => Ok(()),
        None => Err(syntax(offset, "text outside the root element <xml>")),
    }
}

fn resolve_reference(reference: &BytesRef<'_>, offset: u64) -> Result<char, MessageError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(character)) if is_xml_char(character) => Ok(character),
            _ => Err(syntax(offset, "an invalid character reference")),
        };
    }
    match &**reference {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        _ => Err(syntax(
            offset,
            "an unknown entity; only &lt; &gt; &amp; &apos; &quot; and character references are resolved",
        )),
    }
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
            ("<xml><a>&e;</a></xml>", "unknown entity"),
            ("<xml><a>\u{1}</a></xml>", "U+0001"),
            ("<xml><a/></xml><b/>", "after the end"),
            ("<xml/>text", "outside the root"),
            ("<xml><a>1</b></xml>", "XML syntax"),
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
        assert_eq!(xml_to_json(&deep).unwrap_err(), MessageError::TooDeep);
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
