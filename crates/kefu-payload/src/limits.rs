//! The longest identifiers and names accepted when building a plaintext, in bytes of UTF-8.
//!
//! The platform documents no limits (protocols.md §4.4, §4.6), so these are generous bounds on
//! what its values are: they refuse a value that cannot be right (a 60,000-character `openid`)
//! before it is stored and sent, and leave room for every real one.

/// `openid`: a WeChat openid is 28 characters, a WeCom userid at most 64; Web/H5 user ids vary.
pub const OPENID: usize = 128;

/// `appid`: an AppID is 18 characters; on channel 7 the TOKEN (about 30) is sent in its place.
pub const APPID: usize = 128;

/// `kefuname`: an agent nickname shown to the user; 256 bytes is 85 Chinese characters.
pub const KEFUNAME: usize = 256;

/// `kefuavatar`: an image URL.
pub const KEFUAVATAR: usize = 2048;

/// `ans_node_name`: a category or skill name.
pub const ANS_NODE_NAME: usize = 256;

/// Refuses `value` when it is longer than `max` bytes, with [`Error::TooLong`](crate::Error::TooLong)
/// naming `field`: for identifiers that reach no builder, such as an openid looked up.
pub fn check(field: &'static str, value: &str, max: usize) -> Result<(), crate::Error> {
    if value.len() > max {
        return Err(crate::Error::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}
