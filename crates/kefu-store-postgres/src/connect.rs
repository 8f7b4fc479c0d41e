//! Connections: the pool ([`connect`]) and dedicated connections ([`connect_one`]), both set up
//! as §8 of the design says.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Connection, NoTls, Socket};

use crate::config::{PgConfig, RelayId};
use crate::error::PgError;

/// Builds the relay's connection pool (`pool_size` connections, see
/// [`PgConfig::session_config`] for what every connection sets) and checks that the database
/// answers and honours `synchronous_commit=on`.
///
/// The pool waits at most 1 s for a free connection, `connect_timeout_ms` to open one and 1 s
/// to recycle one; a connection the server closed is never handed out again (deadpool's
/// `RecyclingMethod::Fast` checks `is_closed`), so after a database restart the next checkout
/// opens a new one. Connections are plain TCP or unix sockets: TLS is not supported yet.
///
/// Errors: [`PgError::Config`] for settings that do not validate, [`PgError::Unavailable`] when
/// the database cannot be reached; neither names the password.
pub async fn connect(config: &PgConfig, relay: &RelayId) -> Result<Pool, PgError> {
    config.validate()?;
    let manager = Manager::from_config(
        config.session_config(relay),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(1)))
        .create_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
        .recycle_timeout(Some(Duration::from_secs(1)))
        .build()
        .map_err(|e| PgError::Config(format!("building the connection pool failed: {e}")))?;
    let check = async {
        let client = pool.get().await?;
        let row = client
            .query_one("SELECT current_setting('synchronous_commit')", &[])
            .await?;
        let sync: String = row.try_get(0)?;
        Ok::<_, PgError>(sync)
    };
    let sync = check.await.map_err(|e| e.scrubbed(config.url.secrets()))?;
    if sync != "on" {
        return Err(PgError::Config(format!(
            "the server runs this relay's connections with synchronous_commit={sync}; acknowledged writes need it on"
        )));
    }
    Ok(pool)
}

/// Opens one connection with the relay's settings, outside the pool: for the write lanes and
/// the listener, which own their connection (the listener drives the [`Connection`] itself to
/// receive notifications; anything else spawns it, as `tokio::spawn(connection)`).
pub async fn connect_one(
    config: &PgConfig,
    relay: &RelayId,
) -> Result<(Client, Connection<Socket, NoTlsStream>), PgError> {
    config.validate()?;
    config
        .session_config(relay)
        .connect(NoTls)
        .await
        .map_err(|e| PgError::from(e).scrubbed(config.url.secrets()))
}

/// Checks that a pooled connection answers (`SELECT 1`), for `/healthz`.
pub async fn ping(pool: &Pool) -> Result<(), PgError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
