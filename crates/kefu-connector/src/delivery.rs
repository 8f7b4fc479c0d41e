//! Delivery from the store to the platforms: in order per (account, recipient), concurrently
//! across them.
//!
//! Each conversation with pending jobs has one task that works through its queue, one job at a
//! time, so a conversation is never reordered. A semaphore bounds the requests in flight across
//! all accounts. The job's account's [`Provider`] makes each attempt and classifies it; the
//! decision is kefu-core's pure [`RetryPolicy::decide`]. Every transition is recorded in the
//! store before it takes effect, and a job is durably `sending` before its request leaves, so a
//! crash can never cause a silent resend.

use std::sync::Arc;
use std::time::Duration;

use kefu_core::{Attempt, Job, Provider, Reason, RetryDecision, RetryPolicy, StopReason};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::conversations::{Attempts, Conversations, Deliver, Step, drive};
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::sequencer::{Sequencer, Ticket};
use crate::store::{Outcome, PendingJob, Store};
use kefu_core::now_ms;

/// Hands stored jobs to per-conversation delivery tasks.
#[derive(Clone)]
pub struct Dispatcher {
    conversations: Arc<Conversations<(String, String), PendingJob, Inner>>,
    sequencer: Arc<Sequencer>,
}

struct Inner {
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

impl Dispatcher {
    /// Starts delivering `pending` (jobs recovered from the store, in order).
    pub fn start(
        store: Arc<dyn Store>,
        providers: Arc<Providers>,
        policy: RetryPolicy,
        concurrency: usize,
        metrics: Arc<Metrics>,
        pending: Vec<PendingJob>,
    ) -> Dispatcher {
        let dispatcher = Dispatcher {
            conversations: Conversations::new(Inner {
                store,
                providers,
                policy,
                metrics,
                permits: Semaphore::new(concurrency.max(1)),
            }),
            sequencer: Sequencer::new(),
        };
        for job in pending {
            dispatcher.enqueue(job);
        }
        dispatcher
    }

    /// Queues a stored job behind its conversation's earlier jobs.
    pub fn enqueue(&self, job: PendingJob) {
        let conversation = (job.job.account.clone(), job.job.recipient.clone());
        self.conversations.enqueue(conversation, job);
    }

    /// Makes `call`, a store call that queues jobs, and returns its ticket: the jobs given to
    /// [`Ticket::release`] reach delivery after those of every store call sequenced before, in
    /// the order the store received the calls (see [`crate::sequencer`]).
    pub(crate) fn sequenced<R>(&self, call: impl FnOnce() -> R) -> (Ticket, R) {
        let dispatcher = self.clone();
        self.sequencer
            .submit(move |job| dispatcher.enqueue(job), call)
    }

