//! The database's schema, versioned by `PRAGMA user_version`: each migration runs once, in
//! order, in the transaction that records its version, so that a file is always at one version.
//!
//! | Version | Change |
//! |---|---|
//! | 1 | The outbox, the inbound tables and the idempotency keys as the relay kept them before versions were recorded (a file of that time reads version 0; every statement is `IF NOT EXISTS`, so it applies to it unchanged) |
//! | 2 | Accounts: a job names its account (old jobs: `dialogue`) and its `recipient`, its payload is bytes, and a failure keeps its `reason`; sessions are keyed by (account, openid) and know when the user last wrote; access tokens are stored |
//! | 3 | Confirmations: a job that a callback may still confirm or fail (`accepted`, or `ambiguous` at a platform with a confirmation window) keeps when its window ends (`confirm_by_ms`); a callback's report on a job still `sending` waits in `early_report` (`taken`, `failed`), `early_message` and `early_window_ms` for the attempt's outcome |
//! | 4 | The operator console: a job keeps its operator's last mark (`operator_action`: `resend` or `resolve`, `operator`, `operator_at_ms`; a resend clears a `resolve`); indexes for the console's pages: a conversation's jobs (`outbox_by_conversation`: account, recipient, id), the failed and ambiguous jobs (`outbox_attention`: id, partial), and a user's events (`inbound_events_by_user`: openid, id) |
//!
//! | Table | Rows |
//! |---|---|
//! | `outbox` | every job: account, recipient, operation, payload, state, attempts, next attempt time, last failure (code, reason, message), end of its confirmation window, a report that came while it was being sent, the operator's last mark; `seq` orders a recipient's jobs, and a resend moves the job to the end |
//! | `inbound_events` | every accepted callback as its event JSON (`body`), with the webhook delivery state (`pending`, `delivered`, `failed`, or `none` when no webhook is configured), attempts and next attempt time; `id` (AUTOINCREMENT, never reused) is the event id and the cursor of `GET /v1/events` |
//! | `inbound_dedup` | redelivery keys with their expiry |
//! | `inbound_replay` | (account, timestamp, nonce, signature) of accepted WeChat callbacks, with the SHA-256 of the body and their expiry |
//! | `sessions` | each (account, user)'s conversation state (see [`kefu_store::session`]) |
//! | `idempotency_keys` | the desk's `Idempotency-Key`s with the answer saved for each |
//! | `access_tokens` | one access token per AppID, with its lifetime |

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::sql;
use kefu_store::StoreError;

/// The migrations, version 1 first: the version a file is at is the number of them applied.
const MIGRATIONS: [&str; 4] = [V1, V2, V3, V4];

/// The version this build brings a file to.
pub const LATEST: usize = MIGRATIONS.len();

/// The version of the file at `path`, read without changing it (a running relay allows that):
/// 0 when there is no file yet.
pub fn file_version(path: &Path) -> Result<usize, StoreError> {
    if !path.exists() {
        return Ok(0);
    }
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| conn.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .map_err(sql)
}

const V1: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    openid TEXT NOT NULL,
    operation TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_unfinished ON outbox (state, seq)
    WHERE state IN ('queued', 'sending');

CREATE TABLE IF NOT EXISTS inbound_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    account TEXT,
    openid TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    webhook_state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL,
    last_error TEXT,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS inbound_events_pending ON inbound_events (id)
    WHERE webhook_state = 'pending';
