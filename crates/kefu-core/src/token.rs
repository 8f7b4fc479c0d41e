//! Where access tokens are kept, so that a restart does not fetch again and a fleet shares one.

use crate::provider::BoxFuture;

/// An access token with its lifetime (protocols.md §6.4: `expires_at = fetched_at + expires_in`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token. A secret: never logged (see the `Debug` implementation).
    pub token: String,
    /// When it was fetched, in Unix milliseconds.
    pub fetched_at_ms: i64,
    /// When it expires, in Unix milliseconds.
    pub expires_at_ms: i64,
}

impl core::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token", &"<redacted>")
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// The store failed to keep or read a token.
#[derive(Debug, thiserror::Error)]
#[error("token store failed: {0}")]
pub struct TokenStoreError(pub String);

/// Access tokens by AppID, kept across restarts.
///
/// Contract (every backend):
/// * [`save`](TokenStore::save) keeps a token only if none is stored for the AppID or the stored
///   one expires earlier: a slow fetch never overwrites a fresher token.
/// * [`invalidate`](TokenStore::invalidate) is compare-and-delete, atomic: it drops the stored
///   token only if it is still `failed`, and says whether it did.
/// * Each call is durable when its future resolves.
/// * [`begin_fetch`](TokenStore::begin_fetch) grants one fetcher per AppID at a time across
///   every relay sharing the store, until it calls [`end_fetch`](TokenStore::end_fetch) or its
///   lease runs out (a fetcher that died holds nobody up for longer). A store that one relay
///   owns alone grants every call: the relay's own single flight is enough.
pub trait TokenStore: Send + Sync + 'static {
    /// The token stored for `appid`, if any (expired or not: the caller decides).
    fn load<'a>(
        &'a self,
        appid: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>>;

    /// Keeps `token` for `appid`, unless a token that expires later is already stored.
    fn save<'a>(
        &'a self,
        appid: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;

    /// Drops the token stored for `appid` if it is still `failed`; `true` if it did.
    fn invalidate<'a>(
        &'a self,
        appid: &'a str,
        failed: &'a str,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>>;

    /// Asks to be the one relay that fetches a token for `appid` for the next `lease_ms`
    /// milliseconds; `false`: another relay is fetching, and will save what it gets. Granted
    /// again to the same relay while it holds the lease.
    fn begin_fetch<'a>(
        &'a self,
        appid: &'a str,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        let _ = (appid, lease_ms);
        Box::pin(async { Ok(true) })
    }

    /// Ends this relay's fetch for `appid`, saved or failed, so that another may fetch at once.
    fn end_fetch<'a>(&'a self, appid: &'a str) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let _ = appid;
        Box::pin(async { Ok(()) })
    }
}
