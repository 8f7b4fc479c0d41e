//! Delivery from the store to the platforms: in order per (account, recipient), concurrently
//! across them.
//!
//! Each conversation with pending jobs has one task that works through its queue, one call at a
//! time, so a conversation is never reordered. A call carries one job, or up to the provider's
//! [`max_batch`](Provider::max_batch) jobs from the front of the queue, in order. A semaphore
//! bounds the requests in flight across all accounts. The job's account's [`Provider`] makes
//! each attempt and classifies it per job; the decision is kefu-core's pure
//! [`RetryPolicy::decide`], taken for each job of a batch on its own attempt: the jobs to replay
//! or retry stay in the batch and go out together again, the others are recorded final. Every
//! transition is recorded in the store before it takes effect, and every job of a call is
//! durably `sending` before its request leaves, so a crash can never cause a silent resend.
//!
//! At a provider with a [confirmation window](Provider::confirm_window), a success leaves the
//! job `accepted` and an ambiguous end leaves it `ambiguous`, both until the window ends; the
//! queue moves on at once. [`Dispatcher::start`] also starts the settle task
//! (`settle.rs`), which ends the windows, and [`Dispatcher::shutdown`] stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_core::{
    Attempt, Class, Job, Provider, Reason, RetryDecision, RetryPolicy, StopReason, now_ms,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::conversations::{Attempts, Deliver, Step, drive};
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::pulled::Queues;
use crate::sequencer::{Sequencer, Ticket};
use crate::settle;
use crate::store::{Outcome, PendingJob, Store};

/// How often the settle task ends the confirmation windows that passed.
const SETTLE_PERIOD: Duration = Duration::from_secs(1);

/// Hands stored jobs to per-conversation delivery tasks.
#[derive(Clone)]
pub struct Dispatcher {
    queues: Arc<Queues<PendingJob, Inner>>,
    sequencer: Arc<Sequencer>,
    settler: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct Inner {
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

impl Dispatcher {
    /// Starts delivering `pending` (jobs recovered from the store, in order), and the settle
    /// task, which settles the confirmations whose window ended (at once for those that ended
    /// while the relay was stopped, then about once a second). On a store several relays share
    /// ([`Fleet::shared`](crate::store::Fleet::shared)), the jobs are pulled from the store
    /// instead (`pulled.rs`): `pending` is empty there, and the claim loop finds the work.
    pub fn start(
        store: Arc<dyn Store>,
        providers: Arc<Providers>,
        policy: RetryPolicy,
        concurrency: usize,
        metrics: Arc<Metrics>,
        pending: Vec<PendingJob>,
    ) -> Dispatcher {
        let worker = Inner {
            store: Arc::clone(&store),
            providers,
            policy,
            metrics: Arc::clone(&metrics),
            permits: Semaphore::new(concurrency.max(1)),
        };
        let queues = Queues::start(&store, worker, None);
        let settler = settle::spawn_settler(store, metrics, SETTLE_PERIOD, queues.stopping());
        let dispatcher = Dispatcher {
            queues: Arc::new(queues),
            sequencer: Sequencer::new(),
            settler: Arc::new(Mutex::new(Some(settler))),
        };
        for job in pending {
            dispatcher.enqueue(job);
        }
        dispatcher
    }

    /// Queues a stored job behind its conversation's earlier jobs (on a shared store: kicks
    /// its conversation, whose task reads the job from the store).
    pub fn enqueue(&self, job: PendingJob) {
        self.queues.enqueue(job);
    }

    /// Makes `call`, a store call that queues jobs, and returns its ticket: the jobs given to
    /// [`Ticket::release`] reach delivery after those of every store call sequenced before, in
    /// the order the store received the calls (see [`crate::sequencer`]).
    pub(crate) fn sequenced<R>(&self, call: impl FnOnce() -> R) -> (Ticket, R) {
        let dispatcher = self.clone();
        self.sequencer
            .submit(move |job| dispatcher.enqueue(job), call)
    }

    /// Stops starting new attempts and the settle task, and waits up to `grace` for the
    /// attempts in flight. Jobs not finished stay in the store for the next start; one
    /// interrupted mid-send resumes as ambiguous; confirmations left waiting are settled by
    /// the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.queues
            .shutdown(grace, "deliveries to the platform")
            .await;
        let settler = self.settler.lock().ok().and_then(|mut held| held.take());
        if let Some(mut settler) = settler {
            if tokio::time::timeout(grace, &mut settler).await.is_err() {
                tracing::warn!("the settle task still running after {grace:?}");
                settler.abort();
            }
        }
    }
}

impl Deliver<PendingJob> for Inner {
    fn batch_limit(&self, first: &PendingJob) -> usize {
        self.providers
            .get(&first.job.account)
            .map_or(1, |provider| provider.max_batch())
    }

