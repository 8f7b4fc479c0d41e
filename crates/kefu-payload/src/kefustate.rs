//! The `kefustate/get` and `kefustate/change` plaintexts (protocols.md §4.6).

use crate::error::{Error, Stage};
use crate::limits;
use crate::model::{KefuState, StateQuery};
use crate::xml::{self, XmlWriter};

/// The user a kefustate request is about: an Official Account or Mini Program AppID and an
/// openid, neither empty.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    appid: String,
    openid: String,
}

impl Subject {
    /// Refuses an empty `appid` or `openid` as the platform does (1008), and, when building,
    /// one longer than its bound in [`limits`].
    fn new(appid: String, openid: String, stage: Stage) -> Result<Subject, Error> {
        for (field, value) in [("appid", &appid), ("openid", &openid)] {
            if value.is_empty() {
                return Err(Error::EmptyField { field, stage });
            }
        }
        if stage == Stage::Build {
            limits::check("appid", &appid, limits::APPID)?;
            limits::check("openid", &openid, limits::OPENID)?;
        }
        Ok(Subject { appid, openid })
    }

    /// A parsed subject: a missing id counts as empty.
    fn parsed(appid: Option<String>, openid: Option<String>) -> Result<Subject, Error> {
        Subject::new(
            appid.unwrap_or_default(),
            openid.unwrap_or_default(),
            Stage::Parse,
        )
    }

    /// `<xml><appid>…</appid><openid>…</openid>`, then `tag` with `value`, escaped.
    fn to_xml(&self, tag: &'static str, value: &str) -> Result<String, Error> {
        let mut writer = XmlWriter::new();
        writer.text("appid", &self.appid)?;
        writer.text("openid", &self.openid)?;
        writer.text(tag, value)?;
        Ok(writer.finish())
    }
}

/// A validated `kefustate/get` plaintext: read a user's handoff state (查看用户的客服接入状态).
///
/// ```
/// use kefu_payload::{KefuStateGet, StateQuery};
///
/// let get = KefuStateGet::new("wx0000000000000000", "oUSER", StateQuery::All)?;
/// let xml = get.to_xml()?;
/// assert_eq!(
///     xml,
///     "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><type>all</type></xml>"
/// );
/// assert_eq!(KefuStateGet::from_xml(&xml)?, get);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KefuStateGet {
    subject: Subject,
    query: StateQuery,
}

impl KefuStateGet {
    /// A request for `openid`'s state under the Official Account or Mini Program `appid`.
    ///
    /// Fails with [`Error::EmptyField`] (platform code 1008) when either id is empty.
    pub fn new(
        appid: impl Into<String>,
        openid: impl Into<String>,
        query: StateQuery,
    ) -> Result<KefuStateGet, Error> {
        let subject = Subject::new(appid.into(), openid.into(), Stage::Build)?;
        Ok(KefuStateGet { subject, query })
    }

    /// The Official Account or Mini Program AppID.
    pub fn appid(&self) -> &str {
        &self.subject.appid
    }

    /// The user's openid.
    pub fn openid(&self) -> &str {
        &self.subject.openid
    }

    /// How much to answer.
    pub fn query(&self) -> StateQuery {
        self.query
    }

    /// Writes `<xml><appid>…</appid><openid>…</openid><type>simple|all</type></xml>`, escaped.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when an id holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        self.subject.to_xml("type", self.query.as_str())
    }

    /// Reads a plaintext; a missing or blank `type` means `simple`, the platform's default.
    /// A missing id counts as empty (validation error, platform code 1008).
    pub fn from_xml(input: &str) -> Result<KefuStateGet, Error> {
        let [appid, openid, query] = xml::read_leaves(input, ["appid", "openid", "type"])?;
        let query = match query {
            Some(text) if !text.is_empty() => text.parse()?,
            _ => StateQuery::default(),
        };
        let subject = Subject::parsed(appid, openid)?;
        Ok(KefuStateGet { subject, query })
    }
}

