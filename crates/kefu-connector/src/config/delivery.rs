//! `[outbox]` and `[delivery]`: where accepted messages are kept, and how they are sent and
//! retried.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::layers::Layers;
use super::setting::Setting;

const OUTBOX_PATH: Setting = Setting::optional(
    "outbox.path",
    "KEFU_OUTBOX_PATH",
    "kefu-outbox.sqlite3",
    "the SQLite file of the durable outbox",
);
const CONCURRENCY: Setting = Setting::optional(
    "delivery.concurrency",
    "KEFU_DELIVERY_CONCURRENCY",
    "64",
    "requests in flight at once, across users (each user's messages go one at a time)",
);
const INITIAL_BACKOFF_MS: Setting = Setting::optional(
    "delivery.initial_backoff_ms",
    "KEFU_DELIVERY_INITIAL_BACKOFF_MS",
    "1000",
    "first retry delay, in milliseconds; doubled on each retry, with jitter",
);
const MAX_ATTEMPTS: Setting = Setting::optional(
    "delivery.max_attempts",
    "KEFU_DELIVERY_MAX_ATTEMPTS",
    "3",
    "attempts per message before it is marked failed",
);
const MAX_ELAPSED_MS: Setting = Setting::optional(
    "delivery.max_elapsed_ms",
    "KEFU_DELIVERY_MAX_ELAPSED_MS",
    "30000",
    "time budget for a message's retries, in milliseconds",
);

/// The settings of this module, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    OUTBOX_PATH,
    CONCURRENCY,
    INITIAL_BACKOFF_MS,
    MAX_ATTEMPTS,
    MAX_ELAPSED_MS,
];

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

/// The outbox file and the delivery settings.
pub(crate) fn load(layers: &Layers) -> Result<(PathBuf, DeliveryConfig), ConfigError> {
    let path = PathBuf::from(layers.setting(&OUTBOX_PATH)?.non_empty("a file path")?);
    let delivery = DeliveryConfig {
        concurrency: layers.setting(&CONCURRENCY)?.number(1, 10_000)?,
        initial_backoff: layers.setting(&INITIAL_BACKOFF_MS)?.millis(1, 3_600_000)?,
        max_attempts: layers.setting(&MAX_ATTEMPTS)?.number(1, 100)?,
        max_elapsed: layers.setting(&MAX_ELAPSED_MS)?.millis(1, 86_400_000)?,
    };
    Ok((path, delivery))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::testing::*;

    #[test]
    fn defaults_and_bounds() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert_eq!(config.outbox_path, Path::new("kefu-outbox.sqlite3"));
        assert_eq!(config.delivery.concurrency, 64);
        assert_eq!(config.delivery.max_elapsed, Duration::from_secs(30));
        let mut env = minimal();
        env.push(("KEFU_OUTBOX_PATH", " "));
        assert_eq!(
            error_of(&env),
            "outbox.path (from KEFU_OUTBOX_PATH): expected a file path, got an empty value"
        );
    }
}
