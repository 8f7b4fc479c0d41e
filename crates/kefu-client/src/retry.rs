//! The retry decision (protocols.md §9.2), as a pure function, and a convenience loop.
//!
//! The model is smithy-rs's retry classifiers and async-stripe's `RequestStrategy`: classify the
//! failure, then decide from the attempt count, the elapsed time and a jitter value supplied by
//! the caller, so that the decision is deterministic and a durable outbox can drive attempts
//! itself.

use core::future::Future;
use std::time::Duration;

use crate::error::{Error, Operation};

/// How a failure of one operation may be retried, whatever the attempt count.
///
/// ```
/// use kefu_client::{Operation, RetryClass};
/// # fn demo(err: &kefu_client::Error) {
/// match RetryClass::of(Operation::SendMsg, err) {
///     RetryClass::Transient => { /* back off and try again */ }
///     RetryClass::Ambiguous => { /* report "outcome unknown"; a person decides to resend */ }
///     RetryClass::Terminal => { /* report the failure */ }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Safe and useful to retry: the request never left (DNS, connect, TLS), the platform
    /// answered −1 (system busy), or the operation is idempotent and the failure ambiguous.
    Transient,
    /// The request may have taken effect, and replaying it could duplicate it. Only `sendmsg`
    /// gets this class: it is never retried automatically.
    Ambiguous,
    /// Retrying cannot help: a platform code other than −1, an HTTP 4xx, bad configuration or
    /// an unencryptable payload.
    Terminal,
}

impl RetryClass {
    /// Classifies `error` for `operation`.
    pub fn of(operation: Operation, error: &Error) -> RetryClass {
        if error.is_transient() {
            RetryClass::Transient
        } else if error.is_ambiguous() {
            if operation.is_idempotent() {
                RetryClass::Transient
            } else {
                RetryClass::Ambiguous
            }
        } else {
            RetryClass::Terminal
        }
    }
}

/// Why a retry policy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The failure is terminal ([`RetryClass::Terminal`]).
    Terminal,
    /// The request may have taken effect and the operation is not idempotent
    /// ([`RetryClass::Ambiguous`]). Report the outcome as unknown.
    Ambiguous,
    /// The failure was transient but the maximum number of attempts has been made.
    AttemptsExhausted,
    /// The failure was transient but the next attempt would start after the time budget.
    TimeBudgetExhausted,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryDecision {
    /// Wait this long, then make the next attempt.
    RetryAfter(Duration),
    /// Give up and return (or report) the error.
    Stop(StopReason),
}

/// Exponential backoff with jitter, bounded by attempts and by total time (protocols.md §9.2).
///
/// Defaults: initial backoff 1 s, multiplier 2, at most 3 attempts, total at most 30 s, each
/// backoff at most 10 s, jitter ratio 0.5 (the wait is drawn from the upper half of the
/// exponential backoff).
///
/// The backoff before attempt `n + 1`, after attempt `n` failed, is
/// `min(initial × multiplier^(n−1), max_backoff) × (1 − jitter_ratio + jitter_ratio × jitter)`,
/// where `jitter` ∈ \[0, 1\] is supplied by the caller.
///
/// ```
/// use std::time::Duration;
/// use kefu_client::RetryPolicy;
/// let policy = RetryPolicy::default()
///     .with_initial_backoff(Duration::from_millis(200))
///     .with_max_attempts(5);
/// assert_eq!(policy.max_attempts(), 5);
/// assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(200));
/// assert_eq!(policy.backoff(2, 1.0), Duration::from_millis(400));
/// assert_eq!(policy.backoff(2, 0.0), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial_backoff: Duration,
    multiplier: f64,
    max_attempts: u32,
    max_elapsed: Duration,
    max_backoff: Duration,
    jitter_ratio: f64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: 3,
            max_elapsed: Duration::from_secs(30),
            max_backoff: Duration::from_secs(10),
            jitter_ratio: 0.5,
        }
    }
}

impl RetryPolicy {
    /// A policy that makes a single attempt and never retries.
    pub fn never() -> RetryPolicy {
        RetryPolicy::default().with_max_attempts(1)
    }

