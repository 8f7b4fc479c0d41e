//! The envelopes around a WXBizMsgCrypt ciphertext (protocols.md §3.7.2, §4.2, §4.7).
//!
//! | Type | Direction | Body |
//! |---|---|---|
//! | [`XmlCallback`] | OA/MP/WeCom push, in | `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>` |
//! | [`XmlReply`] | passive reply, out | `<xml><Encrypt>…</Encrypt><MsgSignature>…</MsgSignature><TimeStamp>…</TimeStamp><Nonce>…</Nonce></xml>` |
//! | [`JsonCallback`] | OA/MP JSON push, in | `{"ToUserName":"…","Encrypt":"…"}` |
//! | [`OaJsonReply`] | OA/MP JSON reply, out | `{"Encrypt":"…","MsgSignature":"…","TimeStamp":1348831860,"Nonce":"…"}` |
//! | [`WeComJsonReply`] | WeCom JSON reply, out | `{"encrypt":"…","msgsignature":"…","timestamp":"…","nonce":"…"}` |
//! | [`DialogueRequest`] | Dialogue `/openapi/*`, out | `{"encrypt":"…"}` |
//! | [`DialogueCallback`] | Dialogue handoff callback, in | `{"encrypted":"…"}` |
//!
//! Parsing is tolerant where the spec says inbound must be (`Encrypt` or `encrypt`; for the
//! Dialogue callback also `encrypted`; unknown keys and elements ignored). Building always emits
//! exactly the documented spelling. The JSON types also implement serde's traits with the same
//! spellings, so they can be used directly as HTTP extractors and responses.
//!
//! Values are carried as found: no base64 check and no trimming, which are the decryptor's job.
//!
//! [`extract`] reads any of these (or bare base64) from untrusted text, for a command line tool.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wxbizmsgcrypt::Sealed;

use crate::error::Error;
use crate::xml::{self, XmlWriter};

fn parse_json<T: DeserializeOwned>(input: &str) -> Result<T, Error> {
    serde_json::from_str(input).map_err(|error| Error::Json {
        message: error.to_string(),
    })
}

fn write_json<T: Serialize>(value: &T) -> String {
    // Serialising these types cannot fail: every key is a fixed string and every value a string
    // or an integer.
    serde_json::to_string(value).unwrap_or_default()
}

/// An OA/MP/WeCom XML push: `<xml><ToUserName><![CDATA[gh_…]]></ToUserName><Encrypt><![CDATA[…]]></Encrypt></xml>`.
///
/// WeCom adds `<AgentID>` (empty for suite callbacks). Compatible mode (兼容模式) also carries the
/// plaintext fields; they are ignored.
///
/// ```
/// use kefu_payload::envelope::XmlCallback;
///
/// let push = XmlCallback::parse(
///     "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\
///      <Encrypt><![CDATA[hyzAe4Oz…]]></Encrypt><AgentID></AgentID></xml>",
/// )?;
/// assert_eq!(push.encrypt, "hyzAe4Oz…");
/// assert_eq!(push.agent_id.as_deref(), Some(""));
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlCallback {
    /// `ToUserName`: the receiving account (`gh_…` or a CorpID).
    pub to_user_name: Option<String>,
    /// `Encrypt`: the ciphertext.
    pub encrypt: String,
    /// `AgentID` (WeCom); `Some("")` when present but empty.
    pub agent_id: Option<String>,
}

impl XmlCallback {
    /// Reads the envelope; `Encrypt` is required, everything else is optional or ignored.
    pub fn parse(input: &str) -> Result<XmlCallback, Error> {
        let [to_user_name, encrypt, agent_id] =
            xml::read_leaves(input, ["ToUserName", "Encrypt", "AgentID"])?;
        Ok(XmlCallback {
            to_user_name,
            encrypt: encrypt.ok_or(Error::MissingElement { element: "Encrypt" })?,
            agent_id,
        })
    }

    /// Writes `ToUserName`, `Encrypt` and `AgentID` (absent ones omitted) in CDATA.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when a value holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut writer = XmlWriter::new();
        writer.optional_cdata("ToUserName", self.to_user_name.as_deref())?;
        writer.cdata("Encrypt", &self.encrypt)?;
        writer.optional_cdata("AgentID", self.agent_id.as_deref())?;
        Ok(writer.finish())
    }
}

