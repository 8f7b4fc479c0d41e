//! SHA-1 signatures: `msg_signature` over four inputs and the plain `signature` over three.

use core::fmt;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::error::{Error, SignatureKind};

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
        // Arithmetic rather than a table lookup per digit, so that the loop vectorises.
        let digit = |nibble: u8| nibble + if nibble < 10 { b'0' } else { b'a' - 10 };
        let mut hex = [0u8; 40];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = digit(byte >> 4);
            pair[1] = digit(byte & 0x0f);
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
    // Insertion sort of three or four items, inlined (the library's sort is not, for so few).
    for i in 1..N {
        let mut j = i;
        while j > 0 && less(parts[j], parts[j - 1]) {
            parts.swap(j, j - 1);
            j -= 1;
        }
    }
    let total: usize = parts.iter().map(|part| part.len()).sum();
    if let Some(digest) = digest_small(&parts, total) {
        return digest;
    }
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// One SHA-1 block.
type Block = sha1::digest::generic_array::GenericArray<u8, sha1::digest::consts::U64>;

/// Inputs up to this many blocks, padding included, are hashed by [`digest_small`].
const SMALL_BLOCKS: usize = 5;

/// SHA-1 of the concatenated parts when they fit in [`SMALL_BLOCKS`] blocks with the padding.
///
/// The parts and the padding (FIPS 180-4 §5.1.1: a 1 bit, zeros, the 64-bit big-endian bit length)
/// are laid out in a stack array and compressed in one call. `Sha1::update` buffers each short
/// part and compresses block by block, which for a 64-byte message costs a fifth of the hash.
/// Tested against `Sha1` for every length up to the limit.
fn digest_small(parts: &[&[u8]], total: usize) -> Option<[u8; 20]> {
    const INITIAL_STATE: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let used = (total + 9).div_ceil(64);
    if used > SMALL_BLOCKS {
        return None;
    }
    let mut blocks = [Block::default(); SMALL_BLOCKS];
    let mut at = 0;
    for part in parts {
        at = put(&mut blocks, at, part);
    }
    put(&mut blocks, at, &[0x80]);
    let last = blocks.get_mut(used - 1)?;
    last[56..].copy_from_slice(&(total as u64 * 8).to_be_bytes());
    let mut state = INITIAL_STATE;
    sha1::compress(&mut state, blocks.get(..used)?);
    let mut digest = [0u8; 20];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    Some(digest)
}

/// Copies `bytes` into the blocks from byte offset `at` on, and returns the offset after them.
/// The caller has checked that they fit.
fn put(blocks: &mut [Block], mut at: usize, mut bytes: &[u8]) -> usize {
    while let Some(block) = blocks.get_mut(at / 64) {
        if bytes.is_empty() {
            break;
        }
        let room = &mut block[at % 64..];
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        at += n;
    }
    at
}

/// Ordinal byte order, as the platform sorts. The first bytes usually differ, and comparing them
/// inline saves a call to memcmp.
#[inline(always)]
fn less(a: &[u8], b: &[u8]) -> bool {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a < b,
    }
}

/// A `msg_signature` computed while the `Encrypt` text is being produced, so that hashing overlaps
/// encryption (see seal.rs).
///
/// The text's place among the sorted token, timestamp and nonce is known as soon as enough of its
/// beginning is: from then on every piece of text is hashed as it comes.
pub(crate) struct StreamSigner<'a> {
    /// The token, timestamp and nonce, sorted.
    others: [&'a [u8]; 3],
    /// The length the text will have.
    text_len: usize,
    /// How many of `others` sort before the text, once known.
    before: Option<usize>,
    /// How much of the text has been hashed.
    hashed: usize,
    /// The length of the parts hashed before the text.
    offset: usize,
    hasher: Sha1,
}

