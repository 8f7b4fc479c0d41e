//! The service configuration: a TOML file, every setting overridable by an environment variable,
//! validated at start with messages that name the setting, where it came from and what was
//! expected. Secret values never appear in messages or in `Debug` output.
//!
//! The layering is figment's (the `layers` module): the file, then the environment on top, each value
//! tagged with its origin. Each section is owned by the module of the part it configures, which
//! declares its settings and validates them:
//!
//! | module | sections |
//! |---|---|
//! | `server` | `[server]`, `[metrics]`, `[log]` |
//! | `dialogue` | `[dialogue]`, the Dialogue platform provider |
//! | `delivery` | `[outbox]`, `[delivery]` |
//! | `store` | `[store]`: SQLite (the outbox file) or a shared PostgreSQL database |
//! | `inbound` | `[callbacks]`, `[webhook]`, `[events]` |
//! | `wechat` | `[wechat.<name>]` accounts, `[tokens]`, `callbacks.wechat_accounts` |
//! | `yunzhenji` | `[yunzhenji.<name>]` accounts, `callbacks.yunzhenji_accounts` |
//! | `gateway` | `[gateway.<name>]` accounts, `delivery.gateway_accounts` |
//! | `console` | `[console]`: the operator console |
//!
//! The three kinds of named account share their rules through `tables`.
//!
//! A new provider is a new module like `dialogue`: its `SETTINGS` listed in
//! [`SECTIONS`] (which gives it environment variables, defaults, the unknown-key check
//! and `--help`), and its `load` called from [`Config::load`] into a field of [`Config`].

mod console;
mod delivery;
mod dialogue;
mod field;
mod files;
mod gateway;
mod help;
mod inbound;
mod layers;
mod schema;
mod secret;
mod server;
mod setting;
mod store;
mod tables;
mod wechat;
mod yunzhenji;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use console::{ConsoleConfig, SecureCookie};
pub use delivery::DeliveryConfig;
pub use dialogue::DialogueConfig;
pub use files::{
    DEFAULT_CONFIG_FILE, check_given_file, config_file, file_settings, load_store_cli,
    settings_origin,
};
pub use gateway::{GATEWAY_KEYS, GatewayAccount};
pub use help::settings_help;
pub use inbound::{CallbacksConfig, EventsConfig, ReceiveIdPolicy, WebhookConfig};
pub use schema::{SECTIONS, find_setting, settings};
pub use secret::Secret;
pub use server::LogFormat;
pub use setting::Setting;
pub use store::StoreConfig;
pub use tables::{AccountKey, RESERVED_NAME};
pub use wechat::{
    AccountKind, DEFAULT_API_BASE_URL, MP_TYPING_PATH, OA_TYPING_PATH, SendConfig, TokensConfig,
    WECHAT_KEYS, WechatAccount, WechatMode, wechat_env,
};
pub use yunzhenji::{YUNZHENJI_KEYS, YunzhenjiAccount};

use layers::{ConfigFile, Layers};