CREATE INDEX IF NOT EXISTS inbound_events_received ON inbound_events (received_at_ms);
CREATE TABLE IF NOT EXISTS inbound_dedup (
    key TEXT PRIMARY KEY,
    event_id INTEGER,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbound_dedup_expiry ON inbound_dedup (expires_at_ms);
CREATE TABLE IF NOT EXISTS inbound_replay (
    key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbound_replay_expiry ON inbound_replay (expires_at_ms);
CREATE TABLE IF NOT EXISTS sessions (
    openid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    agent TEXT,
    channel INTEGER,
    appid TEXT,
    changed_by TEXT NOT NULL,
    state_since_ms INTEGER NOT NULL,
    requested_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_event_id INTEGER,
    desk_pending_until_ms INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_by_state ON sessions (state, state_since_ms);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    route TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response_body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_ms);
";

const V2: &str = "
ALTER TABLE outbox RENAME COLUMN openid TO recipient;
ALTER TABLE outbox ADD COLUMN account TEXT NOT NULL DEFAULT 'dialogue';
ALTER TABLE outbox ADD COLUMN reason TEXT;
UPDATE outbox SET payload = CAST(payload AS BLOB);
CREATE TABLE sessions_v2 (
    account TEXT NOT NULL,
    openid TEXT NOT NULL,
    state TEXT NOT NULL,
    agent TEXT,
    channel INTEGER,
    appid TEXT,
    changed_by TEXT NOT NULL,
    state_since_ms INTEGER NOT NULL,
    requested_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_event_id INTEGER,
    desk_pending_until_ms INTEGER,
    last_user_message_at_ms INTEGER,
    PRIMARY KEY (account, openid)
);
INSERT INTO sessions_v2 (account, openid, state, agent, channel, appid, changed_by,
                         state_since_ms, requested_at_ms, created_at_ms, updated_at_ms,
                         last_event_id, desk_pending_until_ms)
    SELECT 'dialogue', openid, state, agent, channel, appid, changed_by, state_since_ms,
           requested_at_ms, created_at_ms, updated_at_ms, last_event_id, desk_pending_until_ms
    FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v2 RENAME TO sessions;
CREATE INDEX sessions_by_state ON sessions (state, state_since_ms);
CREATE TABLE access_tokens (
    appid TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

const V3: &str = "
ALTER TABLE outbox ADD COLUMN confirm_by_ms INTEGER;
ALTER TABLE outbox ADD COLUMN early_report TEXT;
ALTER TABLE outbox ADD COLUMN early_message TEXT;
ALTER TABLE outbox ADD COLUMN early_window_ms INTEGER;
CREATE INDEX outbox_confirming ON outbox (confirm_by_ms) WHERE confirm_by_ms IS NOT NULL;
";

/// Version 4: the operator's mark on a job, and the console's indexes. The partial index's
/// condition is spelled exactly as the console's statements spell it (SQLite uses a partial
/// index only for a query that carries its condition as a term).
const V4: &str = "
ALTER TABLE outbox ADD COLUMN operator_action TEXT;
ALTER TABLE outbox ADD COLUMN operator TEXT;
ALTER TABLE outbox ADD COLUMN operator_at_ms INTEGER;
CREATE INDEX outbox_by_conversation ON outbox (account, recipient, id);
CREATE INDEX outbox_attention ON outbox (id) WHERE state IN ('failed', 'ambiguous');
CREATE INDEX inbound_events_by_user ON inbound_events (openid, id);
";

/// Brings a new database to `version` only, as a relay of that version left it, for the
/// migration tests.
#[cfg(test)]
pub(crate) fn create_at(conn: &Connection, version: usize) -> Result<(), StoreError> {
    for (index, migration) in MIGRATIONS.iter().enumerate().take(version) {
        conn.execute_batch(migration).map_err(sql)?;
        conn.pragma_update(None, "user_version", index + 1)
            .map_err(sql)?;
    }
    Ok(())
}

/// Brings the database to the newest version, in one transaction: a crash leaves it at the
/// version it had. A file written by a newer relay is refused rather than misread.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    let version: usize = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::new(format!(
            "the outbox file is at schema version {version}, newer than this relay knows ({}); run the relay that wrote it, or a newer one",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[test]
    fn migrate_file_brings_a_file_to_the_latest_version_and_says_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        assert_eq!(file_version(&path).unwrap(), 0);
        assert!(!path.exists(), "reading the version created the file");
        let conn = Connection::open(&path).unwrap();
        create_at(&conn, 2).unwrap();
        drop(conn);
        assert_eq!(SqliteStore::migrate_file(&path).unwrap(), 2);
        assert_eq!(file_version(&path).unwrap(), LATEST);
        assert_eq!(SqliteStore::migrate_file(&path).unwrap(), LATEST);
    }

    #[test]
    fn migrate_file_is_refused_while_a_store_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let (store, _) = SqliteStore::open(&path).unwrap();
        assert!(SqliteStore::migrate_file(&path).is_err());
        drop(store);
    }
}
