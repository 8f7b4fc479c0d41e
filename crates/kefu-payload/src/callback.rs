//! The decrypted handoff callback (人工客服回调): platform → connector (protocols.md §4.7).

use core::fmt;

use crate::error::Error;
use crate::model::{Channel, Event, KefuState};
use crate::msg::Msg;
use crate::xml::{self, XmlWriter};

/// The `event` of a handoff callback.
///
/// Known names get their own variant; anything else is kept, as it came, in
/// [`CallbackEvent::Other`]. An empty `<event>` is no event at all (`None` in
/// [`HandoffCallback::event`]), so `Other` never holds an empty string or a known name when it
/// comes from [`CallbackEvent::from_wire`].
///
/// ```
/// use kefu_payload::{CallbackEvent, Event};
/// assert_eq!(CallbackEvent::from_wire("userEnter"), Some(CallbackEvent::UserEnter));
/// assert_eq!(CallbackEvent::from_wire("waiterQuit"), Some(CallbackEvent::from(Event::WaiterQuit)));
/// assert_eq!(CallbackEvent::from_wire("x"), Some(CallbackEvent::Other("x".into())));
/// assert_eq!(CallbackEvent::from_wire(""), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallbackEvent {
    /// `userEnter`: the user opened the conversation.
    UserEnter,
    /// `userQuit`: the user left.
    UserQuit,
    /// `customerStuffEnter`: an agent joined inside the platform; see
    /// [`HandoffCallback::customer_info`].
    CustomerStuffEnter,
    /// `customerStuffQuit`: an agent left inside the platform.
    CustomerStuffQuit,
    /// `waiterEnter`, echoed from a `sendmsg`.
    WaiterEnter,
    /// `waiterSwitch`, echoed from a `sendmsg`.
    WaiterSwitch,
    /// `waiterQuit`, echoed from a `sendmsg`.
    WaiterQuit,
    /// `waiterQualityEvaluate`, echoed from a `sendmsg`.
    WaiterQualityEvaluate,
    /// Any other non-empty value, exactly as received.
    Other(String),
}

impl CallbackEvent {
    const KNOWN: [CallbackEvent; 8] = [
        CallbackEvent::UserEnter,
        CallbackEvent::UserQuit,
        CallbackEvent::CustomerStuffEnter,
        CallbackEvent::CustomerStuffQuit,
        CallbackEvent::WaiterEnter,
        CallbackEvent::WaiterSwitch,
        CallbackEvent::WaiterQuit,
        CallbackEvent::WaiterQualityEvaluate,
    ];

    /// The event named by the text of `<event>` (case-sensitive, not trimmed); `None` when empty.
    pub fn from_wire(text: &str) -> Option<CallbackEvent> {
        if text.is_empty() {
            return None;
        }
        Some(
            CallbackEvent::KNOWN
                .into_iter()
                .find(|known| known.as_str() == text)
                .unwrap_or_else(|| CallbackEvent::Other(text.to_owned())),
        )
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            CallbackEvent::UserEnter => "userEnter",
            CallbackEvent::UserQuit => "userQuit",
            CallbackEvent::CustomerStuffEnter => "customerStuffEnter",
            CallbackEvent::CustomerStuffQuit => "customerStuffQuit",
            CallbackEvent::WaiterEnter => Event::WaiterEnter.as_str(),
            CallbackEvent::WaiterSwitch => Event::WaiterSwitch.as_str(),
            CallbackEvent::WaiterQuit => Event::WaiterQuit.as_str(),
            CallbackEvent::WaiterQualityEvaluate => Event::WaiterQualityEvaluate.as_str(),
            CallbackEvent::Other(text) => text,
        }
    }
}

impl From<Event> for CallbackEvent {
    fn from(event: Event) -> CallbackEvent {
        match event {
            Event::WaiterEnter => CallbackEvent::WaiterEnter,
            Event::WaiterSwitch => CallbackEvent::WaiterSwitch,
            Event::WaiterQuit => CallbackEvent::WaiterQuit,
            Event::WaiterQualityEvaluate => CallbackEvent::WaiterQualityEvaluate,
        }
    }
}

