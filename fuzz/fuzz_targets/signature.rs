//! Signature computation and verification.
//!
//! The input is `token\ntimestamp\nnonce\nencrypt\ncandidate` (UTF-8, lossily). Asserted, for the
//! four-input `msg_signature` and the three-input plain `signature` alike:
//!
//! * a signature is 40 lowercase hex digits and does not depend on the order of the inputs;
//! * verification accepts the computed signature in lowercase only: uppercase and mixed case are
//!   format errors (−40001), as the platform and its SDKs compare the text exactly;
//! * it rejects the signature with any one digit changed, as a mismatch;
//! * the candidate is accepted exactly when it equals the signature; otherwise it is a format
//!   error naming its byte length (not 40 lower-case hex digits) or a mismatch;
//! * `MsgCrypt`'s methods agree with the free functions;
//! * the plain signature equals the message signature with an empty `encrypt`.
#![no_main]

use kefu_fuzz::{SAMPLE_KEY, check_crypt_error, fields, must};
use libfuzzer_sys::fuzz_target;
use wxbizmsgcrypt::{
    Error, MsgCrypt, Signature, SignatureKind, sign_message, sign_plain, verify_message,
    verify_plain,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let [token, timestamp, nonce, encrypt, candidate] = fields::<5>(&text);
    // Which digit to change and which letters to capitalise, taken from the input.
    let choice = data
        .iter()
        .fold(0usize, |acc, &b| acc.wrapping_mul(31) ^ usize::from(b));

    let message = sign_message(token, timestamp, nonce, encrypt);
    check_shape(&message);
    assert_eq!(sign_message(encrypt, nonce, timestamp, token), message);
    assert_eq!(sign_message(nonce, encrypt, token, timestamp), message);
    let verify = |signature: &str| verify_message(token, timestamp, nonce, encrypt, signature);
    check_verifier(SignatureKind::Message, &message, choice, candidate, verify);

    let plain = sign_plain(token, timestamp, nonce);
    check_shape(&plain);
    assert_eq!(sign_plain(nonce, token, timestamp), plain);
    assert_eq!(sign_message(token, timestamp, nonce, ""), plain);
    let verify = |signature: &str| verify_plain(token, timestamp, nonce, signature);
    check_verifier(SignatureKind::Plain, &plain, choice, candidate, verify);

    let crypt = must(MsgCrypt::new(token, SAMPLE_KEY, ""));
    assert_eq!(crypt.sign(timestamp, nonce, encrypt), message);
    assert_eq!(
        crypt.verify_signature(candidate, timestamp, nonce, encrypt),
        verify_message(token, timestamp, nonce, encrypt, candidate)
    );
    assert_eq!(
        crypt.verify_plain_signature(candidate, timestamp, nonce),
        verify_plain(token, timestamp, nonce, candidate)
    );
});

fn check_shape(signature: &Signature) {
    let text = signature.as_str();
    assert_eq!(text.len(), 40);
    assert!(
        text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{text}"
    );
    assert_eq!(signature.to_string(), text);
}

fn check_verifier(
    kind: SignatureKind,
    signature: &Signature,
    choice: usize,
    candidate: &str,
    verify: impl Fn(&str) -> Result<(), Error>,
) {
    let lower = signature.as_str();
    assert_eq!(verify(lower), Ok(()));
    let format_error = Err(Error::SignatureFormat { kind, len: 40 });
    let upper = lower.to_ascii_uppercase();
    if upper != lower {
        assert_eq!(verify(&upper), format_error);
    }
    let mixed: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if (choice >> (i % 40)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    if mixed != lower {
        assert_eq!(verify(&mixed), format_error);
    }

    let position = choice % 40;
    let mut changed = lower.as_bytes().to_vec();
    let digit = char::from(changed[position]).to_digit(16).unwrap_or(0);
    changed[position] = b"0123456789abcdef"[((digit + 1 + (choice as u32 % 15)) % 16) as usize];
    let changed = String::from_utf8_lossy(&changed).into_owned();
    assert_eq!(verify(&changed), Err(Error::SignatureMismatch { kind }));

    let lower_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let expected = if candidate.len() != 40 || !candidate.bytes().all(lower_hex) {
        Err(Error::SignatureFormat {
            kind,
            len: candidate.len(),
        })
    } else if candidate == lower {
        Ok(())
    } else {
        Err(Error::SignatureMismatch { kind })
    };
    let found = verify(candidate);
    if let Err(error) = &found {
        check_crypt_error(error);
    }
    assert_eq!(
        found, expected,
        "candidate {candidate:?}, signature {lower}"
    );
}
