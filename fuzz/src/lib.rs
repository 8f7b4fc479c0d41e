//! Helpers shared by the fuzz targets in `fuzz_targets/`: the fixed accounts, the line-separated
//! input format, a raw AES-CBC encryptor, and the checks every error must pass.
//!
//! See fuzz/README.md for what each target asserts.

use aes::Aes256Enc;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use arbitrary::Unstructured;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kefu_payload::{Article, ArticleType, Image, MiniProgramPage, Msg, MultiMsgItem, News};
use wxbizmsgcrypt::{ErrorCode, MsgCrypt};

/// The EncodingAESKey of protocols.md §10 (V1–V4).
pub const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// The 32 bytes [`SAMPLE_KEY`] decodes to (protocols.md §10); its first 16 are the IV.
pub const SAMPLE_KEY_BYTES: [u8; 32] = [
    0x69, 0xb7, 0x1d, 0x79, 0xf8, 0x21, 0x8a, 0x39, 0x25, 0x9a, 0x7a, 0x29, 0xaa, 0xbb, 0x2d, 0xba,
    0xfc, 0x31, 0xcb, 0x3d, 0x35, 0xdb, 0x7e, 0x39, 0xeb, 0xbf, 0x3d, 0x00, 0x10, 0x83, 0x10, 0x51,
];
/// The bot APPID of V2 and V3: the receive-id of the Dialogue platform.
pub const BOT_APPID: &str = "Gg8HejYTkUsEIlG";

/// Splits `text` at its first `N - 1` line feeds: `N` fields, the last one taking the rest (line
/// feeds included). Missing fields are empty.
///
/// Several targets read their inputs this way, so that the seeds are readable text files:
/// `token\ntimestamp\nnonce\n…`.
pub fn fields<const N: usize>(text: &str) -> [&str; N] {
    let mut out = [""; N];
    let mut parts = text.splitn(N, '\n');
    for slot in &mut out {
        match parts.next() {
            Some(part) => *slot = part,
            None => break,
        }
    }
    out
}

/// `true` when serialized JSON holds a `\uXXXX` escape. An escaped backslash followed by a `u`
/// (`\\u`, which an ID may well contain) is a backslash and a letter, not an escape, so a plain
/// substring search would be wrong.
pub fn has_unicode_escape(json: &str) -> bool {
    let mut bytes = json.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'\\' && bytes.next() == Some(b'u') {
            return true;
        }
    }
    false
}

/// The account of the Dialogue vectors V2/V3: sample key, bot APPID.
pub fn bot_crypt() -> MsgCrypt {
    must(MsgCrypt::new("token", SAMPLE_KEY, BOT_APPID))
}

/// Encrypts `full` (a multiple of 16 bytes) with AES-256-CBC under [`SAMPLE_KEY_BYTES`] without
/// adding any padding, and returns the base64 text: the ciphertext of any plaintext at all,
/// including ones no honest sender would produce.
pub fn raw_encrypt(full: &[u8]) -> String {
    let mut buf = full.to_vec();
    let len = buf.len();
    let encryptor = cbc::Encryptor::<Aes256Enc>::new(
        (&SAMPLE_KEY_BYTES).into(),
        (&SAMPLE_KEY_BYTES[..16]).into(),
    );
    let sealed = encryptor
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .map(<[u8]>::len)
        .ok();
    assert_eq!(sealed, Some(len), "raw_encrypt needs whole blocks");
    STANDARD.encode(&buf)
}

/// Unwraps a result that the target's own set-up guarantees.
pub fn must<T, E: core::fmt::Debug>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("fuzz target set-up failed: {error:?}"),
    }
}

/// Reads `text` with `parse`; what it reads, `write` must write back, and parse → write → parse
/// must give the same value and the same text again. Returns what was read, or why not.
pub fn stable<T: PartialEq + core::fmt::Debug>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, kefu_payload::Error>,
    write: impl Fn(&T) -> Result<String, kefu_payload::Error>,
) -> Result<T, kefu_payload::Error> {
    let value = parse(text)?;
    let written = must(write(&value));
    let again = must(parse(&written));
    assert_eq!(again, value);
    assert_eq!(must(write(&again)), written);
    Ok(value)
}

