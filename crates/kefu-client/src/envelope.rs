//! Response normalisation (protocols.md §4.3, §9.1): every spelling the platform uses.

use hyper::StatusCode;
use serde_json::{Map, Value};

use crate::error::{Error, InvalidResponse, Kind, PlatformCode};

/// Code keys, in precedence order.
const CODE_KEYS: [&str; 3] = ["errcode", "errorcode", "code"];
/// Message keys, in precedence order.
const MESSAGE_KEYS: [&str; 3] = ["errmsg", "errormsg", "msg"];
/// The suffix some messages carry instead of a `rid` field.
const RID_SUFFIX: &str = " rid: ";

/// The common fields of a Dialogue platform answer, read in every spelling it uses.
///
/// * the code comes from the first of `errcode`, `errorcode` or `code` that is present and not
///   null, as a JSON integer or a numeric string;
/// * the message from the first of `errmsg`, `errormsg` or `msg` that is a non-empty string;
/// * `rid` from the `rid` field, or else from a `… rid: <id>` suffix of the message;
/// * `success` and `ret` as they came, for the success predicate.
///
/// ```
/// use kefu_client::Envelope;
/// let env = Envelope::parse(br#"{"errorcode":"2928312","errormsg":"unsupport, to do."}"#).unwrap();
/// assert_eq!(env.code, Some(2928312));
/// assert_eq!(env.message.as_deref(), Some("unsupport, to do."));
///
/// let env = Envelope::parse(br#"{"errcode":45009,"errmsg":"limit, rid: 6412ab"}"#).unwrap();
/// assert_eq!(env.rid.as_deref(), Some("6412ab"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// The code, if a code key was present and numeric.
    pub code: Option<i64>,
    /// `true` when a code key was present (not null) but held no integer.
    pub malformed_code: bool,
    /// The message, if any.
    pub message: Option<String>,
    /// The request id, if any.
    pub rid: Option<String>,
    /// The `success` flag, as a boolean or the strings `"true"`/`"false"`.
    pub success: Option<bool>,
    /// The `ret` field, as an integer or a numeric string.
    pub ret: Option<i64>,
}

impl Envelope {
    /// Reads the envelope from a body, or `None` when the body is not a JSON object.
    pub fn parse(body: &[u8]) -> Option<Envelope> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Some(Envelope::from_map(&map)),
            _ => None,
        }
    }

    /// Reads the envelope from a JSON object.
    pub fn from_map(map: &Map<String, Value>) -> Envelope {
        let mut env = Envelope::default();
        if let Some(value) = CODE_KEYS
            .iter()
            .find_map(|key| map.get(*key).filter(|v| !v.is_null()))
        {
            env.code = integer(value);
            env.malformed_code = env.code.is_none();
        }
        env.message = MESSAGE_KEYS.iter().find_map(|key| match map.get(*key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
        env.rid = match map.get("rid") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => env.message.as_deref().and_then(rid_from_message),
        };
        env.success = match map.get("success") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        env.ret = map.get("ret").and_then(integer);
        env
    }

    /// `true` when the envelope reads as success: code 0, `success` not false, and `ret` 0 if
    /// present. A missing code is not success.
    pub fn is_success(&self) -> bool {
        self.code == Some(0) && self.success != Some(false) && self.ret.is_none_or(|r| r == 0)
    }
}

/// An integer from a JSON number (integral) or a numeric string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// The id after the last ` rid: ` in a message, up to the next whitespace or comma.
fn rid_from_message(message: &str) -> Option<String> {
    let start = message.rfind(RID_SUFFIX)? + RID_SUFFIX.len();
    let rest = message.get(start..)?.trim_start();
    let rid: &str = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .next()
        .unwrap_or_default();
    (!rid.is_empty()).then(|| rid.to_owned())
}

/// A normalised answer before the client adds its context.
#[derive(Debug)]
pub(crate) enum Normalized {
    Success {
        map: Map<String, Value>,
        env: Envelope,
    },
    Failure {
        error: Error,
    },
}

/// Classifies an answer (protocols.md §9.1). Server text is passed through `redact`.
pub(crate) fn normalize(
    status: StatusCode,
    body: &[u8],
    redact: &dyn Fn(&str) -> String,
) -> Normalized {
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let env = parsed.as_ref().map(Envelope::from_map).unwrap_or_default();
    let fail = |kind: Kind, with_body: bool| {
        let body = with_body.then(|| snippet(body, redact));
        Normalized::Failure {
            error: Error::new(kind).with_reply(
                env.message.as_deref().map(redact),
                env.rid.as_deref().map(redact),
                body,
            ),
        }
    };
    if !status.is_success() {
        return fail(Kind::HttpStatus { status }, true);
    }
    let Some(map) = parsed else {
        return fail(
            Kind::InvalidResponse {
                status,
                reason: InvalidResponse::NotJson,
            },
            true,
        );
    };
    let reason = match env.code {
        Some(0) if env.is_success() => return Normalized::Success { map, env },
        Some(0) => InvalidResponse::Contradictory,
        Some(code) => {
            return fail(
                Kind::Platform {
                    code: PlatformCode::from_code(code),
                    status,
                },
                false,
            );
        }
        None if env.malformed_code => InvalidResponse::MalformedCode,
        None => InvalidResponse::MissingCode,
    };
    fail(Kind::InvalidResponse { status, reason }, true)
}

