//! Reading `cgi-bin` answers (protocols.md §9.1) and writing the `stable_token` request (§6.1).

use core::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// The suffix the platform appends to `errmsg` when it does not send a `rid` field.
const RID_SUFFIX: &str = " rid: ";

/// The common fields of a `cgi-bin` answer.
///
/// * `errcode` as a JSON integer or a numeric string;
/// * `errmsg` as it came;
/// * `rid` from the `rid` field, or else from the ` rid: …` suffix of `errmsg`.
///
/// ```
/// use kefu_payload::cgibin::CgiReply;
/// let reply = CgiReply::parse(br#"{"errcode":"45015","errmsg":"response out of time limit rid: 5f3ded7d-22929d02"}"#).unwrap();
/// assert_eq!(reply.code, Some(45015));
/// assert_eq!(reply.rid.as_deref(), Some("5f3ded7d-22929d02"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgiReply {
    /// `errcode`, when present and numeric.
    pub code: Option<i64>,
    /// `true` when `errcode` was present (not null) but not an integer.
    pub malformed_code: bool,
    /// `errmsg`, when a non-empty string.
    pub message: Option<String>,
    /// The request id.
    pub rid: Option<String>,
}

impl CgiReply {
    /// Reads a body, or `None` when it is not a JSON object.
    pub fn parse(body: &[u8]) -> Option<CgiReply> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Some(CgiReply::from_map(&map)),
            _ => None,
        }
    }

    /// Reads a JSON object.
    pub fn from_map(map: &Map<String, Value>) -> CgiReply {
        let (code, malformed_code) = match map.get("errcode") {
            None | Some(Value::Null) => (None, false),
            Some(value) => {
                let code = integer(value);
                (code, code.is_none())
            }
        };
        let message = match map.get("errmsg") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let rid = match map.get("rid") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => message.as_deref().and_then(rid_from_message),
        };
        CgiReply {
            code,
            malformed_code,
            message,
            rid,
        }
    }
}

/// An integer from a JSON integer or a numeric string.
pub(crate) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The id after the last ` rid: ` of a message, up to whitespace, a comma or a semicolon.
fn rid_from_message(message: &str) -> Option<String> {
    let start = message.rfind(RID_SUFFIX)? + RID_SUFFIX.len();
    let rid = message[start..]
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .next()
        .unwrap_or_default();
    (!rid.is_empty()).then(|| rid.to_owned())
}

/// A `stable_token` answer.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenReply {
    /// `{"access_token","expires_in"}`.
    Token {
        /// The token. A secret (hidden by `Debug`).
        access_token: String,
        /// Its lifetime in seconds.
        expires_in: u64,
    },
    /// An error answer, or an object without a usable token.
    Error(CgiReply),
    /// Not a JSON object.
    Unreadable,
}

impl TokenReply {
    /// Reads a body. The success predicate is the documented success fields: a non-empty
    /// `access_token` string and a positive integer `expires_in` (protocols.md §9.1).
    ///
    /// ```
    /// use kefu_payload::cgibin::TokenReply;
    /// assert!(matches!(
    ///     TokenReply::parse(br#"{"access_token":"T","expires_in":7200}"#),
    ///     TokenReply::Token { expires_in: 7200, .. }
    /// ));
    /// assert!(matches!(
    ///     TokenReply::parse(br#"{"errcode":40013,"errmsg":"invalid appid"}"#),
    ///     TokenReply::Error(reply) if reply.code == Some(40013)
    /// ));
    /// ```
    pub fn parse(body: &[u8]) -> TokenReply {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return TokenReply::Unreadable;
        };
        let reply = CgiReply::from_map(&map);
        let token = match map.get("access_token") {
            Some(Value::String(token)) if !token.is_empty() => Some(token),
            _ => None,
        };
        let expires_in = map
            .get("expires_in")
            .and_then(integer)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|&s| s > 0);
        match (token, expires_in, reply.code) {
            (Some(token), Some(expires_in), None | Some(0)) => TokenReply::Token {
                access_token: token.clone(),
                expires_in,
            },
            _ => TokenReply::Error(reply),
        }
    }
}

