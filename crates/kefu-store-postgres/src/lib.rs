//! kefu-connector's PostgreSQL store, for several relays sharing one database (issue 12):
//! [`PgStore`], which implements `kefu_store`'s traits over the `kefu` schema; the `[store]`
//! settings ([`PgConfig`], whose URL is a secret), the connections ([`connect`],
//! [`connect_one`]) set up so that an acknowledged write is flushed on the server
//! (`synchronous_commit=on`), the versioned `kefu` schema and its migrator ([`migrate`]), and
//! errors the relay can act on ([`PgError`]).
//!
//! Several relays share one database as a fleet: each conversation is worked by the relay that
//! holds its lease row, a relay's liveness is a heartbeat judged on the database's clock, a
//! `LISTEN` connection per relay follows the fleet's new events and holds the leadership of the
//! periodic work.
//!
//! With the `testing` feature, [`testing`] starts a throwaway PostgreSQL cluster from the
//! system's binaries for tests.
//!
//! Connections are unencrypted (TCP or a unix socket): TLS is not supported yet, and a URL that
//! requires it (`sslmode=require`) is refused.

#![forbid(unsafe_code)]

mod config;
mod connect;
mod console;
mod error;
mod events;
mod fleet;
mod jobs;
mod keys;
mod lane;
mod listener;
mod liveness;
mod locks;
pub mod schema;
mod sessions;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod yunzhenji;

pub use config::{MAX_RELAY_NAME, MigrateMode, PgConfig, PgUrl, RelayId};
pub use connect::{connect, connect_one, ping};
pub use error::PgError;
pub use schema::{LATEST, Migrated, check_schema, migrate, schema_version};
pub use store::PgStore;

/// The connection pool [`connect`] returns (deadpool-postgres).
pub use deadpool_postgres::Pool;
/// The driver, for the statements of the store built on this crate.
pub use tokio_postgres;
