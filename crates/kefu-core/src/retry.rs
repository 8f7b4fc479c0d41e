//! The retry decision (protocols.md §9.2) as a pure function over [`Class`], shared by every
//! provider.
//!
//! The model is smithy-rs's retry classifiers: a provider classifies a result, then the policy
//! decides from the class, the attempt count, the replays made, the elapsed time and a jitter value
//! supplied by the caller, so that the decision is deterministic and a durable outbox can drive
//! attempts itself.

use std::time::Duration;

use crate::attempt::{Class, Reason};

/// Why a job stops being attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The result is terminal, for this reason.
    Terminal(Reason),
    /// The call may have taken effect; report the outcome as unknown.
    Ambiguous,
    /// An API quota is used up; fail fast rather than hold the user's queue.
    Throttled,
    /// The credential was refused again after the one replay: a configuration problem.
    ReplayExhausted,
    /// The failure was transient but the maximum number of attempts has been made.
    AttemptsExhausted,
    /// The failure was transient but the next attempt would start after the time budget.
    TimeBudgetExhausted,
}

impl StopReason {
    /// The reason a job stopped this way fails with, or `None` for [`StopReason::Ambiguous`],
    /// which is not a failure but an unknown outcome.
    ///
    /// ```
    /// use kefu_core::{Reason, StopReason};
    /// assert_eq!(StopReason::ReplayExhausted.failure_reason(), Some(Reason::Config));
    /// assert_eq!(StopReason::Ambiguous.failure_reason(), None);
    /// ```
    pub const fn failure_reason(self) -> Option<Reason> {
        match self {
            StopReason::Terminal(reason) => Some(reason),
            StopReason::Ambiguous => None,
            StopReason::Throttled => Some(Reason::Throttled),
            StopReason::ReplayExhausted => Some(Reason::Config),
            StopReason::AttemptsExhausted | StopReason::TimeBudgetExhausted => {
                Some(Reason::Unknown)
            }
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryDecision {
    /// The call succeeded.
    Done,
    /// Make the next attempt at once, with a fresh credential (the one replay of §6.4).
    ReplayNow,
    /// Wait this long, then make the next attempt.
    RetryAfter(Duration),
    /// Give up.
    Stop(StopReason),
}

/// Exponential backoff with jitter, bounded by attempts and by total time (protocols.md §9.2).
///
/// Defaults: initial backoff 1 s, multiplier 2, at most 3 attempts, total at most 30 s, each
/// backoff at most 10 s, jitter ratio 0.5 (the wait is drawn from the upper half of the
/// exponential backoff), one credential replay.
///
/// The backoff before attempt `n + 1`, after attempt `n` failed, is
/// `min(initial × multiplier^(n−1), max_backoff) × (1 − jitter_ratio + jitter_ratio × jitter)`,
/// where `jitter` ∈ \[0, 1\] is supplied by the caller.
///
/// ```
/// use std::time::Duration;
/// use kefu_core::RetryPolicy;
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

/// How many credential replays a job gets (protocols.md §5.4: one per request, never a loop).
const MAX_REPLAYS: u32 = 1;

impl RetryPolicy {
    /// A policy that makes a single attempt and never retries (a credential replay still
    /// happens: it is part of the one attempt).
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

    /// Decides what to do after attempt number `attempt` (1-based) ended in `class`, `replays`
    /// credential replays having been made for the job so far and `elapsed` after its first
    /// attempt started. `jitter` is a random value in \[0, 1\] supplied by the caller, so that
    /// the decision is a pure function.
    ///
    /// * [`Class::Success`] is done; [`Class::Terminal`], [`Class::Ambiguous`] and
    ///   [`Class::Throttled`] stop at once: an ambiguous send is never replayed.
    /// * [`Class::RefreshReplay`] replays at once, once; a second one stops as
    ///   [`StopReason::ReplayExhausted`].
    /// * [`Class::Transient`] backs off until `max_attempts`, or until the next attempt would
    ///   start after `max_elapsed`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kefu_core::{Class, RetryDecision, RetryPolicy, StopReason};
    /// let policy = RetryPolicy::default();
    /// let ms = Duration::from_millis;
    /// assert_eq!(policy.decide(Class::Ambiguous, 1, 0, ms(80), 0.4), RetryDecision::Stop(StopReason::Ambiguous));
    /// assert_eq!(policy.decide(Class::RefreshReplay, 1, 0, ms(80), 0.4), RetryDecision::ReplayNow);
    /// assert_eq!(policy.decide(Class::RefreshReplay, 1, 1, ms(90), 0.4), RetryDecision::Stop(StopReason::ReplayExhausted));
    /// ```
    pub fn decide(
        &self,
        class: Class,
        attempt: u32,
        replays: u32,
        elapsed: Duration,
        jitter: f64,
    ) -> RetryDecision {
        match class {
            Class::Success => return RetryDecision::Done,
            Class::Terminal(reason) => return RetryDecision::Stop(StopReason::Terminal(reason)),
            Class::Ambiguous => return RetryDecision::Stop(StopReason::Ambiguous),
            Class::Throttled => return RetryDecision::Stop(StopReason::Throttled),
            Class::RefreshReplay if replays < MAX_REPLAYS => return RetryDecision::ReplayNow,
            Class::RefreshReplay => return RetryDecision::Stop(StopReason::ReplayExhausted),
            Class::Transient => {}
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
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn decision_table() {
        use RetryDecision::*;
        use StopReason as Stopped;
        let p = RetryPolicy::default();
        #[rustfmt::skip]
        let table: Vec<(Class, u32, u32, Duration, f64, RetryDecision)> = vec![
            // Success is done, whatever came before.
            (Class::Success, 1, 0, MS(10), 1.0, Done),
            (Class::Success, 3, 1, S(29), 1.0, Done),
            // Transient: 1 s then 2 s, then attempts run out.
            (Class::Transient, 1, 0, MS(10), 1.0, RetryAfter(S(1))),
            (Class::Transient, 2, 0, S(1), 1.0, RetryAfter(S(2))),
            (Class::Transient, 3, 0, S(3), 1.0, Stop(Stopped::AttemptsExhausted)),
            // Jitter draws from the upper half of the backoff by default.
            (Class::Transient, 1, 0, MS(0), 0.0, RetryAfter(MS(500))),
            (Class::Transient, 2, 0, MS(0), 0.5, RetryAfter(MS(1500))),
            (Class::Transient, 1, 0, MS(0), f64::NAN, RetryAfter(S(1))),
            (Class::Transient, 1, 0, MS(0), 7.0, RetryAfter(S(1))),
            (Class::Transient, 1, 0, MS(0), -3.0, RetryAfter(MS(500))),
            // The time budget: the next attempt must start within 30 s of the first.
            (Class::Transient, 2, 0, S(28), 1.0, RetryAfter(S(2))),
            (Class::Transient, 2, 0, S(29), 1.0, Stop(Stopped::TimeBudgetExhausted)),
            (Class::Transient, 2, 0, S(29), 0.0, RetryAfter(S(1))),
            (Class::Transient, 1, 0, MS(29_001), 1.0, Stop(Stopped::TimeBudgetExhausted)),
            // Attempt 0 is read as 1.
            (Class::Transient, 0, 0, MS(0), 1.0, RetryAfter(S(1))),
            // Ambiguous: never retried, whatever the budget left.
            (Class::Ambiguous, 1, 0, MS(10), 1.0, Stop(Stopped::Ambiguous)),
            (Class::Ambiguous, 1, 1, MS(10), 1.0, Stop(Stopped::Ambiguous)),
            // Refresh-then-replay: once, at once, even on the last attempt; never a loop.
            (Class::RefreshReplay, 1, 0, MS(10), 1.0, ReplayNow),
            (Class::RefreshReplay, 3, 0, S(40), 1.0, ReplayNow),
            (Class::RefreshReplay, 1, 1, MS(20), 1.0, Stop(Stopped::ReplayExhausted)),
            (Class::RefreshReplay, 2, 5, MS(20), 1.0, Stop(Stopped::ReplayExhausted)),
            // Throttled: no immediate retry.
            (Class::Throttled, 1, 0, MS(10), 1.0, Stop(Stopped::Throttled)),
            // Terminal wins over everything, with its reason.
            (Class::Terminal(Reason::WindowClosed), 1, 0, MS(10), 1.0, Stop(Stopped::Terminal(Reason::WindowClosed))),
            (Class::Terminal(Reason::QuotaExhausted), 1, 0, MS(10), 1.0, Stop(Stopped::Terminal(Reason::QuotaExhausted))),
            (Class::Terminal(Reason::Unknown), 9, 0, S(99), 1.0, Stop(Stopped::Terminal(Reason::Unknown))),
        ];
        for (i, (class, attempt, replays, elapsed, jitter, want)) in table.iter().enumerate() {
            assert_eq!(
                p.decide(*class, *attempt, *replays, *elapsed, *jitter),
                *want,
                "row {i}: {class:?} attempt {attempt} replays {replays} after {elapsed:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn stop_reasons_map_to_failure_reasons() {
        assert_eq!(
            StopReason::Terminal(Reason::Policy).failure_reason(),
            Some(Reason::Policy)
        );
        assert_eq!(
            StopReason::Throttled.failure_reason(),
            Some(Reason::Throttled)
        );
        assert_eq!(
            StopReason::AttemptsExhausted.failure_reason(),
            Some(Reason::Unknown)
        );
        assert_eq!(StopReason::Ambiguous.failure_reason(), None);
    }

    #[test]
    fn configured_policy() {
        let p = RetryPolicy::default()
            .with_initial_backoff(MS(100))
            .with_multiplier(3.0)
            .with_max_attempts(5)
            .with_max_backoff(S(1))
            .with_jitter_ratio(0.0);
        assert_eq!(p.backoff(1, 0.3), MS(100));
        assert_eq!(p.backoff(2, 0.3), MS(300));
        assert_eq!(p.backoff(3, 0.3), MS(900));
        assert_eq!(p.backoff(4, 0.3), S(1));
        assert_eq!(p.backoff(40, 0.3), S(1));
        assert_eq!(
            p.decide(Class::Transient, 4, 0, MS(0), 0.3),
            RetryDecision::RetryAfter(S(1))
        );
        assert_eq!(
            p.decide(Class::Transient, 5, 0, MS(0), 0.3),
            RetryDecision::Stop(StopReason::AttemptsExhausted)
        );
        assert_eq!(RetryPolicy::never().max_attempts(), 1);
        assert_eq!(
            RetryPolicy::default().with_max_attempts(0).max_attempts(),
            1
        );
        assert_eq!(
            RetryPolicy::default()
                .with_multiplier(f64::NAN)
                .multiplier(),
            1.0
        );
    }
}
