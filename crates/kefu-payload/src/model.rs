//! The small closed vocabularies of the Dialogue platform: channels, events and handoff states.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// What a channel field accepts, for error messages.
pub(crate) const CHANNEL_EXPECTED: &str = "a documented channel: 0-7 or 9 (8 is undocumented)";

/// The access channel (渠道) of a conversation, as numbered by the platform (protocols.md §4.4).
///
/// The numbering is sparse, so each variant maps to its number explicitly, never through its
/// position: 8 is undocumented and has no variant. Echo the channel of the callback in `sendmsg`.
///
/// Serialises as its number.
///
/// ```
/// use kefu_payload::Channel;
/// assert_eq!(Channel::WeChatCustomerService.code(), 9);
/// assert_eq!(Channel::try_from(9), Ok(Channel::WeChatCustomerService));
/// assert!(Channel::try_from(8).is_err());
/// assert!(Channel::OfficialAccount.requires_appid());
/// assert!(!Channel::OpenApi.is_open());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// 0: an Official Account bound by QR scan (扫码绑定的公众号).
    OfficialAccount,
    /// 1: a Mini Program bound by QR scan (扫码绑定的小程序).
    MiniProgram,
    /// 2: open-API access; not open yet.
    OpenApi,
    /// 3: WeCom group-chat robot; not open yet.
    WeComGroupRobot,
    /// 4: WeCom internal customer-service robot; not open yet.
    WeComInternalRobot,
    /// 5: Official Account menu H5 robot (公众号菜单H5机器人).
    OfficialAccountMenuH5,
    /// 6: Mini Program plugin (小程序插件).
    MiniProgramPlugin,
    /// 7: web H5 robot (网页H5机器人).
    WebH5,
    /// 9: bound WeChat Customer Service (绑定的微信客服).
    WeChatCustomerService,
}

impl Channel {
    /// Every documented channel, in numeric order.
    pub const ALL: [Channel; 9] = [
        Channel::OfficialAccount,
        Channel::MiniProgram,
        Channel::OpenApi,
        Channel::WeComGroupRobot,
        Channel::WeComInternalRobot,
        Channel::OfficialAccountMenuH5,
        Channel::MiniProgramPlugin,
        Channel::WebH5,
        Channel::WeChatCustomerService,
    ];

    /// The platform's number for this channel.
    pub const fn code(self) -> u8 {
        match self {
            Channel::OfficialAccount => 0,
            Channel::MiniProgram => 1,
            Channel::OpenApi => 2,
            Channel::WeComGroupRobot => 3,
            Channel::WeComInternalRobot => 4,
            Channel::OfficialAccountMenuH5 => 5,
            Channel::MiniProgramPlugin => 6,
            Channel::WebH5 => 7,
            Channel::WeChatCustomerService => 9,
        }
    }

    /// The channel with this number, or `None` for an undocumented number such as 8.
    pub fn from_code(code: u8) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.code() == code)
    }

    /// `true` for channels 0, 5 and 6, where `sendmsg` must carry the Official Account or Mini
    /// Program AppID (the platform answers 1008 otherwise).
    pub const fn requires_appid(self) -> bool {
        matches!(
            self,
            Channel::OfficialAccount | Channel::OfficialAccountMenuH5 | Channel::MiniProgramPlugin
        )
    }

    /// `false` for channels 2, 3 and 4, which the platform does not serve yet (it answers 2928312
    /// "unsupport, to do.").
    pub const fn is_open(self) -> bool {
        !matches!(
            self,
            Channel::OpenApi | Channel::WeComGroupRobot | Channel::WeComInternalRobot
        )
    }

    /// A short English description, for logs and error messages.
    pub const fn description(self) -> &'static str {
        match self {
            Channel::OfficialAccount => "Official Account bound by QR scan",
            Channel::MiniProgram => "Mini Program bound by QR scan",
            Channel::OpenApi => "open-API access",
            Channel::WeComGroupRobot => "WeCom group-chat robot",
            Channel::WeComInternalRobot => "WeCom internal customer-service robot",
            Channel::OfficialAccountMenuH5 => "Official Account menu H5 robot",
            Channel::MiniProgramPlugin => "Mini Program plugin",
            Channel::WebH5 => "web H5 robot",
            Channel::WeChatCustomerService => "bound WeChat Customer Service",
        }
    }
}

impl TryFrom<u8> for Channel {
    type Error = Error;

    fn try_from(code: u8) -> Result<Channel, Error> {
        Channel::from_code(code).ok_or_else(|| Error::InvalidValue {
            field: "channel",
            found: code.to_string(),
            expected: CHANNEL_EXPECTED,
        })
    }
}

impl From<Channel> for u8 {
    fn from(channel: Channel) -> u8 {
        channel.code()
    }
}

