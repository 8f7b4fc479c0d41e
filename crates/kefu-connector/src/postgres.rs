//! The relay's start on PostgreSQL (`[store] url`): take the database for this relay alone, open
//! the store (which brings the schema to this relay's version or refuses it), and say once what in
//! the server's settings weakens an acknowledgement.

use std::time::Duration;

use kefu_store::PendingJob;
use kefu_store_postgres::tokio_postgres::{Client, NoTls};
use kefu_store_postgres::{PgConfig, PgError, PgStore, RelayId, connect_one};
use tokio::task::JoinHandle;

/// The advisory lock (in the `kefu` namespace of the migrator's lock) that one relay holds for
/// as long as it runs on a database.
const SOLE_RELAY_LOCK: (i32, i32) = (1_801_807_477, 1);

/// This relay's hold on the database: a task owning the session that keeps
/// [`SOLE_RELAY_LOCK`]. Until relays share a database's conversations through leases, a second
/// relay on the same database would deliver the same queued jobs, so it is refused, as a second
/// relay on an SQLite file is. If the session ends (a database restart), the task takes the lock
/// again as soon as the database is back; meanwhile the store still refuses to mark a job
/// `sending` that is no longer queued, so no job is sent twice. Dropping it ends the session,
/// and the server releases the lock.
pub struct SoleRelay {
    holder: JoinHandle<()>,
}

impl Drop for SoleRelay {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// The store of a relay on PostgreSQL, with what it had queued, and the hold that keeps a second
/// relay off the database.
pub struct Opened {
    /// The store.
    pub store: PgStore,
    /// The jobs still to deliver, in order per (account, recipient).
    pub pending: Vec<PendingJob>,
    /// Held for as long as the relay runs.
    pub sole: SoleRelay,
    /// The warnings about the server's settings, already logged.
    pub warnings: Vec<String>,
}

/// Takes the database for this relay alone, then opens the store: its schema brought to this
/// relay's version (`[store] migrate = "auto"`) or checked (`"manual"`), and the jobs that an
/// earlier run under the same `relay_name` left mid-send recovered as ambiguous. Logs a warning
/// for each server setting that weakens an acknowledgement ([`durability_warnings`]).
///
/// Errors: [`PgError::Config`] when another relay runs on the database;
/// [`PgError::SchemaBehind`] (manual mode: run `kefu-connector migrate`) and
/// [`PgError::SchemaTooNew`] (run the relay that wrote it, or a newer one), whose texts say what
/// to do; [`PgError::Unavailable`] when the database cannot be reached. None names the password.
pub async fn open(config: &PgConfig) -> Result<Opened, PgError> {
    let sole = take_database(config).await?;
    let (store, pending) = PgStore::open(config).await?;
    tracing::info!(relay = %store.relay(), database = %config.url, "opened the postgres store");
    let warnings = durability_warnings(config, store.relay()).await?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    Ok(Opened {
        store,
        pending,
        sole,
        warnings,
    })
}

/// Takes [`SOLE_RELAY_LOCK`] on a session of its own, waiting up to the connect timeout for a
/// relay that is stopping (its session ends a moment after its process does), then keeps it.
async fn take_database(config: &PgConfig) -> Result<SoleRelay, PgError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    let session = loop {
        if let Some(session) = try_lock(config).await? {
            break session;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PgError::Config(
                "another relay is running on this database: this version runs one relay per database; stop the other relay, or give this one a database of its own".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let config = config.clone();
    let holder = tokio::spawn(async move {
        let mut session = session;
        loop {
            let (_client, connection) = session;
            let _ = connection.await;
            tracing::error!(
                "the database session holding this relay's lock on the database ended; taking it again"
            );
            session = retake(&config).await;
            tracing::info!("this relay holds its lock on the database again");
        }
    });
    Ok(SoleRelay { holder })
}

/// A session of this relay's, with the connection future that drives it.
type LockSession = (
    Client,
    JoinHandle<Result<(), kefu_store_postgres::tokio_postgres::Error>>,
);

/// One attempt at the lock: the session holding it, or `None` when another session holds it.
/// The session is exempt from `idle_session_timeout`, since it is idle by design.
async fn try_lock(config: &PgConfig) -> Result<Option<LockSession>, PgError> {
    let relay = RelayId::generate(&config.relay_name);
    let (client, connection) = connect_one(config, &relay).await?;
    let connection = tokio::spawn(connection);
    // Only PostgreSQL 14 and newer know the setting; older servers have no such timeout.
    let _ = client.batch_execute("SET idle_session_timeout = 0").await;
    let taken: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&SOLE_RELAY_LOCK.0, &SOLE_RELAY_LOCK.1],
        )
        .await?
        .try_get(0)?;
    Ok(taken.then_some((client, connection)))
}

/// Takes the lock again after its session ended, retrying every second; logs once if another
/// relay took the database meanwhile.
async fn retake(config: &PgConfig) -> LockSession {
    let mut warned = false;
    loop {
        match try_lock(config).await {
            Ok(Some(session)) => return session,
            Ok(None) if !warned => {
                warned = true;
                tracing::error!(
                    "another relay took this relay's database while its lock session was down; stop one of them: queued jobs are not sent twice, but each relay keeps its own order"
                );
            }
            Ok(None) | Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
