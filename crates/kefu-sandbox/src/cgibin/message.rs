//! The body checks of `custom/send` and the typing calls, without state: what the platform
//! refuses before it looks at the user (protocols.md §5.1–5.2).

use serde_json::{Map, Value};

use super::accounts::AccountKind;
use super::codes::Refusal;

/// The most bytes of text `custom/send` takes (45002 above).
pub(crate) const MAX_TEXT_BYTES: usize = 2048;

/// `true` when the raw body holds a `\uXXXX` escape, which the platform refuses (40033) rather
/// than decode. An escaped backslash (`\\u`) is a backslash and a `u`, not an escape.
pub(crate) fn has_unicode_escape(body: &[u8]) -> bool {
    let mut bytes = body.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'\\' && bytes.next() == Some(&b'u') {
            return true;
        }
    }
    false
}

/// The body every call shares: not empty (44002), no `\uXXXX` (40033), a JSON object (47001).
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.trim_ascii().is_empty() {
        return Err(Refusal::EmptyPostData);
    }
    if has_unicode_escape(body) {
        return Err(Refusal::InvalidCharset);
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Refusal::DataFormat),
    }
}

/// `touser`: a non-empty string (41009 otherwise).
pub(crate) fn touser(body: &Map<String, Value>) -> Result<&str, Refusal> {
    match body.get("touser") {
        Some(Value::String(openid)) if !openid.is_empty() => Ok(openid),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(Refusal::MissingOpenid),
        Some(_) => Err(Refusal::DataFormat),
    }
}

/// The message types a kind of account can send.
pub(crate) fn msgtypes(kind: AccountKind) -> &'static [&'static str] {
    match kind {
        AccountKind::Oa => &[
            "text",
            "image",
            "voice",
            "video",
            "music",
            "news",
            "mpnews",
            "mpnewsarticle",
            "msgmenu",
            "wxcard",
            "miniprogrampage",
        ],
        AccountKind::Mp => &["text", "image", "link", "miniprogrampage"],
    }
}

/// Checks a `custom/send` body after [`json_object`] and [`touser`]: the msgtype for the kind
/// (40008), its payload object and fields, the text length (45002) and the article count
/// (45008). Returns the msgtype.
pub(crate) fn check_send(body: &Map<String, Value>, kind: AccountKind) -> Result<&str, Refusal> {
    let msgtype = match body.get("msgtype") {
        Some(Value::String(msgtype)) => msgtype.as_str(),
        _ => return Err(Refusal::InvalidMsgtype),
    };
    if !msgtypes(kind).contains(&msgtype) {
        return Err(Refusal::InvalidMsgtype);
    }
    if let Some(service) = body.get("customservice") {
        let Value::Object(service) = service else {
            return Err(Refusal::DataFormat);
        };
        optional(service, "kf_account")?;
    }
    // A missing payload is checked as an empty one, so that it gets its type's code.
    let empty = Map::new();
    let payload = match body.get(msgtype) {
        Some(Value::Object(payload)) => payload,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(Refusal::DataFormat),
    };
    match msgtype {
        "text" => {
            let content = required(payload, "content", Refusal::EmptyContent)?;
            if content.len() > MAX_TEXT_BYTES {
                return Err(Refusal::ContentSize);
            }
        }
        "image" | "voice" | "mpnews" => {
            required(payload, "media_id", Refusal::MissingMediaId)?;
        }
        "video" => {
            required(payload, "media_id", Refusal::MissingMediaId)?;
            required(payload, "thumb_media_id", Refusal::MissingMediaId)?;
            optional(payload, "title")?;
            optional(payload, "description")?;
        }
        "music" => {
            required(payload, "musicurl", Refusal::InvalidArgs)?;
            required(payload, "hqmusicurl", Refusal::InvalidArgs)?;
            required(payload, "thumb_media_id", Refusal::MissingMediaId)?;
            optional(payload, "title")?;
            optional(payload, "description")?;
        }
        "news" => news(payload)?,
        "mpnewsarticle" => {
            required(payload, "article_id", Refusal::InvalidArgs)?;
        }
        "msgmenu" => msgmenu(payload)?,
        "wxcard" => {
            required(payload, "card_id", Refusal::InvalidArgs)?;
        }
        "miniprogrampage" => {
            required(payload, "title", Refusal::InvalidArgs)?;
            required(payload, "pagepath", Refusal::InvalidArgs)?;
            required(payload, "thumb_media_id", Refusal::MissingMediaId)?;
            if kind == AccountKind::Oa {
                required(payload, "appid", Refusal::InvalidArgs)?;
            } else {
                optional(payload, "appid")?;
            }
        }
        // `link`, the one type left in `msgtypes`.
        _ => {
            for field in ["title", "description", "url", "thumb_url"] {
                required(payload, field, Refusal::InvalidArgs)?;
            }
        }
    }
    Ok(msgtype)
}

