//! `[wechat.<name>]` and `[tokens]`: the named WeChat accounts, whose standard callbacks are
//! received at `/v1/callbacks/wechat/<name>` (protocols.md §3.7) and, for an Official Account or
//! Mini Program with an AppSecret, through which the desk sends with `custom/send` (§5, §6).

use std::collections::BTreeSet;
use std::time::Duration;

use super::ConfigError;
use super::field::Field;
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;
use super::tables::{AccountKey, Table, Tables, key};

/// The section whose tables are the accounts.
pub(crate) const SECTION: &str = "wechat";

/// The default base URL of the cgi-bin API.
pub const DEFAULT_API_BASE_URL: &str = "https://api.weixin.qq.com";

/// The typing path of an Official Account (protocols.md §5.2), which is not configurable.
pub const OA_TYPING_PATH: &str = "/cgi-bin/message/custom/typing";

/// The default typing path of a Mini Program (protocols.md §5.2: which path MPs accept today is
/// unconfirmed, hence the setting).
pub const MP_TYPING_PATH: &str = "/cgi-bin/message/custom/business/typing";

const ACCOUNTS: Setting = Setting::optional(
    "callbacks.wechat_accounts",
    "KEFU_CALLBACKS_WECHAT_ACCOUNTS",
    "",
    "comma-separated names of WeChat accounts configured only through KEFU_WECHAT_<NAME>_<KEY> (accounts with a [wechat.<name>] table need not be listed)",
);
const FETCH_TIMEOUT_MS: Setting = Setting::optional(
    "tokens.fetch_timeout_ms",
    "KEFU_TOKENS_FETCH_TIMEOUT_MS",
    "5000",
    "whole-request timeout of an access-token fetch (POST /cgi-bin/stable_token), in milliseconds, so that a hung fetch cannot hold up the sends waiting for it",
);

/// The settings of this module outside the account tables, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[ACCOUNTS, FETCH_TIMEOUT_MS];

/// The keys of a `[wechat.<name>]` table, in the order `--help` lists them.
pub const WECHAT_KEYS: &[AccountKey] = &[
    key(
        "kind",
        Some("oa"),
        false,
        "`oa` (Official Account), `mp` (Mini Program) or `wecom`",
    ),
    key(
        "mode",
        None,
        false,
        "`plain`, `compatible` or `safe` (消息加解密方式, as on the account's console): in safe and compatible mode a push without encrypt_type=aes and a valid msg_signature is refused; default `safe` with an aes_key, else `plain`; wecom is always safe",
    ),
    key(
        "token",
        None,
        true,
        "the Token of the callback configuration (required)",
    ),
    key(
        "aes_key",
        None,
        true,
        "the 43-character EncodingAESKey (safe or compatible mode; required for wecom)",
    ),
    key(
        "previous_aes_key",
        None,
        true,
        "the EncodingAESKey before the last rotation, tried after aes_key",
    ),
    key(
        "receive_id",
        None,
        false,
        "the AppID (oa, mp), the CorpID or SuiteID (wecom), or empty (wecom smart robot); required with aes_key or secret",
    ),
    key(
        "secret",
        None,
        true,
        "the AppSecret (oa, mp): with it, the desk can send through the account (POST /v1/messages with \"account\"), with access tokens from stable_token for the AppID in receive_id; a wecom account takes none",
    ),
    key(
        "api_base_url",
        Some(DEFAULT_API_BASE_URL),
        false,
        "base URL of the cgi-bin API that sends, types and fetches access tokens (oa, mp), for a stand-in such as the sandbox",
    ),
    key(
        "text_budget_bytes",
        Some("2000"),
        false,
        "text longer than this many bytes (64 to 2048; the platform refuses about 2048 with 45002) is sent as several messages, split between characters and never inside an <a …> tag (oa, mp)",
    ),
    key(
        "typing_path",
        Some(MP_TYPING_PATH),
        false,
        "the typing endpoint of a Mini Program, under api_base_url (mp only: an Official Account's is /cgi-bin/message/custom/typing)",
    ),
];