    /// Sets the backoff after the first failed attempt.
    pub fn with_initial_backoff(mut self, backoff: Duration) -> RetryPolicy {
        self.initial_backoff = backoff;
        self
    }

    /// Sets the factor applied to the backoff after each further failure. Values below 1, and
    /// values that are not finite, are taken as 1.
    pub fn with_multiplier(mut self, multiplier: f64) -> RetryPolicy {
        self.multiplier = sane_multiplier(multiplier);
        self
    }

    /// Sets the maximum number of attempts, the first included. 0 is taken as 1.
    pub fn with_max_attempts(mut self, attempts: u32) -> RetryPolicy {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the time budget: no attempt starts later than this after the first one started.
    ///
    /// An attempt that starts within the budget still runs to its own request timeout.
    pub fn with_max_elapsed(mut self, budget: Duration) -> RetryPolicy {
        self.max_elapsed = budget;
        self
    }

    /// Sets the cap on any single backoff, before jitter.
    pub fn with_max_backoff(mut self, cap: Duration) -> RetryPolicy {
        self.max_backoff = cap;
        self
    }

    /// Sets how much of each backoff is randomised: 0 waits exactly the exponential backoff,
    /// 1 waits anywhere between zero and it ("full jitter"). Clamped to \[0, 1\].
    pub fn with_jitter_ratio(mut self, ratio: f64) -> RetryPolicy {
        self.jitter_ratio = unit(ratio, 0.5);
        self
    }

    /// The backoff after the first failed attempt.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The backoff multiplier.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The maximum number of attempts, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The time budget for starting attempts.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }

    /// The cap on a single backoff.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The jitter ratio.
    pub fn jitter_ratio(&self) -> f64 {
        self.jitter_ratio
    }

    /// The wait after failed attempt number `attempt` (1-based), for a `jitter` in \[0, 1\]
    /// (clamped; a non-finite value counts as 1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let cap = self.max_backoff.as_secs_f64();
        let base =
            self.initial_backoff.as_secs_f64() * sane_multiplier(self.multiplier).powi(exponent);
        let base = if base.is_finite() { base.min(cap) } else { cap };
        let ratio = unit(self.jitter_ratio, 0.5);
        let factor = 1.0 - ratio + ratio * unit(jitter, 1.0);
        Duration::try_from_secs_f64(base * factor).unwrap_or(self.max_backoff)
    }

    /// Decides what to do after attempt number `attempt` (1-based) of `operation` failed with
    /// `error`, `elapsed` after the first attempt started. `jitter` is a random value in
    /// \[0, 1\] supplied by the caller, so that the decision is a pure function.
    ///
    /// * Not retried: terminal failures, and ambiguous failures of `sendmsg` (a duplicate
    ///   message in a user's chat is a bug; the caller reports the outcome as unknown).
    /// * Retried with backoff: connect failures (the request never left), −1 (system busy),
    ///   and ambiguous failures of the idempotent `kefustate` calls, until `max_attempts` or
    ///   until the next attempt would start after `max_elapsed`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kefu_client::{Operation, RetryDecision, RetryPolicy, StopReason};
    /// # fn demo(err: &kefu_client::Error) {
    /// let policy = RetryPolicy::default();
    /// match policy.decide(Operation::SendMsg, 1, Duration::from_millis(80), err, 0.37) {
    ///     RetryDecision::RetryAfter(wait) => { /* persist the next attempt time, now + wait */ }
    ///     RetryDecision::Stop(StopReason::Ambiguous) => { /* report: outcome unknown */ }
    ///     RetryDecision::Stop(_) => { /* report: failed */ }
    /// }
    /// # }
    /// ```
    pub fn decide(
        &self,
        operation: Operation,
        attempt: u32,
        elapsed: Duration,
        error: &Error,
        jitter: f64,
    ) -> RetryDecision {
        match RetryClass::of(operation, error) {
            RetryClass::Terminal => return RetryDecision::Stop(StopReason::Terminal),
            RetryClass::Ambiguous => return RetryDecision::Stop(StopReason::Ambiguous),
            RetryClass::Transient => {}
        }
        if attempt.max(1) >= self.max_attempts {
            return RetryDecision::Stop(StopReason::AttemptsExhausted);
        }
        let wait = self.backoff(attempt, jitter);
        match elapsed.checked_add(wait) {
            Some(next_start) if next_start <= self.max_elapsed => RetryDecision::RetryAfter(wait),
            _ => RetryDecision::Stop(StopReason::TimeBudgetExhausted),
        }
    }

