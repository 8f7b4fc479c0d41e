//! A thin async client for WeChat's Dialogue Open Platform (微信对话开放平台) third-party
//! customer-service endpoints: `sendmsg`, `kefustate/get` and `kefustate/change`
//! (protocols.md §4).
//!
//! * **Transport**: hyper 1 with hyper-util's pooled client, HTTP/1.1 keep-alive and HTTP/2
//!   where the server offers it by ALPN, rustls with the webpki roots and the `ring` provider.
//!   Plain `http://` works too, for sandboxes and tests.
//! * **Envelope**: the XML plaintext is encrypted with WXBizMsgCrypt (receive-id = bot APPID)
//!   and posted as `{"encrypt":"…"}` to `{base}/<name>/{TOKEN}`.
//! * **Answers** are read in every spelling the platform uses ([`Envelope`]), and every failure
//!   is one [`Error`] with predicates: not sent, ambiguous, timeout, platform code, HTTP status.
//! * **Retries** ([`RetryPolicy`]) are a pure decision a durable outbox can drive, plus a
//!   convenience loop. A `sendmsg` that may have been delivered is never replayed: a duplicate
//!   message in a user's chat is a bug.
//! * **Secrets**: the TOKEN (a URL path segment), the EncodingAESKey and the message body never
//!   appear in errors or logs; URLs are shown as `…/sendmsg/{TOKEN}`.
//!
//! ```no_run
//! use kefu_client::{Client, Operation};
//!
//! # async fn demo() -> Result<(), kefu_client::Error> {
//! let client = Client::builder(
//!     "TOKENTOKENTOKENTOKENTOKENTOKEN",
//!     "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
//!     "Gg8HejYTkUsEIlG",
//! )
//! .build()?;
//! let xml = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid>\
//!            <msg>您好</msg><channel>0</channel></xml>";
//! let reply = client.call_xml_with_retry(Operation::SendMsg, xml).await?;
//! println!("rid {:?}", reply.rid());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod client;
mod envelope;
mod error;
mod retry;

pub use client::{BACKUP_BASE_URL, Client, ClientBuilder, DEFAULT_BASE_URL, Reply};
pub use envelope::Envelope;
pub use error::{ConfigError, Error, InvalidResponse, Operation, PlatformCode};
pub use hyper::StatusCode;
pub use retry::{RetryClass, RetryDecision, RetryPolicy, StopReason};
