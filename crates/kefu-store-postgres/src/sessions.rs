//! The `kefu.sessions` table: each (account, user)'s conversation state, read and moved inside
//! the transactions that admit callbacks and store desk calls, and [`SessionStore`] over it.

use std::collections::BTreeMap;

use kefu_core::BoxFuture;
use kefu_payload::KefuState;
use kefu_store::session::{ChangedBy, Session};
use kefu_store::{DeskCall, SessionStore, StoreResult};
use tokio_postgres::Row;

use crate::error::PgError;
use crate::sql::{self, Conn};
use crate::store::PgStore;

const COLUMNS: &str = "account, openid, state, agent, channel, appid, changed_by, state_since_ms,
    requested_at_ms, created_at_ms, updated_at_ms, last_event_id, desk_pending_until_ms,
    last_user_message_at_ms";

/// The advisory lock (two int4 keys) of one user's session, taken before the session is read
/// in a write: it also covers a user with no row yet, so that two relays admitting the same
/// user's callbacks move the session one after the other. Its first key (`kefu` + 1) keeps the
/// users' hashes apart from the relay-wide locks of the first (`kefu`: the migrator's, the sole
/// relay's), which a chosen account and openid could otherwise hash onto.
const LOCK: &str = "SELECT pg_advisory_xact_lock(1801807478, hashtext($1 || '/' || $2))";

/// [`LOCK`] for the sessions `$1`/`$2` (account, openid), in order (the function runs after
/// the sort), so that two transactions locking the same users cannot wait on each other.
pub(crate) const LOCK_SESSIONS: &str = "
SELECT pg_advisory_xact_lock(1801807478, hashtext(t.a || '/' || t.o))
FROM unnest($1::text[], $2::text[]) AS t(a, o) ORDER BY t.a, t.o";

fn read(row: &Row) -> Result<Session, PgError> {
    let state: String = sql::get(row, 2)?;
    let changed_by: String = sql::get(row, 6)?;
    let openid: String = sql::get(row, 1)?;
    let channel: Option<i16> = sql::get(row, 4)?;
    Ok(Session {
        account: sql::get(row, 0)?,
        state: state
            .parse()
            .map_err(|_| PgError::Data(format!("session {openid} has unknown state {state:?}")))?,
        agent: sql::get(row, 3)?,
        channel: channel.and_then(|c| u8::try_from(c).ok()),
        appid: sql::get(row, 5)?,
        changed_by: ChangedBy::parse(&changed_by).ok_or_else(|| {
            PgError::Data(format!(
                "session {openid} has unknown changed_by {changed_by:?}"
            ))
        })?,
        state_since_ms: sql::get(row, 7)?,
        requested_at_ms: sql::get(row, 8)?,
        created_at_ms: sql::get(row, 9)?,
        updated_at_ms: sql::get(row, 10)?,
        last_event_id: sql::get(row, 11)?,
        desk_pending_until_ms: sql::get(row, 12)?,
        last_user_message_at_ms: sql::get(row, 13)?,
        openid,
    })
}

/// One user's session on `account`, if the user was ever seen there.
pub(crate) async fn load(
    c: &Conn,
    account: &str,
    openid: &str,
) -> Result<Option<Session>, PgError> {
    let sql = format!("SELECT {COLUMNS} FROM kefu.sessions WHERE account = $1 AND openid = $2");
    sql::query_opt(c, &sql, &[&account, &openid])
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// Locks one user's session for the rest of the transaction, then reads it.
pub(crate) async fn lock(
    c: &Conn,
    account: &str,
    openid: &str,
) -> Result<Option<Session>, PgError> {
    sql::execute(c, LOCK, &[&account, &openid]).await?;
    load(c, account, openid).await
}

/// Sessions of `account` in `state` (all when `None`), longest in their state first.
async fn list(
    c: &Conn,
    account: &str,
    state: Option<KefuState>,
    limit: u32,
) -> Result<Vec<Session>, PgError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM kefu.sessions
         WHERE account = $1 AND ($2::text IS NULL OR state = $2)
         ORDER BY state_since_ms, openid LIMIT $3"
    );
    let rows = sql::query(
        c,
        &sql,
        &[&account, &state.map(KefuState::as_str), &i64::from(limit)],
    )
    .await?;
    rows.iter().map(read).collect()
}

