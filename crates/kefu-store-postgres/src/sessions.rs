//! The `kefu.sessions` table: each (account, user)'s conversation state, read and moved inside
//! the transactions that admit callbacks and store desk calls, and [`SessionStore`] over it.

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
    let sql = format!(
        "INSERT INTO kefu.sessions ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
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
            &session.account,
            &session.openid,
            &session.state.as_str(),
            &session.agent,
            &session.channel.map(i16::from),
            &session.appid,
            &session.changed_by.as_str(),
            &session.state_since_ms,
            &session.requested_at_ms,
            &session.created_at_ms,
            &session.updated_at_ms,
            &session.last_event_id,
            &session.desk_pending_until_ms,
            &session.last_user_message_at_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Records a desk call on the user's session.
pub(crate) async fn desk_action(c: &Conn, now: i64, call: &DeskCall) -> Result<(), PgError> {
    let session = call.recorded_on(lock(c, &call.account, &call.openid).await?, now);
    save(c, &session).await
}

impl SessionStore for PgStore {
    fn session<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        Box::pin(async move {
            let c = self.reader().await?;
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
            let c = self.reader().await?;
            Ok(list(&c, account, state, limit).await?)
        })
    }
}