/// A validated `kefustate/change` plaintext: set a user's handoff state (修改用户的客服接入状态).
///
/// The state is always written with its current wire string; the legacy `on`/`off` are only
/// accepted when parsing.
///
/// ```
/// use kefu_payload::{KefuState, KefuStateChange};
///
/// let change = KefuStateChange::new("wx0000000000000000", "oUSER", KefuState::PersonServing)?;
/// assert_eq!(
///     change.to_xml()?,
///     "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid>\
///      <kefustate>personserving</kefustate></xml>"
/// );
/// let legacy = KefuStateChange::from_xml(
///     "<xml><appid>wx1</appid><openid>o</openid><kefustate>off</kefustate></xml>",
/// )?;
/// assert_eq!(legacy.state(), KefuState::Complete);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KefuStateChange {
    subject: Subject,
    state: KefuState,
}

impl KefuStateChange {
    /// A request to move `openid` under the Official Account or Mini Program `appid` to `state`.
    ///
    /// Fails with [`Error::EmptyField`] (platform code 1008) when either id is empty.
    pub fn new(
        appid: impl Into<String>,
        openid: impl Into<String>,
        state: KefuState,
    ) -> Result<KefuStateChange, Error> {
        let subject = Subject::new(appid.into(), openid.into(), Stage::Build)?;
        Ok(KefuStateChange { subject, state })
    }

    /// The Official Account or Mini Program AppID.
    pub fn appid(&self) -> &str {
        &self.subject.appid
    }

    /// The user's openid.
    pub fn openid(&self) -> &str {
        &self.subject.openid
    }

    /// The requested state.
    pub fn state(&self) -> KefuState {
        self.state
    }

