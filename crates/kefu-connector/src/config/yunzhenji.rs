//! `[yunzhenji.<name>]`: the yunzhenji (云真机) accounts, WeCom accounts that the vendor drives,
//! through which the desk sends with `wechat/sendMessage` (protocols.md §7) and whose `chatMsg`
//! and `chatMsgSendFail` pushes are received at `/v1/callbacks/yunzhenji/<callback_secret>`.

use std::collections::BTreeSet;
use std::time::Duration;

use kefu_client::yunzhenji::DEFAULT_BASE_URL;

use super::ConfigError;
use super::field::Field;
use super::inbound::path_segment;
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;
use super::tables::{AccountKey, Table, Tables, key};

/// The section whose tables are the accounts.
pub(crate) const SECTION: &str = "yunzhenji";

/// The fewest characters, and the fewest different ones, of a callback secret: the secret is
/// the callback's only authentication (the vendor documents none), so it must not be guessable.
const SECRET_MIN_CHARS: usize = 24;
const SECRET_MIN_DISTINCT: usize = 12;

const ACCOUNTS: Setting = Setting::optional(
    "callbacks.yunzhenji_accounts",
    "KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS",
    "",
    "comma-separated names of yunzhenji accounts configured only through KEFU_YUNZHENJI_<NAME>_<KEY> (accounts with a [yunzhenji.<name>] table need not be listed)",
);

/// The settings of this module outside the account tables.
pub(crate) const SETTINGS: &[Setting] = &[ACCOUNTS];

/// The keys of a `[yunzhenji.<name>]` table, in the order `--help` lists them.
pub const YUNZHENJI_KEYS: &[AccountKey] = &[
    key("app_id", None, false, "the vendor's APP ID (required)"),
    key(
        "access_token",
        None,
        true,
        "the vendor's access token, sent in every request body (required)",
    ),
    key(
        "wxid",
        None,
        false,
        "the wxid of the sending WeCom account (required)",
    ),
    key(
        "base_url",
        Some(DEFAULT_BASE_URL),
        false,
        "base URL of the vendor's API, for a stand-in such as the sandbox",
    ),
    key(
        "callback_secret",
        None,
        true,
        "the path segment of the account's callback URL, /v1/callbacks/yunzhenji/<callback_secret>, its only authentication (required; at least 24 of A-Z a-z 0-9 - . _ ~, at least 12 of them different, and different from every other account's)",
    ),
    key(
        "confirm_window_secs",
        Some("300"),
        false,
        "an accepted message becomes delivered when this many seconds pass without a chatMsgSendFail for it (1 to 86400); an ambiguous send without a chatMsg within it ends failed with reason unconfirmed",
    ),
];

/// The `[yunzhenji.<name>]` tables.
pub(crate) const TABLES: Tables = Tables {
    section: SECTION,
    label: "yunzhenji account",
    purpose: "the desk sends through them with \"target_wxid\"; their pushes are received at /v1/callbacks/yunzhenji/<callback_secret>",
    keys: YUNZHENJI_KEYS,
    listed: &ACCOUNTS,
};

/// One yunzhenji account, `[yunzhenji.<name>]`.
#[derive(Debug, Clone)]
pub struct YunzhenjiAccount {
    /// The name, the `account` of the desk's messages and of stored jobs.
    pub name: String,
    /// The vendor's APP ID.
    pub app_id: String,
    /// The vendor's access token.
    pub access_token: Secret,
    /// The wxid of the sending WeCom account.
    pub wxid: String,
    /// Base URL of the vendor's API, without a trailing slash.
    pub base_url: String,
    /// The path segment of the account's callback URL.
    pub callback_secret: Secret,
    /// How long an accepted message waits for a `chatMsgSendFail` before it is delivered.
    pub confirm_window: Duration,
}

/// Reads and checks the accounts.
pub(crate) fn load(
    layers: &Layers,
    names: &BTreeSet<String>,
) -> Result<Vec<YunzhenjiAccount>, ConfigError> {
    let accounts = TABLES.load(layers, names, account)?;
    for (i, account) in accounts.iter().enumerate() {
        if let Some(other) = accounts
            .iter()
            .skip(i + 1)
            .find(|other| other.callback_secret == account.callback_secret)
        {
            return Err(ConfigError(format!(
                "{SECTION}.{}.callback_secret and {SECTION}.{}.callback_secret are the same: a callback's secret says which account it is for; give each account its own",
                account.name, other.name
            )));
        }
    }
    Ok(accounts)
}

fn account(table: &Table) -> Result<YunzhenjiAccount, ConfigError> {
    let access_token = table.required("access_token", "the vendor's access token")?;
    if access_token
        .text()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(access_token.invalid(
            "the vendor's access token, without spaces or line breaks",
            "a value containing one",
        ));
    }
    let callback_secret = table.required(
        "callback_secret",
        "the path segment of the account's callback URL",
    )?;
    Ok(YunzhenjiAccount {
        name: table.name.to_owned(),
        app_id: table
            .required("app_id", "the vendor's APP ID")?
            .text()
            .to_owned(),
        access_token: Secret::new(access_token.text()),
        wxid: table
            .required("wxid", "the wxid of the sending WeCom account")?
            .text()
            .to_owned(),
        base_url: table.or_default("base_url", DEFAULT_BASE_URL)?.base_url()?,
        callback_secret: path_segment(unguessable(&callback_secret)?, &callback_secret)?,
        confirm_window: table
            .or_default("confirm_window_secs", "300")?
            .secs(1, 86_400)?,
    })
}

