//! Access tokens: the later-expiring one kept, compare-and-invalidate, kept across a restart.

use kefu_core::StoredToken;

use super::{Fresh, restart};

fn token(token: &str, expires_at_ms: i64) -> StoredToken {
    StoredToken {
        token: token.into(),
        fetched_at_ms: 0,
        expires_at_ms,
    }
}

/// A slower fetch of an older token does not overwrite a fresher one; invalidating a token
/// that already changed leaves the new one; a restart finds the stored token, also through
/// [`Store::tokens`](crate::Store::tokens).
pub async fn keeps_the_later_expiring_token_and_invalidates_only_the_failed_one<F: Fresh>(
    fresh: F,
) {
    {
        let store = fresh.store();
        assert_eq!(store.load("wx1").await.unwrap(), None);
        store.save("wx1", &token("new", 2_000)).await.unwrap();
        store.save("wx1", &token("old", 1_000)).await.unwrap();
        assert_eq!(store.load("wx1").await.unwrap(), Some(token("new", 2_000)));
        // Another AppID is its own.
        store.save("wx2", &token("other", 500)).await.unwrap();
        assert!(!store.invalidate("wx1", "old").await.unwrap());
        assert_eq!(store.load("wx1").await.unwrap(), Some(token("new", 2_000)));
    }
    let (fresh, _) = restart(fresh).await;
    let store = fresh.store();
    assert_eq!(
        store.clone().tokens().load("wx1").await.unwrap(),
        Some(token("new", 2_000))
    );
    assert!(store.invalidate("wx1", "new").await.unwrap());
    assert_eq!(store.load("wx1").await.unwrap(), None);
    assert_eq!(store.load("wx2").await.unwrap(), Some(token("other", 500)));
}
