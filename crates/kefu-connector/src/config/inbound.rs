//! `[callbacks]`, `[webhook]` and `[events]`: how inbound callbacks are accepted, and how the
//! events they carry reach the desk (pushed to its webhook, or pulled from GET /v1/events).

use std::time::Duration;

use super::ConfigError;
use super::field::{Field, is_http_url};
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;

const DIALOGUE_SECRET: Setting = Setting::optional(
    "callbacks.dialogue_secret",
    "KEFU_CALLBACKS_DIALOGUE_SECRET",
    "",
    "the unguessable path segment of the Dialogue handoff callback, POST /v1/callbacks/dialogue/<secret> (at least 16 of A-Z a-z 0-9 - . _ ~); unset, the route refuses every call",
)
.secret();
const DIALOGUE_RECEIVE_ID: Setting = Setting::optional(
    "callbacks.dialogue_receive_id",
    "KEFU_CALLBACKS_DIALOGUE_RECEIVE_ID",
    "strict",
    "`strict`: the callback's receive-id must be dialogue.bot_appid; `log`: accept any, log it at debug and count it in kefu_dialogue_receive_id_total (protocols.md §3.8: the id is unconfirmed)",
);
const REPLAY_WINDOW_SECS: Setting = Setting::optional(
    "callbacks.replay_window_secs",
    "KEFU_CALLBACKS_REPLAY_WINDOW_SECS",
    "300",
    "WeChat callbacks whose timestamp is further than this from now, in seconds, are refused; a (timestamp, nonce, signature) seen within it on another body is refused as a replay (on the same body it is a redelivery)",
);
const DEDUP_RETENTION_SECS: Setting = Setting::optional(
    "callbacks.dedup_retention_secs",
    "KEFU_CALLBACKS_DEDUP_RETENTION_SECS",
    "3600",
    "how long a callback's dedup key is kept, in seconds (at least 600, and at least twice callbacks.replay_window_secs); a redelivery within it is acknowledged and dropped",
);
const WEBHOOK_URL: Setting = Setting::optional(
    "webhook.url",
    "KEFU_WEBHOOK_URL",
    "",
    "the desk's http:// or https:// URL that inbound events are POSTed to; unset, events are only served by GET /v1/events",
);
const WEBHOOK_SECRET: Setting = Setting::optional(
    "webhook.secret",
    "KEFU_WEBHOOK_SECRET",
    "",
    "the HMAC-SHA256 key of X-Kefu-Signature (at least 16 characters); required with webhook.url",
)
.secret();
const WEBHOOK_TIMEOUT_MS: Setting = Setting::optional(
    "webhook.timeout_ms",
    "KEFU_WEBHOOK_TIMEOUT_MS",
    "5000",
    "whole-request timeout of a webhook call, in milliseconds",
);
const WEBHOOK_INITIAL_BACKOFF_MS: Setting = Setting::optional(
    "webhook.initial_backoff_ms",
    "KEFU_WEBHOOK_INITIAL_BACKOFF_MS",
    "1000",
    "first retry delay after a failed webhook call, in milliseconds; doubled on each retry, with jitter",
);
const WEBHOOK_MAX_BACKOFF_MS: Setting = Setting::optional(
    "webhook.max_backoff_ms",
    "KEFU_WEBHOOK_MAX_BACKOFF_MS",
    "60000",
    "longest delay between two webhook attempts, in milliseconds",
);
const WEBHOOK_MAX_ATTEMPTS: Setting = Setting::optional(
    "webhook.max_attempts",
    "KEFU_WEBHOOK_MAX_ATTEMPTS",
    "100",
    "webhook attempts per event before it is marked failed (it stays available from GET /v1/events)",
);
const WEBHOOK_CONCURRENCY: Setting = Setting::optional(
    "webhook.concurrency",
    "KEFU_WEBHOOK_CONCURRENCY",
    "16",
    "webhook calls in flight at once, across users (each user's events go one at a time, in order)",
);
const EVENTS_RETENTION_SECS: Setting = Setting::optional(
    "events.retention_secs",
    "KEFU_EVENTS_RETENTION_SECS",
    "604800",
    "how long inbound events stay readable from GET /v1/events, in seconds (events still waiting for the webhook are kept)",
);
const EVENTS_MAX_WAIT_SECS: Setting = Setting::optional(
    "events.max_wait_secs",
    "KEFU_EVENTS_MAX_WAIT_SECS",
    "30",
    "the longest long poll of GET /v1/events?wait=…, in seconds",
);

/// The settings of this module, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    DIALOGUE_SECRET,
    DIALOGUE_RECEIVE_ID,
    REPLAY_WINDOW_SECS,
    DEDUP_RETENTION_SECS,
    WEBHOOK_URL,
    WEBHOOK_SECRET,
    WEBHOOK_TIMEOUT_MS,
    WEBHOOK_INITIAL_BACKOFF_MS,
    WEBHOOK_MAX_BACKOFF_MS,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_CONCURRENCY,
    EVENTS_RETENTION_SECS,
    EVENTS_MAX_WAIT_SECS,
];

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

/// The validated settings of this module.
pub(crate) struct Inbound {
    pub(crate) callbacks: CallbacksConfig,
    pub(crate) webhook: Option<WebhookConfig>,
    pub(crate) events: EventsConfig,
}

