//! The yunzhenji accounts the sandbox plays and the settings of its pushes.

use std::fmt;
use std::time::Duration;

/// The `app_id` of the default yunzhenji account, used when none is configured.
pub const DEFAULT_YZJ_APP_ID: &str = "yzj-sandbox";
/// The `access_token` of the default yunzhenji account.
pub const DEFAULT_YZJ_ACCESS_TOKEN: &str = "yzj-sandbox-token";
/// The `wxid` (the WeCom account the vendor drives) of the default yunzhenji account.
pub const DEFAULT_YZJ_WXID: &str = "1688850000000001";

/// The longest push delay a sandbox takes: its runs are short, so a longer one is a mistake.
pub(crate) const MAX_PUSH_DELAY: Duration = Duration::from_secs(3600);

/// One yunzhenji application: its `app_id`, `access_token` and the WeCom account it sends
/// from.
///
/// `Debug` shows the access token as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct YunzhenjiAccount {
    /// The vendor's APP ID.
    pub app_id: String,
    /// The vendor's access token, compared in constant time.
    pub access_token: String,
    /// The WeCom account's wxid: the `wxid` of every call, the `from_wxid` of its echoes.
    pub wxid: String,
}

impl YunzhenjiAccount {
    /// An account.
    pub fn new(
        app_id: impl Into<String>,
        access_token: impl Into<String>,
        wxid: impl Into<String>,
    ) -> YunzhenjiAccount {
        YunzhenjiAccount {
            app_id: app_id.into(),
            access_token: access_token.into(),
            wxid: wxid.into(),
        }
    }

    /// Reads `APP_ID:ACCESS_TOKEN:WXID`, the form of `--yzj-account`. The message never shows
    /// the token.
    pub fn parse(text: &str) -> Result<YunzhenjiAccount, String> {
        let shape = "give APP_ID:ACCESS_TOKEN:WXID, such as yzj-sandbox:<token>:1688850000000001";
        let mut parts = text.splitn(3, ':');
        let (Some(app_id), Some(access_token), Some(wxid)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("not APP_ID:ACCESS_TOKEN:WXID; {shape}"));
        };
        let account = YunzhenjiAccount::new(app_id, access_token, wxid);
        account.check()?;
        Ok(account)
    }

    /// Printable ASCII without spaces or `:`; the message never shows the token.
    pub(crate) fn check(&self) -> Result<(), String> {
        let plain = |value: &str| {
            !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        };
        if !plain(&self.app_id) {
            return Err(format!(
                "the app_id {:?} must be non-empty printable ASCII without ':'",
                self.app_id
            ));
        }
        if !plain(&self.access_token) {
            return Err(format!(
                "the access_token of {} must be non-empty printable ASCII without ':'",
                self.app_id
            ));
        }
        if !plain(&self.wxid) {
            return Err(format!(
                "the wxid of {} must be non-empty printable ASCII without ':'",
                self.app_id
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for YunzhenjiAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YunzhenjiAccount")
            .field("app_id", &self.app_id)
            .field("access_token", &"<redacted>")
            .field("wxid", &self.wxid)
            .finish()
    }
}

/// The yunzhenji side of a sandbox: its accounts, where its callbacks go, when, and how many
/// messages fail.
#[derive(Clone, PartialEq)]
pub struct YunzhenjiSettings {
    /// The accounts; by default one ([`DEFAULT_YZJ_APP_ID`], [`DEFAULT_YZJ_ACCESS_TOKEN`],
    /// [`DEFAULT_YZJ_WXID`]).
    pub accounts: Vec<YunzhenjiAccount>,
    /// Where `chatMsg` and `chatMsgSendFail` go (`http://` only), or nowhere.
    pub callback_url: Option<String>,
    /// How long after a call its pushes start (1 s): the vendor hands messages to the WeCom
    /// client asynchronously.
    pub push_delay: Duration,
    /// The fraction of accepted messages that fail: they get a `chatMsgSendFail` after their
    /// `chatMsg`, 0.0..=1.0.
    pub failure_rate: f64,
}

impl Default for YunzhenjiSettings {
    fn default() -> Self {
        YunzhenjiSettings {
            accounts: vec![YunzhenjiAccount::new(
                DEFAULT_YZJ_APP_ID,
                DEFAULT_YZJ_ACCESS_TOKEN,
                DEFAULT_YZJ_WXID,
            )],
            callback_url: None,
            push_delay: Duration::from_secs(1),
            failure_rate: 0.0,
        }
    }
}

impl fmt::Debug for YunzhenjiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YunzhenjiSettings")
            .field("accounts", &self.accounts)
            .field(
                "callback_url",
                &self.callback_url.as_ref().map(|_| "<redacted>"),
            )
            .field("push_delay", &self.push_delay)
            .field("failure_rate", &self.failure_rate)
            .finish()
    }
}

impl YunzhenjiSettings {
    /// Refuses an invalid account, an `app_id` given twice, or a push delay above an hour;
    /// the error names the setting.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        for (i, account) in self.accounts.iter().enumerate() {
            account
                .check()
                .map_err(|reason| ("--yzj-account", reason))?;
            if self.accounts[..i]
                .iter()
                .any(|a| a.app_id == account.app_id)
            {
                return Err((
                    "--yzj-account",
                    format!("the app_id {} is given twice", account.app_id),
                ));
            }
        }
        check_delay(self.push_delay).map_err(|reason| ("--yzj-push-delay-ms", reason))
    }
}

/// A push delay of at most [`MAX_PUSH_DELAY`].
pub(crate) fn check_delay(delay: Duration) -> Result<(), String> {
    if delay > MAX_PUSH_DELAY {
        return Err(format!(
            "{} ms is above the longest delay, {} ms",
            delay.as_millis(),
            MAX_PUSH_DELAY.as_millis()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_and_never_show_the_token() {
        let account = YunzhenjiAccount::parse("yzj:Top:Secret:x").unwrap_err();
        assert!(account.contains("wxid of yzj"), "{account}");
        let account = YunzhenjiAccount::parse("yzj:TopSecret:1688").unwrap();
        assert_eq!(
            (account.app_id.as_str(), account.wxid.as_str()),
            ("yzj", "1688")
        );
        assert!(!format!("{account:?}").contains("TopSecret"));
        for bad in ["yzj:t", "yzj::w", ":t:w", "yzj:T p:w"] {
            let error = YunzhenjiAccount::parse(bad).unwrap_err();
            assert!(!error.contains("T p"), "{bad}: {error}");
        }
        let mut settings = YunzhenjiSettings::default();
        assert_eq!(settings.check(), Ok(()));
        settings.accounts.push(settings.accounts[0].clone());
        assert!(settings.check().unwrap_err().1.contains("twice"));
        settings.accounts.pop();
        settings.push_delay = MAX_PUSH_DELAY + Duration::from_millis(1);
        assert_eq!(settings.check().unwrap_err().0, "--yzj-push-delay-ms");
        settings.callback_url = Some("http://127.0.0.1:1/hidden".into());
        let debug = format!("{settings:?}");
        assert!(!debug.contains(DEFAULT_YZJ_ACCESS_TOKEN) && !debug.contains("hidden"));
    }
}
