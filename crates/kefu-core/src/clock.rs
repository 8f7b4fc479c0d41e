//! The one wall clock of the relay, its providers and the sandbox: every stored time, token
//! lifetime and deadline derived from the wall clock is read here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds. A clock before 1970 reads 0 rather than failing.
///
/// ```
/// assert!(kefu_core::now_ms() > 1_700_000_000_000);
/// ```
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
