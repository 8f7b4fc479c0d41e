//! Prometheus metrics in the text exposition format: desk API requests, deliveries by outcome and
//! error code, failures by account and reason, confirmations settled, the pending queue, a
//! histogram of platform request latency, and the access-token counters of the
//! `[wechat.<name>]` accounts.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kefu_client::wechat::{CountersSnapshot, WechatProvider};
use kefu_core::Reason;
use serde::Serialize;

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The service's metrics. One instance is shared by the API and the dispatcher.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    deliveries: Mutex<BTreeMap<(String, &'static str, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pending: AtomicI64,
    callbacks: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    receive_ids: Mutex<BTreeMap<(String, bool), u64>>,
    webhook: Mutex<BTreeMap<(&'static str, String), u64>>,
    inbound_pending: AtomicI64,
    failures: Mutex<BTreeMap<(String, &'static str), u64>>,
    confirmations: Mutex<BTreeMap<(String, &'static str), u64>>,
    wechat: OnceLock<Vec<Arc<WechatProvider>>>,
    minutes: Mutex<VecDeque<Minute>>,
}

/// Minutes the console's charts look back.
const MINUTES_KEPT: usize = 60;

/// One minute of this relay's deliveries, for the console's charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Minute {
    /// The minute's start (Unix ms).
    pub at_ms: i64,
    /// Attempts the platform took (delivered or accepted).
    pub delivered: u64,
    /// Attempts that failed, were ambiguous or will be retried.
    pub failed: u64,
    /// Platform requests timed.
    pub requests: u64,
    /// Their total time, in milliseconds.
    pub latency_ms_sum: f64,
}

/// One token counter: its metric name, its help, and its field of the snapshot.
type TokenCounter = (&'static str, &'static str, fn(&CountersSnapshot) -> u64);

/// The token counters exported per account.
const TOKEN_COUNTERS: [TokenCounter; 5] = [
    (
        "kefu_wechat_token_fetches_total",
        "stable_token calls made (normal and forced).",
        |c| c.token_fetches,
    ),
    (
        "kefu_wechat_token_fetch_failures_total",
        "stable_token calls that brought no token.",
        |c| c.token_fetch_failures,
    ),
    (
        "kefu_wechat_config_failures_total",
        "Calls that ended config (token fetch refused, account refused, rejected token given back): worth an alert.",
        |c| c.config_failures,
    ),
    (
        "kefu_wechat_refresh_replays_total",
        "Calls whose token the platform rejected, replayed once with a fresh token.",
        |c| c.refresh_replays,
    ),
    (
        "kefu_wechat_same_token_back_total",
        "Rejected tokens that stable_token gave back unchanged.",
        |c| c.same_token_back,
    ),
];

/// At most this many distinct receive-ids are labelled; the rest count as `other`.
const MAX_RECEIVE_ID_LABELS: usize = 16;

/// A label value as the text format needs it: quotes, backslashes and newlines escaped, and
/// no longer than 64 characters.
fn label(value: &str) -> String {
    value
        .chars()
        .take(64)
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect()
}

impl Metrics {
    /// Counts a desk API request by route template (never the raw path) and status.
    pub fn request(&self, route: &'static str, status: u16) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((route, status)).or_default() += 1;
        }
    }

    /// Counts a delivery attempt's outcome, with the platform's code (or `none`).
    pub fn delivery(&self, operation: &str, outcome: &'static str, errcode: Option<i64>) {
        let code = errcode.map_or_else(|| "none".to_owned(), |c| c.to_string());
        if let Ok(mut deliveries) = self.deliveries.lock() {
            *deliveries
                .entry((operation.to_owned(), outcome, code))
                .or_default() += 1;
        }
        let taken = matches!(outcome, "delivered" | "accepted");
        self.this_minute(|minute| {
            if taken {
                minute.delivered += 1;
            } else {
                minute.failed += 1;
            }
        });
    }

    /// Adds to the current minute of the series, starting a new one when the minute changed.
    fn this_minute(&self, add: impl FnOnce(&mut Minute)) {
        let now = kefu_core::now_ms();
        let start = now - now.rem_euclid(60_000);
        if let Ok(mut minutes) = self.minutes.lock() {
            if minutes.back().is_none_or(|last| last.at_ms != start) {
                if minutes.len() == MINUTES_KEPT {
                    minutes.pop_front();
                }
                minutes.push_back(Minute {
                    at_ms: start,
                    ..Minute::default()
                });
            }
            if let Some(minute) = minutes.back_mut() {
                add(minute);
            }
        }
    }

    /// This relay's deliveries and platform latency per minute over the last hour, oldest
    /// first (minutes without any are absent).
    pub fn last_hour(&self) -> Vec<Minute> {
        let now = kefu_core::now_ms();
        self.minutes
            .lock()
            .map(|minutes| {
                minutes
                    .iter()
                    .filter(|minute| now - minute.at_ms < 3_600_000)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records how long a platform request took.
    pub fn latency(&self, operation: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Ok(mut latency) = self.latency.lock() {
            let histogram = latency.entry(operation.to_owned()).or_default();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
        self.this_minute(|minute| {
            minute.requests += 1;
            minute.latency_ms_sum += seconds * 1000.0;
        });
    }

    /// Adjusts the number of jobs waiting for delivery.
    pub fn pending(&self, delta: i64) {
        self.pending.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts an inbound callback: its source (`dialogue`, `wechat`), its outcome (`stored`,
    /// `duplicate`, `verified`, `rejected`, `unavailable`) and, for a refusal, the failed step.
    pub fn callback(&self, source: &'static str, outcome: &'static str, reason: &'static str) {
        if let Ok(mut callbacks) = self.callbacks.lock() {
            *callbacks.entry((source, outcome, reason)).or_default() += 1;
        }
    }

    /// Counts the receive-id found in an accepted Dialogue callback (protocols.md §3.8), and
    /// whether it is the bot APPID.
    pub fn dialogue_receive_id(&self, observed: &str, is_bot_appid: bool) {
        if let Ok(mut ids) = self.receive_ids.lock() {
            let key = (observed.to_owned(), is_bot_appid);
            if ids.contains_key(&key) || ids.len() < MAX_RECEIVE_ID_LABELS {
                *ids.entry(key).or_default() += 1;
            } else {
                *ids.entry(("other".to_owned(), is_bot_appid)).or_default() += 1;
            }
        }
    }

    /// Counts a webhook attempt's outcome (`delivered`, `retry`, `failed`) with the desk's
    /// HTTP status (or `none`).
    pub fn webhook(&self, outcome: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        if let Ok(mut webhook) = self.webhook.lock() {
            *webhook.entry((outcome, status)).or_default() += 1;
        }
    }

    /// Counts a job that failed for good, by its account's configured name and its reason.
    pub fn failure(&self, account: &str, reason: Reason) {
        if let Ok(mut failures) = self.failures.lock() {
            *failures
                .entry((account.to_owned(), reason.as_str()))
                .or_default() += 1;
        }
    }

    /// Counts a confirmation settled, by its account's configured name and its result
    /// (`delivered`, or the failure's reason such as `unconfirmed` or `send_failed`).
    pub fn confirmation(&self, account: &str, result: &'static str) {
        if let Ok(mut confirmations) = self.confirmations.lock() {
            *confirmations
                .entry((account.to_owned(), result))
                .or_default() += 1;
        }
    }

    /// Counts a confirmation that ended in a failure for `reason`, under that reason both in
    /// `kefu_confirmations_total` and in `kefu_delivery_failures_total`, since the job failed
    /// there and not in delivery.
    pub fn confirmation_failed(&self, account: &str, reason: Reason) {
        self.failure(account, reason);
        self.confirmation(account, reason.as_str());
    }

    /// The `[wechat.<name>]` providers whose token counters are exported, labelled by their
    /// configured name only (never the AppID, a token or the AppSecret). Set once, at start.
    pub fn wechat_accounts(&self, providers: Vec<Arc<WechatProvider>>) {
        let _ = self.wechat.set(providers);
    }

    fn render_failures_and_tokens(&self, out: &mut String) {
        out.push_str(
            "# HELP kefu_delivery_failures_total Jobs failed for good, by account and reason.\n",
        );
        out.push_str("# TYPE kefu_delivery_failures_total counter\n");
        if let Ok(failures) = self.failures.lock() {
            for ((account, reason), count) in failures.iter() {
                let _ = writeln!(
                    out,
                    "kefu_delivery_failures_total{{account=\"{}\",reason=\"{reason}\"}} {count}",
                    label(account)
                );
            }
        }
        out.push_str(
            "# HELP kefu_confirmations_total Confirmation windows settled, by account and result.\n",
        );
        out.push_str("# TYPE kefu_confirmations_total counter\n");
        if let Ok(confirmations) = self.confirmations.lock() {
            for ((account, result), count) in confirmations.iter() {
                let _ = writeln!(
                    out,
                    "kefu_confirmations_total{{account=\"{}\",result=\"{result}\"}} {count}",
                    label(account)
                );
            }
        }
        let providers = self.wechat.get().map(Vec::as_slice).unwrap_or_default();
        let snapshots: Vec<(&str, CountersSnapshot)> =
            providers.iter().map(|p| (p.name(), p.counters())).collect();
        for (name, help, field) in TOKEN_COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (account, snapshot) in &snapshots {
                let _ = writeln!(
                    out,
                    "{name}{{account=\"{}\"}} {}",
                    label(account),
                    field(snapshot)
                );
            }
        }
    }

    /// Adjusts the number of inbound events waiting for the webhook.
    pub fn inbound_pending(&self, delta: i64) {
        self.inbound_pending.fetch_add(delta, Ordering::Relaxed);
    }

    fn render_inbound(&self, out: &mut String) {
        out.push_str(
            "# HELP kefu_callbacks_total Inbound callbacks by source, outcome and refusal reason.\n",
        );
        out.push_str("# TYPE kefu_callbacks_total counter\n");
        if let Ok(callbacks) = self.callbacks.lock() {
            for ((source, outcome, reason), count) in callbacks.iter() {
                let _ = writeln!(
                    out,
                    "kefu_callbacks_total{{source=\"{source}\",outcome=\"{outcome}\",reason=\"{reason}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP kefu_dialogue_receive_id_total Receive-ids of accepted Dialogue callbacks.\n",
        );
        out.push_str("# TYPE kefu_dialogue_receive_id_total counter\n");
        if let Ok(ids) = self.receive_ids.lock() {
            for ((observed, matches), count) in ids.iter() {
                let _ = writeln!(
                    out,
                    "kefu_dialogue_receive_id_total{{observed=\"{}\",bot_appid=\"{matches}\"}} {count}",
                    label(observed)
                );
            }
        }
        out.push_str(
            "# HELP kefu_webhook_deliveries_total Webhook attempts by outcome and HTTP status.\n",
        );
        out.push_str("# TYPE kefu_webhook_deliveries_total counter\n");
        if let Ok(webhook) = self.webhook.lock() {
            for ((outcome, status), count) in webhook.iter() {
                let _ = writeln!(
                    out,
                    "kefu_webhook_deliveries_total{{outcome=\"{outcome}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP kefu_inbound_pending Inbound events waiting for the webhook.\n");
        out.push_str("# TYPE kefu_inbound_pending gauge\n");
        let _ = writeln!(
            out,
            "kefu_inbound_pending {}",
            self.inbound_pending.load(Ordering::Relaxed)
        );
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP kefu_http_requests_total Desk API requests by route and status.\n");
        out.push_str("# TYPE kefu_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "kefu_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP kefu_deliveries_total Platform call attempts by operation, outcome and errcode.\n",
        );
        out.push_str("# TYPE kefu_deliveries_total counter\n");
        if let Ok(deliveries) = self.deliveries.lock() {
            for ((operation, outcome, code), count) in deliveries.iter() {
                let _ = writeln!(
                    out,
                    "kefu_deliveries_total{{operation=\"{operation}\",outcome=\"{outcome}\",errcode=\"{code}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP kefu_outbox_pending Jobs stored and not yet finished.\n");
        out.push_str("# TYPE kefu_outbox_pending gauge\n");
        let _ = writeln!(
            out,
            "kefu_outbox_pending {}",
            self.pending.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP kefu_platform_request_duration_seconds Latency of platform requests.\n",
        );
        out.push_str("# TYPE kefu_platform_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (operation, histogram) in latency.iter() {
                for (bucket, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
                    let _ = writeln!(
                        out,
                        "kefu_platform_request_duration_seconds_bucket{{operation=\"{operation}\",le=\"{bound}\"}} {bucket}"
                    );
                }
                let _ = writeln!(
                    out,
                    "kefu_platform_request_duration_seconds_bucket{{operation=\"{operation}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "kefu_platform_request_duration_seconds_sum{{operation=\"{operation}\"}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "kefu_platform_request_duration_seconds_count{{operation=\"{operation}\"}} {}",
                    histogram.count
                );
            }
        }
        self.render_failures_and_tokens(&mut out);
        self.render_inbound(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauge_and_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.request("/v1/messages", 202);
        metrics.request("/v1/messages", 202);
        metrics.delivery("sendmsg", "failed", Some(1001));
        metrics.latency("sendmsg", Duration::from_millis(3));
        metrics.latency("sendmsg", Duration::from_millis(300));
        metrics.pending(2);
        let text = metrics.render();
        assert!(text.contains("kefu_http_requests_total{route=\"/v1/messages\",status=\"202\"} 2"));
        assert!(text.contains(
            "kefu_deliveries_total{operation=\"sendmsg\",outcome=\"failed\",errcode=\"1001\"} 1"
        ));
        assert!(text.contains("kefu_outbox_pending 2"));
        assert!(text.contains(
            "kefu_platform_request_duration_seconds_bucket{operation=\"sendmsg\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "kefu_platform_request_duration_seconds_bucket{operation=\"sendmsg\",le=\"0.5\"} 2"
        ));
        assert!(
            text.contains("kefu_platform_request_duration_seconds_count{operation=\"sendmsg\"} 2")
        );
    }

    #[test]
    fn renders_inbound_counters_with_escaped_bounded_labels() {
        let metrics = Metrics::default();
        metrics.callback("dialogue", "rejected", "aes");
        metrics.callback("dialogue", "rejected", "aes");
        metrics.dialogue_receive_id("we\"ird\\", false);
        for i in 0..40 {
            metrics.dialogue_receive_id(&format!("id{i}"), false);
        }
        metrics.webhook("retry", Some(503));
        metrics.webhook("retry", None);
        metrics.inbound_pending(3);
        let text = metrics.render();
        assert!(text.contains(
            "kefu_callbacks_total{source=\"dialogue\",outcome=\"rejected\",reason=\"aes\"} 2"
        ));
        assert!(text.contains(
            "kefu_dialogue_receive_id_total{observed=\"we\\\"ird\\\\\",bot_appid=\"false\"} 1"
        ));
        assert!(
            text.contains(
                "kefu_dialogue_receive_id_total{observed=\"other\",bot_appid=\"false\"} 25"
            )
        );
        assert!(text.contains("kefu_webhook_deliveries_total{outcome=\"retry\",status=\"503\"} 1"));
        assert!(
            text.contains("kefu_webhook_deliveries_total{outcome=\"retry\",status=\"none\"} 1")
        );
        assert!(text.contains("kefu_inbound_pending 3"));
    }

    #[test]
    fn renders_failures_and_token_counters_by_account_name_only() {
        use kefu_client::kefu_payload::cgibin::AccountKind;
        let metrics = Metrics::default();
        metrics.failure("shop", Reason::QuotaExhausted);
        metrics.failure("shop", Reason::QuotaExhausted);
        metrics.failure("mini", Reason::Recipient);
        metrics.confirmation("yzj", "unconfirmed");
        let provider = WechatProvider::builder(
            "shop",
            AccountKind::OfficialAccount,
            "wx0a0a0a0a0a0a0a0a",
            "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
        )
        .build()
        .expect("provider");
        metrics.wechat_accounts(vec![Arc::new(provider)]);
        let text = metrics.render();
        assert!(text.contains(
            "kefu_delivery_failures_total{account=\"shop\",reason=\"quota_exhausted\"} 2"
        ));
        assert!(
            text.contains("kefu_delivery_failures_total{account=\"mini\",reason=\"recipient\"} 1")
        );
        assert!(
            text.contains("kefu_confirmations_total{account=\"yzj\",result=\"unconfirmed\"} 1")
        );
        for name in [
            "kefu_wechat_token_fetches_total",
            "kefu_wechat_token_fetch_failures_total",
            "kefu_wechat_config_failures_total",
            "kefu_wechat_refresh_replays_total",
            "kefu_wechat_same_token_back_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
            assert!(
                text.contains(&format!("{name}{{account=\"shop\"}} 0")),
                "{name}"
            );
        }
        assert!(!text.contains("wx0a0a0a0a0a0a0a0a"));
        assert!(!text.contains("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"));
    }
}
