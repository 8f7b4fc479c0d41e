//! The `sendmsg` plaintext: a message from an agent to the user (protocols.md §4.4).

use crate::error::{Error, Stage};
use crate::limits;
use crate::model::{CHANNEL_EXPECTED, Channel, Event};
use crate::msg::Msg;
use crate::xml::{self, XmlWriter};

/// A validated `sendmsg` plaintext (发送客服消息), the XML that is encrypted into
/// `{"encrypt":"…"}` and posted to `/openapi/sendmsg/{TOKEN}`.
///
/// A value always satisfies the rules the platform enforces: `openid` and `msg` are not empty,
/// `appid` is present on channels 0, 5 and 6, and the channel is open. Build one with
/// [`SendMsg::builder`], or read one with [`SendMsg::from_xml`].
///
/// Optional text fields are either absent or non-empty: an empty value is the same as no value,
/// and is not written.
///
/// ```
/// use kefu_payload::{Channel, Event, SendMsg};
///
/// let send = SendMsg::builder("oUSER", Channel::OfficialAccount, "您好,请问需要什么帮助")
///     .appid("wx0000000000000000")
///     .event(Event::WaiterEnter)
///     .kefuname("客服小红")
///     .build()?;
/// let xml = send.to_xml()?;
/// assert_eq!(
///     xml,
///     "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid>\
///      <msg>您好,请问需要什么帮助</msg><channel>0</channel><event>waiterEnter</event>\
///      <kefuname>客服小红</kefuname></xml>"
/// );
/// assert_eq!(SendMsg::from_xml(&xml)?, send);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMsg {
    appid: Option<String>,
    openid: String,
    msg: Msg,
    channel: Channel,
    event: Option<Event>,
    kefuname: Option<String>,
    kefuavatar: Option<String>,
    ans_node_name: Option<String>,
}

/// Builds a [`SendMsg`]; [`build`](SendMsgBuilder::build) applies the platform's rules.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct SendMsgBuilder {
    message: SendMsg,
}

/// Turns an empty optional text into `None`: the platform treats both alike.
fn non_empty(value: String) -> Option<String> {
    if value.is_empty() { None } else { Some(value) }
}

impl SendMsg {
    /// Starts a message to `openid` (the callback's `userid`) on `channel` (echo the callback's
    /// channel). `msg` accepts a `&str`, a `String` or any [`Msg`].
    pub fn builder(
        openid: impl Into<String>,
        channel: Channel,
        msg: impl Into<Msg>,
    ) -> SendMsgBuilder {
        SendMsgBuilder {
            message: SendMsg {
                appid: None,
                openid: openid.into(),
                msg: msg.into(),
                channel,
                event: None,
                kefuname: None,
                kefuavatar: None,
                ans_node_name: None,
            },
        }
    }

    /// The Official Account or Mini Program AppID (channels 0, 5, 6), or the TOKEN (channel 7).
    pub fn appid(&self) -> Option<&str> {
        self.appid.as_deref()
    }

    /// The user's openid.
    pub fn openid(&self) -> &str {
        &self.openid
    }

    /// The content.
    pub fn msg(&self) -> &Msg {
        &self.msg
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The agent event, if any.
    pub fn event(&self) -> Option<Event> {
        self.event
    }

    /// The agent nickname shown to the user.
    pub fn kefuname(&self) -> Option<&str> {
        self.kefuname.as_deref()
    }

    /// The agent avatar URL.
    pub fn kefuavatar(&self) -> Option<&str> {
        self.kefuavatar.as_deref()
    }

    /// The category or skill name, for the platform's statistics.
    pub fn ans_node_name(&self) -> Option<&str> {
        self.ans_node_name.as_deref()
    }

    /// Writes the plaintext: `<xml>` with `appid`, `openid`, `msg`, `channel`, `event`,
    /// `kefuname`, `kefuavatar`, `ans_node_name` in that order, entity-escaped, without CDATA,
    /// absent fields omitted.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when a field holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut writer = XmlWriter::new();
        writer.optional_text("appid", self.appid.as_deref())?;
        writer.text("openid", &self.openid)?;
        writer.text("msg", &self.msg.to_wire())?;
        writer.number("channel", self.channel.code());
        writer.optional_text("event", self.event.map(Event::as_str))?;
        writer.optional_text("kefuname", self.kefuname.as_deref())?;
        writer.optional_text("kefuavatar", self.kefuavatar.as_deref())?;
        writer.optional_text("ans_node_name", self.ans_node_name.as_deref())?;
        Ok(writer.finish())
    }

