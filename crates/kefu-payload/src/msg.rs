//! The `msg` content of `sendmsg` and of the callback: plain text or rich JSON (protocols.md §4.5).

use core::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// The content of `<msg>`: plain text, or a rich answer (富文本) written as a JSON string.
///
/// Text may carry the platform's inline markup (`<a href=…>`, `weixin://bizmsgmenu` links,
/// `data-miniprogram-appid` links); that is still text. Rich content is one of the JSON objects
/// of protocols.md §4.5.
///
/// With serde, text is a JSON string and rich content is an object with exactly one key
/// (`news`, `image`, `miniprogrampage` or `multimsg`); unknown keys are refused with serde's
/// message naming them.
///
/// ```
/// use kefu_payload::{Image, Msg};
///
/// let image = Msg::Image(Image { media_id: Some("MEDIA".into()), url: None });
/// assert_eq!(image.to_wire(), r#"{"image":{"media_id":"MEDIA"}}"#);
/// assert_eq!(Msg::from_wire(&image.to_wire()), image);
///
/// let link = Msg::from_wire(r#"请前往<a href="https://chatbot.weixin.qq.com/">openai</a>配置"#);
/// assert!(matches!(link, Msg::Text(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Plain text, possibly with the platform's inline links.
    Text(String),
    /// `{"news":{…}}`: H5 or Official Account article cards.
    News(News),
    /// `{"image":{…}}`: an Official Account image.
    Image(Image),
    /// `{"miniprogrampage":{…}}`: a Mini Program card.
    MiniProgramPage(MiniProgramPage),
    /// `{"multimsg":[…]}`: several answers in one message.
    MultiMsg(Vec<MultiMsgItem>),
}

/// One element of a [`Msg::MultiMsg`]: a text string or a single rich object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiMsgItem {
    /// A text string.
    Text(String),
    /// `{"news":{…}}`.
    News(News),
    /// `{"image":{…}}`.
    Image(Image),
    /// `{"miniprogrampage":{…}}`.
    MiniProgramPage(MiniProgramPage),
}

/// The body of a `news` answer: a list of article cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct News {
    /// The cards, shown in order.
    pub articles: Vec<Article>,
}

/// One card of a [`News`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Article {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Link target.
    pub url: String,
    /// Picture URL.
    pub picurl: String,
    /// `type`: whether the link is a platform H5 page or an Official Account article.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub article_type: Option<ArticleType>,
}

/// The `type` of an [`Article`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArticleType {
    /// `h5`: an H5 page configured on the Dialogue platform.
    H5,
    /// `mp`: an Official Account article.
    Mp,
}

/// The body of an `image` answer: an Official Account image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The Official Account media id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// The image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The body of a `miniprogrampage` answer: a Mini Program card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniProgramPage {
    /// Card title.
    pub title: String,
    /// The Mini Program's AppID.
    pub appid: String,
    /// The page to open, such as `pages/index/index`.
    pub pagepath: String,
    /// Official Account media id of the thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_media_id: Option<String>,
    /// Thumbnail URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_url: Option<String>,
}

impl Msg {
    /// Plain text.
    pub fn text(text: impl Into<String>) -> Msg {
        Msg::Text(text.into())
    }

    /// `true` for empty text, which the platform refuses with 1008. Rich content is never empty
    /// on the wire.
    pub fn is_empty(&self) -> bool {
        matches!(self, Msg::Text(text) if text.is_empty())
    }

    /// The text that goes inside `<msg>`: the text itself, or compact JSON for rich content.
    pub fn to_wire(&self) -> String {
        match self {
            Msg::Text(text) => text.clone(),
            // Serialising these types cannot fail: every map key is a string and every value
            // a string, a list or a struct of them.
            rich => serde_json::to_string(rich).unwrap_or_default(),
        }
    }

    /// Reads the text of `<msg>` back: a JSON object of a known rich shape is rich content;
    /// anything else, including JSON of an unknown shape, is text.
    ///
    /// Text that is itself valid rich JSON cannot be told apart from rich content; the platform
    /// reads it the same way.
    pub fn from_wire(wire: &str) -> Msg {
        if wire.trim_start().starts_with('{') {
            if let Ok(rich) = serde_json::from_str::<Msg>(wire) {
                return rich;
            }
        }
        Msg::Text(wire.to_owned())
    }
}

impl From<String> for Msg {
    fn from(text: String) -> Msg {
        Msg::Text(text)
    }
}

impl From<&str> for Msg {
    fn from(text: &str) -> Msg {
        Msg::Text(text.to_owned())
    }
}

