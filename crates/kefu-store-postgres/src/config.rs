//! [`PgConfig`]: the `[store]` settings of a relay on PostgreSQL, with the URL kept secret.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::{Host, SslMode};

use crate::error::{PgError, scrub};

/// The longest `relay_name`: `kefu/<name>-<8 base36>-<4 hex>` must fit PostgreSQL's 63-byte
/// `application_name`, which §3.4 of the design matches against `pg_stat_activity`.
pub const MAX_RELAY_NAME: usize = 40;

/// The database URL (`postgres://user:password@host:port/database`, or the `key=value` form):
/// a secret. Its [`Debug`](fmt::Debug) and [`Display`](fmt::Display) show it with the password
/// replaced by `***`, and no error of this crate contains the password.
#[derive(Clone)]
pub struct PgUrl {
    parsed: tokio_postgres::Config,
    secrets: Vec<String>,
}

impl PgUrl {
    /// Parses a connection URL. A URL that does not parse is refused with an error that does not
    /// quote it. TLS (`sslmode=require`) is not supported yet and is refused here.
    pub fn parse(url: &str) -> Result<PgUrl, PgError> {
        // The driver splits the credentials at the first `@`, so the rest of such a password
        // would be taken for the host name and shown wherever the host is.
        if url_parts(url).is_some_and(|(_, authority)| authority.matches('@').count() > 1) {
            return Err(PgError::Config(
                "store.url has an unescaped '@' in its user name or password: percent-encode it as %40".into(),
            ));
        }
        let secrets = raw_secrets(url);
        let parsed = tokio_postgres::Config::from_str(url).map_err(|e| {
            PgError::Config(scrub(
                format!(
                    "store.url is not a PostgreSQL connection URL (postgres://user:password@host:port/database): {e}"
                ),
                &secrets,
            ))
        })?;
        let mut secrets = secrets;
        if let Some(password) = parsed.get_password() {
            secrets.push(String::from_utf8_lossy(password).into_owned());
        }
        secrets.sort();
        secrets.dedup();
        // Longest first, so that a password containing another spelling is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        if parsed.get_ssl_mode() == SslMode::Require {
            return Err(PgError::Config(
                "store.url asks for TLS (sslmode=require), which this relay does not support yet: connect over a private network or a unix socket with sslmode=disable or prefer".into(),
            ));
        }
        if parsed.get_hosts().is_empty() {
            return Err(PgError::Config(
                "store.url names no host (postgres://user:password@HOST:port/database)".into(),
            ));
        }
        Ok(PgUrl { parsed, secrets })
    }

    /// The parsed connection settings, password included: for connecting, never for printing.
    pub fn expose(&self) -> &tokio_postgres::Config {
        &self.parsed
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        let c = &self.parsed;
        let mut out = String::from("postgres://");
        if let Some(user) = c.get_user() {
            out.push_str(user);
            if c.get_password().is_some() {
                out.push_str(":***");
            }
            out.push('@');
        }
        let ports = c.get_ports();
        for (i, host) in c.get_hosts().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match host {
                Host::Tcp(name) => out.push_str(name),
                Host::Unix(path) => out.push_str(&format!("[{}]", path.display())),
            }
            if let Some(port) = ports.get(i).or_else(|| ports.first()) {
                out.push_str(&format!(":{port}"));
            }
        }
        out.push('/');
        if let Some(db) = c.get_dbname() {
            out.push_str(db);
        }
        out
    }

    /// The password in every spelling the URL had, for scrubbing errors.
    pub(crate) fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The password as the raw text spells it, before parsing: in the user info of a URL
/// (percent-encoded), in a `password=` query parameter, or in a `password=` pair.
/// What follows the scheme of a `postgres://` URL, and its authority (`user:password@host:port`).
fn url_parts(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some((rest, &rest[..authority_end]))
}

