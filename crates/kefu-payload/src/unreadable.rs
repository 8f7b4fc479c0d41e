//! The attempt of a send whose answer says nothing usable (protocols.md §9.1), shared by the
//! vendors whose answers are not `cgi-bin`'s.

use kefu_core::{Attempt, Class, Reason};

/// Ambiguous for a 2xx, a 5xx or an unexpected status, since the send may have been taken
/// (`taken` says what is then not done); terminal (unknown) for any other 4xx.
pub(crate) fn unreadable(status: u16, what: &str, taken: &str) -> Attempt {
    if (400..500).contains(&status) {
        Attempt::new(
            Class::Terminal(Reason::Unknown),
            None,
            format!("HTTP {status}, {what}"),
        )
    } else {
        Attempt::new(
            Class::Ambiguous,
            None,
            format!("HTTP {status}, {what}: {taken}"),
        )
    }
}
