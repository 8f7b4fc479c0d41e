//! [`PgError`]: what can go wrong talking to PostgreSQL, as types the relay can act on, and
//! with texts that never carry the connection password nor any stored content.

use deadpool_postgres::PoolError;

/// A failure of the PostgreSQL store. Its text names no secret (the URL's password is never in
/// it) and no stored content (a server error keeps its SQLSTATE and primary message only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The `[store]` settings are not usable: fix the configuration.
    #[error("postgres store configuration: {0}")]
    Config(String),
    /// The database cannot be reached or the connection broke (connection refused, the server
    /// shutting down or restarting, a timeout waiting for a connection). The relay answers 503
    /// and tries again later; nothing acknowledged depends on a call that failed this way.
    #[error("postgres store unavailable: {0}")]
    Unavailable(String),
    /// The server refused a statement.
    #[error("postgres store: {message} (SQLSTATE {code})")]
    Database {
        /// The five-character SQLSTATE, such as `40001`.
        code: String,
        /// The server's primary message (its detail, which may quote stored values, is left out).
        message: String,
    },
    /// A stored row holds a value this relay cannot read (a negative count, an unknown state):
    /// the row was written by something else than a relay.
    #[error("postgres store: a stored row cannot be read: {0}")]
    Data(String),
    /// The database's `kefu` schema was written by a newer relay: this one refuses to touch it.
    #[error(
        "the database's kefu schema is at version {found}, newer than this relay knows ({known}); run the relay that wrote it, or a newer one"
    )]
    SchemaTooNew {
        /// The version recorded in `kefu.schema_migrations`.
        found: i32,
        /// The newest version this relay knows.
        known: i32,
    },
    /// The database's `kefu` schema is older than this relay needs, and migrating at start is
    /// turned off (`[store] migrate = "manual"`).
    #[error(
        "the database's kefu schema is at version {found}, older than this relay needs ({known}); run `kefu-connector migrate`, or set [store] migrate = \"auto\""
    )]
    SchemaBehind {
        /// The version recorded in `kefu.schema_migrations` (0: none).
        found: i32,
        /// The version this relay needs.
        known: i32,
    },
}

impl PgError {
    /// Whether the failure is the database being out of reach (answer 503 and retry), rather
    /// than a refused statement or a configuration to fix.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgError::Unavailable(_))
    }

    /// The SQLSTATE of a statement the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Database { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The same error with every occurrence of each non-empty `secret` replaced by `***`.
    pub(crate) fn scrubbed(self, secrets: &[String]) -> PgError {
        let s = |text: String| scrub(text, secrets);
        match self {
            PgError::Config(m) => PgError::Config(s(m)),
            PgError::Unavailable(m) => PgError::Unavailable(s(m)),
            PgError::Database { code, message } => PgError::Database {
                code,
                message: s(message),
            },
            other => other,
        }
    }
}

impl From<PgError> for kefu_store::StoreError {
    fn from(e: PgError) -> kefu_store::StoreError {
        kefu_store::StoreError::new(e.to_string())
    }
}

/// `text` with each non-empty secret replaced by `***`.
pub(crate) fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// SQLSTATE classes and codes that mean "the server is not there for us right now".
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08")            // connection exception
        || code == "57P01"            // admin_shutdown
        || code == "57P02"            // crash_shutdown
        || code == "57P03"            // cannot_connect_now (starting up, shutting down)
        || code == "53300" // too_many_connections
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code().to_owned();
            let message = format!("{}: {}", db.severity(), db.message());
            if unavailable_code(&code) {
                return PgError::Unavailable(format!("{message} (SQLSTATE {code})"));
            }
            return PgError::Database { code, message };
        }
        // Everything else tokio-postgres reports is about the connection: closed, I/O,
        // connecting, a timeout, a protocol surprise. Its source (an io::Error) names no secret.
        let mut text = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            let source = source.to_string();
            if !text.contains(&source) {
                text = format!("{text}: {source}");
            }
        }
        PgError::Unavailable(text)
    }
}

impl From<PoolError> for PgError {
    fn from(e: PoolError) -> PgError {
        match e {
            PoolError::Backend(e) => PgError::from(e),
            PoolError::Timeout(kind) => PgError::Unavailable(format!(
                "timed out waiting for a database connection ({kind:?})"
            )),
            PoolError::Closed => PgError::Unavailable("the connection pool is closed".into()),
            PoolError::NoRuntimeSpecified => {
                PgError::Config("the connection pool has no runtime".into())
            }
            PoolError::PostCreateHook(e) => {
                PgError::Unavailable(format!("setting up a new connection failed: {e}"))
            }
        }
    }
}