    /// Runs `attempt` until it succeeds or [`decide`](RetryPolicy::decide) stops, sleeping with
    /// `tokio::time::sleep` between attempts and drawing the jitter from a thread-local RNG.
    ///
    /// The error returned is the last one, with [`Error::attempts`] set. This is for direct
    /// callers such as a command-line `send`; a durable outbox should call `decide` itself and
    /// persist its state between attempts.
    ///
    /// ```no_run
    /// # async fn demo(client: kefu_client::Client, xml: String) -> Result<(), kefu_client::Error> {
    /// use kefu_client::{Operation, RetryPolicy};
    /// let reply = RetryPolicy::default()
    ///     .retry(Operation::SendMsg, || client.call_xml(Operation::SendMsg, &xml))
    ///     .await?;
    /// println!("sent, rid {:?}", reply.rid());
    /// # Ok(()) }
    /// ```
    pub async fn retry<T, F, Fut>(&self, operation: Operation, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let start = tokio::time::Instant::now();
        let mut made: u32 = 0;
        loop {
            made = made.saturating_add(1);
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let jitter: f64 = rand::random();
            match self.decide(operation, made, start.elapsed(), &error, jitter) {
                RetryDecision::RetryAfter(wait) => {
                    tracing::debug!(
                        operation = operation.name(),
                        attempt = made,
                        wait_ms = wait.as_millis() as u64,
                        "kefu call failed, retrying: {error}"
                    );
                    tokio::time::sleep(wait).await;
                }
                RetryDecision::Stop(reason) => {
                    tracing::debug!(
                        operation = operation.name(),
                        attempt = made,
                        ?reason,
                        "kefu call failed, not retrying"
                    );
                    return Err(error.with_attempts(made));
                }
            }
        }
    }
}

fn sane_multiplier(multiplier: f64) -> f64 {
    if multiplier.is_finite() && multiplier >= 1.0 {
        multiplier
    } else {
        1.0
    }
}