/// Writes the number, as on the wire.
impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Channel, D::Error> {
        let code = u8::deserialize(deserializer)?;
        Channel::try_from(code).map_err(serde::de::Error::custom)
    }
}

/// A `sendmsg` event (事件): what the agent did (protocols.md §4.4).
///
/// ```
/// use kefu_payload::Event;
/// assert_eq!(Event::WaiterEnter.as_str(), "waiterEnter");
/// assert_eq!("waiterQuit".parse::<Event>(), Ok(Event::WaiterQuit));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// `waiterEnter`: an agent joins (客服接入).
    #[serde(rename = "waiterEnter")]
    WaiterEnter,
    /// `waiterSwitch`: the conversation moves to another agent (客服转接).
    #[serde(rename = "waiterSwitch")]
    WaiterSwitch,
    /// `waiterQuit`: the agent leaves (客服离开).
    #[serde(rename = "waiterQuit")]
    WaiterQuit,
    /// `waiterQualityEvaluate`: ask the user to rate the service; the rating arrives as
    /// `assessment` in a later callback.
    #[serde(rename = "waiterQualityEvaluate")]
    WaiterQualityEvaluate,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 4] = [
        Event::WaiterEnter,
        Event::WaiterSwitch,
        Event::WaiterQuit,
        Event::WaiterQualityEvaluate,
    ];

    /// The wire string, such as `waiterEnter`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Event::WaiterEnter => "waiterEnter",
            Event::WaiterSwitch => "waiterSwitch",
            Event::WaiterQuit => "waiterQuit",
            Event::WaiterQualityEvaluate => "waiterQualityEvaluate",
        }
    }
}

impl FromStr for Event {
    type Err = Error;

    /// Reads the exact wire string (case-sensitive, no trimming).
    fn from_str(text: &str) -> Result<Event, Error> {
        Event::ALL
            .into_iter()
            .find(|event| event.as_str() == text)
            .ok_or_else(|| Error::InvalidValue {
                field: "event",
                found: text.to_owned(),
                expected: "waiterEnter, waiterSwitch, waiterQuit or waiterQualityEvaluate",
            })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's handoff state (客服接入状态, protocols.md §4.6).
///
/// The wire strings are `asking`, `personserving`, `complete` and `needperson`. Parsing also
/// accepts the legacy `on` (= [`KefuState::PersonServing`]) and `off` (= [`KefuState::Complete`]);
/// writing always uses the current strings. The callback numbers the same states 0..=3 in
/// `kfstate`.
///
/// ```
/// use kefu_payload::KefuState;
/// assert_eq!("on".parse::<KefuState>(), Ok(KefuState::PersonServing));
/// assert_eq!(KefuState::PersonServing.as_str(), "personserving");
/// assert_eq!(KefuState::from_kfstate(3), Some(KefuState::NeedPerson));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KefuState {
    /// `asking` (kfstate 0): the user talks to the bot (待接入).
    Asking,
    /// `personserving` (kfstate 1): an agent is connected and the bot stays silent (已接入).
    #[serde(alias = "on")]
    PersonServing,
    /// `complete` (kfstate 2): the agent finished (接入完成).
    #[serde(alias = "off")]
    Complete,
    /// `needperson` (kfstate 3): the user asked for a human (待转人工).
    NeedPerson,
}

impl KefuState {
    /// Every state, in `kfstate` order.
    pub const ALL: [KefuState; 4] = [
        KefuState::Asking,
        KefuState::PersonServing,
        KefuState::Complete,
        KefuState::NeedPerson,
    ];

    /// The current wire string, such as `personserving`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KefuState::Asking => "asking",
            KefuState::PersonServing => "personserving",
            KefuState::Complete => "complete",
            KefuState::NeedPerson => "needperson",
        }
    }

    /// The callback's `kfstate` number: 0 asking, 1 personserving, 2 complete, 3 needperson.
    pub const fn kfstate(self) -> u8 {
        match self {
            KefuState::Asking => 0,
            KefuState::PersonServing => 1,
            KefuState::Complete => 2,
            KefuState::NeedPerson => 3,
        }
    }

    /// The state for a callback `kfstate` number, or `None` outside 0..=3.
    pub fn from_kfstate(kfstate: u8) -> Option<KefuState> {
        KefuState::ALL
            .into_iter()
            .find(|state| state.kfstate() == kfstate)
    }
}

impl FromStr for KefuState {
    type Err = Error;

    /// Reads a current or legacy wire string (case-sensitive, no trimming).
    fn from_str(text: &str) -> Result<KefuState, Error> {
        match text {
            "on" => Ok(KefuState::PersonServing),
            "off" => Ok(KefuState::Complete),
            _ => KefuState::ALL
                .into_iter()
                .find(|state| state.as_str() == text)
                .ok_or_else(|| Error::InvalidValue {
                    field: "kefustate",
                    found: text.to_owned(),
                    expected: "asking, personserving, complete or needperson (or legacy on/off)",
                }),
        }
    }
}

