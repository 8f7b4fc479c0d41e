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
        "server.idempotency_retention_secs",
        "KEFU_SERVER_IDEMPOTENCY_RETENTION_SECS",
        Some("86400"),
        false,
        "how long an Idempotency-Key is remembered, in seconds (1 to 31536000); within it, a POST repeated with the same key and request gets the first answer again and creates nothing",
    ),
    setting(
        "server.header_read_timeout_ms",
        "KEFU_SERVER_HEADER_READ_TIMEOUT_MS",
        Some("10000"),
        false,
        "how long a client may take from the first byte of a request to the end of its headers, in milliseconds; then the connection is closed",
    ),
    setting(
        "server.body_read_timeout_ms",
        "KEFU_SERVER_BODY_READ_TIMEOUT_MS",
        Some("30000"),
        false,
        "how long a client may take to send a request body after its headers, in milliseconds; then it is answered 408 and the connection closed",
    ),
    setting(
        "server.idle_timeout_ms",
        "KEFU_SERVER_IDLE_TIMEOUT_MS",
        Some("60000"),
        false,
        "how long a connection may wait for its next (or first) request with nothing sent, in milliseconds; then it is closed",
    ),
    setting(
        "server.max_connections",
        "KEFU_SERVER_MAX_CONNECTIONS",
        Some("1024"),
        false,
        "connections served at once; at the limit a new connection takes the place of the one idle (or still sending its request) the longest, which is closed, and only when all are busy answering is it answered 503 and closed (keep it below the process's file-descriptor limit, `ulimit -n`)",
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
        "callbacks.dialogue_secret",
        "KEFU_CALLBACKS_DIALOGUE_SECRET",
        Some(""),
        true,
        "the unguessable path segment of the Dialogue handoff callback, POST /v1/callbacks/dialogue/<secret> (at least 16 of A-Z a-z 0-9 - . _ ~); unset, the route refuses every call",
    ),
    setting(
        "callbacks.dialogue_receive_id",
        "KEFU_CALLBACKS_DIALOGUE_RECEIVE_ID",
        Some("strict"),
        false,
        "`strict`: the callback's receive-id must be dialogue.bot_appid; `log`: accept any, log it at debug and count it in kefu_dialogue_receive_id_total (protocols.md §3.8: the id is unconfirmed)",
    ),
    setting(
        "callbacks.replay_window_secs",
        "KEFU_CALLBACKS_REPLAY_WINDOW_SECS",
        Some("300"),
        false,
        "WeChat callbacks whose timestamp is further than this from now, in seconds, are refused; a (timestamp, nonce, signature) seen within it on another body is refused as a replay (on the same body it is a redelivery)",
    ),
    setting(
        "callbacks.dedup_retention_secs",
        "KEFU_CALLBACKS_DEDUP_RETENTION_SECS",
        Some("3600"),
        false,
        "how long a callback's dedup key is kept, in seconds (at least 600); a redelivery within it is acknowledged and dropped",
    ),
    setting(
        "callbacks.wechat_accounts",
        "KEFU_CALLBACKS_WECHAT_ACCOUNTS",
        Some(""),
        false,
        "comma-separated names of WeChat accounts configured only through KEFU_WECHAT_<NAME>_<KEY> (accounts with a [wechat.<name>] table need not be listed)",
    ),
    setting(
        "webhook.url",
        "KEFU_WEBHOOK_URL",
        Some(""),
        false,
        "the desk's http:// or https:// URL that inbound events are POSTed to; unset, events are only served by GET /v1/events",
    ),
    setting(
        "webhook.secret",
        "KEFU_WEBHOOK_SECRET",
        Some(""),
        true,
        "the HMAC-SHA256 key of X-Kefu-Signature (at least 16 characters); required with webhook.url",
    ),
    setting(
        "webhook.timeout_ms",
        "KEFU_WEBHOOK_TIMEOUT_MS",
        Some("5000"),
        false,
        "whole-request timeout of a webhook call, in milliseconds",
    ),
    setting(
        "webhook.initial_backoff_ms",
        "KEFU_WEBHOOK_INITIAL_BACKOFF_MS",
        Some("1000"),
        false,
        "first retry delay after a failed webhook call, in milliseconds; doubled on each retry, with jitter",
    ),
    setting(
        "webhook.max_backoff_ms",
        "KEFU_WEBHOOK_MAX_BACKOFF_MS",
        Some("60000"),
        false,
        "longest delay between two webhook attempts, in milliseconds",
    ),
    setting(
        "webhook.max_attempts",
        "KEFU_WEBHOOK_MAX_ATTEMPTS",
        Some("100"),
        false,
        "webhook attempts per event before it is marked failed (it stays available from GET /v1/events)",
    ),
    setting(
        "webhook.concurrency",
        "KEFU_WEBHOOK_CONCURRENCY",
        Some("16"),
        false,
        "webhook calls in flight at once, across users (each user's events go one at a time, in order)",
    ),
    setting(
        "events.retention_secs",
        "KEFU_EVENTS_RETENTION_SECS",
        Some("604800"),
        false,
        "how long inbound events stay readable from GET /v1/events, in seconds (events still waiting for the webhook are kept)",
    ),
    setting(
        "events.max_wait_secs",
        "KEFU_EVENTS_MAX_WAIT_SECS",
        Some("30"),
        false,
        "the longest long poll of GET /v1/events?wait=…, in seconds",
    ),
    setting(
        "metrics.listen",
        "KEFU_METRICS_LISTEN",
        Some(""),
        false,
        "an address such as 127.0.0.1:9090 to also serve GET /metrics on without the bearer key, for a Prometheus that has none; keep it on loopback or a private network (on server.listen, /metrics always needs the key); unset, no such listener",
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
    /// How long an `Idempotency-Key` is remembered (see [`crate::idempotency`]).
    pub idempotency_retention: Duration,
    /// The desk API's timeouts for slow clients and its connection limit.
    pub server_limits: crate::http_server::ServerLimits,
    /// The platform account.
    pub dialogue: DialogueConfig,
    /// The outbox file.
    pub outbox_path: PathBuf,
    /// Delivery and retries.
    pub delivery: DeliveryConfig,
    /// Inbound callbacks: the Dialogue callback's secret, replay and dedup windows.
    pub callbacks: CallbacksConfig,
    /// Push delivery of inbound events to the desk, if configured.
    pub webhook: Option<WebhookConfig>,
    /// Pull delivery of inbound events and their retention.
    pub events: EventsConfig,
    /// The named WeChat accounts (`[wechat.<name>]`) whose standard callbacks are received.
    pub wechat: Vec<WechatAccount>,
    /// Where `GET /metrics` is also served without the bearer key, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Log output format.
    pub log_format: LogFormat,
}

