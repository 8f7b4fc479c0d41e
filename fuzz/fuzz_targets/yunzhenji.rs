//! yunzhenji's desk reader and answer reader (`kefu_payload::yunzhenji`, protocols.md §7), on
//! untrusted input. The input is read as text (UTF-8, lossily), its first line a batch size:
//!
//! * as a desk body: `read_desk_message` accepts or refuses it without panicking; a refusal
//!   names a field; an accepted body gives 1 ..= 20 messages, each of a documented type, whose
//!   stored payload reads back with `stored_message` and goes into a body that is JSON with
//!   every `api_send_id` in order;
//! * as an answer: `classify_batch` gives exactly one attempt per message for every status, a
//!   success only for a 2xx with errcode 0.
#![no_main]

use kefu_client::kefu_core::Class;
use kefu_fuzz::fields;
use kefu_payload::yunzhenji::{
    Account, classify_batch, read_desk_message, send_body, stored_message,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let [size, rest] = fields::<2>(&text);
    let size = size.trim().parse::<usize>().unwrap_or(2).clamp(1, 5);
    desk(rest);
    answer(rest.as_bytes(), size);
});

fn desk(text: &str) {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return;
    };
    match read_desk_message(&body) {
        Ok(read) => {
            assert!(!read.target_wxid.is_empty());
            assert!((1..=20).contains(&read.messages.len()));
            let mut stored = Vec::new();
            for (id, message) in (1_i64..).zip(&read.messages) {
                assert!(matches!(
                    message.msg_type,
                    "text" | "announcement" | "picture" | "link" | "file" | "voice"
                ));
                stored.push((id, stored_message(&message.to_json()).expect("stored")));
            }
            let account = Account { app_id: "A", access_token: "T", wxid: "W" };
            let body = send_body(account, &read.target_wxid, stored);
            let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let ids: Vec<&str> = value["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["api_send_id"].as_str().expect("api_send_id"))
                .collect();
            let want: Vec<String> = (1..=read.messages.len()).map(|i| i.to_string()).collect();
            assert_eq!(ids, want);
        }
        Err(invalid) => {
            assert!(!invalid.field.is_empty());
            assert!(!invalid.message.is_empty());
        }
    }
}

fn answer(body: &[u8], size: usize) {
    let ids: Vec<String> = (1..=size).map(|i| i.to_string()).collect();
    for status in [200, 404, 502] {
        let attempts = classify_batch(status, body, &ids);
        assert_eq!(attempts.len(), size);
        for attempt in attempts {
            assert!(!attempt.message.is_empty());
            if attempt.class == Class::Success {
                assert_eq!((status, attempt.code), (200, Some(0)));
            }
        }
    }
}
