//! The message model and the wire formats of WeChat's Dialogue Open Platform (微信对话开放平台)
//! third-party customer service.
//!
//! The platform talks to a customer-service system in encrypted XML plaintexts wrapped in small
//! JSON or XML envelopes. This crate reads and writes every layer except the encryption itself
//! (that is [`wxbizmsgcrypt`]):
//!
//! * the plaintexts: [`SendMsg`] (an agent's message to the user), [`KefuStateGet`] and
//!   [`KefuStateChange`] (the handoff state), and [`HandoffCallback`] (what the platform reports);
//! * the `msg` content, text or rich JSON: [`Msg`];
//! * the vocabularies: [`Channel`], [`Event`], [`KefuState`], [`StateQuery`], [`CallbackEvent`];
//! * the envelopes around a ciphertext, and a detector for untrusted text: [`envelope`].
//!
//! Builders apply the rules the platform enforces, so a mistake fails here with the code the
//! platform would have answered ([`Error::platform_code`]) instead of at the far end. Parsers
//! accept what the platform and the documented samples send (CDATA or escaped text, any element
//! order, unknown elements) and refuse DTDs. XML is written entity-escaped, without CDATA, in a
//! form that reads back byte for byte. No input can make this crate panic; it does no I/O.
//!
//! ```
//! use kefu_payload::envelope::{DialogueCallback, DialogueRequest};
//! use kefu_payload::{Channel, Event, HandoffCallback, KefuState, SendMsg};
//! use wxbizmsgcrypt::MsgCrypt;
//!
//! let crypt = MsgCrypt::new("token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "Gg8HejYTkUsEIlG")?;
//!
//! // The platform reports that a user asks for a human (here we play the platform).
//! let report = HandoffCallback {
//!     userid: "oUSER".into(),
//!     appid: "wx0000000000000000".into(),
//!     content: Some("我要转人工".into()),
//!     from: Some(0),
//!     kfstate: Some(KefuState::NeedPerson),
//!     channel: Some(0),
//!     ..HandoffCallback::default()
//! };
//! let body = DialogueCallback { encrypted: crypt.encrypt(report.to_xml()?.as_bytes())? }.to_json();
//!
//! // The connector decrypts the callback …
//! let ciphertext = DialogueCallback::parse(&body)?.encrypted;
//! let plaintext = crypt.decrypt(&ciphertext)?;
//! let callback = HandoffCallback::parse(&String::from_utf8_lossy(plaintext.message()))?;
//! assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
//!
//! // … and an agent answers on the same channel.
//! let channel = callback.known_channel().unwrap_or(Channel::OfficialAccount);
//! let reply = SendMsg::builder(callback.userid.as_str(), channel, "客服已接入")
//!     .appid(callback.appid.as_str())
//!     .event(Event::WaiterEnter)
//!     .kefuname("客服小红")
//!     .build()?;
//! let request = DialogueRequest { encrypt: crypt.encrypt(reply.to_xml()?.as_bytes())? };
//! assert!(request.to_json().starts_with(r#"{"encrypt":""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod callback;
pub mod cgibin;
pub mod envelope;
mod error;
pub mod gateway;
mod kefustate;
pub mod limits;
mod model;
mod msg;
mod sendmsg;
mod unreadable;
mod xml;
pub mod yunzhenji;

pub use callback::{CallbackEvent, CustomerInfo, HandoffCallback};
pub use error::{Error, Stage};
pub use kefustate::{KefuStateChange, KefuStateGet};
pub use model::{Channel, Event, KefuState, StateQuery};
pub use msg::{Article, ArticleType, Image, MiniProgramPage, Msg, MultiMsgItem, News};
pub use sendmsg::{SendMsg, SendMsgBuilder};
/// Re-exported so that callers can match [`Error::error_code`] without a direct dependency.
pub use wxbizmsgcrypt::ErrorCode;
pub use xml::{MAX_TREE_DEPTH, is_xml_char, read_tree};
