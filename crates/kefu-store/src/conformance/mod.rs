//! The conformance suite: the checks every backend of the storage traits must pass, written
//! against the traits alone, so that one suite proves the [contract](crate) for every backend.
//!
//! A backend provides a [`Fresh`] (a new, empty store, and a restart of the relay on it) and
//! instantiates the suite in one of its integration tests:
//!
//! ```ignore
//! // tests/conformance.rs of a backend crate, with `tokio` (features `macros`, `rt`) and
//! // `kefu-store` (feature `conformance`) among its dev-dependencies.
//! kefu_store::conformance_suite!(my_backend::testing::fresh());
//! ```
//!
//! The argument is an expression, evaluated once per check, whose future yields an
//! `Option<impl Fresh>`: `None` skips the check, for a backend whose server is missing (its
//! harness says so loudly, or fails when told the server is required). Each check becomes one
//! `#[tokio::test]` named after it.
//!
//! The checks assert, so they panic on a broken backend, as tests do; they never sleep and time
//! nothing. A check that restarts the relay ([`Fresh::reopen`]) drops every handle on the store
//! first, as a stopping relay does.

pub mod console;
pub mod events;
pub mod jobs;
pub mod keys;
pub mod tokens;
pub mod yunzhenji;

use std::sync::Arc;

use kefu_core::BoxFuture;

use crate::{PendingJob, Store, StoreResult};

/// A backend under test: one new, empty store, served by one relay.
pub trait Fresh: Sized + Send + 'static {
    /// The store, as the relay holds it.
    fn store(&self) -> Arc<dyn Store>;

    /// Stops the relay and starts another, the only one, on the same data, as a restart does
    /// (SQLite: the same file opened again; a shared backend: a new relay on the same database,
    /// the old one gone). Every handle from [`Fresh::store`] has been dropped. Resolves to the
    /// restarted store and the jobs it will deliver, in order per (account, recipient): every
    /// job still queued.
    fn reopen(self) -> BoxFuture<'static, StoreResult<(Self, Vec<PendingJob>)>>;

    /// Resolves once every outcome recorded so far through [`Fresh::store`]
    /// ([`JobStore::record`](crate::JobStore::record),
    /// [`EventStore::record_webhook`](crate::EventStore::record_webhook)), which returns before
    /// its write is durable, is seen by reads. The checks wait for it before reading an outcome
    /// back. The default waits for nothing: it fits a backend whose reads queue behind its
    /// writes (SQLite).
    fn recorded(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Restarts the relay on `fresh`'s data, failing the check if the store cannot be opened again.
pub async fn restart<F: Fresh>(fresh: F) -> (F, Vec<PendingJob>) {
    match fresh.reopen().await {
        Ok(reopened) => reopened,
        Err(error) => panic!("the store cannot be opened again: {error}"),
    }
}

/// Expands to one `#[tokio::test]` per check of the [conformance suite](crate::conformance),
/// each run on a store from `$fresh` (an expression whose future yields
/// `Option<impl Fresh>`; `None` skips the check).
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:expr) => {
        $crate::conformance_suite!(@checks $fresh;
            jobs::calls_are_taken_in_call_order_not_poll_order,
            jobs::a_restart_keeps_the_queue_in_order_and_never_resends_a_job_it_was_sending,
            jobs::concurrent_inserts_all_land,
            jobs::outcomes_are_recorded_and_only_a_failed_or_ambiguous_job_is_resent,
            jobs::confirmations_settle_once_when_their_window_ends,
            jobs::a_resend_of_an_ambiguous_job_ends_its_window,
            jobs::a_batch_is_marked_sending_together,
            jobs::a_desk_call_moves_the_session_with_its_jobs,
            jobs::desk_calls_made_together_move_sessions_in_call_order,
            keys::a_key_stores_once_across_a_restart_and_refuses_another_request,
            keys::racing_requests_with_one_key_store_once,
            keys::a_keyed_resend_queues_once_and_a_refused_one_keeps_the_key_free,
            keys::an_expired_key_is_new_again_and_purged,
            events::admits_once_tracks_the_session_and_survives_a_restart,
            events::replays_are_refused_and_expired_keys_no_longer_count,
            events::events_are_paged_in_order_and_ids_survive_a_purge,
            events::a_webhook_outcome_is_recorded,
            events::a_reader_following_the_feed_misses_no_event,
            events::the_newest_event_follows_admissions,
            yunzhenji::a_chat_msg_echo_resolves_an_ambiguous_job_to_accepted_for_a_new_window,
            yunzhenji::a_send_failure_fails_an_accepted_ambiguous_or_delivered_job,
            yunzhenji::a_duplicate_is_dropped_before_its_report_is_applied,
            yunzhenji::reports_for_another_account_unknown_ids_or_other_states_change_nothing,
            yunzhenji::the_event_gets_its_id_and_kind,
            yunzhenji::a_report_that_comes_before_the_answer_settles_the_attempt_when_it_is_recorded,
            yunzhenji::a_restart_settles_jobs_left_sending_by_their_early_reports,
            tokens::keeps_the_later_expiring_token_and_invalidates_only_the_failed_one,
            console::resolve_marks_failed_or_ambiguous_jobs_once_and_a_resend_clears_the_mark,
            console::job_pages_are_filtered_and_run_newest_first,
            console::a_page_holds_at_most_max_page_jobs,
            console::a_users_events_come_newest_first_and_the_backlog_counts_pending_ones,
        );
    };
    (@checks $fresh:expr; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $check() {
                if let Some(fresh) = $fresh.await {
                    $crate::conformance::$module::$check(fresh).await;
                }
            }
        )*
    };
}

