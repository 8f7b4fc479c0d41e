//! yunzhenji's callbacks (`kefu_payload::yunzhenji::parse_callback`, protocols.md §7.2), on
//! untrusted bodies.
//!
//! * any bytes: no panic, the same answer twice, and every id found is non-empty and trimmed;
//! * any JSON value wrapped as `{"event":KIND,"data":value}`: read as that kind, whatever the
//!   value holds (the top-level event wins over nested ones).
#![no_main]

use kefu_payload::yunzhenji::{CallbackKind, parse_callback};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = parse_callback(data);
    assert_eq!(first, parse_callback(data));
    if let Ok(callback) = &first {
        for id in [&callback.api_send_id, &callback.api_send_svrid].into_iter().flatten() {
            assert!(!id.is_empty() && id.trim() == id, "{id:?}");
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for kind in [CallbackKind::ChatMsg, CallbackKind::ChatMsgSendFail] {
        let wrapped = serde_json::json!({"event": kind.as_str(), "data": value});
        let callback = parse_callback(wrapped.to_string().as_bytes()).expect("a wrapped callback");
        assert_eq!(callback.kind, kind);
    }
});
