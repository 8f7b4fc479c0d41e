//! The one error type of this crate, and the official error codes.

use core::fmt;

/// The official WXBizMsgCrypt error codes, −40001 … −40011, as the sample libraries number them.
///
/// Every [`Error`] maps onto exactly one of these with [`Error::code`]. Codes that this crate
/// never produces itself ([`ErrorCode::ParseXml`], [`ErrorCode::GenReturnXml`]) are listed so that
/// the crates above it (XML and JSON envelopes) report failures in the same numbering.
///
/// ```
/// use wxbizmsgcrypt::ErrorCode;
/// assert_eq!(ErrorCode::ValidateSignature.code(), -40001);
/// assert_eq!(ErrorCode::ValidateSignature.name(), "ValidateSignature");
/// assert_eq!(ErrorCode::from_code(-40007), Some(ErrorCode::DecryptAes));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// −40001: the signature check failed.
    ValidateSignature,
    /// −40002: the XML or JSON could not be parsed.
    ParseXml,
    /// −40003: the SHA-1 signature could not be computed.
    ComputeSignature,
    /// −40004: the EncodingAESKey is invalid.
    IllegalAesKey,
    /// −40005: the receive-id (AppID, CorpID, SuiteID or bot APPID) did not match.
    ValidateReceiveId,
    /// −40006: AES encryption failed.
    EncryptAes,
    /// −40007: AES decryption failed, including a bad ciphertext length or padding.
    DecryptAes,
    /// −40008: the decrypted buffer is malformed (too short, or a length field out of range).
    IllegalBuffer,
    /// −40009: base64 encoding failed.
    EncodeBase64,
    /// −40010: base64 decoding failed.
    DecodeBase64,
    /// −40011: the reply XML or JSON could not be built.
    GenReturnXml,
}

impl ErrorCode {
    const ALL: [ErrorCode; 11] = [
        ErrorCode::ValidateSignature,
        ErrorCode::ParseXml,
        ErrorCode::ComputeSignature,
        ErrorCode::IllegalAesKey,
        ErrorCode::ValidateReceiveId,
        ErrorCode::EncryptAes,
        ErrorCode::DecryptAes,
        ErrorCode::IllegalBuffer,
        ErrorCode::EncodeBase64,
        ErrorCode::DecodeBase64,
        ErrorCode::GenReturnXml,
    ];

    /// The official number, −40001 … −40011.
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::ValidateSignature => -40001,
            ErrorCode::ParseXml => -40002,
            ErrorCode::ComputeSignature => -40003,
            ErrorCode::IllegalAesKey => -40004,
            ErrorCode::ValidateReceiveId => -40005,
            ErrorCode::EncryptAes => -40006,
            ErrorCode::DecryptAes => -40007,
            ErrorCode::IllegalBuffer => -40008,
            ErrorCode::EncodeBase64 => -40009,
            ErrorCode::DecodeBase64 => -40010,
            ErrorCode::GenReturnXml => -40011,
        }
    }

    /// The name the sample libraries use, without their `_Error` suffix.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::ValidateSignature => "ValidateSignature",
            ErrorCode::ParseXml => "ParseXml",
            ErrorCode::ComputeSignature => "ComputeSignature",
            ErrorCode::IllegalAesKey => "IllegalAesKey",
            ErrorCode::ValidateReceiveId => "ValidateReceiveId",
            ErrorCode::EncryptAes => "EncryptAes",
            ErrorCode::DecryptAes => "DecryptAes",
            ErrorCode::IllegalBuffer => "IllegalBuffer",
            ErrorCode::EncodeBase64 => "EncodeBase64",
            ErrorCode::DecodeBase64 => "DecodeBase64",
            ErrorCode::GenReturnXml => "GenReturnXml",
        }
    }

    /// The code for an official number, or `None` outside −40001 … −40011.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// Which signature failed to verify: they differ in their inputs, and confusing them is the most
/// common cause of −40001.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// `msg_signature`: SHA-1 over the sorted token, timestamp, nonce and `Encrypt`.
    Message,
    /// `signature`: SHA-1 over the sorted token, timestamp and nonce (Official Account and Mini
    /// Program plaintext mode and URL verification).
    Plain,
}

