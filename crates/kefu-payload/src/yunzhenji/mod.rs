//! The wire formats of yunzhenji (云真机), which sends from a WeCom account the vendor drives
//! (protocols.md §7), without I/O:
//!
//! * the desk's message read into one vendor message per stored job: [`read_desk_message`];
//! * the `wechat/sendMessage` body and its answer, one [`kefu_core::Attempt`] per message:
//!   [`send_body`], [`classify_batch`];
//! * the vendor's `chatMsg` / `chatMsgSendFail` callbacks, read defensively: [`parse_callback`].
//!
//! Bodies are raw UTF-8 JSON.

mod callback;
mod desk;
mod send;

pub use callback::{
    CallbackError, CallbackKind, MAX_DEPTH, VendorCallback, parse_callback, read_callback,
};
pub use desk::{
    DeskMessage, MAX_TEXT_BYTES, MAX_TITLE_BYTES, MAX_URL_BYTES, MAX_WXID_BYTES, Message,
    read_desk_message,
};
pub use send::{Account, BadPayload, MAX_BATCH, classify_batch, send_body, stored_message};
