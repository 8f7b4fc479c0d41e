//! Push delivery of inbound events to the desk's webhook: at least once, in order per user,
//! concurrently across users, with retries and capped exponential backoff.
//!
//! Each request is `POST <webhook.url>` with the event JSON as its body and these headers:
//!
//! | Header | Value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `X-Kefu-Event-Id` | the event id (also `id` in the body) |
//! | `X-Kefu-Timestamp` | Unix seconds when the attempt was made |
//! | `X-Kefu-Signature` | `sha256=` and the lowercase hex HMAC-SHA256, keyed with `webhook.secret`, of `<timestamp>.<body>` |
//!
//! A 2xx answer acknowledges the event; anything else, or no answer within `webhook.timeout_ms`,
//! is retried after `webhook.initial_backoff_ms`, doubled on each retry (with jitter) up to
//! `webhook.max_backoff_ms`, until `webhook.max_attempts`. The attempt count and the next
//! attempt time are stored, so a restart resumes where the last run stopped; an event whose
//! outcome was not yet recorded is sent again, with the same id.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, header};
use kefu_client::{HttpClient, http_client};
use kefu_core::{Class, RetryDecision, RetryPolicy};
use sha2::Sha256;
use tokio::sync::{Semaphore, watch};

use crate::config::WebhookConfig;
use crate::conversations::{Attempts, Deliver, Step, drive};
use crate::metrics::Metrics;
use crate::pulled::Queues;
use crate::store::{ConvKey, PendingEvent, Store, WebhookOutcome};
use kefu_core::now_ms;

/// The signature header's value for `body` sent at `timestamp`: `sha256=<hex>` of
/// HMAC-SHA256(`secret`, `"<timestamp>.<body>"`).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why the webhook client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the webhook: {0}")]
pub struct WebhookError(String);

/// Hands stored events to per-user delivery tasks.
#[derive(Clone)]
pub struct WebhookDispatcher {
    queues: Arc<Queues<PendingEvent, Inner>>,
}

struct Inner {
    store: Arc<dyn Store>,
    policy: RetryPolicy,
    config: WebhookConfig,
    http: HttpClient,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

impl WebhookDispatcher {
    /// Starts pushing `pending` (events recovered from the store, in order). On a store several
    /// relays share, the events are pulled from the store instead, by user (`pulled.rs`), and
    /// an event stored through another relay wakes the claim of this one.
    pub fn start(
        store: Arc<dyn Store>,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
        pending: Vec<PendingEvent>,
    ) -> Result<WebhookDispatcher, WebhookError> {
        let http = http_client(config.timeout, Duration::from_secs(30))
            .map_err(|e| WebhookError(e.to_string()))?;
        let wake = store.shared().then(|| store.newest_event());
        let worker = Inner {
            store: Arc::clone(&store),
            policy: policy(&config),
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            http,
            metrics,
        };
        let dispatcher = WebhookDispatcher {
            queues: Arc::new(Queues::start(&store, worker, wake)),
        };
        for event in pending {
            dispatcher.enqueue(event);
        }
        Ok(dispatcher)
    }

    /// Queues a stored event behind the user's earlier events (on a shared store: kicks the
    /// user's conversation, whose task reads the event from the store).
    pub fn enqueue(&self, event: PendingEvent) {
        self.queues.enqueue(event);
    }

    /// Stops starting new attempts and waits up to `grace` for those in flight. Events not
    /// acknowledged stay stored and are sent again on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.queues.shutdown(grace, "webhook calls").await;
    }
}

impl Deliver<PendingEvent> for Inner {
    /// The batch limit is the default 1: each call carries one event.
    fn deliver(
        &self,
        events: &[PendingEvent],
        stopping: watch::Receiver<bool>,
    ) -> impl Future<Output = bool> + Send {
        let events = events.to_vec();
        async move {
            for event in events {
                if !self.push(event, stopping.clone()).await {
                    return false;
                }
            }
            true
        }
    }

    fn pending(&self, delta: i64) {
        self.metrics.inbound_pending(delta);
    }
}

/// The webhook's retries as a [`RetryPolicy`]: doubling from `webhook.initial_backoff_ms` up to
/// `webhook.max_backoff_ms`, each wait drawn from its upper half, until `webhook.max_attempts`;
/// no time budget, since an event waits in the store for as long as it takes.
fn policy(config: &WebhookConfig) -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_backoff(config.initial_backoff)
        .with_max_backoff(config.max_backoff)
        .with_multiplier(2.0)
        .with_jitter_ratio(0.5)
        .with_max_attempts(config.max_attempts)
        .with_max_elapsed(Duration::MAX)
}

/// One event's pushes to the webhook.
struct Push<'a> {
    inner: &'a Inner,
    event: PendingEvent,
    /// Attempts made, the current one included.
    attempts: u32,
}

