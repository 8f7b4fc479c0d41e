//! The PostgreSQL store's side of [`Fleet`], for one relay per database (the relay holds the
//! database's sole-relay lock): the relay keeps its queues in memory, leads always, and
//! `open`'s recovery does what a sweep does for a fleet. The newest event id is raised by this
//! store's own admissions, the only ones there are.

use std::time::Duration;

use kefu_core::BoxFuture;
use kefu_store::{Admission, ConvKey, Fleet, Head, Lane, Settled, StoreResult};
use tokio::sync::watch;

use crate::store::PgStore;

/// Not used by a relay on a store that is not shared (it never claims).
const POLL_EVERY: Duration = Duration::from_secs(1);

impl PgStore {
    /// `admitted`, once its event (if it stored one) is announced.
    pub(crate) fn announced<'a>(
        &'a self,
        admitted: BoxFuture<'a, StoreResult<Admission>>,
    ) -> BoxFuture<'a, StoreResult<Admission>> {
        Box::pin(async move {
            let admission = admitted.await?;
            self.announce(&admission);
            Ok(admission)
        })
    }
}

impl Fleet for PgStore {
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
        self.newest()
    }

    fn stop(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }
}
