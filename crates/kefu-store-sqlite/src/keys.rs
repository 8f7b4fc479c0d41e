//! The desk's `Idempotency-Key`s, claimed in the transaction that does a request's work (see
//! [`kefu_store::idempotency`]).

use rusqlite::{OptionalExtension as _, Transaction, params};

use super::{Group, sql};
use kefu_store::idempotency::{Claim, Claimed, Earlier, Saved};
use kefu_store::{Idempotent, StoreError};

/// The live (unexpired) use of `claim`'s key, if there is one. Runs in the write transaction
/// that would do the work, so no other request can claim the key in between.
pub(super) fn earlier(
    tx: &Transaction<'_>,
    claim: &Claim,
    now: i64,
) -> Result<Option<Earlier>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT route, request_hash, status, response_body FROM idempotency_keys
             WHERE scope = ?1 AND key = ?2 AND expires_ms > ?3",
        )
        .map_err(sql)?
        .query_row(params![claim.scope, claim.key, now], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u16>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .optional()
        .map_err(sql)?;
    Ok(row.map(|(route, hash, status, body)| {
        if hash == claim.request_hash {
            Earlier::Same(Saved { status, body })
        } else {
            Earlier::Other { route }
        }
    }))
}

/// Saves `claim`'s key with the answer of the work done with it, replacing an expired use.
pub(super) fn save(
    tx: &Transaction<'_>,
    claim: &Claim,
    now: i64,
    saved: &Saved,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO idempotency_keys
             (scope, key, route, request_hash, status, response_body, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(sql)?
    .execute(params![
        claim.scope,
        claim.key,
        claim.route,
        claim.request_hash,
        saved.status,
        saved.body,
        now,
        now.saturating_add(claim.retention_ms)
    ])
    .map_err(sql)?;
    Ok(())
}

/// Removes the keys expired at `now`; returns how many.
pub(super) fn purge(tx: &Transaction<'_>, now: i64) -> Result<usize, StoreError> {
    tx.prepare_cached("DELETE FROM idempotency_keys WHERE expires_ms <= ?1")
        .and_then(|mut statement| statement.execute(params![now]))
        .map_err(sql)
}

/// Does `work` unless `key` is in use, and saves the key with the answer for the ids `done`
/// finds in the work's result (`None`: the work was refused, and the key stays free). The caller
/// runs this under a savepoint, so that a failure undoes the work and the key together.
pub(super) fn once<T>(
    tx: &Transaction<'_>,
    group: &mut Group,
    key: Option<Idempotent>,
    done: impl FnOnce(&T) -> Option<Vec<i64>>,
    work: impl FnOnce(&Transaction<'_>, &mut Group) -> Result<T, StoreError>,
) -> Result<Claimed<T>, StoreError> {
    if let Some(key) = &key {
        if let Some(earlier) = earlier(tx, &key.claim, group.now)? {
            return Ok(Claimed::Earlier(earlier));
        }
    }
    let result = work(tx, group)?;
    if let (Some(key), Some(ids)) = (key, done(&result)) {
        let saved = (key.answer)(&ids);
        save(tx, &key.claim, group.now, &saved)?;
    }
    Ok(Claimed::Done(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_store::idempotency::DESK_SCOPE;

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn claim(key: &str, hash: &str) -> Claim {
        Claim {
            scope: DESK_SCOPE.into(),
            key: key.into(),
            route: "/v1/messages".into(),
            request_hash: hash.into(),
            retention_ms: 1_000,
        }
    }

    #[test]
    fn a_saved_key_answers_the_same_request_and_names_the_route_to_another() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let first = claim("k1", "aaaa");
        assert_eq!(earlier(&tx, &first, 100).unwrap(), None);
        let saved = Saved {
            status: 202,
            body: br#"{"id":7,"status":"queued"}"#.to_vec(),
        };
        save(&tx, &first, 100, &saved).unwrap();
        assert_eq!(
            earlier(&tx, &first, 100).unwrap(),
            Some(Earlier::Same(saved.clone()))
        );
        assert_eq!(
            earlier(&tx, &claim("k1", "bbbb"), 100).unwrap(),
            Some(Earlier::Other {
                route: "/v1/messages".into()
            })
        );
        // Another key, or the same key in another scope, is new.
        assert_eq!(earlier(&tx, &claim("k2", "aaaa"), 100).unwrap(), None);
        let elsewhere = Claim {
            scope: "other-desk".into(),
            ..first.clone()
        };
        assert_eq!(earlier(&tx, &elsewhere, 100).unwrap(), None);
    }

    #[test]
    fn an_expired_key_is_new_can_be_claimed_again_and_is_purged() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let first = claim("k1", "aaaa");
        let saved = Saved {
            status: 202,
            body: b"first".to_vec(),
        };
        save(&tx, &first, 100, &saved).unwrap();
        // Kept for retention_ms (1 s): live just before, gone at the expiry.
        assert!(earlier(&tx, &first, 1_099).unwrap().is_some());
        assert_eq!(earlier(&tx, &first, 1_100).unwrap(), None);
        assert_eq!(earlier(&tx, &claim("k1", "bbbb"), 1_100).unwrap(), None);
        let again = Saved {
            status: 202,
            body: b"second".to_vec(),
        };
        save(&tx, &claim("k1", "bbbb"), 1_100, &again).unwrap();
        assert_eq!(
            earlier(&tx, &claim("k1", "bbbb"), 1_200).unwrap(),
            Some(Earlier::Same(again))
        );
        assert_eq!(purge(&tx, 2_099).unwrap(), 0);
        assert_eq!(purge(&tx, 2_100).unwrap(), 1);
        assert_eq!(earlier(&tx, &claim("k1", "bbbb"), 1_200).unwrap(), None);
    }
}
