//! The wire format of the company gateway's `sendCustomerMessage` (protocols.md §8), without
//! I/O: the desk's message read into the body, and the answer classified.
//!
//! The gateway wraps WeChat's answer: `{"code":200,"msg":"操作成功","data":{"errcode","errmsg"}}`,
//! and `code` is 200 even when WeChat refused the message, so success needs all three of HTTP
//! 2xx, `code == 200` and `data.errcode == 0`.

use crate::unreadable::unreadable;
use kefu_core::{Attempt, Class, Invalid, Reason};
use serde_json::{Map, Value, json};

use crate::cgibin::desk::{key_name, openid, string};
use crate::cgibin::response::integer;
use crate::cgibin::{Call, classify as classify_cgibin};

/// The `system` header's value unless set: the calling-system identifier the gateway's page
/// documents. Here, next to the wire format, so that the client and the sandbox agree on it.
pub const DEFAULT_SYSTEM: &str = "NEW_MEMBER";

/// The longest text accepted, in bytes: the gateway presumably sends an OA text message, whose
/// limit is 2,048 bytes (45002, protocols.md §5.4).
pub const MAX_TEXT_BYTES: usize = 2048;

/// A desk's message read: the user and the body to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskMessage {
    /// The user's OpenID.
    pub openid: String,
    /// `{"openId","msg"}`, raw UTF-8 JSON.
    pub payload: Vec<u8>,
}

/// Reads a desk's `{"openid","msg"}` (without `account`). `msg` must be a string: the gateway
/// documents text only.
///
/// ```
/// use kefu_payload::gateway::read_desk_message;
/// let body = serde_json::json!({"openid": "oUSER", "msg": "客服消息"});
/// let read = read_desk_message(body.as_object().unwrap()).unwrap();
/// assert_eq!(read.payload, r#"{"msg":"客服消息","openId":"oUSER"}"#.as_bytes());
/// ```
pub fn read_desk_message(body: &Map<String, Value>) -> Result<DeskMessage, Invalid> {
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "openid" | "msg"))
    {
        return Err(Invalid::new(
            key_name(key),
            "is not a field of a message to a gateway account (openid, msg)",
        ));
    }
    let openid = openid(body.get("openid"), "openid")?;
    let text = match body.get("msg") {
        None | Some(Value::Null) => {
            return Err(Invalid::new("msg", "is required: the text to send"));
        }
        Some(value @ Value::String(_)) => string(value, "msg", "text")?,
        Some(_) => {
            return Err(Invalid::new(
                "msg",
                "must be a string: the company gateway documents text messages only",
            ));
        }
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(Invalid::new(
            "msg",
            format!(
                "is {} bytes; the gateway's WeChat text takes at most {MAX_TEXT_BYTES} (45002)",
                text.len()
            ),
        )
        .with_code(Some(45002)));
    }
    let payload = json!({"openId": openid, "msg": text})
        .to_string()
        .into_bytes();
    Ok(DeskMessage { openid, payload })
}

