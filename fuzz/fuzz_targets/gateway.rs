//! The company gateway's desk reader and answer classification (`kefu_payload::gateway`,
//! protocols.md §8), on untrusted input (UTF-8, lossily):
//!
//! * as a desk body: accepted only with a string `msg`, giving `{"openId","msg"}` with the same
//!   values; a refusal names a field;
//! * as an answer: `classify` never panics, and a success is only a 2xx whose `code` is 200 and
//!   whose `data.errcode` is 0.
#![no_main]

use kefu_client::kefu_core::Class;
use kefu_payload::gateway::{classify, read_desk_message};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let value = serde_json::from_str::<Value>(&text).ok();
    if let Some(Value::Object(body)) = &value {
        match read_desk_message(body) {
            Ok(read) => {
                let payload: Value = serde_json::from_slice(&read.payload).expect("JSON");
                assert_eq!(payload["openId"].as_str(), Some(read.openid.as_str()));
                assert_eq!(payload["msg"], body["msg"]);
            }
            Err(invalid) => assert!(!invalid.field.is_empty() && !invalid.message.is_empty()),
        }
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    for status in [200, 201, 400, 500] {
        let attempt = classify(status, data);
        if attempt.class == Class::Success {
            let value = value.as_ref().expect("a success is JSON");
            assert!((200..300).contains(&status));
            assert_eq!(number(&value["code"]), Some(200));
            assert_eq!(number(&value["data"]["errcode"]), Some(0));
        }
    }
});
