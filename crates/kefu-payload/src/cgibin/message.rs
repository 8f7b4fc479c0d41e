//! The `custom/send` message model (protocols.md §5.1) and the typing body (§5.2), written as
//! the platform accepts them: raw UTF-8 JSON, without `\uXXXX` escapes or HTML escaping.

use core::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// The kind of account a `custom/send` goes through. Each kind carries its own set of message
/// types (protocols.md §5.1).
///
/// ```
/// use kefu_payload::cgibin::{AccountKind, MsgType};
/// assert!(AccountKind::OfficialAccount.carries(MsgType::Voice));
/// assert!(!AccountKind::MiniProgram.carries(MsgType::Voice));
/// assert_eq!(AccountKind::MiniProgram.as_str(), "mini_program");
/// assert_eq!(AccountKind::MiniProgram.with_article(), "a mini_program");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// An Official Account or Service Account (公众号): every type but `link`, and `kf_account`.
    OfficialAccount,
    /// A Mini Program (小程序): text, image, link and miniprogrampage only.
    MiniProgram,
}

impl AccountKind {
    /// The name shown in errors and metrics: `official_account` or `mini_program`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::OfficialAccount => "official_account",
            AccountKind::MiniProgram => "mini_program",
        }
    }

    /// The name with its article, for errors: `an official_account`, `a mini_program`.
    pub const fn with_article(self) -> &'static str {
        match self {
            AccountKind::OfficialAccount => "an official_account",
            AccountKind::MiniProgram => "a mini_program",
        }
    }

    /// The message types this kind can send, in the order of §5.1.
    pub const fn msg_types(self) -> &'static [MsgType] {
        match self {
            AccountKind::OfficialAccount => &[
                MsgType::Text,
                MsgType::Image,
                MsgType::Voice,
                MsgType::Video,
                MsgType::Music,
                MsgType::News,
                MsgType::MpNews,
                MsgType::MpNewsArticle,
                MsgType::MsgMenu,
                MsgType::WxCard,
                MsgType::MiniProgramPage,
            ],
            AccountKind::MiniProgram => &[
                MsgType::Text,
                MsgType::Image,
                MsgType::Link,
                MsgType::MiniProgramPage,
            ],
        }
    }

    /// `true` when this kind can send `msg_type`.
    pub fn carries(self, msg_type: MsgType) -> bool {
        self.msg_types().contains(&msg_type)
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `msgtype` of `custom/send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// `text`.
    Text,
    /// `image`.
    Image,
    /// `voice` (OA).
    Voice,
    /// `video` (OA).
    Video,
    /// `music` (OA).
    Music,
    /// `news` (OA), one article.
    News,
    /// `mpnews` (OA), a draft or material by media id.
    MpNews,
    /// `mpnewsarticle` (OA), a published article by id.
    MpNewsArticle,
    /// `msgmenu` (OA), a menu of replies.
    MsgMenu,
    /// `wxcard` (OA), a card.
    WxCard,
    /// `miniprogrampage`, a Mini Program card.
    MiniProgramPage,
    /// `link` (MP), a link card.
    Link,
}

impl MsgType {
    /// Every type, in the order of §5.1.
    pub const ALL: [MsgType; 12] = [
        MsgType::Text,
        MsgType::Image,
        MsgType::Voice,
        MsgType::Video,
        MsgType::Music,
        MsgType::News,
        MsgType::MpNews,
        MsgType::MpNewsArticle,
        MsgType::MsgMenu,
        MsgType::WxCard,
        MsgType::MiniProgramPage,
        MsgType::Link,
    ];

    /// The `msgtype` value, also the key of the payload object.
    pub const fn as_str(self) -> &'static str {
        match self {
            MsgType::Text => "text",
            MsgType::Image => "image",
            MsgType::Voice => "voice",
            MsgType::Video => "video",
            MsgType::Music => "music",
            MsgType::News => "news",
            MsgType::MpNews => "mpnews",
            MsgType::MpNewsArticle => "mpnewsarticle",
            MsgType::MsgMenu => "msgmenu",
            MsgType::WxCard => "wxcard",
            MsgType::MiniProgramPage => "miniprogrampage",
            MsgType::Link => "link",
        }
    }

    /// The type named `name`, if any.
    pub fn parse(name: &str) -> Option<MsgType> {
        MsgType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `text`: the content may carry `\n`, `<a href="…">` links, `weixin://bizmsgmenu` links and
/// `data-miniprogram-appid` links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// The text, non-empty.
    pub content: String,
}

/// `image`, `voice` and `mpnews`: a media id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    /// The media id (MP images: from uploadTempMedia; `mpnews`: a draft or material).
    pub media_id: String,
}