/// How the Dialogue callback's receive-id is checked (protocols.md §3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveIdPolicy {
    /// The receive-id must be `dialogue.bot_appid`.
    Strict,
    /// Any receive-id is accepted; the one found is logged at debug level and counted.
    Log,
}

/// Inbound callbacks.
#[derive(Debug, Clone)]
pub struct CallbacksConfig {
    /// The path segment of `POST /v1/callbacks/dialogue/{secret}`; `None` refuses every call.
    pub dialogue_secret: Option<Secret>,
    /// The receive-id check of the Dialogue callback.
    pub dialogue_receive_id: ReceiveIdPolicy,
    /// The accepted distance between a WeChat callback's timestamp and now; also how long a
    /// (timestamp, nonce, signature) is remembered.
    pub replay_window: Duration,
    /// How long a dedup key is kept.
    pub dedup_retention: Duration,
}

/// Push delivery of inbound events.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The desk's URL.
    pub url: String,
    /// The HMAC-SHA256 key.
    pub secret: Secret,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Attempts per event before it is marked failed.
    pub max_attempts: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
}

/// Pull delivery of inbound events.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// How long events are kept.
    pub retention: Duration,
    /// The cap on `wait` of a long poll.
    pub max_wait: Duration,
}

/// What kind of WeChat account sends the callbacks: it decides the URL verification and the
/// signatures (protocols.md §3.7).
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
    /// The name, the last segment of `/v1/callbacks/wechat/{name}`.
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
}

/// The keys of a `[wechat.<name>]` table: (key, secret, help).
pub const WECHAT_KEYS: &[(&str, bool, &str)] = &[
    (
        "kind",
        false,
        "`oa` (Official Account, the default), `mp` (Mini Program) or `wecom`",
    ),
    (
        "mode",
        false,
        "`plain`, `compatible` or `safe` (消息加解密方式, as on the account's console): in safe and compatible mode a push without encrypt_type=aes and a valid msg_signature is refused; default `safe` with an aes_key, else `plain`; wecom is always safe",
    ),
    ("token", true, "the Token of the callback configuration"),
    (
        "aes_key",
        true,
        "the 43-character EncodingAESKey (safe or compatible mode; required for wecom)",
    ),
    (
        "previous_aes_key",
        true,
        "the EncodingAESKey before the last rotation, tried after aes_key",
    ),
    (
        "receive_id",
        false,
        "the AppID (oa, mp), the CorpID or SuiteID (wecom), or empty (wecom smart robot); required with aes_key",
    ),
];

