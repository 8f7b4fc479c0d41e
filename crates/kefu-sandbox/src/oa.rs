//! The Official Account's standard message push (消息推送), emulated for one account: a user
//! writes to the OA and WeChat POSTs the message to the account's server URL, signed and (in safe
//! or compatible mode) encrypted with the account's own Token, EncodingAESKey and AppID
//! (protocols.md §3.6–3.8). These are not the bot's credentials.
//!
//! A push in safe mode with the XML format, exactly as WeChat sends it:
//!
//! ```text
//! POST <url>?signature=…&timestamp=…&nonce=…&openid=…&encrypt_type=aes&msg_signature=…
//! Content-Type: text/xml
//!
//! <xml><ToUserName><![CDATA[gh_…]]></ToUserName><Encrypt><![CDATA[…]]></Encrypt></xml>
//! ```
//!
//! `signature` is the plain signature over the Token, `timestamp` and `nonce`; `msg_signature`
//! covers the `Encrypt` value too. The ciphertext's receive-id is the OA AppID, and its plaintext
//! the standard text message, one element per line like WeChat's own sample:
//!
//! ```text
//! <xml><ToUserName><![CDATA[gh_…]]></ToUserName>
//! <FromUserName><![CDATA[openid]]></FromUserName>
//! <CreateTime>1700000000</CreateTime>
//! <MsgType><![CDATA[text]]></MsgType>
//! <Content><![CDATA[…]]></Content>
//! <MsgId>5764982633261629441</MsgId>
//! </xml>
//! ```
//!
//! Every message gets a fresh 64-bit `MsgId` (unique within the sandbox's run, below 2^63 so
//! that a signed 64-bit integer holds it), and every push a fresh `timestamp` (now) and `nonce`.
//! Query values are percent-encoded (RFC 3986: everything but `A-Z a-z 0-9 - . _ ~`).
//!
//! Variants, chosen per account and overridable per push:
//!
//! * format [`OaFormat::Json`] ("数据格式 JSON"): the plaintext is
//!   `{"ToUserName","FromUserName","CreateTime","MsgType","Content","MsgId"}` and the body
//!   `{"ToUserName":"gh_…","Encrypt":"…"}` (`Content-Type: application/json`);
//! * mode [`OaMode::Compatible`] (兼容模式): the body carries the plaintext's fields **and**
//!   `Encrypt`; the query is the same as in safe mode;
//! * mode [`OaMode::Plain`] (明文模式): the body is the plaintext, and the query has no
//!   `encrypt_type` or `msg_signature`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use kefu_payload::envelope::{JsonCallback, XmlCallback};
use kefu_payload::is_xml_char;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wxbizmsgcrypt::{MsgCrypt, sign_message, sign_plain};

use crate::push::{CallbackDelivery, Target};
use crate::user::{Redelivery, SayError};

/// The OA's original ID (原始ID, `ToUserName`) when none is configured.
pub const DEFAULT_OA_ORIGINAL_ID: &str = "gh_000000000000";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The data format of the account's pushes (the console's "数据格式").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum OaFormat {
    /// XML bodies, `Content-Type: text/xml`.
    #[default]
    Xml,
    /// JSON bodies, `Content-Type: application/json`.
    Json,
}

impl OaFormat {
    /// `xml` or `json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OaFormat::Xml => "xml",
            OaFormat::Json => "json",
        }
    }

    const fn content_type(self) -> &'static str {
        match self {
            OaFormat::Xml => "text/xml",
            OaFormat::Json => "application/json",
        }
    }
}

/// The account's message encryption mode (消息加解密方式).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum OaMode {
    /// 安全模式: only `ToUserName` and `Encrypt` in the body.
    #[default]
    Safe,
    /// 兼容模式: the plaintext fields and `Encrypt` in the body.
    Compatible,
    /// 明文模式: the plaintext only, signed with `signature` alone.
    Plain,
}

impl OaMode {
    /// `safe`, `compatible` or `plain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OaMode::Safe => "safe",
            OaMode::Compatible => "compatible",
            OaMode::Plain => "plain",
        }
    }
}

