//! The outbound plaintexts: `sendmsg` ([`SendMsg`]) above all, and `kefustate/get` and
//! `kefustate/change`.
//!
//! The input is used twice:
//!
//! * as structured input (`arbitrary`): the builder accepts a message exactly when the
//!   platform's rules hold (otherwise the same error, in the same order: openid, msg, appid,
//!   channel, then the length bounds of `kefu_payload::limits`); `to_xml` fails exactly when a field holds a character XML 1.0 cannot carry (the
//!   first one, in field order); and `from_xml` reads back every field equal, the `msg` as
//!   `Msg::from_wire` of what was written (text that is itself rich JSON reads as rich, as on the
//!   platform). Rich content round-trips through its wire JSON unchanged.
//! * as text (UTF-8, lossily): whatever `SendMsg::from_xml`, `KefuStateGet::from_xml` or
//!   `KefuStateChange::from_xml` accepts writes back, and parse → write → parse is stable, value
//!   and text; failures are −40002 (a parse error, or a platform rule found while parsing).
#![no_main]

use arbitrary::Unstructured;
use kefu_fuzz::{expected_unrepresentable, must, optional_string, stable, string};
use kefu_payload::{
    Channel, Error, Event, KefuStateChange, KefuStateGet, Msg, SendMsg, Stage, limits,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_values(&mut Unstructured::new(data));
    let text = String::from_utf8_lossy(data);
    as_text(&text);
});

/// Parse failures of the plaintext readers: −40002, either malformed or a platform rule.
fn check_read_error(error: &Error) {
    assert_eq!(error.code(), -40002, "{error:?}");
    assert!(error.is_parse() || error.is_validation(), "{error:?}");
    assert!(!error.to_string().is_empty());
}

fn as_text(text: &str) {
    let read = [
        stable(text, SendMsg::from_xml, SendMsg::to_xml).err(),
        stable(text, KefuStateGet::from_xml, KefuStateGet::to_xml).err(),
        stable(text, KefuStateChange::from_xml, KefuStateChange::to_xml).err(),
    ];
    for error in read.iter().flatten() {
        check_read_error(error);
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn as_values(u: &mut Unstructured<'_>) {
    let openid = string(u);
    let channel = Channel::ALL[usize::from(u.arbitrary::<u8>().unwrap_or(0)) % Channel::ALL.len()];
    let msg = kefu_fuzz::msg(u);
    let appid = optional_string(u);
    let event = match u.int_in_range(0..=4u8).unwrap_or(0) {
        0 => None,
        n => Some(Event::ALL[usize::from(n - 1)]),
    };
    let kefuname = optional_string(u);
    let kefuavatar = optional_string(u);
    let ans_node_name = optional_string(u);

    if !matches!(msg, Msg::Text(_)) {
        assert_eq!(
            Msg::from_wire(&msg.to_wire()),
            msg,
            "rich content round-trips"
        );
    }

    let mut builder = SendMsg::builder(openid.as_str(), channel, msg.clone());
    if let Some(appid) = &appid {
        builder = builder.appid(appid.as_str());
    }
    if let Some(event) = event {
        builder = builder.event(event);
    }
    if let Some(kefuname) = &kefuname {
        builder = builder.kefuname(kefuname.as_str());
    }
    if let Some(kefuavatar) = &kefuavatar {
        builder = builder.kefuavatar(kefuavatar.as_str());
    }
    if let Some(ans_node_name) = &ans_node_name {
        builder = builder.ans_node_name(ans_node_name.as_str());
    }

    let stage = Stage::Build;
    let rule = if openid.is_empty() {
        Some(Error::EmptyField {
            field: "openid",
            stage,
        })
    } else if msg.is_empty() {
        Some(Error::EmptyField {
            field: "msg",
            stage,
        })
    } else if channel.requires_appid() && non_empty(&appid).is_none() {
        Some(Error::AppidRequired { channel, stage })
    } else if !channel.is_open() {
        Some(Error::ChannelNotOpen { channel, stage })
    } else {
        [
            ("openid", Some(openid.as_str()), limits::OPENID),
            ("appid", non_empty(&appid), limits::APPID),
            ("kefuname", non_empty(&kefuname), limits::KEFUNAME),
            ("kefuavatar", non_empty(&kefuavatar), limits::KEFUAVATAR),
            ("ans_node_name", non_empty(&ans_node_name), limits::ANS_NODE_NAME),
        ]
        .into_iter()
        .find_map(|(field, value, max)| {
            let len = value.unwrap_or_default().len();
            (len > max).then_some(Error::TooLong { field, len, max })
        })
    };
    let send = match (builder.build(), rule) {
        (Ok(send), None) => send,
        (Err(error), Some(rule)) => {
            assert_eq!(error, rule);
            return;
        }
        (found, rule) => panic!("build gave {found:?}, the rules say {rule:?}"),
    };
    assert_eq!(send.openid(), openid);
    assert_eq!(send.channel(), channel);
    assert_eq!(send.msg(), &msg);
    assert_eq!(send.appid(), non_empty(&appid));
    assert_eq!(send.event(), event);
    assert_eq!(send.kefuname(), non_empty(&kefuname));
    assert_eq!(send.kefuavatar(), non_empty(&kefuavatar));
    assert_eq!(send.ans_node_name(), non_empty(&ans_node_name));

    let wire = msg.to_wire();
    let optional = |field, value: &Option<String>| {
        non_empty(value).and_then(|value| expected_unrepresentable(field, value))
    };
    let unrepresentable = optional("appid", &appid)
        .or_else(|| expected_unrepresentable("openid", &openid))
        .or_else(|| expected_unrepresentable("msg", &wire))
        .or_else(|| optional("kefuname", &kefuname))
        .or_else(|| optional("kefuavatar", &kefuavatar))
        .or_else(|| optional("ans_node_name", &ans_node_name));
    let xml = match (send.to_xml(), unrepresentable) {
        (Ok(xml), None) => xml,
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected);
            return;
        }
        (found, expected) => panic!("{send:?}: wrote {found:?}, expected {expected:?}"),
    };

    let parsed = must(SendMsg::from_xml(&xml));
    assert_eq!(parsed.openid(), send.openid());
    assert_eq!(parsed.channel(), send.channel());
    assert_eq!(parsed.appid(), send.appid());
    assert_eq!(parsed.event(), send.event());
    assert_eq!(parsed.kefuname(), send.kefuname());
    assert_eq!(parsed.kefuavatar(), send.kefuavatar());
    assert_eq!(parsed.ans_node_name(), send.ans_node_name());
    assert_eq!(parsed.msg(), &Msg::from_wire(&wire));
    if parsed.msg() == send.msg() {
        assert_eq!(parsed, send);
        assert_eq!(must(parsed.to_xml()), xml);
    }
}