/// The environment variable of a `[wechat.<name>]` key.
pub fn wechat_env(name: &str, key: &str) -> String {
    format!(
        "KEFU_WECHAT_{}_{}",
        name.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
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
    EnvNamed(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File => f.write_str("from the config file"),
            Origin::Env(name) => write!(f, "from {name}"),
            Origin::EnvNamed(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

struct Values(BTreeMap<&'static str, (String, Origin)>);

/// The raw settings of the `[wechat.<name>]` tables, by name then key.
type WechatValues = BTreeMap<String, BTreeMap<&'static str, (String, Origin)>>;

impl Config {
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
        let mut values = BTreeMap::new();
        let mut wechat = WechatValues::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            read_toml(&text, path, &mut values, &mut wechat)?;
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
        let values = Values(values);
        let wechat = wechat_accounts(&values, wechat, &env)?;
        let mut config = values.validate()?;
        config.wechat = wechat;
        Ok(config)
    }
}

/// The file `serve`, `send` and `crypt` read when no `--config` is given, in the working
/// directory.
pub const DEFAULT_CONFIG_FILE: &str = "kefu.toml";

/// The config file a command reads: the `--config` given, else `./kefu.toml` if it exists.
pub fn config_file(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_owned()),
        None => {
            let default = Path::new(".").join(DEFAULT_CONFIG_FILE);
            default.is_file().then_some(default)
        }
    }
}

/// A `--config` that names no readable file is an error of its own, with what to do.
pub fn check_given_file(given: Option<&Path>) -> Result<(), ConfigError> {
    match given {
        Some(path) if !path.is_file() => Err(ConfigError(format!(
            "the config file {} does not exist; pass the right --config, or start from the example: cp kefu.example.toml {}",
            path.display(),
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Where the settings were looked for, for the start-up log and for configuration errors.
pub fn settings_origin(given: Option<&Path>, file: Option<&Path>) -> String {
    match (given, file) {
        (Some(path), _) => format!(
            "settings were read from {}; a KEFU_* environment variable wins over it",
            path.display()
        ),
        (None, Some(path)) => format!(
            "no --config given: settings were read from {}; a KEFU_* environment variable wins over it",
            path.display()
        ),
        (None, None) => format!(
            "no --config given and ./{DEFAULT_CONFIG_FILE} does not exist: settings came from the KEFU_* environment variables only"
        ),
    }
}

/// The `[section]` settings of a config file, by key, with their text; unknown keys are refused
/// as in [`Config::load`]. For `crypt`, which needs the `dialogue` credentials and nothing else.
pub fn file_settings(path: &Path) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let mut values = BTreeMap::new();
    read_toml(&text, path, &mut values, &mut WechatValues::new())?;
    Ok(values
        .into_iter()
        .map(|(key, (value, _))| (key, value))
        .collect())
}

impl Config {
    /// Loads the settings of a subcommand run from the command line: the `--config` file (else
    /// `./kefu.toml` if it exists), overridden by the process environment; `serving` also
    /// demands `server.api_key`. An error says where the settings were looked for.
    pub fn load_cli(given: Option<&Path>, serving: bool) -> Result<Config, ConfigError> {
        check_given_file(given)?;
        let file = config_file(given);
        let loaded = Config::load(file.as_deref(), |name| std::env::var(name).ok());
        let checked = loaded.and_then(|config| match serving {
            true => config.api_key().map(|_| config.clone()),
            false => Ok(config),
        });
        checked.map_err(|error| {
            ConfigError(format!(
                "{error}\n({})",
                settings_origin(given, file.as_deref())
            ))
        })
    }
}

/// Adds the accounts named in `callbacks.wechat_accounts`, applies the environment to every
/// account and validates them.
fn wechat_accounts(
    values: &Values,
    mut wechat: WechatValues,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<WechatAccount>, ConfigError> {
    let (listed, origin) = values.raw("callbacks.wechat_accounts")?;
    for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        check_account_name(name, &format!("callbacks.wechat_accounts ({origin})"))?;
        wechat.entry(name.to_owned()).or_default();
    }
    let mut accounts = Vec::with_capacity(wechat.len());
    for (name, mut settings) in wechat {
        for (key, _, _) in WECHAT_KEYS {
            let variable = wechat_env(&name, key);
            if let Some(value) = env(&variable) {
                settings.insert(key, (value, Origin::EnvNamed(variable)));
            }
        }
        accounts.push(wechat_account(name, &settings)?);
    }
    Ok(accounts)
}

fn check_account_name(name: &str, place: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{place}: WeChat account name {name:?} must be 1 to 32 of a-z, 0-9 and _ (it is a URL path segment and part of KEFU_WECHAT_<NAME>_<KEY>)"
        )))
    }
}

fn wechat_account(
    name: String,
    settings: &BTreeMap<&'static str, (String, Origin)>,
) -> Result<WechatAccount, ConfigError> {
    let key_of = |key: &str| format!("wechat.{name}.{key}");
    let get = |key: &str| {
        settings
            .get(key)
            .map(|(value, origin)| (value.as_str(), origin))
    };
    let kind = match get("kind") {
        None => AccountKind::OfficialAccount,
        Some(("oa", _)) => AccountKind::OfficialAccount,
        Some(("mp", _)) => AccountKind::MiniProgram,
        Some(("wecom", _)) => AccountKind::WeCom,
        Some((other, origin)) => {
            return Err(Values::invalid(
                &key_of("kind"),
                origin,
                "`oa`, `mp` or `wecom`",
                &format!("{other:?}"),
            ));
        }
    };
    let token = match get("token") {
        Some((token, _)) if !token.trim().is_empty() => Secret::new(token),
        Some((_, origin)) => {
            return Err(Values::invalid(
                &key_of("token"),
                origin,
                "the Token of the callback configuration",
                "an empty value",
            ));
        }
        None => {
            return Err(ConfigError(format!(
                "{} is required: set it in the [wechat.{name}] table or in {} (the Token of the callback configuration)",
                key_of("token"),
                wechat_env(&name, "token")
            )));
        }
    };
    let aes_key = |key: &str| -> Result<Option<Secret>, ConfigError> {
        match get(key) {
            Some(("", _)) | None => Ok(None),
            Some((value, origin)) => {
                wxbizmsgcrypt::AesKey::parse(value)
                    .map_err(|e| ConfigError(format!("{} ({origin}): {e}", key_of(key))))?;
                Ok(Some(Secret::new(value)))
            }
        }
    };
    let current = aes_key("aes_key")?;
    let previous = aes_key("previous_aes_key")?;
    if current.is_none() && previous.is_some() {
        return Err(ConfigError(format!(
            "{} is set without {}: the current key comes first, the previous one is only tried after it",
            key_of("previous_aes_key"),
            key_of("aes_key")
        )));
    }
    if current.is_none() && kind == AccountKind::WeCom {
        return Err(ConfigError(format!(
            "{} is required for a wecom account: set it in the [wechat.{name}] table or in {} (WeCom callbacks are always encrypted)",
            key_of("aes_key"),
            wechat_env(&name, "aes_key")
        )));
    }
    let mode = match get("mode") {
        None | Some(("", _)) if kind == AccountKind::WeCom || current.is_some() => WechatMode::Safe,
        None | Some(("", _)) => WechatMode::Plain,
        Some(("safe", _)) => WechatMode::Safe,
        Some((other @ ("compatible" | "plain"), origin)) if kind == AccountKind::WeCom => {
            return Err(Values::invalid(
                &key_of("mode"),
                origin,
                "`safe` or nothing (WeCom callbacks are always encrypted)",
                &format!("{other:?}"),
            ));
        }
        Some(("compatible", _)) => WechatMode::Compatible,
        Some(("plain", _)) => WechatMode::Plain,
        Some((other, origin)) => {
            return Err(Values::invalid(
                &key_of("mode"),
                origin,
                "`plain`, `compatible` or `safe`",
                &format!("{other:?}"),
            ));
        }
    };
    if mode.requires_encryption() && current.is_none() {
        let origin = get("mode").map_or(&Origin::Default, |(_, origin)| origin);
        return Err(ConfigError(format!(
            "{} ({origin}) is {} but {} is not set: set the account's 43-character EncodingAESKey in the [wechat.{name}] table or in {}, or set the mode to `plain` if the account's console says 明文模式",
            key_of("mode"),
            mode.as_str(),
            key_of("aes_key"),
            wechat_env(&name, "aes_key")
        )));
    }
    let receive_id = match get("receive_id") {
        Some((id, origin)) if id.is_empty() && kind != AccountKind::WeCom && current.is_some() => {
            return Err(Values::invalid(
                &key_of("receive_id"),
                origin,
                "the account's AppID (an empty receive-id is only used by the WeCom smart robot)",
                "an empty value",
            ));
        }
        Some((id, _)) => id.to_owned(),
        None if current.is_some() => {
            return Err(ConfigError(format!(
                "{} is required with an aes_key: set it in the [wechat.{name}] table or in {} (the AppID, CorpID or SuiteID that trails every plaintext; empty for the WeCom smart robot)",
                key_of("receive_id"),
                wechat_env(&name, "receive_id")
            )));
        }
        None => String::new(),
    };
    Ok(WechatAccount {
        name,
        kind,
        mode,
        token,
        aes_key: current,
        previous_aes_key: previous,
        receive_id,
    })
}

/// A TOML syntax error by file, line and column, without the source line the toml crate quotes:
/// that line may be a secret (`aes_key = "…` with a missing quote).
fn toml_error(text: &str, path: &Path, error: &toml::de::Error) -> String {
    let place = error.span().map_or(String::new(), |span| {
        let before = text.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        format!(", line {line}, column {column}")
    });
    format!(
        "{}{place} is not valid TOML: {}; check the quoting and that no key is set twice",
        path.display(),
        error.message().trim_end()
    )
}

fn read_toml(
    text: &str,
    path: &Path,
    values: &mut BTreeMap<&'static str, (String, Origin)>,
    wechat: &mut WechatValues,
) -> Result<(), ConfigError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError(toml_error(text, path, &e)))?;
    for (section, entries) in &table {
        let toml::Value::Table(entries) = entries else {
            return Err(ConfigError(format!(
                "{}: `{section}` must be a [section]; known settings: {}",
                path.display(),
                known_keys()
            )));
        };
        if section == "wechat" {
            read_wechat_tables(entries, path, wechat)?;
            continue;
        }
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

fn read_wechat_tables(
    entries: &toml::Table,
    path: &Path,
    wechat: &mut WechatValues,
) -> Result<(), ConfigError> {
    let known = || {
        WECHAT_KEYS
            .iter()
            .map(|(key, _, _)| *key)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, table) in entries {
        check_account_name(name, &path.display().to_string())?;
        let toml::Value::Table(table) = table else {
            return Err(ConfigError(format!(
                "{}: `wechat.{name}` must be a [wechat.{name}] table with {}",
                path.display(),
                known()
            )));
        };
        let settings = wechat.entry(name.clone()).or_default();
        for (key, value) in table {
            let Some((known_key, _, _)) = WECHAT_KEYS.iter().find(|(k, _, _)| k == key) else {
                return Err(ConfigError(format!(
                    "{}: unknown setting `wechat.{name}.{key}`; a [wechat.<name>] table takes {}",
                    path.display(),
                    known()
                )));
            };
            let toml::Value::String(text) = value else {
                return Err(ConfigError(format!(
                    "wechat.{name}.{key} (from the config file): expected a string, got a {}",
                    value.type_str()
                )));
            };
            settings.insert(known_key, (text.clone(), Origin::File));
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

        let (metrics_text, origin) = self.raw("metrics.listen")?;
        let metrics_listen = match metrics_text.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                Values::invalid(
                    "metrics.listen",
                    origin,
                    "an IP address and port such as 127.0.0.1:9090, or nothing",
                    &format!("{metrics_text:?}"),
                )
            })?),
        };

        let callbacks = self.callbacks()?;
        let webhook = self.webhook()?;
        let events = EventsConfig {
            retention: Duration::from_secs(self.number(
                "events.retention_secs",
                600,
                31_536_000,
            )?),
            max_wait: Duration::from_secs(self.number("events.max_wait_secs", 1, 300)?),
        };

        Ok(Config {
            listen,
            api_key,
            max_body_bytes: self.number("server.max_body_bytes", 1024, 16 << 20)?,
            idempotency_retention: Duration::from_secs(self.number(
                "server.idempotency_retention_secs",
                1,
                31_536_000,
            )?),
            server_limits: crate::http_server::ServerLimits {
                header_read_timeout: self.millis("server.header_read_timeout_ms", 1, 600_000)?,
                body_read_timeout: self.millis("server.body_read_timeout_ms", 1, 3_600_000)?,
                idle_timeout: self.millis("server.idle_timeout_ms", 1, 3_600_000)?,
                max_connections: self.number("server.max_connections", 1, 1_000_000)?,
            },
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
            callbacks,
            webhook,
            events,
            wechat: Vec::new(),
            metrics_listen,
            log_format,
        })
    }

    /// An optional secret: `None` when empty, else at least 16 characters.
    fn optional_secret(
        &self,
        key: &'static str,
        alphabet: bool,
    ) -> Result<Option<Secret>, ConfigError> {
        let (value, origin) = self.raw(key)?;
        if value.is_empty() {
            return Ok(None);
        }
        let count = value.chars().count();
        if count < 16 {
            return Err(Values::invalid(
                key,
                origin,
                "at least 16 characters",
                &format!("{count} characters"),
            ));
        }
        if alphabet
            && !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(Values::invalid(
                key,
                origin,
                "only A-Z, a-z, 0-9, '-', '.', '_' and '~' (it is a URL path segment)",
                "another character",
            ));
        }
        Ok(Some(Secret::new(value)))
    }

    fn callbacks(&self) -> Result<CallbacksConfig, ConfigError> {
        let (policy, origin) = self.raw("callbacks.dialogue_receive_id")?;
        let dialogue_receive_id = match policy {
            "strict" => ReceiveIdPolicy::Strict,
            "log" => ReceiveIdPolicy::Log,
            other => {
                return Err(Values::invalid(
                    "callbacks.dialogue_receive_id",
                    origin,
                    "`strict` or `log`",
                    &format!("{other:?}"),
                ));
            }
        };
        let replay_window: u64 = self.number("callbacks.replay_window_secs", 1, 86_400)?;
        let dedup_retention: u64 =
            self.number("callbacks.dedup_retention_secs", 600, 31_536_000)?;
        // A callback is accepted while its time is within the window of now, on either side: its
        // dedup key must outlive that, or a redelivery late in the window is stored twice.
        if dedup_retention < 2 * replay_window {
            return Err(ConfigError(format!(
                "callbacks.dedup_retention_secs ({dedup_retention}) must be at least twice callbacks.replay_window_secs ({replay_window}), or a callback redelivered late in the window is stored twice; raise it to {} or more",
                2 * replay_window
            )));
        }
        Ok(CallbacksConfig {
            dialogue_secret: self.optional_secret("callbacks.dialogue_secret", true)?,
            dialogue_receive_id,
            replay_window: Duration::from_secs(replay_window),
            dedup_retention: Duration::from_secs(dedup_retention),
        })
    }

    fn webhook(&self) -> Result<Option<WebhookConfig>, ConfigError> {
        let (url, origin) = self.raw("webhook.url")?;
        let secret = self.optional_secret("webhook.secret", false)?;
        if url.is_empty() {
            return Ok(None);
        }
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && url
                .parse::<hyper::Uri>()
                .is_ok_and(|uri| uri.host().is_some_and(|h| !h.is_empty()));
        if !valid {
            // The URL may carry a credential in its query: never show it.
            return Err(Values::invalid(
                "webhook.url",
                origin,
                "an http:// or https:// URL with a host",
                "something else",
            ));
        }
        let Some(secret) = secret else {
            return Err(ConfigError(
                "webhook.secret is required with webhook.url: set it in the config file or in KEFU_WEBHOOK_SECRET (the HMAC-SHA256 key the desk verifies X-Kefu-Signature with, at least 16 characters)".into(),
            ));
        };
        let initial_backoff = self.millis("webhook.initial_backoff_ms", 1, 3_600_000)?;
        let max_backoff = self.millis("webhook.max_backoff_ms", 1, 86_400_000)?;
        if max_backoff < initial_backoff {
            let (_, origin) = self.raw("webhook.max_backoff_ms")?;
            return Err(Values::invalid(
                "webhook.max_backoff_ms",
                origin,
                "at least webhook.initial_backoff_ms",
                &format!("{} ms", max_backoff.as_millis()),
            ));
        }
        Ok(Some(WebhookConfig {
            url: url.to_owned(),
            secret,
            timeout: self.millis("webhook.timeout_ms", 1, 600_000)?,
            initial_backoff,
            max_backoff,
            max_attempts: self.number("webhook.max_attempts", 1, 1_000_000)?,
            concurrency: self.number("webhook.concurrency", 1, 10_000)?,
        }))
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
    text.push_str(
        "WeChat accounts, one [wechat.<name>] table each (<name>: a-z, 0-9, _), received at\n\
         /v1/callbacks/wechat/<name> (file key / environment variable):\n",
    );
    for (key, secret, help) in WECHAT_KEYS {
        let secret = if *secret { " (secret)" } else { "" };
        text.push_str(&format!(
            "  wechat.<name>.{key} / KEFU_WECHAT_<NAME>_{}{secret}\n      {help}\n",
            key.to_ascii_uppercase()
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
    fn idempotency_retention_defaults_to_a_day_and_is_bounded() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert_eq!(config.idempotency_retention, Duration::from_secs(86_400));
        let config = load_with("[server]\nidempotency_retention_secs = 1\n", &minimal()).unwrap();
        assert_eq!(config.idempotency_retention, Duration::from_secs(1));
        for bad in ["0", "31536001", "1d", ""] {
            let mut env = minimal();
            env.push(("KEFU_SERVER_IDEMPOTENCY_RETENTION_SECS", bad));
            let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "server.idempotency_retention_secs (from KEFU_SERVER_IDEMPOTENCY_RETENTION_SECS): expected a whole number from 1 to 31536000, got {bad:?}"
                )
            );
        }
    }

    #[test]
    fn server_limits_have_defaults_and_named_bounds() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert_eq!(
            config.server_limits,
            crate::http_server::ServerLimits::default()
        );
        let config = load_with(
            "[server]\nheader_read_timeout_ms = 300\nbody_read_timeout_ms = 400\nidle_timeout_ms = 500\nmax_connections = 8\n",
            &minimal(),
        )
        .unwrap();
        let limits = config.server_limits;
        assert_eq!(limits.header_read_timeout, Duration::from_millis(300));
        assert_eq!(limits.body_read_timeout, Duration::from_millis(400));
        assert_eq!(limits.idle_timeout, Duration::from_millis(500));
        assert_eq!(limits.max_connections, 8);
        for (variable, value, expected) in [
            (
                "KEFU_SERVER_MAX_CONNECTIONS",
                "0",
                "server.max_connections (from KEFU_SERVER_MAX_CONNECTIONS): expected a whole number from 1 to 1000000, got \"0\"",
            ),
            (
                "KEFU_SERVER_HEADER_READ_TIMEOUT_MS",
                "0",
                "server.header_read_timeout_ms (from KEFU_SERVER_HEADER_READ_TIMEOUT_MS): expected a whole number from 1 to 600000, got \"0\"",
            ),
            (
                "KEFU_SERVER_BODY_READ_TIMEOUT_MS",
                "30s",
                "server.body_read_timeout_ms (from KEFU_SERVER_BODY_READ_TIMEOUT_MS): expected a whole number from 1 to 3600000, got \"30s\"",
            ),
            (
                "KEFU_SERVER_IDLE_TIMEOUT_MS",
                "-1",
                "server.idle_timeout_ms (from KEFU_SERVER_IDLE_TIMEOUT_MS): expected a whole number from 1 to 3600000, got \"-1\"",
            ),
        ] {
            let mut env = minimal();
            env.push((variable, value));
            let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
            assert_eq!(err, expected);
        }
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

    #[test]
    fn help_lists_every_setting() {
        let help = settings_help();
        for s in SETTINGS {
            assert!(help.contains(s.key) && help.contains(s.env));
        }
        for (key, _, _) in WECHAT_KEYS {
            assert!(help.contains(&format!("wechat.<name>.{key}")), "{key}");
            assert!(help.contains(&format!("KEFU_WECHAT_<NAME>_{}", key.to_ascii_uppercase())));
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

    /// No --config and no ./kefu.toml: the error says that only the environment was read.
    #[test]
    fn errors_say_where_settings_were_looked_for() {
        let given = Path::new("/etc/kefu/kefu.toml");
        assert!(settings_origin(Some(given), Some(given)).contains("/etc/kefu/kefu.toml"));
        assert!(
            settings_origin(None, Some(Path::new("./kefu.toml")))
                .starts_with("no --config given: settings were read from ./kefu.toml")
        );
        assert_eq!(
            settings_origin(None, None),
            "no --config given and ./kefu.toml does not exist: settings came from the KEFU_* environment variables only"
        );
        let missing = Path::new("/nonexistent/kefu.toml");
        let err = Config::load_cli(Some(missing), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the config file /nonexistent/kefu.toml does not exist; pass the right --config, or start from the example: cp kefu.example.toml /nonexistent/kefu.toml"
        );
    }

    const OLD_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

    #[test]
    fn inbound_defaults() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert!(config.callbacks.dialogue_secret.is_none());
        assert_eq!(
            config.callbacks.dialogue_receive_id,
            ReceiveIdPolicy::Strict
        );
        assert_eq!(config.callbacks.replay_window, Duration::from_secs(300));
        assert!(config.callbacks.dedup_retention >= Duration::from_secs(600));
        assert!(config.webhook.is_none());
        assert!(config.wechat.is_empty());
        assert_eq!(config.events.max_wait, Duration::from_secs(30));
        assert_eq!(config.metrics_listen, None, "no unauthenticated listener");
    }

    #[test]
    fn metrics_listen_is_an_address() {
        let mut env = minimal();
        env.push(("KEFU_METRICS_LISTEN", "127.0.0.1:9090"));
        let config = Config::load(None, env_of(&env)).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        env.push(("KEFU_METRICS_LISTEN", "localhost"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert_eq!(
            err,
            "metrics.listen (from KEFU_METRICS_LISTEN): expected an IP address and port such as 127.0.0.1:9090, or nothing, got \"localhost\""
        );
    }

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
                "unknown setting `wechat.a.tokn`",
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

    #[test]
    fn callback_and_webhook_settings_are_checked_without_showing_secrets() {
        for (pairs, expected) in [
            (
                vec![("KEFU_CALLBACKS_DIALOGUE_SECRET", "short")],
                "callbacks.dialogue_secret (from KEFU_CALLBACKS_DIALOGUE_SECRET): expected at least 16 characters, got 5 characters",
            ),
            (
                vec![("KEFU_CALLBACKS_DIALOGUE_SECRET", "0123456789abcdef/x")],
                "only A-Z",
            ),
            (
                vec![("KEFU_CALLBACKS_DIALOGUE_RECEIVE_ID", "lax")],
                "expected `strict` or `log`",
            ),
            (
                vec![("KEFU_CALLBACKS_DEDUP_RETENTION_SECS", "60")],
                "from 600 to",
            ),
            (
                vec![("KEFU_WEBHOOK_URL", "ftp://desk?key=hunter2")],
                "webhook.url (from KEFU_WEBHOOK_URL): expected an http:// or https:// URL with a host, got something else",
            ),
            (
                vec![("KEFU_WEBHOOK_URL", "https://desk.example/hook")],
                "webhook.secret is required with webhook.url",
            ),
            (
                vec![
                    ("KEFU_WEBHOOK_URL", "https://desk.example/hook"),
                    ("KEFU_WEBHOOK_SECRET", "0123456789abcdef"),
                    ("KEFU_WEBHOOK_MAX_BACKOFF_MS", "10"),
                ],
                "webhook.max_backoff_ms",
            ),
        ] {
            let mut env = minimal();
            env.extend(pairs.iter().cloned());
            let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            for (_, value) in &pairs {
                if value.len() > 3
                    && !value.starts_with("https://")
                    && !value.chars().all(|c| c.is_ascii_digit())
                    && *value != "lax"
                {
                    assert!(!err.contains(value), "{err}");
                }
            }
        }
        let mut env = minimal();
        env.extend([
            ("KEFU_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("KEFU_WEBHOOK_SECRET", "0123456789abcdef-hook"),
            ("KEFU_CALLBACKS_DIALOGUE_SECRET", "0123456789abcdef_cb"),
            ("KEFU_CALLBACKS_DIALOGUE_RECEIVE_ID", "log"),
        ]);
        let config = Config::load(None, env_of(&env)).unwrap();
        let webhook = config.webhook.as_ref().unwrap();
        assert_eq!(webhook.url, "http://127.0.0.1:9/hook");
        assert_eq!(webhook.max_attempts, 100);
        assert_eq!(config.callbacks.dialogue_receive_id, ReceiveIdPolicy::Log);
        let shown = format!("{config:?}");
        assert!(!shown.contains("0123456789abcdef-hook") && !shown.contains("0123456789abcdef_cb"));
    }
}
