//! The Official Account and Mini Program accounts whose `api.weixin.qq.com` the sandbox plays,
//! and the clocks of their rules.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The AppID of the default Official Account, used when no account is configured.
pub const DEFAULT_OA_APPID: &str = "wx0a0a0a0a0a0a0a0a";
/// The AppSecret of the default Official Account.
pub const DEFAULT_OA_SECRET: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
/// The AppID of the default Mini Program, used when no account is configured.
pub const DEFAULT_MP_APPID: &str = "wx0b0b0b0b0b0b0b0b";
/// The AppSecret of the default Mini Program.
pub const DEFAULT_MP_SECRET: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

/// What kind of account an AppID belongs to: it decides the message types `custom/send` takes
/// and the typing path (protocols.md §5.1–5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// An Official Account (公众号) or Service Account: every msgtype of §5.1 but `link`,
    /// typing on `/cgi-bin/message/custom/typing`.
    Oa,
    /// A Mini Program (小程序): text, image, link and miniprogrampage, typing on
    /// `/cgi-bin/message/custom/business/typing`.
    Mp,
}

impl AccountKind {
    /// `oa` or `mp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::Oa => "oa",
            AccountKind::Mp => "mp",
        }
    }
}

/// One account of `api.weixin.qq.com`: its AppID, AppSecret and kind.
///
/// `Debug` shows the AppSecret as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiAccount {
    /// The AppID (`wx…`), the `appid` of `stable_token`.
    pub appid: String,
    /// The AppSecret, the `secret` of `stable_token`.
    pub secret: String,
    /// Official Account or Mini Program.
    pub kind: AccountKind,
}

impl ApiAccount {
    /// An account of this kind.
    pub fn new(kind: AccountKind, appid: impl Into<String>, secret: impl Into<String>) -> Self {
        ApiAccount {
            appid: appid.into(),
            secret: secret.into(),
            kind,
        }
    }

    /// Reads `KIND:APPID:SECRET`, the form of `--api-account` (`oa:wx…:…` or `mp:wx…:…`).
    /// The message never shows the secret.
    pub fn parse(text: &str) -> Result<ApiAccount, String> {
        let shape =
            "give KIND:APPID:SECRET, such as oa:wx0a0a0a0a0a0a0a0a:<AppSecret> (KIND is oa or mp)";
        let mut parts = text.splitn(3, ':');
        let (Some(kind), Some(appid), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("not KIND:APPID:SECRET; {shape}"));
        };
        let kind = match kind {
            "oa" => AccountKind::Oa,
            "mp" => AccountKind::Mp,
            other => return Err(format!("unknown kind {other:?}; {shape}")),
        };
        let account = ApiAccount::new(kind, appid, secret);
        account.check()?;
        Ok(account)
    }

    /// An AppID and an AppSecret of printable ASCII without spaces or `:`, as the platform
    /// issues them; the message never shows the secret.
    pub(crate) fn check(&self) -> Result<(), String> {
        let plain = |value: &str| value.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if self.appid.is_empty() || !plain(&self.appid) {
            return Err(format!(
                "the AppID {:?} must be non-empty printable ASCII without ':'",
                self.appid
            ));
        }
        if self.secret.is_empty() || !plain(&self.secret) {
            return Err(format!(
                "the AppSecret of {} must be non-empty printable ASCII without ':'",
                self.appid
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for ApiAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAccount")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("kind", &self.kind)
            .finish()
    }
}

/// The accounts and the clocks of their rules. The defaults are the platform's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// The accounts; by default one Official Account ([`DEFAULT_OA_APPID`]) and one Mini
    /// Program ([`DEFAULT_MP_APPID`]).
    pub accounts: Vec<ApiAccount>,
    /// How long an access token lives (7,200 s). It is renewed in the last 5 minutes of its
    /// life, or in the last half of it when the lifetime is under 10 minutes.
    pub token_lifetime: Duration,
    /// How long a user's message opens the send window (48 h).
    pub send_window: Duration,
    /// How many messages one user message allows (5).
    pub quota_per_message: u32,
    /// How recent an interaction typing needs (30 s).
    pub typing_interaction: Duration,
    /// How long the typing state lasts (15 s).
    pub typing_duration: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            accounts: vec![
                ApiAccount::new(AccountKind::Oa, DEFAULT_OA_APPID, DEFAULT_OA_SECRET),
                ApiAccount::new(AccountKind::Mp, DEFAULT_MP_APPID, DEFAULT_MP_SECRET),
            ],
            token_lifetime: Duration::from_secs(7200),
            send_window: Duration::from_secs(48 * 3600),
            quota_per_message: 5,
            typing_interaction: Duration::from_secs(30),
            typing_duration: Duration::from_secs(15),
        }
    }
}

impl ApiSettings {
    /// Refuses an invalid account, an AppID given twice, or a zero lifetime or window.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        for (i, account) in self.accounts.iter().enumerate() {
            account
                .check()
                .map_err(|reason| ("--api-account", reason))?;
            if self.accounts[..i].iter().any(|a| a.appid == account.appid) {
                return Err((
                    "--api-account",
                    format!("the AppID {} is given twice", account.appid),
                ));
            }
        }
        if self.token_lifetime.is_zero() {
            return Err(("--token-lifetime-secs", "must be at least 1".into()));
        }
        if self.send_window.is_zero() {
            return Err(("--send-window-secs", "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_and_never_show_the_secret() {
        let account = ApiAccount::parse("mp:wx1:se:cret").unwrap_err();
        assert!(account.contains("AppSecret of wx1"), "{account}");
        assert!(!account.contains("se:cret"), "{account}");
        let account = ApiAccount::parse("oa:wx1:TopSecret").unwrap();
        assert_eq!(
            (account.kind, account.appid.as_str()),
            (AccountKind::Oa, "wx1")
        );
        assert!(!format!("{account:?}").contains("TopSecret"));
        for bad in ["oa:wx1", "xx:wx1:s", "oa::s", "oa:wx1:", "oa:w x:s"] {
            let error = ApiAccount::parse(bad).unwrap_err();
            assert!(!error.is_empty(), "{bad}");
        }
    }

    #[test]
    fn settings_refuse_duplicates_and_zero_clocks() {
        assert_eq!(ApiSettings::default().check(), Ok(()));
        let mut settings = ApiSettings::default();
        settings.accounts.push(settings.accounts[0].clone());
        assert_eq!(settings.check().unwrap_err().0, "--api-account");
        let settings = ApiSettings {
            token_lifetime: Duration::ZERO,
            ..ApiSettings::default()
        };
        assert_eq!(settings.check().unwrap_err().0, "--token-lifetime-secs");
    }
}
