//! The `wechat/sendMessage` call (protocols.md §7.1, §7.2, §9.1): the request body, and the
//! answer read into one [`Attempt`] per message.

use core::fmt;

use crate::unreadable::unreadable;
use kefu_core::{Attempt, Class, Reason};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cgibin::response::integer;

/// The most messages one call may carry (protocols.md §7.1).
pub const MAX_BATCH: usize = 5;

/// The account fields of a request. `Debug` hides the token.
#[derive(Clone, Copy)]
pub struct Account<'a> {
    /// The vendor's APP ID.
    pub app_id: &'a str,
    /// The vendor's access token: a secret, in the body.
    pub access_token: &'a str,
    /// The sending WeCom account's wxid.
    pub wxid: &'a str,
}

impl fmt::Debug for Account<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("app_id", &self.app_id)
            .field("access_token", &"<redacted>")
            .field("wxid", &self.wxid)
            .finish()
    }
}

/// A stored payload that is not a `{"msg_type","content"}` object
/// ([`Message::to_json`](super::Message::to_json)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPayload;

impl fmt::Display for BadPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stored payload is not a yunzhenji message object")
    }
}

impl std::error::Error for BadPayload {}

/// A stored payload read back, ready for [`send_body`].
pub fn stored_message(payload: &[u8]) -> Result<Map<String, Value>, BadPayload> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(map)) if map.get("msg_type").is_some_and(Value::is_string) => Ok(map),
        _ => Err(BadPayload),
    }
}

#[derive(Serialize)]
struct Body<'a> {
    app_id: &'a str,
    access_token: &'a str,
    wxid: &'a str,
    target_wxid: &'a str,
    messages: Vec<Map<String, Value>>,
}

