//! Where the relay keeps what it must not lose: the storage traits and records of
//! [`kefu_store`] (whose crate docs state the contract every backend keeps), under this path so
//! that the relay names them `crate::store::…`, and the backends the relay can run on.

pub use kefu_store::*;

/// The embedded backend, [`kefu_store_sqlite`].
pub use kefu_store_sqlite as sqlite;