impl<'a> StreamSigner<'a> {
    pub(crate) fn new(
        token: &'a [u8],
        timestamp: &'a [u8],
        nonce: &'a [u8],
        text_len: usize,
    ) -> StreamSigner<'a> {
        let mut others = [token, timestamp, nonce];
        for i in 1..others.len() {
            let mut j = i;
            while j > 0 && less(others[j], others[j - 1]) {
                others.swap(j, j - 1);
                j -= 1;
            }
        }
        StreamSigner {
            others,
            text_len,
            before: None,
            hashed: 0,
            offset: 0,
            hasher: Sha1::new(),
        }
    }

    /// `text` is the text produced so far; its first `upto` bytes may be hashed now.
    pub(crate) fn advance(&mut self, text: &[u8], upto: usize) {
        if self.before.is_none() {
            let Some(before) = self.place(text) else {
                return;
            };
            self.before = Some(before);
            for part in &self.others[..before] {
                self.hasher.update(part);
                self.offset += part.len();
            }
        }
        // Stop at a SHA-1 block boundary: whole blocks are compressed straight from the text,
        // and the hasher copies nothing.
        let upto = upto.saturating_sub((self.offset + upto) % 64);
        if let Some(piece) = text.get(self.hashed..upto) {
            self.hasher.update(piece);
            self.hashed = upto;
        }
    }

    /// How many of the others sort before a text that starts with `prefix`, or `None` while the
    /// prefix is too short to tell.
    fn place(&self, prefix: &[u8]) -> Option<usize> {
        let complete = prefix.len() >= self.text_len;
        let mut before = 0;
        for part in self.others {
            let n = part.len().min(prefix.len());
            let is_before = match part[..n].cmp(&prefix[..n]) {
                core::cmp::Ordering::Less => true,
                core::cmp::Ordering::Greater => false,
                // The part is a prefix of the text: it sorts first (or is equal, either order).
                core::cmp::Ordering::Equal if part.len() <= prefix.len() => true,
                // The whole text is a proper prefix of the part.
                core::cmp::Ordering::Equal if complete => false,
                core::cmp::Ordering::Equal => return None,
            };
            if !is_before {
                break;
            }
            before += 1;
        }
        Some(before)
    }

    /// Hashes the rest of `text` (all of it) and the parts that sort after it.
    pub(crate) fn finish(mut self, text: &[u8]) -> Signature {
        self.advance(text, text.len());
        if let Some(rest) = text.get(self.hashed..) {
            self.hasher.update(rest);
        }
        let before = self.before.unwrap_or(0);
        for part in &self.others[before..] {
            self.hasher.update(part);
        }
        Signature::from_digest(&self.hasher.finalize())
    }
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

/// Checks a `msg_signature` in constant time. It must be exactly the 40 lower-case hex digits the
/// platform sends: Tencent's samples and SDKs compare the text exactly, so upper case is refused
/// (−40001) rather than being a second spelling an attacker could use.
///
/// ```
/// use wxbizmsgcrypt::verify_message;
/// let ok = verify_message("RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt",
///     "8edac0945683c119ee71c9f6256d76c48aa08a96");
/// assert!(ok.is_ok());
/// let upper = verify_message("RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt",
///     "8EDAC0945683C119EE71C9F6256D76C48AA08A96");
/// assert_eq!(upper.unwrap_err().code(), -40001);
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

/// Checks a plain `signature` (three inputs) in constant time; like [`verify_message`], only the
/// 40 lower-case hex digits are accepted.
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
    check(kind, expected, &parse(kind, received)?)
}