    /// Stops starting new attempts and waits up to `grace` for those in flight. Jobs not
    /// finished stay in the store for the next start; one interrupted mid-send resumes as
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

/// What an attempt's decision comes to.
enum Next {
    /// The same job again, at once, with a fresh credential.
    Replay,
    /// The same job again after this wait (the outcome is recorded already).
    Retry(Duration),
    /// The job's final outcome.
    Final(Outcome, &'static str),
}

/// One job's attempts through its account's provider.
struct Delivery<'a> {
    inner: &'a Inner,
    job: &'a Job,
    provider: &'a dyn Provider,
    started: Instant,
    /// Attempts made, in this round, the current one included.
    attempts: u32,
    /// Credential replays made.
    replays: u32,
    /// Whether the next attempt is a replay.
    replaying: bool,
}

impl Attempts for Delivery<'_> {
    async fn attempt(&mut self) -> Step {
        let (inner, job) = (self.inner, self.job);
        // A replay is part of the attempt it repeats, which left the job durably `sending`.
        if !std::mem::take(&mut self.replaying) {
            if let Err(error) = inner.store.mark_sending(job.id).await {
                tracing::error!(job = job.id, "cannot mark the job as sending: {error}");
                return Step::Done(false);
            }
            self.attempts += 1;
        }
        let request_started = Instant::now();
        let attempt = self.provider.send(job).await;
        inner
            .metrics
            .latency(&job.operation, request_started.elapsed());
        let decision = inner.policy.decide(
            attempt.class,
            self.attempts,
            self.replays,
            self.started.elapsed(),
            rand::random(),
        );
        let attempts = self.attempts;
        match Inner::next(decision, &attempt) {
            Next::Replay => {
                self.replays += 1;
                self.replaying = true;
                inner
                    .metrics
                    .delivery(&job.operation, "replay", attempt.code);
                tracing::info!(
                    job = job.id,
                    operation = job.operation.as_str(),
                    code = attempt.code,
                    "credential refused, replaying with a fresh one: {}",
                    attempt.message
                );
                Step::Again
            }
            Next::Retry(backoff) => {
                let not_before_ms =
                    now_ms().saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
                inner
                    .metrics
                    .delivery(&job.operation, "retry", attempt.code);
                tracing::warn!(
                    job = job.id,
                    operation = job.operation.as_str(),
                    attempts,
                    backoff_ms = backoff.as_millis() as u64,
                    rid = attempt.rid.as_deref(),
                    "attempt failed, retrying: {}",
                    attempt.message
                );
                let outcome = Outcome::Retry {
                    not_before_ms,
                    code: attempt.code,
                    message: attempt.message,
                };
                if inner.record(job.id, outcome) {
                    Step::After(backoff)
                } else {
                    Step::Done(false)
                }
            }
            Next::Final(outcome, label) => {
                inner.metrics.delivery(&job.operation, label, attempt.code);
                if let Outcome::Failed { reason, .. } = &outcome {
                    inner.metrics.failure(&job.account, *reason);
                }
                if label == "delivered" {
                    tracing::info!(
                        job = job.id,
                        operation = job.operation.as_str(),
                        attempts,
                        rid = attempt.rid.as_deref(),
                        "delivered"
                    );
                } else {
                    tracing::warn!(
                        job = job.id,
                        operation = job.operation.as_str(),
                        attempts,
                        outcome = label,
                        rid = attempt.rid.as_deref(),
                        "not delivered: {}",
                        attempt.message
                    );
                }
                Step::Done(inner.record(job.id, outcome))
            }
        }
    }
}

impl Inner {
    /// Delivers one job to a final state. Returns `false` if the service is stopping or the
    /// store failed, leaving the job stored for the next start.
    async fn deliver_job(&self, pending: &PendingJob, mut stopping: watch::Receiver<bool>) -> bool {
        let job = &pending.job;
        let Some(provider) = self.providers.get(&job.account) else {
            let message = format!(
                "no account {:?} is configured; configure it and resend the message",
                job.account
            );
            tracing::warn!(job = job.id, "not delivered: {message}");
            self.metrics.failure(&job.account, Reason::Config);
            return self.record(
                job.id,
                Outcome::Failed {
                    code: None,
                    reason: Reason::Config,
                    message,
                },
            );
        };
        let mut delivery = Delivery {
            inner: self,
            job,
            provider: provider.as_ref(),
            started: Instant::now(),
            attempts: pending.attempts,
            replays: 0,
            replaying: false,
        };
        drive(
            &mut delivery,
            pending.not_before_ms,
            &self.permits,
            &mut stopping,
        )
        .await
    }

    /// What `decision`, taken on `attempt`, comes to.
    fn next(decision: RetryDecision, attempt: &Attempt) -> Next {
        let failed = |reason: Reason| {
            Next::Final(
                Outcome::Failed {
                    code: attempt.code,
                    reason,
                    message: attempt.message.clone(),
                },
                "failed",
            )
        };
        let ambiguous = || {
            Next::Final(
                Outcome::Ambiguous {
                    message: attempt.message.clone(),
                },
                "ambiguous",
            )
        };
        match decision {
            RetryDecision::Done => Next::Final(Outcome::Delivered, "delivered"),
            RetryDecision::ReplayNow => Next::Replay,
            RetryDecision::RetryAfter(backoff) => Next::Retry(backoff),
            RetryDecision::Stop(StopReason::Ambiguous) => ambiguous(),
            // An idempotent call that ran out of retries on a failure that may have taken
            // effect is reported as it is: perhaps done, not failed.
            RetryDecision::Stop(_) if attempt.maybe_applied => ambiguous(),
            RetryDecision::Stop(stop) => failed(stop.failure_reason().unwrap_or(Reason::Unknown)),
        }
    }

    fn record(&self, id: i64, outcome: Outcome) -> bool {
        match self.store.record(id, outcome) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(job = id, "cannot record the outcome: {error}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use kefu_core::{BoxFuture, Class, ComposeRequest, Composed, Invalid, Job, Provider};

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Claimed, JobState, JobStatus, NewJob};

    /// A provider that answers each attempt from a script, and counts them.
    struct Scripted {
        answers: Mutex<VecDeque<Attempt>>,
        sent: Mutex<u32>,
    }

    impl Provider for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }

        fn compose(&self, _: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
            Err(Invalid::new("msg", "not composed in these tests"))
        }

        fn send<'a>(&'a self, _: &'a Job) -> BoxFuture<'a, Attempt> {
            Box::pin(async move {
                *self.sent.lock().unwrap() += 1;
                self.answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(Attempt::success)
            })
        }
    }

