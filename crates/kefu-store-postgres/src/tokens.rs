//! The `kefu.access_tokens` table, and [`TokenStore`] over it: one statement each, through the
//! pool. Saving keeps the later-expiring token, and invalidating compares before it deletes, so
//! that relays sharing the table never put back an older token nor drop a newer one. A row of
//! `kefu.token_fetches` is the lease of the one relay fetching an AppID's token.

use kefu_core::{BoxFuture, StoredToken, TokenStore, TokenStoreError};

use crate::error::PgError;
use crate::sql;
use crate::store::PgStore;

fn token_error(error: impl std::fmt::Display) -> TokenStoreError {
    TokenStoreError(error.to_string())
}

impl PgStore {
    async fn load_token(&self, appid: &str) -> Result<Option<StoredToken>, PgError> {
        let c = self.reader().await?;
        let row = sql::query_opt(
            &c,
            "SELECT token, fetched_at_ms, expires_at_ms FROM kefu.access_tokens
             WHERE appid = $1",
            &[&appid],
        )
        .await?;
        row.map(|row| {
            Ok(StoredToken {
                token: sql::get(&row, 0)?,
                fetched_at_ms: sql::get(&row, 1)?,
                expires_at_ms: sql::get(&row, 2)?,
            })
        })
        .transpose()
    }

    async fn save_token(&self, appid: &str, token: &StoredToken) -> Result<(), PgError> {
        let c = self.reader().await?;
        // A slow fetch that ends after a faster one must not put back the older token.
        sql::execute(
            &c,
            "INSERT INTO kefu.access_tokens (appid, token, fetched_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (appid) DO UPDATE SET token = excluded.token,
                 fetched_at_ms = excluded.fetched_at_ms, expires_at_ms = excluded.expires_at_ms
             WHERE excluded.expires_at_ms > kefu.access_tokens.expires_at_ms",
            &[
                &appid,
                &token.token,
                &token.fetched_at_ms,
                &token.expires_at_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn begin_token_fetch(&self, appid: &str, lease_ms: i64) -> Result<bool, PgError> {
        let c = self.reader().await?;
        // The lease's clock is the database's, like the conversations' leases.
        let granted = sql::execute(
            &c,
            "INSERT INTO kefu.token_fetches (appid, relay_id, until_ms)
             VALUES ($1, $2, kefu.now_ms() + $3)
             ON CONFLICT (appid) DO UPDATE SET relay_id = excluded.relay_id,
                 until_ms = excluded.until_ms
             WHERE kefu.token_fetches.until_ms < kefu.now_ms()
                OR kefu.token_fetches.relay_id = excluded.relay_id",
            &[&appid, &self.relay().as_str(), &lease_ms],
        )
        .await?;
        Ok(granted > 0)
    }

    async fn end_token_fetch(&self, appid: &str) -> Result<(), PgError> {
        let c = self.reader().await?;
        sql::execute(
            &c,
            "DELETE FROM kefu.token_fetches WHERE appid = $1 AND relay_id = $2",
            &[&appid, &self.relay().as_str()],
        )
        .await?;
        Ok(())
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, PgError> {
        let c = self.reader().await?;
        let dropped = sql::execute(
            &c,
            "DELETE FROM kefu.access_tokens WHERE appid = $1 AND token = $2",
            &[&appid, &failed],
        )
        .await?;
        Ok(dropped > 0)
    }
}

impl TokenStore for PgStore {
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        Box::pin(async move { self.load_token(appid).await.map_err(token_error) })
    }

    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move { self.save_token(appid, token).await.map_err(token_error) })
    }

    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(async move {
            self.invalidate_token(appid, failed)
                .await
                .map_err(token_error)
        })
    }

    fn begin_fetch<'a>(
        &'a self,
        appid: &'a str,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(async move {
            self.begin_token_fetch(appid, lease_ms)
                .await
                .map_err(token_error)
        })
    }

    fn end_fetch<'a>(&'a self, appid: &'a str) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move { self.end_token_fetch(appid).await.map_err(token_error) })
    }
}
