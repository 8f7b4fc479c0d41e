//! The Dialogue platform's handoff callback (protocols.md §4.7): `POST {"encrypted": …}` to
//! `/v1/callbacks/dialogue/{secret}`.
//!
//! The platform cannot sign its callbacks, so the URL's secret segment is the credential, and
//! anyone who learns the URL can submit ciphertexts. Every refusal therefore gets the same answer
//! (§3.5: no padding oracle), and every failure from decryption on (base64, padding, length,
//! receive-id, the plaintext inside) the same metric label, `decrypt`: which of them failed tells
//! whether the padding was right. The precise reason goes to the log only.

use kefu_payload::envelope::DialogueCallback;
use kefu_payload::{HandoffCallback, limits};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use wxbizmsgcrypt::MsgCrypt;

use super::message::xml_to_json;
use crate::config::{ReceiveIdPolicy, Secret};

/// Why a callback was refused. The `Display` text is for the log: it names the failed step and
/// never holds a secret or the message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// `callbacks.dialogue_secret` is not set.
    #[error("callbacks.dialogue_secret is not set, so every Dialogue callback is refused")]
    NotConfigured,
    /// The URL's secret segment is wrong.
    #[error("wrong secret in the callback URL")]
    Secret,
    /// The body is not `{"encrypted": "…"}`.
    #[error("the body is not {{\"encrypted\": \"…\"}}: {0}")]
    Body(String),
    /// Decryption failed (base64, AES padding, framing, receive-id).
    #[error("decryption failed: {0}")]
    Decrypt(wxbizmsgcrypt::Error),
    /// The plaintext is not UTF-8.
    #[error("the plaintext is not UTF-8")]
    Utf8,
    /// The plaintext is not a handoff callback.
    #[error("the plaintext is not a handoff callback: {0}")]
    Xml(kefu_payload::Error),
    /// `createtime` is further from now than `callbacks.replay_window_secs`: a replay of an old
    /// callback, or a clock far off.
    #[error(
        "createtime {createtime} is not within {window_secs} s of now: a replay, or check this server's clock"
    )]
    Stale {
        /// The callback's `createtime`.
        createtime: i64,
        /// The accepted distance.
        window_secs: u64,
    },
}

impl Rejection {
    /// The metric label of the failed step: one label, `decrypt`, for every step from
    /// decryption on, so that the metrics are no padding oracle either.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NotConfigured => "not_configured",
            Rejection::Secret => "secret",
            Rejection::Body(_) => "body",
            Rejection::Decrypt(_) | Rejection::Utf8 | Rejection::Xml(_) => "decrypt",
            Rejection::Stale { .. } => "stale",
        }
    }
}

/// A callback that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The parsed callback.
    pub callback: HandoffCallback,
    /// Every element as received (see [`xml_to_json`]).
    pub raw: Map<String, Value>,
    /// The redelivery key: bot APPID, userid, createtime and the SHA-256 of the plaintext.
    pub dedup_key: String,
    /// The receive-id found, when it differs from the bot APPID (only with
    /// `callbacks.dialogue_receive_id = "log"`).
    pub other_receive_id: Option<String>,
}

/// Checks and reads Dialogue callbacks.
pub struct DialogueReceiver {
    secret: Option<Secret>,
    crypt: MsgCrypt,
    policy: ReceiveIdPolicy,
    bot_appid: String,
    window_secs: u64,
}

impl DialogueReceiver {
    /// A receiver for the bot's key and APPID.
    pub fn new(
        secret: Option<Secret>,
        crypt: MsgCrypt,
        policy: ReceiveIdPolicy,
        bot_appid: String,
        window_secs: u64,
    ) -> DialogueReceiver {
        DialogueReceiver {
            window_secs,
            secret,
            crypt,
            policy,
            bot_appid,
        }
    }