/// An Official Account whose message pushes the sandbox emulates, with its own credentials
/// (distinct from the bot's). Build one with [`OaAccount::new`] and set the public fields.
///
/// `Debug` shows the Token, the EncodingAESKey and the URL as `<redacted>`.
#[derive(Clone)]
pub struct OaAccount {
    /// The OA's Token (for `signature` and `msg_signature`).
    pub token: String,
    /// The OA's 43-character EncodingAESKey.
    pub aes_key: String,
    /// The OA's AppID (`wx…`): the receive-id of every ciphertext.
    pub appid: String,
    /// The OA's original ID (原始ID, `gh_…`): the `ToUserName` of every push.
    pub original_id: String,
    /// The OA's server URL, where pushes go (`http://` only), or nowhere: then a push is built
    /// and reported, but not sent.
    pub callback_url: Option<String>,
    /// The data format.
    pub format: OaFormat,
    /// The encryption mode.
    pub mode: OaMode,
}

impl OaAccount {
    /// An account in safe mode with the XML format, `ToUserName` [`DEFAULT_OA_ORIGINAL_ID`], and
    /// no URL.
    pub fn new(
        token: impl Into<String>,
        aes_key: impl Into<String>,
        appid: impl Into<String>,
    ) -> OaAccount {
        OaAccount {
            token: token.into(),
            aes_key: aes_key.into(),
            appid: appid.into(),
            original_id: DEFAULT_OA_ORIGINAL_ID.to_owned(),
            callback_url: None,
            format: OaFormat::Xml,
            mode: OaMode::Safe,
        }
    }
}

impl fmt::Debug for OaAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OaAccount")
            .field("token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .field("appid", &self.appid)
            .field("original_id", &self.original_id)
            .field(
                "callback_url",
                &self.callback_url.as_ref().map(|_| "<redacted>"),
            )
            .field("format", &self.format)
            .field("mode", &self.mode)
            .finish()
    }
}

/// A text message the user sends to the Official Account: the body of
/// `POST /sandbox/oa/users/{openid}/say`.
///
/// ```json
/// {"text": "你好", "format": "json", "mode": "compatible"}
/// ```
///
/// `format` and `mode` default to the account's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OaSay {
    /// What the user types. Must not be empty.
    pub text: String,
    /// This push's format instead of the account's.
    #[serde(default)]
    pub format: Option<OaFormat>,
    /// This push's mode instead of the account's.
    #[serde(default)]
    pub mode: Option<OaMode>,
}

impl OaSay {
    /// The user types `text`; the push uses the account's format and mode.
    pub fn new(text: impl Into<String>) -> OaSay {
        OaSay {
            text: text.into(),
            format: None,
            mode: None,
        }
    }

    /// In this format.
    #[must_use]
    pub fn format(mut self, format: OaFormat) -> OaSay {
        self.format = Some(format);
        self
    }

    /// In this mode.
    #[must_use]
    pub fn mode(mut self, mode: OaMode) -> OaSay {
        self.mode = Some(mode);
        self
    }
}

/// The answer to an Official Account push: the exact request and what became of it.
///
/// In JSON, `msg_id` is a string (64-bit ids do not fit a JavaScript number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OaPushOutcome {
    /// The user (`FromUserName`, and `openid` in the query).
    pub openid: String,
    /// The message's `MsgId`.
    #[serde(with = "msg_id_text")]
    pub msg_id: u64,
    /// The message's `CreateTime`, Unix seconds.
    pub create_time: i64,
    /// The push's format.
    pub format: OaFormat,
    /// The push's mode.
    pub mode: OaMode,
    /// The message plaintext (XML or JSON), before encryption.
    pub plaintext: String,
    /// The `Encrypt` value; `None` in plain mode.
    pub encrypt: Option<String>,
    /// The query string appended to the URL (after any query of its own), without the `?`.
    pub query: String,
    /// The request body.
    pub body: String,
    /// What became of the push.
    pub callback: CallbackDelivery,
}

/// `MsgId` as a JSON string; reading accepts a string or a number.
mod msg_id_text {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(deserializer)? {
            Either::Text(text) => text.parse().map_err(D::Error::custom),
            Either::Number(number) => Ok(number),
        }
    }
}

/// One push as built, kept for `redeliver`.
#[derive(Debug, Clone)]
struct Sent {
    openid: String,
    msg_id: u64,
    create_time: i64,
    format: OaFormat,
    mode: OaMode,
    text: String,
    plaintext: String,
    timestamp: String,
    nonce: String,
    encrypt: Option<String>,
    query: String,
    body: String,
}

