//! Sampling of the WARN line logged for each refused callback.
//!
//! Anyone can call the callback routes, so a flood of refusals would otherwise be a flood of
//! log lines: disk, log shipping and the operator's attention. Each route logs at most
//! [`LINES_PER_WINDOW`] refusals per [`WINDOW`]; the rest are counted, and the next line logged
//! after them says how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most refusals logged per route in one [`WINDOW`].
pub const LINES_PER_WINDOW: u32 = 10;

/// The window over which [`LINES_PER_WINDOW`] applies.
pub const WINDOW: Duration = Duration::from_secs(1);

/// A fixed-window limit on log lines for one route.
#[derive(Debug)]
pub struct LogLimit {
    lines: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit::new(LINES_PER_WINDOW, WINDOW)
    }
}

impl LogLimit {
    /// At most `lines` lines per `window`.
    pub fn new(lines: u32, window: Duration) -> LogLimit {
        LogLimit {
            lines,
            window,
            state: Mutex::new(Window::default()),
        }
    }

    /// Whether a line may be logged at `now`: `Some(k)` if so, where `k` lines were left out
    /// since the last one logged (to be reported with it); `None` if this one is left out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting: keep logging.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = state
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.logged = 0;
        }
        if state.logged < self.lines {
            state.logged += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed = state.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_lines_of_each_window_then_reports_what_it_left_out() {
        let limit = LogLimit::new(3, Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first: Vec<Option<u64>> = (0..5).map(|i| limit.admit(at(i))).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(limit.admit(at(999)), None, "still the same window");
        // The next window: the first line carries the count of the three left out.
        assert_eq!(limit.admit(at(1000)), Some(3));
        assert_eq!(limit.admit(at(1001)), Some(0));
        assert_eq!(limit.admit(at(1002)), Some(0));
        assert_eq!(limit.admit(at(1003)), None);
        // A long quiet spell: the count survives until the next line.
        assert_eq!(limit.admit(at(60_000)), Some(1));
    }

    #[test]
    fn a_flood_logs_a_bounded_number_of_lines() {
        let limit = LogLimit::default();
        let start = Instant::now();
        let mut logged = 0u64;
        let mut reported = 0u64;
        for i in 0..100_000u64 {
            // 100,000 refusals over ten seconds.
            if let Some(left_out) = limit.admit(start + Duration::from_micros(i * 100)) {
                logged += 1;
                reported += left_out;
            }
        }
        assert_eq!(logged, 10 * u64::from(LINES_PER_WINDOW));
        // All but the last window's leftovers were reported.
        assert_eq!(
            logged + reported,
            100_000 - (10_000 - u64::from(LINES_PER_WINDOW))
        );
    }
}