/// The validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the desk-facing API.
    pub listen: SocketAddr,
    /// The desks' bearer key; `serve` requires it (see [`Config::api_key`]), `send` does not.
    api_key: Option<Secret>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` is remembered (see [`crate::idempotency`]).
    pub idempotency_retention: Duration,
    /// The desk API's timeouts for slow clients and its connection limit.
    pub server_limits: crate::http_server::ServerLimits,
    /// The platform account.
    pub dialogue: DialogueConfig,
    /// The outbox file, where the relay keeps everything when `store` names no database.
    pub outbox_path: PathBuf,
    /// The `[store]` section: the PostgreSQL database, if one is configured.
    pub store: StoreConfig,
    /// Delivery and retries.
    pub delivery: DeliveryConfig,
    /// Inbound callbacks: the Dialogue callback's secret, replay and dedup windows.
    pub callbacks: CallbacksConfig,
    /// Push delivery of inbound events to the desk, if configured.
    pub webhook: Option<WebhookConfig>,
    /// Pull delivery of inbound events and their retention.
    pub events: EventsConfig,
    /// The named WeChat accounts (`[wechat.<name>]`), sorted by name: whose standard callbacks
    /// are received, and, with an AppSecret, through which the desk sends.
    pub wechat: Vec<WechatAccount>,
    /// Access-token fetching for the accounts that send.
    pub tokens: TokensConfig,
    /// The yunzhenji accounts (`[yunzhenji.<name>]`), sorted by name.
    pub yunzhenji: Vec<YunzhenjiAccount>,
    /// The company-gateway accounts (`[gateway.<name>]`), sorted by name.
    pub gateway: Vec<GatewayAccount>,
    /// Where `GET /metrics` is also served without the bearer key, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Log output format.
    pub log_format: LogFormat,
    /// The operator console, when `console.password_hash` is set.
    pub console: Option<ConsoleConfig>,
}

/// A configuration problem, naming the setting, where its value came from and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// The desks' bearer key, which `serve` cannot run without.
    pub fn api_key(&self) -> Result<&Secret, ConfigError> {
        self.api_key.as_ref().ok_or_else(server::api_key_required)
    }

    /// The account of this name, if configured.
    pub fn wechat_account(&self, name: &str) -> Option<&WechatAccount> {
        self.wechat.iter().find(|account| account.name == name)
    }

    /// The yunzhenji account of this name, if configured.
    pub fn yunzhenji_account(&self, name: &str) -> Option<&YunzhenjiAccount> {
        self.yunzhenji.iter().find(|account| account.name == name)
    }

    /// Validates settings given by environment-variable name, with no file and no process
    /// environment; a name given twice takes its last value. For a relay embedded in another
    /// program (the demo, the bench) and for tests.
    ///
    /// ```
    /// use kefu_connector::config::Config;
    ///
    /// let config = Config::from_settings(&[
    ///     ("KEFU_SERVER_API_KEY", "0123456789abcdef-desk"),
    ///     ("KEFU_DIALOGUE_TOKEN", "tokentokentoken"),
    ///     ("KEFU_DIALOGUE_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
    ///     ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
    ///     ("KEFU_SERVER_LISTEN", "127.0.0.1:0"),
    ///     ("KEFU_SERVER_LISTEN", "127.0.0.1:9000"),
    /// ])?;
    /// assert_eq!(config.listen.port(), 9000);
    /// # Ok::<(), kefu_connector::config::ConfigError>(())
    /// ```
    pub fn from_settings<V: AsRef<str>>(settings: &[(&str, V)]) -> Result<Config, ConfigError> {
        Config::load(None, |name| {
            settings
                .iter()
                .rev()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_ref().to_owned())
        })
    }

    /// Loads the file (if any), applies environment overrides read through `env`, and validates.
    ///
    /// `env` is a parameter so that tests need not touch the process environment; `serve` passes
    /// `|name| std::env::var(name).ok()`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let layers = flat_layers(file, &env)?;
        // The accounts' variables are known once their names are: from the file's tables and
        // from the settings that list them (callbacks.wechat_accounts, …), which the layers
        // above give.
        let wechat_names = wechat::TABLES.names(&layers)?;
        let yunzhenji_names = yunzhenji::TABLES.names(&layers)?;
        let gateway_names = gateway::TABLES.names(&layers)?;
        let kinds = [
            (&wechat::TABLES, &wechat_names),
            (&yunzhenji::TABLES, &yunzhenji_names),
            (&gateway::TABLES, &gateway_names),
        ];
        tables::check_unique(kinds)?;
        let mut keys = Vec::new();
        for (tables, names) in kinds {
            keys.extend(tables.env_keys(names, &env)?);
        }
        let layers = layers.with_env(keys.iter().map(String::as_str), &env);

        let server = server::load(&layers)?;
        let dialogue = dialogue::load(&layers)?;
        let (outbox_path, delivery) = delivery::load(&layers)?;
        let store = store::load(&layers)?;
        store.check_request_timeout(
            u64::try_from(dialogue.request_timeout.as_millis()).unwrap_or(u64::MAX),
        )?;
        let inbound = inbound::load(&layers)?;
        let (wechat, tokens) = wechat::load(&layers, &wechat_names)?;
        let yunzhenji = yunzhenji::load(&layers, &yunzhenji_names)?;
        let gateway = gateway::load(&layers, &gateway_names)?;
        let console = console::load(&layers)?;
        Ok(Config {
            listen: server.listen,
            api_key: server.api_key,
            max_body_bytes: server.max_body_bytes,
            idempotency_retention: server.idempotency_retention,
            server_limits: server.limits,
            dialogue,
            outbox_path,
            store,
            delivery,
            callbacks: inbound.callbacks,
            webhook: inbound.webhook,
            events: inbound.events,
            wechat,
            tokens,
            yunzhenji,
            gateway,
            metrics_listen: server.metrics_listen,
            log_format: server.log_format,
            console,
        })
    }
}