impl SignatureKind {
    fn inputs(self) -> &'static str {
        match self {
            SignatureKind::Message => {
                "msg_signature = SHA1(sort(token, timestamp, nonce, encrypt))"
            }
            SignatureKind::Plain => "signature = SHA1(sort(token, timestamp, nonce))",
        }
    }
}

/// Why an operation failed. Each distinct failure is its own variant; [`Error::code`] gives the
/// official number.
///
/// No variant carries the token or the key. Messages name the failed check and, where it helps,
/// the offending position or value from the (public) input.
///
/// ```
/// use wxbizmsgcrypt::{Error, MsgCrypt};
/// let err = MsgCrypt::new("token", "too-short", "appid").unwrap_err();
/// assert_eq!(err, Error::AesKeyLength { len: 9 });
/// assert_eq!(err.code(), -40004);
/// assert!(err.to_string().contains("43"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The EncodingAESKey is not 43 characters long (−40004).
    AesKeyLength {
        /// The number of characters found.
        len: usize,
    },
    /// The EncodingAESKey holds a character outside the base64 alphabet (−40004).
    ///
    /// Only the position is kept, never the character: a character of the key is a part of the
    /// secret, and this error ends up in logs and terminals.
    AesKeyCharacter {
        /// Zero-based character position.
        position: usize,
    },
    /// The signature is not 40 lower-case hexadecimal digits (−40001).
    SignatureFormat {
        /// Which signature was checked.
        kind: SignatureKind,
        /// The length, in bytes, of what was received.
        len: usize,
    },
    /// The signature does not match its inputs (−40001).
    SignatureMismatch {
        /// Which signature was checked, and so over which inputs.
        kind: SignatureKind,
    },
    /// The ciphertext is not valid canonical base64 (−40010).
    Base64 {
        /// What is wrong with it.
        reason: Base64Error,
    },
    /// The decoded ciphertext is empty or not a multiple of 32 bytes (−40007).
    CiphertextLength {
        /// The decoded length, in bytes.
        len: usize,
    },
    /// The padding byte is outside 1..=32 (−40007).
    PadOutOfRange {
        /// The value of the last plaintext byte.
        pad: u8,
    },
    /// Not every padding byte equals the pad length (−40007).
    PadBytesMismatch {
        /// The pad length announced by the last byte.
        pad: u8,
    },
    /// The unpadded plaintext is shorter than the 20-byte random and length header (−40008).
    BufferTooShort {
        /// The unpadded length, in bytes.
        len: usize,
    },
    /// The length field announces more bytes than the plaintext holds (−40008).
    MessageLengthOutOfRange {
        /// The announced message length.
        msg_len: u32,
        /// The bytes available for the message and the receive-id.
        available: usize,
    },
    /// The trailing receive-id differs from the expected one (−40005).
    ReceiveIdMismatch {
        /// The receive-id found in the plaintext, lossily decoded for display.
        found: String,
    },
    /// The message is longer than the 32-bit length field can describe (−40006).
    MessageTooLong {
        /// The message length, in bytes.
        len: usize,
    },
}

/// What is wrong with a base64 ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base64Error {
    /// The text is empty after trimming surrounding whitespace.
    Empty,
    /// A byte outside the standard alphabet, or `=` where it may not stand.
    InvalidByte {
        /// Byte offset in the trimmed text.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// The length is not a multiple of 4 (padding is required).
    InvalidLength {
        /// Length of the trimmed text.
        len: usize,
    },
    /// The last symbol has non-zero unused bits, so the encoding is not canonical.
    NonCanonical {
        /// Byte offset of the last symbol.
        offset: usize,
    },
    /// Missing or superfluous `=` padding.
    InvalidPadding,
}

