//! The service configuration: a TOML file, every setting overridable by an environment variable,
//! validated at start with messages that name the setting, where it came from and what was
//! expected. Secret values never appear in messages or in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret setting (token, key). Its `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One setting: its key in the file, its environment variable, its default and its meaning.
#[derive(Debug)]
pub struct Setting {
    /// `section.name` in the TOML file.
    pub key: &'static str,
    /// The environment variable that overrides it.
    pub env: &'static str,
    /// The default, if the setting is optional.
    pub default: Option<&'static str>,
    /// Whether the value must never be shown.
    pub secret: bool,
    /// What it is.
    pub help: &'static str,
}

const fn setting(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    secret: bool,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        default,
        secret,
        help,
    }
}

/// Every setting `serve` reads, in the order `--help` lists them.
pub const SETTINGS: &[Setting] = &[
    setting(
        "server.listen",
        "KEFU_SERVER_LISTEN",
        Some("127.0.0.1:8080"),
        false,
        "address of the desk-facing HTTP API",
    ),
    setting(
        "server.api_key",
        "KEFU_SERVER_API_KEY",
        None,
        true,
        "the key desks send as `Authorization: Bearer <key>` (at least 16 characters)",
    ),
    setting(
        "server.max_body_bytes",
        "KEFU_SERVER_MAX_BODY_BYTES",
        Some("65536"),
        false,
        "largest request body accepted, in bytes",
    ),
    setting(
        "dialogue.token",
        "KEFU_DIALOGUE_TOKEN",
        None,
        true,
        "the platform TOKEN (发布管理 → 应用绑定 → 开放API)",
    ),
    setting(
        "dialogue.aes_key",
        "KEFU_DIALOGUE_AES_KEY",
        None,
        true,
        "the 43-character EncodingAESKey",
    ),
    setting(
        "dialogue.bot_appid",
        "KEFU_DIALOGUE_BOT_APPID",
        None,
        false,
        "the bot APPID, the receive-id of every encrypted payload",
    ),
    setting(
        "dialogue.appid",
        "KEFU_DIALOGUE_APPID",
        Some(""),
        false,
        "default Official Account / Mini Program AppID for messages and kefustate calls that name none",
    ),
    setting(
        "dialogue.base_url",
        "KEFU_DIALOGUE_BASE_URL",
        Some("https://chatbot.weixin.qq.com/openapi"),
        false,
        "platform base URL (the backup host is https://openai.weixin.qq.com/openapi)",
    ),
    setting(
        "dialogue.connect_timeout_ms",
        "KEFU_DIALOGUE_CONNECT_TIMEOUT_MS",
        Some("3000"),
        false,
        "connect timeout towards the platform, in milliseconds",
    ),
    setting(
        "dialogue.request_timeout_ms",
        "KEFU_DIALOGUE_REQUEST_TIMEOUT_MS",
        Some("10000"),
        false,
        "whole-request timeout towards the platform, in milliseconds",
    ),
    setting(
        "outbox.path",
        "KEFU_OUTBOX_PATH",
        Some("kefu-outbox.sqlite3"),
        false,
        "the SQLite file of the durable outbox",
    ),
    setting(
        "delivery.concurrency",
        "KEFU_DELIVERY_CONCURRENCY",
        Some("64"),
        false,
        "requests in flight at once, across users (each user's messages go one at a time)",
    ),
    setting(
        "delivery.initial_backoff_ms",
        "KEFU_DELIVERY_INITIAL_BACKOFF_MS",
        Some("1000"),
        false,
        "first retry delay, in milliseconds; doubled on each retry, with jitter",
    ),
    setting(
        "delivery.max_attempts",
        "KEFU_DELIVERY_MAX_ATTEMPTS",
        Some("3"),
        false,
        "attempts per message before it is marked failed",
    ),
    setting(
        "delivery.max_elapsed_ms",
        "KEFU_DELIVERY_MAX_ELAPSED_MS",
        Some("30000"),
        false,
        "time budget for a message's retries, in milliseconds",
    ),
    setting(
        "log.format",
        "KEFU_LOG_FORMAT",
        Some("text"),
        false,
        "`text` or `json`",
    ),
];

/// The validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the desk-facing API.
    pub listen: SocketAddr,
    /// The desks' bearer key; `serve` requires it (see [`Config::api_key`]), `send` does not.
    api_key: Option<Secret>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// The platform account.
    pub dialogue: DialogueConfig,
    /// The outbox file.
    pub outbox_path: PathBuf,
    /// Delivery and retries.
    pub delivery: DeliveryConfig,
    /// Log output format.
    pub log_format: LogFormat,
}