/// An encrypted XML passive reply:
/// `<xml><Encrypt>…</Encrypt><MsgSignature>…</MsgSignature><TimeStamp>…</TimeStamp><Nonce>…</Nonce></xml>`.
///
/// ```
/// use kefu_payload::envelope::XmlReply;
///
/// let reply = XmlReply {
///     encrypt: "CIPHER".into(),
///     msg_signature: "5d197aaffba7e9b25a30732f161a50dee96bd5fa".into(),
///     timestamp: "1409735669".into(),
///     nonce: "1320562132".into(),
/// };
/// let xml = reply.to_xml()?;
/// assert_eq!(
///     xml,
///     "<xml><Encrypt><![CDATA[CIPHER]]></Encrypt>\
///      <MsgSignature><![CDATA[5d197aaffba7e9b25a30732f161a50dee96bd5fa]]></MsgSignature>\
///      <TimeStamp>1409735669</TimeStamp><Nonce><![CDATA[1320562132]]></Nonce></xml>"
/// );
/// assert_eq!(XmlReply::parse(&xml)?, reply);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlReply {
    /// `Encrypt`: the ciphertext.
    pub encrypt: String,
    /// `MsgSignature`.
    pub msg_signature: String,
    /// `TimeStamp`, as the text that was signed.
    pub timestamp: String,
    /// `Nonce`.
    pub nonce: String,
}

impl XmlReply {
    /// The reply for a ciphertext sealed with `timestamp` and `nonce`.
    pub fn from_sealed(
        sealed: Sealed,
        timestamp: impl Into<String>,
        nonce: impl Into<String>,
    ) -> XmlReply {
        XmlReply {
            msg_signature: sealed.msg_signature.to_string(),
            encrypt: sealed.encrypt,
            timestamp: timestamp.into(),
            nonce: nonce.into(),
        }
    }

    /// Reads the reply; all four elements are required, in any order.
    pub fn parse(input: &str) -> Result<XmlReply, Error> {
        let [encrypt, msg_signature, timestamp, nonce] =
            xml::read_leaves(input, ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"])?;
        Ok(XmlReply {
            encrypt: encrypt.ok_or(Error::MissingElement { element: "Encrypt" })?,
            msg_signature: msg_signature.ok_or(Error::MissingElement {
                element: "MsgSignature",
            })?,
            timestamp: timestamp.ok_or(Error::MissingElement {
                element: "TimeStamp",
            })?,
            nonce: nonce.ok_or(Error::MissingElement { element: "Nonce" })?,
        })
    }

    /// Writes the documented layout: CDATA for `Encrypt`, `MsgSignature` and `Nonce`, plain
    /// escaped text for `TimeStamp`.
    ///
    /// Fails with [`Error::UnrepresentableChar`] (−40011) when a value holds a character XML 1.0
    /// cannot carry.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut writer = XmlWriter::new();
        writer.cdata("Encrypt", &self.encrypt)?;
        writer.cdata("MsgSignature", &self.msg_signature)?;
        writer.text("TimeStamp", &self.timestamp)?;
        writer.cdata("Nonce", &self.nonce)?;
        Ok(writer.finish())
    }
}

/// An OA/MP JSON push (the "数据格式 JSON" console option): `{"ToUserName":"gh_…","Encrypt":"…"}`.
///
/// Parsing accepts `Encrypt` or `encrypt` and ignores other keys; building writes `Encrypt`.
///
/// ```
/// use kefu_payload::envelope::JsonCallback;
/// let push = JsonCallback::parse(r#"{"ToUserName":"gh_1","encrypt":"CIPHER","MsgType":"x"}"#)?;
/// assert_eq!(push.encrypt, "CIPHER");
/// assert_eq!(push.to_json(), r#"{"ToUserName":"gh_1","Encrypt":"CIPHER"}"#);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonCallback {
    /// `ToUserName`: the receiving account.
    #[serde(
        rename = "ToUserName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub to_user_name: Option<String>,
    /// `Encrypt`: the ciphertext.
    #[serde(rename = "Encrypt", alias = "encrypt")]
    pub encrypt: String,
}

impl JsonCallback {
    /// Reads the body.
    pub fn parse(input: &str) -> Result<JsonCallback, Error> {
        parse_json(input)
    }

    /// Writes `{"ToUserName":…,"Encrypt":…}`, without `ToUserName` when absent.
    pub fn to_json(&self) -> String {
        write_json(self)
    }
}