impl Error {
    /// The official code group of this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::AesKeyLength { .. } | Error::AesKeyCharacter { .. } => ErrorCode::IllegalAesKey,
            Error::SignatureFormat { .. } | Error::SignatureMismatch { .. } => {
                ErrorCode::ValidateSignature
            }
            Error::Base64 { .. } => ErrorCode::DecodeBase64,
            Error::CiphertextLength { .. }
            | Error::PadOutOfRange { .. }
            | Error::PadBytesMismatch { .. } => ErrorCode::DecryptAes,
            Error::BufferTooShort { .. } | Error::MessageLengthOutOfRange { .. } => {
                ErrorCode::IllegalBuffer
            }
            Error::ReceiveIdMismatch { .. } => ErrorCode::ValidateReceiveId,
            Error::MessageTooLong { .. } => ErrorCode::EncryptAes,
        }
    }

    /// The official number, −40001 … −40011.
    pub fn code(&self) -> i32 {
        self.error_code().code()
    }

    /// `true` for −40001: a signature was malformed or did not match.
    pub fn is_signature(&self) -> bool {
        self.error_code() == ErrorCode::ValidateSignature
    }

    /// `true` for −40004: the EncodingAESKey is unusable.
    pub fn is_aes_key(&self) -> bool {
        self.error_code() == ErrorCode::IllegalAesKey
    }

    /// `true` for −40005: the plaintext was meant for another receive-id.
    pub fn is_receive_id(&self) -> bool {
        self.error_code() == ErrorCode::ValidateReceiveId
    }

    /// `true` for any failure to turn a ciphertext into a framed plaintext (−40007, −40008,
    /// −40010): the bytes were not produced by this key.
    pub fn is_ciphertext(&self) -> bool {
        matches!(
            self.error_code(),
            ErrorCode::DecryptAes | ErrorCode::IllegalBuffer | ErrorCode::DecodeBase64
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AesKeyLength { len } => write!(
                f,
                "EncodingAESKey must be exactly 43 characters, got {len}; copy it again from the console"
            ),
            Error::AesKeyCharacter { position } => write!(
                f,
                "EncodingAESKey has a character at position {position} that is not base64 (A-Z, a-z, 0-9, +, /); copy it again from the console"
            ),
            Error::SignatureFormat { kind, len } => write!(
                f,
                "signature must be exactly 40 lower-case hexadecimal digits, got {len} bytes of another form; expected {}",
                kind.inputs()
            ),
            Error::SignatureMismatch { kind } => write!(
                f,
                "signature does not match; expected {} with the configured token",
                kind.inputs()
            ),
            Error::Base64 { reason } => write!(f, "ciphertext is not canonical base64: {reason}"),
            Error::CiphertextLength { len } => write!(
                f,
                "decoded ciphertext is {len} bytes; it must be a non-zero multiple of 32"
            ),
            Error::PadOutOfRange { pad } => write!(
                f,
                "padding byte is {pad}, outside 1..=32: wrong EncodingAESKey or corrupted ciphertext"
            ),
            Error::PadBytesMismatch { pad } => write!(
                f,
                "padding of {pad} bytes is not uniform: wrong EncodingAESKey or corrupted ciphertext"
            ),
            Error::BufferTooShort { len } => write!(
                f,
                "plaintext holds {len} bytes after unpadding, fewer than the 20-byte header"
            ),
            Error::MessageLengthOutOfRange { msg_len, available } => write!(
                f,
                "length field announces {msg_len} bytes but only {available} remain"
            ),
            Error::ReceiveIdMismatch { found } => write!(
                f,
                "receive-id {found:?} does not match the configured one (AppID, CorpID, SuiteID or bot APPID)"
            ),
            Error::MessageTooLong { len } => {
                write!(
                    f,
                    "message of {len} bytes does not fit the 32-bit length field"
                )
            }
        }
    }
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::Empty => f.write_str("it is empty"),
            Base64Error::InvalidByte { offset, byte } => {
                if *byte == b' ' {
                    write!(
                        f,
                        "space at offset {offset}; was the body form-decoded (a '+' turned into ' ')?"
                    )
                } else {
                    write!(f, "invalid byte {byte:#04x} at offset {offset}")
                }
            }
            Base64Error::InvalidLength { len } => {
                write!(f, "length {len} is not a multiple of 4")
            }
            Base64Error::NonCanonical { offset } => {
                write!(f, "symbol at offset {offset} has non-zero unused bits")
            }
            Base64Error::InvalidPadding => f.write_str("missing or misplaced '=' padding"),
        }
    }
}

impl std::error::Error for Error {}