/// `news.articles`: one article (44003 for none, 45008 for more), an object of optional strings.
fn news(payload: &Map<String, Value>) -> Result<(), Refusal> {
    let articles = match payload.get("articles") {
        Some(Value::Array(articles)) => articles,
        None | Some(Value::Null) => return Err(Refusal::EmptyNews),
        Some(_) => return Err(Refusal::DataFormat),
    };
    match articles.as_slice() {
        [] => Err(Refusal::EmptyNews),
        [Value::Object(article)] => {
            for field in ["title", "description", "url", "picurl"] {
                optional(article, field)?;
            }
            Ok(())
        }
        [_] => Err(Refusal::DataFormat),
        _ => Err(Refusal::ArticleSize),
    }
}

/// `msgmenu`: a non-empty `list` of `{id, content}`, optional head and tail texts.
fn msgmenu(payload: &Map<String, Value>) -> Result<(), Refusal> {
    optional(payload, "head_content")?;
    optional(payload, "tail_content")?;
    let items = match payload.get("list") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        None | Some(Value::Null) | Some(Value::Array(_)) => return Err(Refusal::InvalidArgs),
        Some(_) => return Err(Refusal::DataFormat),
    };
    for item in items {
        let Value::Object(item) = item else {
            return Err(Refusal::DataFormat);
        };
        required(item, "id", Refusal::InvalidArgs)?;
        required(item, "content", Refusal::InvalidArgs)?;
    }
    Ok(())
}

/// A string field that must be present and non-empty (`missing` otherwise); another JSON type is
/// 47001.
fn required<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    missing: Refusal,
) -> Result<&'a str, Refusal> {
    match object.get(field) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(missing),
        Some(_) => Err(Refusal::DataFormat),
    }
}

/// A string field that may be absent; another JSON type is 47001.
fn optional(object: &Map<String, Value>, field: &str) -> Result<(), Refusal> {
    match object.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(Refusal::DataFormat),
    }
}