/// `video`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Video {
    /// The video's media id.
    pub media_id: String,
    /// The thumbnail's media id.
    pub thumb_media_id: String,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `music`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Music {
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The music link.
    pub musicurl: String,
    /// The high-quality music link, played on Wi-Fi.
    pub hqmusicurl: String,
    /// The thumbnail's media id.
    pub thumb_media_id: String,
}

/// `news`: one article card (the platform answers 45008 for more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct News {
    /// The cards; exactly one.
    pub articles: Vec<NewsArticle>,
}

/// One card of [`News`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewsArticle {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The link the card opens.
    pub url: String,
    /// The picture's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picurl: Option<String>,
}

/// `mpnewsarticle`: a published article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MpNewsArticle {
    /// The article id from the publish API.
    pub article_id: String,
}

/// `msgmenu`: a menu whose items the user taps to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MsgMenu {
    /// The text above the items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_content: Option<String>,
    /// The items, at least one.
    pub list: Vec<MenuItem>,
    /// The text below the items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail_content: Option<String>,
}

/// One item of a [`MsgMenu`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuItem {
    /// The id the user's tap comes back with.
    pub id: String,
    /// The item's text.
    pub content: String,
}

/// `wxcard`: a card without a custom code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WxCard {
    /// The card id.
    pub card_id: String,
}

/// `miniprogrampage`: a Mini Program card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MiniProgramPage {
    /// Card title.
    pub title: String,
    /// The Mini Program's AppID: required on an OA, omitted on an MP (which sends its own pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The page to open, such as `pages/index/index?foo=bar`.
    pub pagepath: String,
    /// The thumbnail's media id.
    pub thumb_media_id: String,
}

/// `link` (MP): a link card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The link.
    pub url: String,
    /// The thumbnail's URL.
    pub thumb_url: String,
}

/// The payload of one `custom/send` message, keyed by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `text`.
    Text(Text),
    /// `image`.
    Image(Media),
    /// `voice`.
    Voice(Media),
    /// `video`.
    Video(Video),
    /// `music`.
    Music(Music),
    /// `news`.
    News(News),
    /// `mpnews`.
    MpNews(Media),
    /// `mpnewsarticle`.
    MpNewsArticle(MpNewsArticle),
    /// `msgmenu`.
    MsgMenu(MsgMenu),
    /// `wxcard`.
    WxCard(WxCard),
    /// `miniprogrampage`.
    MiniProgramPage(MiniProgramPage),
    /// `link`.
    Link(Link),
}

impl Message {
    /// The message's `msgtype`.
    pub const fn msg_type(&self) -> MsgType {
        match self {
            Message::Text(_) => MsgType::Text,
            Message::Image(_) => MsgType::Image,
            Message::Voice(_) => MsgType::Voice,
            Message::Video(_) => MsgType::Video,
            Message::Music(_) => MsgType::Music,
            Message::News(_) => MsgType::News,
            Message::MpNews(_) => MsgType::MpNews,
            Message::MpNewsArticle(_) => MsgType::MpNewsArticle,
            Message::MsgMenu(_) => MsgType::MsgMenu,
            Message::WxCard(_) => MsgType::WxCard,
            Message::MiniProgramPage(_) => MsgType::MiniProgramPage,
            Message::Link(_) => MsgType::Link,
        }
    }
}

/// One `custom/send` request body: `{"touser","msgtype","<msgtype>":{…},"customservice"?}`.
///
/// ```
/// use kefu_payload::cgibin::{CustomSend, Message, Text};
/// let send = CustomSend {
///     touser: "oUSER".into(),
///     message: Message::Text(Text { content: "您好 <a href=\"https://x/?a=1&b=2\">链接</a> 👋".into() }),
///     kf_account: Some("test1@kftest".into()),
/// };
/// assert_eq!(
///     String::from_utf8(send.to_json()).unwrap(),
///     r#"{"touser":"oUSER","msgtype":"text","text":{"content":"您好 <a href=\"https://x/?a=1&b=2\">链接</a> 👋"},"customservice":{"kf_account":"test1@kftest"}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSend {
    /// The user's OpenID for this AppID.
    pub touser: String,
    /// What to send.
    pub message: Message,
    /// The customer-service account to send as (OA only), `prefix@account`.
    pub kf_account: Option<String>,
}

