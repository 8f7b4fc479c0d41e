//! Reads a desk's message (`{"openid","msg","kf_account"?}`) into `custom/send` bodies, refusing
//! before anything is stored what the platform would refuse.

use kefu_core::Invalid;
use serde_json::{Map, Value};

use super::message::{
    AccountKind, CustomSend, Link, Media, MenuItem, Message, MiniProgramPage, MpNewsArticle,
    MsgMenu, MsgType, Music, News, NewsArticle, Text, Typing, TypingCommand, Video, WxCard,
};
use super::split::split_text;
use crate::limits;

/// The longest `kf_account` accepted (`prefix@account`), in bytes.
const KF_ACCOUNT: usize = 128;

/// The most messages one desk message may become (multimsg parts and split text together), each
/// one stored job. The platform lets a business answer 5 messages per user message (protocols.md
/// §5.3), so a desk has no use for more than a few dozen; a cap keeps one request from filling
/// the outbox with thousands of jobs (a 16,000-part multimsg, a 64 KB text in 33 parts).
pub const MAX_PARTS: usize = 20;

/// The platform's limit for one text message, in bytes: above it, 45002 (protocols.md §5.4).
const PLATFORM_TEXT_BYTES: usize = 2048;

/// Reads a desk's message for an account of `kind` into the bodies to send, in order.
///
/// `body` is the desk's object without `account`: `openid` (required), `msg` (required) and
/// `kf_account` (OA only). `msg` is a string (text), an object keyed by one type carrying that
/// type's fields as protocols.md §5.1 names them, or `{"multimsg":[…]}`, several messages in
/// order. Text longer than `text_budget` bytes becomes several text messages
/// ([`split_text`]).
///
/// A refusal names the field as a path into `body` (`msg.news.articles`,
/// `msg.multimsg[1].image.media_id`), and its message names the type and the kind.
///
/// ```
/// use kefu_payload::cgibin::{AccountKind, read_desk_message};
/// let body = serde_json::json!({"openid": "oUSER", "msg": {"voice": {"media_id": "M"}}});
/// let err = read_desk_message(AccountKind::MiniProgram, body.as_object().unwrap(), 2000).unwrap_err();
/// assert_eq!(err.field, "msg.voice");
/// assert!(err.message.contains("mini_program"));
/// ```
pub fn read_desk_message(
    kind: AccountKind,
    body: &Map<String, Value>,
    text_budget: usize,
) -> Result<Vec<CustomSend>, Invalid> {
    for key in body.keys() {
        if !matches!(key.as_str(), "openid" | "msg" | "kf_account") {
            return Err(Invalid::new(
                key_name(key),
                format!(
                    "is not a field of a message to {} account (openid, msg, kf_account)",
                    kind.with_article()
                ),
            ));
        }
    }
    let touser = openid(body.get("openid"), "openid")?;
    let kf_account = match body.get("kf_account") {
        None | Some(Value::Null) => None,
        Some(_) if kind == AccountKind::MiniProgram => {
            return Err(Invalid::new(
                "kf_account",
                "a mini_program account cannot send as a customer-service account; omit kf_account",
            ));
        }
        Some(value) => {
            let account = string(value, "kf_account", "")?;
            if account.len() > KF_ACCOUNT || !account.contains('@') {
                return Err(Invalid::new(
                    "kf_account",
                    format!(
                        "must be a customer-service account written prefix@account, at most {KF_ACCOUNT} bytes"
                    ),
                ));
            }
            Some(account)
        }
    };
    let msg = body.get("msg").filter(|v| !v.is_null()).ok_or_else(|| {
        Invalid::new(
            "msg",
            "is required: a string (text) or an object keyed by one message type",
        )
    })?;
    let messages = read_msg(kind, msg, text_budget)?;
    Ok(messages
        .into_iter()
        .map(|message| CustomSend {
            touser: touser.clone(),
            message,
            kf_account: kf_account.clone(),
        })
        .collect())
}

/// The typing body for `openid`, shown (`on`) or cancelled.
pub fn typing_body(openid_value: &str, on: bool) -> Result<Typing, Invalid> {
    let touser = openid(Some(&Value::String(openid_value.to_owned())), "openid")?;
    Ok(Typing {
        touser,
        command: TypingCommand::from_on(on),
    })
}

