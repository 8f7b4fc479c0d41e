//! `envelope::extract`, the detector for untrusted text, and the bare forms it must see through.
//!
//! Asserted on the input as text (UTF-8, lossily):
//!
//! * after trimming (a leading byte-order mark, then whitespace), text starting with `<` is XML
//!   or an error, text starting with `{` is JSON or an error;
//! * anything else follows the bare-base64 rule exactly: empty is `UnrecognizedEnvelope` with no
//!   character, a character outside base64 and line breaks is `UnrecognizedEnvelope` naming the
//!   first one and its byte offset, and otherwise the ciphertext is the trimmed text with no
//!   signature, timestamp or nonce;
//! * every error is a −40002 parse error;
//! * a bare ciphertext wrapped in `{"encrypt"}`, `{"encrypted"}` and the XML callback is found
//!   again unchanged, and decrypting what was found never panics.
#![no_main]

use kefu_fuzz::{bot_crypt, check_crypt_error, check_parse_error, must};
use kefu_payload::Error;
use kefu_payload::envelope::{
    DialogueCallback, DialogueRequest, EnvelopeFormat, XmlCallback, extract,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let trimmed = text.trim_start_matches('\u{FEFF}').trim();
    let found = extract(&text);
    if let Err(error) = &found {
        check_parse_error(error);
    }

    if trimmed.starts_with('<') {
        if let Ok(found) = &found {
            assert_eq!(found.format, EnvelopeFormat::Xml);
        }
    } else if trimmed.starts_with('{') {
        if let Ok(found) = &found {
            assert_eq!(found.format, EnvelopeFormat::Json);
        }
    } else {
        let is_bare_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\r' | '\n');
        let offending = trimmed.char_indices().find(|(_, c)| !is_bare_char(*c));
        match (&found, trimmed.is_empty(), offending) {
            (Err(error), true, _) => {
                assert_eq!(*error, Error::UnrecognizedEnvelope { found: None })
            }
            (Err(error), false, Some(offending)) => assert_eq!(
                *error,
                Error::UnrecognizedEnvelope {
                    found: Some(offending)
                }
            ),
            (Ok(found), false, None) => {
                assert_eq!(found.format, EnvelopeFormat::Bare);
                assert_eq!(found.encrypt, trimmed);
                assert_eq!(found.msg_signature, None);
                assert_eq!(found.timestamp, None);
                assert_eq!(found.nonce, None);

                let request = DialogueRequest {
                    encrypt: found.encrypt.clone(),
                };
                assert_eq!(must(extract(&request.to_json())).encrypt, found.encrypt);
                let callback = DialogueCallback {
                    encrypted: found.encrypt.clone(),
                };
                assert_eq!(must(extract(&callback.to_json())).encrypt, found.encrypt);
                let xml = XmlCallback {
                    to_user_name: None,
                    encrypt: found.encrypt.clone(),
                    agent_id: None,
                };
                assert_eq!(must(extract(&must(xml.to_xml()))).encrypt, found.encrypt);
            }
            (found, empty, offending) => {
                panic!(
                    "extract gave {found:?} for bare text (empty: {empty}, first non-base64: {offending:?})"
                )
            }
        }
    }

    if let Ok(found) = &found
        && let Err(error) = bot_crypt().decrypt(&found.encrypt)
    {
        check_crypt_error(&error);
    }
});