/// The settings of the store alone (`[store]`, and `outbox.path` for SQLite), from the file (if
/// any) under the environment read through `env`: what `kefu-connector migrate` needs, without
/// the platform's credentials that serving demands. Unknown keys are refused as in
/// [`Config::load`].
pub fn load_store(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(StoreConfig, PathBuf), ConfigError> {
    let layers = flat_layers(file, &env)?;
    let (outbox_path, _) = delivery::load(&layers)?;
    Ok((store::load(&layers)?, outbox_path))
}

/// The file (checked for unknown sections and keys) under the environment variables of every
/// flat setting.
fn flat_layers(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layers, ConfigError> {
    let file = file.map(ConfigFile::read).transpose()?;
    if let Some(file) = &file {
        schema::check_file(file.table(), file.path())?;
    }
    Ok(Layers::new(file.as_ref()).with_env(schema::settings().map(|setting| setting.key), env))
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn defaults_and_environment() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            config.dialogue.base_url,
            "https://chatbot.weixin.qq.com/openapi"
        );
        assert_eq!(config.delivery.max_attempts, 3);
        assert_eq!(config.dialogue.appid, None);
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut env = minimal();
        env.push(("KEFU_SERVER_LISTEN", "127.0.0.1:9999"));
        let config = load_with(
            "[server]\nlisten = \"127.0.0.1:1234\"\nmax_body_bytes = 2048\n",
            &env,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.max_body_bytes, 2048);
    }

    #[test]
    fn missing_required_setting_names_the_variable() {
        let err = Config::load(None, env_of(&minimal()[..3])).unwrap_err();
        assert!(
            err.to_string().contains("dialogue.bot_appid is required"),
            "{err}"
        );
        assert!(err.to_string().contains("KEFU_DIALOGUE_BOT_APPID"), "{err}");
        // Only serving needs the API key.
        let config = Config::load(None, env_of(&minimal()[1..])).unwrap();
        let err = config.api_key().unwrap_err();
        assert!(
            err.to_string().contains("server.api_key is required"),
            "{err}"
        );
        assert!(err.to_string().contains("KEFU_SERVER_API_KEY"), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_origin_and_expectation() {
        let mut env = minimal();
        env.push(("KEFU_DELIVERY_MAX_ATTEMPTS", "lots"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert_eq!(
            err,
            "delivery.max_attempts (from KEFU_DELIVERY_MAX_ATTEMPTS): expected a whole number from 1 to 100, got \"lots\""
        );

        let err = load_with("[server]\nlisten = \"localhost\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("server.listen (from the config file): expected an IP address"),
            "{err}"
        );
    }

    #[test]
    fn toml_syntax_errors_never_quote_the_line() {
        let secret = "SECRETAESKEYabcdefghijklmnopqrstuvwxyz01234";
        for text in [
            format!("[dialogue]\naes_key = \"{secret}\"\naes_key = \"{secret}\"\n"),
            format!("[dialogue]\naes_key = \"{secret}\n"),
            format!("[dialogue]\naes_key = {secret}\n"),
        ] {
            let err = load_with(&text, &minimal()).unwrap_err().to_string();
            assert!(!err.contains("SECRETAESKEY"), "{err}");
            assert!(err.contains(", line "), "{err}");
            assert!(err.contains("is not valid TOML"), "{err}");
        }
    }

    #[test]
    fn unknown_settings_are_refused() {
        let err = load_with("[dialogue]\ntokn = \"x\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `dialogue.tokn`"), "{err}");
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let mut env = minimal();
        env[2] = (
            "KEFU_DIALOGUE_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!",
        );
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert!(
            err.contains("dialogue.aes_key (from KEFU_DIALOGUE_AES_KEY)"),
            "{err}"
        );
        assert!(!err.contains("abcdefghij"), "{err}");

        let mut env = minimal();
        env[0] = ("KEFU_SERVER_API_KEY", "short-secret");
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert!(!err.contains("short-secret"), "{err}");

        let config = Config::load(None, env_of(&minimal())).unwrap();
        let shown = format!("{config:?}");
        for secret in ["0123456789abcdef-desk", "tokentokentoken", KEY] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    /// The example at the top of the repository loads as it is, with nothing from the
    /// environment: the quickstart never rots.
    #[test]
    fn the_example_config_loads_and_serves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kefu.example.toml");
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert!(config.api_key().is_ok());
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.dialogue.base_url, "http://127.0.0.1:9000/openapi");
        assert_eq!(config.outbox_path, Path::new("kefu-outbox.sqlite3"));
    }

    /// Every setting appears in the example, in its section, set or commented out with its
    /// default.
    #[test]
    fn the_example_documents_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kefu.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(|line| line.trim_start_matches("# "))
            .collect();
        let mut section = "";
        let mut found = std::collections::BTreeSet::new();
        for line in lines {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            } else if let Some((key, _)) = line.split_once(" = ") {
                let section = schema::TABLES
                    .iter()
                    .find(|tables| section.starts_with(&format!("{}.", tables.section)))
                    .map_or(section.to_owned(), |tables| {
                        format!("{}.<name>", tables.section)
                    });
                found.insert(format!("{section}.{}", key.trim()));
            }
        }
        for setting in settings() {
            assert!(
                found.contains(setting.key),
                "{} is not in kefu.example.toml",
                setting.key
            );
        }
        for tables in schema::TABLES {
            for key in tables.keys {
                let key = format!("{}.<name>.{}", tables.section, key.key);
                assert!(found.contains(&key), "{key} is not in kefu.example.toml");
            }
        }
    }

    /// The same bad value names its origin: the file, or the variable that overrode it.
    #[test]
    fn messages_name_the_file_or_the_variable() {
        let file = "[delivery]\nmax_attempts = 0\n";
        let err = load_with(file, &minimal()).unwrap_err().to_string();
        assert!(
            err.starts_with("delivery.max_attempts (from the config file): expected"),
            "{err}"
        );
        let mut env = minimal();
        env.push(("KEFU_DELIVERY_MAX_ATTEMPTS", "0"));
        let err = load_with(file, &env).unwrap_err().to_string();
        assert!(
            err.starts_with("delivery.max_attempts (from KEFU_DELIVERY_MAX_ATTEMPTS): expected"),
            "{err}"
        );
    }

    /// Values are taken as given: figment's own environment provider would read `0123` as 123.
    #[test]
    fn environment_values_are_taken_verbatim() {
        let mut env = minimal();
        env.push(("KEFU_DIALOGUE_BOT_APPID", "0123"));
        env.push(("KEFU_DIALOGUE_APPID", "[wx1]"));
        let config = Config::load(None, env_of(&env)).unwrap();
        assert_eq!(config.dialogue.bot_appid, "0123");
        assert_eq!(config.dialogue.appid.as_deref(), Some("[wx1]"));
        let config = load_with("[server]\nmax_body_bytes = \"2048\"\n", &minimal()).unwrap();
        assert_eq!(
            config.max_body_bytes, 2048,
            "a number may be quoted in the file"
        );
    }

    #[test]
    fn account_names_are_unique_across_kinds() {
        let file = "[wechat.shop]\ntoken = \"t\"\n[gateway.shop]\nenvironment = \"prod\"\n";
        assert_eq!(
            load_with(file, &minimal()).unwrap_err().to_string(),
            "account name \"shop\" is used by both [wechat.shop] and [gateway.shop]: an account's name says which account sends a desk's message, so names are unique across wechat, yunzhenji and gateway accounts; rename one of them"
        );
        let mut env = minimal();
        env.push(("KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS", "shop"));
        let err = load_with("[gateway.shop]\nenvironment = \"prod\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "account name \"shop\" is used by both [yunzhenji.shop] and [gateway.shop]"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_without_showing_it() {
        let err = load_with("[webhook]\nsecret = [\"SECRETSECRET\"]\n", &minimal())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "webhook.secret (from the config file): expected a string or a number, got an array"
        );
    }
}