/// Reads and checks the settings of this module.
pub(crate) fn load(layers: &Layers) -> Result<Inbound, ConfigError> {
    Ok(Inbound {
        callbacks: callbacks(layers)?,
        webhook: webhook(layers)?,
        events: EventsConfig {
            retention: layers
                .setting(&EVENTS_RETENTION_SECS)?
                .secs(600, 31_536_000)?,
            max_wait: layers.setting(&EVENTS_MAX_WAIT_SECS)?.secs(1, 300)?,
        },
    })
}

fn callbacks(layers: &Layers) -> Result<CallbacksConfig, ConfigError> {
    let dialogue_receive_id = layers.setting(&DIALOGUE_RECEIVE_ID)?.choice(
        &[
            ("strict", ReceiveIdPolicy::Strict),
            ("log", ReceiveIdPolicy::Log),
        ],
        "`strict` or `log`",
    )?;
    let replay_window: u64 = layers.setting(&REPLAY_WINDOW_SECS)?.number(1, 86_400)?;
    let dedup_retention: u64 = layers
        .setting(&DEDUP_RETENTION_SECS)?
        .number(600, 31_536_000)?;
    // A callback is accepted while its time is within the window of now, on either side: its
    // dedup key must outlive that, or a redelivery late in the window is stored twice.
    if dedup_retention < 2 * replay_window {
        return Err(ConfigError(format!(
            "callbacks.dedup_retention_secs ({dedup_retention}) must be at least twice callbacks.replay_window_secs ({replay_window}), or a callback redelivered late in the window is stored twice; raise it to {} or more",
            2 * replay_window
        )));
    }
    let dialogue_secret = match layers.optional(&DIALOGUE_SECRET)? {
        Some(field) => Some(path_segment(long_secret(&field)?, &field)?),
        None => None,
    };
    Ok(CallbacksConfig {
        dialogue_secret,
        dialogue_receive_id,
        replay_window: Duration::from_secs(replay_window),
        dedup_retention: Duration::from_secs(dedup_retention),
    })
}

/// A secret of at least 16 characters.
pub(crate) fn long_secret(field: &Field) -> Result<Secret, ConfigError> {
    let count = field.text().chars().count();
    if count < 16 {
        return Err(field.invalid("at least 16 characters", &format!("{count} characters")));
    }
    Ok(Secret::new(field.text()))
}

/// A secret that is a URL path segment as it is.
pub(crate) fn path_segment(secret: Secret, field: &Field) -> Result<Secret, ConfigError> {
    let unreserved = secret
        .expose()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !unreserved {
        return Err(field.invalid(
            "only A-Z, a-z, 0-9, '-', '.', '_' and '~' (it is a URL path segment)",
            "another character",
        ));
    }
    Ok(secret)
}

fn webhook(layers: &Layers) -> Result<Option<WebhookConfig>, ConfigError> {
    let url = layers.setting(&WEBHOOK_URL)?;
    let secret = match layers.optional(&WEBHOOK_SECRET)? {
        Some(field) => Some(long_secret(&field)?),
        None => None,
    };
    if url.text().is_empty() {
        return Ok(None);
    }
    if !is_http_url(url.text()) {
        // The URL may carry a credential in its query: never show it.
        return Err(url.invalid("an http:// or https:// URL with a host", "something else"));
    }
    let Some(secret) = secret else {
        return Err(ConfigError(format!(
            "{} is required with {}: set it in the config file or in {} (the HMAC-SHA256 key the desk verifies X-Kefu-Signature with, at least 16 characters)",
            WEBHOOK_SECRET.key, WEBHOOK_URL.key, WEBHOOK_SECRET.env
        )));
    };
    let initial_backoff = layers
        .setting(&WEBHOOK_INITIAL_BACKOFF_MS)?
        .millis(1, 3_600_000)?;
    let max_backoff_field = layers.setting(&WEBHOOK_MAX_BACKOFF_MS)?;
    let max_backoff = max_backoff_field.millis(1, 86_400_000)?;
    if max_backoff < initial_backoff {
        return Err(max_backoff_field.invalid(
            "at least webhook.initial_backoff_ms",
            &format!("{} ms", max_backoff.as_millis()),
        ));
    }
    Ok(Some(WebhookConfig {
        url: url.text().to_owned(),
        secret,
        timeout: layers.setting(&WEBHOOK_TIMEOUT_MS)?.millis(1, 600_000)?,
        initial_backoff,
        max_backoff,
        max_attempts: layers
            .setting(&WEBHOOK_MAX_ATTEMPTS)?
            .number(1, 1_000_000)?,
        concurrency: layers.setting(&WEBHOOK_CONCURRENCY)?.number(1, 10_000)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

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

    #[test]
    fn dedup_keys_outlive_twice_the_replay_window() {
        let mut env = minimal();
        env.push(("KEFU_CALLBACKS_REPLAY_WINDOW_SECS", "600"));
        env.push(("KEFU_CALLBACKS_DEDUP_RETENTION_SECS", "1000"));
        assert_eq!(
            error_of(&env),
            "callbacks.dedup_retention_secs (1000) must be at least twice callbacks.replay_window_secs (600), or a callback redelivered late in the window is stored twice; raise it to 1200 or more"
        );
        env.push(("KEFU_CALLBACKS_DEDUP_RETENTION_SECS", "1200"));
        let config = Config::load(None, env_of(&env)).unwrap();
        assert_eq!(config.callbacks.dedup_retention, Duration::from_secs(1200));
    }
}