impl CustomSend {
    /// The body as raw UTF-8 JSON.
    ///
    /// serde_json writes non-ASCII characters raw and never HTML-escapes, which is what the
    /// platform needs (it answers 40033 for `\uXXXX`). The control characters it would escape
    /// as `\u00XX` are refused by the desk reader before a `CustomSend` is built.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and derived structs into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for CustomSend {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct CustomService<'a> {
            kf_account: &'a str,
        }
        let msg_type = self.message.msg_type().as_str();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("touser", &self.touser)?;
        map.serialize_entry("msgtype", msg_type)?;
        match &self.message {
            Message::Text(p) => map.serialize_entry(msg_type, p)?,
            Message::Image(p) | Message::Voice(p) | Message::MpNews(p) => {
                map.serialize_entry(msg_type, p)?
            }
            Message::Video(p) => map.serialize_entry(msg_type, p)?,
            Message::Music(p) => map.serialize_entry(msg_type, p)?,
            Message::News(p) => map.serialize_entry(msg_type, p)?,
            Message::MpNewsArticle(p) => map.serialize_entry(msg_type, p)?,
            Message::MsgMenu(p) => map.serialize_entry(msg_type, p)?,
            Message::WxCard(p) => map.serialize_entry(msg_type, p)?,
            Message::MiniProgramPage(p) => map.serialize_entry(msg_type, p)?,
            Message::Link(p) => map.serialize_entry(msg_type, p)?,
        }
        if let Some(kf_account) = &self.kf_account {
            map.serialize_entry("customservice", &CustomService { kf_account })?;
        }
        map.end()
    }
}

/// The typing command of protocols.md §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypingCommand {
    /// `Typing`: show "typing…" for up to 15 s.
    Typing,
    /// `CancelTyping`: stop showing it.
    CancelTyping,
}

impl TypingCommand {
    /// `Typing` when `on`, `CancelTyping` otherwise.
    pub const fn from_on(on: bool) -> TypingCommand {
        if on {
            TypingCommand::Typing
        } else {
            TypingCommand::CancelTyping
        }
    }

    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TypingCommand::Typing => "Typing",
            TypingCommand::CancelTyping => "CancelTyping",
        }
    }
}

/// A typing request body: `{"touser","command"}`.
///
/// ```
/// use kefu_payload::cgibin::{Typing, TypingCommand};
/// let body = Typing { touser: "oUSER".into(), command: TypingCommand::Typing }.to_json();
/// assert_eq!(body, br#"{"touser":"oUSER","command":"Typing"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    /// The user's OpenID.
    pub touser: String,
    /// Show or cancel.
    pub command: TypingCommand,
}

