//! The wire formats of yunzhenji (云真机), which sends from a WeCom account the vendor drives
//! (protocols.md §7), without I/O:
//!
//! * the vendor's `chatMsg` / `chatMsgSendFail` callbacks, read defensively: [`parse_callback`].

mod callback;

pub use callback::{CallbackError, CallbackKind, MAX_DEPTH, VendorCallback, parse_callback};
