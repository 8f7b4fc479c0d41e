//! The `kefu` schema, versioned in `kefu.schema_migrations`, and its migrator.
//!
//! | Version | Change |
//! |---|---|
//! | 1 | Jobs, relays, leases, the event counter, events, redelivery and replay keys, sessions, `Idempotency-Key`s, access tokens and token fetch leases (design §2.1) |
//! | 2 | The jobs in flight indexed by conversation instead of by relay, for the front-of-conversation test of each marking |
//! | 3 | The operator console: a job keeps its operator's last mark (`operator_action`: `resend` or `resolve`, `operator`, `operator_at_ms`; a resend clears it), and indexes for the console's pages: a conversation's jobs (`jobs_by_conversation`: account, recipient, id), the failed and ambiguous jobs (`jobs_attention`: id, partial), a user's events (`events_by_user`: openid, id) |
//!
//! Migrations are expand-only (new tables, nullable columns, indexes), so that relay N−1 keeps
//! working while relay N migrates; a relay refuses a schema newer than it knows. Version 2 also
//! drops the index it replaces: relay N−1's statements still run, its sweeps more slowly.
//! Version 3 only adds: a resend by relay N−1 leaves an operator's mark on the job it queues
//! (the console shows who last resolved or resent it), nothing else.

use tokio_postgres::Client;

use crate::error::PgError;

/// The advisory lock (two int4 keys) that serialises migrators: `0x6b656675` ("kefu"), 0.
const LOCK: (i32, i32) = (1_801_807_477, 0);

/// Created before any migration, under the lock, so that the version can be read; every
/// statement is `IF NOT EXISTS`. (Design §2.1's first two statements.)
const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS kefu;
CREATE TABLE IF NOT EXISTS kefu.schema_migrations (version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL);
";

/// Version 1: design §2.1, after the schema and the version table.
const V1: &str = "
-- Leases and heartbeats compare times on the database's clock, never a relay's.
CREATE FUNCTION kefu.now_ms() RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
CREATE TABLE kefu.jobs (id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    seq bigint NOT NULL,      -- order within (account, recipient); a resend takes a new one
    account text NOT NULL, recipient text NOT NULL, operation text NOT NULL, payload bytea NOT NULL,
    state text NOT NULL CHECK (state IN ('queued','sending','delivered','accepted','failed','ambiguous')),
    attempts integer NOT NULL DEFAULT 0, not_before_ms bigint NOT NULL,
    error_code bigint, reason text, error_message text, confirm_by_ms bigint,        -- issue 11
    early_report text CHECK (early_report IN ('taken','failed')), early_message text, early_window_ms bigint,
    relay_id text,            -- the relay that marked it sending
    created_at_ms bigint NOT NULL, updated_at_ms bigint NOT NULL);
CREATE SEQUENCE kefu.job_seq;
CREATE INDEX jobs_queue ON kefu.jobs (account, recipient, seq) WHERE state = 'queued';
CREATE INDEX jobs_sending ON kefu.jobs (relay_id) WHERE state = 'sending';
CREATE INDEX jobs_confirming ON kefu.jobs (confirm_by_ms) WHERE confirm_by_ms IS NOT NULL;
CREATE TABLE kefu.relays (relay_id text PRIMARY KEY, name text NOT NULL, pid integer,
    started_at_ms bigint NOT NULL, alive_until_ms bigint NOT NULL, stopped_at_ms bigint);
CREATE TABLE kefu.leases (lane text NOT NULL CHECK (lane IN ('job','webhook')),
    account text NOT NULL, key text NOT NULL,   -- webhook: account '', key = openid
    relay_id text,                              -- NULL: nobody works it
    version bigint NOT NULL DEFAULT 1,          -- bumped by every insert into the conversation
    updated_at_ms bigint NOT NULL, PRIMARY KEY (lane, account, key));
CREATE INDEX leases_owner ON kefu.leases (relay_id) WHERE relay_id IS NOT NULL;
CREATE INDEX leases_unowned ON kefu.leases (lane, updated_at_ms) WHERE relay_id IS NULL;
CREATE TABLE kefu.counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO kefu.counters VALUES ('event_id', 0);   -- never decreases: ids survive purges
CREATE TABLE kefu.events (id bigint PRIMARY KEY, source text NOT NULL, account text,
    openid text NOT NULL, kind text NOT NULL, body text NOT NULL, received_at_ms bigint NOT NULL,
    webhook_state text NOT NULL CHECK (webhook_state IN ('pending','delivered','failed','none')),
    attempts integer NOT NULL DEFAULT 0, not_before_ms bigint NOT NULL, last_error text,
    updated_at_ms bigint NOT NULL);
CREATE INDEX events_pending ON kefu.events (openid, id) WHERE webhook_state = 'pending';
CREATE INDEX events_received ON kefu.events (received_at_ms);
CREATE TABLE kefu.dedup (key text PRIMARY KEY, event_id bigint, expires_at_ms bigint NOT NULL);
CREATE TABLE kefu.replay (key text PRIMARY KEY, body_sha256 text NOT NULL, expires_at_ms bigint NOT NULL);
CREATE INDEX dedup_expiry ON kefu.dedup (expires_at_ms);
CREATE INDEX replay_expiry ON kefu.replay (expires_at_ms);
CREATE TABLE kefu.sessions (account text, openid text, state text NOT NULL, agent text,
    channel smallint, appid text, changed_by text NOT NULL, state_since_ms bigint NOT NULL,
    requested_at_ms bigint, created_at_ms bigint NOT NULL, updated_at_ms bigint NOT NULL,
    last_event_id bigint, desk_pending_until_ms bigint, last_user_message_at_ms bigint,
    PRIMARY KEY (account, openid));