    /// Reads a plaintext, as the platform would: CDATA or escaped text (or a mix), any element
    /// order, unknown elements ignored, text never trimmed, numbers allowing whitespace around
    /// them, and then the same rules as [`SendMsgBuilder::build`].
    ///
    /// Parse failures are −40002 and [`Error::is_parse`]. A well-formed plaintext that breaks a
    /// platform rule gives the validation error with [`Stage::Parse`] and its
    /// [`platform_code`](Error::platform_code); a missing `openid` or `msg` counts as empty
    /// (1008).
    ///
    /// ```
    /// use kefu_payload::{Channel, SendMsg};
    /// // protocols.md §10.2 (V2): the CDATA form.
    /// let send = SendMsg::from_xml(
    ///     "<xml><appid><![CDATA[wx0000000000000000]]></appid><openid><![CDATA[oUSER]]></openid>\
    ///      <msg><![CDATA[hello]]></msg><channel>0</channel></xml>",
    /// )?;
    /// assert_eq!(send.openid(), "oUSER");
    /// assert_eq!(send.channel(), Channel::OfficialAccount);
    ///
    /// let err = SendMsg::from_xml("<xml><openid>oUSER</openid><channel>7</channel></xml>")
    ///     .unwrap_err();
    /// assert_eq!(err.platform_code(), Some(1008));
    /// # Ok::<(), kefu_payload::Error>(())
    /// ```
    pub fn from_xml(input: &str) -> Result<SendMsg, Error> {
        let [
            appid,
            openid,
            msg,
            channel,
            event,
            kefuname,
            kefuavatar,
            ans_node_name,
        ] = xml::read_leaves(
            input,
            [
                "appid",
                "openid",
                "msg",
                "channel",
                "event",
                "kefuname",
                "kefuavatar",
                "ans_node_name",
            ],
        )?;
        let channel_text = channel.ok_or(Error::MissingElement { element: "channel" })?;
        let channel_code = xml::parse_number::<u8>("channel", &channel_text, CHANNEL_EXPECTED)?
            .ok_or_else(|| Error::InvalidValue {
                field: "channel",
                found: channel_text.clone(),
                expected: CHANNEL_EXPECTED,
            })?;
        let event = match event.and_then(non_empty) {
            Some(text) => Some(text.parse::<Event>()?),
            None => None,
        };
        let message = SendMsg {
            appid: appid.and_then(non_empty),
            openid: openid.unwrap_or_default(),
            msg: Msg::from_wire(&msg.unwrap_or_default()),
            channel: Channel::try_from(channel_code)?,
            event,
            kefuname: kefuname.and_then(non_empty),
            kefuavatar: kefuavatar.and_then(non_empty),
            ans_node_name: ans_node_name.and_then(non_empty),
        };
        message.validate(Stage::Parse)?;
        Ok(message)
    }

    fn validate(&self, stage: Stage) -> Result<(), Error> {
        if self.openid.is_empty() {
            return Err(Error::EmptyField {
                field: "openid",
                stage,
            });
        }
        if self.msg.is_empty() {
            return Err(Error::EmptyField {
                field: "msg",
                stage,
            });
        }
        if self.channel.requires_appid() && self.appid.is_none() {
            return Err(Error::AppidRequired {
                channel: self.channel,
                stage,
            });
        }
        if !self.channel.is_open() {
            return Err(Error::ChannelNotOpen {
                channel: self.channel,
                stage,
            });
        }
        if stage == Stage::Build {
            for (field, value, max) in [
                ("openid", Some(self.openid.as_str()), limits::OPENID),
                ("appid", self.appid.as_deref(), limits::APPID),
                ("kefuname", self.kefuname.as_deref(), limits::KEFUNAME),
                ("kefuavatar", self.kefuavatar.as_deref(), limits::KEFUAVATAR),
                (
                    "ans_node_name",
                    self.ans_node_name.as_deref(),
                    limits::ANS_NODE_NAME,
                ),
            ] {
                limits::check(field, value.unwrap_or_default(), max)?;
            }
        }
        Ok(())
    }
}