    /// Checks the URL's `secret` in constant time, then reads, decrypts and parses `body`.
    ///
    /// A callback whose `createtime` is further than the window from `now_secs` is refused, so
    /// that a callback seen once (in a proxy's log, say) cannot be stored again once its dedup
    /// key has expired; the dedup key is kept longer than the window.
    pub fn receive(&self, secret: &str, body: &[u8], now_secs: i64) -> Result<Accepted, Rejection> {
        let Some(expected) = &self.secret else {
            return Err(Rejection::NotConfigured);
        };
        if !bool::from(secret.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(Rejection::Secret);
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| Rejection::Body("the body is not UTF-8".into()))?;
        let envelope = DialogueCallback::parse(text).map_err(|e| Rejection::Body(e.to_string()))?;
        let plaintext = match self.policy {
            ReceiveIdPolicy::Strict => self.crypt.decrypt(&envelope.encrypted),
            ReceiveIdPolicy::Log => self.crypt.decrypt_any_receive_id(&envelope.encrypted),
        }
        .map_err(Rejection::Decrypt)?;
        let other_receive_id = (plaintext.receive_id() != self.bot_appid.as_bytes())
            .then(|| String::from_utf8_lossy(plaintext.receive_id()).into_owned());
        let message = plaintext.message();
        let xml = std::str::from_utf8(message).map_err(|_| Rejection::Utf8)?;
        let callback = HandoffCallback::parse(xml).map_err(Rejection::Xml)?;
        // A user id longer than the platform's is no genuine callback, and the desk could not
        // act on it: nothing is stored.
        limits::check("userid", &callback.userid, limits::OPENID)
            .and_then(|()| limits::check("appid", &callback.appid, limits::APPID))
            .map_err(Rejection::Xml)?;
        if let Some(createtime) = callback.createtime
            && createtime.abs_diff(now_secs) > self.window_secs
        {
            return Err(Rejection::Stale {
                createtime,
                window_secs: self.window_secs,
            });
        }
        let raw = xml_to_json(xml).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(message));
        let dedup_key = format!(
            "dialogue:{}:{}:{}:{digest}",
            self.bot_appid,
            callback.userid,
            callback.createtime.unwrap_or_default()
        );
        Ok(Accepted {
            callback,
            raw,
            dedup_key,
            other_receive_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_payload::KefuState;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const SECRET: &str = "0123456789abcdef-callback";

    fn receiver(policy: ReceiveIdPolicy) -> DialogueReceiver {
        DialogueReceiver::new(
            Some(Secret::new(SECRET)),
            MsgCrypt::new("t", KEY, "BOT").unwrap(),
            policy,
            "BOT".into(),
            300,
        )
    }

    /// The `createtime` of [`XML`].
    const NOW: i64 = 1_700_000_000;

    fn body(receive_id: &str, xml: &str) -> Vec<u8> {
        let crypt = MsgCrypt::new("t", KEY, receive_id).unwrap();
        DialogueCallback {
            encrypted: crypt.encrypt(xml.as_bytes()).unwrap(),
        }
        .to_json()
        .into_bytes()
    }

    const XML: &str = "<xml><userid>oU</userid><appid>wx1</appid><content><msg>hi</msg></content><kfstate>3</kfstate><createtime>1700000000</createtime><extra>kept</extra></xml>";

    #[test]
    fn accepts_and_keys_on_the_plaintext() {
        let strict = receiver(ReceiveIdPolicy::Strict);
        let first = strict.receive(SECRET, &body("BOT", XML), NOW).unwrap();
        assert_eq!(first.callback.kfstate, Some(KefuState::NeedPerson));
        assert_eq!(first.raw["extra"], "kept");
        assert_eq!(first.other_receive_id, None);
        // A redelivery is encrypted with a new random prefix, but keys the same.
        let again = strict.receive(SECRET, &body("BOT", XML), NOW).unwrap();
        assert_eq!(first.dedup_key, again.dedup_key);
        assert!(first.dedup_key.starts_with("dialogue:BOT:oU:1700000000:"));
    }

    #[test]
    fn refusals_name_the_step() {
        let strict = receiver(ReceiveIdPolicy::Strict);
        let good = body("BOT", XML);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("wrong-secret-0123456", good.clone(), "secret"),
            (SECRET, b"not json".to_vec(), "body"),
            // Regression: these were `base64`, `aes`, `receive_id` and `xml`, which told bad
            // padding from good.
            (SECRET, br#"{"encrypted":"@@@@"}"#.to_vec(), "decrypt"),
            (
                SECRET,
                br#"{"encrypted":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#.to_vec(),
                "decrypt",
            ),
            (SECRET, body("OTHER", XML), "decrypt"),
            (
                SECRET,
                body("BOT", "<xml><appid>a</appid></xml>"),
                "decrypt",
            ),
            (SECRET, body("BOT", "<notxml/>"), "decrypt"),
        ];
        for (secret, body, reason) in cases {
            let rejection = strict.receive(secret, &body, NOW).unwrap_err();
            assert_eq!(rejection.reason(), reason, "{rejection}");
            assert!(!rejection.to_string().contains(SECRET));
        }
        let unset = DialogueReceiver {
            secret: None,
            ..receiver(ReceiveIdPolicy::Strict)
        };
        assert_eq!(
            unset.receive("", &good, NOW).unwrap_err(),
            Rejection::NotConfigured
        );
    }

    /// Regression (issue 9): a callback seen once could be stored again, as new, once its dedup
    /// key had expired: an old `createtime` was never refused.
    #[test]
    fn callbacks_outside_the_window_and_overlong_ids_are_refused() {
        let strict = receiver(ReceiveIdPolicy::Strict);
        let good = body("BOT", XML);
        assert!(strict.receive(SECRET, &good, NOW + 300).is_ok());
        assert!(strict.receive(SECRET, &good, NOW - 300).is_ok());
        for now in [NOW + 301, NOW - 301, NOW + 2 * 86_400] {
            let rejection = strict.receive(SECRET, &good, now).unwrap_err();
            assert_eq!(rejection.reason(), "stale", "{rejection}");
        }
        let long = XML.replace(
            "<userid>oU</userid>",
            &format!("<userid>{}</userid>", "o".repeat(129)),
        );
        let rejection = strict
            .receive(SECRET, &body("BOT", &long), NOW)
            .unwrap_err();
        assert_eq!(rejection.reason(), "decrypt", "{rejection}");
        assert!(rejection.to_string().contains("userid"), "{rejection}");
    }

    #[test]
    fn log_mode_accepts_another_receive_id_and_reports_it() {
        let log = receiver(ReceiveIdPolicy::Log);
        let accepted = log.receive(SECRET, &body("wx-other", XML), NOW).unwrap();
        assert_eq!(accepted.other_receive_id.as_deref(), Some("wx-other"));
        let accepted = log.receive(SECRET, &body("BOT", XML), NOW).unwrap();
        assert_eq!(accepted.other_receive_id, None);
    }
}
