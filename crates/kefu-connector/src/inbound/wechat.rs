//! The standard WeChat callbacks of the configured accounts (protocols.md §3.7): URL
//! verification (`GET`) and message pushes (`POST`) at `/v1/callbacks/wechat/{name}`.
//!
//! * Plaintext mode (no `encrypt_type`, or `raw`): the plain `signature` over the Token,
//!   `timestamp` and `nonce` is checked, and the body is the message. Only an account in `plain`
//!   mode takes these: the plain `signature` covers no body, and a safe-mode push's URL carries
//!   one, so anyone who saw such a URL (proxies and access logs keep them) could otherwise post
//!   any message under it.
//! * Safe mode (`encrypt_type=aes`) and compatible mode (plaintext fields next to `Encrypt`):
//!   `msg_signature` over the Token, `timestamp`, `nonce` and `Encrypt` is checked, then
//!   `Encrypt` is decrypted (with the current key, then the previous one) and its receive-id
//!   checked; only the decrypted message is read. WeCom accounts are always in this mode.
//!
//! Before anything is stored, a `timestamp` further than `callbacks.replay_window_secs` from
//! now is refused, and so is a (timestamp, nonce, signature) already accepted with another
//! body (a plain `signature` covers no body). The plain `signature` of an accepted encrypted
//! push is remembered too, so that it cannot be replayed as a plaintext push. The same request
//! again is a redelivery.
//!
//! The answers leak nothing: every refusal before the request is authenticated (unknown account,
//! query, mode, timestamp, signature, envelope) is the same 403, so account names cannot be
//! enumerated; every failure after it (decryption, receive-id, the message inside) is the same
//! 400, so the answers are no padding oracle. The precise reason goes to the log.

use std::collections::HashMap;

use kefu_payload::envelope::{JsonCallback, XmlCallback};
use sha2::{Digest as _, Sha256};
use wxbizmsgcrypt::{AesKey, MsgCrypt};

use super::message::{MessageError, StandardMessage};
use super::query::Query;
use crate::config::{AccountKind, Secret, WechatAccount, WechatMode};

/// The one answer to every refusal before a callback is authenticated.
pub const UNAUTHENTICATED_ANSWER: &str = "refused: check the account name in the URL, the Token and this server's clock (the reason is in the relay's log)";

/// The one answer to every authenticated callback whose content cannot be used.
pub const UNREADABLE_ANSWER: &str = "bad request";

/// Why a WeChat callback was refused. The `Display` text names the failed check and never holds
/// the Token, a key or the message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatRejection {
    /// No account has that name.
    #[error("no WeChat account is configured under this name")]
    UnknownAccount,
    /// A query parameter is missing.
    #[error("the query has no {0}")]
    MissingParam(&'static str),
    /// `encrypt_type` is neither `aes` nor `raw`.
    #[error("encrypt_type must be aes or raw")]
    EncryptType,
    /// A plaintext push to an account in safe or compatible mode.
    #[error(
        "a push without encrypt_type=aes and msg_signature, but the account is in {} mode: a plain signature covers no body; if the account's console says 明文模式, set its mode to plain",
        .0.as_str()
    )]
    Unencrypted(WechatMode),
    /// The timestamp is not a number or is outside the window.
    #[error("timestamp {timestamp:?} is not within {window_secs} s of now")]
    Timestamp {
        /// The timestamp received.
        timestamp: String,
        /// The accepted distance.
        window_secs: u64,
    },
    /// A signature does not verify.
    #[error("{0}")]
    Signature(wxbizmsgcrypt::Error),
    /// The (timestamp, nonce, signature) was already used.
    #[error("this timestamp, nonce and signature were already used with another body: a replay")]
    Replayed,
    /// The body is not an envelope (or not UTF-8).
    #[error("the body is not a callback envelope: {0}")]
    Body(String),
    /// The push is encrypted but the account has no `aes_key`.
    #[error("the push is encrypted but the account has no aes_key")]
    NoKey,
    /// Decryption failed with every key (base64, padding, length, receive-id), or what it gave
    /// is not a message. The text is for the log only.
    #[error("decryption failed: {0}")]
    Decrypt(String),
    /// The plaintext is not a message.
    #[error("the message cannot be read: {0}")]
    Message(MessageError),
}