/// A callback secret long and varied enough not to be guessed.
fn unguessable(field: &Field) -> Result<Secret, ConfigError> {
    let count = field.text().chars().count();
    let distinct = field.text().chars().collect::<BTreeSet<char>>().len();
    if count < SECRET_MIN_CHARS || distinct < SECRET_MIN_DISTINCT {
        return Err(field.invalid(
            &format!(
                "at least {SECRET_MIN_CHARS} characters, at least {SECRET_MIN_DISTINCT} of them different (for example the output of `openssl rand -hex 16`)"
            ),
            &format!("{count} characters, {distinct} different"),
        ));
    }
    Ok(Secret::new(field.text()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env() -> Vec<(&'static str, &'static str)> {
        let mut env = minimal();
        env.extend([
            ("KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS", "yzj"),
            ("KEFU_YUNZHENJI_YZJ_APP_ID", "app-1"),
            ("KEFU_YUNZHENJI_YZJ_ACCESS_TOKEN", "YZJTOKEN-0123456789"),
            ("KEFU_YUNZHENJI_YZJ_WXID", "1688850000000001"),
            ("KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET", SECRET),
        ]);
        env
    }

    #[test]
    fn an_account_from_the_environment_with_defaults() {
        let config = Config::load(None, env_of(&env())).unwrap();
        let account = &config.yunzhenji[0];
        assert_eq!(account.name, "yzj");
        assert_eq!(account.app_id, "app-1");
        assert_eq!(account.access_token.expose(), "YZJTOKEN-0123456789");
        assert_eq!(account.wxid, "1688850000000001");
        assert_eq!(account.base_url, "https://oapi-yzj.miaokol.com");
        assert_eq!(account.callback_secret.expose(), SECRET);
        assert_eq!(account.confirm_window, Duration::from_secs(300));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("YZJTOKEN") && !shown.contains(SECRET),
            "{shown}"
        );
    }

    #[test]
    fn the_environment_overrides_the_table() {
        let mut env = env();
        env.push(("KEFU_YUNZHENJI_YZJ_CONFIRM_WINDOW_SECS", "2"));
        let config = load_with(
            "[yunzhenji.yzj]\nbase_url = \"http://127.0.0.1:9000/\"\nconfirm_window_secs = 60\nwxid = \"file\"\n",
            &env,
        )
        .unwrap();
        let account = &config.yunzhenji[0];
        assert_eq!(account.base_url, "http://127.0.0.1:9000");
        assert_eq!(account.confirm_window, Duration::from_secs(2));
        assert_eq!(account.wxid, "1688850000000001");
    }

    #[test]
    fn mistakes_are_named_without_showing_secrets() {
        let cases = [
            (
                ("KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET", "short-secret"),
                "yunzhenji.yzj.callback_secret (from KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET): expected at least 24 characters, at least 12 of them different (for example the output of `openssl rand -hex 16`), got 12 characters, 8 different",
            ),
            (
                (
                    "KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                ),
                "got 40 characters, 2 different",
            ),
            (
                (
                    "KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET",
                    "0123456789abcdef0123456789/abcdef",
                ),
                "expected only A-Z, a-z, 0-9, '-', '.', '_' and '~' (it is a URL path segment)",
            ),
            (
                ("KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET", ""),
                "yunzhenji.yzj.callback_secret is required: set it in the [yunzhenji.yzj] table or in KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET",
            ),
            (
                ("KEFU_YUNZHENJI_YZJ_ACCESS_TOKEN", "secret token\n"),
                "yunzhenji.yzj.access_token (from KEFU_YUNZHENJI_YZJ_ACCESS_TOKEN): expected the vendor's access token, without spaces or line breaks",
            ),
            (
                ("KEFU_YUNZHENJI_YZJ_CONFIRM_WINDOW_SECS", "0"),
                "yunzhenji.yzj.confirm_window_secs (from KEFU_YUNZHENJI_YZJ_CONFIRM_WINDOW_SECS): expected a whole number from 1 to 86400",
            ),
            (
                ("KEFU_YUNZHENJI_YZJ_BASE_URL", "oapi-yzj.miaokol.com"),
                "yunzhenji.yzj.base_url (from KEFU_YUNZHENJI_YZJ_BASE_URL): expected an http:// or https:// URL",
            ),
            (
                ("KEFU_YUNZHENJI_YZJ_WXID", ""),
                "yunzhenji.yzj.wxid is required",
            ),
        ];
        for (setting, expected) in cases {
            let mut env = env();
            env.push(setting);
            let err = error_of(&env);
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(
                !err.contains("aaaaaaa")
                    && !err.contains("secret token")
                    && !err.contains("short-secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn two_accounts_may_not_share_a_callback_secret() {
        let mut env = env();
        env.extend([
            ("KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS", "yzj,other"),
            ("KEFU_YUNZHENJI_OTHER_APP_ID", "app-2"),
            ("KEFU_YUNZHENJI_OTHER_ACCESS_TOKEN", "t"),
            ("KEFU_YUNZHENJI_OTHER_WXID", "w"),
            ("KEFU_YUNZHENJI_OTHER_CALLBACK_SECRET", SECRET),
        ]);
        assert_eq!(
            error_of(&env),
            "yunzhenji.other.callback_secret and yunzhenji.yzj.callback_secret are the same: a callback's secret says which account it is for; give each account its own"
        );
    }

    #[test]
    fn tables_are_checked() {
        let err = load_with("[yunzhenji.yzj]\nap_id = \"x\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown setting `yunzhenji.yzj.ap_id` (did you mean `app_id`?)"),
            "{err}"
        );
        let err = load_with("[yunzhenji.dialogue]\napp_id = \"x\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("yunzhenji account name \"dialogue\" is reserved (it names the Dialogue platform's account in stored jobs and in the desk's messages); choose another name"), "{err}");
    }
}