fn raw_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((rest, authority)) = url_parts(url) {
        if let Some(at) = authority.rfind('@') {
            if let Some((_, password)) = authority[..at].split_once(':') {
                out.push(password.to_owned());
                out.push(percent_decode(password));
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some(value) = pair.strip_prefix("password=") {
                    out.push(value.to_owned());
                    out.push(percent_decode(value));
                }
            }
        }
    } else {
        // key=value form: password=secret or password='se cret'.
        let mut text = url;
        while let Some(i) = text.find("password") {
            let after = text[i + "password".len()..].trim_start();
            if let Some(value) = after.strip_prefix('=') {
                let value = value.trim_start();
                let secret = if let Some(quoted) = value.strip_prefix('\'') {
                    quoted.split('\'').next().unwrap_or("")
                } else {
                    value.split_whitespace().next().unwrap_or("")
                };
                out.push(secret.to_owned());
            }
            text = &text[i + "password".len()..];
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// When the relay brings the database's schema up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrateMode {
    /// At `serve` start (the default).
    #[default]
    Auto,
    /// Only through `kefu-connector migrate`; `serve` refuses an older schema.
    Manual,
}

/// The `[store]` settings of a relay on PostgreSQL (`[store] url = "postgres://…"`, or
/// `KEFU_STORE_URL`). The URL is a [`PgUrl`]: printing the config never shows the password.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Where the database is; a secret.
    pub url: PgUrl,
    /// This relay's name among the fleet (default: the host name); a restart under the same
    /// name takes over what the previous process left. At most [`MAX_RELAY_NAME`] characters of
    /// `A-Z a-z 0-9 . _ -`.
    pub relay_name: String,
    /// Connections in the pool for reads and short writes (default 8). The write lanes and the
    /// listener have their own connections on top of these.
    pub pool_size: usize,
    /// How long one connection attempt may take (default 2,000 ms).
    pub connect_timeout_ms: u64,
    /// How long a relay's leases outlive its last heartbeat (default 15,000 ms).
    pub lease_ttl_ms: u64,
    /// How often a relay renews its liveness (default 2,000 ms).
    pub heartbeat_ms: u64,
    /// How often a relay looks for unowned work and new events besides notifications (default
    /// 1,000 ms).
    pub poll_ms: u64,
    /// `statement_timeout` of every connection (default 30,000 ms; 0: none).
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of every connection (default 10,000 ms; 0: none).
    pub lock_timeout_ms: u64,
    /// When the schema is migrated (default [`MigrateMode::Auto`]).
    pub migrate: MigrateMode,
}

impl PgConfig {
    /// The defaults for `url`, which is parsed (see [`PgUrl::parse`]).
    pub fn new(url: &str) -> Result<PgConfig, PgError> {
        Ok(PgConfig {
            url: PgUrl::parse(url)?,
            relay_name: default_relay_name(),
            pool_size: 8,
            connect_timeout_ms: 2_000,
            lease_ttl_ms: 15_000,
            heartbeat_ms: 2_000,
            poll_ms: 1_000,
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 10_000,
            migrate: MigrateMode::Auto,
        })
    }

    /// Checks the settings against each other, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), PgError> {
        let bad = |m: String| Err(PgError::Config(m));
        if !valid_relay_name(&self.relay_name) {
            return bad(format!(
                "store.relay_name must be 1 to {MAX_RELAY_NAME} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        if self.pool_size == 0 || self.pool_size > 1_000 {
            return bad("store.pool_size must be between 1 and 1000".into());
        }
        if self.connect_timeout_ms == 0 || self.connect_timeout_ms > 600_000 {
            return bad("store.connect_timeout_ms must be between 1 and 600000".into());
        }
        if self.heartbeat_ms == 0 || self.poll_ms == 0 {
            return bad("store.heartbeat_ms and store.poll_ms must be above 0".into());
        }
        if self.lease_ttl_ms <= self.heartbeat_ms.saturating_mul(2) {
            return bad(format!(
                "store.lease_ttl_ms ({}) must be above twice store.heartbeat_ms ({})",
                self.lease_ttl_ms, self.heartbeat_ms
            ));
        }
        Ok(())
    }

    /// Checks that a send already in flight when this relay loses the database (up to
    /// `request_timeout_ms`) cannot overlap the next owner's first send: the lease TTL must be
    /// above the request timeout plus two heartbeats.
    pub fn check_lease_ttl(&self, request_timeout_ms: u64) -> Result<(), PgError> {
        let floor = request_timeout_ms.saturating_add(self.heartbeat_ms.saturating_mul(2));
        if self.lease_ttl_ms <= floor {
            return Err(PgError::Config(format!(
                "store.lease_ttl_ms ({}) must be above the request timeout ({request_timeout_ms} ms) plus twice store.heartbeat_ms ({} ms)",
                self.lease_ttl_ms, self.heartbeat_ms
            )));
        }
        Ok(())
    }

    /// The connection settings every connection of `relay` uses (§8 of the design):
    /// `synchronous_commit=on` whatever the server's default, the statement, lock and idle
    /// transaction timeouts, generic plans that use the indexes, `application_name = kefu/<relay
    /// id>`, the connect timeout and TCP keepalives on both ends (the server's need PostgreSQL 12
    /// or newer).
    pub fn session_config(&self, relay: &RelayId) -> tokio_postgres::Config {
        let mut c = self.url.expose().clone();
        let mut options = c.get_options().unwrap_or("").trim().to_owned();
        for setting in [
            "synchronous_commit=on".to_owned(),
            format!("statement_timeout={}", self.statement_timeout_ms),
            format!("lock_timeout={}", self.lock_timeout_ms),
            "idle_in_transaction_session_timeout=60000".to_owned(),
            // The server's side of the connection notices a relay's host that died without
            // closing its sockets within about 25 s, and ends its sessions: the leadership a
            // session lock holds is then free for another relay.
            "tcp_keepalives_idle=10".to_owned(),
            "tcp_keepalives_interval=5".to_owned(),
            "tcp_keepalives_count=3".to_owned(),
            "tcp_user_timeout=25000".to_owned(),
            // Every statement is prepared once per connection and its plan kept: the plans
            // do not depend on the parameters (states are literals, lookups go by key), and
            // a custom plan per call cost the server more than running the statement. Every
            // statement is written for an index, and a plan made while a table was young
            // (no statistics, a few pages) must not scan it for good once it has grown.
            "plan_cache_mode=force_generic_plan".to_owned(),
            "enable_seqscan=off".to_owned(),
        ] {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str("-c ");
            options.push_str(&setting);
        }
        c.options(&options);
        c.application_name(relay.application_name());
        c.connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        c.keepalives(true);
        c.keepalives_idle(Duration::from_secs(10));
        c
    }
}

fn valid_relay_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RELAY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The host name, cut to a valid relay name; `relay` when there is none.
fn default_relay_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_RELAY_NAME)
        .collect();
    if name.is_empty() {
        "relay".to_owned()
    } else {
        name
    }
}