impl fmt::Display for CallbackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `customerInfo`: the agent of a `customerStuffEnter`/`customerStuffQuit` event.
///
/// The structure is copied from an implementation, not confirmed by a capture, so a missing child
/// reads as an empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerInfo {
    /// The agent's name.
    pub name: String,
    /// The agent's avatar URL.
    pub avatar: String,
    /// The agent's openid.
    pub openid: String,
}

/// The decrypted handoff callback: one user message, bot answer, agent message or event.
///
/// Reading is tolerant, as the spec requires: unknown elements are ignored at any depth, and a
/// numeric element with empty text is absent. A numeric element that is not a number, or a
/// `kfstate` or `assessment` out of its range, is an error naming the element.
///
/// The fields are public; build one for tests or an emulator with struct update syntax:
///
/// ```
/// use kefu_payload::{HandoffCallback, KefuState};
///
/// let callback = HandoffCallback::parse(
///     "<xml><userid>oUSER</userid><appid>wx0000000000000000</appid>\
///      <content><msg>我要转人工</msg></content><event></event><from>0</from>\
///      <kfstate>3</kfstate><channel>0</channel><assessment>0</assessment>\
///      <createtime>1700000000</createtime></xml>",
/// )?;
/// assert_eq!(callback.content.as_deref(), Some("我要转人工"));
/// assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
/// assert!(callback.is_user_authored());
///
/// let built = HandoffCallback {
///     userid: "oUSER".into(),
///     appid: "wx0000000000000000".into(),
///     content: Some("我要转人工".into()),
///     from: Some(0),
///     kfstate: Some(KefuState::NeedPerson),
///     channel: Some(0),
///     assessment: Some(0),
///     createtime: Some(1_700_000_000),
///     ..HandoffCallback::default()
/// };
/// assert_eq!(built, callback);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoffCallback {
    /// `userid`: the user's id, usually the openid; use it as `openid` in `sendmsg` and
    /// `kefustate`.
    pub userid: String,
    /// `appid`: the application's AppID (whether the Official Account/Mini Program AppID or the
    /// bot APPID is unconfirmed).
    pub appid: String,
    /// `content/msg`: the text or rich JSON (see [`HandoffCallback::content_msg`]); `None` when
    /// absent, `Some("")` when present but empty.
    pub content: Option<String>,
    /// `content/msgtype`, which some clients read.
    pub msgtype: Option<String>,
    /// `event`; `None` when absent or empty.
    pub event: Option<CallbackEvent>,
    /// `customerInfo`, present with `customerStuff*` events.
    pub customer_info: Option<CustomerInfo>,
    /// `from`: 0 the user, 1 a bot answer, 2 an agent inside the platform (per the doc; one
    /// community answer disagrees, so only 0 is trusted, see
    /// [`is_user_authored`](HandoffCallback::is_user_authored)).
    pub from: Option<i64>,
    /// `kfstate`: the handoff state, 0..=3.
    pub kfstate: Option<KefuState>,
    /// `channel`, raw: undocumented numbers such as 8 are kept. Echo it in `sendmsg`; see
    /// [`HandoffCallback::known_channel`].
    pub channel: Option<u8>,
    /// `assessment`: 0 no rating, 1 very dissatisfied … 5 very satisfied.
    pub assessment: Option<u8>,
    /// `createtime`: Unix seconds.
    pub createtime: Option<i64>,
}

const LEAVES: [&str; 13] = [
    "userid",
    "appid",
    "content/msg",
    "content/msgtype",
    "event",
    "customerInfo/name",
    "customerInfo/avatar",
    "customerInfo/openid",
    "from",
    "kfstate",
    "channel",
    "assessment",
    "createtime",
];