/// The OA/MP JSON reply shape: `{"Encrypt":"…","MsgSignature":"…","TimeStamp":1348831860,"Nonce":"…"}`,
/// with `TimeStamp` a JSON number.
///
/// ```
/// use kefu_payload::envelope::OaJsonReply;
/// let reply = OaJsonReply {
///     encrypt: "CIPHER".into(),
///     msg_signature: "SIG".into(),
///     timestamp: 1348831860,
///     nonce: "N".into(),
/// };
/// assert_eq!(
///     reply.to_json(),
///     r#"{"Encrypt":"CIPHER","MsgSignature":"SIG","TimeStamp":1348831860,"Nonce":"N"}"#
/// );
/// assert_eq!(OaJsonReply::parse(&reply.to_json())?, reply);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OaJsonReply {
    /// `Encrypt`: the ciphertext.
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
    /// `MsgSignature`.
    #[serde(rename = "MsgSignature")]
    pub msg_signature: String,
    /// `TimeStamp`, Unix seconds; sign its decimal text.
    #[serde(rename = "TimeStamp")]
    pub timestamp: u64,
    /// `Nonce`.
    #[serde(rename = "Nonce")]
    pub nonce: String,
}

impl OaJsonReply {
    /// The reply for a ciphertext sealed with `timestamp` (as decimal text) and `nonce`.
    pub fn from_sealed(sealed: Sealed, timestamp: u64, nonce: impl Into<String>) -> OaJsonReply {
        OaJsonReply {
            msg_signature: sealed.msg_signature.to_string(),
            encrypt: sealed.encrypt,
            timestamp,
            nonce: nonce.into(),
        }
    }

    /// Reads the body; all four keys are required, `TimeStamp` as a number.
    pub fn parse(input: &str) -> Result<OaJsonReply, Error> {
        parse_json(input)
    }

    /// Writes the documented spelling.
    pub fn to_json(&self) -> String {
        write_json(self)
    }
}

/// The WeCom JSON reply shape (official sample library):
/// `{"encrypt":"…","msgsignature":"…","timestamp":"…","nonce":"…"}`, lowercase keys, `msgsignature`
/// without underscore, `timestamp` a string.
///
/// ```
/// use kefu_payload::envelope::WeComJsonReply;
/// let reply = WeComJsonReply {
///     encrypt: "CIPHER".into(),
///     msgsignature: "SIG".into(),
///     timestamp: "1409735669".into(),
///     nonce: "N".into(),
/// };
/// assert_eq!(
///     reply.to_json(),
///     r#"{"encrypt":"CIPHER","msgsignature":"SIG","timestamp":"1409735669","nonce":"N"}"#
/// );
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeComJsonReply {
    /// `encrypt`: the ciphertext.
    pub encrypt: String,
    /// `msgsignature`.
    pub msgsignature: String,
    /// `timestamp`, as the text that was signed.
    pub timestamp: String,
    /// `nonce`.
    pub nonce: String,
}

impl WeComJsonReply {
    /// The reply for a ciphertext sealed with `timestamp` and `nonce`.
    pub fn from_sealed(
        sealed: Sealed,
        timestamp: impl Into<String>,
        nonce: impl Into<String>,
    ) -> WeComJsonReply {
        WeComJsonReply {
            msgsignature: sealed.msg_signature.to_string(),
            encrypt: sealed.encrypt,
            timestamp: timestamp.into(),
            nonce: nonce.into(),
        }
    }

    /// Reads the body; all four keys are required, `timestamp` as a string.
    pub fn parse(input: &str) -> Result<WeComJsonReply, Error> {
        parse_json(input)
    }

    /// Writes the documented spelling.
    pub fn to_json(&self) -> String {
        write_json(self)
    }
}

/// The body of every Dialogue `/openapi/<name>/{TOKEN}` request: `{"encrypt":"…"}`, with no
/// signature, timestamp or nonce.
///
/// Parsing also accepts `Encrypt`; building writes `encrypt`.
///
/// ```
/// use kefu_payload::envelope::DialogueRequest;
/// let body = DialogueRequest { encrypt: "CIPHER".into() };
/// assert_eq!(body.to_json(), r#"{"encrypt":"CIPHER"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogueRequest {
    /// `encrypt`: the ciphertext.
    #[serde(alias = "Encrypt")]
    pub encrypt: String,
}