impl From<MultiMsgItem> for Msg {
    fn from(item: MultiMsgItem) -> Msg {
        match item {
            MultiMsgItem::Text(text) => Msg::Text(text),
            MultiMsgItem::News(news) => Msg::News(news),
            MultiMsgItem::Image(image) => Msg::Image(image),
            MultiMsgItem::MiniProgramPage(page) => Msg::MiniProgramPage(page),
        }
    }
}

fn serialize_single_entry<S: Serializer, V: Serialize>(
    serializer: S,
    key: &'static str,
    value: &V,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
}

impl Serialize for Msg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Msg::Text(text) => serializer.serialize_str(text),
            Msg::News(news) => serialize_single_entry(serializer, "news", news),
            Msg::Image(image) => serialize_single_entry(serializer, "image", image),
            Msg::MiniProgramPage(page) => {
                serialize_single_entry(serializer, "miniprogrampage", page)
            }
            Msg::MultiMsg(items) => serialize_single_entry(serializer, "multimsg", items),
        }
    }
}

impl Serialize for MultiMsgItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MultiMsgItem::Text(text) => serializer.serialize_str(text),
            MultiMsgItem::News(news) => serialize_single_entry(serializer, "news", news),
            MultiMsgItem::Image(image) => serialize_single_entry(serializer, "image", image),
            MultiMsgItem::MiniProgramPage(page) => {
                serialize_single_entry(serializer, "miniprogrampage", page)
            }
        }
    }
}

/// The key of a rich `msg` object; serde names the accepted keys when another one appears.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum MsgKey {
    News,
    Image,
    MiniProgramPage,
    MultiMsg,
}

/// The key of a rich `multimsg` element: the same objects, but no nested `multimsg`.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ItemKey {
    News,
    Image,
    MiniProgramPage,
}

/// Refuses a second key: a rich object means exactly one thing.
fn expect_no_more_keys<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    match map.next_key::<IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(de::Error::custom(
            "a rich msg object must hold exactly one key (news, image, miniprogrampage or multimsg)",
        )),
    }
}

struct MsgVisitor;