    fn deliver(
        &self,
        jobs: &[PendingJob],
        stopping: watch::Receiver<bool>,
    ) -> impl Future<Output = bool> + Send {
        self.deliver_jobs(jobs, stopping)
    }

    fn pending(&self, delta: i64) {
        self.metrics.pending(delta);
    }
}

/// What an attempt's decision comes to for one job.
enum Next {
    /// The same job again, at once, with a fresh credential.
    Replay,
    /// The same job again after this wait (the outcome is recorded already).
    Retry(Duration),
    /// The job's final outcome, with its metrics label.
    Final(Outcome, &'static str),
}

/// One job's counts within its batch's attempts.
#[derive(Debug, Clone, Copy)]
struct Tries {
    /// Attempts made, in this round, the current one included.
    attempts: u32,
    /// Credential replays made.
    replays: u32,
    /// Whether the next attempt is a replay.
    replaying: bool,
}

/// One call's jobs (one, or a batch of one account and recipient) and their attempts through
/// their account's provider.
struct Delivery<'a> {
    inner: &'a Inner,
    provider: &'a dyn Provider,
    started: Instant,
    /// The jobs still being attempted, in order.
    jobs: Vec<Job>,
    /// Their counts, index for index.
    tries: Vec<Tries>,
}

impl Attempts for Delivery<'_> {
    async fn attempt(&mut self) -> Step {
        let inner = self.inner;
        // A replay is part of the attempt it repeats, which left its job durably `sending`.
        let fresh: Vec<i64> = self
            .jobs
            .iter()
            .zip(&self.tries)
            .filter(|(_, tries)| !tries.replaying)
            .map(|(job, _)| job.id)
            .collect();
        if !fresh.is_empty() {
            match inner.store.mark_sending_many(&fresh).await {
                Ok(marked) if marked.len() == fresh.len() => {}
                // The fence of a shared store: another relay holds the conversation now, or
                // this one's liveness ran out. Nothing may leave; the holder sends them.
                Ok(_) => {
                    tracing::info!(
                        jobs = fresh.len(),
                        "another relay now delivers this conversation; leaving it"
                    );
                    return Step::Done(false);
                }
                Err(error) => {
                    tracing::error!(
                        jobs = fresh.len(),
                        "cannot mark the jobs as sending: {error}"
                    );
                    return Step::Done(false);
                }
            }
        }
        for tries in &mut self.tries {
            if !std::mem::take(&mut tries.replaying) {
                tries.attempts = tries.attempts.saturating_add(1);
            }
        }
        let request_started = Instant::now();
        let mut attempts = self.provider.send_batch(&self.jobs).await;
        if let Some(first) = self.jobs.first() {
            inner
                .metrics
                .latency(&first.operation, request_started.elapsed());
        }
        // A provider that answers for fewer jobs than it was given breaks its contract, after
        // the request left: the jobs it said nothing of may have arrived.
        attempts.resize_with(self.jobs.len(), || {
            Attempt::new(
                Class::Ambiguous,
                None,
                "the provider reported nothing for this message of the batch",
            )
        });
        let elapsed = self.started.elapsed();
        let window = self.provider.confirm_window();
        let mut wait: Option<Duration> = None;
        let jobs = std::mem::take(&mut self.jobs);
        let all_tries = std::mem::take(&mut self.tries);
        for ((job, mut tries), attempt) in jobs.into_iter().zip(all_tries).zip(attempts) {
            let decision = inner.policy.decide(
                attempt.class,
                tries.attempts,
                tries.replays,
                elapsed,
                rand::random(),
            );
            match Inner::next(decision, &attempt, window) {
                Next::Replay => {
                    tries.replays += 1;
                    tries.replaying = true;
                    inner.replaying(&job, &attempt);
                }
                Next::Retry(backoff) => {
                    if !inner.retrying(&job, tries.attempts, backoff, attempt) {
                        return Step::Done(false);
                    }
                    wait = Some(wait.map_or(backoff, |longest| longest.max(backoff)));
                }
                Next::Final(outcome, label) => {
                    if !inner.finished(&job, tries.attempts, outcome, label, &attempt) {
                        return Step::Done(false);
                    }
                    continue;
                }
            }
            self.jobs.push(job);
            self.tries.push(tries);
        }
        match wait {
            _ if self.jobs.is_empty() => Step::Done(true),
            // The jobs to replay wait with those to retry: the batch stays together.
            Some(wait) => Step::After(wait),
            None => Step::Again,
        }
    }
}

