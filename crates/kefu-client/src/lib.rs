//! Thin async clients for WeChat's customer-service APIs:
//!
//! * [`Client`]: the Dialogue Open Platform (微信对话开放平台) third-party customer-service
//!   endpoints, `sendmsg`, `kefustate/get` and `kefustate/change` (protocols.md §4);
//! * [`wechat::WechatProvider`]: an Official Account's or Mini Program's `custom/send` and
//!   typing with access tokens (protocols.md §5, §6), behind [`kefu_core::Provider`];
//! * [`yunzhenji::YunzhenjiProvider`]: yunzhenji's `wechat/sendMessage` from a WeCom account,
//!   in batches of up to 5, confirmed by callbacks (protocols.md §7);
//! * [`gateway::GatewayProvider`]: a company gateway's `sendCustomerMessage` (protocols.md §8).
//!
//! Both run on one pooled hyper/rustls client build ([`http_client`]). What follows describes
//! the Dialogue client; the [`wechat`] module describes its own.
//!
//! * **Transport**: hyper 1 with hyper-util's pooled client, HTTP/1.1 keep-alive and HTTP/2
//!   where the server offers it by ALPN, rustls with the webpki roots and the `ring` provider.
//!   Plain `http://` works too, for sandboxes and tests.
//! * **Envelope**: the XML plaintext is encrypted with WXBizMsgCrypt (receive-id = bot APPID)
//!   and posted as `{"encrypt":"…"}` to `{base}/<name>/{TOKEN}`.
//! * **Answers** are read in every spelling the platform uses ([`Envelope`]), and every failure
//!   is one [`Error`] with predicates: not sent, ambiguous, timeout, platform code, HTTP status.
//! * **Retries**: [`classify`] turns a failure into kefu-core's classes, whose
//!   [`RetryPolicy`](kefu_core::RetryPolicy) is a pure decision a durable outbox can drive;
//!   [`retry`] is a convenience loop over it. A `sendmsg` that may have been delivered is never replayed: a duplicate
//!   message in a user's chat is a bug.
//! * **Secrets**: the TOKEN (a URL path segment), the EncodingAESKey and the message body never
//!   appear in errors or logs; URLs are shown as `…/sendmsg/{TOKEN}`.
//!
//! ```no_run
//! use kefu_client::Client;
//! use kefu_client::kefu_payload::{Channel, KefuState, KefuStateChange, SendMsg};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(
//!     "TOKENTOKENTOKENTOKENTOKENTOKEN",
//!     "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
//!     "Gg8HejYTkUsEIlG",
//! )
//! .build()?;
//!
//! let change = KefuStateChange::new("wx0000000000000000", "oUSER", KefuState::PersonServing)?;
//! client.kefustate_change_with_retry(&change).await?;
//!
//! let msg = SendMsg::builder("oUSER", Channel::OfficialAccount, "您好,请问需要什么帮助")
//!     .appid("wx0000000000000000")
//!     .build()?;
//! match client.send_with_retry(&msg).await {
//!     Ok(reply) => println!("sent, rid {:?}", reply.rid()),
//!     // The user may or may not have seen it: report, never resend blindly.
//!     Err(e) if e.is_ambiguous() => println!("outcome unknown: {e}"),
//!     Err(e) => println!("not delivered: {e}"),
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod client;
pub mod dialogue;
mod envelope;
mod error;
pub mod gateway;
mod post;
mod retry;
mod settings;
mod transport;
pub mod wechat;
pub mod yunzhenji;

pub use client::{
    BACKUP_BASE_URL, Client, ClientBuilder, DEFAULT_BASE_URL, KefuStateReply, KefuSwitch, Reply,
};
pub use envelope::Envelope;
pub use error::{ConfigError, Error, InvalidResponse, Operation, PlatformCode};
pub use hyper::StatusCode;
/// The seam crate whose traits the providers implement and whose policy the retries use,
/// re-exported so that versions match.
pub use kefu_core;
/// The payload crate whose types the typed calls take, re-exported so that versions match.
pub use kefu_payload;
pub use retry::{classify, retry};
pub use settings::SettingsError;
pub use transport::{Connector, HttpClient, http_client};
