//! The XML envelopes: [`XmlCallback`] (`<xml><ToUserName/><Encrypt/><AgentID/></xml>`) and
//! [`XmlReply`] (`<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`).
//!
//! The input is used twice:
//!
//! * as text (UTF-8, lossily): whatever parses must write back, and parse → write → parse gives
//!   the same value and the same text again; failures are −40002 parse errors; `extract` finds
//!   in it the same `Encrypt`, `MsgSignature`, `TimeStamp` and `Nonce` as `XmlReply::parse`;
//! * as structured input (`arbitrary`): any values write unless one holds a character XML 1.0
//!   cannot carry (then exactly that `UnrepresentableChar`), and what is written parses back
//!   equal.
#![no_main]

use arbitrary::Unstructured;
use kefu_fuzz::{
    check_parse_error, expected_unrepresentable, must, optional_string, stable, string,
};
use kefu_payload::envelope::{EnvelopeFormat, XmlCallback, XmlReply, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    as_text(&text);
    as_values(&mut Unstructured::new(data));
});

fn as_text(text: &str) {
    if let Err(error) = stable(text, XmlCallback::parse, XmlCallback::to_xml) {
        check_parse_error(&error);
    }
    let reply = stable(text, XmlReply::parse, XmlReply::to_xml);
    if let Err(error) = &reply {
        check_parse_error(error);
    }

    // extract reads the same four leaves from the trimmed text.
    let trimmed = text.trim_start_matches('\u{FEFF}').trim();
    if trimmed.starts_with('<') {
        let found = extract(text);
        match &found {
            Ok(found) => {
                assert_eq!(found.format, EnvelopeFormat::Xml);
                if let (Some(signature), Some(timestamp), Some(nonce)) =
                    (&found.msg_signature, &found.timestamp, &found.nonce)
                {
                    let reply = must(XmlReply::parse(trimmed));
                    assert_eq!(reply.encrypt, found.encrypt);
                    assert_eq!(&reply.msg_signature, signature);
                    assert_eq!(&reply.timestamp, timestamp);
                    assert_eq!(&reply.nonce, nonce);
                } else {
                    assert!(XmlReply::parse(trimmed).is_err());
                }
            }
            Err(error) => {
                check_parse_error(error);
                assert!(XmlReply::parse(trimmed).is_err());
            }
        }
    }
}

fn as_values(u: &mut Unstructured<'_>) {
    let callback = XmlCallback {
        to_user_name: optional_string(u),
        encrypt: string(u),
        agent_id: optional_string(u),
    };
    let expected = callback
        .to_user_name
        .as_deref()
        .and_then(|v| expected_unrepresentable("ToUserName", v))
        .or_else(|| expected_unrepresentable("Encrypt", &callback.encrypt))
        .or_else(|| {
            callback
                .agent_id
                .as_deref()
                .and_then(|v| expected_unrepresentable("AgentID", v))
        });
    match (callback.to_xml(), expected) {
        (Ok(xml), None) => {
            assert_eq!(must(XmlCallback::parse(&xml)), callback);
            assert_eq!(must(extract(&xml)).encrypt, callback.encrypt);
        }
        (Err(error), Some(expected)) => assert_eq!(error, expected),
        (found, expected) => panic!("{callback:?}: wrote {found:?}, expected {expected:?}"),
    }

    let reply = XmlReply {
        encrypt: string(u),
        msg_signature: string(u),
        timestamp: string(u),
        nonce: string(u),
    };
    let expected = expected_unrepresentable("Encrypt", &reply.encrypt)
        .or_else(|| expected_unrepresentable("MsgSignature", &reply.msg_signature))
        .or_else(|| expected_unrepresentable("TimeStamp", &reply.timestamp))
        .or_else(|| expected_unrepresentable("Nonce", &reply.nonce));
    match (reply.to_xml(), expected) {
        (Ok(xml), None) => {
            assert_eq!(must(XmlReply::parse(&xml)), reply);
            let found = must(extract(&xml));
            assert_eq!(found.encrypt, reply.encrypt);
            assert_eq!(found.msg_signature.as_ref(), Some(&reply.msg_signature));
            assert_eq!(found.timestamp.as_ref(), Some(&reply.timestamp));
            assert_eq!(found.nonce.as_ref(), Some(&reply.nonce));
        }
        (Err(error), Some(expected)) => assert_eq!(error, expected),
        (found, expected) => panic!("{reply:?}: wrote {found:?}, expected {expected:?}"),
    }
}
