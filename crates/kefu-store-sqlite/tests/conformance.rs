//! The storage traits' conformance suite, on the SQLite backend.

kefu_store::conformance_suite!(kefu_store_sqlite::testing::fresh());