/// The `[wechat.<name>]` tables.
pub(crate) const TABLES: Tables = Tables {
    section: SECTION,
    label: "WeChat account",
    purpose: "received at /v1/callbacks/wechat/<name>; with a secret, the desk sends through them",
    keys: WECHAT_KEYS,
    listed: &ACCOUNTS,
};

/// The environment variable of a `[wechat.<name>]` key.
pub fn wechat_env(name: &str, key: &str) -> String {
    TABLES.variable(name, key)
}

/// What kind of WeChat account sends the callbacks: it decides the URL verification and the
/// signatures (protocols.md §3.7), and which messages it can send (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An Official Account (公众号): plaintext `echostr`, plain `signature` on URL verification.
    OfficialAccount,
    /// A Mini Program (小程序): as an Official Account.
    MiniProgram,
    /// A WeCom (企业微信) app or robot: encrypted, `msg_signature`-signed `echostr`.
    WeCom,
}

impl AccountKind {
    /// The configuration spelling: `oa`, `mp` or `wecom`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::OfficialAccount => "oa",
            AccountKind::MiniProgram => "mp",
            AccountKind::WeCom => "wecom",
        }
    }
}

/// How an Official Account or Mini Program protects its message pushes (消息加解密方式), as set
/// on its platform console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WechatMode {
    /// 明文模式: the body is the message and only the plain `signature` (which covers no body)
    /// authenticates it. Encrypted pushes are still accepted when an `aes_key` is set, so that
    /// the console can be switched to safe mode before the configuration is.
    Plain,
    /// 兼容模式: plaintext fields and `Encrypt` side by side. Only the encrypted part is read, and
    /// only a push with `encrypt_type=aes` and a valid `msg_signature` is accepted.
    Compatible,
    /// 安全模式: only `Encrypt`; only a push with `encrypt_type=aes` and a valid `msg_signature`
    /// is accepted. WeCom accounts are always in this mode.
    Safe,
}

impl WechatMode {
    /// The configuration spelling: `plain`, `compatible` or `safe`.
    pub fn as_str(self) -> &'static str {
        match self {
            WechatMode::Plain => "plain",
            WechatMode::Compatible => "compatible",
            WechatMode::Safe => "safe",
        }
    }

    /// Whether a push must be encrypted and carry a valid `msg_signature`: a plaintext push's
    /// `signature` covers no body, so anyone who has seen one push URL could forge messages.
    pub fn requires_encryption(self) -> bool {
        self != WechatMode::Plain
    }
}

/// One named WeChat account, `[wechat.<name>]`.
#[derive(Debug, Clone)]
pub struct WechatAccount {
    /// The name, the last segment of `/v1/callbacks/wechat/{name}`, and the `account` of the
    /// desk's messages and of stored jobs.
    pub name: String,
    /// The kind of account.
    pub kind: AccountKind,
    /// How its pushes are protected: `safe` by default with an `aes_key`, else `plain`; always
    /// `safe` for WeCom.
    pub mode: WechatMode,
    /// The Token of the callback configuration.
    pub token: Secret,
    /// The current EncodingAESKey, if the account encrypts (safe or compatible mode, WeCom).
    pub aes_key: Option<Secret>,
    /// The previous EncodingAESKey, tried after the current one during a rotation.
    pub previous_aes_key: Option<Secret>,
    /// The receive-id: the AppID (OA/MP), the CorpID or SuiteID (WeCom), or empty (WeCom smart
    /// robot).
    pub receive_id: String,
    /// How the account sends through `custom/send`, if it has an AppSecret (OA and MP only).
    pub send: Option<SendConfig>,
}

/// What an Official Account or Mini Program needs to send (protocols.md §5, §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// The AppID that access tokens are fetched for (the account's `receive_id`).
    pub appid: String,
    /// The AppSecret.
    pub secret: Secret,
    /// Base URL of the cgi-bin API, without a trailing slash.
    pub api_base_url: String,
    /// Text longer than this many bytes is split into ordered messages.
    pub text_budget_bytes: usize,
    /// The typing endpoint's path under `api_base_url`, by kind: fixed for an Official Account,
    /// configurable for a Mini Program.
    pub typing_path: String,
}

