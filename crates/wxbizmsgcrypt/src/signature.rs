//! SHA-1 signatures: `msg_signature` over four inputs and the plain `signature` over three.

use core::fmt;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::error::{Error, SignatureKind};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A signature: 40 lowercase hexadecimal digits of a SHA-1 digest.
///
/// ```
/// use wxbizmsgcrypt::sign_plain;
/// // The documented example (protocols.md V5).
/// let sig = sign_plain("AAAAA", "1714036504", "1514711492");
/// assert_eq!(sig.as_str(), "f464b24fc39322e44b38aa78f5edd27bd1441696");
/// assert_eq!(sig.to_string(), sig.as_str());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 40]);

impl Signature {
    fn from_digest(digest: &[u8]) -> Signature {
        let mut hex = [0u8; 40];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        Signature(hex)
    }

    /// The 40 lowercase hexadecimal digits.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex by construction.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.as_str())
    }
}

impl AsRef<str> for Signature {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

fn digest_sorted<const N: usize>(mut parts: [&[u8]; N]) -> [u8; 20] {
    // Ordinal byte order, as the platform sorts: "1514711492" < "1714036504" < "AAAAA".
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `msg_signature`: SHA-1 over the byte-wise sorted token, timestamp, nonce and `Encrypt`.
///
/// ```
/// use wxbizmsgcrypt::sign_message;
/// let sig = sign_message("RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt");
/// assert_eq!(sig.as_str(), "8edac0945683c119ee71c9f6256d76c48aa08a96");
/// ```
pub fn sign_message(
    token: impl AsRef<[u8]>,
    timestamp: impl AsRef<[u8]>,
    nonce: impl AsRef<[u8]>,
    encrypt: impl AsRef<[u8]>,
) -> Signature {
    Signature::from_digest(&digest_sorted([
        token.as_ref(),
        timestamp.as_ref(),
        nonce.as_ref(),
        encrypt.as_ref(),
    ]))
}

/// The plain `signature`: SHA-1 over the byte-wise sorted token, timestamp and nonce, as used by
/// Official Account and Mini Program plaintext mode and URL verification.
pub fn sign_plain(
    token: impl AsRef<[u8]>,
    timestamp: impl AsRef<[u8]>,
    nonce: impl AsRef<[u8]>,
) -> Signature {
    Signature::from_digest(&digest_sorted([
        token.as_ref(),
        timestamp.as_ref(),
        nonce.as_ref(),
    ]))
}

/// Checks a `msg_signature` in constant time, accepting either hex case.
///
/// ```
/// use wxbizmsgcrypt::verify_message;
/// let ok = verify_message("RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt",
///     "8EDAC0945683C119EE71C9F6256D76C48AA08A96");
/// assert!(ok.is_ok());
/// let bad = verify_message("RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt2",
///     "8edac0945683c119ee71c9f6256d76c48aa08a96");
/// assert_eq!(bad.unwrap_err().code(), -40001);
/// ```
pub fn verify_message(
    token: impl AsRef<[u8]>,
    timestamp: impl AsRef<[u8]>,
    nonce: impl AsRef<[u8]>,
    encrypt: impl AsRef<[u8]>,
    signature: &str,
) -> Result<(), Error> {
    let expected = digest_sorted([
        token.as_ref(),
        timestamp.as_ref(),
        nonce.as_ref(),
        encrypt.as_ref(),
    ]);
    compare(SignatureKind::Message, &expected, signature)
}

/// Checks a plain `signature` (three inputs) in constant time, accepting either hex case.
pub fn verify_plain(
    token: impl AsRef<[u8]>,
    timestamp: impl AsRef<[u8]>,
    nonce: impl AsRef<[u8]>,
    signature: &str,
) -> Result<(), Error> {
    let expected = digest_sorted([token.as_ref(), timestamp.as_ref(), nonce.as_ref()]);
    compare(SignatureKind::Plain, &expected, signature)
}

fn compare(kind: SignatureKind, expected: &[u8; 20], received: &str) -> Result<(), Error> {
    let received = received.as_bytes();
    let format_error = Error::SignatureFormat {
        kind,
        len: received.len(),
    };
    if received.len() != 40 {
        return Err(format_error);
    }
    // Decoding branches only on the public, attacker-supplied text; the comparison with the
    // secret-dependent digest is constant-time.
    let mut digest = [0u8; 20];
    for (byte, pair) in digest.iter_mut().zip(received.chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Err(format_error),
        }
    }
    if bool::from(digest.ct_eq(expected)) {
        Ok(())
    } else {
        Err(Error::SignatureMismatch { kind })
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_plain_signatures() {
        assert_eq!(
            sign_plain("AAAAA", "1714036504", "1514711492").as_str(),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        assert_eq!(
            sign_plain("AAAAA", "1714037059", "486452656").as_str(),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
    }

    #[test]
    fn sort_is_bytewise_not_numeric() {
        // "486452656" sorts after "1714037059" as bytes although it is the smaller number.
        let sig = sign_plain("AAAAA", "1714037059", "486452656");
        let mut h = Sha1::new();
        h.update(b"1714037059486452656AAAAA");
        assert_eq!(sig, Signature::from_digest(&h.finalize()));
    }

    #[test]
    fn utf8_inputs_are_hashed_as_utf8() {
        // Tencent's C# sample hashes ASCII with '?' for non-ASCII; the platform uses UTF-8.
        let sig = sign_message("Senparc", "Weixin", "QY", "盛派网络");
        assert_eq!(sig.as_str(), "c0b8430b034821fa675d10b5a9349022b2cf7797");
    }

    #[test]
    fn malformed_signatures_are_format_errors() {
        for bad in [
            "",
            "abc",
            "invalid-signature",
            &"g".repeat(40),
            &"0".repeat(41),
        ] {
            let err = verify_plain("t", "1", "2", bad).unwrap_err();
            assert!(matches!(
                err,
                Error::SignatureFormat {
                    kind: SignatureKind::Plain,
                    ..
                }
            ));
            assert_eq!(err.code(), -40001);
        }
    }

    #[test]
    fn mismatch_names_the_inputs() {
        let err = verify_message("t", "1", "2", "e", &"0".repeat(40)).unwrap_err();
        assert_eq!(
            err,
            Error::SignatureMismatch {
                kind: SignatureKind::Message
            }
        );
        assert!(err.to_string().contains("token, timestamp, nonce, encrypt"));
        let err = verify_plain("t", "1", "2", &"0".repeat(40)).unwrap_err();
        assert!(err.to_string().contains("sort(token, timestamp, nonce)"));
    }

    #[test]
    fn plain_and_message_signatures_differ() {
        let plain = sign_plain("t", "1", "2");
        assert!(verify_message("t", "1", "2", "", plain.as_str()).is_ok());
        assert!(verify_message("t", "1", "2", "x", plain.as_str()).is_err());
    }
}