/// The start of a body for diagnostics: redacted first, then cut on a character boundary, so
/// that a cut can never leave part of the TOKEN behind.
pub(crate) fn snippet(body: &[u8], redact: &dyn Fn(&str) -> String) -> String {
    const MAX: usize = 512;
    let mut text = redact(&String::from_utf8_lossy(body));
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_redact(s: &str) -> String {
        s.to_owned()
    }

    /// What a body normalises to, in a form a table can state.
    #[derive(Debug, PartialEq)]
    enum Got {
        Success,
        Platform(i64),
        Invalid(InvalidResponse),
        Status(u16),
    }

    fn run(status: u16, body: &str) -> (Got, Option<String>, Option<String>) {
        let status = StatusCode::from_u16(status).unwrap();
        match normalize(status, body.as_bytes(), &no_redact) {
            Normalized::Success { env, .. } => (Got::Success, env.message, env.rid),
            Normalized::Failure { error } => {
                let got = match error.kind() {
                    Kind::Platform { code, .. } => Got::Platform(code.code()),
                    Kind::InvalidResponse { reason, .. } => Got::Invalid(*reason),
                    Kind::HttpStatus { status } => Got::Status(status.as_u16()),
                    other => panic!("unexpected kind {other:?}"),
                };
                (
                    got,
                    error.message().map(str::to_owned),
                    error.rid().map(str::to_owned),
                )
            }
        }
    }

    /// Status, body, expected outcome, message and rid.
    type Row = (
        u16,
        &'static str,
        Got,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn every_spelling_of_protocols_4_3() {
        use Got::*;
        use InvalidResponse::*;
        #[rustfmt::skip]
        let table: &[Row] = &[
            // §4.3, row by row.
            (200, r#"{"errcode":0,"errmsg":""}"#, Success, None, None),
            (200, r#"{"errcode":0,"msg":"Success"}"#, Success, Some("Success"), None),
            (200, r#"{"errcode":0,"msg":"成功"}"#, Success, Some("成功"), None),
            (200, r#"{"errcode":1001,"errmsg":"TOKEN is not valid","rid":"621bb347"}"#, Platform(1001), Some("TOKEN is not valid"), Some("621bb347")),
            (200, r#"{"code":1011,"errcode":1011,"errmsg":"appid is not valid","rid":"a427f780"}"#, Platform(1011), Some("appid is not valid"), Some("a427f780")),
            (200, r#"{"errorcode":2928312,"errormsg":"unsupport, to do."}"#, Platform(2928312), Some("unsupport, to do."), None),
            (200, r#"{"success":false,"code":-1,"msg":"系统异常,请稍候再试"}"#, Platform(-1), Some("系统异常,请稍候再试"), None),
            // Codes as numeric strings, in each key.
            (200, r#"{"errcode":"0"}"#, Success, None, None),
            (200, r#"{"errorcode":"0","errormsg":"ok"}"#, Success, Some("ok"), None),
            (200, r#"{"code":"0","msg":"ok"}"#, Success, Some("ok"), None),
            (200, r#"{"code":"-1"}"#, Platform(-1), None, None),
            (200, r#"{"errcode":" 1008 ","errmsg":"openid empty"}"#, Platform(1008), Some("openid empty"), None),
            (200, r#"{"errcode":1008.0}"#, Platform(1008), None, None),
            // Precedence: errcode over errorcode over code; errmsg over errormsg over msg.
            (200, r#"{"errcode":0,"code":-1}"#, Success, None, None),
            (200, r#"{"errorcode":1002,"code":0}"#, Platform(1002), None, None),
            (200, r#"{"errcode":null,"code":1007}"#, Platform(1007), None, None),
            (200, r#"{"errcode":1,"errmsg":"a","errormsg":"b","msg":"c"}"#, Platform(1), Some("a"), None),
            (200, r#"{"errcode":1,"errormsg":"b","msg":"c"}"#, Platform(1), Some("b"), None),
            (200, r#"{"errcode":1,"errmsg":"","msg":"c"}"#, Platform(1), Some("c"), None),
            // Unknown codes are kept as they came.
            (200, r#"{"errcode":4242}"#, Platform(4242), None, None),
            // rid from the field (string or number) or from the message suffix.
            (200, r#"{"errcode":1001,"rid":12345}"#, Platform(1001), None, Some("12345")),
            (200, r#"{"errcode":40001,"errmsg":"invalid credential, rid: 64b7c1e3-1a2b3c4d"}"#, Platform(40001), Some("invalid credential, rid: 64b7c1e3-1a2b3c4d"), Some("64b7c1e3-1a2b3c4d")),
            (200, r#"{"errcode":0,"msg":"ok rid: abc"}"#, Success, Some("ok rid: abc"), Some("abc")),
            // The success predicate: success not false, ret 0 if present.
            (200, r#"{"errcode":0,"success":true}"#, Success, None, None),
            (200, r#"{"errcode":0,"success":"true","ret":"0"}"#, Success, None, None),
            (200, r#"{"errcode":0,"success":false}"#, Invalid(Contradictory), None, None),
            (200, r#"{"errcode":0,"success":"false"}"#, Invalid(Contradictory), None, None),
            (200, r#"{"errcode":0,"ret":1}"#, Invalid(Contradictory), None, None),
            (200, r#"{"errcode":0,"ret":0}"#, Success, None, None),
            // A 2xx without a code is unknown, not success.
            (200, r#"{}"#, Invalid(MissingCode), None, None),
            (200, r#"{"msg":"Success"}"#, Invalid(MissingCode), Some("Success"), None),
            (200, r#"{"success":true}"#, Invalid(MissingCode), None, None),
            (204, r#"{"errmsg":"ok","kefustate":"on"}"#, Invalid(MissingCode), Some("ok"), None),
            (200, r#"{"errcode":"abc"}"#, Invalid(MalformedCode), None, None),
            (200, r#"{"errcode":true,"code":0}"#, Invalid(MalformedCode), None, None),
            (200, r#"{"errcode":1.5}"#, Invalid(MalformedCode), None, None),
            // Non-JSON and non-object bodies.
            (200, "", Invalid(NotJson), None, None),
            (200, "<html>ok</html>", Invalid(NotJson), None, None),
            (200, "[0]", Invalid(NotJson), None, None),
            (200, "0", Invalid(NotJson), None, None),
            // Non-2xx statuses win over the body, whose fields are still kept.
            (500, "<html>Internal Server Error</html>", Status(500), None, None),
            (502, r#"{"errcode":0}"#, Status(502), None, None),
            (404, r#"{"errcode":-1,"errmsg":"not found","rid":"r1"}"#, Status(404), Some("not found"), Some("r1")),
            (302, "", Status(302), None, None),
        ];
        for (status, body, want, message, rid) in table {
            let (got, got_message, got_rid) = run(*status, body);
            assert_eq!(&got, want, "{status} {body}");
            assert_eq!(
                got_message.as_deref(),
                *message,
                "message of {status} {body}"
            );
            assert_eq!(got_rid.as_deref(), *rid, "rid of {status} {body}");
        }
    }

    #[test]
    fn ambiguity_follows_protocols_9_1() {
        let cases = [
            (200, "not json", true),
            (500, "not json", true),
            (503, r#"{"errcode":0}"#, true),
            (400, "not json", false),
            (404, "", false),
            (200, r#"{"errcode":1001}"#, false),
            (200, r#"{"msg":"Success"}"#, true),
        ];
        for (status, body, ambiguous) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            match normalize(status, body.as_bytes(), &no_redact) {
                Normalized::Failure { error } => {
                    assert_eq!(error.is_ambiguous(), ambiguous, "{status} {body}");
                }
                Normalized::Success { .. } => panic!("{status} {body} read as success"),
            }
        }
    }

    #[test]
    fn server_text_is_redacted_and_snipped() {
        let redact = |s: &str| s.replace("SECRETTOKEN", "{TOKEN}");
        let body = format!(
            "Cannot POST /openapi/sendmsg/SECRETTOKEN{}",
            "x".repeat(1000)
        );
        let Normalized::Failure { error } =
            normalize(StatusCode::NOT_FOUND, body.as_bytes(), &redact)
        else {
            panic!("404 read as success");
        };
        let snip = error.body().unwrap();
        assert!(snip.starts_with("Cannot POST /openapi/sendmsg/{TOKEN}"));
        assert!(snip.len() <= 512);

        // The cut never leaves a prefix of the TOKEN behind.
        let body = format!("{}SECRETTOKEN", "y".repeat(505));
        let snip = snippet(body.as_bytes(), &redact);
        assert!(!snip.contains("SECRET"), "{snip}");

        let Normalized::Failure { error } = normalize(
            StatusCode::OK,
            br#"{"errcode":1001,"errmsg":"bad SECRETTOKEN","rid":"SECRETTOKEN"}"#,
            &redact,
        ) else {
            panic!("1001 read as success");
        };
        assert_eq!(error.message(), Some("bad {TOKEN}"));
        assert_eq!(error.rid(), Some("{TOKEN}"));
    }

    #[test]
    fn multibyte_snippet_cut_is_on_a_char_boundary() {
        let body = "错".repeat(400);
        let snip = snippet(body.as_bytes(), &no_redact);
        assert!(snip.len() <= 512);
        assert!(snip.chars().all(|c| c == '错'));
    }
}