    /// Delivers one job through a provider answering `script`; returns its final status and
    /// the requests made.
    async fn deliver(script: Vec<Attempt>) -> (JobStatus, u32) {
        let dir = tempfile::tempdir().unwrap();
        let (sqlite, _) = SqliteStore::open(&dir.path().join("d.sqlite3")).unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let provider = Arc::new(Scripted {
            answers: Mutex::new(script.into()),
            sent: Mutex::new(0),
        });
        let mut providers = Providers::new();
        providers.register("shop", Arc::clone(&provider) as Arc<dyn Provider>);
        let job = NewJob {
            account: "shop".into(),
            recipient: "oU".into(),
            operation: "custom/send".into(),
            payload: b"{}".to_vec(),
        };
        let Claimed::Done(stored) = store.insert(vec![job], None, None).await.unwrap() else {
            panic!("no key was given")
        };
        let id = stored[0].id();
        let policy = RetryPolicy::default()
            .with_initial_backoff(Duration::ZERO)
            .with_max_attempts(3);
        let dispatcher = Dispatcher::start(
            Arc::clone(&store),
            Arc::new(providers),
            policy,
            1,
            Arc::new(Metrics::default()),
            stored,
        );
        // Bounded by polls, not by time.
        for _ in 0..10_000 {
            let status = store.get(id).await.unwrap().unwrap();
            if status.status.is_final() {
                dispatcher.shutdown(Duration::from_secs(1)).await;
                let sent = *provider.sent.lock().unwrap();
                return (status, sent);
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("job {id} never reached a final state");
    }

    fn attempt(class: Class, code: Option<i64>) -> Attempt {
        Attempt::new(class, code, format!("{class:?}"))
    }

    #[tokio::test]
    async fn a_refused_credential_is_replayed_once_within_the_attempt() {
        let (status, sent) = deliver(vec![attempt(Class::RefreshReplay, Some(40001))]).await;
        assert_eq!(status.status, JobState::Delivered);
        assert_eq!((sent, status.attempts), (2, 1));

        let twice = vec![
            attempt(Class::RefreshReplay, Some(40001)),
            attempt(Class::RefreshReplay, Some(40001)),
        ];
        let (status, sent) = deliver(twice).await;
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.reason, Some(Reason::Config));
        assert_eq!(status.error_code, Some(40001));
        assert_eq!(sent, 2, "never a loop");
    }

    #[tokio::test]
    async fn terminal_throttled_and_exhausted_failures_keep_their_reason() {
        let closed = attempt(Class::Terminal(Reason::WindowClosed), Some(45015));
        let (status, sent) = deliver(vec![closed]).await;
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.reason, Some(Reason::WindowClosed));
        assert_eq!((status.error_code, sent), (Some(45015), 1));

        let (status, sent) = deliver(vec![attempt(Class::Throttled, Some(45009))]).await;
        assert_eq!(status.reason, Some(Reason::Throttled));
        assert_eq!(sent, 1, "no immediate retry");

        let busy = vec![attempt(Class::Transient, Some(-1)); 3];
        let (status, sent) = deliver(busy).await;
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.reason, Some(Reason::Unknown));
        assert_eq!((sent, status.attempts), (3, 3));

        let recovered = vec![attempt(Class::Transient, Some(-1))];
        let (status, sent) = deliver(recovered).await;
        assert_eq!(status.status, JobState::Delivered);
        assert_eq!(sent, 2);
    }

    #[tokio::test]
    async fn what_may_have_taken_effect_is_reported_ambiguous_never_resent() {
        let (status, sent) = deliver(vec![attempt(Class::Ambiguous, None)]).await;
        assert_eq!(status.status, JobState::Ambiguous);
        assert_eq!(status.reason, None);
        assert_eq!(sent, 1);

        // An idempotent call retried on lost answers until attempts ran out: perhaps done.
        let lost = Attempt::new(Class::Transient, None, "timed out").with_maybe_applied(true);
        let (status, sent) = deliver(vec![lost; 3]).await;
        assert_eq!(status.status, JobState::Ambiguous);
        assert_eq!(sent, 3);
    }

    #[tokio::test]
    async fn a_job_of_an_account_no_longer_configured_fails_as_config() {
        let dir = tempfile::tempdir().unwrap();
        let (sqlite, _) = SqliteStore::open(&dir.path().join("d.sqlite3")).unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let job = NewJob {
            account: "gone".into(),
            recipient: "oU".into(),
            operation: "custom/send".into(),
            payload: Vec::new(),
        };
        let Claimed::Done(stored) = store.insert(vec![job], None, None).await.unwrap() else {
            panic!("no key was given")
        };
        let inner = Inner {
            store: Arc::clone(&store),
            providers: Arc::new(Providers::new()),
            policy: RetryPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            permits: Semaphore::new(1),
        };
        assert!(inner.deliver_job(&stored[0], watch::channel(false).1).await);
        let status = store.get(stored[0].id()).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.reason, Some(Reason::Config));
        assert!(status.error_message.unwrap().contains("\"gone\""));
    }
}
