//! Counters an exporter can turn into metrics, labelled by the account's configured name only:
//! never by AppID, token or secret.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one account, shared by its provider and its token manager.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    token_fetches: AtomicU64,
    token_fetch_failures: AtomicU64,
    config_failures: AtomicU64,
    refresh_replays: AtomicU64,
    same_token_back: AtomicU64,
}

/// The counters of one account at one moment, from [`WechatProvider::counters`](super::WechatProvider::counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountersSnapshot {
    /// `stable_token` calls made (normal and forced).
    pub token_fetches: u64,
    /// `stable_token` calls that brought no token.
    pub token_fetch_failures: u64,
    /// Calls that ended `config`: a token fetch refused (40013, 40125, 40164, …), a send refused
    /// for the account (48001, …), or a rejected token fetched back unchanged. Worth an alert.
    pub config_failures: u64,
    /// Calls whose token the platform rejected (40001, 40014, 42001), answered with a fresh
    /// token for the one replay.
    pub refresh_replays: u64,
    /// Rejected tokens that `stable_token` gave back unchanged (also counted in
    /// `config_failures`).
    pub same_token_back: u64,
}

impl Counters {
    /// The current values.
    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            token_fetches: get(&self.token_fetches),
            token_fetch_failures: get(&self.token_fetch_failures),
            config_failures: get(&self.config_failures),
            refresh_replays: get(&self.refresh_replays),
            same_token_back: get(&self.same_token_back),
        }
    }

    pub(crate) fn token_fetch(&self) {
        self.token_fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn token_fetch_failure(&self) {
        self.token_fetch_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn config_failure(&self) {
        self.config_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refresh_replay(&self) {
        self.refresh_replays.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn same_token(&self) {
        self.same_token_back.fetch_add(1, Ordering::Relaxed);
    }
}
