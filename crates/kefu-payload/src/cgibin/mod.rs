//! The wire formats of the Official Account and Mini Program customer-service API (`cgi-bin`,
//! protocols.md §5, §6), without I/O:
//!
//! * the `custom/send` message model for every msgtype, and the typing body: [`CustomSend`],
//!   [`Typing`];
//! * the desk's message read into them, refusing what the platform would refuse:
//!   [`read_desk_message`];
//! * long text split into parts the platform accepts: [`split_text`];
//! * answers read ([`CgiReply`], [`TokenReply`]) and classified into
//!   [`kefu_core::Class`]es: [`classify`], [`classify_token`], [`code_class`].
//!
//! Bodies are raw UTF-8 JSON: no `\uXXXX` escapes, no HTML escaping (the platform answers 40033
//! otherwise).

mod classify;
pub(crate) mod desk;
mod message;
pub(crate) mod response;
mod split;

pub use classify::{Call, classify, classify_token, code_class, meaning};
pub use desk::{MAX_PARTS, read_desk_message, typing_body};
pub use message::{
    AccountKind, CustomSend, Link, Media, MenuItem, Message, MiniProgramPage, MpNewsArticle,
    MsgMenu, MsgType, Music, News, NewsArticle, Text, Typing, TypingCommand, Video, WxCard,
};
pub use response::{CgiReply, StableTokenRequest, TokenReply};
pub use split::{DEFAULT_TEXT_BUDGET, split_text};
