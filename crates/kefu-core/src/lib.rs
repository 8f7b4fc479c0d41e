//! The seams of kefu-connector, shared by every provider and every storage backend.
//!
//! * [`Provider`]: one customer-service API (the Dialogue platform, an Official Account's
//!   `custom/send`, …) behind one trait, like lettre's `Transport`. A provider turns a desk's
//!   message into stored jobs ([`Provider::compose`]) and sends one stored job
//!   ([`Provider::send`]), classifying the result into one [`Attempt`].
//! * [`Class`] and [`Reason`]: the outcome classes of protocols.md §9.2, the same for every
//!   provider.
//! * [`RetryPolicy::decide`]: a pure function from a class, the attempt count, the elapsed time and
//!   a jitter value to a decision, so that a durable outbox can drive attempts itself.
//! * [`TokenStore`]: where access tokens are kept between restarts (and, on a fleet, shared).
//!
//! No I/O happens here and no provider or backend type appears: the relay depends on this crate,
//! providers and stores implement it.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod attempt;
mod clock;
mod provider;
mod retry;
mod token;

pub use attempt::{Attempt, Class, Reason};
pub use clock::now_ms;
pub use provider::{BoxFuture, ComposeRequest, Composed, Invalid, Job, Provider};
pub use retry::{RetryDecision, RetryPolicy, StopReason};
pub use token::{StoredToken, TokenStore, TokenStoreError};