/// The request body: `{"app_id","access_token","wxid","target_wxid","messages":[…]}`, each
/// message with `api_send_id` (the id given, as a decimal string) and `delayed_time` 0, raw
/// UTF-8 JSON.
///
/// ```
/// use kefu_payload::yunzhenji::{Account, send_body, stored_message};
/// let account = Account { app_id: "A", access_token: "T", wxid: "W" };
/// let message = stored_message(r#"{"msg_type":"text","content":{"items":[{"type":"text","text":"您好"}]}}"#.as_bytes()).unwrap();
/// let body = send_body(account, "C", vec![(42, message)]);
/// assert_eq!(
///     String::from_utf8(body).unwrap(),
///     r#"{"app_id":"A","access_token":"T","wxid":"W","target_wxid":"C","messages":[{"api_send_id":"42","content":{"items":[{"text":"您好","type":"text"}]},"delayed_time":0,"msg_type":"text"}]}"#
/// );
/// ```
pub fn send_body(
    account: Account<'_>,
    target_wxid: &str,
    messages: Vec<(i64, Map<String, Value>)>,
) -> Vec<u8> {
    let messages = messages
        .into_iter()
        .map(|(id, mut message)| {
            message.insert("api_send_id".into(), Value::String(id.to_string()));
            message.insert("delayed_time".into(), Value::from(0));
            message
        })
        .collect();
    let body = Body {
        app_id: account.app_id,
        access_token: account.access_token,
        wxid: account.wxid,
        target_wxid,
        messages,
    };
    // A struct of strings and JSON maps always serialises.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Reads a `sendMessage` answer into one attempt per message sent, in order; `ids` are the
/// `api_send_id`s sent (protocols.md §7.2, §9.1):
///
/// * HTTP 2xx, `errcode` 0 (a number or a numeric string) and a `data` entry for the message's
///   index (`idx`, or else its `api_send_id`): success, the message naming `api_send_svrid`;
///   an entry whose `api_send_id` is another message's is ambiguous;
/// * `errcode` 0 without an entry for the message: terminal (unknown), not accepted;
/// * a non-zero `errcode`: every message terminal (unknown), with the code and the vendor's
///   `message` text;
/// * a 5xx, a 2xx without `errcode` or `data`, or a body that is not JSON: ambiguous, since the
///   vendor may have taken the messages; any other non-2xx: terminal (unknown).
///
/// ```
/// use kefu_core::{Class, Reason};
/// use kefu_payload::yunzhenji::classify_batch;
/// let ids = ["7".to_owned(), "8".to_owned()];
/// let answer = br#"{"errcode":"0","data":[{"idx":1,"api_send_svrid":"S1","api_send_id":"8"}]}"#;
/// let attempts = classify_batch(200, answer, &ids);
/// assert_eq!(attempts[0].class, Class::Terminal(Reason::Unknown));
/// assert_eq!(attempts[1].class, Class::Success);
/// ```
pub fn classify_batch(status: u16, body: &[u8], ids: &[String]) -> Vec<Attempt> {
    let all = |attempt: Attempt| vec![attempt; ids.len()];
    let ok_status = (200..300).contains(&status);
    let unreadable = |what: &str| {
        unreadable(
            status,
            what,
            "the messages may have been taken, so they are not resent",
        )
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return all(unreadable("the answer is not a JSON object"));
    };
    if status >= 500 {
        return all(unreadable("a server error"));
    }
    let code = map.get("errcode").and_then(integer);
    let text = ["message", "errmsg", "msg"]
        .iter()
        .find_map(|key| map.get(*key).and_then(Value::as_str))
        .filter(|text| !text.is_empty());
    let code = match code {
        Some(code) => code,
        None => return all(unreadable("no numeric errcode")),
    };
    if code != 0 || !ok_status {
        let mut message = format!("HTTP {status}, errcode {code}: refused by yunzhenji");
        if let Some(text) = text {
            message.push_str(&format!(" (message {text:?})"));
        }
        return all(Attempt::new(
            Class::Terminal(Reason::Unknown),
            Some(code),
            message,
        ));
    }
    let Some(Value::Array(data)) = map.get("data") else {
        return all(unreadable("errcode 0 without a data array"));
    };
    let entries: Vec<&Map<String, Value>> = data.iter().filter_map(Value::as_object).collect();
    ids.iter()
        .enumerate()
        .map(|(idx, id)| per_message(&entries, idx, id))
        .collect()
}

fn per_message(entries: &[&Map<String, Value>], idx: usize, id: &str) -> Attempt {
    let echoed = |entry: &Map<String, Value>| {
        entry.get("api_send_id").and_then(|v| match v {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let by_idx = entries.iter().find(|entry| {
        entry
            .get("idx")
            .and_then(integer)
            .is_some_and(|i| usize::try_from(i).ok() == Some(idx))
    });
    let by_id = || {
        entries.iter().find(|entry| {
            entry.get("idx").and_then(integer).is_none() && echoed(entry).as_deref() == Some(id)
        })
    };
    let Some(entry) = by_idx.or_else(by_id) else {
        return Attempt::new(
            Class::Terminal(Reason::Unknown),
            Some(0),
            format!("errcode 0, but data has no entry for message {idx}: not accepted"),
        );
    };
    if let Some(other) = echoed(entry).filter(|echo| echo != id) {
        return Attempt::new(
            Class::Ambiguous,
            Some(0),
            format!(
                "data's entry for message {idx} echoes api_send_id {other:?}, not {id:?}: left for the callbacks to settle"
            ),
        );
    }
    let svrid = entry
        .get("api_send_svrid")
        .and_then(Value::as_str)
        .unwrap_or("none");
    Attempt::new(
        Class::Success,
        Some(0),
        format!("accepted (api_send_svrid {svrid:?}); delivery is confirmed by callbacks"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| i.to_string()).collect()
    }

    fn classes(status: u16, body: &str, n: usize) -> Vec<Class> {
        classify_batch(status, body.as_bytes(), &ids(n))
            .into_iter()
            .map(|a| a.class)
            .collect()
    }

    const UNKNOWN: Class = Class::Terminal(Reason::Unknown);

    #[test]
    fn per_message_outcomes() {
        let full = r#"{"errcode":0,"data":[{"idx":0,"api_send_svrid":"S0","api_send_id":"1"},{"idx":"1","api_send_svrid":"S1","api_send_id":2}]}"#;
        assert_eq!(classes(200, full, 2), [Class::Success, Class::Success]);
        let partial = r#"{"errcode":0,"data":[{"idx":1,"api_send_svrid":"S1"}]}"#;
        assert_eq!(classes(200, partial, 3), [UNKNOWN, Class::Success, UNKNOWN]);
        let by_id = r#"{"errcode":0,"data":[{"api_send_svrid":"S","api_send_id":"2"}]}"#;
        assert_eq!(classes(200, by_id, 2), [UNKNOWN, Class::Success]);
        let crossed = r#"{"errcode":0,"data":[{"idx":0,"api_send_id":"2"}]}"#;
        assert_eq!(classes(200, crossed, 1), [Class::Ambiguous]);
        let attempt = &classify_batch(200, full.as_bytes(), &ids(1))[0];
        assert!(attempt.message.contains("S0"), "{}", attempt.message);
    }

    #[test]
    fn a_refusal_fails_the_batch_with_the_message_text() {
        let attempts = classify_batch(
            200,
            r#"{"errcode":"1001","message":"wxid offline","data":[{"idx":0}]}"#.as_bytes(),
            &ids(2),
        );
        for attempt in attempts {
            assert_eq!(attempt.class, UNKNOWN);
            assert_eq!(attempt.code, Some(1001));
            assert!(
                attempt.message.contains("wxid offline"),
                "{}",
                attempt.message
            );
        }
    }

    #[test]
    fn unreadable_answers() {
        let ambiguous = vec![Class::Ambiguous; 2];
        assert_eq!(classes(200, "", 2), ambiguous);
        assert_eq!(classes(200, "<html>", 2), ambiguous);
        assert_eq!(classes(502, "bad gateway", 2), ambiguous);
        assert_eq!(classes(503, r#"{"errcode":0,"data":[]}"#, 2), ambiguous);
        assert_eq!(classes(200, "{}", 2), ambiguous);
        assert_eq!(classes(200, r#"{"errcode":"x"}"#, 2), ambiguous);
        assert_eq!(classes(200, r#"{"errcode":0}"#, 2), ambiguous);
        assert_eq!(classes(404, "not found", 2), vec![UNKNOWN; 2]);
        assert_eq!(
            classes(200, r#"{"errcode":0,"data":[]}"#, 2),
            vec![UNKNOWN; 2]
        );
    }

    #[test]
    fn stored_messages() {
        assert!(stored_message(br#"{"msg_type":"text","content":{}}"#).is_ok());
        assert_eq!(stored_message(b"<xml/>"), Err(BadPayload));
        assert_eq!(stored_message(br#"{"content":{}}"#), Err(BadPayload));
        let account = Account {
            app_id: "A",
            access_token: "SECRET",
            wxid: "W",
        };
        assert!(!format!("{account:?}").contains("SECRET"));
    }
}