/// Decodes a received signature: exactly 40 lower-case hexadecimal digits.
///
/// Decoding branches only on the public, attacker-supplied text.
pub(crate) fn parse(kind: SignatureKind, received: &str) -> Result<[u8; 20], Error> {
    let format_error = Error::SignatureFormat {
        kind,
        len: received.len(),
    };
    let Ok(received) = <&[u8; 40]>::try_from(received.as_bytes()) else {
        return Err(format_error);
    };
    let mut digest = [0u8; 20];
    let mut invalid = 0u8;
    for (byte, pair) in digest.iter_mut().zip(received.chunks_exact(2)) {
        let high = HEX_VALUE[usize::from(pair[0])];
        let low = HEX_VALUE[usize::from(pair[1])];
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    if invalid & INVALID_DIGIT != 0 {
        return Err(format_error);
    }
    Ok(digest)
}

/// Compares the expected digest with a received one in constant time.
pub(crate) fn check(
    kind: SignatureKind,
    expected: &[u8; 20],
    received: &[u8; 20],
) -> Result<(), Error> {
    if ct_eq(received, expected) {
        Ok(())
    } else {
        Err(Error::SignatureMismatch { kind })
    }
}

/// The digest a `msg_signature` encodes.
pub(crate) fn message_digest(
    token: &[u8],
    timestamp: &[u8],
    nonce: &[u8],
    encrypt: &[u8],
) -> [u8; 20] {
    digest_sorted([token, timestamp, nonce, encrypt])
}

/// Marks a byte that is not a hexadecimal digit in [`HEX_VALUE`].
const INVALID_DIGIT: u8 = 0x80;

/// The value of each lower-case hexadecimal digit; [`INVALID_DIGIT`] for any other byte, upper-case
/// `A`-`F` included, so that a signature has one spelling only.
const HEX_VALUE: [u8; 256] = {
    let mut table = [INVALID_DIGIT; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Constant-time equality of two byte strings whose lengths are public.
///
/// The XOR of every pair of bytes is folded into one 64-bit word without a branch, and only that
/// word goes through `subtle`'s comparison and its optimisation barrier. (`subtle`'s slice
/// comparison puts the barrier on every byte, which costs more than the rest of a signature or
/// receive-id check.)
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .fold(0u64, |diff, (x, y)| diff | u64::from(x ^ y));
    for (x, y) in a_words.zip(b_words) {
        diff |= word(x) ^ word(y);
    }
    bool::from(diff.ct_eq(&0))
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
    fn small_digest_matches_sha1_at_every_length() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 131 % 251) as u8).collect();
        // Under Miri, only the lengths around the block and padding boundaries.
        let totals: Vec<usize> = if cfg!(miri) {
            vec![55, 56, 311]
        } else {
            (0..=SMALL_BLOCKS * 64 - 9).collect()
        };
        for total in totals {
            // Split the input in four parts at varying points, as the signature inputs come.
            for split in [0usize, 1, 10, 63, 64, 65] {
                let a = split.min(total);
                let b = (a + 21).min(total);
                let c = (b + 10).min(total);
                let parts = [&data[..a], &data[a..b], &data[b..c], &data[c..total]];
                let expected: [u8; 20] = Sha1::digest(&data[..total]).into();
                assert_eq!(
                    digest_small(&parts, total),
                    Some(expected),
                    "{total} {split}"
                );
            }
        }
        let big = &data[..SMALL_BLOCKS * 64 - 8];
        assert_eq!(digest_small(&[big], big.len()), None);
    }

    /// Feeds `text` to a [`StreamSigner`] in pieces ending at `cuts`, with a lag of one piece as
    /// the sealer does, and returns its signature.
    fn streamed(
        token: &str,
        timestamp: &str,
        nonce: &str,
        text: &str,
        cuts: &[usize],
    ) -> Signature {
        let text = text.as_bytes();
        let mut signer = StreamSigner::new(
            token.as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
            text.len(),
        );
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(text.len())).collect();
        cuts.sort_unstable();
        let mut previous = 0;
        for cut in cuts {
            signer.advance(&text[..cut], previous);
            previous = cut;
        }
        signer.finish(text)
    }

    #[test]
    #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
    fn streamed_signature_places_the_text_among_the_others() {
        let text =
            "Q3stYC6hdFzMh9T8HCvyDPE2ieTdcQ/vBK1S4QECN+1Fx+GT1t8gA4DCfMvbFulM0rTHMLJnW441w3Gj";
        let cuts = [1usize, 5, 16, 17, 40, 64, 65];
        // Parts before, after, equal to, prefixes of, and extensions of the text, at each place.
        let candidates = [
            "",
            "1700000000",
            "zz",
            "Q",
            "Q3st",
            "Q3su",
            "Q3ss",
            &text[..63],
            text,
            &format!("{text}x"),
            &format!("{text}{text}"),
            "RMNlACHlV5ThzfRlVS4D4",
        ];
        for token in candidates {
            for timestamp in candidates {
                for nonce in ["", "Q3stYC6", "1514711492", text] {
                    for n in 0..=cuts.len() {
                        assert_eq!(
                            streamed(token, timestamp, nonce, text, &cuts[..n]),
                            sign_message(token, timestamp, nonce, text),
                            "{token:?} {timestamp:?} {nonce:?} {n}"
                        );
                    }
                }
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
            fn streamed_signature_equals_the_sorted_hash(
                text in "[A-Q]{0,200}",
                token in "[A-Q]{0,30}",
                timestamp in "[0-9A-Q]{0,12}",
                nonce in "[0-9A-Q]{0,12}",
                cuts in proptest::collection::vec(0usize..200, 0..8),
            ) {
                prop_assert_eq!(
                    streamed(&token, &timestamp, &nonce, &text, &cuts),
                    sign_message(&token, &timestamp, &nonce, &text)
                );
            }
        }
    }

    /// `verify_and_decrypt` decrypts before it compares the signature, but reports as if it had
    /// verified first: a signature error whatever the ciphertext.
    #[test]
    fn verify_and_decrypt_reports_the_signature_first() {
        use crate::{Base64Error, MsgCrypt};
        let crypt =
            MsgCrypt::new("t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "id").unwrap();
        let good = crypt.encrypt_and_sign(b"hello", "1", "2").unwrap();
        let wrong_key = MsgCrypt::new("t", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "id")
            .unwrap()
            .encrypt_with_random(b"0123456789abcdef", b"hello")
            .unwrap();
        for encrypt in [
            "",
            "!!!!",
            "QUJD",
            &good.encrypt[4..],
            &wrong_key,
            &good.encrypt,
        ] {
            let mismatch = crypt.verify_and_decrypt(&"0".repeat(40), "1", "2", encrypt);
            assert_eq!(
                mismatch.unwrap_err(),
                Error::SignatureMismatch {
                    kind: SignatureKind::Message
                }
            );
            let malformed = crypt.verify_and_decrypt("xyz", "1", "2", encrypt);
            assert!(matches!(
                malformed,
                Err(Error::SignatureFormat { len: 3, .. })
            ));
        }
        // With a valid signature, the ciphertext's own errors come through.
        let sign = |encrypt: &str| crypt.sign("1", "2", encrypt);
        assert_eq!(
            crypt.verify_and_decrypt(sign("!!!!").as_str(), "1", "2", "!!!!"),
            Err(Error::Base64 {
                reason: Base64Error::InvalidByte {
                    offset: 0,
                    byte: b'!'
                }
            })
        );
        assert!(
            crypt
                .verify_and_decrypt(sign(&wrong_key).as_str(), "1", "2", &wrong_key)
                .unwrap_err()
                .is_ciphertext()
        );
        let plain = crypt
            .verify_and_decrypt(good.msg_signature.as_str(), "1", "2", &good.encrypt)
            .unwrap();
        assert_eq!(plain.message(), b"hello");
    }

    #[test]
    fn ct_eq_compares_every_byte() {
        let lengths: &[usize] = if cfg!(miri) {
            &[0, 9, 20]
        } else {
            &[0, 1, 7, 8, 9, 15, 16, 20, 33]
        };
        for &len in lengths {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(ct_eq(&a, &a.clone()));
            for i in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[i] ^= 1 << bit;
                    assert!(!ct_eq(&a, &b), "len {len}, byte {i}, bit {bit}");
                }
            }
            assert!(!ct_eq(&a, &[a.as_slice(), &[0]].concat()));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
    fn every_non_hex_byte_is_a_format_error() {
        let good = sign_plain("t", "1", "2");
        for byte in 0..=255u8 {
            for position in [0usize, 39] {
                let mut text = good.as_str().as_bytes().to_vec();
                text[position] = byte;
                let Ok(text) = String::from_utf8(text) else {
                    continue;
                };
                let result = verify_plain("t", "1", "2", &text);
                if byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) {
                    assert!(!matches!(result, Err(Error::SignatureFormat { .. })));
                } else {
                    assert!(
                        matches!(result, Err(Error::SignatureFormat { .. })),
                        "{byte}"
                    );
                }
            }
        }
    }

    /// Regression: upper-case hex used to verify. The platform and every SDK compare the
    /// lower-case text exactly, so any other spelling is a forgery attempt, refused as −40001.
    #[test]
    fn only_lower_case_hex_verifies() {
        let good = sign_plain("t", "1", "2");
        assert!(verify_plain("t", "1", "2", good.as_str()).is_ok());
        let upper = good.as_str().to_ascii_uppercase();
        assert_ne!(upper, good.as_str(), "the digest has a letter digit");
        let error = verify_plain("t", "1", "2", &upper).unwrap_err();
        assert_eq!(error.code(), -40001);
        let message = sign_message("t", "1", "2", "x");
        let mut mixed = message.as_str().to_owned();
        let at = mixed.find(|c: char| c.is_ascii_lowercase()).unwrap();
        mixed.replace_range(at..=at, &mixed[at..=at].to_ascii_uppercase());
        assert_eq!(
            verify_message("t", "1", "2", "x", &mixed)
                .unwrap_err()
                .code(),
            -40001
        );
    }

    #[test]
    fn plain_and_message_signatures_differ() {
        let plain = sign_plain("t", "1", "2");
        assert!(verify_message("t", "1", "2", "", plain.as_str()).is_ok());
        assert!(verify_message("t", "1", "2", "x", plain.as_str()).is_err());
    }
}