/// Writes `session` (locked by [`lock`] in this transaction).
pub(crate) async fn save(c: &Conn, session: &Session) -> Result<(), PgError> {
    save_many(c, &[session]).await
}

/// Writes `sessions` (each user at most once) over what was stored.
async fn save_many(c: &Conn, sessions: &[&Session]) -> Result<(), PgError> {
    let text = |f: fn(&Session) -> &str| sessions.iter().map(|s| f(s)).collect::<Vec<&str>>();
    let maybe_text = |f: fn(&Session) -> Option<&str>| {
        sessions.iter().map(|s| f(s)).collect::<Vec<Option<&str>>>()
    };
    let number = |f: fn(&Session) -> i64| sessions.iter().map(|s| f(s)).collect::<Vec<i64>>();
    let maybe_number = |f: fn(&Session) -> Option<i64>| {
        sessions.iter().map(|s| f(s)).collect::<Vec<Option<i64>>>()
    };
    let channels: Vec<Option<i16>> = sessions.iter().map(|s| s.channel.map(i16::from)).collect();
    let sql = format!(
        "INSERT INTO kefu.sessions ({COLUMNS})
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[],
             $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
             $12::int8[], $13::int8[], $14::int8[])
         ON CONFLICT (account, openid) DO UPDATE SET state = excluded.state,
             agent = excluded.agent, channel = excluded.channel, appid = excluded.appid,
             changed_by = excluded.changed_by, state_since_ms = excluded.state_since_ms,
             requested_at_ms = excluded.requested_at_ms, created_at_ms = excluded.created_at_ms,
             updated_at_ms = excluded.updated_at_ms, last_event_id = excluded.last_event_id,
             desk_pending_until_ms = excluded.desk_pending_until_ms,
             last_user_message_at_ms = excluded.last_user_message_at_ms"
    );
    sql::execute(
        c,
        &sql,
        &[
            &text(|s| &s.account),
            &text(|s| &s.openid),
            &text(|s| s.state.as_str()),
            &maybe_text(|s| s.agent.as_deref()),
            &channels,
            &maybe_text(|s| s.appid.as_deref()),
            &text(|s| s.changed_by.as_str()),
            &number(|s| s.state_since_ms),
            &maybe_number(|s| s.requested_at_ms),
            &number(|s| s.created_at_ms),
            &number(|s| s.updated_at_ms),
            &maybe_number(|s| s.last_event_id),
            &maybe_number(|s| s.desk_pending_until_ms),
            &maybe_number(|s| s.last_user_message_at_ms),
        ],
    )
    .await?;
    Ok(())
}

/// Records desk calls, in order, on their users' sessions: the sessions are locked and read in
/// one round trip, moved, and written back in one statement.
pub(crate) async fn desk_actions(c: &Conn, now: i64, calls: Vec<&DeskCall>) -> Result<(), PgError> {
    if calls.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = calls.iter().map(|call| call.account.as_str()).collect();
    let openids: Vec<&str> = calls.iter().map(|call| call.openid.as_str()).collect();
    let load = format!(
        "SELECT {COLUMNS} FROM kefu.sessions
         WHERE (account, openid) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
    );
    let rows = sql::execute_then_query(
        c,
        (LOCK_SESSIONS, &[&accounts, &openids]),
        (&load, &[&accounts, &openids]),
    )
    .await?;
    let mut sessions: BTreeMap<(String, String), Session> = BTreeMap::new();
    for row in &rows {
        let session = read(row)?;
        sessions.insert((session.account.clone(), session.openid.clone()), session);
    }
    for call in calls {
        let key = (call.account.clone(), call.openid.clone());
        let moved = call.recorded_on(sessions.remove(&key), now);
        sessions.insert(key, moved);
    }
    let touched: Vec<&Session> = sessions.values().collect();
    save_many(c, &touched).await
}

impl SessionStore for PgStore {
    fn session<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        // Outcomes write no session: the read need not wait for the delivery lane (every
        // message a desk posts reads its user's session first).
        Box::pin(async move {
            let c = self.pooled().await?;
            Ok(load(&c, account, openid).await?)
        })
    }

    fn sessions<'a>(
        &'a self,
        account: &'a str,
        state: Option<KefuState>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>> {
        Box::pin(async move {
            let c = self.pooled().await?;
            Ok(list(&c, account, state, limit).await?)
        })
    }
}