impl HandoffCallback {
    /// Reads a decrypted callback plaintext.
    ///
    /// `userid` and `appid` are required elements (they may be empty); everything else is
    /// optional.
    pub fn parse(input: &str) -> Result<HandoffCallback, Error> {
        let [
            userid,
            appid,
            content,
            msgtype,
            event,
            customer_name,
            customer_avatar,
            customer_openid,
            from,
            kfstate,
            channel,
            assessment,
            createtime,
        ] = xml::read_leaves(input, LEAVES)?;
        let kfstate = match number::<u8>("kfstate", kfstate, "0, 1, 2 or 3")? {
            Some(code) => {
                Some(
                    KefuState::from_kfstate(code).ok_or_else(|| Error::InvalidValue {
                        field: "kfstate",
                        found: code.to_string(),
                        expected: "0, 1, 2 or 3",
                    })?,
                )
            }
            None => None,
        };
        let assessment = match number::<u8>("assessment", assessment, "0..=5")? {
            Some(rating) if rating > 5 => {
                return Err(Error::InvalidValue {
                    field: "assessment",
                    found: rating.to_string(),
                    expected: "0..=5",
                });
            }
            rating => rating,
        };
        let customer_info =
            if customer_name.is_some() || customer_avatar.is_some() || customer_openid.is_some() {
                Some(CustomerInfo {
                    name: customer_name.unwrap_or_default(),
                    avatar: customer_avatar.unwrap_or_default(),
                    openid: customer_openid.unwrap_or_default(),
                })
            } else {
                None
            };
        Ok(HandoffCallback {
            userid: userid.ok_or(Error::MissingElement { element: "userid" })?,
            appid: appid.ok_or(Error::MissingElement { element: "appid" })?,
            content,
            msgtype,
            event: event.as_deref().and_then(CallbackEvent::from_wire),
            customer_info,
            from: number("from", from, "an integer")?,
            kfstate,
            channel: number("channel", channel, "a channel number, 0..=255")?,
            assessment,
            createtime: number("createtime", createtime, "Unix seconds")?,
        })
    }

    /// Writes the callback as the platform does: `userid`, `appid`, `content` (`msg`, `msgtype`),
    /// `event` (always, empty when `None`, as in the documented example), `customerInfo`,
    /// `from`, `kfstate`, `channel`, `assessment`, `createtime`; absent optional elements
    /// omitted; text entity-escaped.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when a field holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut writer = XmlWriter::new();
        writer.text("userid", &self.userid)?;
        writer.text("appid", &self.appid)?;
        if self.content.is_some() || self.msgtype.is_some() {
            writer.open("content");
            writer.optional_text("msg", self.content.as_deref())?;
            writer.optional_text("msgtype", self.msgtype.as_deref())?;
            writer.close("content");
        }
        writer.text(
            "event",
            self.event.as_ref().map_or("", CallbackEvent::as_str),
        )?;
        if let Some(info) = &self.customer_info {
            writer.open("customerInfo");
            writer.text("name", &info.name)?;
            writer.text("avatar", &info.avatar)?;
            writer.text("openid", &info.openid)?;
            writer.close("customerInfo");
        }
        writer.optional_number("from", self.from);
        writer.optional_number("kfstate", self.kfstate.map(KefuState::kfstate));
        writer.optional_number("channel", self.channel);
        writer.optional_number("assessment", self.assessment);
        writer.optional_number("createtime", self.createtime);
        Ok(writer.finish())
    }

    /// The content as [`Msg`]: text, or rich content when it is rich JSON.
    pub fn content_msg(&self) -> Option<Msg> {
        self.content.as_deref().map(Msg::from_wire)
    }

    /// `true` only for `from` = 0, the one value every source agrees means the user wrote it.
    pub fn is_user_authored(&self) -> bool {
        self.from == Some(0)
    }

    /// The channel as a documented [`Channel`]; `None` when absent or undocumented (such as 8).
    pub fn known_channel(&self) -> Option<Channel> {
        self.channel.and_then(Channel::from_code)
    }
}