/// A job for `recipient` on the Dialogue account, its payload `payload`.
fn job(recipient: &str, payload: &str) -> crate::NewJob {
    crate::NewJob {
        account: crate::DIALOGUE_ACCOUNT.into(),
        recipient: recipient.into(),
        operation: "sendmsg".into(),
        payload: payload.into(),
    }
}

/// Stores `jobs` without a key or a desk call; returns them as stored.
async fn insert_plain(store: &dyn Store, jobs: Vec<crate::NewJob>) -> Vec<PendingJob> {
    match store.insert(jobs, None, None).await {
        Ok(crate::Claimed::Done(stored)) => stored,
        other => panic!("not stored: {other:?}"),
    }
}

/// The ids of `jobs`, in order.
fn ids_of(jobs: &[PendingJob]) -> Vec<i64> {
    jobs.iter().map(PendingJob::id).collect()
}

/// Resends `id` without a key.
async fn resend_plain(store: &dyn Store, id: i64) -> Result<PendingJob, crate::ResendError> {
    match store.resend(id, None, None).await {
        Ok(crate::Claimed::Done(queued)) => queued,
        other => panic!("no key was given: {other:?}"),
    }
}

/// Takes the conversations of jobs `ids` for this relay, as a relay does before it marks them
/// `sending`: a shared store marks a job only while the relay holds its conversation
/// ([`Fleet::head`](crate::Fleet::head)); a store one relay owns needs nothing.
async fn hold(store: &dyn Store, ids: &[i64]) {
    if !store.shared() {
        return;
    }
    for id in ids {
        let job = status(store, *id).await;
        let held = store
            .head(&crate::ConvKey::jobs(job.account, job.openid), 1)
            .await
            .unwrap();
        assert!(held.is_some(), "job {id}'s conversation is held elsewhere");
    }
}

/// Sends `id` once and leaves it with `outcome`, seen by reads.
async fn sent<F: Fresh>(fresh: &F, id: i64, outcome: crate::Outcome) {
    let store = fresh.store();
    hold(&*store, &[id]).await;
    store.mark_sending_many(&[id]).await.unwrap();
    store.record(id, outcome).unwrap();
    fresh.recorded().await;
}

/// The status of job `id`, which exists.
async fn status(store: &dyn Store, id: i64) -> crate::JobStatus {
    match store.get(id).await {
        Ok(Some(status)) => status,
        other => panic!("job {id}: {other:?}"),
    }
}