impl Inner {
    /// Delivers one call's jobs to a final state (or, at a provider with a confirmation
    /// window, to `accepted` or `ambiguous` until it ends). Returns `false` if the service is
    /// stopping or the store failed, leaving the jobs stored for the next start.
    async fn deliver_jobs(
        &self,
        pending: &[PendingJob],
        mut stopping: watch::Receiver<bool>,
    ) -> bool {
        let Some(first) = pending.first() else {
            return true;
        };
        let account = &first.job.account;
        let Some(provider) = self.providers.get(account) else {
            let message = format!(
                "no account {account:?} is configured; configure it and resend the message"
            );
            for job in pending {
                tracing::warn!(job = job.id(), "not delivered: {message}");
                self.metrics.failure(account, Reason::Config);
                let failed = Outcome::Failed {
                    code: None,
                    reason: Reason::Config,
                    message: message.clone(),
                };
                if !self.record(job.id(), failed) {
                    return false;
                }
            }
            return true;
        };
        let mut delivery = Delivery {
            inner: self,
            provider: provider.as_ref(),
            started: Instant::now(),
            jobs: pending.iter().map(|job| job.job.clone()).collect(),
            tries: pending
                .iter()
                .map(|job| Tries {
                    attempts: job.attempts,
                    replays: 0,
                    replaying: false,
                })
                .collect(),
        };
        // A retry time stored for any of them holds for the call that carries them all.
        let not_before_ms = pending
            .iter()
            .map(|job| job.not_before_ms)
            .max()
            .unwrap_or_default();
        drive(&mut delivery, not_before_ms, &self.permits, &mut stopping).await
    }

    /// What `decision`, taken on `attempt`, comes to at a provider with confirmation window
    /// `window`.
    fn next(decision: RetryDecision, attempt: &Attempt, window: Option<Duration>) -> Next {
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
        let confirm_by_ms = window.map(|window| {
            now_ms().saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
        });
        let ambiguous = || {
            Next::Final(
                Outcome::Ambiguous {
                    message: attempt.message.clone(),
                    confirm_by_ms,
                },
                "ambiguous",
            )
        };
        match decision {
            RetryDecision::Done => match confirm_by_ms {
                Some(confirm_by_ms) => Next::Final(Outcome::Accepted { confirm_by_ms }, "accepted"),
                None => Next::Final(Outcome::Delivered, "delivered"),
            },
            RetryDecision::ReplayNow => Next::Replay,
            RetryDecision::RetryAfter(backoff) => Next::Retry(backoff),
            RetryDecision::Stop(StopReason::Ambiguous) => ambiguous(),
            // An idempotent call that ran out of retries on a failure that may have taken
            // effect is reported as it is: perhaps done, not failed.
            RetryDecision::Stop(_) if attempt.maybe_applied => ambiguous(),
            RetryDecision::Stop(stop) => failed(stop.failure_reason().unwrap_or(Reason::Unknown)),
        }
    }

    /// Counts and logs a credential replay of `job`.
    fn replaying(&self, job: &Job, attempt: &Attempt) {
        self.metrics
            .delivery(&job.operation, "replay", attempt.code);
        tracing::info!(
            job = job.id,
            operation = job.operation.as_str(),
            code = attempt.code,
            "credential refused, replaying with a fresh one: {}",
            attempt.message
        );
    }

