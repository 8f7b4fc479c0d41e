//! The relay's start on PostgreSQL (`[store] url`): open the store (which brings the schema to
//! this relay's version or refuses it, and joins the fleet of relays on the database), and say
//! once what in the server's settings weakens an acknowledgement.

use std::time::Duration;

use kefu_store_postgres::tokio_postgres::NoTls;
use kefu_store_postgres::{PgConfig, PgError, PgStore, RelayId};

/// The store of a relay on PostgreSQL. It is shared by every relay on the database, so it holds
/// no list of pending work: the relay's claim loop finds it.
pub struct Opened {
    /// The store.
    pub store: PgStore,
    /// The warnings about the server's settings, already logged.
    pub warnings: Vec<String>,
}

/// Opens the store as one relay of the database's fleet: its schema brought to this relay's
/// version (`[store] migrate = "auto"`) or checked (`"manual"`), and the jobs that earlier runs
/// under the same `relay_name` left mid-send, once they are gone, recovered as ambiguous. Logs a
/// warning for each server setting that weakens an acknowledgement ([`durability_warnings`]).
///
/// Errors: [`PgError::SchemaBehind`] (manual mode: run `kefu-connector migrate`) and
/// [`PgError::SchemaTooNew`] (run the relay that wrote it, or a newer one), whose texts say what
/// to do; [`PgError::Unavailable`] when the database cannot be reached. None names the password.
pub async fn open(config: &PgConfig) -> Result<Opened, PgError> {
    let (store, _) = PgStore::open(config).await?;
    tracing::info!(relay = %store.relay(), database = %config.url, "opened the postgres store");
    let warnings = durability_warnings(config, store.relay()).await?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    Ok(Opened { store, warnings })
}

/// The server's `fsync` and the `synchronous_commit` a client gets by default, read on a
/// connection of the URL alone (the relay's own connections force `synchronous_commit=on`), as
/// warnings: the relay's acknowledgements are only as durable as the server's flush.
pub async fn durability_warnings(
    config: &PgConfig,
    relay: &RelayId,
) -> Result<Vec<String>, PgError> {
    let mut plain = config.url.expose().clone();
    plain
        .application_name(relay.application_name())
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms));
    let (client, connection) = plain.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .await?;
    let (fsync, synchronous_commit): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    drop(client);
    let _ = driver.await;
    Ok(warnings(&fsync, &synchronous_commit))
}

fn warnings(fsync: &str, synchronous_commit: &str) -> Vec<String> {
    let mut out = Vec::new();
    if fsync != "on" {
        out.push(format!(
            "the PostgreSQL server runs with fsync={fsync}: a crash of its machine can lose messages and callbacks this relay acknowledged; turn fsync on in postgresql.conf"
        ));
    }
    if synchronous_commit != "on" {
        out.push(format!(
            "the database's default synchronous_commit is {synchronous_commit}: this relay sets it on for its own connections, so its acknowledgements wait for the flush, but other clients of the database do not; set synchronous_commit = on in postgresql.conf"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_flushes_gets_no_warning() {
        assert!(warnings("on", "on").is_empty());
        let found = warnings("off", "local");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("fsync=off"), "{found:?}");
        assert!(
            found[1].contains("synchronous_commit is local"),
            "{found:?}"
        );
    }
}
