//! The OA/MP `cgi-bin` formats of `kefu_payload::cgibin`, on untrusted input.
//!
//! The input is read as text (UTF-8, lossily), its first line a byte budget:
//!
//! * as a desk body (JSON) for both account kinds: `read_desk_message` accepts or refuses it
//!   without panicking; a refusal names a field; every accepted body is one JSON object whose
//!   `msgtype` the kind carries, without a `\u` escape, and text parts fit the budget unless one
//!   part is a single link or character;
//! * as text to split: the parts are non-empty, concatenate to the input, and fit the budget
//!   unless a part is one link or one character;
//! * as an answer: `classify`, `classify_token` and the readers never panic, and a code read is
//!   the code reported.
#![no_main]

use kefu_fuzz::{fields, has_unicode_escape};
use kefu_payload::cgibin::{
    AccountKind, Call, CgiReply, Message, MsgType, TokenReply, classify, classify_token,
    read_desk_message, split_text,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let [budget, rest] = fields::<2>(&text);
    let budget = budget.trim().parse::<usize>().unwrap_or(64).clamp(4, 4096);
    desk(rest, budget);
    split(rest, budget);
    answers(rest.as_bytes());
});

fn desk(text: &str, budget: usize) {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return;
    };
    for kind in [AccountKind::OfficialAccount, AccountKind::MiniProgram] {
        match read_desk_message(kind, &body, budget) {
            Ok(sends) => {
                assert!(!sends.is_empty());
                for send in sends {
                    let json = send.to_json();
                    let wire = String::from_utf8(json.clone()).expect("UTF-8");
                    assert!(!has_unicode_escape(&wire), "{wire}");
                    let value: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
                    let msg_type = MsgType::parse(value["msgtype"].as_str().expect("msgtype"))
                        .expect("a known msgtype");
                    assert!(kind.carries(msg_type));
                    if let Message::Text(text) = &send.message {
                        assert!(!text.content.is_empty());
                        assert!(
                            text.content.len() <= budget
                                || text.content.chars().count() == 1
                                || text.content.to_ascii_lowercase().starts_with("<a"),
                            "{:?} over {budget}",
                            text.content
                        );
                    }
                }
            }
            Err(invalid) => {
                assert!(!invalid.field.is_empty());
                assert!(!invalid.message.is_empty());
            }
        }
    }
}

fn split(text: &str, budget: usize) {
    let parts = split_text(text, budget);
    assert_eq!(parts.concat(), text);
    for part in parts {
        assert!(!part.is_empty());
        assert!(
            part.len() <= budget
                || part.chars().count() == 1
                || part.to_ascii_lowercase().starts_with("<a"),
            "{part:?} over {budget}"
        );
    }
}

fn answers(body: &[u8]) {
    let reply = CgiReply::parse(body);
    for status in [200, 404, 429, 502] {
        for call in [Call::Send, Call::Typing] {
            let attempt = classify(call, status, body);
            if status == 200 {
                assert_eq!(attempt.code, reply.as_ref().and_then(|r| r.code));
            }
        }
        let _ = classify_token(status, body);
    }
    let _ = TokenReply::parse(body);
}