impl SendMsgBuilder {
    /// The Official Account or Mini Program AppID (`wx…`), required on channels 0, 5 and 6. On
    /// channel 7 send the TOKEN: an empty appid there has been answered with 1011. An empty
    /// string means no appid.
    pub fn appid(mut self, appid: impl Into<String>) -> Self {
        self.message.appid = non_empty(appid.into());
        self
    }

    /// The agent event. The platform still requires a non-empty `msg` with an event.
    pub fn event(mut self, event: Event) -> Self {
        self.message.event = Some(event);
        self
    }

    /// The agent nickname shown to the user. An empty string means none.
    pub fn kefuname(mut self, kefuname: impl Into<String>) -> Self {
        self.message.kefuname = non_empty(kefuname.into());
        self
    }

    /// The agent avatar URL (reported to be ignored on the Official Account channel). An empty
    /// string means none.
    pub fn kefuavatar(mut self, kefuavatar: impl Into<String>) -> Self {
        self.message.kefuavatar = non_empty(kefuavatar.into());
        self
    }

    /// The category or skill name (分类/技能名称), for statistics. An empty string means none.
    pub fn ans_node_name(mut self, ans_node_name: impl Into<String>) -> Self {
        self.message.ans_node_name = non_empty(ans_node_name.into());
        self
    }

