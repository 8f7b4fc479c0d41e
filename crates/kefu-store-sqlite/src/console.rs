//! What the operator console reads and records, [`ConsoleStore`] over the `outbox` and
//! `inbound_events` tables: counts per account and state, pages of jobs and of a user's events,
//! the webhook backlog, and the operators' marks on jobs (`operator_action`, `operator`,
//! `operator_at_ms`, schema version 4).
//!
//! Reads run in the store's next group without waiting for its commit, as every read does
//! ([`SqliteStore::read`]); marks are written like every other write, durably
//! ([`SqliteStore::boxed`]).

use kefu_core::BoxFuture;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Row, Transaction, params, params_from_iter};

use super::jobs::{RawStatus, STATUS_COLUMNS, checked_status, read_status};
use super::{SqliteStore, sql};
use kefu_store::console::MAX_PAGE;
use kefu_store::{
    ConsoleStore, DIALOGUE_ACCOUNT, EventRecord, JobFilter, JobRecord, JobState, OperatorAction,
    OperatorMark, StateCount, StoreError, StoreResult,
};

/// The states an operator may resolve, spelled as the partial index `outbox_attention` is, so
/// that a query carrying this term can use it.
const ATTENTION: &str = "state IN ('failed', 'ambiguous')";

/// The columns [`read_row`] reads, in its order: the status's, then the body and the mark.
fn record_columns() -> String {
    format!("{STATUS_COLUMNS}, payload, operator_action, operator, operator_at_ms")
}

/// A job's row as read, before its spellings are checked.
struct RawRecord {
    status: RawStatus,
    payload: String,
    action: Option<String>,
    operator: Option<String>,
    at_ms: Option<i64>,
}

/// A row of [`record_columns`].
fn read_row(row: &Row<'_>) -> rusqlite::Result<RawRecord> {
    // Stored as a blob since version 2; a text one is read as it is.
    let payload = match row.get_ref(12)? {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        _ => String::new(),
    };
    Ok(RawRecord {
        status: read_status(row)?,
        payload,
        action: row.get(13)?,
        operator: row.get(14)?,
        at_ms: row.get(15)?,
    })
}

/// The record of a row, its spellings checked.
fn read_record(raw: RawRecord) -> Result<JobRecord, StoreError> {
    let RawRecord {
        status,
        payload,
        action,
        operator,
        at_ms,
    } = raw;
    let status = checked_status(status)?;
    let id = status.id;
    let mark = OperatorMark::from_columns(action, operator, at_ms).map_err(|action| {
        StoreError::new(format!("job {id} has unknown operator action {action}"))
    })?;
    Ok(JobRecord {
        status,
        payload,
        mark,
    })
}