impl WechatRejection {
    /// Whether the refusal came before the request was authenticated by a signature.
    fn before_authentication(&self) -> bool {
        matches!(
            self,
            WechatRejection::UnknownAccount
                | WechatRejection::MissingParam(_)
                | WechatRejection::EncryptType
                | WechatRejection::Unencrypted(_)
                | WechatRejection::Timestamp { .. }
                | WechatRejection::Signature(_)
                | WechatRejection::Body(_)
        )
    }

    /// The HTTP status: 403 for every refusal before the request is authenticated (an unknown
    /// account included, so that names cannot be enumerated) and for a replay, 400 for every
    /// authenticated request whose content cannot be used (every decryption failure alike, so
    /// that the answer is no padding oracle).
    pub fn status(&self) -> u16 {
        if self.before_authentication() || *self == WechatRejection::Replayed {
            403
        } else {
            400
        }
    }

    /// The metric label of the failed check. Every decryption failure is `decrypt`.
    pub fn reason(&self) -> &'static str {
        match self {
            WechatRejection::UnknownAccount => "unknown_account",
            WechatRejection::MissingParam(_) => "query",
            WechatRejection::EncryptType => "encrypt_type",
            WechatRejection::Unencrypted(_) => "unencrypted",
            WechatRejection::Timestamp { .. } => "timestamp",
            WechatRejection::Signature(_) => "signature",
            WechatRejection::Replayed => "replay",
            WechatRejection::Body(_) => "body",
            WechatRejection::NoKey => "no_key",
            WechatRejection::Decrypt(_) => "decrypt",
            WechatRejection::Message(_) => "message",
        }
    }

    /// The short answer body: one text for all refusals before authentication, one for all
    /// unusable content after it.
    pub fn answer(&self) -> &'static str {
        if self.before_authentication() {
            UNAUTHENTICATED_ANSWER
        } else if *self == WechatRejection::Replayed {
            "replayed request"
        } else {
            UNREADABLE_ANSWER
        }
    }
}

/// A message push that passed every check but the replay and dedup checks, which need the store.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message.
    pub message: StandardMessage,
    /// Account, timestamp, nonce and the signature that authenticated the push.
    pub replay_key: String,
    /// The same for the valid plain `signature` an encrypted push also carries, if any.
    pub plain_replay_key: Option<String>,
    /// The SHA-256 (hex) of the body.
    pub body_sha256: String,
    /// The timestamp, in Unix seconds.
    pub timestamp: i64,
    /// The redelivery key: the account and [`StandardMessage::dedup_key`].
    pub dedup_key: String,
}

/// One account, ready to check its callbacks.
pub struct Account {
    name: String,
    kind: AccountKind,
    mode: WechatMode,
    token: Secret,
    /// Newest first.
    crypts: Vec<MsgCrypt>,
}

impl Account {
    /// Builds the account's crypts (current key, then previous).
    pub fn new(config: &WechatAccount) -> Result<Account, wxbizmsgcrypt::Error> {
        let mut crypts = Vec::new();
        for key in [&config.aes_key, &config.previous_aes_key]
            .into_iter()
            .flatten()
        {
            crypts.push(MsgCrypt::with_key(
                config.token.expose(),
                AesKey::parse(key.expose())?,
                config.receive_id.as_bytes(),
            ));
        }
        Ok(Account {
            name: config.name.clone(),
            kind: config.kind,
            mode: config.mode,
            token: config.token.clone(),
            crypts,
        })
    }

    /// The account's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decrypts with each key, newest first. When all fail, a receive-id mismatch is reported
    /// in preference (the key was right but the id was not), else the newest key's failure; the
    /// report is for the log, the answer is the same whatever failed.
    fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, WechatRejection> {
        let mut failures = Vec::new();
        for crypt in &self.crypts {
            match crypt.decrypt(encrypt) {
                Ok(plaintext) => return Ok(plaintext.into_message()),
                Err(error) => failures.push(error),
            }
        }
        let reported = match failures
            .iter()
            .position(wxbizmsgcrypt::Error::is_receive_id)
        {
            Some(index) => failures.swap_remove(index),
            None if failures.is_empty() => return Err(WechatRejection::NoKey),
            None => failures.swap_remove(0),
        };
        Err(WechatRejection::Decrypt(reported.to_string()))
    }

