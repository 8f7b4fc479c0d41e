//! What the operator console reads and records, [`ConsoleStore`] over `kefu.jobs` and
//! `kefu.events`: counts per account and state, pages of jobs and of a user's events, the
//! webhook backlog, and the operators' marks on jobs (`operator_action`, `operator`,
//! `operator_at_ms`, schema version 3).
//!
//! Reads run on the pool once the delivery lane has applied the outcomes recorded before them,
//! as [`JobStore::get`](kefu_store::JobStore::get) does; marks go through the api lane, whose
//! answers wait for the commit, so they are durable when they resolve.

use kefu_core::BoxFuture;
use kefu_store::console::MAX_PAGE;
use kefu_store::{
    ConsoleStore, DIALOGUE_ACCOUNT, EventRecord, JobFilter, JobRecord, JobState, OperatorAction,
    OperatorMark, StateCount, StoreResult,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::PgError;
use crate::jobs::{STATUS_COLUMNS, read_status};
use crate::lane::work;
use crate::locks::Locks;
use crate::sql::{self, Conn};
use crate::store::PgStore;

/// The states an operator may resolve, spelled as the partial index `jobs_attention` is, so
/// that the planner proves a query carrying this term may use it (a parameter, in a generic
/// plan, proves nothing).
const ATTENTION: &str = "state IN ('failed', 'ambiguous')";

/// The condition that leaves out the jobs an operator resolved.
const UNRESOLVED: &str =
    "NOT (state IN ('failed', 'ambiguous') AND operator_action IS NOT DISTINCT FROM 'resolve')";

/// The columns [`read_record`] reads, in its order: the status's, then the body and the mark.
fn record_columns() -> String {
    format!("{STATUS_COLUMNS}, payload, operator_action, operator, operator_at_ms")
}

/// A job from a row of [`record_columns`].
fn read_record(row: &Row) -> Result<JobRecord, PgError> {
    let status = read_status(row)?;
    let payload: Vec<u8> = sql::get(row, 12)?;
    let action: Option<String> = sql::get(row, 13)?;
    let operator: Option<String> = sql::get(row, 14)?;
    let at_ms: Option<i64> = sql::get(row, 15)?;
    let mark = OperatorMark::from_columns(action, operator, at_ms).map_err(|action| {
        PgError::Data(format!(
            "job {} has unknown operator action {action}",
            status.id
        ))
    })?;
    Ok(JobRecord {
        status,
        payload: String::from_utf8_lossy(&payload).into_owned(),
        mark,
    })
}

/// The jobs of `filter`, newest first. The statement holds only the filter's conditions, so
/// that each shape is planned on its indexes: a conversation on `jobs_by_conversation`, the
/// failed and ambiguous jobs on `jobs_attention`, anything else on the primary key, newest
/// first.
async fn jobs(c: &Conn, filter: &JobFilter) -> Result<Vec<JobRecord>, PgError> {
    let (statement, values) = jobs_statement(filter);
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| &**value as &(dyn ToSql + Sync))
        .collect();
    let rows = sql::query(c, &statement, &params).await?;
    rows.iter().map(read_record).collect()
}

/// A statement's parameter.
type Param = Box<dyn ToSql + Sync + Send>;

/// The statement of [`jobs`] for `filter`, with its parameters.
fn jobs_statement(filter: &JobFilter) -> (String, Vec<Param>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Param> = Vec::new();
    let mut condition = |text: &str, value: Param| {
        values.push(value);
        conditions.push(text.replace('?', &format!("${}", values.len())));
    };
    if let Some(before) = filter.before_id {
        condition("id < ?", Box::new(before));
    }
    if let Some(account) = &filter.account {
        condition("account = ?", Box::new(account.clone()));
    }
    if let Some(recipient) = &filter.recipient {
        condition("recipient = ?", Box::new(recipient.clone()));
    }
    if !filter.states.is_empty() {
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|state| state.as_str().to_owned())
            .collect();
        condition("state = ANY(?::text[])", Box::new(states));
    }
    if let Some(reason) = &filter.reason {
        condition("reason = ?", Box::new(reason.clone()));
    }
    if let Some(since) = filter.changed_since_ms {
        condition("updated_at_ms >= ?", Box::new(since));
    }
    if let Some(before) = filter.changed_before_ms {
        condition("updated_at_ms < ?", Box::new(before));
    }
    values.push(Box::new(i64::from(filter.limit.min(MAX_PAGE))));
    let limit_at = values.len();
    if !filter.states.is_empty()
        && filter
            .states
            .iter()
            .all(|state| matches!(state, JobState::Failed | JobState::Ambiguous))
    {
        conditions.push(ATTENTION.into());
    }
    if !filter.include_resolved {
        conditions.push(UNRESOLVED.into());
    }
    if conditions.is_empty() {
        conditions.push("true".into());
    }
    let statement = format!(
        "SELECT {} FROM kefu.jobs WHERE {} ORDER BY id DESC LIMIT ${limit_at}",
        record_columns(),
        conditions.join(" AND ")
    );
    (statement, values)
}