impl Typing {
    /// The body as raw UTF-8 JSON.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            touser: &'a str,
            command: &'static str,
        }
        serde_json::to_vec(&Body {
            touser: &self.touser,
            command: self.command.as_str(),
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(message: Message, kf: Option<&str>) -> String {
        let send = CustomSend {
            touser: "oUSER".into(),
            message,
            kf_account: kf.map(str::to_owned),
        };
        String::from_utf8(send.to_json()).unwrap()
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    /// Every msgtype, byte for byte, with the characters serialisers like to escape.
    #[test]
    fn every_msgtype_serialises_raw() {
        let cases: Vec<(Message, &str)> = vec![
            (
                Message::Text(Text {
                    content: s("你好 😀\n<a href=\"https://a.b/?x=1&y=2\">点这里</a> a>b"),
                }),
                r#"{"touser":"oUSER","msgtype":"text","text":{"content":"你好 😀\n<a href=\"https://a.b/?x=1&y=2\">点这里</a> a>b"}}"#,
            ),
            (
                Message::Image(Media {
                    media_id: s("MEDIA=1"),
                }),
                r#"{"touser":"oUSER","msgtype":"image","image":{"media_id":"MEDIA=1"}}"#,
            ),
            (
                Message::Voice(Media { media_id: s("V") }),
                r#"{"touser":"oUSER","msgtype":"voice","voice":{"media_id":"V"}}"#,
            ),
            (
                Message::Video(Video {
                    media_id: s("M"),
                    thumb_media_id: s("T"),
                    title: Some(s("标题")),
                    description: None,
                }),
                r#"{"touser":"oUSER","msgtype":"video","video":{"media_id":"M","thumb_media_id":"T","title":"标题"}}"#,
            ),
            (
                Message::Music(Music {
                    title: None,
                    description: Some(s("描述")),
                    musicurl: s("http://m/1"),
                    hqmusicurl: s("http://m/2"),
                    thumb_media_id: s("T"),
                }),
                r#"{"touser":"oUSER","msgtype":"music","music":{"description":"描述","musicurl":"http://m/1","hqmusicurl":"http://m/2","thumb_media_id":"T"}}"#,
            ),
            (
                Message::News(News {
                    articles: vec![NewsArticle {
                        title: s("新闻"),
                        description: None,
                        url: s("https://n/?a=1&b=2"),
                        picurl: Some(s("https://p/1.png")),
                    }],
                }),
                r#"{"touser":"oUSER","msgtype":"news","news":{"articles":[{"title":"新闻","url":"https://n/?a=1&b=2","picurl":"https://p/1.png"}]}}"#,
            ),
            (
                Message::MpNews(Media { media_id: s("MP") }),
                r#"{"touser":"oUSER","msgtype":"mpnews","mpnews":{"media_id":"MP"}}"#,
            ),
            (
                Message::MpNewsArticle(MpNewsArticle {
                    article_id: s("ART"),
                }),
                r#"{"touser":"oUSER","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"ART"}}"#,
            ),
            (
                Message::MsgMenu(MsgMenu {
                    head_content: Some(s("您对本次服务是否满意呢? ")),
                    list: vec![
                        MenuItem {
                            id: s("101"),
                            content: s("满意"),
                        },
                        MenuItem {
                            id: s("102"),
                            content: s("不满意"),
                        },
                    ],
                    tail_content: Some(s("欢迎再次光临")),
                }),
                r#"{"touser":"oUSER","msgtype":"msgmenu","msgmenu":{"head_content":"您对本次服务是否满意呢? ","list":[{"id":"101","content":"满意"},{"id":"102","content":"不满意"}],"tail_content":"欢迎再次光临"}}"#,
            ),
            (
                Message::WxCard(WxCard { card_id: s("CARD") }),
                r#"{"touser":"oUSER","msgtype":"wxcard","wxcard":{"card_id":"CARD"}}"#,
            ),
            (
                Message::MiniProgramPage(MiniProgramPage {
                    title: s("title"),
                    appid: Some(s("wx0123")),
                    pagepath: s("pages/index/index?foo=bar"),
                    thumb_media_id: s("MEDIA_ID"),
                }),
                r#"{"touser":"oUSER","msgtype":"miniprogrampage","miniprogrampage":{"title":"title","appid":"wx0123","pagepath":"pages/index/index?foo=bar","thumb_media_id":"MEDIA_ID"}}"#,
            ),
            (
                Message::Link(Link {
                    title: s("链接"),
                    description: s("d"),
                    url: s("https://l/?a=1&b=<2>"),
                    thumb_url: s("https://t/"),
                }),
                r#"{"touser":"oUSER","msgtype":"link","link":{"title":"链接","description":"d","url":"https://l/?a=1&b=<2>","thumb_url":"https://t/"}}"#,
            ),
        ];
        assert_eq!(cases.len(), MsgType::ALL.len());
        for (message, want) in cases {
            let got = body(message, None);
            assert_eq!(got, want);
            assert!(!got.contains("\\u"), "{got}");
        }
    }

    #[test]
    fn a_backslash_before_u_is_escaped_not_taken_for_a_unicode_escape() {
        // Found by the cgibin fuzz target: the body must carry `\\u` (a backslash, then `u`).
        assert_eq!(
            body(
                Message::Text(Text {
                    content: s(r"a\u4f60")
                }),
                None
            ),
            r#"{"touser":"oUSER","msgtype":"text","text":{"content":"a\\u4f60"}}"#
        );
    }

    #[test]
    fn kf_account_goes_in_customservice() {
        assert_eq!(
            body(
                Message::Text(Text { content: s("hi") }),
                Some("test1@kftest")
            ),
            r#"{"touser":"oUSER","msgtype":"text","text":{"content":"hi"},"customservice":{"kf_account":"test1@kftest"}}"#
        );
    }

    #[test]
    fn typing_bodies() {
        for (on, want) in [
            (true, r#"{"touser":"o","command":"Typing"}"#),
            (false, r#"{"touser":"o","command":"CancelTyping"}"#),
        ] {
            let typing = Typing {
                touser: s("o"),
                command: TypingCommand::from_on(on),
            };
            assert_eq!(String::from_utf8(typing.to_json()).unwrap(), want);
        }
    }

    #[test]
    fn kinds_and_types() {
        for t in MsgType::ALL {
            assert_eq!(MsgType::parse(t.as_str()), Some(t));
            assert_eq!(
                AccountKind::OfficialAccount.carries(t),
                t != MsgType::Link,
                "{t}"
            );
        }
        let mp: Vec<_> = AccountKind::MiniProgram
            .msg_types()
            .iter()
            .map(|t| t.as_str())
            .collect();
        assert_eq!(mp, ["text", "image", "link", "miniprogrampage"]);
    }
}