/// The jobs of `filter`, newest first. The statement holds only the filter's conditions, so
/// that each shape is planned on its indexes: a conversation on `outbox_by_conversation`, the
/// failed and ambiguous jobs on `outbox_attention`, anything else on the ids, newest first.
fn jobs(tx: &Transaction<'_>, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
    let (statement, values) = jobs_statement(filter);
    let raw = tx
        .prepare_cached(&statement)
        .map_err(sql)?
        .query_map(params_from_iter(values), read_row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    raw.into_iter().map(read_record).collect()
}

/// The statement of [`jobs`] for `filter`, with its parameters.
fn jobs_statement(filter: &JobFilter) -> (String, Vec<Value>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(before) = filter.before_id {
        conditions.push("id < ?".into());
        values.push(Value::Integer(before));
    }
    if let Some(account) = &filter.account {
        conditions.push("account = ?".into());
        values.push(Value::Text(account.clone()));
    }
    if let Some(recipient) = &filter.recipient {
        conditions.push("recipient = ?".into());
        values.push(Value::Text(recipient.clone()));
    }
    if !filter.states.is_empty() {
        if filter
            .states
            .iter()
            .all(|state| matches!(state, JobState::Failed | JobState::Ambiguous))
        {
            conditions.push(ATTENTION.into());
        }
        let marks = vec!["?"; filter.states.len()].join(", ");
        conditions.push(format!("state IN ({marks})"));
        values.extend(
            filter
                .states
                .iter()
                .map(|state| Value::Text(state.as_str().to_owned())),
        );
    }
    if let Some(reason) = &filter.reason {
        conditions.push("reason = ?".into());
        values.push(Value::Text(reason.clone()));
    }
    if let Some(since) = filter.changed_since_ms {
        conditions.push("updated_at_ms >= ?".into());
        values.push(Value::Integer(since));
    }
    if let Some(before) = filter.changed_before_ms {
        conditions.push("updated_at_ms < ?".into());
        values.push(Value::Integer(before));
    }
    if !filter.include_resolved {
        conditions.push(format!(
            "NOT ({ATTENTION} AND operator_action IS '{}')",
            OperatorAction::Resolve.as_str()
        ));
    }
    let limit = filter.limit.min(MAX_PAGE);
    values.push(Value::Integer(i64::from(limit)));
    let mut statement = format!("SELECT {} FROM outbox", record_columns());
    if !conditions.is_empty() {
        statement.push_str(" WHERE ");
        statement.push_str(&conditions.join(" AND "));
    }
    statement.push_str(" ORDER BY id DESC LIMIT ?");
    (statement, values)
}

/// How many jobs each account has in each state, resolved ones not counted as failed or
/// ambiguous.
fn state_counts(tx: &Transaction<'_>) -> Result<Vec<StateCount>, StoreError> {
    let statement = format!(
        "SELECT account, state, COUNT(*) FROM outbox
         WHERE NOT ({ATTENTION} AND operator_action IS '{}')
         GROUP BY account, state ORDER BY account, state",
        OperatorAction::Resolve.as_str()
    );
    let rows = tx
        .prepare_cached(&statement)
        .map_err(sql)?
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u64>(2)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    // A state this build does not know is left out, as `depth` does.
    Ok(rows
        .into_iter()
        .filter_map(|(account, state, count)| {
            JobState::parse(&state).map(|state| StateCount {
                account,
                state,
                count,
            })
        })
        .collect())
}

/// A page of one user's events on `account`, newest first (Dialogue events are stored without
/// an account: they are the Dialogue account's).
fn user_events(
    tx: &Transaction<'_>,
    account: &str,
    openid: &str,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    tx.prepare_cached(
        "SELECT id, received_at_ms, kind, body, webhook_state FROM inbound_events
         WHERE openid = ?2 AND id < ?3 AND IFNULL(account, ?5) = ?1
         ORDER BY id DESC LIMIT ?4",
    )
    .map_err(sql)?
    .query_map(
        params![
            account,
            openid,
            before_id.unwrap_or(i64::MAX),
            limit.min(MAX_PAGE),
            DIALOGUE_ACCOUNT
        ],
        |row| {
            Ok(EventRecord {
                id: row.get(0)?,
                received_at_ms: row.get(1)?,
                kind: row.get(2)?,
                body: row.get(3)?,
                webhook_state: row.get(4)?,
            })
        },
    )
    .map_err(sql)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(sql)
}

/// How many events wait for the webhook.
fn webhook_backlog(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    tx.prepare_cached("SELECT COUNT(*) FROM inbound_events WHERE webhook_state = 'pending'")
        .map_err(sql)?
        .query_row([], |row| row.get(0))
        .map_err(sql)
}

/// Marks the failed and ambiguous jobs among `ids` not resolved yet resolved by `operator` at
/// `now`; returns the ids it marked, in order.
fn resolve(
    tx: &Transaction<'_>,
    now: i64,
    mut ids: Vec<i64>,
    operator: &str,
) -> Result<Vec<i64>, StoreError> {
    ids.sort_unstable();
    ids.dedup();
    let resolve = OperatorAction::Resolve.as_str();
    let mut statement = tx
        .prepare_cached(&format!(
            "UPDATE outbox SET operator_action = ?2, operator = ?3, operator_at_ms = ?4
             WHERE id = ?1 AND {ATTENTION} AND operator_action IS NOT ?2"
        ))
        .map_err(sql)?;
    let mut marked = Vec::new();
    for id in ids {
        if statement
            .execute(params![id, resolve, operator, now])
            .map_err(sql)?
            > 0
        {
            marked.push(id);
        }
    }
    Ok(marked)
}

impl ConsoleStore for SqliteStore {
    fn state_counts(&self) -> BoxFuture<'_, StoreResult<Vec<StateCount>>> {
        self.read(Box::new(|tx, _| state_counts(tx)))
    }

    fn jobs(&self, filter: JobFilter) -> BoxFuture<'_, StoreResult<Vec<JobRecord>>> {
        self.read(Box::new(move |tx, _| jobs(tx, &filter)))
    }

    fn user_events<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
        before_id: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EventRecord>>> {
        let (account, openid) = (account.to_owned(), openid.to_owned());
        self.read(Box::new(move |tx, _| {
            user_events(tx, &account, &openid, before_id, limit)
        }))
    }

    fn webhook_backlog(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(Box::new(|tx, _| webhook_backlog(tx)))
    }

    fn resolve(&self, ids: Vec<i64>, operator: String) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        self.boxed(Box::new(move |tx, group| {
            resolve(tx, group.now, ids, &operator)
        }))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::schema;
    use kefu_store::JobStore as _;

    /// How SQLite runs `statement` on the newest schema: the plan's lines, joined.
    fn plan(statement: &str, values: Vec<Value>) -> String {
        let conn = Connection::open_in_memory().unwrap();
        schema::create_at(&conn, schema::LATEST).unwrap();
        let mut explain = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .unwrap();
        let lines = explain
            .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        lines.join("; ")
    }

    fn plan_of(filter: JobFilter) -> String {
        let (statement, values) = jobs_statement(&filter);
        plan(&statement, values)
    }

    #[test]
    fn the_pages_read_their_indexes_not_the_whole_table_sorted() {
        let conversation = plan_of(JobFilter {
            account: Some("shop".into()),
            recipient: Some("u".into()),
            before_id: Some(10),
            limit: 50,
            ..JobFilter::default()
        });
        assert!(
            conversation.contains("outbox_by_conversation"),
            "{conversation}"
        );
        let attention = plan_of(JobFilter {
            states: vec![JobState::Failed, JobState::Ambiguous],
            limit: 50,
            ..JobFilter::default()
        });
        assert!(attention.contains("outbox_attention"), "{attention}");
        let failed = plan_of(JobFilter {
            states: vec![JobState::Failed],
            reason: Some("config".into()),
            include_resolved: true,
            limit: 50,
            ..JobFilter::default()
        });
        assert!(failed.contains("outbox_attention"), "{failed}");
        for plan in [&conversation, &attention, &failed] {
            assert!(!plan.contains("TEMP B-TREE"), "sorted: {plan}");
        }
        let events = plan(
            "SELECT id, received_at_ms, kind, body, webhook_state FROM inbound_events
             WHERE openid = ?2 AND id < ?3 AND IFNULL(account, ?5) = ?1
             ORDER BY id DESC LIMIT ?4",
            vec![
                Value::Text("oa".into()),
                Value::Text("oU".into()),
                Value::Integer(i64::MAX),
                Value::Integer(10),
                Value::Text(DIALOGUE_ACCOUNT.into()),
            ],
        );
        assert!(events.contains("inbound_events_by_user"), "{events}");
        assert!(!events.contains("TEMP B-TREE"), "sorted: {events}");
    }

    #[tokio::test]
    async fn a_version_3_file_gets_the_marks_and_its_failed_jobs_can_be_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            schema::create_at(&conn, 3).unwrap();
            conn.execute_batch(
                "INSERT INTO outbox (id, seq, account, recipient, operation, payload, state,
                                     not_before_ms, created_at_ms, updated_at_ms, reason)
                 VALUES (1, 1, 'shop', 'oA', 'custom/send', X'7B7D', 'failed', 0, 0, 0,
                         'config')",
            )
            .unwrap();
        }
        let (store, _) = SqliteStore::open(&path).unwrap();
        let page = store
            .jobs(JobFilter {
                limit: 10,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!((page[0].payload.as_str(), &page[0].mark), ("{}", &None));
        assert_eq!(store.resolve(vec![1], "ops".into()).await.unwrap(), [1]);
        assert_eq!(store.state_counts().await.unwrap(), []);
        // A resend clears the mark.
        store.resend(1, None, None).await.unwrap();
        let page = store
            .jobs(JobFilter {
                limit: 10,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page[0].mark, None);
        drop(store);
        assert_eq!(schema::file_version(&path).unwrap(), schema::LATEST);
    }
}