/// The Dialogue platform account.
#[derive(Debug, Clone)]
pub struct DialogueConfig {
    /// The TOKEN.
    pub token: Secret,
    /// The EncodingAESKey.
    pub aes_key: Secret,
    /// The bot APPID.
    pub bot_appid: String,
    /// Default OA/MP AppID, if any.
    pub appid: Option<String>,
    /// Platform base URL.
    pub base_url: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl DialogueConfig {
    /// The `appid` to send: the one asked for, else the TOKEN on channel 7 (protocols.md §4.4: an
    /// empty appid there is answered with 1011), else the configured default.
    pub fn appid_for(
        &self,
        requested: Option<String>,
        channel: kefu_payload::Channel,
    ) -> Option<String> {
        requested.or_else(|| {
            if channel == kefu_payload::Channel::WebH5 {
                Some(self.token.expose().to_owned())
            } else {
                self.appid.clone()
            }
        })
    }
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Attempts per message.
    pub max_attempts: u32,
    /// Time budget for retries.
    pub max_elapsed: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The desks' bearer key, which `serve` cannot run without.
    pub fn api_key(&self) -> Result<&Secret, ConfigError> {
        self.api_key.as_ref().ok_or_else(|| {
            ConfigError(
                "server.api_key is required to serve: set it in the config file or in KEFU_SERVER_API_KEY (the key desks send as `Authorization: Bearer <key>`, at least 16 characters)".into(),
            )
        })
    }
}

/// A configuration problem, naming the setting and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Where a value came from, for messages.
#[derive(Debug, Clone)]
enum Origin {
    File,
    Env(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File => f.write_str("from the config file"),
            Origin::Env(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

struct Values(BTreeMap<&'static str, (String, Origin)>);

impl Config {
    /// Loads the file (if any), applies environment overrides read through `env`, and validates.
    ///
    /// `env` is a parameter so that tests need not touch the process environment; `serve` passes
    /// `|name| std::env::var(name).ok()`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            read_toml(&text, path, &mut values)?;
        }
        for setting in SETTINGS {
            if let Some(value) = env(setting.env) {
                values.insert(setting.key, (value, Origin::Env(setting.env)));
            } else if !values.contains_key(setting.key) {
                if let Some(default) = setting.default {
                    values.insert(setting.key, (default.to_owned(), Origin::Default));
                }
            }
        }
        Values(values).validate()
    }
}

fn read_toml(
    text: &str,
    path: &Path,
    values: &mut BTreeMap<&'static str, (String, Origin)>,
) -> Result<(), ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError(format!("{} is not valid TOML: {e}", path.display())))?;
    for (section, entries) in &table {
        let toml::Value::Table(entries) = entries else {
            return Err(ConfigError(format!(
                "{}: `{section}` must be a [section]; known settings: {}",
                path.display(),
                known_keys()
            )));
        };
        for (name, value) in entries {
            let key = format!("{section}.{name}");
            let setting = SETTINGS.iter().find(|s| s.key == key).ok_or_else(|| {
                ConfigError(format!(
                    "{}: unknown setting `{key}`; known settings: {}",
                    path.display(),
                    known_keys()
                ))
            })?;
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError(format!(
                        "{key} (from the config file): expected a string or a number, got a {}",
                        other.type_str()
                    )));
                }
            };
            values.insert(setting.key, (text, Origin::File));
        }
    }
    Ok(())
}