/// How many jobs each account has in each state, resolved ones not counted as failed or
/// ambiguous.
async fn state_counts(c: &Conn) -> Result<Vec<StateCount>, PgError> {
    let rows = sql::query(
        c,
        &format!(
            "SELECT account, state, count(*) FROM kefu.jobs WHERE {UNRESOLVED}
             GROUP BY account, state ORDER BY account, state"
        ),
        &[],
    )
    .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let state: String = sql::get(row, 1)?;
        let count: i64 = sql::get(row, 2)?;
        // A state this build does not know is left out, as `depth` does.
        if let Some(state) = JobState::parse(&state) {
            counts.push(StateCount {
                account: sql::get(row, 0)?,
                state,
                count: u64::try_from(count).unwrap_or(0),
            });
        }
    }
    Ok(counts)
}

/// One user's events on an account, newest first: `$1` the account, `$2` the user, `$3` the
/// id they are below, `$4` how many, `$5` the account of events stored without one.
const USER_EVENTS: &str = "SELECT id, received_at_ms, kind, body, webhook_state FROM kefu.events
    WHERE openid = $2 AND id < $3 AND coalesce(account, $5) = $1
    ORDER BY id DESC LIMIT $4";

/// A page of one user's events on `account`, newest first (Dialogue events are stored without
/// an account: they are the Dialogue account's).
async fn user_events(
    c: &Conn,
    account: &str,
    openid: &str,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<EventRecord>, PgError> {
    let rows = sql::query(
        c,
        USER_EVENTS,
        &[
            &account,
            &openid,
            &before_id.unwrap_or(i64::MAX),
            &i64::from(limit.min(MAX_PAGE)),
            &DIALOGUE_ACCOUNT,
        ],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(EventRecord {
                id: sql::get(row, 0)?,
                received_at_ms: sql::get(row, 1)?,
                kind: sql::get(row, 2)?,
                body: sql::get(row, 3)?,
                webhook_state: sql::get(row, 4)?,
            })
        })
        .collect()
}

