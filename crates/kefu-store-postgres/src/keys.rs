//! The desk's `Idempotency-Key`s, claimed in the transaction that does a request's work (design
//! §7): the key's primary key makes the claim exclusive across relays. A claim racing another
//! transaction's uncommitted one waits in `ON CONFLICT` until that one ends, then either claims
//! the key (the other rolled back) or reads its answer.

use kefu_store::{Claim, Earlier, Saved};

use crate::error::PgError;
use crate::sql::{self, Conn};

/// Inserts the key with an empty answer, or takes over an expired use; a row back means it is
/// ours.
const CLAIM: &str = "
INSERT INTO kefu.idempotency_keys (scope, key, route, request_hash, status, response_body,
                                   created_ms, expires_ms)
VALUES ($1, $2, $3, $4, 0, '', $5, $6)
ON CONFLICT (scope, key) DO UPDATE SET route = excluded.route,
    request_hash = excluded.request_hash, status = 0, response_body = '',
    created_ms = excluded.created_ms, expires_ms = excluded.expires_ms
WHERE kefu.idempotency_keys.expires_ms <= excluded.created_ms
RETURNING 1";

const EARLIER: &str = "
SELECT route, request_hash, status, response_body FROM kefu.idempotency_keys
WHERE scope = $1 AND key = $2";

/// Claims `claim`'s key at `now` for the work about to be done in this transaction, or returns
/// its live earlier use.
pub(crate) async fn claim(c: &Conn, claim: &Claim, now: i64) -> Result<Option<Earlier>, PgError> {
    let expires = now.saturating_add(claim.retention_ms);
    // Twice at most: a use that expired and was purged between the two statements leaves the
    // key free for the second try.
    for _ in 0..2 {
        let claimed = sql::query_opt(
            c,
            CLAIM,
            &[
                &claim.scope,
                &claim.key,
                &claim.route,
                &claim.request_hash,
                &now,
                &expires,
            ],
        )
        .await?;
        if claimed.is_some() {
            return Ok(None);
        }
        if let Some(row) = sql::query_opt(c, EARLIER, &[&claim.scope, &claim.key]).await? {
            let route: String = sql::get(&row, 0)?;
            let hash: String = sql::get(&row, 1)?;
            let status: i32 = sql::get(&row, 2)?;
            let body: Vec<u8> = sql::get(&row, 3)?;
            return Ok(Some(if hash == claim.request_hash {
                let status = u16::try_from(status)
                    .map_err(|_| PgError::Data(format!("a saved answer has status {status}")))?;
                Earlier::Same(Saved { status, body })
            } else {
                Earlier::Other { route }
            }));
        }
    }
    Err(PgError::Data(
        "an Idempotency-Key could be neither claimed nor read".into(),
    ))
}

/// Saves the answer of the work done with a claimed key.
pub(crate) async fn save(c: &Conn, claim: &Claim, saved: &Saved) -> Result<(), PgError> {
    sql::execute(
        c,
        "UPDATE kefu.idempotency_keys SET status = $3, response_body = $4
         WHERE scope = $1 AND key = $2",
        &[
            &claim.scope,
            &claim.key,
            &i32::from(saved.status),
            &saved.body,
        ],
    )
    .await?;
    Ok(())
}

/// Frees a claimed key whose work was refused (a resend of a job that cannot be resent).
pub(crate) async fn release(c: &Conn, claim: &Claim) -> Result<(), PgError> {
    sql::execute(
        c,
        "DELETE FROM kefu.idempotency_keys WHERE scope = $1 AND key = $2",
        &[&claim.scope, &claim.key],
    )
    .await?;
    Ok(())
}

/// Removes the keys expired at `now`; returns how many.
pub(crate) async fn purge(c: &Conn, now: i64) -> Result<usize, PgError> {
    let removed = sql::execute(
        c,
        "DELETE FROM kefu.idempotency_keys WHERE expires_ms <= $1",
        &[&now],
    )
    .await?;
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}