impl DialogueRequest {
    /// Reads the body.
    pub fn parse(input: &str) -> Result<DialogueRequest, Error> {
        parse_json(input)
    }

    /// Writes `{"encrypt":"…"}`.
    pub fn to_json(&self) -> String {
        write_json(self)
    }
}

/// The body of the Dialogue handoff callback: `{"encrypted":"…"}` (note: **encrypted**), with no
/// signature.
///
/// Parsing also accepts `encrypt` and `Encrypt`; building writes `encrypted`.
///
/// ```
/// use kefu_payload::envelope::DialogueCallback;
/// let body = DialogueCallback::parse(r#"{"encrypted":"CIPHER"}"#)?;
/// assert_eq!(body.encrypted, "CIPHER");
/// assert_eq!(body.to_json(), r#"{"encrypted":"CIPHER"}"#);
/// # Ok::<(), kefu_payload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogueCallback {
    /// `encrypted`: the ciphertext.
    #[serde(alias = "encrypt", alias = "Encrypt")]
    pub encrypted: String,
}

impl DialogueCallback {
    /// Reads the body.
    pub fn parse(input: &str) -> Result<DialogueCallback, Error> {
        parse_json(input)
    }

    /// Writes `{"encrypted":"…"}`.
    pub fn to_json(&self) -> String {
        write_json(self)
    }
}

/// What [`extract`] recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeFormat {
    /// Bare base64, without an envelope.
    Bare,
    /// An XML envelope (`<xml>…<Encrypt>…</Encrypt>…</xml>`).
    Xml,
    /// A JSON envelope (`Encrypt`, `encrypt` or `encrypted`).
    Json,
}

/// The ciphertext found by [`extract`], and the signature inputs that travelled with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// What the input was.
    pub format: EnvelopeFormat,
    /// The ciphertext text: trimmed for bare input, as found in an envelope.
    pub encrypt: String,
    /// `MsgSignature` / `msgsignature` / `msg_signature`, if present.
    pub msg_signature: Option<String>,
    /// `TimeStamp` / `timestamp`, if present (a JSON number is given as its decimal text).
    pub timestamp: Option<String>,
    /// `Nonce` / `nonce`, if present.
    pub nonce: Option<String>,
}

/// Finds the ciphertext in arbitrary text, such as a command line tool's stdin.
///
/// After trimming whitespace (and a byte-order mark), text starting with `<` is read as an XML
/// envelope (root `<xml>`, `Encrypt` required), text starting with `{` as a JSON object with
/// exactly one of `Encrypt`, `encrypt` or `encrypted`, and anything else must be bare base64
/// (line breaks allowed; the decryptor judges the details). Signature, timestamp and nonce are
/// returned when the envelope carries them.
///
/// ```
/// use kefu_payload::envelope::{EnvelopeFormat, extract};
///
/// let found = extract("  {\"encrypted\":\"Q3st\"}\n")?;
/// assert_eq!((found.format, found.encrypt.as_str()), (EnvelopeFormat::Json, "Q3st"));
///
/// let found = extract("<xml><Encrypt><![CDATA[Q3st]]></Encrypt><TimeStamp>1</TimeStamp></xml>")?;
/// assert_eq!(found.timestamp.as_deref(), Some("1"));
///
/// assert_eq!(extract("Q3stYC6h==\n")?.format, EnvelopeFormat::Bare);
/// assert!(extract("hello, world").is_err());
/// # Ok::<(), kefu_payload::Error>(())
/// ```
pub fn extract(input: &str) -> Result<Extracted, Error> {
    let text = input.trim_start_matches('\u{FEFF}').trim();
    if text.starts_with('<') {
        extract_xml(text)
    } else if text.starts_with('{') {
        extract_json(text)
    } else {
        extract_bare(text)
    }
}

