//! The EncodingAESKey: validation, lenient decoding and the expanded key schedule.

use core::fmt;

use aes::cipher::KeyInit as _;
use aes::{Aes256Dec, Aes256Enc};
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, DecodeSliceError, Engine as _, alphabet};

use crate::error::{Base64Error, Error};

/// Length of an EncodingAESKey in characters.
pub const ENCODING_AES_KEY_LEN: usize = 43;

/// Decodes the key with its unused trailing bits allowed: WeChat consoles hand out keys whose
/// 43rd character has them set (the official sample key re-encodes as `…ABCDEFE=`), and a strict
/// decoder rejects them, as WxJava users found in issues #1379 and #1454.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// A parsed EncodingAESKey with its key schedules expanded, ready for many messages.
///
/// Its `Debug` output never shows the key.
///
/// ```
/// use wxbizmsgcrypt::{AesKey, Error};
/// let key = AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")?;
/// assert_eq!(format!("{key:?}"), "AesKey(<redacted>)");
/// assert_eq!(AesKey::parse("abc").unwrap_err(), Error::AesKeyLength { len: 3 });
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct AesKey {
    pub(crate) encryptor: Aes256Enc,
    pub(crate) decryptor: Aes256Dec,
    pub(crate) iv: aes::Block,
}

impl AesKey {
    /// Validates and decodes a 43-character EncodingAESKey.
    ///
    /// The key must hold exactly 43 characters of the standard base64 alphabet. Any other length
    /// is [`Error::AesKeyLength`]; the first character outside the alphabet is
    /// [`Error::AesKeyCharacter`]. Both have code −40004.
    pub fn parse(encoding_aes_key: &str) -> Result<AesKey, Error> {
        let len = encoding_aes_key.chars().count();
        if len != ENCODING_AES_KEY_LEN {
            return Err(Error::AesKeyLength { len });
        }
        if let Some(position) = encoding_aes_key
            .chars()
            .position(|c| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
        {
            return Err(Error::AesKeyCharacter { position });
        }
        let mut key = [0u8; 33];
        let written = KEY_ENGINE
            .decode_slice(encoding_aes_key, &mut key)
            .map_err(|_| Error::AesKeyLength { len })?;
        let key = key
            .get(..written)
            .and_then(|k| <&[u8; 32]>::try_from(k).ok())
            .ok_or(Error::AesKeyLength { len })?;
        Ok(AesKey::from_bytes(key))
    }

    /// Builds the key from its 32 raw bytes. The IV is the first 16 of them, as the scheme
    /// prescribes.
    pub fn from_bytes(key: &[u8; 32]) -> AesKey {
        let mut iv = aes::Block::default();
        iv.copy_from_slice(&key[..16]);
        AesKey {
            encryptor: Aes256Enc::new(key.into()),
            decryptor: Aes256Dec::new(key.into()),
            iv,
        }
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

/// Translates the base64 crate's error into ours. `text_len` is the trimmed length.
pub(crate) fn base64_reason(error: DecodeSliceError, text_len: usize) -> Base64Error {
    let error = match error {
        DecodeSliceError::DecodeError(error) => error,
        // The caller sizes the buffer from the text length, so this means a length that is not a
        // multiple of four slipped through.
        DecodeSliceError::OutputSliceTooSmall => {
            return Base64Error::InvalidLength { len: text_len };
        }
    };
    match error {
        DecodeError::InvalidByte(offset, b'=') if offset + 2 >= text_len => {
            Base64Error::InvalidPadding
        }
        DecodeError::InvalidByte(offset, byte) => Base64Error::InvalidByte { offset, byte },
        DecodeError::InvalidLength(len) => Base64Error::InvalidLength { len },
        DecodeError::InvalidLastSymbol(offset, _) => Base64Error::NonCanonical { offset },
        DecodeError::InvalidPadding => Base64Error::InvalidPadding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_sample_key_with_trailing_bits_decodes() {
        let key = AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let mut expected = [0u8; 16];
        expected.copy_from_slice(&hex::decode("69b71d79f8218a39259a7a29aabb2dba").unwrap());
        assert_eq!(key.iv.as_slice(), expected);
    }

    #[test]
    fn wrong_lengths_are_named() {
        for (key, len) in [
            ("", 0),
            ("a", 1),
            (&"a".repeat(44) as &str, 44),
            (&"a".repeat(42), 42),
        ] {
            let err = AesKey::parse(key).unwrap_err();
            assert_eq!(err, Error::AesKeyLength { len });
            assert_eq!(err.code(), -40004);
            assert!(err.to_string().contains(&format!("got {len}")));
        }
        // Padding makes a 44-character key: still the wrong length.
        assert!(AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFE=").is_err());
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let key = format!("{}é", "a".repeat(42));
        assert_eq!(
            AesKey::parse(&key).unwrap_err(),
            Error::AesKeyCharacter { position: 42 }
        );
    }

    #[test]
    fn invalid_characters_are_named() {
        for (i, bad) in [(0, '!'), (10, '_'), (20, '='), (42, '\u{e9}'), (5, '-')] {
            let mut key: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
                .chars()
                .collect();
            key[i] = bad;
            let key: String = key.into_iter().collect();
            let err = AesKey::parse(&key).unwrap_err();
            assert_eq!(err, Error::AesKeyCharacter { position: i });
            let message = err.to_string();
            assert!(message.contains(&format!("position {i}")), "{message}");
            // The character is part of the secret key: never shown, bare or quoted.
            assert!(!message.contains(&format!("{bad:?}")), "{message}");
            if bad != '-' {
                assert!(!message.contains(bad), "{message}");
            }
        }
    }

    #[test]
    fn plus_and_slash_are_accepted() {
        assert!(AesKey::parse(&format!("{}+/", "a".repeat(41))).is_ok());
    }
}