    /// The replay key of a URL verification that passed, with its timestamp: its plain
    /// `signature` would also let a push through in plain mode, so it is remembered like a push's.
    pub fn url_verification_replay_key(&self, query: &Query) -> Option<(String, i64)> {
        let timestamp = query.get("timestamp")?.parse::<i64>().ok()?;
        let nonce = query.get("nonce")?;
        let signature = query.get("signature")?;
        Some((
            replay_key(&self.name, timestamp, nonce, signature),
            timestamp,
        ))
    }

    /// URL verification: the body to answer with, exactly.
    pub fn verify_url(&self, query: &Query) -> Result<Vec<u8>, WechatRejection> {
        let timestamp = query
            .get("timestamp")
            .ok_or(WechatRejection::MissingParam("timestamp"))?;
        let nonce = query
            .get("nonce")
            .ok_or(WechatRejection::MissingParam("nonce"))?;
        match self.kind {
            AccountKind::OfficialAccount | AccountKind::MiniProgram => {
                let signature = query
                    .get("signature")
                    .ok_or(WechatRejection::MissingParam("signature"))?;
                let echostr = query
                    .get("echostr")
                    .ok_or(WechatRejection::MissingParam("echostr"))?;
                wxbizmsgcrypt::verify_plain(self.token.expose(), timestamp, nonce, signature)
                    .map_err(WechatRejection::Signature)?;
                Ok(echostr.as_bytes().to_vec())
            }
            AccountKind::WeCom => {
                let signature = query
                    .get("msg_signature")
                    .ok_or(WechatRejection::MissingParam("msg_signature"))?;
                let echostr = query
                    .get_base64("echostr")
                    .ok_or(WechatRejection::MissingParam("echostr"))?;
                wxbizmsgcrypt::verify_message(
                    self.token.expose(),
                    timestamp,
                    nonce,
                    &echostr,
                    signature,
                )
                .map_err(WechatRejection::Signature)?;
                self.decrypt(&echostr)
            }
        }
    }

    /// Checks and reads a message push received at `now_secs`.
    pub fn receive(
        &self,
        query: &Query,
        body: &[u8],
        now_secs: i64,
        window_secs: u64,
    ) -> Result<Received, WechatRejection> {
        let timestamp_text = query
            .get("timestamp")
            .ok_or(WechatRejection::MissingParam("timestamp"))?;
        let nonce = query
            .get("nonce")
            .ok_or(WechatRejection::MissingParam("nonce"))?;
        let timestamp = timestamp_text
            .parse::<i64>()
            .ok()
            .filter(|t| t.abs_diff(now_secs) <= window_secs)
            .ok_or_else(|| WechatRejection::Timestamp {
                timestamp: timestamp_text.chars().take(32).collect(),
                window_secs,
            })?;
        let text = std::str::from_utf8(body)
            .map_err(|_| WechatRejection::Body("the body is not UTF-8".into()))?;
        let encrypted = match query.get("encrypt_type") {
            Some("aes") => true,
            Some("raw") => false,
            Some(_) => return Err(WechatRejection::EncryptType),
            // WeCom sends no encrypt_type; its pushes are always encrypted.
            None => self.kind == AccountKind::WeCom,
        };
        if !encrypted && self.mode.requires_encryption() {
            return Err(WechatRejection::Unencrypted(self.mode));
        }
        let replay_key = |signature: &str| replay_key(&self.name, timestamp, nonce, signature);
        let (replay_key, plain_replay_key, message) = if encrypted {
            let signature = query
                .get("msg_signature")
                .ok_or(WechatRejection::MissingParam("msg_signature"))?;
            let encrypt = if text.trim_start().starts_with('<') {
                XmlCallback::parse(text).map(|envelope| envelope.encrypt)
            } else {
                JsonCallback::parse(text).map(|envelope| envelope.encrypt)
            }
            .map_err(|e| WechatRejection::Body(e.to_string()))?;
            wxbizmsgcrypt::verify_message(
                self.token.expose(),
                timestamp_text,
                nonce,
                &encrypt,
                signature,
            )
            .map_err(WechatRejection::Signature)?;
            let plaintext = self.decrypt(&encrypt)?;
            // Every failure from here on is reported as a decryption failure: whether the
            // padding was right shows in what the plaintext turned out to be.
            let plaintext = String::from_utf8(plaintext)
                .map_err(|_| WechatRejection::Decrypt("the plaintext is not UTF-8".into()))?;
            let message = StandardMessage::parse(&plaintext).map_err(|e| {
                WechatRejection::Decrypt(format!("the decrypted message cannot be read: {e}"))
            })?;
            // The same URL's plain signature, were it reused on a plaintext body, must find
            // this push in the replay cache (an account in plain mode may also take encrypted
            // pushes). Only a valid one is kept, so that it cannot be used to fill the cache.
            let plain = query.get("signature").filter(|plain| {
                wxbizmsgcrypt::verify_plain(self.token.expose(), timestamp_text, nonce, plain)
                    .is_ok()
            });
            (replay_key(signature), plain.map(replay_key), Ok(message))
        } else {
            let signature = query
                .get("signature")
                .ok_or(WechatRejection::MissingParam("signature"))?;
            wxbizmsgcrypt::verify_plain(self.token.expose(), timestamp_text, nonce, signature)
                .map_err(WechatRejection::Signature)?;
            (replay_key(signature), None, StandardMessage::parse(text))
        };
        let message = message.map_err(WechatRejection::Message)?;
        Ok(Received {
            // A signature has one spelling (lower-case hex), so the text is the key.
            replay_key,
            plain_replay_key,
            timestamp,
            body_sha256: hex::encode(Sha256::digest(body)),
            dedup_key: format!("wechat:{}:{}", self.name, message.dedup_key()),
            message,
        })
    }
}

