//! The SQLite store's side of [`Fleet`]: one relay owns the file (its lock file refuses a
//! second), so there is nothing to share. The relay keeps its queues in memory, leads always,
//! and `open`'s recovery does what a sweep does elsewhere. The newest event id is raised by the
//! store's own admissions, the only ones there are.

use std::time::Duration;

use kefu_core::BoxFuture;
use kefu_store::{Admission, ConvKey, Fleet, Head, Lane, Settled, StoreResult, raise_newest};
use tokio::sync::watch;

use crate::SqliteStore;

/// Not used by a relay on a store that is not shared (it never claims); a value any caller
/// can live with.
const POLL_EVERY: Duration = Duration::from_secs(1);

impl SqliteStore {
    /// Raises the newest event id for an event `admission` stored.
    pub(crate) fn announce(&self, admission: &Admission) {
        if let Admission::Stored(event) = admission {
            raise_newest(&self.newest, event.id);
        }
    }

    /// `admitted`, once its event (if it stored one) is announced.
    pub(crate) fn announced(&self, admitted: StoreResult<Admission>) -> StoreResult<Admission> {
        let admission = admitted?;
        self.announce(&admission);
        Ok(admission)
    }
}

impl Fleet for SqliteStore {
    fn shared(&self) -> bool {
        false
    }

    fn head(&self, key: &ConvKey, _: usize) -> BoxFuture<'_, StoreResult<Option<(i64, Head)>>> {
        let empty = match key.lane {
            Lane::Jobs => Head::Jobs(Vec::new()),
            Lane::Webhook => Head::Events(Vec::new()),
        };
        Box::pin(async move { Ok(Some((0, empty))) })
    }

    fn holds(&self, _: &ConvKey) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn release(&self, _: &ConvKey, _: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn claim_idle(&self, _: Lane, _: usize) -> BoxFuture<'_, StoreResult<Vec<ConvKey>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn poll_every(&self) -> Duration {
        POLL_EVERY
    }

    fn is_leader(&self) -> bool {
        true
    }

    fn sweep_gone(&self) -> BoxFuture<'_, StoreResult<Vec<Settled>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn newest_event(&self) -> watch::Receiver<i64> {
        self.newest.subscribe()
    }

    fn stop(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use kefu_store::conformance::Fresh as _;
    use kefu_store::{JobState, NewJob};

    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn one_relay_owns_the_file_leads_and_has_nothing_to_claim_or_sweep() {
        let fresh = testing::fresh().await.unwrap();
        let store = fresh.store();
        assert!(!store.shared());
        assert!(store.is_leader());
        let job = NewJob {
            account: "dialogue".into(),
            recipient: "oU".into(),
            operation: "sendmsg".into(),
            payload: b"{}".to_vec(),
        };
        let stored = store.insert(vec![job], None, None).await.unwrap();
        let kefu_store::Claimed::Done(stored) = stored else {
            panic!("stored: {stored:?}");
        };
        let id = stored[0].id();
        assert_eq!(store.mark_sending_many(&[id]).await.unwrap(), [id]);
        // A sending job of the only relay is left to the next open's recovery.
        assert!(store.sweep_gone().await.unwrap().is_empty());
        assert_eq!(
            store.get(id).await.unwrap().unwrap().status,
            JobState::Sending
        );
        assert!(store.claim_idle(Lane::Jobs, 8).await.unwrap().is_empty());
        let key = ConvKey::jobs("dialogue", "oU");
        assert_eq!(
            store.head(&key, 8).await.unwrap(),
            Some((0, Head::Jobs(Vec::new())))
        );
        assert!(store.release(&key, 0).await.unwrap());
        store.stop().await.unwrap();
    }
}