/// What every crypto error must satisfy: an official code with a name, and a message.
pub fn check_crypt_error(error: &wxbizmsgcrypt::Error) {
    let code = error.code();
    assert!(
        (-40011..=-40001).contains(&code),
        "{error:?} has code {code}"
    );
    assert_eq!(ErrorCode::from_code(code), Some(error.error_code()));
    assert!(!error.to_string().is_empty(), "{error:?} has no message");
}

/// What every parse failure of kefu-payload must satisfy: −40002, a parse error (not a
/// validation or build error), and a message.
pub fn check_parse_error(error: &kefu_payload::Error) {
    assert_eq!(error.code(), -40002, "{error:?}");
    assert!(error.is_parse(), "{error:?} is not a parse error");
    assert!(!error.to_string().is_empty(), "{error:?} has no message");
}

/// `true` for the characters XML 1.0 allows in a document: what the writers can carry.
pub use kefu_payload::is_xml_char;

/// The first character of `value` that XML 1.0 cannot carry, with its position in characters.
pub fn first_unrepresentable(value: &str) -> Option<(usize, char)> {
    value.chars().enumerate().find(|(_, c)| !is_xml_char(*c))
}

/// The error a writer must give for `value` in element `field`, if any.
pub fn expected_unrepresentable(field: &'static str, value: &str) -> Option<kefu_payload::Error> {
    first_unrepresentable(value).map(|(position, character)| {
        kefu_payload::Error::UnrepresentableChar {
            field,
            position,
            character,
        }
    })
}

/// An arbitrary string; on exhausted input, an empty one.
pub fn string(u: &mut Unstructured<'_>) -> String {
    u.arbitrary().unwrap_or_default()
}

/// An arbitrary optional string.
pub fn optional_string(u: &mut Unstructured<'_>) -> Option<String> {
    u.arbitrary().unwrap_or_default()
}

fn article(u: &mut Unstructured<'_>) -> Article {
    Article {
        title: string(u),
        description: string(u),
        url: string(u),
        picurl: string(u),
        article_type: match u.int_in_range(0..=2u8).unwrap_or(0) {
            1 => Some(ArticleType::H5),
            2 => Some(ArticleType::Mp),
            _ => None,
        },
    }
}

fn news(u: &mut Unstructured<'_>) -> News {
    let count = u.int_in_range(0..=3usize).unwrap_or(0);
    News {
        articles: (0..count).map(|_| article(u)).collect(),
    }
}

fn image(u: &mut Unstructured<'_>) -> Image {
    Image {
        media_id: optional_string(u),
        url: optional_string(u),
    }
}

fn page(u: &mut Unstructured<'_>) -> MiniProgramPage {
    MiniProgramPage {
        title: string(u),
        appid: string(u),
        pagepath: string(u),
        thumb_media_id: optional_string(u),
        thumb_url: optional_string(u),
    }
}

/// An arbitrary `msg`: text most of the time, else any rich shape of protocols.md §4.5.
pub fn msg(u: &mut Unstructured<'_>) -> Msg {
    match u.int_in_range(0..=7u8).unwrap_or(0) {
        4 => Msg::News(news(u)),
        5 => Msg::Image(image(u)),
        6 => Msg::MiniProgramPage(page(u)),
        7 => {
            let count = u.int_in_range(0..=3usize).unwrap_or(0);
            Msg::MultiMsg(
                (0..count)
                    .map(|_| match u.int_in_range(0..=3u8).unwrap_or(0) {
                        1 => MultiMsgItem::News(news(u)),
                        2 => MultiMsgItem::Image(image(u)),
                        3 => MultiMsgItem::MiniProgramPage(page(u)),
                        _ => MultiMsgItem::Text(string(u)),
                    })
                    .collect(),
            )
        }
        _ => Msg::Text(string(u)),
    }
}