/// The attempt a gateway answer comes to (protocols.md §8.2, §9.1):
///
/// * HTTP 2xx, `code` 200 and `data.errcode` 0 (numbers or numeric strings): success;
/// * `code` 200 with another `data.errcode`: WeChat's code, classified by the OA table
///   ([`cgibin::classify`](crate::cgibin::classify)) with its reason and `rid`. The token codes
///   40001, 40014 and 42001 are the gateway's own token trouble, which this relay cannot
///   refresh: they stay [`Class::RefreshReplay`], so that the relay's policy replays once at
///   once (the gateway may have refreshed meanwhile) and then fails with reason `config`, which
///   is what they are if they persist: an operator must look at the gateway;
/// * another `code`: terminal (unknown) with the gateway's `msg`;
/// * HTTP 5xx, a body that is not JSON, or a 2xx without `code` or `data.errcode`: ambiguous;
///   another non-2xx: terminal (unknown).
///
/// ```
/// use kefu_core::{Class, Reason};
/// use kefu_payload::gateway::classify;
/// let refused = r#"{"code":200,"msg":"操作成功","data":{"errcode":40003,"errmsg":"invalid openid rid: 66f3bd4d-25a283a9"}}"#;
/// let attempt = classify(200, refused.as_bytes());
/// assert_eq!(attempt.class, Class::Terminal(Reason::Recipient));
/// assert_eq!(attempt.rid.as_deref(), Some("66f3bd4d-25a283a9"));
/// ```
pub fn classify(status: u16, body: &[u8]) -> Attempt {
    let ok_status = (200..300).contains(&status);
    let unreadable = |what: &str| {
        unreadable(
            status,
            what,
            "the message may have been delivered, so it is not resent",
        )
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return unreadable("the answer is not a JSON object");
    };
    if status >= 500 {
        return unreadable("a server error");
    }
    let Some(code) = map.get("code").and_then(integer) else {
        return unreadable("no numeric code");
    };
    let gateway_msg = map.get("msg").and_then(Value::as_str).unwrap_or("");
    if code != 200 || !ok_status {
        return Attempt::new(
            Class::Terminal(Reason::Unknown),
            Some(code),
            format!("HTTP {status}, gateway code {code} (msg {gateway_msg:?})"),
        );
    }
    let data = match map.get("data") {
        Some(Value::Object(data)) if data.get("errcode").and_then(integer).is_some() => data,
        _ => return unreadable("code 200 without a numeric data.errcode"),
    };
    let wechat = classify_cgibin(
        Call::Send,
        status,
        Value::Object(data.clone()).to_string().as_bytes(),
    );
    let message = match wechat.class {
        Class::Success => "ok".to_owned(),
        Class::RefreshReplay => format!(
            "WeChat {}: the gateway's own access token; replayed once, then an operator must check the gateway",
            wechat.message
        ),
        _ => format!("WeChat {} (through the gateway)", wechat.message),
    };
    Attempt { message, ..wechat }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: Value, errcode: Value) -> Vec<u8> {
        json!({"code": code, "msg": "操作成功", "data": {"errcode": errcode, "errmsg": "m rid: r-1"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn success_needs_code_200_and_errcode_0() {
        assert_eq!(
            classify(200, &answer(json!(200), json!(0))).class,
            Class::Success
        );
        assert_eq!(
            classify(200, &answer(json!("200"), json!("0"))).class,
            Class::Success
        );
        let refused = classify(200, &answer(json!(200), json!(40003)));
        assert_eq!(refused.class, Class::Terminal(Reason::Recipient));
        assert_eq!(
            (refused.code, refused.rid.as_deref()),
            (Some(40003), Some("r-1"))
        );
        let as_string = classify(200, &answer(json!(200), json!("45015")));
        assert_eq!(as_string.class, Class::Terminal(Reason::WindowClosed));
        for token in [40001, 40014, 42001] {
            let attempt = classify(200, &answer(json!(200), json!(token)));
            assert_eq!(attempt.class, Class::RefreshReplay);
            assert!(attempt.message.contains("gateway"), "{}", attempt.message);
        }
    }

    #[test]
    fn gateway_failures() {
        let attempt = classify(200, br#"{"code":402,"msg":"no permission"}"#);
        assert_eq!(attempt.class, Class::Terminal(Reason::Unknown));
        assert_eq!(attempt.code, Some(402));
        assert!(attempt.message.contains("no permission"));
        assert_eq!(
            classify(502, &answer(json!(200), json!(0))).class,
            Class::Ambiguous
        );
        assert_eq!(classify(200, b"<html>").class, Class::Ambiguous);
        assert_eq!(classify(200, br#"{"code":200}"#).class, Class::Ambiguous);
        assert_eq!(classify(200, br#"{"msg":"x"}"#).class, Class::Ambiguous);
        assert_eq!(
            classify(403, b"forbidden").class,
            Class::Terminal(Reason::Unknown)
        );
    }

    #[test]
    fn the_desk_sends_text_only() {
        let read = |body: Value| read_desk_message(body.as_object().unwrap());
        let err = read(json!({"openid": "o", "msg": {"image": {"media_id": "M"}}})).unwrap_err();
        assert_eq!(err.field, "msg");
        assert!(err.message.contains("text"), "{}", err.message);
        assert_eq!(read(json!({"msg": "x"})).unwrap_err().field, "openid");
        assert_eq!(read(json!({"openid": "o"})).unwrap_err().field, "msg");
        assert_eq!(
            read(json!({"openid": "o", "msg": ""})).unwrap_err().field,
            "msg"
        );
        assert_eq!(
            read(json!({"openid": "o", "msg": "x", "channel": 0}))
                .unwrap_err()
                .field,
            "channel"
        );
        let long = read(json!({"openid": "o", "msg": "x".repeat(MAX_TEXT_BYTES + 1)})).unwrap_err();
        assert_eq!(long.code, Some(45002));
        assert_eq!(
            read(json!({"openid": "o", "msg": "hi"})).unwrap().openid,
            "o"
        );
    }
}
