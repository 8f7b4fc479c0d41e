//! Statements on a connection, prepared once per connection (deadpool's statement cache), with
//! the driver's errors as [`PgError`]s; and reading a column without a panic.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use crate::error::PgError;

/// A connection: a lane's own, or one borrowed from the pool (both are deadpool's wrapper,
/// which caches prepared statements).
pub(crate) type Conn = ClientWrapper;

/// The parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs `sql` and returns its rows.
pub(crate) async fn query(c: &Conn, sql: &str, params: Params<'_>) -> Result<Vec<Row>, PgError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// Runs `sql` and returns its row, if it gave one.
pub(crate) async fn query_opt(
    c: &Conn,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, PgError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// Runs `sql`, which gives exactly one row.
pub(crate) async fn query_one(c: &Conn, sql: &str, params: Params<'_>) -> Result<Row, PgError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_one(&statement, params).await?)
}

/// Runs `sql` and returns how many rows it changed.
pub(crate) async fn execute(c: &Conn, sql: &str, params: Params<'_>) -> Result<u64, PgError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// Runs `first`, then `second`, pipelined: both are sent before either answer is read, and the
/// server runs them in that order (so `second` runs under the locks `first` took). `second`'s
/// rows are returned.
pub(crate) async fn execute_then_query(
    c: &Conn,
    first: (&str, Params<'_>),
    second: (&str, Params<'_>),
) -> Result<Vec<Row>, PgError> {
    // Prepared first, so that the two statements are sent in order (a statement not yet in the
    // cache would be parsed in a round trip of its own, in between).
    let (one, two) = tokio::try_join!(c.prepare_cached(first.0), c.prepare_cached(second.0))?;
    let (_, rows) = tokio::try_join!(c.execute(&one, first.1), c.query(&two, second.1))?;
    Ok(rows)
}

/// Column `index` of `row`, as `T`.
pub(crate) fn get<'r, T: FromSql<'r>>(row: &'r Row, index: usize) -> Result<T, PgError> {
    Ok(row.try_get(index)?)
}

/// A stored count or attempt number (never negative) as an unsigned number.
pub(crate) fn unsigned(row: &Row, index: usize) -> Result<u32, PgError> {
    let value: i32 = get(row, index)?;
    u32::try_from(value).map_err(|_| PgError::Data(format!("a stored count is negative: {value}")))
}

/// A count returned by the server.
pub(crate) fn count(row: &Row, index: usize) -> Result<usize, PgError> {
    let value: i64 = get(row, index)?;
    Ok(usize::try_from(value).unwrap_or(0))
}
