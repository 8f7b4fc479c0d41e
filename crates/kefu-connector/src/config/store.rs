//! `[store]`: which database the relay keeps its data in. Without `url`, the embedded SQLite file
//! of `outbox.path`, as one relay alone uses it; with a `postgres://` URL, a PostgreSQL database
//! that any number of relays share as a fleet (the other settings only matter then).

use kefu_store_postgres::{MAX_RELAY_NAME, MigrateMode, PgConfig, PgError};

use super::ConfigError;
use super::field::Field;
use super::layers::Layers;
use super::setting::Setting;

const URL: Setting = Setting::optional(
    "store.url",
    "KEFU_STORE_URL",
    "",
    "a postgres:// (or postgresql://) URL, postgres://user:password@host:port/database, of a PostgreSQL database for the relay's store, which several relays may share (each user's messages are delivered by one relay at a time, in order); it must allow LISTEN (a direct or session-mode connection, not a transaction-mode pooler); unset, the relay keeps everything in the SQLite file of outbox.path",
)
.secret();
const RELAY_NAME: Setting = Setting::optional(
    "store.relay_name",
    "KEFU_STORE_RELAY_NAME",
    "",
    "this relay's name among those sharing the database (1 to 40 of A-Z, a-z, 0-9, '.', '_', '-'); a relay restarted under the same name takes over what it left; unset, the host name",
);
const POOL_SIZE: Setting = Setting::optional(
    "store.pool_size",
    "KEFU_STORE_POOL_SIZE",
    "8",
    "database connections for reads and short writes (1 to 1000), besides the relay's few dedicated ones",
);
const CONNECT_TIMEOUT_MS: Setting = Setting::optional(
    "store.connect_timeout_ms",
    "KEFU_STORE_CONNECT_TIMEOUT_MS",
    "2000",
    "how long one connection attempt to the database may take, in milliseconds",
);
const LEASE_TTL_MS: Setting = Setting::optional(
    "store.lease_ttl_ms",
    "KEFU_STORE_LEASE_TTL_MS",
    "15000",
    "how long a relay that stopped renewing its liveness keeps its users' queues, in milliseconds; then another relay takes them over, and only the dead relay's interrupted sends become ambiguous (above 3 × store.heartbeat_ms and above dialogue.request_timeout_ms + 2 × store.heartbeat_ms)",
);
const HEARTBEAT_MS: Setting = Setting::optional(
    "store.heartbeat_ms",
    "KEFU_STORE_HEARTBEAT_MS",
    "2000",
    "how often a relay renews its liveness in the database, in milliseconds",
);
const POLL_MS: Setting = Setting::optional(
    "store.poll_ms",
    "KEFU_STORE_POLL_MS",
    "1000",
    "how often a relay looks for work nobody holds (a stopped or dead relay's) and for new events, besides the database's notifications, in milliseconds",
);
const MIGRATE: Setting = Setting::optional(
    "store.migrate",
    "KEFU_STORE_MIGRATE",
    "auto",
    "`auto`: serve brings the database's schema up to date at start; `manual`: serve refuses a schema that is not current, and `kefu-connector migrate` updates it",
);

/// The settings of this module, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    URL,
    RELAY_NAME,
    POOL_SIZE,
    CONNECT_TIMEOUT_MS,
    LEASE_TTL_MS,
    HEARTBEAT_MS,
    POLL_MS,
    MIGRATE,
];

/// The `[store]` section: the PostgreSQL database the relay uses, if one is configured.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    postgres: Option<PgConfig>,
}

impl StoreConfig {
    /// The store's kind, as `/healthz` and `kefu-connector migrate` name it: `"postgres"`
    /// with `store.url`, else `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        match self.postgres {
            Some(_) => "postgres",
            None => "sqlite",
        }
    }

    /// The PostgreSQL settings, when `store.url` is set (`None`: the SQLite file of
    /// `outbox.path`). Printing them never shows the URL's password.
    pub fn postgres(&self) -> Option<&PgConfig> {
        self.postgres.as_ref()
    }

    /// The same settings for a relay named `relay_name` (without `store.url`, unchanged): a
    /// second relay of one configuration in the same process, as the bench starts.
    pub(crate) fn renamed(&self, relay_name: &str) -> StoreConfig {
        let mut renamed = self.clone();
        if let Some(pg) = renamed.postgres.as_mut() {
            pg.relay_name = relay_name.to_owned();
        }
        renamed
    }

    /// Refuses a lease that could run out while a send is still in flight: a relay that loses
    /// the database mid-request (up to `request_timeout_ms`) must not overlap the next owner's
    /// first send of that user.
    pub(crate) fn check_request_timeout(&self, request_timeout_ms: u64) -> Result<(), ConfigError> {
        match &self.postgres {
            Some(pg) => pg.check_lease_ttl(request_timeout_ms).map_err(message),
            None => Ok(()),
        }
    }
}

