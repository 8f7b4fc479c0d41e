//! The `access_tokens` table, and [`TokenStore`] over it.

use kefu_core::{BoxFuture, StoredToken, TokenStore, TokenStoreError};
use rusqlite::{OptionalExtension as _, params};

use super::{SqliteStore, sql};
use kefu_store::StoreError;

fn token_error(error: StoreError) -> TokenStoreError {
    TokenStoreError(error.to_string())
}

impl TokenStore for SqliteStore {
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        let appid = appid.to_owned();
        Box::pin(async move {
            self.run(Box::new(move |tx, _| {
                Ok(tx
                    .prepare_cached(
                        "SELECT token, fetched_at_ms, expires_at_ms FROM access_tokens
                         WHERE appid = ?1",
                    )
                    .map_err(sql)?
                    .query_row(params![appid], |row| {
                        Ok(StoredToken {
                            token: row.get(0)?,
                            fetched_at_ms: row.get(1)?,
                            expires_at_ms: row.get(2)?,
                        })
                    })
                    .optional()
                    .map_err(sql)?)
            }))
            .await
            .map_err(token_error)
        })
    }

    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let (appid, token) = (appid.to_owned(), token.clone());
        Box::pin(async move {
            self.run(Box::new(move |tx, _| {
                // A slow fetch that ends after a faster one must not put back the older token.
                tx.prepare_cached(
                    "INSERT INTO access_tokens (appid, token, fetched_at_ms, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (appid) DO UPDATE SET token = excluded.token,
                         fetched_at_ms = excluded.fetched_at_ms,
                         expires_at_ms = excluded.expires_at_ms
                     WHERE excluded.expires_at_ms > access_tokens.expires_at_ms",
                )
                .map_err(sql)?
                .execute(params![
                    appid,
                    token.token,
                    token.fetched_at_ms,
                    token.expires_at_ms
                ])
                .map_err(sql)?;
                Ok(())
            }))
            .await
            .map_err(token_error)
        })
    }

    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        let (appid, failed) = (appid.to_owned(), failed.to_owned());
        Box::pin(async move {
            self.run(Box::new(move |tx, _| {
                let dropped = tx
                    .prepare_cached("DELETE FROM access_tokens WHERE appid = ?1 AND token = ?2")
                    .map_err(sql)?
                    .execute(params![appid, failed])
                    .map_err(sql)?;
                Ok(dropped > 0)
            }))
            .await
            .map_err(token_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn token(token: &str, expires_at_ms: i64) -> StoredToken {
        StoredToken {
            token: token.into(),
            fetched_at_ms: 0,
            expires_at_ms,
        }
    }

    #[tokio::test]
    async fn keeps_the_later_expiring_token_and_invalidates_only_the_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        {
            let (store, _) = SqliteStore::open(&path).unwrap();
            assert_eq!(store.load("wx1").await.unwrap(), None);
            store.save("wx1", &token("new", 2_000)).await.unwrap();
            // A slower fetch of an older token does not overwrite the fresher one.
            store.save("wx1", &token("old", 1_000)).await.unwrap();
            assert_eq!(store.load("wx1").await.unwrap(), Some(token("new", 2_000)));
            // Another AppID is its own.
            store.save("wx2", &token("other", 500)).await.unwrap();
            // Compare-and-invalidate: a token that already changed is left alone.
            assert!(!store.invalidate("wx1", "old").await.unwrap());
            assert_eq!(store.load("wx1").await.unwrap(), Some(token("new", 2_000)));
        }
        // A restart reuses the stored token, also through the relay's handle on the store.
        let (store, _) = SqliteStore::open(&path).unwrap();
        let relay: Arc<dyn kefu_store::Store> = Arc::new(store.clone());
        assert_eq!(
            relay.tokens().load("wx1").await.unwrap(),
            Some(token("new", 2_000))
        );
        assert_eq!(store.load("wx1").await.unwrap(), Some(token("new", 2_000)));
        assert!(store.invalidate("wx1", "new").await.unwrap());
        assert_eq!(store.load("wx1").await.unwrap(), None);
        assert_eq!(store.load("wx2").await.unwrap(), Some(token("other", 500)));
    }
}