impl fmt::Debug for TokenReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenReply::Token { expires_in, .. } => f
                .debug_struct("Token")
                .field("access_token", &"<redacted>")
                .field("expires_in", expires_in)
                .finish(),
            TokenReply::Error(reply) => f.debug_tuple("Error").field(reply).finish(),
            TokenReply::Unreadable => f.write_str("Unreadable"),
        }
    }
}

/// The `stable_token` request body (protocols.md §6.1). Holds the AppSecret: its `Debug` hides
/// it, and the body must never be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct StableTokenRequest<'a> {
    /// The AppID.
    pub appid: &'a str,
    /// The AppSecret.
    pub secret: &'a str,
    /// `true` invalidates the current token: an operator's action only (20 a day, 30 s apart).
    pub force_refresh: bool,
}

impl StableTokenRequest<'_> {
    /// The body as JSON.
    ///
    /// ```
    /// use kefu_payload::cgibin::StableTokenRequest;
    /// let body = StableTokenRequest { appid: "wx1", secret: "S", force_refresh: false }.to_json();
    /// assert_eq!(body, br#"{"grant_type":"client_credential","appid":"wx1","secret":"S","force_refresh":false}"#);
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            grant_type: &'static str,
            appid: &'a str,
            secret: &'a str,
            force_refresh: bool,
        }
        serde_json::to_vec(&Body {
            grant_type: "client_credential",
            appid: self.appid,
            secret: self.secret,
            force_refresh: self.force_refresh,
        })
        .unwrap_or_default()
    }
}

impl fmt::Debug for StableTokenRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StableTokenRequest")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("force_refresh", &self.force_refresh)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let cases: [(&[u8], Option<CgiReply>); 7] = [
            (
                br#"{"errcode":0,"errmsg":"ok"}"#,
                Some(CgiReply {
                    code: Some(0),
                    message: Some("ok".into()),
                    ..CgiReply::default()
                }),
            ),
            (
                br#"{"errcode":" -1 ","errmsg":"system error rid: abc-1"}"#,
                Some(CgiReply {
                    code: Some(-1),
                    message: Some("system error rid: abc-1".into()),
                    rid: Some("abc-1".into()),
                    ..CgiReply::default()
                }),
            ),
            (
                br#"{"errcode":45009,"errmsg":"x rid: r1","rid":"r2"}"#,
                Some(CgiReply {
                    code: Some(45009),
                    message: Some("x rid: r1".into()),
                    rid: Some("r2".into()),
                    ..CgiReply::default()
                }),
            ),
            (
                br#"{"errcode":"abc"}"#,
                Some(CgiReply {
                    malformed_code: true,
                    ..CgiReply::default()
                }),
            ),
            (
                br#"{"errcode":1.5}"#,
                Some(CgiReply {
                    malformed_code: true,
                    ..CgiReply::default()
                }),
            ),
            (br#"{"ok":true}"#, Some(CgiReply::default())),
            (b"<html>", None),
        ];
        for (body, want) in cases {
            assert_eq!(
                CgiReply::parse(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn token_replies() {
        assert!(matches!(
            TokenReply::parse(br#"{"access_token":"T","expires_in":"7200"}"#),
            TokenReply::Token {
                expires_in: 7200,
                ..
            }
        ));
        for body in [
            &br#"{"access_token":"","expires_in":7200}"#[..],
            br#"{"access_token":"T"}"#,
            br#"{"access_token":"T","expires_in":0}"#,
            br#"{"access_token":"T","expires_in":7200,"errcode":40013}"#,
            br#"{"errcode":40164,"errmsg":"invalid ip"}"#,
        ] {
            assert!(
                matches!(TokenReply::parse(body), TokenReply::Error(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(TokenReply::parse(b"nope"), TokenReply::Unreadable);
        let debug = format!(
            "{:?}",
            TokenReply::parse(br#"{"access_token":"SECRET_T","expires_in":7200}"#)
        );
        assert!(!debug.contains("SECRET_T"), "{debug}");
        let debug = format!(
            "{:?}",
            StableTokenRequest {
                appid: "a",
                secret: "APPSECRET",
                force_refresh: false
            }
        );
        assert!(!debug.contains("APPSECRET"), "{debug}");
    }
}
