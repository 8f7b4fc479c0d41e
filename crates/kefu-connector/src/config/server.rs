//! `[server]`, `[metrics]` and `[log]`: the desk-facing HTTP API, its limits, and what the
//! process reports about itself.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;
use crate::http_server::ServerLimits;

const LISTEN: Setting = Setting::optional(
    "server.listen",
    "KEFU_SERVER_LISTEN",
    "127.0.0.1:8080",
    "address of the desk-facing HTTP API",
);
const API_KEY: Setting = Setting::required(
    "server.api_key",
    "KEFU_SERVER_API_KEY",
    "the key desks send as `Authorization: Bearer <key>` (at least 16 characters)",
)
.secret();
const MAX_BODY_BYTES: Setting = Setting::optional(
    "server.max_body_bytes",
    "KEFU_SERVER_MAX_BODY_BYTES",
    "65536",
    "largest request body accepted, in bytes",
);
const IDEMPOTENCY_RETENTION_SECS: Setting = Setting::optional(
    "server.idempotency_retention_secs",
    "KEFU_SERVER_IDEMPOTENCY_RETENTION_SECS",
    "86400",
    "how long an Idempotency-Key is remembered, in seconds (1 to 31536000); within it, a POST repeated with the same key and request gets the first answer again and creates nothing",
);
const HEADER_READ_TIMEOUT_MS: Setting = Setting::optional(
    "server.header_read_timeout_ms",
    "KEFU_SERVER_HEADER_READ_TIMEOUT_MS",
    "10000",
    "how long a client may take from the first byte of a request to the end of its headers, in milliseconds; then the connection is closed",
);
const BODY_READ_TIMEOUT_MS: Setting = Setting::optional(
    "server.body_read_timeout_ms",
    "KEFU_SERVER_BODY_READ_TIMEOUT_MS",
    "30000",
    "how long a client may take to send a request body after its headers, in milliseconds; then it is answered 408 and the connection closed",
);
const IDLE_TIMEOUT_MS: Setting = Setting::optional(
    "server.idle_timeout_ms",
    "KEFU_SERVER_IDLE_TIMEOUT_MS",
    "60000",
    "how long a connection may wait for its next (or first) request with nothing sent, in milliseconds; then it is closed",
);
const MAX_CONNECTIONS: Setting = Setting::optional(
    "server.max_connections",
    "KEFU_SERVER_MAX_CONNECTIONS",
    "1024",
    "connections served at once; at the limit a new connection takes the place of the one idle (or still sending its request) the longest, which is closed, and only when all are busy answering is it answered 503 and closed (keep it below the process's file-descriptor limit, `ulimit -n`)",
);
const METRICS_LISTEN: Setting = Setting::optional(
    "metrics.listen",
    "KEFU_METRICS_LISTEN",
    "",
    "an address such as 127.0.0.1:9090 to also serve GET /metrics on without the bearer key, for a Prometheus that has none; keep it on loopback or a private network (on server.listen, /metrics always needs the key); unset, no such listener",
);
const LOG_FORMAT: Setting =
    Setting::optional("log.format", "KEFU_LOG_FORMAT", "text", "`text` or `json`");

/// The settings of this module, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    LISTEN,
    API_KEY,
    MAX_BODY_BYTES,
    IDEMPOTENCY_RETENTION_SECS,
    HEADER_READ_TIMEOUT_MS,
    BODY_READ_TIMEOUT_MS,
    IDLE_TIMEOUT_MS,
    MAX_CONNECTIONS,
    METRICS_LISTEN,
    LOG_FORMAT,
];

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated settings of this module.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) listen: SocketAddr,
    pub(crate) api_key: Option<Secret>,
    pub(crate) max_body_bytes: usize,
    pub(crate) idempotency_retention: Duration,
    pub(crate) limits: ServerLimits,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) log_format: LogFormat,
}

/// The error of a `serve` without `server.api_key`, which only serving needs.
pub(crate) fn api_key_required() -> ConfigError {
    ConfigError(format!(
        "{} is required to serve: set it in the config file or in {} ({})",
        API_KEY.key, API_KEY.env, API_KEY.help
    ))
}

/// Reads and checks the settings of this module.
pub(crate) fn load(layers: &Layers) -> Result<Server, ConfigError> {
    let listen = layers.setting(&LISTEN)?;
    let listen = listen
        .text()
        .parse()
        .map_err(|_| listen.rejected("an IP address and port such as 127.0.0.1:8080"))?;

    // Optional here: `send` needs no key; `serve` demands it (see `api_key_required`).
    let api_key = match layers.get(API_KEY.key, true)? {
        Some(key) if key.text().chars().count() < 16 => {
            return Err(key.invalid(
                "at least 16 characters",
                &format!("{} characters", key.text().chars().count()),
            ));
        }
        Some(key) => Some(Secret::new(key.text())),
        None => None,
    };

    let metrics = layers.setting(&METRICS_LISTEN)?;
    let metrics_listen = match metrics.text().trim() {
        "" => None,
        text => Some(text.parse().map_err(|_| {
            metrics.rejected("an IP address and port such as 127.0.0.1:9090, or nothing")
        })?),
    };

    Ok(Server {
        listen,
        api_key,
        max_body_bytes: layers.setting(&MAX_BODY_BYTES)?.number(1024, 16 << 20)?,
        idempotency_retention: layers
            .setting(&IDEMPOTENCY_RETENTION_SECS)?
            .secs(1, 31_536_000)?,
        limits: ServerLimits {
            header_read_timeout: layers
                .setting(&HEADER_READ_TIMEOUT_MS)?
                .millis(1, 600_000)?,
            body_read_timeout: layers
                .setting(&BODY_READ_TIMEOUT_MS)?
                .millis(1, 3_600_000)?,
            idle_timeout: layers.setting(&IDLE_TIMEOUT_MS)?.millis(1, 3_600_000)?,
            max_connections: layers.setting(&MAX_CONNECTIONS)?.number(1, 1_000_000)?,
        },
        metrics_listen,
        log_format: layers.setting(&LOG_FORMAT)?.choice(
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            "`text` or `json`",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

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
}