fn number<T: core::str::FromStr>(
    field: &'static str,
    text: Option<String>,
    expected: &'static str,
) -> Result<Option<T>, Error> {
    match text {
        Some(text) => xml::parse_number(field, &text, expected),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::tests::xml_text;
    use proptest::prelude::*;

    const SPEC_EXAMPLE: &str = "<xml><userid>oUSER</userid><appid>wx0000000000000000</appid><content><msg>我要转人工</msg></content><event></event><from>0</from><kfstate>3</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>";

    fn spec_example() -> HandoffCallback {
        HandoffCallback {
            userid: "oUSER".into(),
            appid: "wx0000000000000000".into(),
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
    fn reads_and_writes_the_spec_example() {
        assert_eq!(
            HandoffCallback::parse(SPEC_EXAMPLE).unwrap(),
            spec_example()
        );
        assert_eq!(spec_example().to_xml().unwrap(), SPEC_EXAMPLE);
    }

    #[test]
    fn reads_customer_info_and_msgtype() {
        let callback = HandoffCallback::parse(
            "<xml><userid><![CDATA[oUSER]]></userid><appid>wx1</appid>\n<content><msg></msg><msgtype>text</msgtype></content>\n<event>customerStuffEnter</event><customerInfo><name>小红</name><avatar>https://a/b.png</avatar><openid>oAGENT</openid></customerInfo><from>2</from></xml>",
        )
        .unwrap();
        assert_eq!(callback.content.as_deref(), Some(""));
        assert_eq!(callback.msgtype.as_deref(), Some("text"));
        assert_eq!(callback.event, Some(CallbackEvent::CustomerStuffEnter));
        assert_eq!(
            callback.customer_info,
            Some(CustomerInfo {
                name: "小红".into(),
                avatar: "https://a/b.png".into(),
                openid: "oAGENT".into(),
            })
        );
        assert!(!callback.is_user_authored());
        assert_eq!(
            HandoffCallback::parse(&callback.to_xml().unwrap()).unwrap(),
            callback
        );
    }

    #[test]
    fn partial_customer_info_reads_missing_children_as_empty() {
        let callback = HandoffCallback::parse(
            "<xml><userid>u</userid><appid>a</appid><customerInfo><name>n</name></customerInfo></xml>",
        )
        .unwrap();
        assert_eq!(
            callback.customer_info,
            Some(CustomerInfo {
                name: "n".into(),
                ..CustomerInfo::default()
            })
        );
    }

    #[test]
    fn tolerant_reading() {
        let callback = HandoffCallback::parse(
            "<xml><userid>u</userid><appid></appid><new><deeper><msg>x</msg></deeper></new><content><msg>hi</msg><extra/></content><from></from><kfstate> </kfstate><channel>8</channel><assessment/><createtime>\n1700000000\n</createtime><kefustate>on</kefustate></xml>",
        )
        .unwrap();
        assert_eq!(
            callback,
            HandoffCallback {
                userid: "u".into(),
                content: Some("hi".into()),
                channel: Some(8),
                createtime: Some(1_700_000_000),
                ..HandoffCallback::default()
            }
        );
        assert_eq!(callback.known_channel(), None);
        assert_eq!(callback.content_msg(), Some(Msg::text("hi")));
    }

    #[test]
    fn events() {
        for (text, event) in [
            ("userEnter", CallbackEvent::UserEnter),
            ("userQuit", CallbackEvent::UserQuit),
            ("customerStuffQuit", CallbackEvent::CustomerStuffQuit),
            ("waiterSwitch", CallbackEvent::WaiterSwitch),
            (
                "waiterQualityEvaluate",
                CallbackEvent::WaiterQualityEvaluate,
            ),
            ("waiterEnter", CallbackEvent::WaiterEnter),
            (" userEnter", CallbackEvent::Other(" userEnter".into())),
        ] {
            assert_eq!(CallbackEvent::from_wire(text), Some(event.clone()));
            assert_eq!(event.to_string(), text);
        }
        for waiter in Event::ALL {
            assert_eq!(CallbackEvent::from(waiter).as_str(), waiter.as_str());
        }
    }

    #[test]
    fn required_and_invalid_elements() {
        assert_eq!(
            HandoffCallback::parse("<xml><appid>a</appid></xml>").unwrap_err(),
            Error::MissingElement { element: "userid" }
        );
        assert_eq!(
            HandoffCallback::parse("<xml><userid>u</userid></xml>").unwrap_err(),
            Error::MissingElement { element: "appid" }
        );
        for (element, value) in [
            ("from", "user"),
            ("kfstate", "4"),
            ("kfstate", "asking"),
            ("channel", "256"),
            ("assessment", "6"),
            ("assessment", "-1"),
            ("createtime", "1.5"),
        ] {
            let input = format!(
                "<xml><userid>u</userid><appid>a</appid><{element}>{value}</{element}></xml>"
            );
            let err = HandoffCallback::parse(&input).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidValue { field, found, .. } if field == &element && found == value),
                "{input}: {err:?}"
            );
            assert!(err.is_parse());
            assert!(err.to_string().starts_with(element));
        }
    }

    #[test]
    fn rich_content() {
        let callback = HandoffCallback {
            content: Some(r#"{"image":{"url":"u"}}"#.into()),
            ..HandoffCallback::default()
        };
        assert!(matches!(callback.content_msg(), Some(Msg::Image(_))));
    }

    #[test]
    fn unrepresentable_characters() {
        let callback = HandoffCallback {
            customer_info: Some(CustomerInfo {
                avatar: "\u{7}".into(),
                ..CustomerInfo::default()
            }),
            ..HandoffCallback::default()
        };
        assert_eq!(
            callback.to_xml().unwrap_err(),
            Error::UnrepresentableChar {
                field: "avatar",
                position: 0,
                character: '\u{7}'
            }
        );
    }

    fn any_event() -> impl Strategy<Value = CallbackEvent> {
        prop_oneof![
            proptest::sample::select(CallbackEvent::KNOWN.to_vec()),
            xml_text().prop_filter_map("an unknown, non-empty name", |text| {
                CallbackEvent::from_wire(&text)
                    .filter(|event| matches!(event, CallbackEvent::Other(_)))
            }),
        ]
    }

    fn any_customer_info() -> impl Strategy<Value = CustomerInfo> {
        (xml_text(), xml_text(), xml_text()).prop_map(|(name, avatar, openid)| CustomerInfo {
            name,
            avatar,
            openid,
        })
    }

    prop_compose! {
        fn any_callback()(
            (userid, appid, content, msgtype) in (
                xml_text(),
                xml_text(),
                proptest::option::of(xml_text()),
                proptest::option::of(xml_text()),
            ),
            event in proptest::option::of(any_event()),
            customer_info in proptest::option::of(any_customer_info()),
            from in proptest::option::of(any::<i64>()),
            kfstate in proptest::option::of(proptest::sample::select(KefuState::ALL.to_vec())),
            channel in proptest::option::of(any::<u8>()),
            assessment in proptest::option::of(0u8..=5),
            createtime in proptest::option::of(any::<i64>()),
        ) -> HandoffCallback {
            HandoffCallback {
                userid, appid, content, msgtype, event, customer_info, from, kfstate, channel,
                assessment, createtime,
            }
        }
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(callback in any_callback()) {
            let xml = callback.to_xml().unwrap();
            prop_assert_eq!(HandoffCallback::parse(&xml).unwrap(), callback);
        }

        #[test]
        fn parse_never_panics(input in "\\PC*") {
            let _ = HandoffCallback::parse(&input);
        }
    }
}
