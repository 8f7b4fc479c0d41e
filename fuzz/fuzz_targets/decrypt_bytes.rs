//! Decryption of arbitrary bytes, on both sides of the cipher.
//!
//! * As the ciphertext: the input is base64-encoded and decrypted. An empty input must be the
//!   empty-base64 error, a length that is not a multiple of 32 the ciphertext-length error, and a
//!   plaintext that comes out must re-encrypt (with its random prefix and receive-id) to the same
//!   text.
//! * As the plaintext: the input, completed to whole 32-byte blocks with correct padding unless
//!   it already is whole blocks (then its last byte is the pad), is encrypted with raw AES-CBC
//!   and decrypted. The result must equal a straightforward model of protocols.md §3.5: the same
//!   error variant with the same values, or the same message, receive-id and random prefix.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kefu_fuzz::{BOT_APPID, SAMPLE_KEY, bot_crypt, check_crypt_error, must, raw_encrypt};
use libfuzzer_sys::fuzz_target;
use wxbizmsgcrypt::{Base64Error, Error, MsgCrypt, PAD_BLOCK, RANDOM_LEN};

fuzz_target!(|data: &[u8]| {
    as_ciphertext(data);
    as_plaintext(data);
});

fn as_ciphertext(data: &[u8]) {
    let crypt = bot_crypt();
    let encrypt = STANDARD.encode(data);
    match crypt.decrypt_any_receive_id(&encrypt) {
        Ok(plain) => {
            let mut random = [0u8; RANDOM_LEN];
            random.copy_from_slice(plain.random());
            let same_account = must(MsgCrypt::new("token", SAMPLE_KEY, plain.receive_id()));
            assert_eq!(
                must(same_account.encrypt_with_random(&random, plain.message())),
                encrypt
            );
        }
        Err(error) => {
            check_crypt_error(&error);
            if data.is_empty() {
                assert_eq!(
                    error,
                    Error::Base64 {
                        reason: Base64Error::Empty
                    }
                );
            } else if !data.len().is_multiple_of(PAD_BLOCK) {
                assert_eq!(error, Error::CiphertextLength { len: data.len() });
            } else {
                assert!(
                    matches!(
                        error,
                        Error::PadOutOfRange { .. }
                            | Error::PadBytesMismatch { .. }
                            | Error::BufferTooShort { .. }
                            | Error::MessageLengthOutOfRange { .. }
                    ),
                    "{error:?} for a well-formed ciphertext"
                );
            }
        }
    }
}

/// What decryption of the padded plaintext `full` must give (protocols.md §3.5), written for
/// clarity rather than constant time: the message and the receive-id.
fn model(full: &[u8], expected_id: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let len = full.len();
    let pad = full[len - 1];
    if pad == 0 || usize::from(pad) > PAD_BLOCK {
        return Err(Error::PadOutOfRange { pad });
    }
    if full[len - usize::from(pad)..]
        .iter()
        .any(|&byte| byte != pad)
    {
        return Err(Error::PadBytesMismatch { pad });
    }
    let body = len - usize::from(pad);
    if body < RANDOM_LEN + 4 {
        return Err(Error::BufferTooShort { len: body });
    }
    let msg_len = u32::from_be_bytes([full[16], full[17], full[18], full[19]]);
    let available = body - RANDOM_LEN - 4;
    if msg_len as usize > available {
        return Err(Error::MessageLengthOutOfRange { msg_len, available });
    }
    let msg_end = RANDOM_LEN + 4 + msg_len as usize;
    let message = full[RANDOM_LEN + 4..msg_end].to_vec();
    let receive_id = full[msg_end..body].to_vec();
    if receive_id != expected_id {
        return Err(Error::ReceiveIdMismatch {
            found: String::from_utf8_lossy(&receive_id).into_owned(),
        });
    }
    Ok((message, receive_id))
}

fn as_plaintext(data: &[u8]) {
    let mut full = data.to_vec();
    if full.is_empty() || !full.len().is_multiple_of(PAD_BLOCK) {
        let pad = PAD_BLOCK - full.len() % PAD_BLOCK;
        full.resize(full.len() + pad, pad as u8);
    }
    let encrypt = raw_encrypt(&full);
    let crypt = bot_crypt();
    let found = crypt.decrypt(&encrypt).map(|plain| {
        assert_eq!(plain.random(), &full[..RANDOM_LEN]);
        (plain.message().to_vec(), plain.receive_id().to_vec())
    });
    assert_eq!(found, model(&full, BOT_APPID.as_bytes()));
    if let Err(error) = &found {
        check_crypt_error(error);
    }
}
