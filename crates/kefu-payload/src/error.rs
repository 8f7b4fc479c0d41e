//! The one error type of this crate.

use core::fmt;

use wxbizmsgcrypt::ErrorCode;

use crate::model::Channel;

/// Whether a validation failure was found while building a value or while parsing one.
///
/// The platform rules are the same in both directions; only the official code differs
/// ([`ErrorCode::GenReturnXml`] when building, [`ErrorCode::ParseXml`] when parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A builder or constructor refused its input.
    Build,
    /// A parsed payload breaks a platform rule.
    Parse,
}

/// Why parsing, validating or building a payload failed.
///
/// Every variant maps onto one official WXBizMsgCrypt code with [`Error::code`]:
///
/// * parse failures (the input is not well-formed, or not the expected shape) are −40002
///   ([`ErrorCode::ParseXml`]);
/// * build failures (the value cannot be written) are −40011 ([`ErrorCode::GenReturnXml`]);
/// * validation failures (the value breaks a rule the Dialogue platform enforces) use −40011 or
///   −40002 depending on their [`Stage`], and also carry the code the platform itself would answer
///   with ([`Error::platform_code`]), so that an emulator can answer like the platform.
///
/// Messages say what is wrong and where (element, byte offset or character position) and, where it
/// helps, what to do. No variant carries the token or a key.
///
/// ```
/// use kefu_payload::{Channel, Error, SendMsg};
///
/// let err = SendMsg::builder("", Channel::OfficialAccount, "hello")
///     .appid("wx0000000000000000")
///     .build()
///     .unwrap_err();
/// assert!(err.is_validation());
/// assert_eq!(err.platform_code(), Some(1008));
/// assert_eq!(err.code(), -40011);
/// assert!(err.to_string().contains("openid"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input holds a `<!DOCTYPE …>` declaration; DTDs are never processed (−40002).
    Doctype {
        /// Byte offset of the declaration.
        offset: u64,
    },
    /// The input is not well-formed XML (−40002).
    XmlSyntax {
        /// Byte offset where the problem was detected.
        offset: u64,
        /// What the XML reader found wrong.
        message: String,
    },
    /// The input holds a character that XML 1.0 does not allow, raw or as a character reference
    /// (−40002).
    IllegalXmlChar {
        /// Byte offset of the character or of its reference.
        offset: u64,
        /// The offending character.
        character: char,
    },
    /// The input references an entity other than the five predefined ones (−40002).
    UnknownEntity {
        /// Byte offset of the reference.
        offset: u64,
        /// The entity name, without `&` and `;`.
        name: String,
    },
    /// The root element is not `<xml>` (−40002).
    WrongRoot {
        /// The name of the root element found.
        found: String,
    },
    /// The input holds no root element at all (−40002).
    NoRoot,
    /// Elements nest deeper than a reader allows (−40002).
    TooDeep {
        /// The most levels below the root accepted.
        max: usize,
    },
    /// A required element is absent (−40002).
    MissingElement {
        /// Path of the element below the root, such as `channel`.
        element: &'static str,
    },
    /// An element that must appear at most once appears twice (−40002).
    DuplicateElement {
        /// Path of the element below the root.
        element: &'static str,
    },
    /// A text element contains a child element, usually unescaped markup such as `<a href=…>`
    /// (−40002).
    UnexpectedChild {
        /// Path of the text element below the root.
        element: &'static str,
        /// Name of the child element found in it.
        child: String,
    },
    /// A field holds a value outside its documented set or range (−40002).
    InvalidValue {
        /// The element or key, such as `channel` or `kfstate`.
        field: &'static str,
        /// The text found.
        found: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// JSON input is malformed or not of the expected shape (−40002).
    Json {
        /// What is wrong, with a line and column where the JSON reader gives one.
        message: String,
    },
    /// Text given to [`envelope::extract`](crate::envelope::extract) is neither bare base64 nor an
    /// XML or JSON envelope (−40002).
    UnrecognizedEnvelope {
        /// The first character that rules out bare base64, and its byte offset in the trimmed
        /// input; `None` when the input is empty or all whitespace.
        found: Option<(usize, char)>,
    },
    /// A value holds a character that XML 1.0 cannot carry, so it cannot be written (−40011).
    UnrepresentableChar {
        /// The element the value belongs to.
        field: &'static str,
        /// Zero-based position of the character in the value, counted in characters.
        position: usize,
        /// The offending character.
        character: char,
    },
    /// A required field is empty; the platform answers 1008 (validation).
    EmptyField {
        /// The field, such as `openid`.
        field: &'static str,
        /// Whether this was found while building or while parsing.
        stage: Stage,
    },
    /// `appid` is absent on a channel that requires it (0, 5, 6); the platform answers 1008
    /// (validation).
    AppidRequired {
        /// The channel of the message.
        channel: Channel,
        /// Whether this was found while building or while parsing.
        stage: Stage,
    },
    /// The channel is not open yet (2, 3, 4); the platform answers 2928312 "unsupport, to do."
    /// (validation).
    ChannelNotOpen {
        /// The channel of the message.
        channel: Channel,
        /// Whether this was found while building or while parsing.
        stage: Stage,
    },
    /// An identifier or name is longer than the platform holds (see
    /// [`limits`](crate::limits)), so it cannot be the right value (−40011, build only).
    TooLong {
        /// The field, such as `openid`.
        field: &'static str,
        /// Its length, in bytes of UTF-8.
        len: usize,
        /// The most accepted, in bytes.
        max: usize,
    },
}