fn known_keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Values {
    fn raw(&self, key: &'static str) -> Result<(&str, &Origin), ConfigError> {
        let setting = SETTINGS.iter().find(|s| s.key == key);
        self.0
            .get(key)
            .map(|(value, origin)| (value.as_str(), origin))
            .ok_or_else(|| {
                ConfigError(format!(
                    "{key} is required: set it in the config file or in {} ({})",
                    setting.map(|s| s.env).unwrap_or_default(),
                    setting.map(|s| s.help).unwrap_or_default()
                ))
            })
    }

    fn invalid(key: &str, origin: &Origin, expected: &str, shown: &str) -> ConfigError {
        ConfigError(format!(
            "{key} ({origin}): expected {expected}, got {shown}"
        ))
    }

    fn text(&self, key: &'static str) -> Result<String, ConfigError> {
        Ok(self.raw(key)?.0.to_owned())
    }

    fn non_empty(&self, key: &'static str, expected: &str) -> Result<String, ConfigError> {
        let (value, origin) = self.raw(key)?;
        if value.trim().is_empty() {
            return Err(Values::invalid(key, origin, expected, "an empty value"));
        }
        Ok(value.to_owned())
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(
        &self,
        key: &'static str,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let (value, origin) = self.raw(key)?;
        let expected = format!("a whole number from {min} to {max}");
        match value.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(Values::invalid(
                key,
                origin,
                &expected,
                &format!("{value:?}"),
            )),
        }
    }

    fn millis(&self, key: &'static str, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(key, min, max).map(Duration::from_millis)
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let (listen_text, origin) = self.raw("server.listen")?;
        let listen = listen_text.parse().map_err(|_| {
            Values::invalid(
                "server.listen",
                origin,
                "an IP address and port such as 127.0.0.1:8080",
                &format!("{listen_text:?}"),
            )
        })?;

        let api_key = match self.raw("server.api_key") {
            Ok((key, origin)) if key.chars().count() < 16 => {
                return Err(Values::invalid(
                    "server.api_key",
                    origin,
                    "at least 16 characters",
                    &format!("{} characters", key.chars().count()),
                ));
            }
            Ok((key, _)) => Some(Secret::new(key)),
            Err(_) => None,
        };

        let token = self.non_empty("dialogue.token", "the platform TOKEN")?;
        if token.contains(['/', '?', '#', ' ']) {
            let (_, origin) = self.raw("dialogue.token")?;
            return Err(Values::invalid(
                "dialogue.token",
                origin,
                "a TOKEN without '/', '?', '#' or spaces (it is a URL path segment)",
                "a value containing one",
            ));
        }
        let (aes_key, origin) = self.raw("dialogue.aes_key")?;
        // The key's own validation names the length or the position of a bad character, never
        // the key.
        wxbizmsgcrypt::AesKey::parse(aes_key)
            .map_err(|e| ConfigError(format!("dialogue.aes_key ({origin}): {e}")))?;
        let aes_key = Secret::new(aes_key);

        let bot_appid = self.non_empty("dialogue.bot_appid", "the bot APPID")?;
        let appid = Some(self.text("dialogue.appid")?).filter(|a| !a.is_empty());
        let (base_url, origin) = self.raw("dialogue.base_url")?;
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(Values::invalid(
                "dialogue.base_url",
                origin,
                "an http:// or https:// URL",
                &format!("{base_url:?}"),
            ));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();

        let (format, origin) = self.raw("log.format")?;
        let log_format = match format {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(Values::invalid(
                    "log.format",
                    origin,
                    "`text` or `json`",
                    &format!("{other:?}"),
                ));
            }
        };

        Ok(Config {
            listen,
            api_key,
            max_body_bytes: self.number("server.max_body_bytes", 1024, 16 << 20)?,
            dialogue: DialogueConfig {
                token: Secret::new(token),
                aes_key,
                bot_appid,
                appid,
                base_url,
                connect_timeout: self.millis("dialogue.connect_timeout_ms", 1, 600_000)?,
                request_timeout: self.millis("dialogue.request_timeout_ms", 1, 600_000)?,
            },
            outbox_path: PathBuf::from(self.non_empty("outbox.path", "a file path")?),
            delivery: DeliveryConfig {
                concurrency: self.number("delivery.concurrency", 1, 10_000)?,
                initial_backoff: self.millis("delivery.initial_backoff_ms", 1, 3_600_000)?,
                max_attempts: self.number("delivery.max_attempts", 1, 100)?,
                max_elapsed: self.millis("delivery.max_elapsed_ms", 1, 86_400_000)?,
            },
            log_format,
        })
    }
}

/// The settings table for `serve --help`.
pub fn settings_help() -> String {
    let mut text = String::from("Settings (file key / environment variable [default]):\n");
    for s in SETTINGS {
        let default = match s.default {
            Some("") => " [none]".to_owned(),
            Some(d) => format!(" [{d}]"),
            None => " [required]".to_owned(),
        };
        text.push_str(&format!(
            "  {} / {}{}\n      {}\n",
            s.key, s.env, default, s.help
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("KEFU_SERVER_API_KEY", "0123456789abcdef-desk"),
            ("KEFU_DIALOGUE_TOKEN", "tokentokentoken"),
            ("KEFU_DIALOGUE_AES_KEY", KEY),
            ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
        ]
    }

    fn load_with(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kefu.toml");
        std::fs::write(&path, file).unwrap();
        Config::load(Some(&path), env_of(env))
    }

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

    #[test]
    fn help_lists_every_setting() {
        let help = settings_help();
        for s in SETTINGS {
            assert!(help.contains(s.key) && help.contains(s.env));
        }
    }
}