/// How many events wait for the webhook.
async fn webhook_backlog(c: &Conn) -> Result<u64, PgError> {
    let row = sql::query_one(
        c,
        "SELECT count(*) FROM kefu.events WHERE webhook_state = 'pending'",
        &[],
    )
    .await?;
    let count: i64 = sql::get(&row, 0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Marks the failed and ambiguous jobs among `ids` not resolved yet resolved by `operator` at
/// `now`; returns the ids it marked, in order.
async fn resolve(c: &Conn, now: i64, ids: &[i64], operator: &str) -> Result<Vec<i64>, PgError> {
    let rows = sql::query(
        c,
        &format!(
            "UPDATE kefu.jobs SET operator_action = $2, operator = $3, operator_at_ms = $4
             WHERE id = ANY($1) AND {ATTENTION} AND operator_action IS DISTINCT FROM $2
             RETURNING id"
        ),
        &[&ids, &OperatorAction::Resolve.as_str(), &operator, &now],
    )
    .await?;
    let mut marked = rows
        .iter()
        .map(|row| sql::get(row, 0))
        .collect::<Result<Vec<i64>, _>>()?;
    marked.sort_unstable();
    Ok(marked)
}

impl ConsoleStore for PgStore {
    fn state_counts(&self) -> BoxFuture<'_, StoreResult<Vec<StateCount>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(state_counts(&c).await?)
        })
    }

    fn jobs(&self, filter: JobFilter) -> BoxFuture<'_, StoreResult<Vec<JobRecord>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(jobs(&c, &filter).await?)
        })
    }

    fn user_events<'a>(
        &'a self,
        account: &'a str,
        openid: &'a str,
        before_id: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EventRecord>>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(user_events(&c, account, openid, before_id, limit).await?)
        })
    }

    fn webhook_backlog(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let c = self.reader().await?;
            Ok(webhook_backlog(&c).await?)
        })
    }

    fn resolve(&self, mut ids: Vec<i64>, operator: String) -> BoxFuture<'_, StoreResult<Vec<i64>>> {
        ids.sort_unstable();
        ids.dedup();
        self.api(
            Locks::default(),
            work(move |c, g| {
                let (now, ids, operator) = (g.now, ids.clone(), operator.clone());
                Box::pin(async move { resolve(c, now, &ids, &operator).await })
            }),
        )
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::fresh_database;

    /// The generic plan (as a statement cached on a connection gets after a few runs) of
    /// `statement` run with `literals`, on a table of jobs and events large enough, and
    /// analysed, for the planner to prefer an index where one fits.
    async fn generic_plan(
        admin: &tokio_postgres::Client,
        statement: &str,
        literals: &str,
    ) -> String {
        admin
            .batch_execute(&format!(
                "SET plan_cache_mode = force_generic_plan; DEALLOCATE ALL;
                 PREPARE q AS {statement}"
            ))
            .await
            .unwrap();
        let rows = admin
            .query(&format!("EXPLAIN EXECUTE q({literals})"), &[])
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn the_pages_read_their_indexes_in_a_generic_plan() {
        let Some(db) = fresh_database().await else {
            return;
        };
        let admin = db.admin().await.unwrap();
        admin
            .batch_execute(
                "INSERT INTO kefu.jobs (seq, account, recipient, operation, payload, state,
                                        not_before_ms, created_at_ms, updated_at_ms)
                 SELECT i, 'shop', 'u' || (i % 1000), 'sendmsg', 'x'::bytea,
                        CASE WHEN i % 500 = 0 THEN 'failed' ELSE 'delivered' END, 0, i, i
                 FROM generate_series(1, 50000) AS i;
                 INSERT INTO kefu.events (id, source, account, openid, kind, body,
                                          received_at_ms, webhook_state, not_before_ms,
                                          updated_at_ms)
                 SELECT i, 'wechat', 'shop', 'u' || (i % 1000), 'message', '{}', i,
                        'delivered', 0, 0
                 FROM generate_series(1, 50000) AS i;
                 ANALYZE kefu.jobs; ANALYZE kefu.events",
            )
            .await
            .unwrap();
        let (conversation, _) = jobs_statement(&JobFilter {
            before_id: Some(40_000),
            account: Some("shop".into()),
            recipient: Some("u7".into()),
            limit: 50,
            ..JobFilter::default()
        });
        let plan = generic_plan(&admin, &conversation, "40000, 'shop', 'u7', 50").await;
        assert!(plan.contains("jobs_by_conversation"), "{plan}");
        let (attention, _) = jobs_statement(&JobFilter {
            states: vec![JobState::Failed, JobState::Ambiguous],
            limit: 50,
            ..JobFilter::default()
        });
        let plan = generic_plan(&admin, &attention, "'{failed,ambiguous}', 50").await;
        assert!(plan.contains("jobs_attention"), "{plan}");
        let (failed, _) = jobs_statement(&JobFilter {
            states: vec![JobState::Failed],
            include_resolved: true,
            limit: 50,
            ..JobFilter::default()
        });
        let plan = generic_plan(&admin, &failed, "'{failed}', 50").await;
        assert!(plan.contains("jobs_attention"), "{plan}");
        let plan = generic_plan(&admin, USER_EVENTS, "'shop', 'u7', 40000, 50, 'dialogue'").await;
        assert!(plan.contains("events_by_user"), "{plan}");
    }
}
