//! The storage traits' conformance suite, on the PostgreSQL backend (one fresh database per
//! check on the throwaway cluster; skipped loudly without PostgreSQL).

kefu_store::conformance_suite!(kefu_store_postgres::testing::fresh_store());