impl Error {
    /// The official code group of this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::UnrepresentableChar { .. } | Error::TooLong { .. } => ErrorCode::GenReturnXml,
            Error::EmptyField { stage, .. }
            | Error::AppidRequired { stage, .. }
            | Error::ChannelNotOpen { stage, .. } => match stage {
                Stage::Build => ErrorCode::GenReturnXml,
                Stage::Parse => ErrorCode::ParseXml,
            },
            Error::Doctype { .. }
            | Error::XmlSyntax { .. }
            | Error::IllegalXmlChar { .. }
            | Error::UnknownEntity { .. }
            | Error::WrongRoot { .. }
            | Error::NoRoot
            | Error::TooDeep { .. }
            | Error::MissingElement { .. }
            | Error::DuplicateElement { .. }
            | Error::UnexpectedChild { .. }
            | Error::InvalidValue { .. }
            | Error::Json { .. }
            | Error::UnrecognizedEnvelope { .. } => ErrorCode::ParseXml,
        }
    }

    /// The official number: −40002 for parse failures, −40011 for build failures.
    pub fn code(&self) -> i32 {
        self.error_code().code()
    }

    /// The error code the Dialogue platform answers for the same mistake (1008 for an empty
    /// `appid`, `openid` or `msg`; 2928312 for a channel that is not open), or `None` when the
    /// failure is not a platform rule.
    pub fn platform_code(&self) -> Option<i64> {
        match self {
            Error::EmptyField { .. } | Error::AppidRequired { .. } => Some(1008),
            Error::ChannelNotOpen { .. } => Some(2_928_312),
            _ => None,
        }
    }

    /// The field or element the failure is about, where there is one: what an API names in
    /// its answer so that the caller knows what to fix.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::MissingElement { element } | Error::DuplicateElement { element } => {
                Some(element)
            }
            Error::UnexpectedChild { element, .. } => Some(element),
            Error::InvalidValue { field, .. }
            | Error::UnrepresentableChar { field, .. }
            | Error::TooLong { field, .. }
            | Error::EmptyField { field, .. } => Some(field),
            Error::AppidRequired { .. } => Some("appid"),
            Error::ChannelNotOpen { .. } => Some("channel"),
            _ => None,
        }
    }

    /// `true` when the value breaks a rule the platform enforces (it has a
    /// [`platform_code`](Error::platform_code)).
    pub fn is_validation(&self) -> bool {
        self.platform_code().is_some()
    }

    /// `true` when the input could not be read: it is not well-formed, or not the expected shape.
    /// Validation failures of a well-formed payload are not parse failures.
    pub fn is_parse(&self) -> bool {
        self.error_code() == ErrorCode::ParseXml && !self.is_validation()
    }

    /// `true` when a value could not be written because XML cannot carry one of its characters.
    pub fn is_build(&self) -> bool {
        self.error_code() == ErrorCode::GenReturnXml && !self.is_validation()
    }

    /// `true` when the input was refused because it declares a DTD.
    pub fn is_doctype(&self) -> bool {
        matches!(self, Error::Doctype { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Doctype { offset } => write!(
                f,
                "DOCTYPE declaration at byte {offset}: DTDs are never processed; send the payload without <!DOCTYPE>"
            ),
            Error::XmlSyntax { offset, message } => {
                write!(f, "malformed XML at byte {offset}: {message}")
            }
            Error::IllegalXmlChar { offset, character } => write!(
                f,
                "character U+{:04X} at byte {offset} is not allowed in XML 1.0",
                u32::from(*character)
            ),
            Error::UnknownEntity { offset, name } => write!(
                f,
                "entity &{name}; at byte {offset} is not one of &lt; &gt; &amp; &apos; &quot; (DTD entities are not supported); escape the '&' as &amp;"
            ),
            Error::WrongRoot { found } => {
                write!(f, "root element is <{found}>, expected <xml>")
            }
            Error::NoRoot => f.write_str("no root element found, expected <xml>…</xml>"),
            Error::TooDeep { max } => write!(f, "elements nest deeper than {max} levels"),
            Error::MissingElement { element } => {
                write!(f, "required element <{element}> is missing")
            }
            Error::DuplicateElement { element } => {
                write!(f, "element <{element}> appears more than once")
            }
            Error::UnexpectedChild { element, child } => write!(
                f,
                "<{element}> contains a child element <{child}>; its text must be escaped (&lt;{child} …) or wrapped in CDATA"
            ),
            Error::InvalidValue {
                field,
                found,
                expected,
            } => write!(f, "{field} is {found:?}, expected {expected}"),
            Error::Json { message } => write!(f, "invalid JSON: {message}"),
            Error::UnrecognizedEnvelope { found: None } => f.write_str(
                "input is empty; expected bare base64, an XML envelope (<xml>…) or a JSON envelope ({…})",
            ),
            Error::UnrecognizedEnvelope {
                found: Some((offset, character)),
            } => write!(
                f,
                "{character:?} at byte {offset} is not base64 (A-Z a-z 0-9 + / =), and the input is not an XML envelope (<xml>…) or a JSON envelope ({{…}}) either"
            ),
            Error::UnrepresentableChar {
                field,
                position,
                character,
            } => write!(
                f,
                "{field} holds U+{:04X} at character {position}, which XML 1.0 cannot carry; remove it",
                u32::from(*character)
            ),
            Error::EmptyField {
                field,
                stage: Stage::Build,
            } => write!(
                f,
                "{field} must not be empty (the platform answers 1008)"
            ),
            Error::EmptyField {
                field,
                stage: Stage::Parse,
            } => write!(
                f,
                "<{field}> is missing or empty (the platform answers 1008)"
            ),
            Error::AppidRequired { channel, .. } => write!(
                f,
                "appid is required on channel {} ({}); set it to the Official Account or Mini Program AppID (the platform answers 1008)",
                channel.code(),
                channel.description()
            ),
            Error::ChannelNotOpen { channel, .. } => write!(
                f,
                "channel {} ({}) is not open on the platform (it answers 2928312 \"unsupport, to do.\")",
                channel.code(),
                channel.description()
            ),
            Error::TooLong { field, len, max } => write!(
                f,
                "{field} is {len} bytes long, more than the {max} the platform holds; check that it is the right value"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_failures_are_40002_and_not_validation() {
        let err = Error::MissingElement { element: "channel" };
        assert_eq!(err.code(), -40002);
        assert!(err.is_parse());
        assert!(!err.is_build());
        assert!(!err.is_validation());
        assert_eq!(err.platform_code(), None);
        assert_eq!(err.to_string(), "required element <channel> is missing");
    }

    #[test]
    fn build_failures_are_40011() {
        let err = Error::UnrepresentableChar {
            field: "msg",
            position: 3,
            character: '\u{1}',
        };
        assert_eq!(err.code(), -40011);
        assert!(err.is_build());
        assert!(!err.is_parse());
        assert_eq!(
            err.to_string(),
            "msg holds U+0001 at character 3, which XML 1.0 cannot carry; remove it"
        );
    }

    #[test]
    fn validation_code_follows_the_stage() {
        let built = Error::EmptyField {
            field: "openid",
            stage: Stage::Build,
        };
        let parsed = Error::EmptyField {
            field: "openid",
            stage: Stage::Parse,
        };
        assert_eq!(built.code(), -40011);
        assert_eq!(parsed.code(), -40002);
        for err in [&built, &parsed] {
            assert!(err.is_validation());
            assert!(!err.is_parse());
            assert!(!err.is_build());
            assert_eq!(err.platform_code(), Some(1008));
        }
        assert_eq!(
            parsed.to_string(),
            "<openid> is missing or empty (the platform answers 1008)"
        );
    }

    #[test]
    fn channel_rules_carry_platform_codes() {
        let closed = Error::ChannelNotOpen {
            channel: Channel::OpenApi,
            stage: Stage::Build,
        };
        assert_eq!(closed.platform_code(), Some(2_928_312));
        assert!(closed.to_string().contains("channel 2"));
        let appid = Error::AppidRequired {
            channel: Channel::MiniProgramPlugin,
            stage: Stage::Parse,
        };
        assert_eq!(appid.platform_code(), Some(1008));
        assert!(appid.to_string().contains("channel 6"));
    }

    #[test]
    fn doctype_predicate() {
        let err = Error::Doctype { offset: 0 };
        assert!(err.is_doctype());
        assert!(err.is_parse());
        assert!(err.to_string().contains("DTDs are never processed"));
    }

    #[test]
    fn every_message_says_what_and_where() {
        let cases = [
            (
                Error::XmlSyntax {
                    offset: 7,
                    message: "boom".into(),
                },
                "malformed XML at byte 7: boom",
            ),
            (
                Error::IllegalXmlChar {
                    offset: 3,
                    character: '\u{B}',
                },
                "character U+000B at byte 3 is not allowed in XML 1.0",
            ),
            (
                Error::UnknownEntity {
                    offset: 9,
                    name: "nbsp".into(),
                },
                "entity &nbsp; at byte 9 is not one of &lt; &gt; &amp; &apos; &quot; (DTD entities are not supported); escape the '&' as &amp;",
            ),
            (
                Error::WrongRoot {
                    found: "root".into(),
                },
                "root element is <root>, expected <xml>",
            ),
            (
                Error::NoRoot,
                "no root element found, expected <xml>…</xml>",
            ),
            (
                Error::DuplicateElement { element: "msg" },
                "element <msg> appears more than once",
            ),
            (
                Error::UnexpectedChild {
                    element: "msg",
                    child: "a".into(),
                },
                "<msg> contains a child element <a>; its text must be escaped (&lt;a …) or wrapped in CDATA",
            ),
            (
                Error::InvalidValue {
                    field: "kfstate",
                    found: "7".into(),
                    expected: "0, 1, 2 or 3",
                },
                "kfstate is \"7\", expected 0, 1, 2 or 3",
            ),
            (
                Error::Json {
                    message: "missing field `Encrypt`".into(),
                },
                "invalid JSON: missing field `Encrypt`",
            ),
            (
                Error::EmptyField {
                    field: "msg",
                    stage: Stage::Build,
                },
                "msg must not be empty (the platform answers 1008)",
            ),
            (
                Error::AppidRequired {
                    channel: Channel::OfficialAccount,
                    stage: Stage::Build,
                },
                "appid is required on channel 0 (Official Account bound by QR scan); set it to the Official Account or Mini Program AppID (the platform answers 1008)",
            ),
            (
                Error::ChannelNotOpen {
                    channel: Channel::WeComGroupRobot,
                    stage: Stage::Parse,
                },
                "channel 3 (WeCom group-chat robot) is not open on the platform (it answers 2928312 \"unsupport, to do.\")",
            ),
            (
                Error::TooLong {
                    field: "openid",
                    len: 60_000,
                    max: 128,
                },
                "openid is 60000 bytes long, more than the 128 the platform holds; check that it is the right value",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn unrecognized_envelope_messages() {
        assert!(
            Error::UnrecognizedEnvelope { found: None }
                .to_string()
                .starts_with("input is empty")
        );
        let err = Error::UnrecognizedEnvelope {
            found: Some((4, '!')),
        };
        assert!(err.to_string().starts_with("'!' at byte 4 is not base64"));
    }
}