/// A [`PgError::Config`]'s text (it names the setting already), as a configuration error.
fn message(error: PgError) -> ConfigError {
    match error {
        PgError::Config(text) => ConfigError(text),
        other => ConfigError(other.to_string()),
    }
}

/// Reads and checks the settings of this module; the PostgreSQL ones are checked even without
/// `store.url`, so that a typo shows before the day the URL is added.
pub(crate) fn load(layers: &Layers) -> Result<StoreConfig, ConfigError> {
    let url = layers.optional(&URL)?;
    let relay_name = layers.optional(&RELAY_NAME)?;
    let pool_size: usize = layers.setting(&POOL_SIZE)?.number(1, 1_000)?;
    let connect_timeout_ms: u64 = layers.setting(&CONNECT_TIMEOUT_MS)?.number(1, 600_000)?;
    let lease_ttl = layers.setting(&LEASE_TTL_MS)?;
    let lease_ttl_ms: u64 = lease_ttl.number(1, 3_600_000)?;
    let heartbeat = layers.setting(&HEARTBEAT_MS)?;
    let heartbeat_ms: u64 = heartbeat.number(1, 600_000)?;
    let poll_ms: u64 = layers.setting(&POLL_MS)?.number(1, 600_000)?;
    let migrate = layers.setting(&MIGRATE)?.choice(
        &[("auto", MigrateMode::Auto), ("manual", MigrateMode::Manual)],
        "`auto` or `manual`",
    )?;
    // A relay that misses two heartbeats in a row must still hold its leases.
    if heartbeat_ms.saturating_mul(3) >= lease_ttl_ms {
        return Err(ConfigError(format!(
            "{} must be below a third of {}, so that a relay keeps its leases through two missed heartbeats; got {heartbeat_ms} and {lease_ttl_ms}",
            heartbeat.place(),
            lease_ttl.place()
        )));
    }
    let Some(url) = url else {
        return Ok(StoreConfig { postgres: None });
    };
    check_scheme(&url)?;
    // The driver's refusal never quotes the URL.
    let mut pg = PgConfig::new(url.text())
        .map_err(|e| ConfigError(format!("{}: {}", url.place(), message(e))))?;
    if let Some(name) = &relay_name {
        pg.relay_name = name.text().to_owned();
    }
    pg.pool_size = pool_size;
    pg.connect_timeout_ms = connect_timeout_ms;
    pg.lease_ttl_ms = lease_ttl_ms;
    pg.heartbeat_ms = heartbeat_ms;
    pg.poll_ms = poll_ms;
    pg.migrate = migrate;
    // The numbers were bounded above: what validate() can still refuse is the relay's name.
    pg.validate().map_err(|error| match &relay_name {
        Some(name) => name.rejected(&format!(
            "1 to {MAX_RELAY_NAME} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )),
        None => message(error),
    })?;
    Ok(StoreConfig { postgres: Some(pg) })
}

/// Only the URL form is taken, so that the scheme says which database it is. The key=value form
/// that the driver also parses is refused here, like any other scheme.
fn check_scheme(url: &Field) -> Result<(), ConfigError> {
    let text = url.text();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(());
    }
    // The scheme is not secret; the rest of the value may be.
    let shown = match text.split_once("://") {
        Some((scheme, _))
            if scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+') =>
        {
            format!(
                "a {scheme}:// URL, which names another kind of database (not shown: it is secret)"
            )
        }
        _ => "a value that is not a URL (not shown: it is secret)".to_owned(),
    };
    Err(url.invalid(
        "a postgres:// or postgresql:// URL (postgres://user:password@host:port/database)",
        &shown,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

    const URL: &str = "postgres://kefu:s3cr%40t-pw@db.example:5433/kefu";

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut env = minimal();
        env.extend_from_slice(extra);
        env
    }

    #[test]
    fn without_a_url_the_relay_stays_on_sqlite() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert_eq!(config.store.backend(), "sqlite");
        assert!(config.store.postgres().is_none());
        // An empty value is no URL, so that a variable can clear the file's.
        let env = with(&[("KEFU_STORE_URL", "")]);
        let config = load_with(&format!("[store]\nurl = \"{URL}\"\n"), &env).unwrap();
        assert_eq!(config.store.backend(), "sqlite");
    }

    #[test]
    fn a_url_gives_the_postgres_settings_with_their_defaults() {
        let config = Config::load(None, env_of(&with(&[("KEFU_STORE_URL", URL)]))).unwrap();
        assert_eq!(config.store.backend(), "postgres");
        let pg = config.store.postgres().unwrap();
        assert_eq!(pg.pool_size, 8);
        assert_eq!(pg.connect_timeout_ms, 2_000);
        assert_eq!(pg.lease_ttl_ms, 15_000);
        assert_eq!(pg.heartbeat_ms, 2_000);
        assert_eq!(pg.poll_ms, 1_000);
        assert_eq!(pg.migrate, MigrateMode::Auto);
        assert!(!pg.relay_name.is_empty(), "the host name");
        assert_eq!(
            pg.url.redacted(),
            "postgres://kefu:***@db.example:5433/kefu"
        );

        let file = format!(
            "[store]\nurl = \"{URL}\"\nrelay_name = \"relay-2\"\npool_size = 3\nconnect_timeout_ms = 500\nlease_ttl_ms = 20000\nheartbeat_ms = 1000\npoll_ms = 250\nmigrate = \"manual\"\n"
        );
        let config = load_with(&file, &minimal()).unwrap();
        let pg = config.store.postgres().unwrap();
        assert_eq!(pg.relay_name, "relay-2");
        assert_eq!(
            (pg.pool_size, pg.connect_timeout_ms, pg.lease_ttl_ms),
            (3, 500, 20_000)
        );
        assert_eq!((pg.heartbeat_ms, pg.poll_ms), (1_000, 250));
        assert_eq!(pg.migrate, MigrateMode::Manual);
    }

    #[test]
    fn the_url_is_never_shown() {
        let config = Config::load(None, env_of(&with(&[("KEFU_STORE_URL", URL)]))).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
        for (bad, expected) in [
            (
                "mysql://kefu:s3cr3t@db.example/kefu",
                "store.url (from KEFU_STORE_URL): expected a postgres:// or postgresql:// URL (postgres://user:password@host:port/database), got a mysql:// URL, which names another kind of database (not shown: it is secret)",
            ),
            (
                "host=db.example password=s3cr3t",
                "store.url (from KEFU_STORE_URL): expected a postgres:// or postgresql:// URL (postgres://user:password@host:port/database), got a value that is not a URL (not shown: it is secret)",
            ),
            (
                "s3cr3t",
                "store.url (from KEFU_STORE_URL): expected a postgres:// or postgresql:// URL (postgres://user:password@host:port/database), got a value that is not a URL (not shown: it is secret)",
            ),
        ] {
            let env = with(&[("KEFU_STORE_URL", bad)]);
            assert_eq!(error_of(&env), expected);
        }
        for bad in [
            "postgres://kefu:s3cr3t@db.example:port/kefu",
            "postgres://kefu:s3cr3t@db.example/kefu?sslmode=require",
            "postgresql://kefu:s3cr3t@/kefu",
        ] {
            let err = error_of(&with(&[("KEFU_STORE_URL", bad)]));
            assert!(
                err.starts_with("store.url (from KEFU_STORE_URL): "),
                "{err}"
            );
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn cross_checks_name_both_settings() {
        let env = with(&[("KEFU_STORE_HEARTBEAT_MS", "5000")]);
        assert_eq!(
            error_of(&env),
            "store.heartbeat_ms (from KEFU_STORE_HEARTBEAT_MS) must be below a third of store.lease_ttl_ms (default), so that a relay keeps its leases through two missed heartbeats; got 5000 and 15000"
        );
        // The lease must outlast a request in flight, which only matters with a database.
        let env = with(&[
            ("KEFU_STORE_LEASE_TTL_MS", "12000"),
            ("KEFU_DIALOGUE_REQUEST_TIMEOUT_MS", "9000"),
        ]);
        Config::load(None, env_of(&env)).unwrap();
        let mut env = env;
        env.push(("KEFU_STORE_URL", URL));
        assert_eq!(
            error_of(&env),
            "store.lease_ttl_ms (12000) must be above the request timeout (9000 ms) plus twice store.heartbeat_ms (2000 ms)"
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (variable, value, expected) in [
            (
                "KEFU_STORE_POOL_SIZE",
                "0",
                "store.pool_size (from KEFU_STORE_POOL_SIZE): expected a whole number from 1 to 1000, got \"0\"",
            ),
            (
                "KEFU_STORE_MIGRATE",
                "later",
                "store.migrate (from KEFU_STORE_MIGRATE): expected `auto` or `manual`, got \"later\"",
            ),
            (
                "KEFU_STORE_RELAY_NAME",
                "relay 1",
                "store.relay_name (from KEFU_STORE_RELAY_NAME): expected 1 to 40 characters of A-Z, a-z, 0-9, '.', '_' and '-', got \"relay 1\"",
            ),
            (
                "KEFU_STORE_POLL_MS",
                "0",
                "store.poll_ms (from KEFU_STORE_POLL_MS): expected a whole number from 1 to 600000, got \"0\"",
            ),
        ] {
            let env = with(&[("KEFU_STORE_URL", URL), (variable, value)]);
            assert_eq!(error_of(&env), expected);
        }
        let err = load_with("[store]\nurll = \"x\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown setting `store.urll` (did you mean `store.url`?)"),
            "{err}"
        );
    }
}
