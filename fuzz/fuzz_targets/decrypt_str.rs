//! Decryption of arbitrary text.
//!
//! The input, read as UTF-8 (lossily), is decrypted twice:
//!
//! * whole, as the ciphertext, by the V2/V3 account (sample key, bot APPID);
//! * as `key\nreceive_id\nciphertext` when its first line is a valid EncodingAESKey, so that the
//!   published vectors, each with its own key and receive-id, are seeds.
//!
//! Asserted for each:
//!
//! * `decrypt`, `decrypt_any_receive_id` and `decrypt_into` agree: on the plaintext, or on the
//!   error, except that a receive-id mismatch is the only error the any-id form does not give;
//! * a plaintext re-encrypted with its recovered random prefix (and receive-id) reproduces the
//!   ciphertext exactly, so only canonical ciphertexts decrypt;
//! * surrounding ASCII whitespace changes nothing;
//! * every error has an official code and a message.
#![no_main]

use kefu_fuzz::{SAMPLE_KEY, bot_crypt, check_crypt_error, fields, must};
use libfuzzer_sys::fuzz_target;
use wxbizmsgcrypt::{Error, MsgCrypt};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&bot_crypt(), SAMPLE_KEY, &text);
    let [key, receive_id, encrypt] = fields::<3>(&text);
    if let Ok(crypt) = MsgCrypt::new("token", key, receive_id) {
        check(&crypt, key, encrypt);
    }
});

fn check(crypt: &MsgCrypt, key: &str, encrypt: &str) {
    let strict = crypt.decrypt(encrypt);
    let any = crypt.decrypt_any_receive_id(encrypt);
    match (&strict, &any) {
        (Ok(plain), Ok(any_plain)) => {
            assert_eq!(plain, any_plain);
            assert_eq!(plain.receive_id(), crypt.receive_id());
        }
        (Err(error), Ok(any_plain)) => {
            assert_ne!(any_plain.receive_id(), crypt.receive_id());
            assert_eq!(
                *error,
                Error::ReceiveIdMismatch {
                    found: String::from_utf8_lossy(any_plain.receive_id()).into_owned()
                }
            );
        }
        (Err(error), Err(any_error)) => assert_eq!(error, any_error),
        (Ok(plain), Err(any_error)) => {
            panic!("decrypt gave {plain:?} but decrypt_any_receive_id {any_error:?}")
        }
    }

    let mut buf = b"left-over".to_vec();
    match (crypt.decrypt_into(encrypt, &mut buf), &strict) {
        (Ok(borrowed), Ok(plain)) => {
            assert_eq!(borrowed.message, plain.message());
            assert_eq!(borrowed.receive_id, plain.receive_id());
        }
        (Err(error), Err(strict_error)) => assert_eq!(&error, strict_error),
        (into, strict) => panic!("decrypt_into gave {into:?} but decrypt {strict:?}"),
    }

    match &any {
        Ok(plain) => {
            assert_eq!(plain.random().len(), 16);
            let mut random = [0u8; 16];
            random.copy_from_slice(plain.random());
            let same_account = must(MsgCrypt::new("token", key, plain.receive_id()));
            let again = must(same_account.encrypt_with_random(&random, plain.message()));
            assert_eq!(
                again,
                encrypt.trim_ascii(),
                "a ciphertext that decrypts must be the canonical encryption of its plaintext"
            );
            assert_eq!(plain.clone().into_message(), plain.message());
        }
        Err(error) => check_crypt_error(error),
    }

    let padded = format!(" \t{encrypt}\r\n");
    assert_eq!(crypt.decrypt_any_receive_id(&padded), any);
}