/// Access tokens (protocols.md §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    /// Whole-request timeout of a token fetch.
    pub fetch_timeout: Duration,
}

/// Reads and checks the accounts and the token settings.
pub(crate) fn load(
    layers: &Layers,
    names: &BTreeSet<String>,
) -> Result<(Vec<WechatAccount>, TokensConfig), ConfigError> {
    let accounts = TABLES.load(layers, names, |table| Account(*table).load())?;
    let tokens = TokensConfig {
        fetch_timeout: layers.setting(&FETCH_TIMEOUT_MS)?.millis(1, 600_000)?,
    };
    Ok((accounts, tokens))
}

/// One account's table, read through the layers.
struct Account<'a>(Table<'a>);

impl Account<'_> {
    fn load(&self) -> Result<WechatAccount, ConfigError> {
        let kind = match self.0.get("kind")? {
            None => AccountKind::OfficialAccount,
            Some(kind) => kind.choice(
                &[
                    ("oa", AccountKind::OfficialAccount),
                    ("mp", AccountKind::MiniProgram),
                    ("wecom", AccountKind::WeCom),
                ],
                "`oa`, `mp` or `wecom`",
            )?,
        };
        let token = match self.0.get("token")? {
            Some(token) => Secret::new(token.non_empty("the Token of the callback configuration")?),
            None => {
                return Err(ConfigError(format!(
                    "{} is required: {} (the Token of the callback configuration)",
                    self.0.key("token"),
                    self.0.where_to_set("token")
                )));
            }
        };
        let current = self.aes_key("aes_key")?;
        let previous = self.aes_key("previous_aes_key")?;
        if current.is_none() && previous.is_some() {
            return Err(ConfigError(format!(
                "{} is set without {}: the current key comes first, the previous one is only tried after it",
                self.0.key("previous_aes_key"),
                self.0.key("aes_key")
            )));
        }
        if current.is_none() && kind == AccountKind::WeCom {
            return Err(ConfigError(format!(
                "{} is required for a wecom account: {} (WeCom callbacks are always encrypted)",
                self.0.key("aes_key"),
                self.0.where_to_set("aes_key")
            )));
        }
        let mode = self.mode(kind, current.is_some())?;
        let receive_id = self.receive_id(kind, current.is_some())?;
        let send = self.send(kind, &receive_id)?;
        Ok(WechatAccount {
            name: self.0.name.to_owned(),
            kind,
            mode,
            token,
            aes_key: current,
            previous_aes_key: previous,
            receive_id,
            send,
        })
    }

    fn aes_key(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(field) = self.0.non_empty(key)? else {
            return Ok(None);
        };
        // The key's own validation names the length or the position of a bad character, never
        // the key.
        wxbizmsgcrypt::AesKey::parse(field.text())
            .map_err(|e| ConfigError(format!("{}: {e}", field.place())))?;
        Ok(Some(Secret::new(field.text())))
    }

    fn mode(&self, kind: AccountKind, keyed: bool) -> Result<WechatMode, ConfigError> {
        let Some(field) = self.0.non_empty("mode")? else {
            return Ok(if kind == AccountKind::WeCom || keyed {
                WechatMode::Safe
            } else {
                WechatMode::Plain
            });
        };
        let mode = if kind == AccountKind::WeCom {
            field.choice(
                &[("safe", WechatMode::Safe)],
                "`safe` or nothing (WeCom callbacks are always encrypted)",
            )?
        } else {
            field.choice(
                &[
                    ("plain", WechatMode::Plain),
                    ("compatible", WechatMode::Compatible),
                    ("safe", WechatMode::Safe),
                ],
                "`plain`, `compatible` or `safe`",
            )?
        };
        if mode.requires_encryption() && !keyed {
            return Err(ConfigError(format!(
                "{} is {} but {} is not set: set the account's 43-character EncodingAESKey in the [{SECTION}.{name}] table or in {}, or set the mode to `plain` if the account's console says 明文模式",
                field.place(),
                mode.as_str(),
                self.0.key("aes_key"),
                wechat_env(self.0.name, "aes_key"),
                name = self.0.name,
            )));
        }
        Ok(mode)
    }

    fn receive_id(&self, kind: AccountKind, keyed: bool) -> Result<String, ConfigError> {
        match self.0.get("receive_id")? {
            Some(id) if id.text().is_empty() && kind != AccountKind::WeCom && keyed => Err(id
                .invalid(
                    "the account's AppID (an empty receive-id is only used by the WeCom smart robot)",
                    "an empty value",
                )),
            Some(id) => Ok(id.text().to_owned()),
            None if keyed => Err(ConfigError(format!(
                "{} is required with an aes_key: {} (the AppID, CorpID or SuiteID that trails every plaintext; empty for the WeCom smart robot)",
                self.0.key("receive_id"),
                self.0.where_to_set("receive_id")
            ))),
            None => Ok(String::new()),
        }
    }

    /// The sending settings: present with a `secret`, refused on WeCom.
    fn send(&self, kind: AccountKind, receive_id: &str) -> Result<Option<SendConfig>, ConfigError> {
        if kind == AccountKind::WeCom {
            for key in ["secret", "api_base_url", "text_budget_bytes", "typing_path"] {
                if let Some(field) = self.0.non_empty(key)? {
                    return Err(ConfigError(format!(
                        "{} is set on a wecom account, which does not send through custom/send (only oa and mp accounts do); remove it, or set {} to `oa` or `mp` if the account is an Official Account or Mini Program",
                        field.place(),
                        self.0.key("kind")
                    )));
                }
            }
            return Ok(None);
        }
        let typing_path = match (kind, self.0.non_empty("typing_path")?) {
            (AccountKind::MiniProgram, Some(field)) => typing_path(&field)?,
            (AccountKind::MiniProgram, None) => MP_TYPING_PATH.to_owned(),
            (_, Some(field)) => {
                return Err(ConfigError(format!(
                    "{} is set on an oa account: only a Mini Program's typing path is configurable (an Official Account's is {OA_TYPING_PATH}); remove it, or set {} to `mp`",
                    field.place(),
                    self.0.key("kind")
                )));
            }
            (_, None) => OA_TYPING_PATH.to_owned(),
        };
        let api_base_url = match self.0.non_empty("api_base_url")? {
            Some(field) => field.base_url()?,
            None => DEFAULT_API_BASE_URL.to_owned(),
        };
        let text_budget_bytes = match self.0.non_empty("text_budget_bytes")? {
            Some(field) => field.number(64, 2048)?,
            None => 2000,
        };
        let Some(secret) = self.0.non_empty("secret")? else {
            return Ok(None);
        };
        if secret
            .text()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(secret.invalid(
                "the AppSecret, without spaces or line breaks",
                "a value containing one",
            ));
        }
        if receive_id.trim().is_empty() {
            return Err(ConfigError(format!(
                "{} is required with a secret: set the account's AppID in the [{SECTION}.{name}] table or in {} (access tokens are fetched for that AppID)",
                self.0.key("receive_id"),
                wechat_env(self.0.name, "receive_id"),
                name = self.0.name,
            )));
        }
        Ok(Some(SendConfig {
            appid: receive_id.to_owned(),
            secret: Secret::new(secret.text()),
            api_base_url,
            text_budget_bytes,
            typing_path,
        }))
    }
}

