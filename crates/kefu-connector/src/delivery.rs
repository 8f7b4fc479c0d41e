//! Delivery from the outbox to the platform: in order per user, concurrently across users.
//!
//! Each user with pending jobs has one task that works through that user's queue, one job at a
//! time, so a conversation is never reordered. A semaphore bounds the requests in flight across
//! all users. The retry decision is the client's pure [`RetryPolicy::decide`]; every transition is
//! made durable in the outbox before it takes effect, and a job is marked `sending` before its
//! request leaves, so a crash can never cause a silent resend.

use std::sync::Arc;
use std::time::Duration;

use kefu_client::{Client, RetryDecision, RetryPolicy, StopReason};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::conversations::{Conversations, Deliver, permit, sleep_unless_stopping, wait_until};
use crate::metrics::Metrics;
use crate::store::{Outcome, PendingJob, Store};

/// Hands stored jobs to per-user delivery tasks.
#[derive(Clone)]
pub struct Dispatcher {
    conversations: Arc<Conversations<(String, String), PendingJob, Inner>>,
}

struct Inner {
    outbox: Arc<dyn Store>,
    client: Client,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

impl Dispatcher {
    /// Starts delivering `pending` (jobs recovered from the outbox, in order).
    pub fn start(
        outbox: Arc<dyn Store>,
        client: Client,
        policy: RetryPolicy,
        concurrency: usize,
        metrics: Arc<Metrics>,
        pending: Vec<PendingJob>,
    ) -> Dispatcher {
        let dispatcher = Dispatcher {
            conversations: Conversations::new(Inner {
                outbox,
                client,
                policy,
                metrics,
                permits: Semaphore::new(concurrency.max(1)),
            }),
        };
        for job in pending {
            dispatcher.enqueue(job);
        }
        dispatcher
    }

    /// Queues a stored job behind the user's earlier jobs.
    pub fn enqueue(&self, job: PendingJob) {
        self.conversations
            .enqueue((job.job.account.clone(), job.job.recipient.clone()), job);
    }

    /// Stops starting new attempts and waits up to `grace` for those in flight. Jobs not
    /// finished stay in the outbox for the next start; one interrupted mid-send resumes as
    /// ambiguous.
    pub async fn shutdown(&self, grace: Duration) {
        self.conversations
            .shutdown(grace, "deliveries to the platform")
            .await;
    }
}

impl Deliver<PendingJob> for Inner {
    fn deliver(
        &self,
        job: &PendingJob,
        stopping: watch::Receiver<bool>,
    ) -> impl Future<Output = bool> + Send {
        self.deliver_job(job, stopping)
    }

    fn pending(&self, delta: i64) {
        self.metrics.pending(delta);
    }
}

impl Inner {
    /// Delivers one job to a final state. Returns `false` if the service is stopping or the
    /// outbox failed, leaving the job stored for the next start.
    async fn deliver_job(&self, pending: &PendingJob, mut stopping: watch::Receiver<bool>) -> bool {
        let job = &pending.job;
        let Some(operation) = kefu_client::Operation::ALL
            .into_iter()
            .find(|op| op.name() == job.operation)
        else {
            return self.record(
                job.id,
                Outcome::Failed {
                    code: None,
                    reason: kefu_core::Reason::Unknown,
                    message: format!("unknown operation {}", job.operation),
                },
            );
        };
        let Ok(payload) = std::str::from_utf8(&job.payload) else {
            return self.record(
                job.id,
                Outcome::Failed {
                    code: None,
                    reason: kefu_core::Reason::Content,
                    message: "the payload is not UTF-8".into(),
                },
            );
        };
        let started = Instant::now();
        let mut attempts = pending.attempts;
        if !wait_until(pending.not_before_ms, &mut stopping).await {
            return false;
        }
        loop {
            let Some(permit) = permit(&self.permits, &mut stopping).await else {
                return false;
            };
            if let Err(error) = self.outbox.mark_sending(job.id).await {
                tracing::error!(job = job.id, "cannot mark the job as sending: {error}");
                return false;
            }
            attempts += 1;
            let request_started = Instant::now();
            let result = self.client.call_xml(operation, payload).await;
            self.metrics
                .latency(operation.name(), request_started.elapsed());
            let error = match result {
                Ok(_) => {
                    self.metrics
                        .delivery(operation.name(), "delivered", Some(0));
                    tracing::info!(
                        job = job.id,
                        operation = operation.name(),
                        attempts,
                        "delivered"
                    );
                    return self.record(job.id, Outcome::Delivered);
                }
                Err(error) => error,
            };
            let code = error.platform_code().map(|c| c.code());
            let message = error.to_string();
            let decision = self.policy.decide(
                operation,
                attempts,
                started.elapsed(),
                &error,
                rand::random(),
            );
            let (outcome, label) = match decision {
                RetryDecision::RetryAfter(backoff) => {
                    let not_before_ms = now_ms()
                        .saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
                    self.metrics.delivery(operation.name(), "retry", code);
                    tracing::warn!(
                        job = job.id,
                        operation = operation.name(),
                        attempts,
                        backoff_ms = backoff.as_millis() as u64,
                        "attempt failed, retrying: {message}"
                    );
                    if !self.record(
                        job.id,
                        Outcome::Retry {
                            not_before_ms,
                            code,
                            message,
                        },
                    ) {
                        return false;
                    }
                    drop(permit);
                    if sleep_unless_stopping(backoff, &mut stopping).await {
                        continue;
                    }
                    return false;
                }
                // An idempotent call that ran out of retries on an ambiguous failure may still
                // have taken effect: say so rather than "failed".
                RetryDecision::Stop(StopReason::Ambiguous) | RetryDecision::Stop(_)
                    if error.is_ambiguous() =>
                {
                    (
                        Outcome::Ambiguous {
                            message: message.clone(),
                        },
                        "ambiguous",
                    )
                }
                RetryDecision::Stop(_) => (
                    Outcome::Failed {
                        code,
                        reason: kefu_core::Reason::Unknown,
                        message: message.clone(),
                    },
                    "failed",
                ),
            };
            self.metrics.delivery(operation.name(), label, code);
            tracing::warn!(
                job = job.id,
                operation = operation.name(),
                attempts,
                outcome = label,
                "not delivered: {message}"
            );
            return self.record(job.id, outcome);
        }
    }

    fn record(&self, id: i64, outcome: Outcome) -> bool {
        match self.outbox.record(id, outcome) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(job = id, "cannot record the outcome: {error}");
                false
            }
        }
    }
}
