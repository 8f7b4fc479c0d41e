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
                tx.prepare_cached(
                    "SELECT token, fetched_at_ms, expires_at_ms FROM access_tokens
                     WHERE appid = ?1",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![appid], |row| {
                            Ok(StoredToken {
                                token: row.get(0)?,
                                fetched_at_ms: row.get(1)?,
                                expires_at_ms: row.get(2)?,
                            })
                        })
                        .optional()
                })
                .map_err(sql)
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