/// One relay process's identity in the database: `<relay_name>-<start ms in base 36>-<4 hex>`,
/// new at every start. Its connections carry `application_name = kefu/<relay id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayId(String);

impl RelayId {
    /// A new id for a relay named `relay_name` starting now.
    pub fn generate(relay_name: &str) -> RelayId {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let random = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(now_ms);
            h.write_u32(std::process::id());
            h.finish() as u16
        };
        RelayId(format!("{relay_name}-{}-{random:04x}", base36(now_ms)))
    }

    /// The id as stored in `relay_id` columns.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `kefu/<relay id>`, the `application_name` of the relay's connections.
    pub fn application_name(&self) -> String {
        format!("kefu/{}", self.0)
    }
}

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        for url in [
            "postgres://kefu:s3cr%40t-pw@db.example:5433/kefu",
            "postgresql://kefu:s3cr%40t-pw@db.example/kefu?sslmode=disable",
            "postgres://kefu@db.example/kefu?password=s3cr%40t-pw",
            "host=db.example user=kefu password='s3cr@t-pw' dbname=kefu",
            "host=db.example user=kefu password=s3cr@t-pw dbname=kefu",
        ] {
            let config = PgConfig::new(url).expect(url);
            let shown = format!("{config:?} {} {:?}", config.url, config.url);
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(!shown.contains("t-pw"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        for url in [
            "postgres://kefu:s3cr3t-pw@db.example:notaport/kefu",
            "host=db.example password=s3cr3t-pw port=x",
            "host=db.example password=s3cr3t-pw s3cr3t-pw",
            "postgres://kefu:s3cr3t-pw@db.example/kefu?sslmode=require",
            // The driver would take `t-pw@db.example` for the host, and show it.
            "postgresql://kefu:s3cr3@t-pw@db.example/kefu",
            "",
            "%%%",
        ] {
            let e = PgConfig::new(url).expect_err(url);
            let shown = format!("{e} {e:?}");
            assert!(matches!(e, PgError::Config(_)), "{shown}");
            assert!(!shown.contains("s3cr3"), "{shown}");
            assert!(!shown.contains("t-pw"), "{shown}");
        }
    }

    #[test]
    fn defaults_and_validation() {
        let mut c = PgConfig::new("postgres://kefu@localhost/kefu").unwrap();
        assert_eq!(c.pool_size, 8);
        assert_eq!(c.connect_timeout_ms, 2_000);
        assert_eq!(c.lease_ttl_ms, 15_000);
        assert_eq!(c.migrate, MigrateMode::Auto);
        c.validate().unwrap();
        c.check_lease_ttl(10_000).unwrap();
        assert!(c.check_lease_ttl(11_000).is_err());
        c.relay_name = "x".repeat(MAX_RELAY_NAME + 1);
        assert!(c.validate().is_err());
        c.relay_name = "relay 1".into();
        assert!(c.validate().is_err());
        c.relay_name = "relay-1".into();
        c.pool_size = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_relay_id_fits_application_name() {
        let id = RelayId::generate(&"r".repeat(MAX_RELAY_NAME));
        assert!(id.application_name().len() <= 63, "{id}");
        assert!(id.as_str().starts_with("rrr"));
    }

    #[test]
    fn parsing_any_text_never_panics() {
        // A small deterministic generator over the characters that matter to the parsers.
        const ALPHABET: &[char] = &[
            'p', 'o', 's', 't', 'g', 'r', 'e', ':', '/', '@', '?', '&', '=', '%', '\'', '\\', ' ',
            'a', '1', '[', ']', ',', 'ä', '€', 'w', 'd',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let prefixes = ["", "postgres://", "postgresql://u:p@", "host=h password="];
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut text = prefixes[(next() % 4) as usize].to_owned();
            for _ in 0..len {
                text.push(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            if let Ok(config) = PgConfig::new(&text) {
                let _ = format!("{config:?}");
                let _ = config.session_config(&RelayId::generate("fuzz"));
            }
        }
    }

    #[test]
    fn percent_decoding_never_panics() {
        for s in ["%", "%4", "%zz", "a%41", "%E2%82%AC", "%%", "ä%"] {
            let _ = percent_decode(s);
        }
        assert_eq!(percent_decode("a%41"), "aA");
    }
}