/// A path under the API's base URL.
fn typing_path(field: &Field) -> Result<String, ConfigError> {
    let text = field.text();
    let valid = text.starts_with('/')
        && !text
            .chars()
            .any(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control());
    if !valid {
        return Err(field.rejected(&format!(
            "a path starting with / and without a query, such as {MP_TYPING_PATH}"
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

    #[test]
    fn wechat_accounts_from_tables_and_environment() {
        let mut env = minimal();
        env.push(("KEFU_WECHAT_MAIN_TOKEN", "from-env"));
        env.push(("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "corp, extra"));
        env.push(("KEFU_WECHAT_CORP_KIND", "wecom"));
        env.push(("KEFU_WECHAT_CORP_TOKEN", "t"));
        env.push(("KEFU_WECHAT_CORP_AES_KEY", KEY));
        env.push(("KEFU_WECHAT_CORP_RECEIVE_ID", ""));
        env.push(("KEFU_WECHAT_EXTRA_TOKEN", "plain-only"));
        let config = load_with(
            &format!(
                "[wechat.main]\ntoken = \"file\"\naes_key = \"{KEY}\"\nprevious_aes_key = \"{OLD_KEY}\"\nreceive_id = \"wx1\"\n"
            ),
            &env,
        )
        .unwrap();
        let names: Vec<&str> = config.wechat.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["corp", "extra", "main"]);
        let main = &config.wechat[2];
        assert_eq!(main.kind, AccountKind::OfficialAccount);
        assert_eq!(main.token.expose(), "from-env");
        assert!(main.previous_aes_key.is_some());
        assert_eq!(main.receive_id, "wx1");
        let corp = &config.wechat[0];
        assert_eq!(corp.kind, AccountKind::WeCom);
        assert_eq!(
            corp.receive_id, "",
            "the WeCom smart robot's empty receive-id"
        );
        assert!(config.wechat[1].aes_key.is_none());
        let shown = format!("{config:?}");
        assert!(!shown.contains(KEY) && !shown.contains(OLD_KEY) && !shown.contains("from-env"));
    }

    #[test]
    fn wechat_mistakes_are_named() {
        let cases = [
            (
                "[wechat.Main]\ntoken = \"t\"\n",
                "\"Main\" must be 1 to 32 of a-z",
            ),
            (
                "[wechat.a]\ntokn = \"t\"\n",
                "unknown setting `wechat.a.tokn` (did you mean `token`?)",
            ),
            ("[wechat.a]\nkind = \"oa\"\n", "wechat.a.token is required"),
            (
                "[wechat.a]\ntoken = \"t\"\nkind = \"qq\"\n",
                "wechat.a.kind (from the config file): expected `oa`, `mp` or `wecom`",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\nkind = \"wecom\"\n",
                "wechat.a.aes_key is required for a wecom account",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\naes_key = \"short\"\n",
                "wechat.a.aes_key (from the config file): EncodingAESKey must be exactly 43",
            ),
            (
                &*format!("[wechat.a]\ntoken = \"t\"\naes_key = \"{KEY}\"\n"),
                "wechat.a.receive_id is required",
            ),
            (
                &*format!("[wechat.a]\ntoken = \"t\"\naes_key = \"{KEY}\"\nreceive_id = \"\"\n"),
                "wechat.a.receive_id (from the config file): expected the account's AppID",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\nprevious_aes_key = \"x\"\n",
                "previous_aes_key (from the config file)",
            ),
            ("[wechat]\na = 1\n", "must be a [wechat.a] table"),
        ];
        for (file, expected) in cases {
            let err = load_with(file, &minimal()).unwrap_err().to_string();
            assert!(err.contains(expected), "{file}: {err}");
        }
        let mut env = minimal();
        env.push(("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "ok,bad-name"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert!(
            err.contains("callbacks.wechat_accounts (from KEFU_CALLBACKS_WECHAT_ACCOUNTS)"),
            "{err}"
        );
        let mut env = minimal();
        env.push(("KEFU_WECHAT_A_TOKEN", ""));
        env.push(("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "a"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert!(
            err.starts_with("wechat.a.token (from KEFU_WECHAT_A_TOKEN): expected"),
            "{err}"
        );
    }

    /// Regression: a safe-mode account accepted plaintext pushes, authenticated only by the
    /// plain `signature`, which covers no body. The mode is now declared (or defaulted from the
    /// key), and a mode that needs a key without one is a precise error.
    #[test]
    fn wechat_modes_default_from_the_key_and_are_checked() {
        let mut env = minimal();
        env.push((
            "KEFU_CALLBACKS_WECHAT_ACCOUNTS",
            "keyed,bare,compat,corp,open",
        ));
        env.extend([
            ("KEFU_WECHAT_BARE_TOKEN", "t"),
            ("KEFU_WECHAT_KEYED_TOKEN", "t"),
            ("KEFU_WECHAT_KEYED_AES_KEY", KEY),
            ("KEFU_WECHAT_KEYED_RECEIVE_ID", "wx1"),
            ("KEFU_WECHAT_COMPAT_TOKEN", "t"),
            ("KEFU_WECHAT_COMPAT_AES_KEY", KEY),
            ("KEFU_WECHAT_COMPAT_RECEIVE_ID", "wx1"),
            ("KEFU_WECHAT_CORP_TOKEN", "t"),
            ("KEFU_WECHAT_CORP_AES_KEY", KEY),
            ("KEFU_WECHAT_CORP_RECEIVE_ID", "ww1"),
            ("KEFU_WECHAT_OPEN_TOKEN", "t"),
            ("KEFU_WECHAT_OPEN_AES_KEY", KEY),
            ("KEFU_WECHAT_OPEN_RECEIVE_ID", "wx1"),
        ]);
        env.push(("KEFU_WECHAT_COMPAT_MODE", "compatible"));
        env.push(("KEFU_WECHAT_CORP_KIND", "wecom"));
        env.push(("KEFU_WECHAT_OPEN_MODE", "plain"));
        let config = Config::load(None, env_of(&env)).unwrap();
        let modes: Vec<(&str, WechatMode)> = config
            .wechat
            .iter()
            .map(|a| (a.name.as_str(), a.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("bare", WechatMode::Plain),
                ("compat", WechatMode::Compatible),
                ("corp", WechatMode::Safe),
                ("keyed", WechatMode::Safe),
                ("open", WechatMode::Plain),
            ]
        );
        let cases = [
            (
                "[wechat.a]\ntoken = \"t\"\nmode = \"safe\"\n",
                "wechat.a.mode (from the config file) is safe but wechat.a.aes_key is not set: set the account's 43-character EncodingAESKey in the [wechat.a] table or in KEFU_WECHAT_A_AES_KEY",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\nmode = \"compatible\"\n",
                "wechat.a.mode (from the config file) is compatible but wechat.a.aes_key is not set",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\nmode = \"Safe\"\n",
                "wechat.a.mode (from the config file): expected `plain`, `compatible` or `safe`, got \"Safe\"",
            ),
            (
                &*format!(
                    "[wechat.a]\ntoken = \"t\"\nkind = \"wecom\"\naes_key = \"{KEY}\"\nreceive_id = \"\"\nmode = \"plain\"\n"
                ),
                "wechat.a.mode (from the config file): expected `safe` or nothing (WeCom callbacks are always encrypted), got \"plain\"",
            ),
        ];
        for (file, expected) in cases {
            let err = load_with(file, &minimal()).unwrap_err().to_string();
            assert!(err.contains(expected), "{file}: {err}");
        }
    }

    fn sending_env() -> Vec<(&'static str, &'static str)> {
        let mut env = minimal();
        env.extend([
            ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "shop,app"),
            ("KEFU_WECHAT_SHOP_TOKEN", "t"),
            ("KEFU_WECHAT_SHOP_RECEIVE_ID", "wxshop"),
            ("KEFU_WECHAT_SHOP_SECRET", "SHOPSECRET0123456789abcdef"),
            ("KEFU_WECHAT_APP_KIND", "mp"),
            ("KEFU_WECHAT_APP_TOKEN", "t"),
            ("KEFU_WECHAT_APP_RECEIVE_ID", "wxapp"),
            ("KEFU_WECHAT_APP_SECRET", "APPSECRET0123456789abcdef"),
        ]);
        env
    }

    /// The sending settings of the account `name`, which must have them.
    fn sending<'a>(config: &'a Config, name: &str) -> &'a SendConfig {
        config.wechat_account(name).unwrap().send.as_ref().unwrap()
    }

    #[test]
    fn sending_settings_default_by_kind() {
        let config = Config::load(None, env_of(&sending_env())).unwrap();
        let shop = sending(&config, "shop");
        assert_eq!(shop.appid, "wxshop");
        assert_eq!(shop.secret.expose(), "SHOPSECRET0123456789abcdef");
        assert_eq!(shop.api_base_url, "https://api.weixin.qq.com");
        assert_eq!(shop.text_budget_bytes, 2000);
        assert_eq!(shop.typing_path, "/cgi-bin/message/custom/typing");
        let app = sending(&config, "app");
        assert_eq!(app.typing_path, "/cgi-bin/message/custom/business/typing");
        assert_eq!(config.tokens.fetch_timeout, Duration::from_secs(5));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SHOPSECRET") && !shown.contains("APPSECRET"),
            "{shown}"
        );
    }

    #[test]
    fn sending_settings_come_from_the_environment_over_the_file() {
        let mut env = sending_env();
        env.extend([
            ("KEFU_WECHAT_SHOP_API_BASE_URL", "http://127.0.0.1:9000/"),
            ("KEFU_WECHAT_SHOP_SECRET", "ENVSECRET0123456789abcdef"),
            (
                "KEFU_WECHAT_APP_TYPING_PATH",
                "/cgi-bin/message/custom/typing",
            ),
            ("KEFU_TOKENS_FETCH_TIMEOUT_MS", "250"),
        ]);
        let config = load_with(
            "[wechat.shop]\nsecret = \"FILESECRET0123456789abcdef\"\napi_base_url = \"https://file.example\"\ntext_budget_bytes = 600\n",
            &env,
        )
        .unwrap();
        let shop = sending(&config, "shop");
        assert_eq!(shop.secret.expose(), "ENVSECRET0123456789abcdef");
        assert_eq!(shop.api_base_url, "http://127.0.0.1:9000");
        assert_eq!(shop.text_budget_bytes, 600);
        let app = sending(&config, "app");
        assert_eq!(app.typing_path, "/cgi-bin/message/custom/typing");
        assert_eq!(config.tokens.fetch_timeout, Duration::from_millis(250));
    }

    #[test]
    fn without_a_secret_an_account_only_receives() {
        let mut env = minimal();
        env.extend([
            ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "a"),
            ("KEFU_WECHAT_A_TOKEN", "t"),
        ]);
        let config = Config::load(None, env_of(&env)).unwrap();
        assert!(config.wechat[0].send.is_none());
        env.push(("KEFU_WECHAT_A_SECRET", ""));
        let config = Config::load(None, env_of(&env)).unwrap();
        assert!(
            config.wechat[0].send.is_none(),
            "an empty secret is no secret"
        );
    }

    #[test]
    fn sending_mistakes_are_named_with_their_origin() {
        let cases = [
            (
                "[wechat.a]\ntoken = \"t\"\nsecret = \"s3cr3t-value\"\n",
                "wechat.a.receive_id is required with a secret: set the account's AppID in the [wechat.a] table or in KEFU_WECHAT_A_RECEIVE_ID",
            ),
            (
                &*format!(
                    "[wechat.a]\ntoken = \"t\"\nkind = \"wecom\"\naes_key = \"{KEY}\"\nreceive_id = \"ww1\"\nsecret = \"s3cr3t-value\"\n"
                ),
                "wechat.a.secret (from the config file) is set on a wecom account, which does not send through custom/send",
            ),
            (
                &*format!(
                    "[wechat.a]\ntoken = \"t\"\nkind = \"wecom\"\naes_key = \"{KEY}\"\nreceive_id = \"ww1\"\napi_base_url = \"http://x\"\n"
                ),
                "wechat.a.api_base_url (from the config file) is set on a wecom account",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\ntyping_path = \"/x\"\n",
                "wechat.a.typing_path (from the config file) is set on an oa account: only a Mini Program's typing path is configurable (an Official Account's is /cgi-bin/message/custom/typing)",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\nkind = \"mp\"\ntyping_path = \"typing?x=1\"\n",
                "wechat.a.typing_path (from the config file): expected a path starting with / and without a query",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\ntext_budget_bytes = 4096\n",
                "wechat.a.text_budget_bytes (from the config file): expected a whole number from 64 to 2048, got \"4096\"",
            ),
            (
                "[wechat.a]\ntoken = \"t\"\napi_base_url = \"api.weixin.qq.com\"\n",
                "wechat.a.api_base_url (from the config file): expected an http:// or https:// URL, got \"api.weixin.qq.com\"",
            ),
        ];
        for (file, expected) in cases {
            let err = load_with(file, &minimal()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{file}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        let mut env = sending_env();
        env.push(("KEFU_WECHAT_SHOP_TEXT_BUDGET_BYTES", "2k"));
        assert_eq!(
            error_of(&env),
            "wechat.shop.text_budget_bytes (from KEFU_WECHAT_SHOP_TEXT_BUDGET_BYTES): expected a whole number from 64 to 2048, got \"2k\""
        );
        let mut env = sending_env();
        env.push(("KEFU_TOKENS_FETCH_TIMEOUT_MS", "0"));
        assert_eq!(
            error_of(&env),
            "tokens.fetch_timeout_ms (from KEFU_TOKENS_FETCH_TIMEOUT_MS): expected a whole number from 1 to 600000, got \"0\""
        );
    }

    /// A secret with a bad value: the message says what is wrong and where it came from, and
    /// never what it is.
    #[test]
    fn a_bad_secret_is_never_echoed() {
        let bad = "APPSECRET with a space\n";
        let mut env = sending_env();
        env.push(("KEFU_WECHAT_SHOP_SECRET", bad));
        let err = error_of(&env);
        assert_eq!(
            err,
            "wechat.shop.secret (from KEFU_WECHAT_SHOP_SECRET): expected the AppSecret, without spaces or line breaks, got a value containing one"
        );
        let mut env = sending_env();
        env.retain(|(name, _)| *name != "KEFU_WECHAT_SHOP_SECRET");
        let err = load_with(&format!("[wechat.shop]\nsecret = {bad:?}\n"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("wechat.shop.secret (from the config file)"),
            "{err}"
        );
        for secret_key in ["TOKEN", "AES_KEY", "PREVIOUS_AES_KEY", "SECRET"] {
            let variable = format!("KEFU_WECHAT_SHOP_{secret_key}");
            let mut env = sending_env();
            env.push(("KEFU_WECHAT_SHOP_AES_KEY", KEY));
            env.push((variable.as_str(), "not valid here\n"));
            if let Err(err) = Config::load(None, env_of(&env)) {
                let err = err.to_string();
                assert!(!err.contains("not valid here"), "{err}");
                assert!(err.contains(&variable), "{err}");
            }
        }
    }

    #[test]
    fn a_variable_that_two_accounts_share_is_refused() {
        let mut env = minimal();
        env.extend([
            ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "a,a_previous"),
            ("KEFU_WECHAT_A_TOKEN", "t"),
            ("KEFU_WECHAT_A_PREVIOUS_TOKEN", "t"),
        ]);
        Config::load(None, env_of(&env)).unwrap();
        env.push(("KEFU_WECHAT_A_PREVIOUS_AES_KEY", KEY));
        assert_eq!(
            error_of(&env),
            "KEFU_WECHAT_A_PREVIOUS_AES_KEY is ambiguous: it would set each of wechat.a.previous_aes_key and wechat.a_previous.aes_key; set them in the accounts' [wechat.<name>] tables instead, or rename one of the accounts"
        );
    }

    #[test]
    fn the_dialogue_name_is_reserved() {
        let expected = "WeChat account name \"dialogue\" is reserved (it names the Dialogue platform's account in stored jobs and in the desk's messages); choose another name";
        let err = load_with("[wechat.dialogue]\ntoken = \"t\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(err.ends_with(expected), "{err}");
        let mut env = minimal();
        env.push(("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "shop, dialogue"));
        assert_eq!(
            error_of(&env),
            format!("callbacks.wechat_accounts (from KEFU_CALLBACKS_WECHAT_ACCOUNTS): {expected}")
        );
    }
}