impl fmt::Display for KefuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much `kefustate/get` should answer: the `type` field.
///
/// ```
/// use kefu_payload::StateQuery;
/// assert_eq!(StateQuery::default(), StateQuery::Simple);
/// assert_eq!("all".parse::<StateQuery>(), Ok(StateQuery::All));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateQuery {
    /// `simple` (the platform's default): only `kefustate`.
    #[default]
    Simple,
    /// `all`: `kefustate` and `status`.
    All,
}

impl StateQuery {
    /// The wire string, `simple` or `all`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StateQuery::Simple => "simple",
            StateQuery::All => "all",
        }
    }
}

impl FromStr for StateQuery {
    type Err = Error;

    /// Reads `simple` or `all` (case-sensitive, no trimming).
    fn from_str(text: &str) -> Result<StateQuery, Error> {
        match text {
            "simple" => Ok(StateQuery::Simple),
            "all" => Ok(StateQuery::All),
            _ => Err(Error::InvalidValue {
                field: "type",
                found: text.to_owned(),
                expected: "simple or all",
            }),
        }
    }
}

impl fmt::Display for StateQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_numbers_are_explicit_and_sparse() {
        let codes: Vec<u8> = Channel::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 9]);
        for code in 0..=u8::MAX {
            match Channel::from_code(code) {
                Some(channel) => assert_eq!(channel.code(), code),
                None => assert!(code == 8 || code > 9),
            }
        }
    }

    #[test]
    fn unknown_channel_is_an_error_naming_the_value() {
        let err = Channel::try_from(8).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidValue {
                field: "channel",
                found: "8".into(),
                expected: CHANNEL_EXPECTED,
            }
        );
        assert!(err.is_parse());
        assert!(err.to_string().contains("8 is undocumented"));
    }

    #[test]
    fn channel_rules() {
        let needs_appid: Vec<u8> = Channel::ALL
            .iter()
            .filter(|c| c.requires_appid())
            .map(|c| c.code())
            .collect();
        assert_eq!(needs_appid, [0, 5, 6]);
        let closed: Vec<u8> = Channel::ALL
            .iter()
            .filter(|c| !c.is_open())
            .map(|c| c.code())
            .collect();
        assert_eq!(closed, [2, 3, 4]);
    }

    #[test]
    fn channel_serde_is_the_number() {
        assert_eq!(serde_json::to_string(&Channel::WebH5).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<Channel>("9").unwrap(),
            Channel::WeChatCustomerService
        );
        let err = serde_json::from_str::<Channel>("8").unwrap_err();
        assert!(err.to_string().contains("channel is \"8\""), "{err}");
        assert!(serde_json::from_str::<Channel>("\"0\"").is_err());
        assert_eq!(Channel::MiniProgram.to_string(), "1");
        assert_eq!(u8::from(Channel::WeChatCustomerService), 9);
    }

    #[test]
    fn event_wire_strings() {
        for event in Event::ALL {
            assert_eq!(event.as_str().parse::<Event>(), Ok(event));
            assert_eq!(event.to_string(), event.as_str());
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.as_str()));
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        }
        let err = "WaiterEnter".parse::<Event>().unwrap_err();
        assert!(err.to_string().contains("\"WaiterEnter\""));
        assert!(" waiterEnter".parse::<Event>().is_err());
    }

    #[test]
    fn kefu_state_wire_strings_and_legacy_aliases() {
        for state in KefuState::ALL {
            assert_eq!(state.as_str().parse::<KefuState>(), Ok(state));
            assert_eq!(KefuState::from_kfstate(state.kfstate()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<KefuState>(&json).unwrap(), state);
        }
        assert_eq!("on".parse(), Ok(KefuState::PersonServing));
        assert_eq!("off".parse(), Ok(KefuState::Complete));
        assert_eq!(
            serde_json::from_str::<KefuState>("\"on\"").unwrap(),
            KefuState::PersonServing
        );
        assert_eq!(
            serde_json::from_str::<KefuState>("\"off\"").unwrap(),
            KefuState::Complete
        );
        assert_eq!(KefuState::from_kfstate(4), None);
        assert!("ON".parse::<KefuState>().is_err());
        let kfstates: Vec<u8> = KefuState::ALL.iter().map(|s| s.kfstate()).collect();
        assert_eq!(kfstates, [0, 1, 2, 3]);
    }

    #[test]
    fn state_query() {
        assert_eq!("simple".parse(), Ok(StateQuery::Simple));
        assert_eq!(StateQuery::All.to_string(), "all");
        let err = "1".parse::<StateQuery>().unwrap_err();
        assert_eq!(err.to_string(), "type is \"1\", expected simple or all");
    }
}