fn extract_xml(text: &str) -> Result<Extracted, Error> {
    let [encrypt, msg_signature, timestamp, nonce] =
        xml::read_leaves(text, ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"])?;
    Ok(Extracted {
        format: EnvelopeFormat::Xml,
        encrypt: encrypt.ok_or(Error::MissingElement { element: "Encrypt" })?,
        msg_signature,
        timestamp,
        nonce,
    })
}

fn extract_json(text: &str) -> Result<Extracted, Error> {
    let object: Map<String, Value> = parse_json(text)?;
    let encrypt =
        json_text(&object, &["Encrypt", "encrypt", "encrypted"], false)?.ok_or_else(|| {
            Error::Json {
                message: "no `Encrypt`, `encrypt` or `encrypted` key".to_owned(),
            }
        })?;
    Ok(Extracted {
        format: EnvelopeFormat::Json,
        encrypt,
        msg_signature: json_text(
            &object,
            &["MsgSignature", "msgsignature", "msg_signature"],
            false,
        )?,
        // The OA reply shape writes the timestamp as a number, WeCom's as a string.
        timestamp: json_text(&object, &["TimeStamp", "timestamp"], true)?,
        nonce: json_text(&object, &["Nonce", "nonce"], false)?,
    })
}

/// The string under whichever of `spellings` is present (or, if `number_allowed`, a number as its
/// decimal text).
fn json_text(
    object: &Map<String, Value>,
    spellings: &[&str],
    number_allowed: bool,
) -> Result<Option<String>, Error> {
    let mut found: Option<(&str, &Value)> = None;
    for spelling in spellings {
        if let Some(value) = object.get(*spelling) {
            if let Some((first, _)) = found {
                return Err(Error::Json {
                    message: format!(
                        "both `{first}` and `{spelling}` are present; an envelope carries one"
                    ),
                });
            }
            found = Some((spelling, value));
        }
    }
    match found {
        None => Ok(None),
        Some((_, Value::String(text))) => Ok(Some(text.clone())),
        Some((_, Value::Number(number))) if number_allowed => Ok(Some(number.to_string())),
        Some((spelling, other)) => Err(Error::Json {
            message: format!(
                "`{spelling}` must be a {}, found {other}",
                if number_allowed {
                    "string or a number"
                } else {
                    "string"
                }
            ),
        }),
    }
}

fn extract_bare(text: &str) -> Result<Extracted, Error> {
    if text.is_empty() {
        return Err(Error::UnrecognizedEnvelope { found: None });
    }
    let is_base64_or_line_break = |character: char| {
        character.is_ascii_alphanumeric() || matches!(character, '+' | '/' | '=' | '\r' | '\n')
    };
    if let Some(found) = text
        .char_indices()
        .find(|(_, character)| !is_base64_or_line_break(*character))
    {
        return Err(Error::UnrecognizedEnvelope { found: Some(found) });
    }
    Ok(Extracted {
        format: EnvelopeFormat::Bare,
        encrypt: text.to_owned(),
        msg_signature: None,
        timestamp: None,
        nonce: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::tests::xml_text;
    use proptest::prelude::*;

    const V1_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    const V2_BODY: &str = r#"{"encrypt":"Q3stYC6hdFzMh9T8HCvyDPE2ieTdcQ/vBK1S4QECN+1Fx+GT1t8gA4DCfMvbFulM0rTHMLJnW441w3GjeO108LyFZ8jTAxMfK5b1fdwuN+xBl7jmWkVl4n9mhfPSsijlozW+htQhTQfbN6ErGS1+Ft1PsQ7n268Ksgo2YniXD5qF97Tz3yNNSgTOTtvnack7FOi0vauzJ+idP0vwgGao9dYj45Ua1mow9SOwlg3BpPd+Q1VoubHYINYOt5iOR3h6"}"#;

    #[test]
    fn xml_callback_in_oa_and_wecom_forms() {
        let oa = format!(
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{V1_ENCRYPT}]]></Encrypt></xml>"
        );
        let push = XmlCallback::parse(&oa).unwrap();
        assert_eq!(
            push,
            XmlCallback {
                to_user_name: Some("gh_10f6c3c3ac5a".into()),
                encrypt: V1_ENCRYPT.into(),
                agent_id: None,
            }
        );
        assert_eq!(push.to_xml().unwrap(), oa);

        let wecom = XmlCallback::parse(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[E]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>",
        )
        .unwrap();
        assert_eq!(wecom.agent_id.as_deref(), Some(""));
    }

    #[test]
    fn xml_callback_in_compatible_mode_ignores_plaintext_fields() {
        let push = XmlCallback::parse(
            "<xml>\n<ToUserName><![CDATA[gh_1]]></ToUserName>\n<FromUserName><![CDATA[oU]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abc]]></Content>\n<MsgId>6054768590064713728</MsgId>\n<Encrypt><![CDATA[E]]></Encrypt>\n</xml>",
        )
        .unwrap();
        assert_eq!(push.encrypt, "E");
        assert_eq!(push.to_user_name.as_deref(), Some("gh_1"));
    }

    #[test]
    fn xml_callback_requires_encrypt() {
        assert_eq!(
            XmlCallback::parse("<xml><ToUserName>gh</ToUserName></xml>").unwrap_err(),
            Error::MissingElement { element: "Encrypt" }
        );
        assert!(
            XmlCallback::parse("<!DOCTYPE x><xml/>")
                .unwrap_err()
                .is_doctype()
        );
    }

    #[test]
    fn xml_reply_elements_are_all_required() {
        let err = XmlReply::parse(
            "<xml><Encrypt>E</Encrypt><MsgSignature>S</MsgSignature><Nonce>N</Nonce></xml>",
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::MissingElement {
                element: "TimeStamp"
            }
        );
        let reply = XmlReply::parse(
            "<xml><Nonce>N</Nonce><TimeStamp>1</TimeStamp><MsgSignature>S</MsgSignature><Encrypt>E</Encrypt></xml>",
        )
        .unwrap();
        assert_eq!(reply.nonce, "N");
    }

    #[test]
    fn replies_from_sealed() {
        let crypt = wxbizmsgcrypt::MsgCrypt::new(
            "spamtest",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "wx2c2769f8efd9abc2",
        )
        .unwrap();
        let sealed = crypt
            .encrypt_and_sign(b"<xml/>", "1409735669", "1320562132")
            .unwrap();
        let xml = XmlReply::from_sealed(sealed.clone(), "1409735669", "1320562132");
        let oa = OaJsonReply::from_sealed(sealed.clone(), 1_409_735_669, "1320562132");
        let wecom = WeComJsonReply::from_sealed(sealed.clone(), "1409735669", "1320562132");
        for found in [
            extract(&xml.to_xml().unwrap()).unwrap(),
            extract(&oa.to_json()).unwrap(),
            extract(&wecom.to_json()).unwrap(),
        ] {
            assert_eq!(found.encrypt, sealed.encrypt);
            let signature = found.msg_signature.unwrap();
            let timestamp = found.timestamp.unwrap();
            let nonce = found.nonce.unwrap();
            assert_eq!(signature, sealed.msg_signature.as_str());
            let plain = crypt
                .verify_and_decrypt(&signature, &timestamp, &nonce, &found.encrypt)
                .unwrap();
            assert_eq!(plain.message(), b"<xml/>");
        }
    }

    #[test]
    fn json_callback_accepts_both_spellings_and_writes_the_documented_one() {
        for input in [
            r#"{"ToUserName":"gh_1","Encrypt":"E"}"#,
            r#"{"ToUserName":"gh_1","encrypt":"E"}"#,
        ] {
            let push = JsonCallback::parse(input).unwrap();
            assert_eq!(push.encrypt, "E");
            assert_eq!(push.to_json(), r#"{"ToUserName":"gh_1","Encrypt":"E"}"#);
        }
        let err = JsonCallback::parse(r#"{"Encrypt":"E","encrypt":"F"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
        let err = JsonCallback::parse(r#"{"ToUserName":"gh_1"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `Encrypt`"), "{err}");
        assert!(err.is_parse());
        assert_eq!(
            JsonCallback {
                to_user_name: None,
                encrypt: "E".into()
            }
            .to_json(),
            r#"{"Encrypt":"E"}"#
        );
    }

    #[test]
    fn json_reply_shapes_differ_in_spelling_and_timestamp_type() {
        let err = OaJsonReply::parse(
            r#"{"Encrypt":"E","MsgSignature":"S","TimeStamp":"1348831860","Nonce":"N"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid type: string"), "{err}");
        let err = WeComJsonReply::parse(
            r#"{"encrypt":"E","msgsignature":"S","timestamp":1409735669,"nonce":"N"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid type: integer"), "{err}");
        let reply = WeComJsonReply::parse(
            r#"{"encrypt":"E","msgsignature":"S","timestamp":"1409735669","nonce":"N"}"#,
        )
        .unwrap();
        assert_eq!(reply.timestamp, "1409735669");
    }

    #[test]
    fn v2_body_decrypts_to_a_sendmsg() {
        let crypt = wxbizmsgcrypt::MsgCrypt::new(
            "token",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "Gg8HejYTkUsEIlG",
        )
        .unwrap();
        let request = DialogueRequest::parse(V2_BODY).unwrap();
        let plaintext = crypt.decrypt(&request.encrypt).unwrap();
        let send =
            crate::SendMsg::from_xml(core::str::from_utf8(plaintext.message()).unwrap()).unwrap();
        assert_eq!(
            send,
            crate::SendMsg::builder("oUSER", crate::Channel::OfficialAccount, "hello")
                .appid("wx0000000000000000")
                .build()
                .unwrap()
        );
    }

    #[test]
    fn dialogue_bodies_use_their_own_keys() {
        let request = DialogueRequest::parse(V2_BODY).unwrap();
        assert_eq!(request.to_json(), V2_BODY);
        assert_eq!(
            DialogueRequest::parse(r#"{"Encrypt":"E"}"#)
                .unwrap()
                .encrypt,
            "E"
        );
        assert!(DialogueRequest::parse(r#"{"encrypted":"E"}"#).is_err());
        for input in [
            r#"{"encrypted":"E"}"#,
            r#"{"encrypt":"E"}"#,
            r#"{"Encrypt":"E"}"#,
        ] {
            let callback = DialogueCallback::parse(input).unwrap();
            assert_eq!(callback.to_json(), r#"{"encrypted":"E"}"#);
        }
        let err = DialogueCallback::parse("[]").unwrap_err();
        assert!(matches!(err, Error::Json { .. }));
    }

    #[test]
    fn extract_recognises_each_form() {
        let bare = extract(&format!("\u{FEFF}  {V1_ENCRYPT}\r\n")).unwrap();
        assert_eq!(bare.format, EnvelopeFormat::Bare);
        assert_eq!(bare.encrypt, V1_ENCRYPT);
        assert_eq!(bare.msg_signature, None);

        let wrapped = extract("Q3st\nYC6h\n").unwrap();
        assert_eq!(wrapped.encrypt, "Q3st\nYC6h");

        let v2 = extract(V2_BODY).unwrap();
        assert_eq!(v2.format, EnvelopeFormat::Json);
        assert!(v2.encrypt.starts_with("Q3stYC6h"));

        let xml = extract(&format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{V1_ENCRYPT}]]></Encrypt></xml>"
        ))
        .unwrap();
        assert_eq!(xml.format, EnvelopeFormat::Xml);
        assert_eq!(xml.encrypt, V1_ENCRYPT);
        assert_eq!(xml.timestamp, None);

        let oa =
            extract(r#"{"Encrypt":"E","MsgSignature":"S","TimeStamp":1348831860,"Nonce":"N"}"#)
                .unwrap();
        assert_eq!(
            oa,
            Extracted {
                format: EnvelopeFormat::Json,
                encrypt: "E".into(),
                msg_signature: Some("S".into()),
                timestamp: Some("1348831860".into()),
                nonce: Some("N".into()),
            }
        );
        let snake = extract(r#"{"encrypt":"E","msg_signature":"S"}"#).unwrap();
        assert_eq!(snake.msg_signature.as_deref(), Some("S"));
    }

    #[test]
    fn extract_errors() {
        assert_eq!(
            extract(" \n\t").unwrap_err(),
            Error::UnrecognizedEnvelope { found: None }
        );
        assert_eq!(
            extract("Q3st YC6h").unwrap_err(),
            Error::UnrecognizedEnvelope {
                found: Some((4, ' '))
            }
        );
        let err = extract(r#"{"Encrypt":"E","encrypted":"F"}"#).unwrap_err();
        assert!(
            err.to_string().contains("both `Encrypt` and `encrypted`"),
            "{err}"
        );
        let err = extract(r#"{"ToUserName":"gh"}"#).unwrap_err();
        assert!(err.to_string().contains("no `Encrypt`"), "{err}");
        let err = extract(r#"{"encrypt":42}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("`encrypt` must be a string, found 42"),
            "{err}"
        );
        let err = extract(r#"{"encrypt":"E","timestamp":[1]}"#).unwrap_err();
        assert!(
            err.to_string().contains("must be a string or a number"),
            "{err}"
        );
        let err = extract(r#"{"encrypt":null}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("`encrypt` must be a string, found null"),
            "{err}"
        );
        assert_eq!(
            extract(r#"["Q3st"]"#).unwrap_err(),
            Error::UnrecognizedEnvelope {
                found: Some((0, '['))
            }
        );
        let err = extract(r#"{"encrypt":"E""#).unwrap_err();
        assert!(
            err.to_string().contains("EOF while parsing an object"),
            "{err}"
        );
        assert_eq!(
            extract("<xml><Nonce>N</Nonce></xml>").unwrap_err(),
            Error::MissingElement { element: "Encrypt" }
        );
        assert!(extract("<!DOCTYPE xml><xml/>").unwrap_err().is_doctype());
        assert!(matches!(
            extract("<html><Encrypt>E</Encrypt></html>").unwrap_err(),
            Error::WrongRoot { .. }
        ));
    }

    fn any_json_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter)
    }

    proptest! {
        #[test]
        fn xml_callback_round_trips(
            to_user_name in proptest::option::of(xml_text()),
            encrypt in xml_text(),
            agent_id in proptest::option::of(xml_text()),
        ) {
            let push = XmlCallback { to_user_name, encrypt, agent_id };
            prop_assert_eq!(XmlCallback::parse(&push.to_xml().unwrap()).unwrap(), push);
        }

        #[test]
        fn xml_reply_round_trips(
            encrypt in xml_text(),
            msg_signature in xml_text(),
            timestamp in xml_text(),
            nonce in xml_text(),
        ) {
            let reply = XmlReply { encrypt, msg_signature, timestamp, nonce };
            let xml = reply.to_xml().unwrap();
            prop_assert_eq!(XmlReply::parse(&xml).unwrap(), reply.clone());
            let found = extract(&xml).unwrap();
            prop_assert_eq!(found.encrypt, reply.encrypt);
            prop_assert_eq!(found.msg_signature, Some(reply.msg_signature));
            prop_assert_eq!(found.timestamp, Some(reply.timestamp));
            prop_assert_eq!(found.nonce, Some(reply.nonce));
        }

        #[test]
        fn json_envelopes_round_trip(
            to_user_name in proptest::option::of(any_json_text()),
            encrypt in any_json_text(),
            signature in any_json_text(),
            timestamp in any::<u64>(),
            nonce in any_json_text(),
        ) {
            let callback = JsonCallback { to_user_name, encrypt: encrypt.clone() };
            prop_assert_eq!(JsonCallback::parse(&callback.to_json()).unwrap(), callback.clone());
            prop_assert_eq!(extract(&callback.to_json()).unwrap().encrypt, encrypt.clone());

            let oa = OaJsonReply {
                encrypt: encrypt.clone(),
                msg_signature: signature.clone(),
                timestamp,
                nonce: nonce.clone(),
            };
            prop_assert_eq!(OaJsonReply::parse(&oa.to_json()).unwrap(), oa.clone());
            let found = extract(&oa.to_json()).unwrap();
            prop_assert_eq!(found.timestamp, Some(timestamp.to_string()));

            let wecom = WeComJsonReply {
                encrypt: encrypt.clone(),
                msgsignature: signature,
                timestamp: timestamp.to_string(),
                nonce,
            };
            prop_assert_eq!(WeComJsonReply::parse(&wecom.to_json()).unwrap(), wecom.clone());

            let request = DialogueRequest { encrypt: encrypt.clone() };
            prop_assert_eq!(DialogueRequest::parse(&request.to_json()).unwrap(), request);

            let dialogue_callback = DialogueCallback { encrypted: encrypt.clone() };
            prop_assert_eq!(
                DialogueCallback::parse(&dialogue_callback.to_json()).unwrap(),
                dialogue_callback.clone()
            );
            prop_assert_eq!(extract(&dialogue_callback.to_json()).unwrap().encrypt, encrypt);
        }

        #[test]
        fn bare_base64_is_extracted_trimmed(
            body in "[A-Za-z0-9+/]{1,64}={0,2}",
            before in "[ \t\r\n]{0,3}",
            after in "[ \t\r\n]{0,3}",
        ) {
            let found = extract(&format!("{before}{body}{after}")).unwrap();
            prop_assert_eq!(found.format, EnvelopeFormat::Bare);
            prop_assert_eq!(found.encrypt, body);
        }

        #[test]
        fn parsers_never_panic(input in "\\PC*") {
            let _ = extract(&input);
            let _ = XmlCallback::parse(&input);
            let _ = XmlReply::parse(&input);
            let _ = JsonCallback::parse(&input);
            let _ = DialogueCallback::parse(&input);
        }
    }
}