pub(crate) fn openid(value: Option<&Value>, field: &str) -> Result<String, Invalid> {
    let value = value
        .filter(|v| !v.is_null())
        .ok_or_else(|| Invalid::new(field, "is required: the user's OpenID for this account"))?;
    let openid = string(value, field, "")?;
    if openid.len() > limits::OPENID || openid.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            field,
            format!(
                "is not an OpenID: at most {} bytes, without spaces",
                limits::OPENID
            ),
        ));
    }
    Ok(openid)
}

fn read_msg(kind: AccountKind, msg: &Value, budget: usize) -> Result<Vec<Message>, Invalid> {
    if let Value::Object(object) = msg {
        if let Some(parts) = object.get("multimsg") {
            if object.len() != 1 {
                return Err(Invalid::new(
                    "msg",
                    "with multimsg, msg must hold multimsg alone",
                ));
            }
            let Value::Array(parts) = parts else {
                return Err(Invalid::new(
                    "msg.multimsg",
                    "must be an array of messages (strings or objects keyed by one type)",
                ));
            };
            if parts.is_empty() {
                return Err(Invalid::new(
                    "msg.multimsg",
                    "must hold at least one message",
                ));
            }
            if parts.len() > MAX_PARTS {
                return Err(too_many_parts("msg.multimsg", parts.len()));
            }
            let mut messages = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let path = format!("msg.multimsg[{i}]");
                if matches!(part, Value::Object(o) if o.contains_key("multimsg")) {
                    return Err(Invalid::new(path, "a multimsg cannot nest another"));
                }
                messages.extend(read_one(kind, part, &path, budget)?);
                if messages.len() > MAX_PARTS {
                    return Err(too_many_parts("msg.multimsg", messages.len()));
                }
            }
            return Ok(messages);
        }
    }
    read_one(kind, msg, "msg", budget)
}

/// One message: text (possibly split) or one typed object.
fn read_one(
    kind: AccountKind,
    value: &Value,
    path: &str,
    budget: usize,
) -> Result<Vec<Message>, Invalid> {
    let (msg_type, fields, at) = match value {
        Value::String(text) => return text_messages(text, path, budget),
        Value::Object(object) if object.len() == 1 => {
            let Some((name, fields)) = object.iter().next() else {
                return Err(one_type(kind, path));
            };
            let at = format!("{path}.{}", key_name(name));
            let Some(msg_type) = MsgType::parse(name) else {
                return Err(Invalid::new(
                    at,
                    format!(
                        "is not a message type; {} account sends {}",
                        kind.with_article(),
                        type_list(kind)
                    ),
                ));
            };
            (msg_type, fields, at)
        }
        _ => return Err(one_type(kind, path)),
    };
    if !kind.carries(msg_type) {
        return Err(Invalid::new(
            at,
            format!(
                "{} account cannot send {msg_type}; it sends {}",
                kind.with_article(),
                type_list(kind)
            ),
        ));
    }
    let Value::Object(fields) = fields else {
        return Err(Invalid::new(
            at,
            format!("{msg_type} must be an object of its fields"),
        ));
    };
    let f = Fields {
        fields,
        at: &at,
        msg_type,
        kind,
    };
    let message = match msg_type {
        MsgType::Text => {
            f.only(&["content"])?;
            let content = f.required("content")?;
            return text_messages(&content, &format!("{at}.content"), budget);
        }
        MsgType::Image => Message::Image(f.media()?),
        MsgType::Voice => Message::Voice(f.media()?),
        MsgType::MpNews => Message::MpNews(f.media()?),
        MsgType::Video => {
            f.only(&["media_id", "thumb_media_id", "title", "description"])?;
            Message::Video(Video {
                media_id: f.required("media_id")?,
                thumb_media_id: f.required("thumb_media_id")?,
                title: f.optional("title")?,
                description: f.optional("description")?,
            })
        }
        MsgType::Music => {
            f.only(&[
                "title",
                "description",
                "musicurl",
                "hqmusicurl",
                "thumb_media_id",
            ])?;
            Message::Music(Music {
                title: f.optional("title")?,
                description: f.optional("description")?,
                musicurl: f.required("musicurl")?,
                hqmusicurl: f.required("hqmusicurl")?,
                thumb_media_id: f.required("thumb_media_id")?,
            })
        }
        MsgType::News => {
            f.only(&["articles"])?;
            Message::News(News {
                articles: f.news_articles()?,
            })
        }
        MsgType::MpNewsArticle => {
            f.only(&["article_id"])?;
            Message::MpNewsArticle(MpNewsArticle {
                article_id: f.required("article_id")?,
            })
        }
        MsgType::MsgMenu => {
            f.only(&["head_content", "list", "tail_content"])?;
            Message::MsgMenu(MsgMenu {
                head_content: f.optional("head_content")?,
                list: f.menu_items()?,
                tail_content: f.optional("tail_content")?,
            })
        }
        MsgType::WxCard => {
            f.only(&["card_id"])?;
            Message::WxCard(WxCard {
                card_id: f.required("card_id")?,
            })
        }
        MsgType::MiniProgramPage => {
            f.only(&["title", "appid", "pagepath", "thumb_media_id"])?;
            let appid = match kind {
                AccountKind::OfficialAccount => Some(f.required("appid")?),
                AccountKind::MiniProgram => match f.fields.get("appid") {
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        return Err(f.refuse(
                            "appid",
                            "must be omitted: a mini_program account sends its own pages",
                        ));
                    }
                },
            };
            Message::MiniProgramPage(MiniProgramPage {
                title: f.required("title")?,
                appid,
                pagepath: f.required("pagepath")?,
                thumb_media_id: f.required("thumb_media_id")?,
            })
        }
        MsgType::Link => {
            f.only(&["title", "description", "url", "thumb_url"])?;
            Message::Link(Link {
                title: f.required("title")?,
                description: f.required("description")?,
                url: f.required("url")?,
                thumb_url: f.required("thumb_url")?,
            })
        }
    };
    Ok(vec![message])
}