    /// Checks the platform's rules, in this order: `openid` not empty (1008), `msg` not empty
    /// (1008), `appid` present on channels 0, 5, 6 (1008), channel open (2928312). Failures are
    /// validation errors with [`Stage::Build`]. Then no identifier or name may be longer than
    /// its bound in [`limits`] ([`Error::TooLong`]).
    pub fn build(self) -> Result<SendMsg, Error> {
        self.message.validate(Stage::Build)?;
        Ok(self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Image;
    use crate::msg::tests::any_rich_msg;
    use crate::xml::tests::xml_text;
    use proptest::prelude::*;

    const SPEC_EXAMPLE: &str = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>您好,请问需要什么帮助</msg><channel>0</channel><event>waiterEnter</event><kefuname>客服小红</kefuname><kefuavatar>https://example.com/a.png</kefuavatar></xml>";

    fn spec_example() -> SendMsg {
        SendMsg::builder("oUSER", Channel::OfficialAccount, "您好,请问需要什么帮助")
            .appid("wx0000000000000000")
            .event(Event::WaiterEnter)
            .kefuname("客服小红")
            .kefuavatar("https://example.com/a.png")
            .build()
            .unwrap()
    }

    #[test]
    fn writes_the_spec_example_exactly() {
        assert_eq!(spec_example().to_xml().unwrap(), SPEC_EXAMPLE);
        assert_eq!(SendMsg::from_xml(SPEC_EXAMPLE).unwrap(), spec_example());
    }

    #[test]
    fn reads_the_v2_cdata_plaintext() {
        let v2 = "<xml><appid><![CDATA[wx0000000000000000]]></appid><openid><![CDATA[oUSER]]></openid><msg><![CDATA[hello]]></msg><channel>0</channel></xml>";
        assert_eq!(v2.len(), 138);
        let send = SendMsg::from_xml(v2).unwrap();
        assert_eq!(
            send,
            SendMsg::builder("oUSER", Channel::OfficialAccount, "hello")
                .appid("wx0000000000000000")
                .build()
                .unwrap()
        );
        assert_eq!(
            send.to_xml().unwrap(),
            "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>hello</msg><channel>0</channel></xml>"
        );
    }

    #[test]
    fn reads_the_seed_layout_with_indentation() {
        let seed = "<xml>\n    <appid><![CDATA[wxxxxx]]></appid>\n    <openid><![CDATA[xxxxx]]></openid>\n    <msg><![CDATA[Hello. How can I help you?]]></msg>\n    <channel>0</channel>\n    <kefuname><![CDATA[Customer Service Nickname]]></kefuname>\n    <kefuavatar><![CDATA[Customer Service Profile Picture URL Address]]></kefuavatar>\n    <ans_node_name><![CDATA[Category or Skill Name]]></ans_node_name>\n</xml>";
        let send = SendMsg::from_xml(seed).unwrap();
        assert_eq!(send.appid(), Some("wxxxxx"));
        assert_eq!(send.msg(), &Msg::text("Hello. How can I help you?"));
        assert_eq!(send.kefuname(), Some("Customer Service Nickname"));
        assert_eq!(
            send.kefuavatar(),
            Some("Customer Service Profile Picture URL Address")
        );
        assert_eq!(send.ans_node_name(), Some("Category or Skill Name"));
        assert_eq!(send.event(), None);
    }

    #[test]
    fn cdata_split_and_untrimmed_text() {
        let input = "<xml><openid> o </openid><msg><![CDATA[a]]]]><![CDATA[>b]]> &amp; c </msg><channel> 7 </channel></xml>";
        let send = SendMsg::from_xml(input).unwrap();
        assert_eq!(send.openid(), " o ");
        assert_eq!(send.msg(), &Msg::text("a]]>b & c "));
        assert_eq!(send.channel(), Channel::WebH5);
        assert_eq!(
            send.to_xml().unwrap(),
            "<xml><openid> o </openid><msg>a]]&gt;b &amp; c </msg><channel>7</channel></xml>"
        );
    }

    #[test]
    fn escapes_markup_and_carriage_returns() {
        let send = SendMsg::builder(
            "oUSER",
            Channel::WebH5,
            "请前往<a href=\"https://chatbot.weixin.qq.com/\">openai</a>配置\r\n]]>",
        )
        .build()
        .unwrap();
        let xml = send.to_xml().unwrap();
        assert_eq!(
            xml,
            "<xml><openid>oUSER</openid><msg>请前往&lt;a href=\"https://chatbot.weixin.qq.com/\"&gt;openai&lt;/a&gt;配置&#13;\n]]&gt;</msg><channel>7</channel></xml>"
        );
        assert_eq!(SendMsg::from_xml(&xml).unwrap(), send);
    }

    #[test]
    fn rich_msg_is_json_text() {
        let image = Msg::Image(Image {
            media_id: Some("M".into()),
            url: None,
        });
        let send = SendMsg::builder("oUSER", Channel::MiniProgram, image.clone())
            .build()
            .unwrap();
        let xml = send.to_xml().unwrap();
        assert_eq!(
            xml,
            "<xml><openid>oUSER</openid><msg>{\"image\":{\"media_id\":\"M\"}}</msg><channel>1</channel></xml>"
        );
        assert_eq!(SendMsg::from_xml(&xml).unwrap().msg(), &image);
    }

    /// Regression: a 60,000-character `openid` was accepted, stored and sent.
    #[test]
    fn identifiers_longer_than_the_platform_holds_are_refused() {
        let long = |n: usize| "o".repeat(n);
        let at_bound = SendMsg::builder(long(limits::OPENID), Channel::WebH5, "hi")
            .appid(long(limits::APPID))
            .kefuname("客".repeat(limits::KEFUNAME / 3))
            .kefuavatar(long(limits::KEFUAVATAR))
            .ans_node_name(long(limits::ANS_NODE_NAME))
            .build();
        assert!(at_bound.is_ok(), "{at_bound:?}");
        let base = || SendMsg::builder("oUSER", Channel::WebH5, "hi").appid("TOKEN");
        let cases = [
            (
                SendMsg::builder(long(60_000), Channel::WebH5, "hi").appid("T"),
                "openid",
                60_000,
                limits::OPENID,
            ),
            (base().appid(long(129)), "appid", 129, limits::APPID),
            (
                base().kefuname("客".repeat(86)),
                "kefuname",
                258,
                limits::KEFUNAME,
            ),
            (
                base().kefuavatar(long(2049)),
                "kefuavatar",
                2049,
                limits::KEFUAVATAR,
            ),
            (
                base().ans_node_name(long(257)),
                "ans_node_name",
                257,
                limits::ANS_NODE_NAME,
            ),
        ];
        for (builder, field, len, max) in cases {
            let error = builder.build().unwrap_err();
            assert_eq!(error, Error::TooLong { field, len, max });
            assert_eq!(error.field(), Some(field));
            assert_eq!(error.code(), -40011);
        }
        // Parsing is not bounded: what the platform sent is read as it is.
        let xml = format!(
            "<xml><appid>a</appid><openid>{}</openid><msg>hi</msg><channel>0</channel></xml>",
            long(1000)
        );
        assert!(SendMsg::from_xml(&xml).is_ok());
    }

    #[test]
    fn builder_validation_matches_the_platform() {
        let empty_openid = SendMsg::builder("", Channel::WebH5, "hi")
            .build()
            .unwrap_err();
        assert_eq!(
            empty_openid,
            Error::EmptyField {
                field: "openid",
                stage: Stage::Build
            }
        );
        assert_eq!(empty_openid.platform_code(), Some(1008));
        assert_eq!(empty_openid.code(), -40011);

        let empty_msg = SendMsg::builder("o", Channel::WebH5, "")
            .event(Event::WaiterEnter)
            .build()
            .unwrap_err();
        assert_eq!(
            empty_msg,
            Error::EmptyField {
                field: "msg",
                stage: Stage::Build
            }
        );

        for channel in [
            Channel::OfficialAccount,
            Channel::OfficialAccountMenuH5,
            Channel::MiniProgramPlugin,
        ] {
            let err = SendMsg::builder("o", channel, "hi")
                .appid("")
                .build()
                .unwrap_err();
            assert_eq!(
                err,
                Error::AppidRequired {
                    channel,
                    stage: Stage::Build
                }
            );
            assert_eq!(err.platform_code(), Some(1008));
        }

        for channel in [
            Channel::OpenApi,
            Channel::WeComGroupRobot,
            Channel::WeComInternalRobot,
        ] {
            let err = SendMsg::builder("o", channel, "hi")
                .appid("wx1")
                .build()
                .unwrap_err();
            assert_eq!(
                err,
                Error::ChannelNotOpen {
                    channel,
                    stage: Stage::Build
                }
            );
            assert_eq!(err.platform_code(), Some(2_928_312));
        }

        for channel in [
            Channel::MiniProgram,
            Channel::WebH5,
            Channel::WeChatCustomerService,
        ] {
            assert!(SendMsg::builder("o", channel, "hi").build().is_ok());
        }
    }

    #[test]
    fn empty_optional_fields_are_absent() {
        let send = SendMsg::builder("o", Channel::WebH5, "hi")
            .appid("")
            .kefuname("")
            .kefuavatar("")
            .ans_node_name("")
            .build()
            .unwrap();
        assert_eq!(send.appid(), None);
        assert_eq!(send.kefuname(), None);
        assert_eq!(
            send.to_xml().unwrap(),
            "<xml><openid>o</openid><msg>hi</msg><channel>7</channel></xml>"
        );
        let parsed = SendMsg::from_xml(
            "<xml><appid/><openid>o</openid><msg>hi</msg><channel>7</channel><event></event><kefuname></kefuname></xml>",
        )
        .unwrap();
        assert_eq!(parsed, send);
    }

    #[test]
    fn parsed_validation_keeps_the_platform_code() {
        let cases = [
            (
                "<xml><msg>hi</msg><channel>7</channel></xml>",
                Error::EmptyField {
                    field: "openid",
                    stage: Stage::Parse,
                },
            ),
            (
                "<xml><openid>o</openid><msg></msg><channel>7</channel></xml>",
                Error::EmptyField {
                    field: "msg",
                    stage: Stage::Parse,
                },
            ),
            (
                "<xml><openid>o</openid><msg>hi</msg><channel>5</channel></xml>",
                Error::AppidRequired {
                    channel: Channel::OfficialAccountMenuH5,
                    stage: Stage::Parse,
                },
            ),
            (
                "<xml><appid>wx</appid><openid>o</openid><msg>hi</msg><channel>2</channel></xml>",
                Error::ChannelNotOpen {
                    channel: Channel::OpenApi,
                    stage: Stage::Parse,
                },
            ),
        ];
        for (input, expected) in cases {
            let err = SendMsg::from_xml(input).unwrap_err();
            assert_eq!(err, expected, "{input}");
            assert!(err.is_validation() && !err.is_parse());
            assert_eq!(err.code(), -40002);
        }
    }

    #[test]
    fn parse_errors_name_the_element() {
        assert_eq!(
            SendMsg::from_xml("<xml><openid>o</openid><msg>hi</msg></xml>").unwrap_err(),
            Error::MissingElement { element: "channel" }
        );
        for (channel, found) in [
            ("x", "x"),
            ("", ""),
            ("8", "8"),
            ("-1", "-1"),
            ("300", "300"),
        ] {
            let input =
                format!("<xml><openid>o</openid><msg>hi</msg><channel>{channel}</channel></xml>");
            let err = SendMsg::from_xml(&input).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidValue { field: "channel", found: f, .. } if f == found),
                "{channel}: {err:?}"
            );
            assert!(err.is_parse());
        }
        let err = SendMsg::from_xml(
            "<xml><openid>o</openid><msg>hi</msg><channel>7</channel><event>waiterenter</event></xml>",
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidValue { field: "event", .. }));
        assert_eq!(
            SendMsg::from_xml("<msg>hi</msg>").unwrap_err(),
            Error::WrongRoot {
                found: "msg".into()
            }
        );
        let err = SendMsg::from_xml(
            "<!DOCTYPE xml><xml><openid>o</openid><msg>hi</msg><channel>7</channel></xml>",
        )
        .unwrap_err();
        assert!(err.is_doctype());
    }

    #[test]
    fn unknown_elements_are_ignored() {
        let send = SendMsg::from_xml(
            "<xml><future>1</future><openid>o</openid><msg>hi</msg><channel>7</channel><expires><n>3</n></expires></xml>",
        )
        .unwrap();
        assert_eq!(send.openid(), "o");
    }

    #[test]
    fn unrepresentable_characters_name_field_and_position() {
        let send = SendMsg::builder("o", Channel::WebH5, "ok")
            .kefuname("小\u{1B}红")
            .build()
            .unwrap();
        let err = send.to_xml().unwrap_err();
        assert_eq!(
            err,
            Error::UnrepresentableChar {
                field: "kefuname",
                position: 1,
                character: '\u{1B}'
            }
        );
        assert!(err.is_build());
        assert_eq!(err.code(), -40011);
        let send = SendMsg::builder("o", Channel::WebH5, "a\u{FFFE}")
            .build()
            .unwrap();
        assert_eq!(
            send.to_xml().unwrap_err(),
            Error::UnrepresentableChar {
                field: "msg",
                position: 1,
                character: '\u{FFFE}'
            }
        );
    }

    fn any_channel() -> impl Strategy<Value = Channel> {
        proptest::sample::select(
            Channel::ALL
                .into_iter()
                .filter(|c| c.is_open())
                .collect::<Vec<_>>(),
        )
    }

    fn non_empty_text() -> impl Strategy<Value = String> {
        xml_text().prop_filter("non-empty", |text| !text.is_empty())
    }

    fn any_send_msg() -> impl Strategy<Value = SendMsg> {
        // Text that happens to be rich JSON would come back as rich: keep text free of '{'.
        let text = non_empty_text()
            .prop_filter("not JSON", |text| !text.trim_start().starts_with('{'))
            .prop_map(Msg::Text);
        (
            non_empty_text(),
            prop_oneof![3 => text, 1 => any_rich_msg()],
            any_channel(),
            proptest::option::of(non_empty_text()),
            proptest::option::of(proptest::sample::select(Event::ALL.to_vec())),
            proptest::option::of(non_empty_text()),
            proptest::option::of(non_empty_text()),
            proptest::option::of(non_empty_text()),
        )
            .prop_filter_map(
                "valid message",
                |(openid, msg, channel, appid, event, kefuname, kefuavatar, ans_node_name)| {
                    let mut builder = SendMsg::builder(openid, channel, msg);
                    if let Some(appid) = appid {
                        builder = builder.appid(appid);
                    }
                    if let Some(event) = event {
                        builder = builder.event(event);
                    }
                    if let Some(kefuname) = kefuname {
                        builder = builder.kefuname(kefuname);
                    }
                    if let Some(kefuavatar) = kefuavatar {
                        builder = builder.kefuavatar(kefuavatar);
                    }
                    if let Some(ans_node_name) = ans_node_name {
                        builder = builder.ans_node_name(ans_node_name);
                    }
                    builder.build().ok()
                },
            )
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(send in any_send_msg()) {
            let xml = send.to_xml().unwrap();
            prop_assert_eq!(SendMsg::from_xml(&xml).unwrap(), send);
        }

        #[test]
        fn from_xml_never_panics(input in "\\PC*") {
            let _ = SendMsg::from_xml(&input);
        }
    }
}
