//! A store in a temporary directory for tests, as the [conformance suite](kefu_store::conformance)
//! takes it: `kefu_store::conformance_suite!(kefu_store_sqlite::testing::fresh());`.

use std::path::PathBuf;
use std::sync::Arc;

use kefu_core::BoxFuture;
use kefu_store::conformance::Fresh;
use kefu_store::{PendingJob, Store, StoreResult};

use crate::SqliteStore;

/// A new store file in a temporary directory, removed when this is dropped.
pub struct TempStore {
    store: SqliteStore,
    path: PathBuf,
    // Declared last: the directory outlives the store's handle on its file.
    _dir: tempfile::TempDir,
}

/// A new, empty store in a temporary directory; `Some` always (the suite's `None` is for a
/// backend whose server is missing).
pub async fn fresh() -> Option<TempStore> {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    };
    let path = dir.path().join("outbox.sqlite3");
    match SqliteStore::open(&path) {
        Ok((store, _)) => Some(TempStore {
            store,
            path,
            _dir: dir,
        }),
        Err(error) => panic!("cannot open a new store: {error}"),
    }
}

impl Fresh for TempStore {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    fn reopen(self) -> BoxFuture<'static, StoreResult<(Self, Vec<PendingJob>)>> {
        Box::pin(async move {
            let TempStore { store, path, _dir } = self;
            // The last handle: its store thread stops and lets the file go, which the next
            // open waits for.
            drop(store);
            let (store, pending) = SqliteStore::open(&path)?;
            Ok((TempStore { store, path, _dir }, pending))
        })
    }
}