/// A JSON key as a segment of a field path: as it is when it is a plain name, quoted when it
/// is empty or holds other characters, so that a path always names its field unambiguously.
pub(crate) fn key_name(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        key.to_owned()
    } else {
        serde_json::to_string(key).unwrap_or_default()
    }
}

fn one_type(kind: AccountKind, path: &str) -> Invalid {
    Invalid::new(
        path,
        format!(
            "must be a string (text) or an object keyed by one message type; {} account sends {}",
            kind.with_article(),
            type_list(kind)
        ),
    )
}

fn type_list(kind: AccountKind) -> String {
    kind.msg_types()
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn too_many_parts(path: &str, parts: usize) -> Invalid {
    Invalid::new(
        path,
        format!(
            "would become {parts} or more messages (text is split every budget's bytes); one desk message may become at most {MAX_PARTS}, and the platform allows 5 answers per user message"
        ),
    )
}

/// The text's parts within the budget. A part the splitter could not cut (a link, which stays
/// whole) over the platform's limit is refused now: the platform would certainly refuse it
/// (45002) after it had been stored and queued.
fn text_messages(text: &str, path: &str, budget: usize) -> Result<Vec<Message>, Invalid> {
    check_text(text, path, "text")?;
    let parts = split_text(text, budget);
    if parts.len() > MAX_PARTS {
        return Err(too_many_parts(path, parts.len()));
    }
    let mut offset = 0;
    for part in &parts {
        if part.len() > PLATFORM_TEXT_BYTES {
            return Err(Invalid::new(
                path,
                format!(
                    "holds a link (<a …>, never split) of {} bytes at byte {offset}, longer than the platform's {PLATFORM_TEXT_BYTES} bytes for one text (45002)",
                    part.len()
                ),
            ));
        }
        offset += part.len();
    }
    Ok(parts
        .into_iter()
        .map(|content| {
            Message::Text(Text {
                content: content.to_owned(),
            })
        })
        .collect())
}

/// Refuses an empty string, and the control characters JSON can only carry as `\u00XX`, which
/// the platform refuses (40033).
pub(crate) fn check_text(text: &str, path: &str, what: &str) -> Result<(), Invalid> {
    if text.is_empty() {
        return Err(Invalid::new(path, format!("{what} must not be empty")));
    }
    if let Some(position) = text
        .chars()
        .position(|c| c < ' ' && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(Invalid::new(
            path,
            format!(
                "holds a control character at position {position}; the platform refuses it (40033)"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn string(value: &Value, path: &str, what: &str) -> Result<String, Invalid> {
    match value {
        Value::String(s) => {
            check_text(s, path, if what.is_empty() { "the value" } else { what })?;
            Ok(s.clone())
        }
        other => Err(Invalid::new(
            path,
            format!("must be a string, not {}", json_type(other)),
        )),
    }
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An element of an array field: its path and its fields.
type Element<'a> = (String, &'a Map<String, Value>);

/// The fields of one typed object, with the path and context every refusal names.
struct Fields<'a> {
    fields: &'a Map<String, Value>,
    at: &'a str,
    msg_type: MsgType,
    kind: AccountKind,
}

impl Fields<'_> {
    fn refuse(&self, field: &str, why: &str) -> Invalid {
        Invalid::new(
            format!("{}.{field}", self.at),
            format!(
                "{why} ({} on {} account)",
                self.msg_type,
                self.kind.with_article()
            ),
        )
    }

    fn only(&self, known: &[&str]) -> Result<(), Invalid> {
        match self.fields.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(self.refuse(
                &key_name(unknown),
                &format!(
                    "is not a field of {}; it takes {}",
                    self.msg_type,
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    fn required(&self, field: &str) -> Result<String, Invalid> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Err(self.refuse(field, "is required")),
            Some(value) => self.string(field, value),
        }
    }

    fn optional(&self, field: &str) -> Result<Option<String>, Invalid> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => self.string(field, value).map(Some),
        }
    }

    fn string(&self, field: &str, value: &Value) -> Result<String, Invalid> {
        string(value, &format!("{}.{field}", self.at), field).map_err(|e| Invalid {
            message: format!(
                "{} ({} on {} account)",
                e.message,
                self.msg_type,
                self.kind.with_article()
            ),
            ..e
        })
    }

    fn media(&self) -> Result<Media, Invalid> {
        self.only(&["media_id"])?;
        Ok(Media {
            media_id: self.required("media_id")?,
        })
    }

    fn array(&self, field: &str) -> Result<&Vec<Value>, Invalid> {
        match self.fields.get(field) {
            Some(Value::Array(items)) => Ok(items),
            None | Some(Value::Null) => Err(self.refuse(field, "is required")),
            Some(other) => Err(self.refuse(
                field,
                &format!("must be an array, not {}", json_type(other)),
            )),
        }
    }

    /// Each element of `field`, an object, with its path `….field[i]`.
    fn objects(&self, field: &str) -> Result<Vec<Element<'_>>, Invalid> {
        self.array(field)?
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(fields) => Ok((format!("{}.{field}[{i}]", self.at), fields)),
                other => Err(self.refuse(
                    &format!("{field}[{i}]"),
                    &format!("must be an object, not {}", json_type(other)),
                )),
            })
            .collect()
    }

    /// The fields of an element of an array field.
    fn nested<'s>(&self, at: &'s str, fields: &'s Map<String, Value>) -> Fields<'s> {
        Fields {
            fields,
            at,
            msg_type: self.msg_type,
            kind: self.kind,
        }
    }

    fn news_articles(&self) -> Result<Vec<NewsArticle>, Invalid> {
        let items = self.objects("articles")?;
        if items.len() != 1 {
            return Err(self.refuse(
                "articles",
                &format!(
                    "must hold exactly 1 article, got {}; the platform answers 45008 for more",
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .map(|(at, fields)| {
                let item = self.nested(at, fields);
                item.only(&["title", "description", "url", "picurl"])?;
                Ok(NewsArticle {
                    title: item.required("title")?,
                    description: item.optional("description")?,
                    url: item.required("url")?,
                    picurl: item.optional("picurl")?,
                })
            })
            .collect()
    }

    fn menu_items(&self) -> Result<Vec<MenuItem>, Invalid> {
        let items = self.objects("list")?;
        if items.is_empty() {
            return Err(self.refuse("list", "must hold at least one item"));
        }
        items
            .iter()
            .map(|(at, fields)| {
                let item = self.nested(at, fields);
                item.only(&["id", "content"])?;
                Ok(MenuItem {
                    id: item.required("id")?,
                    content: item.required("content")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OA: AccountKind = AccountKind::OfficialAccount;
    const MP: AccountKind = AccountKind::MiniProgram;

    fn read(kind: AccountKind, body: Value) -> Result<Vec<String>, Invalid> {
        read_desk_message(kind, body.as_object().unwrap(), 2000).map(|sends| {
            sends
                .iter()
                .map(|s| String::from_utf8(s.to_json()).unwrap())
                .collect()
        })
    }

    fn refusal(kind: AccountKind, msg: Value) -> Invalid {
        read(kind, json!({"openid": "oU", "msg": msg})).unwrap_err()
    }

    #[test]
    fn one_desk_message_becomes_at_most_max_parts() {
        let parts = vec![json!("x"); MAX_PARTS];
        assert_eq!(
            read(OA, json!({"openid": "oU", "msg": {"multimsg": parts}}))
                .unwrap()
                .len(),
            MAX_PARTS
        );
        let err = refusal(OA, json!({"multimsg": vec![json!("x"); 16_000]}));
        assert_eq!(err.field, "msg.multimsg", "{err}");
        assert!(err.message.contains("at most 20"), "{err}");
        // Split text counts: 19 short parts and one text of two parts make 21.
        let mut parts = vec![json!("x"); MAX_PARTS - 1];
        parts.push(json!("字".repeat(1000)));
        let err = refusal(MP, json!({ "multimsg": parts }));
        assert_eq!(err.field, "msg.multimsg", "{err}");
        // A 64 KB text would be 33 parts.
        assert_eq!(
            read(OA, json!({"openid": "oU", "msg": "a".repeat(40_000)}))
                .unwrap()
                .len(),
            MAX_PARTS
        );
        let err = refusal(OA, json!("a".repeat(64 * 1024)));
        assert_eq!(err.field, "msg", "{err}");
        assert!(err.message.contains("33 or more"), "{err}");
        let err = refusal(OA, json!({"multimsg": ["x", "a".repeat(64 * 1024)]}));
        assert_eq!(err.field, "msg.multimsg[1]", "{err}");
    }

    #[test]
    fn refusals_use_the_article_of_the_kind() {
        for (kind, msg) in [
            (MP, json!({"voice": {"media_id": "M"}})),
            (MP, json!({"nope": {}})),
            (MP, json!(["x"])),
            (MP, json!({"image": {"media_id": 1}})),
            (MP, json!({"image": {}})),
            (OA, json!({"link": {}})),
        ] {
            let err = refusal(kind, msg);
            assert!(err.message.contains(kind.with_article()), "{err}");
            assert!(!err.message.contains("an mini_program"), "{err}");
        }
        let err = read(MP, json!({"openid": "oU", "msg": "x", "extra": 1})).unwrap_err();
        assert!(err.message.contains("to a mini_program account"), "{err}");
    }

    #[test]
    fn a_link_over_the_platform_limit_is_refused() {
        let link = |bytes: usize| {
            let open = r#"<a href="https://a.b/?q="#;
            let close = r#"">点</a>"#;
            format!(
                "{open}{}{close}",
                "q".repeat(bytes - open.len() - close.len())
            )
        };
        // Over the budget but within the platform's 2,048 bytes: one part of its own.
        let sends = read(
            OA,
            json!({"openid": "oU", "msg": format!("hi {}", link(2048))}),
        )
        .unwrap();
        assert_eq!(sends.len(), 2);
        let err = refusal(OA, json!(format!("hi {}", link(2049))));
        assert_eq!(err.field, "msg", "{err}");
        assert!(
            err.message.contains("link")
                && err.message.contains("2049 bytes at byte 3")
                && err.message.contains("2048"),
            "{err}"
        );
        // An unterminated tag is kept whole too.
        let tag = format!("<a href='{}'>", "u".repeat(3000));
        let err = refusal(MP, json!({ "multimsg": ["x", tag] }));
        assert_eq!(err.field, "msg.multimsg[1]", "{err}");
    }

    #[test]
    fn every_type_from_the_desk_shape() {
        let cases = [
            (
                OA,
                json!("你好"),
                r#""msgtype":"text","text":{"content":"你好"}"#,
            ),
            (
                OA,
                json!({"text": {"content": "hi"}}),
                r#""text":{"content":"hi"}"#,
            ),
            (
                MP,
                json!({"image": {"media_id": "M"}}),
                r#""image":{"media_id":"M"}"#,
            ),
            (
                OA,
                json!({"voice": {"media_id": "V"}}),
                r#""voice":{"media_id":"V"}"#,
            ),
            (
                OA,
                json!({"video": {"media_id": "V", "thumb_media_id": "T"}}),
                r#""video":{"media_id":"V","thumb_media_id":"T"}"#,
            ),
            (
                OA,
                json!({"music": {"musicurl": "m", "hqmusicurl": "h", "thumb_media_id": "T", "title": null}}),
                r#""music":{"musicurl":"m","hqmusicurl":"h","thumb_media_id":"T"}"#,
            ),
            (
                OA,
                json!({"news": {"articles": [{"title": "t", "url": "u"}]}}),
                r#""news":{"articles":[{"title":"t","url":"u"}]}"#,
            ),
            (
                OA,
                json!({"mpnews": {"media_id": "M"}}),
                r#""mpnews":{"media_id":"M"}"#,
            ),
            (
                OA,
                json!({"mpnewsarticle": {"article_id": "A"}}),
                r#""mpnewsarticle":{"article_id":"A"}"#,
            ),
            (
                OA,
                json!({"msgmenu": {"list": [{"id": "1", "content": "是"}]}}),
                r#""msgmenu":{"list":[{"id":"1","content":"是"}]}"#,
            ),
            (
                OA,
                json!({"wxcard": {"card_id": "C"}}),
                r#""wxcard":{"card_id":"C"}"#,
            ),
            (
                OA,
                json!({"miniprogrampage": {"title": "t", "appid": "wx1", "pagepath": "p", "thumb_media_id": "T"}}),
                r#""miniprogrampage":{"title":"t","appid":"wx1","pagepath":"p","thumb_media_id":"T"}"#,
            ),
            (
                MP,
                json!({"miniprogrampage": {"title": "t", "pagepath": "p", "thumb_media_id": "T"}}),
                r#""miniprogrampage":{"title":"t","pagepath":"p","thumb_media_id":"T"}"#,
            ),
            (
                MP,
                json!({"link": {"title": "t", "description": "d", "url": "u", "thumb_url": "th"}}),
                r#""link":{"title":"t","description":"d","url":"u","thumb_url":"th"}"#,
            ),
        ];
        for (kind, msg, want) in cases {
            let got = read(kind, json!({"openid": "oU", "msg": msg})).unwrap();
            assert_eq!(got.len(), 1);
            assert!(
                got[0].starts_with(r#"{"touser":"oU","msgtype":""#),
                "{}",
                got[0]
            );
            assert!(got[0].contains(want), "{} should contain {want}", got[0]);
        }
    }

    #[test]
    fn multimsg_keeps_order_and_splits_long_text() {
        let long = "字".repeat(1000); // 3,000 bytes
        let got = read_desk_message(
            OA,
            json!({"openid": "oU", "kf_account": "a@b", "msg": {"multimsg": ["one", {"image": {"media_id": "M"}}, long]}})
                .as_object()
                .unwrap(),
            2000,
        )
        .unwrap();
        let types: Vec<_> = got.iter().map(|s| s.message.msg_type()).collect();
        assert_eq!(
            types,
            [MsgType::Text, MsgType::Image, MsgType::Text, MsgType::Text]
        );
        assert!(got.iter().all(|s| s.kf_account.as_deref() == Some("a@b")));
        let Message::Text(third) = &got[2].message else {
            panic!()
        };
        assert_eq!(third.content.len(), 1998);
    }

    #[test]
    fn refusals_name_the_field_the_type_and_the_kind() {
        // (kind, desk body, refused field, words the message must hold)
        type Case = (AccountKind, Value, &'static str, &'static [&'static str]);
        let cases: Vec<Case> = vec![
            (OA, json!({"msg": "x"}), "openid", &["required"]),
            (
                OA,
                json!({"openid": 7, "msg": "x"}),
                "openid",
                &["string", "number"],
            ),
            (OA, json!({"openid": "oU"}), "msg", &["required"]),
            (OA, json!({"openid": "oU", "msg": ""}), "msg", &["empty"]),
            (
                OA,
                json!({"openid": "oU", "msg": "a\u{1}b"}),
                "msg",
                &["control", "40033"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": 5}),
                "msg",
                &["official_account"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {}}),
                "msg",
                &["one message type"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"gif": {}}}),
                "msg.gif",
                &["not a message type", "official_account"],
            ),
            (
                MP,
                json!({"openid": "oU", "msg": {"voice": {"media_id": "V"}}}),
                "msg.voice",
                &[
                    "mini_program",
                    "voice",
                    "text, image, link, miniprogrampage",
                ],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"link": {}}}),
                "msg.link",
                &["official_account", "link"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"image": "M"}}),
                "msg.image",
                &["object"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"image": {}}}),
                "msg.image.media_id",
                &["required", "image", "official_account"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"image": {"media_id": 3}}}),
                "msg.image.media_id",
                &["string", "image"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"image": {"media_id": "M", "url": "u"}}}),
                "msg.image.url",
                &["not a field"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"news": {"articles": [{"title": "a", "url": "u"}, {"title": "b", "url": "u"}]}}}),
                "msg.news.articles",
                &["exactly 1", "45008", "news", "official_account"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"news": {"articles": []}}}),
                "msg.news.articles",
                &["exactly 1"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"news": {"articles": [{"title": "a"}]}}}),
                "msg.news.articles[0].url",
                &["required"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"news": {"articles": ["x"]}}}),
                "msg.news.articles[0]",
                &["object"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"msgmenu": {"list": []}}}),
                "msg.msgmenu.list",
                &["at least one"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"msgmenu": {"list": [{"id": 1, "content": "c"}]}}}),
                "msg.msgmenu.list[0].id",
                &["string", "number"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"miniprogrampage": {"title": "t", "pagepath": "p", "thumb_media_id": "T"}}}),
                "msg.miniprogrampage.appid",
                &["required"],
            ),
            (
                MP,
                json!({"openid": "oU", "msg": {"miniprogrampage": {"title": "t", "appid": "wx", "pagepath": "p", "thumb_media_id": "T"}}}),
                "msg.miniprogrampage.appid",
                &["omitted"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"text": {"content": ""}}}),
                "msg.text.content",
                &["empty"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"multimsg": []}}),
                "msg.multimsg",
                &["at least one"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"multimsg": "x"}}),
                "msg.multimsg",
                &["array"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"multimsg": ["a", {"multimsg": []}]}}),
                "msg.multimsg[1]",
                &["nest"],
            ),
            (
                MP,
                json!({"openid": "oU", "msg": {"multimsg": ["a", {"music": {}}]}}),
                "msg.multimsg[1].music",
                &["mini_program"],
            ),
            (
                MP,
                json!({"openid": "oU", "msg": "x", "kf_account": "a@b"}),
                "kf_account",
                &["mini_program"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": "x", "kf_account": "nobody"}),
                "kf_account",
                &["prefix@account"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": "x", "channel": 0}),
                "channel",
                &["not a field"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": "x", "": 0}),
                r#""""#,
                &["not a field"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"a.b": {}}}),
                r#"msg."a.b""#,
                &["not a message type"],
            ),
            (
                OA,
                json!({"openid": "oU", "msg": {"image": {"media_id": "M", " ": 1}}}),
                r#"msg.image." ""#,
                &["not a field"],
            ),
        ];
        for (kind, body, field, words) in cases {
            let err = read(kind, body.clone()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
            for word in words {
                assert!(
                    err.message.contains(word),
                    "{body}: {err} should say {word:?}"
                );
            }
        }
    }

    #[test]
    fn typing() {
        assert_eq!(
            typing_body("oU", false).unwrap().command,
            TypingCommand::CancelTyping
        );
        assert_eq!(typing_body("", true).unwrap_err().field, "openid");
    }
}