    /// Counts, logs and records a retry of `job` after `backoff`; `false` if the store failed.
    fn retrying(&self, job: &Job, attempts: u32, backoff: Duration, attempt: Attempt) -> bool {
        let not_before_ms =
            now_ms().saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
        self.metrics.delivery(&job.operation, "retry", attempt.code);
        tracing::warn!(
            job = job.id,
            operation = job.operation.as_str(),
            attempts,
            backoff_ms = backoff.as_millis() as u64,
            rid = attempt.rid.as_deref(),
            "attempt failed, retrying: {}",
            attempt.message
        );
        self.record(
            job.id,
            Outcome::Retry {
                not_before_ms,
                code: attempt.code,
                message: attempt.message,
            },
        )
    }

    /// Counts, logs and records `job`'s final `outcome` (`label` in metrics); `false` if the
    /// store failed.
    fn finished(
        &self,
        job: &Job,
        attempts: u32,
        outcome: Outcome,
        label: &'static str,
        attempt: &Attempt,
    ) -> bool {
        self.metrics.delivery(&job.operation, label, attempt.code);
        if let Outcome::Failed { reason, .. } = &outcome {
            self.metrics.failure(&job.account, *reason);
        }
        if matches!(outcome, Outcome::Delivered | Outcome::Accepted { .. }) {
            tracing::info!(
                job = job.id,
                operation = job.operation.as_str(),
                attempts,
                rid = attempt.rid.as_deref(),
                "{label}"
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
        self.record(job.id, outcome)
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
    use crate::store::{Claimed, JobState, JobStatus, JobStore, NewJob};

    /// A provider that answers each job of each call from a script, and records the calls.
    struct Scripted {
        answers: Mutex<VecDeque<Attempt>>,
        /// The ids of the jobs of each call, in call order.
        calls: Mutex<Vec<Vec<i64>>>,
        max_batch: usize,
        window: Option<Duration>,
    }

    impl Scripted {
        fn new(script: Vec<Attempt>) -> Scripted {
            Scripted {
                answers: Mutex::new(script.into()),
                calls: Mutex::new(Vec::new()),
                max_batch: 1,
                window: None,
            }
        }

        fn batches(mut self, max_batch: usize) -> Scripted {
            self.max_batch = max_batch;
            self
        }

        fn window(mut self, window: Duration) -> Scripted {
            self.window = Some(window);
            self
        }

        fn answer(&self) -> Attempt {
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(Attempt::success)
        }
    }

    impl Provider for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }

        fn compose(&self, _: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
            Err(Invalid::new("msg", "not composed in these tests"))
        }

        fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(vec![job.id]);
                self.answer()
            })
        }

        fn max_batch(&self) -> usize {
            self.max_batch
        }

        fn send_batch<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Vec<Attempt>> {
            Box::pin(async move {
                if self.max_batch == 1 {
                    // The trait's own one-send-per-job path, as real providers of one use it.
                    let mut attempts = Vec::new();
                    for job in jobs {
                        attempts.push(self.send(job).await);
                    }
                    return attempts;
                }
                self.calls
                    .lock()
                    .unwrap()
                    .push(jobs.iter().map(|job| job.id).collect());
                jobs.iter().map(|_| self.answer()).collect()
            })
        }

        fn confirm_window(&self) -> Option<Duration> {
            self.window
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_backoff(Duration::ZERO)
            .with_max_attempts(3)
    }

    /// Stores `count` jobs of `account` for one recipient; returns them as delivery takes them.
    async fn store_jobs(store: &dyn JobStore, account: &str, count: usize) -> Vec<PendingJob> {
        let new = (0..count)
            .map(|n| NewJob {
                account: account.into(),
                recipient: "oU".into(),
                operation: "custom/send".into(),
                payload: format!("{{\"n\":{n}}}").into_bytes(),
            })
            .collect();
        let Claimed::Done(stored) = store.insert(new, None, None).await.unwrap() else {
            panic!("no key was given")
        };
        stored
    }

    /// Stores `jobs` jobs for one recipient, delivers them through `provider` until `done`
    /// holds for each; returns their statuses, the calls made and the metrics.
    async fn deliver_all(
        provider: Scripted,
        jobs: usize,
        done: fn(&JobStatus) -> bool,
    ) -> (Vec<JobStatus>, Vec<Vec<i64>>, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let (sqlite, _) = SqliteStore::open(&dir.path().join("d.sqlite3")).unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let provider = Arc::new(provider);
        let mut providers = Providers::new();
        providers.register("shop", Arc::clone(&provider) as Arc<dyn Provider>);
        let stored = store_jobs(store.as_ref(), "shop", jobs).await;
        let ids: Vec<i64> = stored.iter().map(PendingJob::id).collect();
        let metrics = Arc::new(Metrics::default());
        let dispatcher = Dispatcher::start(
            Arc::clone(&store),
            Arc::new(providers),
            policy(),
            1,
            Arc::clone(&metrics),
            stored,
        );
        let statuses = poll_until(store.as_ref(), &ids, done).await;
        dispatcher.shutdown(Duration::from_secs(1)).await;
        let calls = provider.calls.lock().unwrap().clone();
        (statuses, calls, metrics)
    }

    /// The statuses of `ids` once `done` holds for each, polling the store (bounded by polls,
    /// not by time).
    async fn poll_until(
        store: &dyn Store,
        ids: &[i64],
        done: fn(&JobStatus) -> bool,
    ) -> Vec<JobStatus> {
        for _ in 0..20_000 {
            let mut statuses = Vec::new();
            for id in ids {
                statuses.push(store.get(*id).await.unwrap().unwrap());
            }
            if statuses.iter().all(done) {
                return statuses;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("jobs {ids:?} never got there");
    }

    fn is_final(status: &JobStatus) -> bool {
        status.status.is_final()
    }

    /// Delivers one job through a provider answering `script`; returns its final status and
    /// the requests made.
    async fn deliver(script: Vec<Attempt>) -> (JobStatus, u32) {
        let (mut statuses, calls, _) = deliver_all(Scripted::new(script), 1, is_final).await;
        (statuses.remove(0), u32::try_from(calls.len()).unwrap())
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
        let stored = store_jobs(store.as_ref(), "gone", 1).await;
        let inner = Inner {
            store: Arc::clone(&store),
            providers: Arc::new(Providers::new()),
            policy: RetryPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            permits: Semaphore::new(1),
        };
        assert!(inner.deliver_jobs(&stored, watch::channel(false).1).await);
        let status = store.get(stored[0].id()).await.unwrap().unwrap();
        assert_eq!(status.status, JobState::Failed);
        assert_eq!(status.reason, Some(Reason::Config));
        assert!(status.error_message.unwrap().contains("\"gone\""));
    }

    fn states(statuses: &[JobStatus]) -> Vec<(JobState, Option<Reason>)> {
        statuses.iter().map(|s| (s.status, s.reason)).collect()
    }

    #[tokio::test]
    async fn seven_queued_jobs_go_out_as_five_then_two_in_order() {
        let provider = Scripted::new(Vec::new()).batches(5);
        let (statuses, calls, metrics) = deliver_all(provider, 7, is_final).await;
        assert_eq!(calls, vec![vec![1, 2, 3, 4, 5], vec![6, 7]]);
        assert!(
            statuses
                .iter()
                .all(|s| s.status == JobState::Delivered && s.attempts == 1)
        );
        assert!(metrics.render().contains(
            "kefu_deliveries_total{operation=\"custom/send\",outcome=\"delivered\",errcode=\"none\"} 7"
        ));
    }

    #[tokio::test]
    async fn a_partial_batch_fails_only_the_jobs_left_out() {
        let script = vec![
            Attempt::success(),
            attempt(Class::Terminal(Reason::Unknown), Some(0)),
            Attempt::success(),
        ];
        let provider = Scripted::new(script).batches(5);
        let (statuses, calls, _) = deliver_all(provider, 3, is_final).await;
        assert_eq!(calls, vec![vec![1, 2, 3]], "nothing is sent twice");
        assert_eq!(
            states(&statuses),
            vec![
                (JobState::Delivered, None),
                (JobState::Failed, Some(Reason::Unknown)),
                (JobState::Delivered, None),
            ]
        );
    }

    #[tokio::test]
    async fn a_transient_batch_is_retried_together_and_only_its_unfinished_jobs() {
        let provider = Scripted::new(vec![attempt(Class::Transient, Some(-1)); 3]).batches(5);
        let (statuses, calls, _) = deliver_all(provider, 3, is_final).await;
        assert_eq!(calls, vec![vec![1, 2, 3], vec![1, 2, 3]]);
        assert!(
            statuses
                .iter()
                .all(|s| s.status == JobState::Delivered && s.attempts == 2)
        );

        let script = vec![
            attempt(Class::Transient, Some(-1)),
            Attempt::success(),
            attempt(Class::Transient, Some(-1)),
        ];
        let provider = Scripted::new(script).batches(5);
        let (statuses, calls, _) = deliver_all(provider, 3, is_final).await;
        assert_eq!(calls, vec![vec![1, 2, 3], vec![1, 3]]);
        let attempts: Vec<u32> = statuses.iter().map(|s| s.attempts).collect();
        assert_eq!(attempts, [2, 1, 2]);
    }

    #[tokio::test]
    async fn an_accepted_job_lets_the_next_one_go_and_is_delivered_when_its_window_ends() {
        let provider = Scripted::new(Vec::new()).window(Duration::from_secs(3600));
        let accepted = |s: &JobStatus| s.status == JobState::Accepted;
        let (statuses, calls, _) = deliver_all(provider, 2, accepted).await;
        assert_eq!(
            calls,
            vec![vec![1], vec![2]],
            "the queue did not wait for the window"
        );
        assert!(statuses.iter().all(|s| s.confirm_by_ms.is_some()));

        let provider = Scripted::new(Vec::new()).window(Duration::from_millis(1));
        let (statuses, _, metrics) = deliver_all(provider, 1, is_final).await;
        assert_eq!(states(&statuses), vec![(JobState::Delivered, None)]);
        assert_eq!(statuses[0].confirm_by_ms, None);
        let text = metrics.render();
        assert!(text.contains(
            "kefu_deliveries_total{operation=\"custom/send\",outcome=\"accepted\",errcode=\"none\"} 1"
        ));
        assert!(text.contains("kefu_confirmations_total{account=\"shop\",result=\"delivered\"} 1"));
    }

    #[tokio::test]
    async fn an_ambiguous_job_no_callback_confirms_fails_as_unconfirmed() {
        let provider =
            Scripted::new(vec![attempt(Class::Ambiguous, None)]).window(Duration::from_millis(1));
        // Ambiguous is final for the desk; the window still moves it.
        let failed = |s: &JobStatus| s.status == JobState::Failed;
        let (statuses, calls, metrics) = deliver_all(provider, 1, failed).await;
        assert_eq!(calls.len(), 1, "never resent");
        assert_eq!(
            states(&statuses),
            vec![(JobState::Failed, Some(Reason::Unconfirmed))]
        );
        let text = metrics.render();
        assert!(
            text.contains("kefu_confirmations_total{account=\"shop\",result=\"unconfirmed\"} 1")
        );
        assert!(
            text.contains(
                "kefu_delivery_failures_total{account=\"shop\",reason=\"unconfirmed\"} 1"
            )
        );
    }

    #[tokio::test]
    async fn a_restarted_dispatcher_settles_an_overdue_confirmation_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sqlite3");
        let id = {
            let (sqlite, _) = SqliteStore::open(&path).unwrap();
            let stored = store_jobs(&sqlite, "shop", 1).await;
            let id = stored[0].id();
            sqlite.mark_sending_many(&[id]).await.unwrap();
            sqlite
                .record(id, Outcome::Accepted { confirm_by_ms: 1 })
                .unwrap();
            // Read back: the outcome is committed before the store closes.
            assert_eq!(
                sqlite.get(id).await.unwrap().unwrap().status,
                JobState::Accepted
            );
            id
        };
        let (sqlite, pending) = SqliteStore::open(&path).unwrap();
        assert!(pending.is_empty());
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let dispatcher = Dispatcher::start(
            Arc::clone(&store),
            Arc::new(Providers::new()),
            policy(),
            1,
            Arc::new(Metrics::default()),
            pending,
        );
        let statuses = poll_until(store.as_ref(), &[id], is_final).await;
        dispatcher.shutdown(Duration::from_secs(1)).await;
        assert_eq!(states(&statuses), vec![(JobState::Delivered, None)]);
    }
}
