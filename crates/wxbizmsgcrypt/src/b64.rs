//! Base64 of the ciphertext: SIMD on the hot path, the `base64` crate to name what is wrong.
//!
//! `base64-simd` (AVX2/SSSE3/NEON, chosen at run time) encodes and decodes several times faster
//! than the `base64` crate, and appends to a `String` without a UTF-8 validation pass. Its
//! `STANDARD` engine is exactly as strict as the `base64` crate's `STANDARD` engine with canonical
//! padding: both accept only the standard alphabet, require `=` padding to a multiple of four and
//! reject non-zero unused bits in the last symbol (the differential tests below check this). Its
//! error, however, says nothing about where or why, so a rejected text is decoded once more by the
//! `base64` crate, which names the offending byte and its offset. That second pass only runs on
//! input that fails anyway.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::Base64Error;
use crate::key::base64_reason;

/// Appends the base64 encoding of `data` to `out`, padded with `=`.
#[inline]
pub(crate) fn encode_append(data: &[u8], out: &mut String) {
    base64_simd::STANDARD.encode_append(data, out);
}

/// Appends the decoding of the canonical base64 `text` to `buf`.
///
/// On failure `buf` is left as it was and the error names the reason, as the `base64` crate
/// reports it.
pub(crate) fn decode_append(text: &[u8], buf: &mut Vec<u8>) -> Result<(), Base64Error> {
    let start = buf.len();
    if base64_simd::STANDARD.decode_append(text, buf).is_ok() {
        return Ok(());
    }
    buf.truncate(start);
    decode_append_slow(text, buf)
}

/// The `base64` crate's verdict: its error, or (should the two decoders ever disagree) its
/// decoding, so that nothing it accepts is refused.
#[cold]
fn decode_append_slow(text: &[u8], buf: &mut Vec<u8>) -> Result<(), Base64Error> {
    let start = buf.len();
    buf.resize(start + text.len() / 4 * 3 + 3, 0);
    match STANDARD.decode_slice(text, &mut buf[start..]) {
        Ok(written) => {
            buf.truncate(start + written);
            Ok(())
        }
        Err(error) => {
            buf.truncate(start);
            Err(base64_reason(error, text.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the `base64` crate alone says, as the crate did before `base64-simd`.
    fn reference(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
        let mut buf = vec![0u8; text.len() / 4 * 3 + 3];
        let written = STANDARD
            .decode_slice(text, &mut buf)
            .map_err(|e| base64_reason(e, text.len()))?;
        buf.truncate(written);
        Ok(buf)
    }

    fn simd_accepts(text: &[u8]) -> Option<Vec<u8>> {
        base64_simd::STANDARD.decode_to_vec(text).ok()
    }

    /// Every ending of up to four characters from an alphabet that covers the cases the two
    /// decoders could treat differently: unused bits, padding, and bytes outside the alphabet.
    /// The stems put the ending after nothing, after one quantum, and where the SIMD loop runs.
    #[test]
    #[cfg_attr(miri, ignore = "70 000 texts; native runs cover it")]
    fn both_decoders_agree_on_every_short_ending() {
        const ALPHABET: &[u8; 16] = b"AQgwBh/+9z=-_ .\n";
        let stems: [&[u8]; 3] = [b"", b"QUJD", b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0"];
        for len in 0..=4u32 {
            for n in 0..16usize.pow(len) {
                for stem in stems {
                    let mut text = stem.to_vec();
                    text.extend((0..len).map(|i| ALPHABET[n / 16usize.pow(i) % 16]));
                    assert_eq!(
                        simd_accepts(&text),
                        reference(&text).ok(),
                        "{:?}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
    }

    #[test]
    fn errors_name_the_reason_as_before() {
        for text in [
            &b"QUJD RA=="[..],
            b"QUJDRA=",
            b"QUJDRB==",
            b"QUJDRA==QUJD",
            b"QUJD====",
            b"QU-D",
            b"QUJDRA\n=",
        ] {
            let mut buf = b"kept".to_vec();
            assert_eq!(
                decode_append(text, &mut buf),
                Err(reference(text).unwrap_err()),
                "{:?}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(buf, b"kept");
        }
    }

    #[test]
    fn encode_appends() {
        let mut out = String::from("x");
        encode_append(b"\xff\x00\x10abc", &mut out);
        assert_eq!(out, format!("x{}", STANDARD.encode(b"\xff\x00\x10abc")));
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
        fn decoders_agree_on_arbitrary_text(text in "[A-Za-z0-9+/=\\-_ \n]{0,80}") {
            let mut buf = Vec::new();
            let ours = decode_append(text.as_bytes(), &mut buf).map(|()| buf);
            prop_assert_eq!(ours.clone(), reference(text.as_bytes()));
            prop_assert_eq!(ours.ok(), simd_accepts(text.as_bytes()));
        }

        #[test]
        #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
        fn decoders_agree_on_mutated_encodings(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            position in any::<prop::sample::Index>(),
            replacement in prop::sample::select(b"A/+=\x00 -_zg".to_vec()),
            truncate in 0usize..4,
        ) {
            let mut text = STANDARD.encode(&bytes).into_bytes();
            if !text.is_empty() {
                let i = position.index(text.len());
                text[i] = replacement;
            }
            text.truncate(text.len().saturating_sub(truncate));
            let mut buf = Vec::new();
            let ours = decode_append(&text, &mut buf).map(|()| buf);
            prop_assert_eq!(ours.clone(), reference(&text));
            prop_assert_eq!(ours.ok(), simd_accepts(&text));
        }

        #[test]
        #[cfg_attr(miri, ignore = "slow interpreted; native runs cover it")]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut text = String::new();
            encode_append(&bytes, &mut text);
            prop_assert_eq!(&text, &STANDARD.encode(&bytes));
            let mut buf = Vec::new();
            decode_append(text.as_bytes(), &mut buf).unwrap();
            prop_assert_eq!(buf, bytes);
        }
    }
}