    /// Writes `<xml><appid>…</appid><openid>…</openid><kefustate>…</kefustate></xml>`, escaped.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when an id holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        self.subject.to_xml("kefustate", self.state.as_str())
    }

    /// Reads a plaintext; `kefustate` is required and may be a legacy `on`/`off`. A missing id
    /// counts as empty (validation error, platform code 1008).
    pub fn from_xml(input: &str) -> Result<KefuStateChange, Error> {
        let [appid, openid, state] = xml::read_leaves(input, ["appid", "openid", "kefustate"])?;
        let state = state
            .ok_or(Error::MissingElement {
                element: "kefustate",
            })?
            .parse()?;
        let subject = Subject::parsed(appid, openid)?;
        Ok(KefuStateChange { subject, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::tests::xml_text;
    use proptest::prelude::*;

    #[test]
    fn get_defaults_to_simple() {
        for input in [
            "<xml><appid>wx1</appid><openid>o</openid></xml>",
            "<xml><appid>wx1</appid><openid>o</openid><type></type></xml>",
        ] {
            assert_eq!(
                KefuStateGet::from_xml(input).unwrap(),
                KefuStateGet::new("wx1", "o", StateQuery::Simple).unwrap()
            );
        }
        assert_eq!(
            KefuStateGet::new("wx1", "o", StateQuery::Simple)
                .unwrap()
                .to_xml()
                .unwrap(),
            "<xml><appid>wx1</appid><openid>o</openid><type>simple</type></xml>"
        );
    }

    #[test]
    fn get_rejects_an_unknown_type() {
        let err =
            KefuStateGet::from_xml("<xml><appid>wx1</appid><openid>o</openid><type>1</type></xml>")
                .unwrap_err();
        assert!(matches!(err, Error::InvalidValue { field: "type", .. }));
        assert!(err.is_parse());
    }

    #[test]
    fn ids_longer_than_the_platform_holds_are_refused_when_building() {
        let long = "o".repeat(limits::OPENID + 1);
        assert_eq!(
            KefuStateChange::new("wx1", long.as_str(), KefuState::Complete).unwrap_err(),
            Error::TooLong {
                field: "openid",
                len: limits::OPENID + 1,
                max: limits::OPENID
            }
        );
        assert_eq!(
            KefuStateGet::new(long.as_str(), "o", StateQuery::All)
                .unwrap_err()
                .field(),
            Some("appid")
        );
        assert!(KefuStateGet::new("wx1", "o".repeat(limits::OPENID), StateQuery::All).is_ok());
    }

    #[test]
    fn ids_must_not_be_empty() {
        assert_eq!(
            KefuStateGet::new("", "o", StateQuery::All).unwrap_err(),
            Error::EmptyField {
                field: "appid",
                stage: Stage::Build
            }
        );
        assert_eq!(
            KefuStateChange::new("wx1", "", KefuState::Asking).unwrap_err(),
            Error::EmptyField {
                field: "openid",
                stage: Stage::Build
            }
        );
        let err = KefuStateGet::from_xml("<xml><openid>o</openid></xml>").unwrap_err();
        assert_eq!(
            err,
            Error::EmptyField {
                field: "appid",
                stage: Stage::Parse
            }
        );
        assert_eq!(err.platform_code(), Some(1008));
        assert_eq!(
            KefuStateChange::from_xml(
                "<xml><appid>wx1</appid><openid></openid><kefustate>asking</kefustate></xml>"
            )
            .unwrap_err(),
            Error::EmptyField {
                field: "openid",
                stage: Stage::Parse
            }
        );
    }

    #[test]
    fn change_requires_a_known_state() {
        assert_eq!(
            KefuStateChange::from_xml("<xml><appid>wx1</appid><openid>o</openid></xml>")
                .unwrap_err(),
            Error::MissingElement {
                element: "kefustate"
            }
        );
        let err = KefuStateChange::from_xml(
            "<xml><appid>wx1</appid><openid>o</openid><kefustate>1</kefustate></xml>",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidValue {
                field: "kefustate",
                ..
            }
        ));
    }

    #[test]
    fn change_writes_current_strings_for_legacy_input() {
        let parsed = KefuStateChange::from_xml(
            "<xml><appid><![CDATA[wx1]]></appid><openid>o</openid><kefustate>on</kefustate></xml>",
        )
        .unwrap();
        assert_eq!(parsed.state(), KefuState::PersonServing);
        assert_eq!(parsed.appid(), "wx1");
        assert_eq!(parsed.openid(), "o");
        assert_eq!(
            parsed.to_xml().unwrap(),
            "<xml><appid>wx1</appid><openid>o</openid><kefustate>personserving</kefustate></xml>"
        );
    }

    #[test]
    fn unrepresentable_ids() {
        let get = KefuStateGet::new("wx\u{0}", "o", StateQuery::Simple).unwrap();
        assert_eq!(
            get.to_xml().unwrap_err(),
            Error::UnrepresentableChar {
                field: "appid",
                position: 2,
                character: '\0'
            }
        );
    }

    fn id() -> impl Strategy<Value = String> {
        xml_text().prop_filter("non-empty", |text| !text.is_empty())
    }

    proptest! {
        #[test]
        fn get_round_trips(
            appid in id(),
            openid in id(),
            query in prop_oneof![Just(StateQuery::Simple), Just(StateQuery::All)],
        ) {
            let get = KefuStateGet::new(appid, openid, query).unwrap();
            prop_assert_eq!(KefuStateGet::from_xml(&get.to_xml().unwrap()).unwrap(), get);
        }

        #[test]
        fn change_round_trips(
            appid in id(),
            openid in id(),
            state in proptest::sample::select(KefuState::ALL.to_vec()),
        ) {
            let change = KefuStateChange::new(appid, openid, state).unwrap();
            prop_assert_eq!(KefuStateChange::from_xml(&change.to_xml().unwrap()).unwrap(), change);
        }

        #[test]
        fn parsers_never_panic(input in "\\PC*") {
            let _ = KefuStateGet::from_xml(&input);
            let _ = KefuStateChange::from_xml(&input);
        }
    }
}