/// The typing command: `Typing` is `true`, `CancelTyping` `false`, anything else 45072.
pub(crate) fn typing_command(body: &Map<String, Value>) -> Result<bool, Refusal> {
    match body.get("command").and_then(Value::as_str) {
        Some("Typing") => Ok(true),
        Some("CancelTyping") => Ok(false),
        _ => Err(Refusal::TypingCommand),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(body: &str, kind: AccountKind) -> Result<String, Refusal> {
        let object = json_object(body.as_bytes())?;
        touser(&object)?;
        check_send(&object, kind).map(str::to_owned)
    }

    #[test]
    fn unicode_escapes_are_found_in_the_raw_bytes() {
        assert!(has_unicode_escape(br#"{"a":"\u4f60"}"#));
        assert!(has_unicode_escape(br#"{"a":"x\\\u0041"}"#));
        assert!(!has_unicode_escape(br#"{"a":"\\u4f60"}"#));
        assert!(!has_unicode_escape("{\"a\":\"你\\n\"}".as_bytes()));
        assert_eq!(
            json_object(br#"{"touser":"o","text":{"content":"\u4f60"}}"#),
            Err(Refusal::InvalidCharset)
        );
    }

    #[test]
    fn bodies_and_recipients() {
        assert_eq!(json_object(b"  "), Err(Refusal::EmptyPostData));
        assert_eq!(json_object(b"{"), Err(Refusal::DataFormat));
        assert_eq!(json_object(b"[]"), Err(Refusal::DataFormat));
        let oa = AccountKind::Oa;
        assert_eq!(
            send(r#"{"msgtype":"text"}"#, oa),
            Err(Refusal::MissingOpenid)
        );
        assert_eq!(send(r#"{"touser":""}"#, oa), Err(Refusal::MissingOpenid));
        assert_eq!(send(r#"{"touser":1}"#, oa), Err(Refusal::DataFormat));
    }

    #[test]
    fn msgtypes_by_kind() {
        let (oa, mp) = (AccountKind::Oa, AccountKind::Mp);
        assert_eq!(send(r#"{"touser":"o"}"#, oa), Err(Refusal::InvalidMsgtype));
        assert_eq!(
            send(
                r#"{"touser":"o","msgtype":"link","link":{"title":"t","description":"d","url":"u","thumb_url":"p"}}"#,
                oa
            ),
            Err(Refusal::InvalidMsgtype)
        );
        assert_eq!(
            send(
                r#"{"touser":"o","msgtype":"voice","voice":{"media_id":"m"}}"#,
                mp
            ),
            Err(Refusal::InvalidMsgtype)
        );
        let valid = [
            (
                oa,
                r#"{"touser":"o","msgtype":"text","text":{"content":"你好"},"customservice":{"kf_account":"a@b"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"image","image":{"media_id":"m"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"voice","voice":{"media_id":"m"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"video","video":{"media_id":"m","thumb_media_id":"t"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"music","music":{"musicurl":"u","hqmusicurl":"h","thumb_media_id":"t"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"news","news":{"articles":[{"title":"t","url":"u"}]}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"mpnews","mpnews":{"media_id":"m"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"a"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[{"id":"1","content":"yes"}]}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"wxcard","wxcard":{"card_id":"c"}}"#,
            ),
            (
                oa,
                r#"{"touser":"o","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"wx1","pagepath":"p","thumb_media_id":"m"}}"#,
            ),
            (
                mp,
                r#"{"touser":"o","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"p","thumb_media_id":"m"}}"#,
            ),
            (
                mp,
                r#"{"touser":"o","msgtype":"link","link":{"title":"t","description":"d","url":"u","thumb_url":"p"}}"#,
            ),
        ];
        for (kind, body) in valid {
            assert!(send(body, kind).is_ok(), "{body}: {:?}", send(body, kind));
        }
    }

    #[test]
    fn fields_by_msgtype() {
        let oa = AccountKind::Oa;
        let cases = [
            (r#"{"touser":"o","msgtype":"text"}"#, Refusal::EmptyContent),
            (
                r#"{"touser":"o","msgtype":"text","text":{"content":""}}"#,
                Refusal::EmptyContent,
            ),
            (
                r#"{"touser":"o","msgtype":"text","text":{"content":5}}"#,
                Refusal::DataFormat,
            ),
            (
                r#"{"touser":"o","msgtype":"text","text":"hi"}"#,
                Refusal::DataFormat,
            ),
            (
                r#"{"touser":"o","msgtype":"image","image":{}}"#,
                Refusal::MissingMediaId,
            ),
            (
                r#"{"touser":"o","msgtype":"news","news":{"articles":[]}}"#,
                Refusal::EmptyNews,
            ),
            (
                r#"{"touser":"o","msgtype":"news","news":{"articles":[{},{}]}}"#,
                Refusal::ArticleSize,
            ),
            (
                r#"{"touser":"o","msgtype":"msgmenu","msgmenu":{"list":[]}}"#,
                Refusal::InvalidArgs,
            ),
            (
                r#"{"touser":"o","msgtype":"msgmenu","msgmenu":{"list":[{"id":"1"}]}}"#,
                Refusal::InvalidArgs,
            ),
            (
                r#"{"touser":"o","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"p","thumb_media_id":"m"}}"#,
                Refusal::InvalidArgs,
            ),
            (
                r#"{"touser":"o","msgtype":"text","text":{"content":"x"},"customservice":"a"}"#,
                Refusal::DataFormat,
            ),
        ];
        for (body, refusal) in cases {
            assert_eq!(send(body, oa), Err(refusal), "{body}");
        }
        let long = format!(
            r#"{{"touser":"o","msgtype":"text","text":{{"content":"{}"}}}}"#,
            "字".repeat(683)
        );
        assert_eq!(send(&long, oa), Err(Refusal::ContentSize));
        let fits = long.replacen('字', "ab", 1);
        assert_eq!(send(&fits, oa).as_deref(), Ok("text"));
    }

    #[test]
    fn typing_commands() {
        let command = |body: &str| typing_command(&json_object(body.as_bytes()).unwrap());
        assert_eq!(command(r#"{"command":"Typing"}"#), Ok(true));
        assert_eq!(command(r#"{"command":"CancelTyping"}"#), Ok(false));
        assert_eq!(
            command(r#"{"command":"typing"}"#),
            Err(Refusal::TypingCommand)
        );
        assert_eq!(command(r#"{}"#), Err(Refusal::TypingCommand));
    }
}
