//! The inbound handoff-callback plaintext ([`HandoffCallback::parse`], protocols.md §4.7).
//!
//! The input is used twice:
//!
//! * as text (UTF-8, lossily): what parses must write back (a parsed value holds only XML
//!   characters), parse → write → parse gives the same value and the same text again, and the
//!   helpers agree with the fields; failures are −40002 parse errors;
//! * as structured input (`arbitrary`): a callback writes unless a text field holds a character
//!   XML 1.0 cannot carry (then exactly that `UnrepresentableChar`, in field order), and what is
//!   written parses back equal, except that an `assessment` above 5 is written but refused on
//!   reading, as `InvalidValue` naming `assessment`.
#![no_main]

use arbitrary::Unstructured;
use kefu_fuzz::{
    check_parse_error, expected_unrepresentable, must, optional_string, stable, string,
};
use kefu_payload::{CallbackEvent, Channel, CustomerInfo, Error, HandoffCallback, KefuState, Msg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    as_text(&text);
    as_values(&mut Unstructured::new(data));
});

fn as_text(text: &str) {
    match stable(text, HandoffCallback::parse, HandoffCallback::to_xml) {
        Ok(callback) => {
            assert_eq!(
                callback.content_msg(),
                callback.content.as_deref().map(Msg::from_wire)
            );
            assert_eq!(
                callback.known_channel(),
                callback.channel.and_then(Channel::from_code)
            );
            assert_eq!(callback.is_user_authored(), callback.from == Some(0));
            if let Some(CallbackEvent::Other(name)) = &callback.event {
                assert_eq!(
                    CallbackEvent::from_wire(name),
                    Some(CallbackEvent::Other(name.clone()))
                );
            }
        }
        Err(error) => check_parse_error(&error),
    }
}

fn as_values(u: &mut Unstructured<'_>) {
    let callback = HandoffCallback {
        userid: string(u),
        appid: string(u),
        content: optional_string(u),
        msgtype: optional_string(u),
        event: CallbackEvent::from_wire(&string(u)),
        customer_info: if u.arbitrary().unwrap_or(false) {
            Some(CustomerInfo {
                name: string(u),
                avatar: string(u),
                openid: string(u),
            })
        } else {
            None
        },
        from: u.arbitrary().unwrap_or_default(),
        kfstate: u
            .arbitrary::<Option<u8>>()
            .unwrap_or_default()
            .and_then(|code| KefuState::from_kfstate(code % 4)),
        channel: u.arbitrary().unwrap_or_default(),
        assessment: u.arbitrary().unwrap_or_default(),
        createtime: u.arbitrary().unwrap_or_default(),
    };

    let optional = |field, value: &Option<String>| {
        value
            .as_deref()
            .and_then(|value| expected_unrepresentable(field, value))
    };
    let info = callback.customer_info.as_ref();
    let expected = expected_unrepresentable("userid", &callback.userid)
        .or_else(|| expected_unrepresentable("appid", &callback.appid))
        .or_else(|| optional("msg", &callback.content))
        .or_else(|| optional("msgtype", &callback.msgtype))
        .or_else(|| {
            let event = callback.event.as_ref().map_or("", CallbackEvent::as_str);
            expected_unrepresentable("event", event)
        })
        .or_else(|| info.and_then(|i| expected_unrepresentable("name", &i.name)))
        .or_else(|| info.and_then(|i| expected_unrepresentable("avatar", &i.avatar)))
        .or_else(|| info.and_then(|i| expected_unrepresentable("openid", &i.openid)));

    let xml = match (callback.to_xml(), expected) {
        (Ok(xml), None) => xml,
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected);
            return;
        }
        (found, expected) => panic!("{callback:?}: wrote {found:?}, expected {expected:?}"),
    };
    match callback.assessment {
        Some(rating) if rating > 5 => {
            let error = HandoffCallback::parse(&xml).expect_err("assessment above 5 is refused");
            assert!(
                matches!(
                    error,
                    Error::InvalidValue {
                        field: "assessment",
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        _ => assert_eq!(must(HandoffCallback::parse(&xml)), callback),
    }
}