impl Attempts for Push<'_> {
    async fn attempt(&mut self) -> Step {
        let (inner, event) = (self.inner, &self.event);
        if !inner.still_holds(event).await {
            return Step::Done(false);
        }
        self.attempts = self.attempts.saturating_add(1);
        let attempts = self.attempts;
        let (status, error) = match inner.attempt(event).await {
            Ok(status) => {
                inner.metrics.webhook("delivered", Some(status));
                tracing::debug!(event = event.id, attempts, "pushed to the webhook");
                return Step::Done(inner.record(event.id, WebhookOutcome::Delivered));
            }
            Err(failure) => failure,
        };
        // Every failed push is transient: the desk may answer the next one.
        let decision = inner.policy.decide(
            Class::Transient,
            attempts,
            0,
            Duration::ZERO,
            rand::random(),
        );
        let RetryDecision::RetryAfter(delay) = decision else {
            inner.metrics.webhook("failed", status);
            tracing::warn!(
                event = event.id,
                attempts,
                "the webhook refused the event {attempts} times; giving up (it stays available from GET /v1/events): {error}"
            );
            return Step::Done(inner.record(event.id, WebhookOutcome::Failed { error }));
        };
        inner.metrics.webhook("retry", status);
        tracing::warn!(
            event = event.id,
            attempts,
            backoff_ms = delay.as_millis() as u64,
            "webhook attempt failed, retrying: {error}"
        );
        let not_before_ms =
            now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let outcome = WebhookOutcome::Retry {
            not_before_ms,
            error,
        };
        if inner.record(event.id, outcome) {
            Step::After(delay)
        } else {
            Step::Done(false)
        }
    }
}

impl Inner {
    /// On a shared store, whether this relay still holds the user's conversation: a relay that
    /// lost it (it stalled past its liveness, and another took over) must not push the user's
    /// events beside the new holder, out of order. The events stay stored for the holder.
    async fn still_holds(&self, event: &PendingEvent) -> bool {
        if !self.store.shared() {
            return true;
        }
        match self.store.holds(&ConvKey::webhook(&event.openid)).await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::warn!(
                    event = event.id,
                    "cannot check this relay still holds the user's webhook pushes, so it stops: {error}"
                );
                false
            }
        }
    }

    /// Pushes one event until it is acknowledged or its attempts run out. Returns `false` if
    /// the service is stopping or the store failed.
    async fn push(&self, event: PendingEvent, mut stopping: watch::Receiver<bool>) -> bool {
        let not_before_ms = event.not_before_ms;
        let mut push = Push {
            attempts: event.attempts,
            inner: self,
            event,
        };
        drive(&mut push, not_before_ms, &self.permits, &mut stopping).await
    }

    /// One attempt: `Ok(status)` for a 2xx, else the status (if any) and what went wrong.
    async fn attempt(&self, event: &PendingEvent) -> Result<u16, (Option<u16>, String)> {
        let timestamp = (now_ms() / 1000).to_string();
        let body = Bytes::from(event.body.clone());
        let signature = signature(self.config.secret.expose().as_bytes(), &timestamp, &body);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.config.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "kefu-connector")
            .header("X-Kefu-Event-Id", event.id)
            .header("X-Kefu-Timestamp", &timestamp)
            .header("X-Kefu-Signature", signature)
            .body(Full::new(body))
            .map_err(|e| (None, format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                (
                    None,
                    format!("the desk did not answer: {}", error_chain(&e)),
                )
            })?;
            let status = response.status();
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await;
            if status.is_success() {
                Ok(status.as_u16())
            } else {
                Err((
                    Some(status.as_u16()),
                    format!("the desk answered HTTP {}", status.as_u16()),
                ))
            }
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err((
                None,
                format!("no answer within {} ms", self.config.timeout.as_millis()),
            )),
        }
    }

    fn record(&self, id: i64, outcome: WebhookOutcome) -> bool {
        match self.store.record_webhook(id, outcome) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(event = id, "cannot record the webhook outcome: {error}");
                false
            }
        }
    }
}

/// An error and its causes on one line (hyper's own message alone is often just "client error").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(key, b'1700000000.{"id":1}', sha256).
        assert_eq!(
            signature(b"0123456789abcdef-webhook", "1700000000", br#"{"id":1}"#),
            "sha256=f65b7c82f6e56b4e1ed5b3725f57007f86cf96deb3545b52429a2854e706f602"
        );
        assert_ne!(
            signature(b"0123456789abcdef-webhook", "1700000001", br#"{"id":1}"#),
            signature(b"0123456789abcdef-webhook", "1700000000", br#"{"id":1}"#)
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_attempts_run_out() {
        let config = WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            secret: crate::config::Secret::new("0123456789abcdef-webhook"),
            timeout: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 6,
            concurrency: 1,
        };
        let policy = policy(&config);
        let wait = |attempt, jitter| match policy.decide(
            Class::Transient,
            attempt,
            0,
            Duration::from_secs(86_400),
            jitter,
        ) {
            RetryDecision::RetryAfter(wait) => Some(wait),
            _ => None,
        };
        assert_eq!(wait(1, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(wait(2, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(wait(4, 1.0), Some(Duration::from_millis(800)));
        assert_eq!(wait(5, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(wait(1, 0.0), Some(Duration::from_millis(50)));
        assert_eq!(wait(6, 1.0), None, "six attempts made");
    }
}