/// The key under which a (timestamp, nonce, signature) of an account is remembered.
fn replay_key(account: &str, timestamp: i64, nonce: &str, signature: &str) -> String {
    format!("{account}:{timestamp}:{nonce}:{signature}")
}

/// The configured accounts, by name.
pub struct Accounts {
    by_name: HashMap<String, Account>,
    /// Stands in for an unknown name: its random Token verifies no signature.
    decoy: Account,
}

impl Accounts {
    /// Builds every configured account.
    pub fn new(configs: &[WechatAccount]) -> Result<Accounts, wxbizmsgcrypt::Error> {
        let mut by_name = HashMap::new();
        for config in configs {
            by_name.insert(config.name.clone(), Account::new(config)?);
        }
        let decoy = Account {
            name: String::new(),
            kind: AccountKind::OfficialAccount,
            mode: WechatMode::Plain,
            token: Secret::new(hex::encode(rand::random::<[u8; 16]>())),
            crypts: Vec::new(),
        };
        Ok(Accounts { by_name, decoy })
    }

    /// Whether an account of that name is configured.
    pub fn knows(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Runs `check` on the account of that name. An unknown name runs it on the decoy, whose
    /// signature check fails, so that it costs what refusing a known account costs and no
    /// timing tells the names apart; it is then refused as [`WechatRejection::UnknownAccount`],
    /// which is answered like every refusal before authentication.
    pub fn check<T>(
        &self,
        name: &str,
        check: impl FnOnce(&Account) -> Result<T, WechatRejection>,
    ) -> Result<T, WechatRejection> {
        match self.by_name.get(name) {
            Some(account) => check(account),
            None => {
                let _ = check(&self.decoy);
                Err(WechatRejection::UnknownAccount)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_payload::envelope::XmlCallback;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const OLD_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const NOW: i64 = 1_700_000_000;
    const MSG: &str = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oU</FromUserName><CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>42</MsgId></xml>";

    fn account(kind: AccountKind, receive_id: &str) -> Account {
        account_in(kind, WechatMode::Safe, receive_id)
    }

    fn account_in(kind: AccountKind, mode: WechatMode, receive_id: &str) -> Account {
        Account::new(&WechatAccount {
            name: "main".into(),
            kind,
            mode,
            token: Secret::new("TOKEN"),
            aes_key: Some(Secret::new(KEY)),
            previous_aes_key: Some(Secret::new(OLD_KEY)),
            receive_id: receive_id.into(),
            send: None,
        })
        .unwrap()
    }

    fn signed_query(encrypt: &str, timestamp: &str, extra: &str) -> Query {
        let signature = wxbizmsgcrypt::sign_message("TOKEN", timestamp, "n1", encrypt);
        Query::parse(&format!(
            "timestamp={timestamp}&nonce=n1&msg_signature={}{extra}",
            signature.as_str()
        ))
    }

    #[test]
    fn oa_url_verification_echoes_exactly() {
        let account = account(AccountKind::OfficialAccount, "wx1");
        let signature = wxbizmsgcrypt::sign_plain("TOKEN", "1", "2");
        let query = Query::parse(&format!(
            "signature={}&timestamp=1&nonce=2&echostr=a%2Bb+c",
            signature.as_str()
        ));
        assert_eq!(account.verify_url(&query).unwrap(), b"a+b+c");
        let bad = Query::parse(
            "signature=0000000000000000000000000000000000000000&timestamp=1&nonce=2&echostr=x",
        );
        let error = account.verify_url(&bad).unwrap_err();
        assert_eq!(
            (error.status(), error.answer()),
            (403, UNAUTHENTICATED_ANSWER)
        );
    }

    #[test]
    fn safe_mode_with_either_key_and_every_refusal() {
        let account = account(AccountKind::OfficialAccount, "wx1");
        for key in [KEY, OLD_KEY] {
            let crypt = MsgCrypt::new("TOKEN", key, "wx1").unwrap();
            let encrypt = crypt.encrypt(MSG.as_bytes()).unwrap();
            let body = XmlCallback {
                to_user_name: Some("gh_1".into()),
                encrypt: encrypt.clone(),
                agent_id: None,
            }
            .to_xml()
            .unwrap();
            let query = signed_query(&encrypt, "1700000000", "&encrypt_type=aes");
            let received = account.receive(&query, body.as_bytes(), NOW, 300).unwrap();
            assert_eq!(received.message.content.as_deref(), Some("hi"));
            assert_eq!(received.dedup_key, "wechat:main:msgid:42");
            assert_eq!(
                received.plain_replay_key, None,
                "no plain signature in the query"
            );
            assert!(received.replay_key.starts_with("main:1700000000:n1:"));
        }
        let crypt = MsgCrypt::new("TOKEN", KEY, "wx-other").unwrap();
        let encrypt = crypt.encrypt(MSG.as_bytes()).unwrap();
        let body = format!(r#"{{"Encrypt":"{encrypt}"}}"#);
        let query = signed_query(&encrypt, "1700000000", "&encrypt_type=aes");
        let error = account
            .receive(&query, body.as_bytes(), NOW, 300)
            .unwrap_err();
        assert_eq!(
            (error.status(), error.reason(), error.answer()),
            (400, "decrypt", UNREADABLE_ANSWER)
        );
        let error = account
            .receive(&query, body.as_bytes(), NOW + 301, 300)
            .unwrap_err();
        assert_eq!((error.status(), error.reason()), (403, "timestamp"));
        let tampered = signed_query("x", "1700000000", "&encrypt_type=aes");
        let error = account
            .receive(&tampered, body.as_bytes(), NOW, 300)
            .unwrap_err();
        assert_eq!((error.status(), error.reason()), (403, "signature"));
        let error = account
            .receive(&Query::parse("timestamp=1700000000"), b"", NOW, 300)
            .unwrap_err();
        assert_eq!((error.status(), error.reason()), (403, "query"));
    }

    #[test]
    fn plaintext_mode_checks_the_plain_signature() {
        let account = account_in(AccountKind::MiniProgram, WechatMode::Plain, "wx1");
        let signature = wxbizmsgcrypt::sign_plain("TOKEN", "1700000000", "n1");
        let query = Query::parse(&format!(
            "signature={}&timestamp=1700000000&nonce=n1",
            signature.as_str()
        ));
        let received = account.receive(&query, MSG.as_bytes(), NOW, 300).unwrap();
        assert_eq!(received.message.from_user_name, "oU");
        let raw = Query::parse(&format!(
            "signature={}&timestamp=1700000000&nonce=n2&encrypt_type=raw",
            signature.as_str()
        ));
        let error = account.receive(&raw, MSG.as_bytes(), NOW, 300).unwrap_err();
        assert_eq!(error.reason(), "signature");
    }

    #[test]
    fn wecom_url_verification_decrypts_and_checks_the_receive_id() {
        let account = account(AccountKind::WeCom, "ww-corp");
        let crypt = MsgCrypt::new("TOKEN", KEY, "ww-corp").unwrap();
        // Find an echostr with a '+' in it, to check the single decode.
        let echostr = (0..1000)
            .map(|i| crypt.encrypt(format!("echo{i}").as_bytes()).unwrap())
            .find(|e| e.contains('+'))
            .unwrap();
        let signature = wxbizmsgcrypt::sign_message("TOKEN", "1", "2", &echostr);
        let encoded = echostr
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let query = Query::parse(&format!(
            "msg_signature={}&timestamp=1&nonce=2&echostr={encoded}",
            signature.as_str()
        ));
        assert!(account.verify_url(&query).unwrap().starts_with(b"echo"));
        let other = account_with_id("ww-other");
        let error = other.verify_url(&query).unwrap_err();
        assert_eq!(
            (error.status(), error.reason(), error.answer()),
            (400, "decrypt", UNREADABLE_ANSWER)
        );
    }

    fn account_with_id(receive_id: &str) -> Account {
        account(AccountKind::WeCom, receive_id)
    }

    fn safe_push(crypt: &MsgCrypt, plaintext: &str, nonce: &str) -> (Query, String) {
        let encrypt = crypt.encrypt(plaintext.as_bytes()).unwrap();
        let msg_signature = wxbizmsgcrypt::sign_message("TOKEN", "1700000000", nonce, &encrypt);
        let signature = wxbizmsgcrypt::sign_plain("TOKEN", "1700000000", nonce);
        let query = Query::parse(&format!(
            "signature={}&timestamp=1700000000&nonce={nonce}&openid=oU&encrypt_type=aes&msg_signature={}",
            signature.as_str(),
            msg_signature.as_str()
        ));
        (
            query,
            format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
        )
    }

    /// Regression: a safe-mode push's query with `encrypt_type` and `msg_signature` dropped
    /// still carries a valid plain `signature`, and was accepted with any plaintext body.
    #[test]
    fn safe_and_compatible_accounts_refuse_a_plaintext_push_under_a_real_signature() {
        let crypt = MsgCrypt::new("TOKEN", KEY, "wx1").unwrap();
        let forged = MSG.replace("oU", "oVICTIM");
        for mode in [WechatMode::Safe, WechatMode::Compatible] {
            let account = account_in(AccountKind::OfficialAccount, mode, "wx1");
            let (query, body) = safe_push(&crypt, MSG, "n1");
            let received = account.receive(&query, body.as_bytes(), NOW, 300).unwrap();
            assert_eq!(received.message.from_user_name, "oU");
            let signature = query.get("signature").unwrap();
            for stripped in [
                format!("signature={signature}&timestamp=1700000000&nonce=n1&openid=oU"),
                format!("signature={signature}&timestamp=1700000000&nonce=n1&encrypt_type=raw"),
            ] {
                let error = account
                    .receive(&Query::parse(&stripped), forged.as_bytes(), NOW, 300)
                    .unwrap_err();
                assert_eq!(error, WechatRejection::Unencrypted(mode), "{stripped}");
                assert_eq!(
                    (error.status(), error.answer()),
                    (403, UNAUTHENTICATED_ANSWER)
                );
            }
        }
    }

    /// Compatible mode: the plaintext fields next to `Encrypt` are ignored, only the encrypted
    /// message is read.
    #[test]
    fn compatible_mode_reads_only_the_encrypted_part() {
        let account = account_in(AccountKind::OfficialAccount, WechatMode::Compatible, "wx1");
        let crypt = MsgCrypt::new("TOKEN", KEY, "wx1").unwrap();
        let (query, envelope) = safe_push(&crypt, MSG, "n1");
        let body = envelope.replace(
            "<Encrypt>",
            "<FromUserName>oVICTIM</FromUserName><Content>forged</Content><Encrypt>",
        );
        let received = account.receive(&query, body.as_bytes(), NOW, 300).unwrap();
        assert_eq!(received.message.from_user_name, "oU");
        assert_eq!(received.message.content.as_deref(), Some("hi"));
    }

    /// An accepted encrypted push's plain signature is a replay key too, so that it cannot be
    /// reused on a plaintext body by an account that takes both.
    #[test]
    fn an_encrypted_push_also_keys_its_plain_signature() {
        let account = account_in(AccountKind::OfficialAccount, WechatMode::Plain, "wx1");
        let crypt = MsgCrypt::new("TOKEN", KEY, "wx1").unwrap();
        let (query, body) = safe_push(&crypt, MSG, "n1");
        let received = account.receive(&query, body.as_bytes(), NOW, 300).unwrap();
        let signature = query.get("signature").unwrap();
        let plain_query = Query::parse(&format!(
            "signature={signature}&timestamp=1700000000&nonce=n1"
        ));
        let forged = account
            .receive(&plain_query, MSG.replace("oU", "oV").as_bytes(), NOW, 300)
            .unwrap();
        assert_eq!(received.plain_replay_key, Some(forged.replay_key));
        // An invalid plain signature next to a valid msg_signature is not kept.
        let (query, body) = safe_push(&crypt, MSG, "n2");
        let mangled = Query::parse(&format!(
            "signature={}&timestamp=1700000000&nonce=n2&encrypt_type=aes&msg_signature={}",
            "0".repeat(40),
            query.get("msg_signature").unwrap()
        ));
        let received = account
            .receive(&mangled, body.as_bytes(), NOW, 300)
            .unwrap();
        assert_eq!(received.plain_replay_key, None);
    }

    /// Regression: a padding failure was 400 "bad request" and a receive-id failure 403
    /// "receive-id mismatch", with different metric labels: an oracle. Now every failure after
    /// the signature is the same answer and label.
    #[test]
    fn every_decryption_failure_is_answered_alike() {
        let account = account(AccountKind::OfficialAccount, "wx1");
        let right = MsgCrypt::new("TOKEN", KEY, "wx1").unwrap();
        let other_id = MsgCrypt::new("TOKEN", KEY, "wx-other").unwrap();
        let other_key = MsgCrypt::new(
            "TOKEN",
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            "wx1",
        )
        .unwrap();
        let mut answers = Vec::new();
        for (crypt, plaintext, nonce) in [
            (&other_id, MSG, "a"),
            (&other_key, MSG, "b"),
            (&right, "not a message", "c"),
            (&right, "<xml><MsgType>text</MsgType></xml>", "d"),
        ] {
            let (query, body) = safe_push(crypt, plaintext, nonce);
            let error = account
                .receive(&query, body.as_bytes(), NOW, 300)
                .unwrap_err();
            answers.push((error.status(), error.reason(), error.answer()));
        }
        let bad_base64 = "<xml><Encrypt>@@@@</Encrypt></xml>";
        let signature = wxbizmsgcrypt::sign_message("TOKEN", "1700000000", "e", "@@@@");
        let query = Query::parse(&format!(
            "timestamp=1700000000&nonce=e&encrypt_type=aes&msg_signature={}",
            signature.as_str()
        ));
        let error = account
            .receive(&query, bad_base64.as_bytes(), NOW, 300)
            .unwrap_err();
        answers.push((error.status(), error.reason(), error.answer()));
        for answer in &answers {
            assert_eq!(*answer, (400, "decrypt", UNREADABLE_ANSWER), "{answers:?}");
        }
    }

    /// Regression: an unknown account was 404 "unknown account", a known one 403: names could
    /// be enumerated without a key.
    #[test]
    fn an_unknown_account_is_answered_like_a_bad_signature() {
        let unknown = WechatRejection::UnknownAccount;
        let signature = WechatRejection::Signature(
            wxbizmsgcrypt::verify_plain("a", "b", "c", "d").unwrap_err(),
        );
        let query = WechatRejection::MissingParam("nonce");
        for rejection in [&unknown, &signature, &query] {
            assert_eq!(
                (rejection.status(), rejection.answer()),
                (403, UNAUTHENTICATED_ANSWER)
            );
        }
    }

    /// Regression (issue 9): an unknown name was refused before any signature was computed, a
    /// few microseconds sooner than a known account, which told the names apart by timing.
    #[test]
    fn an_unknown_name_is_checked_against_a_decoy_and_refused() {
        let accounts = Accounts::new(&[]).unwrap();
        let signature = wxbizmsgcrypt::sign_plain("TOKEN", "1700000000", "n1");
        let query = Query::parse(&format!(
            "signature={}&timestamp=1700000000&nonce=n1",
            signature.as_str()
        ));
        let mut checked = None;
        let error = accounts
            .check("nobody", |account| {
                let result = account.receive(&query, MSG.as_bytes(), NOW, 300);
                checked = result.as_ref().err().map(WechatRejection::reason);
                result
            })
            .unwrap_err();
        assert!(matches!(error, WechatRejection::UnknownAccount), "{error}");
        // The decoy did the work of a known account and failed at the signature.
        assert_eq!(checked, Some("signature"));
    }
}
