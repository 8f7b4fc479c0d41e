//! The JSON envelopes: [`JsonCallback`] (`{"ToUserName","Encrypt"}`), [`OaJsonReply`],
//! [`WeComJsonReply`], and the bare Dialogue bodies [`DialogueRequest`] (`{"encrypt"}`) and
//! [`DialogueCallback`] (`{"encrypted"}`).
//!
//! The input is used twice:
//!
//! * as text (UTF-8, lossily): for each type, whatever parses writes back, and parse → write →
//!   parse gives the same value and the same text again; failures are −40002 parse errors; where
//!   `extract` also accepts the text, it finds the same ciphertext (and, for the replies, the
//!   same signature, timestamp and nonce);
//! * as structured input (`arbitrary`): any values write, parse back equal, and `extract` finds
//!   them in what was written.
#![no_main]

use arbitrary::Unstructured;
use kefu_fuzz::{check_parse_error, must, optional_string, stable, string};
use kefu_payload::Error;
use kefu_payload::envelope::{
    DialogueCallback, DialogueRequest, EnvelopeFormat, Extracted, JsonCallback, OaJsonReply,
    WeComJsonReply, extract,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    as_text(&text);
    as_values(&mut Unstructured::new(data));
});

/// Parse → write → parse is stable, for one type; returns the parsed value.
fn stable_json<T: PartialEq + core::fmt::Debug>(
    text: &str,
    parse: fn(&str) -> Result<T, Error>,
    to_json: fn(&T) -> String,
) -> Option<T> {
    stable(text, parse, |value| Ok(to_json(value)))
        .inspect_err(check_parse_error)
        .ok()
}

fn as_text(text: &str) {
    let json_callback = stable_json(text, JsonCallback::parse, JsonCallback::to_json);
    let oa = stable_json(text, OaJsonReply::parse, OaJsonReply::to_json);
    let wecom = stable_json(text, WeComJsonReply::parse, WeComJsonReply::to_json);
    let request = stable_json(text, DialogueRequest::parse, DialogueRequest::to_json);
    let callback = stable_json(text, DialogueCallback::parse, DialogueCallback::to_json);

    let Ok(found) = extract(text) else { return };
    if found.format != EnvelopeFormat::Json {
        return;
    }
    if let Some(value) = json_callback {
        assert_eq!(found.encrypt, value.encrypt);
    }
    if let Some(value) = request {
        assert_eq!(found.encrypt, value.encrypt);
    }
    if let Some(value) = callback {
        assert_eq!(found.encrypt, value.encrypted);
    }
    if let Some(value) = oa {
        assert_eq!(found.encrypt, value.encrypt);
        assert_eq!(found.msg_signature, Some(value.msg_signature));
        assert_eq!(found.timestamp, Some(value.timestamp.to_string()));
        assert_eq!(found.nonce, Some(value.nonce));
    }
    if let Some(value) = wecom {
        assert_eq!(found.encrypt, value.encrypt);
        assert_eq!(found.msg_signature, Some(value.msgsignature));
        assert_eq!(found.timestamp, Some(value.timestamp));
        assert_eq!(found.nonce, Some(value.nonce));
    }
}

fn extracted(json: &str) -> Extracted {
    let found = must(extract(json));
    assert_eq!(found.format, EnvelopeFormat::Json);
    found
}

fn as_values(u: &mut Unstructured<'_>) {
    let encrypt = string(u);
    let signature = string(u);
    let nonce = string(u);
    let timestamp: u64 = u.arbitrary().unwrap_or_default();

    let callback = JsonCallback {
        to_user_name: optional_string(u),
        encrypt: encrypt.clone(),
    };
    let json = callback.to_json();
    assert_eq!(must(JsonCallback::parse(&json)), callback);
    assert_eq!(extracted(&json).encrypt, encrypt);

    let oa = OaJsonReply {
        encrypt: encrypt.clone(),
        msg_signature: signature.clone(),
        timestamp,
        nonce: nonce.clone(),
    };
    let json = oa.to_json();
    assert_eq!(must(OaJsonReply::parse(&json)), oa);
    let found = extracted(&json);
    assert_eq!(found.encrypt, encrypt);
    assert_eq!(found.msg_signature.as_ref(), Some(&signature));
    assert_eq!(found.timestamp, Some(timestamp.to_string()));
    assert_eq!(found.nonce.as_ref(), Some(&nonce));

    let wecom = WeComJsonReply {
        encrypt: encrypt.clone(),
        msgsignature: signature.clone(),
        timestamp: timestamp.to_string(),
        nonce: nonce.clone(),
    };
    let json = wecom.to_json();
    assert_eq!(must(WeComJsonReply::parse(&json)), wecom);
    let found = extracted(&json);
    assert_eq!(found.msg_signature.as_ref(), Some(&signature));
    assert_eq!(found.timestamp, Some(timestamp.to_string()));

    let request = DialogueRequest {
        encrypt: encrypt.clone(),
    };
    let json = request.to_json();
    assert_eq!(must(DialogueRequest::parse(&json)), request);
    assert_eq!(extracted(&json).encrypt, encrypt);

    let callback = DialogueCallback {
        encrypted: encrypt.clone(),
    };
    let json = callback.to_json();
    assert_eq!(must(DialogueCallback::parse(&json)), callback);
    let found = extracted(&json);
    assert_eq!(found.encrypt, encrypt);
    assert_eq!(found.msg_signature, None);
}
