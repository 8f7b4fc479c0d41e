//! The settle task: ends the confirmation windows that passed (protocols.md §7.2), so that an
//! `accepted` job no failure was reported for becomes `delivered`, and an `ambiguous` one that no
//! callback confirmed becomes `failed` with reason `unconfirmed`.
//!
//! The windows live in the store, not in memory: a settle after a restart finds the ones that
//! ended while the relay was stopped. [`Dispatcher::start`](crate::delivery::Dispatcher::start)
//! starts the task and its shutdown stops it.
//!
//! On a store several relays share, only the leader settles
//! ([`Fleet::is_leader`](crate::store::Fleet::is_leader), checked each round), and it also
//! sweeps the sends of the relays that are gone ([`Fleet::sweep_gone`](crate::store::Fleet::sweep_gone)):
//! they become ambiguous (or settle by an early report), each logged.

use std::sync::Arc;
use std::time::Duration;

use kefu_core::now_ms;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{JobState, Settled, Store};

/// Spawns the task that settles the confirmations due, at once and then every `period`, until
/// `stopping` turns true (or its sender is gone). Each change is logged (the job id, account
/// and outcome, never content) and counted in `kefu_confirmations_total`.
pub(crate) fn spawn_settler(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    period: Duration,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if *stopping.borrow() {
                return;
            }
            if store.is_leader() {
                settle_once(store.as_ref(), &metrics).await;
                if store.shared() {
                    sweep_once(store.as_ref()).await;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    })
}

/// Settles the confirmations due now; returns what changed (nothing if the store failed, which
/// is logged: the next round finds them still due).
async fn settle_once(store: &dyn Store, metrics: &Metrics) -> Vec<Settled> {
    let settled = match store.settle_confirmations(now_ms()).await {
        Ok(settled) => settled,
        Err(error) => {
            tracing::warn!("cannot settle the confirmations due: {error}");
            return Vec::new();
        }
    };
    for change in &settled {
        match (change.state, change.reason) {
            (JobState::Delivered, _) => metrics.confirmation(&change.account, "delivered"),
            (_, Some(reason)) => metrics.confirmation_failed(&change.account, reason),
            (state, None) => metrics.confirmation(&change.account, state.as_str()),
        }
        if change.state == JobState::Delivered {
            tracing::info!(
                job = change.id,
                account = change.account.as_str(),
                "delivered: no failure was reported within the confirmation window"
            );
        } else {
            tracing::warn!(
                job = change.id,
                account = change.account.as_str(),
                outcome = change.state.as_str(),
                reason = change.reason.map(|reason| reason.as_str()),
                "not confirmed within the confirmation window"
            );
        }
    }
    settled
}

/// Ends the sends that relays now gone left `sending` (they may have reached the user, so they
/// are never sent again); returns what changed, each logged by id and state.
async fn sweep_once(store: &dyn Store) -> Vec<Settled> {
    let swept = match store.sweep_gone().await {
        Ok(swept) => swept,
        Err(error) => {
            tracing::warn!("cannot sweep the sends of the relays that are gone: {error}");
            return Vec::new();
        }
    };
    for change in &swept {
        tracing::warn!(
            job = change.id,
            account = change.account.as_str(),
            outcome = change.state.as_str(),
            "the relay sending this is gone; it is never sent again"
        );
    }
    swept
}