/// Clamps to \[0, 1\], with `fallback` for NaN and infinities.
fn unit(value: f64, fallback: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use super::*;
    use crate::error::{ConfigError, InvalidResponse, Kind, PlatformCode};

    fn err(kind: Kind) -> Error {
        Error::new(kind)
    }

    fn platform(code: i64) -> Error {
        err(Kind::Platform {
            code: PlatformCode::from_code(code),
            status: StatusCode::OK,
        })
    }

    fn status(code: u16) -> Error {
        err(Kind::HttpStatus {
            status: StatusCode::from_u16(code).unwrap(),
        })
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn decision_table() {
        use Operation::*;
        use RetryDecision::*;
        use StopReason::*;
        let p = RetryPolicy::default();
        let connect = || err(Kind::Connect { timeout: false });
        let connect_timeout = || err(Kind::Connect { timeout: true });
        let reset = || err(Kind::Transport { timeout: false });
        let timeout = || err(Kind::Transport { timeout: true });
        let no_code = || {
            err(Kind::InvalidResponse {
                status: StatusCode::OK,
                reason: InvalidResponse::MissingCode,
            })
        };
        #[rustfmt::skip]
        let table: Vec<(Operation, u32, Duration, Error, f64, RetryDecision)> = vec![
            // Not sent: retried for every operation, 1 s then 2 s, then attempts run out.
            (SendMsg, 1, MS(10), connect(), 1.0, RetryAfter(S(1))),
            (SendMsg, 2, S(1), connect(), 1.0, RetryAfter(S(2))),
            (SendMsg, 3, S(3), connect(), 1.0, Stop(AttemptsExhausted)),
            (SendMsg, 1, S(5), connect_timeout(), 1.0, RetryAfter(S(1))),
            (KefuStateGet, 1, MS(0), connect(), 1.0, RetryAfter(S(1))),
            (KefuStateChange, 2, MS(0), connect(), 1.0, RetryAfter(S(2))),
            // Jitter draws from the upper half of the backoff by default.
            (SendMsg, 1, MS(0), connect(), 0.0, RetryAfter(MS(500))),
            (SendMsg, 2, MS(0), connect(), 0.5, RetryAfter(MS(1500))),
            (SendMsg, 1, MS(0), connect(), f64::NAN, RetryAfter(S(1))),
            (SendMsg, 1, MS(0), connect(), 7.0, RetryAfter(S(1))),
            (SendMsg, 1, MS(0), connect(), -3.0, RetryAfter(MS(500))),
            // -1 (system busy): transient, even for sendmsg.
            (SendMsg, 1, MS(100), platform(-1), 1.0, RetryAfter(S(1))),
            (SendMsg, 3, S(3), platform(-1), 1.0, Stop(AttemptsExhausted)),
            // The time budget: the next attempt must start within 30 s of the first.
            (SendMsg, 2, S(28), platform(-1), 1.0, RetryAfter(S(2))),
            (SendMsg, 2, S(29), platform(-1), 1.0, Stop(TimeBudgetExhausted)),
            (SendMsg, 2, S(29), platform(-1), 0.0, RetryAfter(S(1))),
            (SendMsg, 1, S(29), connect(), 1.0, RetryAfter(S(1))),
            (SendMsg, 1, MS(29_001), connect(), 1.0, Stop(TimeBudgetExhausted)),
            // Ambiguous: never for sendmsg, transient for the idempotent kefustate calls.
            (SendMsg, 1, MS(10), reset(), 1.0, Stop(Ambiguous)),
            (SendMsg, 1, MS(10), timeout(), 1.0, Stop(Ambiguous)),
            (SendMsg, 1, MS(10), status(500), 1.0, Stop(Ambiguous)),
            (SendMsg, 1, MS(10), status(503), 1.0, Stop(Ambiguous)),
            (SendMsg, 1, MS(10), no_code(), 1.0, Stop(Ambiguous)),
            (KefuStateGet, 1, MS(10), reset(), 1.0, RetryAfter(S(1))),
            (KefuStateGet, 1, MS(10), timeout(), 1.0, RetryAfter(S(1))),
            (KefuStateChange, 1, MS(10), timeout(), 1.0, RetryAfter(S(1))),
            (KefuStateChange, 1, MS(10), status(502), 1.0, RetryAfter(S(1))),
            (KefuStateChange, 2, MS(10), no_code(), 1.0, RetryAfter(S(2))),
            (KefuStateChange, 3, MS(10), reset(), 1.0, Stop(AttemptsExhausted)),
            // Terminal: every other platform code, 4xx, config and payload errors.
            (SendMsg, 1, MS(10), platform(1001), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), platform(1008), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), platform(1011), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), platform(2928312), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), platform(4242), 1.0, Stop(Terminal)),
            (KefuStateChange, 1, MS(10), platform(1001), 1.0, Stop(Terminal)),
            (KefuStateGet, 1, MS(10), status(404), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), status(400), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), status(302), 1.0, Stop(Terminal)),
            (SendMsg, 1, MS(10), err(Kind::Payload), 1.0, Stop(Terminal)),
            (KefuStateGet, 1, MS(10), err(Kind::Config(ConfigError::EmptyToken)), 1.0, Stop(Terminal)),
            // Terminal wins over exhaustion.
            (SendMsg, 9, S(99), platform(1001), 1.0, Stop(Terminal)),
            (SendMsg, 9, S(99), reset(), 1.0, Stop(Ambiguous)),
            // Attempt 0 is read as 1.
            (SendMsg, 0, MS(0), connect(), 1.0, RetryAfter(S(1))),
        ];
        for (i, (op, attempt, elapsed, error, jitter, want)) in table.iter().enumerate() {
            assert_eq!(
                p.decide(*op, *attempt, *elapsed, error, *jitter),
                *want,
                "row {i}: {op} attempt {attempt} after {elapsed:?}: {error:?} jitter {jitter}"
            );
        }
    }

    #[test]
    fn classes() {
        let reset = err(Kind::Transport { timeout: false });
        assert_eq!(
            RetryClass::of(Operation::SendMsg, &reset),
            RetryClass::Ambiguous
        );
        assert_eq!(
            RetryClass::of(Operation::KefuStateGet, &reset),
            RetryClass::Transient
        );
        assert_eq!(
            RetryClass::of(Operation::SendMsg, &platform(-1)),
            RetryClass::Transient
        );
        assert_eq!(
            RetryClass::of(Operation::SendMsg, &platform(1002)),
            RetryClass::Terminal
        );
    }

    #[test]
    fn configured_policy() {
        let p = RetryPolicy::default()
            .with_initial_backoff(MS(100))
            .with_multiplier(3.0)
            .with_max_attempts(5)
            .with_max_elapsed(S(2))
            .with_max_backoff(MS(500))
            .with_jitter_ratio(0.0);
        let e = err(Kind::Connect { timeout: false });
        let d = |attempt, elapsed| p.decide(Operation::SendMsg, attempt, elapsed, &e, 0.0);
        assert_eq!(d(1, MS(0)), RetryDecision::RetryAfter(MS(100)));
        assert_eq!(d(2, MS(0)), RetryDecision::RetryAfter(MS(300)));
        assert_eq!(d(3, MS(0)), RetryDecision::RetryAfter(MS(500)), "capped");
        assert_eq!(d(4, MS(0)), RetryDecision::RetryAfter(MS(500)));
        assert_eq!(
            d(5, MS(0)),
            RetryDecision::Stop(StopReason::AttemptsExhausted)
        );
        assert_eq!(
            d(4, MS(1600)),
            RetryDecision::Stop(StopReason::TimeBudgetExhausted)
        );
        assert_eq!(d(4, MS(1500)), RetryDecision::RetryAfter(MS(500)));

        let never = RetryPolicy::never();
        assert_eq!(
            never.decide(Operation::KefuStateGet, 1, MS(0), &e, 0.5),
            RetryDecision::Stop(StopReason::AttemptsExhausted)
        );
    }

    #[test]
    fn backoff_never_panics() {
        let p = RetryPolicy::default()
            .with_multiplier(f64::INFINITY)
            .with_jitter_ratio(f64::NAN)
            .with_max_attempts(0);
        assert_eq!(p.multiplier(), 1.0);
        assert_eq!(p.max_attempts(), 1);
        for attempt in [0, 1, 2, 63, 64, 65, u32::MAX] {
            for jitter in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1.0] {
                assert!(p.backoff(attempt, jitter) <= S(10));
            }
        }
        let huge = RetryPolicy::default()
            .with_initial_backoff(Duration::MAX)
            .with_max_backoff(Duration::MAX)
            .with_multiplier(1e300);
        for attempt in [1, 2, 1000] {
            let _ = huge.backoff(attempt, 1.0);
            let _ = huge.decide(
                Operation::SendMsg,
                attempt,
                Duration::MAX,
                &platform(-1),
                1.0,
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_loop_sleeps_and_counts() {
        use std::cell::Cell;
        let calls = Cell::new(0u32);
        let p = RetryPolicy::default().with_jitter_ratio(0.0);
        let started = tokio::time::Instant::now();
        let result: Result<(), Error> = p
            .retry(Operation::SendMsg, || {
                calls.set(calls.get() + 1);
                async { Err(platform(-1)) }
            })
            .await;
        let error = result.unwrap_err();
        assert_eq!(calls.get(), 3);
        assert_eq!(error.attempts(), 3);
        assert_eq!(started.elapsed(), S(3), "1 s + 2 s of backoff");

        calls.set(0);
        let result: Result<(), Error> = p
            .retry(Operation::SendMsg, || {
                calls.set(calls.get() + 1);
                async { Err(err(Kind::Transport { timeout: true })) }
            })
            .await;
        assert!(result.unwrap_err().is_ambiguous());
        assert_eq!(calls.get(), 1, "an ambiguous send is never replayed");

        calls.set(0);
        let result = p
            .retry(Operation::SendMsg, || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 2 { Err(platform(-1)) } else { Ok(n) } }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
    }
}