CREATE INDEX sessions_by_state ON kefu.sessions (account, state, state_since_ms);
CREATE TABLE kefu.idempotency_keys (scope text, key text, route text NOT NULL,
    request_hash text NOT NULL, status integer NOT NULL, response_body bytea NOT NULL,
    created_ms bigint NOT NULL, expires_ms bigint NOT NULL, PRIMARY KEY (scope, key));
CREATE INDEX idempotency_keys_expiry ON kefu.idempotency_keys (expires_ms);
CREATE TABLE kefu.access_tokens (appid text PRIMARY KEY, token text NOT NULL,
    fetched_at_ms bigint NOT NULL, expires_at_ms bigint NOT NULL);
CREATE TABLE kefu.token_fetches (appid text PRIMARY KEY, relay_id text NOT NULL, until_ms bigint NOT NULL);
";

/// Version 2: marking a job `sending` asks whether an earlier job of its conversation is in
/// flight. Answered by `jobs_sending` (by relay), that walked the index entries of every job
/// sent since the last vacuum, which made a marking cost half a millisecond under load; the
/// new index answers it from the conversation's own entries, and serves the sweeps (which
/// read every job in flight) as well.
const V2: &str = "
CREATE INDEX jobs_in_flight ON kefu.jobs (account, recipient, seq) WHERE state = 'sending';
DROP INDEX kefu.jobs_sending;
";

/// Version 3: the operator console. Each job keeps the last mark an operator put on it (what,
/// who, when), which a resend clears; the console's pages read a conversation's jobs, the
/// failed and ambiguous ones, and a user's events, newest first, each from an index of its
/// own rather than a scan of the table. The partial index's condition is spelled as the
/// console's statements spell it, so that the planner uses it for a generic plan too.
const V3: &str = "
ALTER TABLE kefu.jobs ADD COLUMN operator_action text CHECK (operator_action IN ('resend','resolve')),
    ADD COLUMN operator text, ADD COLUMN operator_at_ms bigint;
CREATE INDEX jobs_by_conversation ON kefu.jobs (account, recipient, id);
CREATE INDEX jobs_attention ON kefu.jobs (id) WHERE state IN ('failed', 'ambiguous');
CREATE INDEX events_by_user ON kefu.events (openid, id);
";

/// The migrations, version 1 first: the schema's version is the number of them applied.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The newest schema version this relay knows.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version before (0: no `kefu` schema yet).
    pub from: i32,
    /// The version now, [`LATEST`].
    pub to: i32,
}

/// Brings the database's `kefu` schema to [`LATEST`], in one transaction under an advisory
/// lock, so that relays starting together migrate once and a failure leaves the version it had.
/// Each applied migration is recorded in `kefu.schema_migrations` with `applied_by`. Running it
/// again, or in several processes at once, does nothing more.
///
/// Errors: [`PgError::SchemaTooNew`] (nothing changed) when a newer relay wrote the schema;
/// [`PgError::Unavailable`] or [`PgError::Database`] when the database fails.
pub async fn migrate(client: &mut Client, applied_by: &str) -> Result<Migrated, PgError> {
    let migrations = MIGRATIONS;
    let known = LATEST;
    let tx = client.transaction().await?;
    // Wait for another migrator as long as it takes (it holds the lock only while it
    // migrates); the connection's lock_timeout applies again to the migration's own DDL, so that
    // a long transaction elsewhere fails it rather than queueing everyone behind it.
    let lock_timeout: String = tx
        .query_one("SELECT current_setting('lock_timeout')", &[])
        .await?
        .try_get(0)?;
    tx.batch_execute("SET LOCAL lock_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK.0, &LOCK.1])
        .await?;
    tx.execute(
        "SELECT set_config('lock_timeout', $1, true)",
        &[&lock_timeout],
    )
    .await?;
    tx.batch_execute(BOOTSTRAP).await?;
    let from: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kefu.schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if from > known {
        // Dropping the transaction rolls it back: nothing, not even the bootstrap, is kept.
        return Err(PgError::SchemaTooNew { found: from, known });
    }
    let start = usize::try_from(from).unwrap_or(0);
    for (index, migration) in migrations.iter().enumerate().skip(start) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.batch_execute(migration).await?;
        tx.execute(
            "INSERT INTO kefu.schema_migrations (version, applied_by) VALUES ($1, $2)",
            &[&version, &applied_by],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Migrated { from, to: known })
}

/// The version of the database's `kefu` schema (0: none), without changing anything.
pub async fn schema_version(client: &Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('kefu.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kefu.schema_migrations",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Checks, without changing anything, that the schema is exactly [`LATEST`]: for
/// `[store] migrate = "manual"` and `kefu-connector migrate --check`.
///
/// Errors: [`PgError::SchemaBehind`] (run `kefu-connector migrate`), [`PgError::SchemaTooNew`].
pub async fn check_schema(client: &Client) -> Result<i32, PgError> {
    let found = schema_version(client).await?;
    if found > LATEST {
        return Err(PgError::SchemaTooNew {
            found,
            known: LATEST,
        });
    }
    if found < LATEST {
        return Err(PgError::SchemaBehind {
            found,
            known: LATEST,
        });
    }
    Ok(found)
}
