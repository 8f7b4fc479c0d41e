//! WeCom-style URL verification (`verify_url`: check `msg_signature` over the encrypted
//! `echostr`, then decrypt it).
//!
//! The input is `token\nkey\nreceive_id\nmsg_signature\ntimestamp\nnonce\nechostr` (UTF-8,
//! lossily); an invalid key line means the sample key. Asserted:
//!
//! * on the input as given, `verify_url` equals `verify_signature` followed by `decrypt`, error
//!   for error, and an accepted echostr re-encrypts to itself;
//! * an echostr built from the input (the `echostr` line as the message, the `nonce` line's first
//!   16 bytes as random prefix) and signed is accepted with or without whitespace around it
//!   (signed as sent), and gives back the message, receive-id and prefix; its signature in upper
//!   case is −40001 (only the platform's lower-case spelling verifies);
//! * the same echostr with a changed signature is −40001 (mismatch), and form-decoded (each `+`
//!   read as a space, as a double decoding does) is −40001 as well: the signature covers the text
//!   the platform sent.
#![no_main]

use kefu_fuzz::{SAMPLE_KEY, check_crypt_error, fields, must};
use libfuzzer_sys::fuzz_target;
use wxbizmsgcrypt::{Error, MsgCrypt, SignatureKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let [
        token,
        key,
        receive_id,
        msg_signature,
        timestamp,
        nonce,
        echostr,
    ] = fields::<7>(&text);
    let crypt = MsgCrypt::new(token, key, receive_id)
        .unwrap_or_else(|_| must(MsgCrypt::new(token, SAMPLE_KEY, receive_id)));

    let found = crypt.verify_url(msg_signature, timestamp, nonce, echostr);
    let expected = crypt
        .verify_signature(msg_signature, timestamp, nonce, echostr)
        .and_then(|()| crypt.decrypt(echostr));
    assert_eq!(found, expected);
    match &found {
        Ok(plain) => {
            let mut random = [0u8; 16];
            random.copy_from_slice(plain.random());
            assert_eq!(
                must(crypt.encrypt_with_random(&random, plain.message())),
                echostr.trim_ascii()
            );
        }
        Err(error) => check_crypt_error(error),
    }

    let mut random = [0u8; 16];
    for (slot, byte) in random.iter_mut().zip(nonce.bytes()) {
        *slot = byte;
    }
    let sealed = must(crypt.encrypt_with_random(&random, echostr.as_bytes()));
    let signature = crypt.sign(timestamp, nonce, &sealed);
    let plain = must(crypt.verify_url(signature.as_str(), timestamp, nonce, &sealed));
    assert_eq!(plain.message(), echostr.as_bytes());
    assert_eq!(plain.receive_id(), receive_id.as_bytes());
    assert_eq!(plain.random(), random);
    let upper = signature.as_str().to_ascii_uppercase();
    if upper != signature.as_str() {
        let refused = crypt.verify_url(&upper, timestamp, nonce, &sealed);
        assert_eq!(refused.map(|_| ()).map_err(|e| e.code()), Err(-40001));
    }

    let spaced = format!("  {sealed}\n");
    let spaced_signature = crypt.sign(timestamp, nonce, &spaced);
    let plain = must(crypt.verify_url(spaced_signature.as_str(), timestamp, nonce, &spaced));
    assert_eq!(plain.message(), echostr.as_bytes());

    let mismatch = Err(Error::SignatureMismatch {
        kind: SignatureKind::Message,
    });
    let mut changed = signature.as_str().as_bytes().to_vec();
    changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
    let changed = String::from_utf8_lossy(&changed).into_owned();
    assert_eq!(
        crypt.verify_url(&changed, timestamp, nonce, &sealed),
        mismatch
    );
    if sealed.contains('+') {
        let form_decoded = sealed.replace('+', " ");
        assert_eq!(
            crypt.verify_url(signature.as_str(), timestamp, nonce, &form_decoded),
            mismatch
        );
    }
});