/// The running account. Deliberately not `Debug`: it holds the Token.
pub(crate) struct OfficialAccount {
    appid: String,
    token: Box<str>,
    crypt: MsgCrypt,
    original_id: String,
    format: OaFormat,
    mode: OaMode,
    target: Target,
    next_msg_id: AtomicU64,
    last: Mutex<HashMap<String, Sent>>,
}

impl OfficialAccount {
    /// The account, its settings already validated (`crypt` holds its Token, key and AppID).
    pub(crate) fn new(account: &OaAccount, crypt: MsgCrypt, target: Target) -> OfficialAccount {
        // Real MsgIds are large 64-bit numbers; start somewhere random in the upper half of the
        // i64 range and count up, so that ids never repeat within a run.
        let first = rand::rng().random_range((1u64 << 62)..(1u64 << 62) + (1u64 << 61));
        OfficialAccount {
            appid: account.appid.clone(),
            token: account.token.as_str().into(),
            crypt,
            original_id: account.original_id.clone(),
            format: account.format,
            mode: account.mode,
            target,
            next_msg_id: AtomicU64::new(first),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The account's AppID.
    pub(crate) fn appid(&self) -> &str {
        &self.appid
    }

    /// The URL without its path, safe to log.
    pub(crate) fn set_target(&self, uri: hyper::Uri) {
        self.target.set(uri);
    }

    pub(crate) fn redacted_target(&self) -> Option<String> {
        self.target.redacted()
    }

    /// The user writes `say.text` to the account: builds the push, remembers it, delivers it.
    pub(crate) async fn say(
        &self,
        openid: &str,
        say: OaSay,
        now_secs: i64,
    ) -> Result<OaPushOutcome, SayError> {
        if openid.is_empty() {
            return Err(SayError::EmptyOpenid);
        }
        if say.text.is_empty() {
            return Err(SayError::EmptyText);
        }
        check_xml_chars("openid", openid)?;
        check_xml_chars("text", &say.text)?;
        let mut sent = Sent {
            openid: openid.to_owned(),
            msg_id: self.next_msg_id.fetch_add(1, Ordering::Relaxed),
            create_time: now_secs,
            format: say.format.unwrap_or(self.format),
            mode: say.mode.unwrap_or(self.mode),
            text: say.text,
            plaintext: String::new(),
            timestamp: now_secs.to_string(),
            nonce: rand::rng().random::<u32>().to_string(),
            encrypt: None,
            query: String::new(),
            body: String::new(),
        };
        sent.plaintext = self.message(&sent, None);
        self.seal(&mut sent)?;
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(openid.to_owned(), sent.clone());
        Ok(self
            .deliver(sent, "the user wrote to the Official Account")
            .await)
    }

    /// Sends the user's last push again: the same request, or the same plaintext encrypted again
    /// (same `timestamp` and `nonce`, a fresh random prefix, `msg_signature` recomputed; in
    /// plain mode there is nothing to re-encrypt, so the same request).
    pub(crate) async fn redeliver(
        &self,
        openid: &str,
        how: Redelivery,
    ) -> Result<OaPushOutcome, SayError> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(openid)
            .cloned();
        let Some(mut sent) = last else {
            return Err(SayError::NothingToRedeliver {
                openid: openid.to_owned(),
                what: "Official Account message",
            });
        };
        if how == Redelivery::Reencrypt {
            self.seal(&mut sent)?;
        }
        Ok(self
            .deliver(sent, "an Official Account push was sent again")
            .await)
    }

    async fn deliver(&self, sent: Sent, what: &'static str) -> OaPushOutcome {
        let delivery = self
            .target
            .post(
                Some(&sent.query),
                sent.format.content_type(),
                Bytes::from(sent.body.clone()),
            )
            .await;
        tracing::info!(
            openid = sent.openid,
            msg_id = sent.msg_id,
            format = sent.format.as_str(),
            mode = sent.mode.as_str(),
            callback = ?delivery,
            target = self.target.redacted().as_deref(),
            "{what}"
        );
        OaPushOutcome {
            openid: sent.openid,
            msg_id: sent.msg_id,
            create_time: sent.create_time,
            format: sent.format,
            mode: sent.mode,
            plaintext: sent.plaintext,
            encrypt: sent.encrypt,
            query: sent.query,
            body: sent.body,
            callback: delivery,
        }
    }

    /// Encrypts the plaintext (with a fresh random prefix) unless in plain mode, then writes the
    /// body and the signed query.
    fn seal(&self, sent: &mut Sent) -> Result<(), SayError> {
        sent.encrypt = match sent.mode {
            OaMode::Plain => None,
            OaMode::Safe | OaMode::Compatible => {
                Some(self.crypt.encrypt(sent.plaintext.as_bytes())?)
            }
        };
        sent.body = match (sent.mode, sent.encrypt.as_deref()) {
            (OaMode::Safe, Some(encrypt)) => match sent.format {
                OaFormat::Xml => XmlCallback {
                    to_user_name: Some(self.original_id.clone()),
                    encrypt: encrypt.to_owned(),
                    agent_id: None,
                }
                .to_xml()?,
                OaFormat::Json => JsonCallback {
                    to_user_name: Some(self.original_id.clone()),
                    encrypt: encrypt.to_owned(),
                }
                .to_json(),
            },
            (OaMode::Compatible, Some(encrypt)) => self.message(sent, Some(encrypt)),
            _ => sent.plaintext.clone(),
        };
        let signature = sign_plain(&*self.token, &sent.timestamp, &sent.nonce);
        let mut query = format!(
            "signature={}&timestamp={}&nonce={}&openid={}",
            signature,
            encode(&sent.timestamp),
            encode(&sent.nonce),
            encode(&sent.openid)
        );
        if let Some(encrypt) = &sent.encrypt {
            let msg_signature = sign_message(&*self.token, &sent.timestamp, &sent.nonce, encrypt);
            query.push_str("&encrypt_type=aes&msg_signature=");
            query.push_str(msg_signature.as_str());
        }
        sent.query = query;
        Ok(())
    }

    /// The text message in the push's format, with `Encrypt` last when given (compatible mode).
    fn message(&self, sent: &Sent, encrypt: Option<&str>) -> String {
        match sent.format {
            OaFormat::Xml => {
                let mut out = String::from("<xml>");
                cdata(&mut out, "ToUserName", &self.original_id);
                out.push('\n');
                cdata(&mut out, "FromUserName", &sent.openid);
                out.push_str(&format!(
                    "\n<CreateTime>{}</CreateTime>\n",
                    sent.create_time
                ));
                cdata(&mut out, "MsgType", "text");
                out.push('\n');
                cdata(&mut out, "Content", &sent.text);
                out.push_str(&format!("\n<MsgId>{}</MsgId>\n", sent.msg_id));
                if let Some(encrypt) = encrypt {
                    cdata(&mut out, "Encrypt", encrypt);
                    out.push('\n');
                }
                out.push_str("</xml>");
                out
            }
            OaFormat::Json => {
                let mut pairs = vec![
                    ("ToUserName", Value::from(self.original_id.as_str())),
                    ("FromUserName", Value::from(sent.openid.as_str())),
                    ("CreateTime", Value::from(sent.create_time)),
                    ("MsgType", Value::from("text")),
                    ("Content", Value::from(sent.text.as_str())),
                    ("MsgId", Value::from(sent.msg_id)),
                ];
                if let Some(encrypt) = encrypt {
                    pairs.push(("Encrypt", Value::from(encrypt)));
                }
                let fields: Vec<String> = pairs
                    .into_iter()
                    .map(|(key, value)| format!("{}:{value}", Value::from(key)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        }
    }
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// `<tag><![CDATA[value]]></tag>`, with `]]>` split across sections and a carriage return
/// written as `&#13;` outside CDATA (a parser would turn a raw one into a line feed).
fn cdata(out: &mut String, tag: &str, value: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    if value.is_empty() {
        out.push_str("<![CDATA[]]>");
    }
    for (index, line) in value.split('\r').enumerate() {
        if index > 0 {
            out.push_str("&#13;");
        }
        if !line.is_empty() {
            out.push_str("<![CDATA[");
            out.push_str(&line.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
    }
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Refuses a value with a character XML 1.0 cannot carry.
pub(crate) fn check_xml_chars(field: &'static str, value: &str) -> Result<(), SayError> {
    match value.chars().enumerate().find(|(_, c)| !is_xml_char(*c)) {
        Some((position, c)) => Err(SayError::Unrepresentable {
            field,
            position,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use kefu_payload::envelope::extract;

    use super::*;

    const TOKEN: &str = "OaToken123";
    const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APPID: &str = "wx2c2769f8efd9abc2";

    fn account() -> OfficialAccount {
        let config = OaAccount::new(TOKEN, KEY, APPID);
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        OfficialAccount::new(&config, crypt, Target::new(None))
    }

    fn params(query: &str) -> HashMap<String, String> {
        query
            .split('&')
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap();
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .unwrap();
                (key.to_owned(), value.into_owned())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_safe_mode_xml_push_is_signed_and_encrypted() {
        let oa = account();
        let outcome = oa
            .say("o+USER/1", OaSay::new("你好 ]]> x"), 1_700_000_000)
            .await
            .unwrap();
        assert_eq!(outcome.callback, CallbackDelivery::NotConfigured);
        assert_eq!(
            outcome.plaintext,
            format!(
                "<xml><ToUserName><![CDATA[gh_000000000000]]></ToUserName>\n<FromUserName><![CDATA[o+USER/1]]></FromUserName>\n<CreateTime>1700000000</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[你好 ]]]]><![CDATA[> x]]></Content>\n<MsgId>{}</MsgId>\n</xml>",
                outcome.msg_id
            )
        );
        assert!(outcome.msg_id >= 1 << 62 && outcome.msg_id < 1 << 63);
        let encrypt = outcome.encrypt.clone().unwrap();
        assert_eq!(
            outcome.body,
            format!(
                "<xml><ToUserName><![CDATA[gh_000000000000]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
            )
        );
        assert!(outcome.query.starts_with("signature="), "{}", outcome.query);
        assert!(
            outcome.query.contains("&openid=o%2BUSER%2F1&"),
            "{}",
            outcome.query
        );
        let q = params(&outcome.query);
        let keys: Vec<&str> = outcome
            .query
            .split('&')
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "signature",
                "timestamp",
                "nonce",
                "openid",
                "encrypt_type",
                "msg_signature"
            ]
        );
        assert_eq!(q["encrypt_type"], "aes");
        assert_eq!(q["timestamp"], "1700000000");
        wxbizmsgcrypt::verify_plain(TOKEN, &q["timestamp"], &q["nonce"], &q["signature"]).unwrap();
        wxbizmsgcrypt::verify_message(
            TOKEN,
            &q["timestamp"],
            &q["nonce"],
            &encrypt,
            &q["msg_signature"],
        )
        .unwrap();
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        assert_eq!(
            crypt.decrypt(&encrypt).unwrap().message(),
            outcome.plaintext.as_bytes()
        );
        let parsed = XmlCallback::parse(&outcome.body).unwrap();
        assert_eq!(parsed.encrypt, encrypt);

        let next = oa
            .say("o+USER/1", OaSay::new("again"), 1_700_000_001)
            .await
            .unwrap();
        assert_eq!(next.msg_id, outcome.msg_id + 1);
    }

    #[tokio::test]
    async fn json_compatible_and_plain_variants() {
        let oa = account();
        let json = oa
            .say("o1", OaSay::new("a\"b").format(OaFormat::Json), 5)
            .await
            .unwrap();
        let plaintext: Value = serde_json::from_str(&json.plaintext).unwrap();
        assert_eq!(plaintext["Content"], "a\"b");
        assert_eq!(plaintext["MsgId"].as_u64(), Some(json.msg_id));
        assert!(json.plaintext.starts_with(r#"{"ToUserName":"gh_000000000000","FromUserName":"o1","CreateTime":5,"MsgType":"text""#), "{}", json.plaintext);
        assert_eq!(
            json.body,
            format!(
                r#"{{"ToUserName":"gh_000000000000","Encrypt":"{}"}}"#,
                json.encrypt.unwrap()
            )
        );

        let compatible = oa
            .say("o1", OaSay::new("hi").mode(OaMode::Compatible), 5)
            .await
            .unwrap();
        let encrypt = compatible.encrypt.clone().unwrap();
        assert_eq!(
            compatible.body,
            compatible.plaintext.replace(
                "</xml>",
                &format!("<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>")
            )
        );
        assert_eq!(extract(&compatible.body).unwrap().encrypt, encrypt);
        assert!(
            compatible
                .query
                .contains("&encrypt_type=aes&msg_signature=")
        );

        let compatible_json = oa
            .say(
                "o1",
                OaSay::new("hi")
                    .mode(OaMode::Compatible)
                    .format(OaFormat::Json),
                5,
            )
            .await
            .unwrap();
        let body: Value = serde_json::from_str(&compatible_json.body).unwrap();
        assert_eq!(body["Content"], "hi");
        assert_eq!(body["Encrypt"].as_str(), compatible_json.encrypt.as_deref());

        let plain = oa
            .say("o1", OaSay::new("hi").mode(OaMode::Plain), 5)
            .await
            .unwrap();
        assert_eq!(plain.encrypt, None);
        assert_eq!(plain.body, plain.plaintext);
        let keys: Vec<&str> = plain
            .query
            .split('&')
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(keys, ["signature", "timestamp", "nonce", "openid"]);
    }

    #[tokio::test]
    async fn redelivery_repeats_or_reencrypts() {
        let oa = account();
        let error = oa
            .redeliver("o1", Redelivery::SameCiphertext)
            .await
            .unwrap_err();
        assert!(error.is_conflict(), "{error}");
        let first = oa.say("o1", OaSay::new("hi"), 5).await.unwrap();
        let same = oa
            .redeliver("o1", Redelivery::SameCiphertext)
            .await
            .unwrap();
        assert_eq!((&same.query, &same.body), (&first.query, &first.body));
        let again = oa.redeliver("o1", Redelivery::Reencrypt).await.unwrap();
        assert_ne!(again.encrypt, first.encrypt);
        assert_ne!(again.body, first.body);
        assert_eq!(
            (again.plaintext.as_str(), again.msg_id),
            (first.plaintext.as_str(), first.msg_id)
        );
        let q = params(&again.query);
        let f = params(&first.query);
        assert_eq!(
            (&q["timestamp"], &q["nonce"], &q["signature"]),
            (&f["timestamp"], &f["nonce"], &f["signature"])
        );
        assert_ne!(q["msg_signature"], f["msg_signature"]);
        // The original stays the one a same-ciphertext redelivery repeats.
        let same = oa
            .redeliver("o1", Redelivery::SameCiphertext)
            .await
            .unwrap();
        assert_eq!(same.body, first.body);
    }

    #[tokio::test]
    async fn bad_texts_are_refused() {
        let oa = account();
        let error = oa.say("o1", OaSay::new(""), 5).await.unwrap_err();
        assert_eq!(error.field(), Some("text"));
        let error = oa.say("o1", OaSay::new("a\u{1}"), 5).await.unwrap_err();
        assert_eq!(error.field(), Some("text"));
        assert!(
            error.to_string().contains("U+0001") && error.to_string().contains("position 1"),
            "{error}"
        );
        let error = oa.say("", OaSay::new("a"), 5).await.unwrap_err();
        assert_eq!(error.field(), Some("openid"));
        assert!(
            oa.redeliver("o1", Redelivery::SameCiphertext)
                .await
                .is_err(),
            "nothing was kept"
        );
    }

    #[test]
    fn outcomes_carry_the_msg_id_as_text() {
        let outcome = OaPushOutcome {
            openid: "o".into(),
            msg_id: 6_054_768_590_064_713_728,
            create_time: 1,
            format: OaFormat::Xml,
            mode: OaMode::Safe,
            plaintext: String::new(),
            encrypt: None,
            query: String::new(),
            body: String::new(),
            callback: CallbackDelivery::NotConfigured,
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["msg_id"], "6054768590064713728");
        assert_eq!(json["format"], "xml");
        assert_eq!(
            serde_json::from_value::<OaPushOutcome>(json).unwrap(),
            outcome
        );
        let debug = format!("{:?}", OaAccount::new(TOKEN, KEY, APPID));
        assert!(
            !debug.contains(TOKEN) && !debug.contains(KEY) && debug.contains(APPID),
            "{debug}"
        );
    }
}
