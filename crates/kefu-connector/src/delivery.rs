//! Delivery from the outbox to the platform: in order per user, concurrently across users.
//!
//! Each user with pending jobs has one task that works through that user's queue, one job at a
//! time, so a conversation is never reordered. A semaphore bounds the requests in flight across
//! all users. The retry decision is the client's pure [`RetryPolicy::decide`]; every transition is
//! made durable in the outbox before it takes effect, and a job is marked `sending` before its
//! request leaves, so a crash can never cause a silent resend.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kefu_client::{Client, RetryDecision, RetryPolicy, StopReason};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outcome, PendingJob};

/// Hands stored jobs to per-user delivery tasks.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: Outbox,
    client: Client,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    permits: Semaphore,
    queues: Mutex<HashMap<String, VecDeque<PendingJob>>>,
    tasks: Mutex<JoinSet<()>>,
    stopping: watch::Sender<bool>,
}

impl Dispatcher {
    /// Starts delivering `pending` (jobs recovered from the outbox, in order).
    pub fn start(
        outbox: Outbox,
        client: Client,
        policy: RetryPolicy,
        concurrency: usize,
        metrics: Arc<Metrics>,
        pending: Vec<PendingJob>,
    ) -> Dispatcher {
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                outbox,
                client,
                policy,
                metrics,
                permits: Semaphore::new(concurrency.max(1)),
                queues: Mutex::new(HashMap::new()),
                tasks: Mutex::new(JoinSet::new()),
                stopping: watch::channel(false).0,
            }),
        };
        for job in pending {
            dispatcher.enqueue(job);
        }
        dispatcher
    }

    /// Queues a stored job behind the user's earlier jobs.
    pub fn enqueue(&self, job: PendingJob) {
        self.inner.metrics.pending(1);
        let openid = job.openid.clone();
        let Ok(mut queues) = self.inner.queues.lock() else {
            return;
        };
        if let Some(queue) = queues.get_mut(&openid) {
            queue.push_back(job);
            return;
        }
        queues.insert(openid.clone(), VecDeque::from([job]));
        drop(queues);
        let inner = Arc::clone(&self.inner);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            // A JoinSet keeps finished tasks until they are joined: reap them here, or memory
            // grows with every conversation that ever emptied its queue.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(async move { inner.work_through(openid).await });
        }
    }

    /// Stops starting new attempts and waits up to `grace` for those in flight. Jobs not
    /// finished stay in the outbox for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.stopping.send(true);
        let mut tasks = match self.inner.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return,
        };
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                "deliveries still in flight after {grace:?}; they resume as ambiguous on the next start"
            );
            tasks.abort_all();
        }
    }
}

impl Inner {
    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Works through one user's queue until it is empty or the service stops.
    async fn work_through(self: Arc<Self>, openid: String) {
        loop {
            let job = match self.queues.lock() {
                Ok(queues) => queues.get(&openid).and_then(|q| q.front().cloned()),
                Err(_) => None,
            };
            let Some(job) = job else {
                return;
            };
            if !self.deliver(&job).await {
                return;
            }
            self.metrics.pending(-1);
            let Ok(mut queues) = self.queues.lock() else {
                return;
            };
            if let Some(queue) = queues.get_mut(&openid) {
                queue.pop_front();
                if queue.is_empty() {
                    queues.remove(&openid);
                    return;
                }
            }
        }
    }

    /// Delivers one job to a final state. Returns `false` if the service is stopping or the
    /// outbox failed, leaving the job stored for the next start.
    async fn deliver(&self, job: &PendingJob) -> bool {
        let operation = job.operation;
        let started = Instant::now();
        let mut attempts = job.attempts;
        let mut stopping = self.stopping.subscribe();
        let wait = Duration::from_millis(
            u64::try_from(job.not_before_ms.saturating_sub(now_ms())).unwrap_or_default(),
        );
        if !wait.is_zero() {
            // A retry time stored before a restart still holds.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|stop| *stop) => return false,
            }
        }
        loop {
            let permit = tokio::select! {
                permit = self.permits.acquire() => permit,
                _ = stopping.wait_for(|stop| *stop) => return false,
            };
            let Ok(_permit) = permit else {
                return false;
            };
            if self.is_stopping() {
                return false;
            }
            if let Err(error) = self.outbox.mark_sending(job.id).await {
                tracing::error!(job = job.id, "cannot mark the job as sending: {error}");
                return false;
            }
            attempts += 1;
            let request_started = Instant::now();
            let result = self.client.call_xml(operation, &job.payload).await;
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
                    drop(_permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        _ = stopping.wait_for(|stop| *stop) => return false,
                    }
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