impl<'de> Visitor<'de> for MsgVisitor {
    type Value = Msg;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a text string or an object with one key: news, image, miniprogrampage or multimsg",
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Msg, E> {
        Ok(Msg::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Msg, E> {
        Ok(Msg::Text(text))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Msg, A::Error> {
        let msg = match map.next_key::<MsgKey>()? {
            None => return Err(de::Error::invalid_length(0, &self)),
            Some(MsgKey::News) => Msg::News(map.next_value()?),
            Some(MsgKey::Image) => Msg::Image(map.next_value()?),
            Some(MsgKey::MiniProgramPage) => Msg::MiniProgramPage(map.next_value()?),
            Some(MsgKey::MultiMsg) => Msg::MultiMsg(map.next_value()?),
        };
        expect_no_more_keys(&mut map)?;
        Ok(msg)
    }
}

impl<'de> Deserialize<'de> for Msg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Msg, D::Error> {
        deserializer.deserialize_any(MsgVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = MultiMsgItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a text string or an object with one key: news, image or miniprogrampage")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<MultiMsgItem, E> {
        Ok(MultiMsgItem::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<MultiMsgItem, E> {
        Ok(MultiMsgItem::Text(text))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MultiMsgItem, A::Error> {
        let item = match map.next_key::<ItemKey>()? {
            None => return Err(de::Error::invalid_length(0, &self)),
            Some(ItemKey::News) => MultiMsgItem::News(map.next_value()?),
            Some(ItemKey::Image) => MultiMsgItem::Image(map.next_value()?),
            Some(ItemKey::MiniProgramPage) => MultiMsgItem::MiniProgramPage(map.next_value()?),
        };
        expect_no_more_keys(&mut map)?;
        Ok(item)
    }
}

impl<'de> Deserialize<'de> for MultiMsgItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MultiMsgItem, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_image() -> Image {
        Image {
            media_id: Some("KegpipQG9t-klMo25My4e4BCZFcmKvgMcpMFAkC-VFE".into()),
            url: Some("http://mmbiz.qpic.cn/x/0?wx_fmt=jpeg".into()),
        }
    }

    fn sample_page() -> MiniProgramPage {
        MiniProgramPage {
            title: "OpenAI Dialogue Plugin".into(),
            appid: "wx8c631f7e9f2465e1".into(),
            pagepath: "pages/index/index".into(),
            thumb_media_id: Some("KegpipQG9t".into()),
            thumb_url: None,
        }
    }

    #[test]
    fn text_is_a_json_string_and_its_own_wire_form() {
        let msg = Msg::text("您好,请问需要什么帮助");
        assert_eq!(msg.to_wire(), "您好,请问需要什么帮助");
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            "\"您好,请问需要什么帮助\""
        );
        assert_eq!(Msg::from("x"), Msg::Text("x".into()));
        assert_eq!(Msg::from(String::from("x")), Msg::Text("x".into()));
    }

    #[test]
    fn inline_links_stay_text() {
        for text in [
            r#"…<a href="weixin://bizmsgmenu?msgmenucontent=今天北京多少度&msgmenuid=今天北京多少度">今天北京多少度</a>"#,
            r#"请前往<a href="https://chatbot.weixin.qq.com/">openai</a>配置"#,
            r#"<a data-miniprogram-appid="wx123" data-miniprogram-path="pages/x?y=1">标题</a>"#,
        ] {
            assert_eq!(Msg::from_wire(text), Msg::Text(text.into()));
        }
    }

    #[test]
    fn json_that_is_not_a_known_rich_shape_stays_text() {
        for text in [
            r#"{"text":"hi"}"#,
            r#"{"image":{"media_id":"m","extra":1}}"#,
            r#"{"image":{},"news":{"articles":[]}}"#,
            r#""quoted""#,
            "[1,2]",
            "{",
            "{}",
        ] {
            assert_eq!(Msg::from_wire(text), Msg::Text(text.into()), "{text}");
        }
    }

    #[test]
    fn news_matches_the_documented_shape() {
        let wire = r#"{"news":{"articles":[{"title":"T","description":"D","url":"https://news.qq.com/","picurl":"http://p/0","type":"h5"}]}}"#;
        let msg = Msg::from_wire(wire);
        assert_eq!(
            msg,
            Msg::News(News {
                articles: vec![Article {
                    title: "T".into(),
                    description: "D".into(),
                    url: "https://news.qq.com/".into(),
                    picurl: "http://p/0".into(),
                    article_type: Some(ArticleType::H5),
                }]
            })
        );
        assert_eq!(msg.to_wire(), wire);
    }

    #[test]
    fn image_and_mini_program_page() {
        let image = Msg::Image(sample_image());
        assert_eq!(
            image.to_wire(),
            r#"{"image":{"media_id":"KegpipQG9t-klMo25My4e4BCZFcmKvgMcpMFAkC-VFE","url":"http://mmbiz.qpic.cn/x/0?wx_fmt=jpeg"}}"#
        );
        let page = Msg::MiniProgramPage(sample_page());
        assert_eq!(
            page.to_wire(),
            r#"{"miniprogrampage":{"title":"OpenAI Dialogue Plugin","appid":"wx8c631f7e9f2465e1","pagepath":"pages/index/index","thumb_media_id":"KegpipQG9t"}}"#
        );
        assert_eq!(Msg::from_wire(&page.to_wire()), page);
    }

    #[test]
    fn multimsg_mixes_text_and_objects() {
        let wire = r#"{"multimsg":["Hello,",{"image":{"media_id":"M"}},{"miniprogrampage":{"title":"T","appid":"wx1","pagepath":"p"}}]}"#;
        let msg = Msg::from_wire(wire);
        assert_eq!(
            msg,
            Msg::MultiMsg(vec![
                MultiMsgItem::Text("Hello,".into()),
                MultiMsgItem::Image(Image {
                    media_id: Some("M".into()),
                    url: None
                }),
                MultiMsgItem::MiniProgramPage(MiniProgramPage {
                    title: "T".into(),
                    appid: "wx1".into(),
                    pagepath: "p".into(),
                    thumb_media_id: None,
                    thumb_url: None,
                }),
            ])
        );
        assert_eq!(msg.to_wire(), wire);
    }

    #[test]
    fn rich_parsing_errors_name_the_problem() {
        let err = serde_json::from_str::<Msg>(r#"{"image":{"media":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `media`"), "{err}");
        let err = serde_json::from_str::<Msg>(r#"{"video":{}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `video`"), "{err}");
        let err = serde_json::from_str::<Msg>(r#"{"multimsg":[{"multimsg":[]}]}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `multimsg`"),
            "{err}"
        );
        let err =
            serde_json::from_str::<Msg>(r#"{"news":{"articles":[{"title":"t"}]}}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing field `description`"),
            "{err}"
        );
        let err =
            serde_json::from_str::<Msg>(r#"{"image":{},"news":{"articles":[]}}"#).unwrap_err();
        assert!(err.to_string().contains("exactly one key"), "{err}");
        let err = serde_json::from_str::<Msg>("{}").unwrap_err();
        assert!(err.to_string().contains("invalid length 0"), "{err}");
        let err = serde_json::from_str::<Msg>("3").unwrap_err();
        assert!(
            err.to_string().contains("a text string or an object"),
            "{err}"
        );
        let err = serde_json::from_str::<Msg>(
            r#"{"news":{"articles":[{"title":"","description":"","url":"","picurl":"","type":"web"}]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant `web`"), "{err}");
    }

    #[test]
    fn emptiness() {
        assert!(Msg::text("").is_empty());
        assert!(!Msg::text(" ").is_empty());
        assert!(!Msg::MultiMsg(vec![]).is_empty());
        assert_eq!(Msg::MultiMsg(vec![]).to_wire(), r#"{"multimsg":[]}"#);
    }

    #[test]
    fn multimsg_item_converts_to_msg() {
        assert_eq!(
            Msg::from(MultiMsgItem::Image(sample_image())),
            Msg::Image(sample_image())
        );
        assert_eq!(Msg::from(MultiMsgItem::Text("t".into())), Msg::text("t"));
    }

    pub(crate) fn any_json_text() -> impl Strategy<Value = String> {
        // Any Unicode scalar: JSON escapes what it must.
        proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
    }

    fn any_article() -> impl Strategy<Value = Article> {
        (
            any_json_text(),
            any_json_text(),
            any_json_text(),
            any_json_text(),
            proptest::option::of(prop_oneof![Just(ArticleType::H5), Just(ArticleType::Mp)]),
        )
            .prop_map(|(title, description, url, picurl, article_type)| Article {
                title,
                description,
                url,
                picurl,
                article_type,
            })
    }

    fn any_image() -> impl Strategy<Value = Image> {
        (
            proptest::option::of(any_json_text()),
            proptest::option::of(any_json_text()),
        )
            .prop_map(|(media_id, url)| Image { media_id, url })
    }

    fn any_page() -> impl Strategy<Value = MiniProgramPage> {
        (
            any_json_text(),
            any_json_text(),
            any_json_text(),
            proptest::option::of(any_json_text()),
            proptest::option::of(any_json_text()),
        )
            .prop_map(|(title, appid, pagepath, thumb_media_id, thumb_url)| {
                MiniProgramPage {
                    title,
                    appid,
                    pagepath,
                    thumb_media_id,
                    thumb_url,
                }
            })
    }

    fn any_news() -> impl Strategy<Value = News> {
        proptest::collection::vec(any_article(), 0..3).prop_map(|articles| News { articles })
    }

    fn any_item() -> impl Strategy<Value = MultiMsgItem> {
        prop_oneof![
            any_json_text().prop_map(MultiMsgItem::Text),
            any_news().prop_map(MultiMsgItem::News),
            any_image().prop_map(MultiMsgItem::Image),
            any_page().prop_map(MultiMsgItem::MiniProgramPage),
        ]
    }

    /// Rich content only: text is not distinguishable from rich JSON on the wire.
    pub(crate) fn any_rich_msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            any_news().prop_map(Msg::News),
            any_image().prop_map(Msg::Image),
            any_page().prop_map(Msg::MiniProgramPage),
            proptest::collection::vec(any_item(), 0..4).prop_map(Msg::MultiMsg),
        ]
    }

    proptest! {
        #[test]
        fn rich_json_round_trips(msg in any_rich_msg()) {
            let wire = msg.to_wire();
            prop_assert_eq!(Msg::from_wire(&wire), msg.clone());
            let pretty = serde_json::to_string_pretty(&msg).unwrap();
            prop_assert_eq!(serde_json::from_str::<Msg>(&pretty).unwrap(), msg);
        }

        #[test]
        fn text_not_starting_with_a_brace_is_text(text in any_json_text()) {
            prop_assume!(!text.trim_start().starts_with('{'));
            prop_assert_eq!(Msg::from_wire(&text), Msg::Text(text.clone()));
            let json = serde_json::to_string(&Msg::Text(text.clone())).unwrap();
            prop_assert_eq!(serde_json::from_str::<Msg>(&json).unwrap(), Msg::Text(text));
        }

        #[test]
        fn from_wire_never_panics(text in "\\PC*") {
            let _ = Msg::from_wire(&text);
        }
    }
}
