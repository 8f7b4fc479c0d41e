//! Official Account and Mini Program customer-service messages (protocols.md §5, §6):
//! [`WechatProvider`] implements [`kefu_core::Provider`] for one `[wechat.<name>]` account, with
//! its access tokens from a [`TokenManager`].
//!
//! ```no_run
//! use kefu_client::wechat::WechatProvider;
//! use kefu_client::kefu_payload::cgibin::AccountKind;
//! use kefu_core::{ComposeRequest, Job, Provider};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = WechatProvider::builder("shop", AccountKind::OfficialAccount, "wx0000000000000000", "APPSECRET")
//!     .build()?;
//! let body = serde_json::json!({"openid": "oUSER", "msg": "您好"});
//! let jobs = provider.compose(ComposeRequest { body: body.as_object().unwrap(), session_appid: None })?;
//! for (id, composed) in jobs.into_iter().enumerate() {
//!     let job = Job {
//!         id: id as i64,
//!         account: "shop".into(),
//!         recipient: composed.recipient,
//!         operation: composed.operation,
//!         payload: composed.payload,
//!     };
//!     let attempt = provider.send(&job).await;
//!     println!("{:?} {} rid {:?}", attempt.class, attempt.message, attempt.rid);
//! }
//! # Ok(()) }
//! ```

mod counters;
mod provider;
pub(crate) mod redact;
mod token;

pub use counters::CountersSnapshot;
pub use provider::{
    BuildError, DEFAULT_API_BASE_URL, DEFAULT_MP_TYPING_PATH, OA_TYPING_PATH, OPERATION_SEND,
    OPERATION_TYPING, SEND_PATH, STABLE_TOKEN_PATH, WechatProvider, WechatProviderBuilder,
};
pub use token::{AccessToken, FORCE_REFRESH_HELP, TokenError, TokenManager, TokenStatus};
