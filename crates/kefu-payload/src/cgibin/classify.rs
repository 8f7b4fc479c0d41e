//! What an answer from `cgi-bin` means for the relay: the codes of protocols.md §5.2, §5.4 and
//! §6.4 as [`kefu_core::Class`]es, and the HTTP rules of §9.1.

use kefu_core::{Attempt, Class, Reason};

use super::response::{CgiReply, TokenReply};

/// Which call answered: the same code can mean different things (45080 is a skipped typing
/// indicator, an unknown code on a send), and an unreadable answer is ambiguous only for a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `custom/send`: not idempotent; an unreadable answer is ambiguous and never replayed.
    Send,
    /// `custom/typing`: idempotent; an unreadable answer is transient.
    Typing,
    /// `stable_token`: idempotent in normal mode.
    Token,
}

/// The class of a platform code for `call`, as a pure table (protocols.md §5.4, §5.2, §6.4).
///
/// ```
/// use kefu_core::{Class, Reason};
/// use kefu_payload::cgibin::{Call, code_class};
/// assert_eq!(code_class(Call::Send, 45015), Class::Terminal(Reason::WindowClosed));
/// assert_eq!(code_class(Call::Typing, 45080), Class::Success);
/// assert_eq!(code_class(Call::Token, 40164), Class::Terminal(Reason::Config));
/// ```
pub const fn code_class(call: Call, code: i64) -> Class {
    match (call, code) {
        (_, 0) => Class::Success,
        (_, -1) => Class::Transient,
        (_, 45009 | 45011) => Class::Throttled,
        // The credential itself: the AppID, the AppSecret, the IP allow-list, the permission.
        (_, 40013 | 40125 | 40164 | 41002 | 41004 | 48001 | 40200) => {
            Class::Terminal(Reason::Config)
        }
        // 45080: no interaction in the last 30 s, so there is nothing to show; 45081: already
        // typing. Both leave the user's screen as wanted.
        (Call::Typing, 45080 | 45081) => Class::Success,
        (Call::Send | Call::Typing, 40001 | 40014 | 42001) => Class::RefreshReplay,
        (Call::Send | Call::Typing, 40003 | 43004) => Class::Terminal(Reason::Recipient),
        (Call::Send | Call::Typing, 45015) => Class::Terminal(Reason::WindowClosed),
        (Call::Send, 45047) => Class::Terminal(Reason::QuotaExhausted),
        (Call::Send, 40007 | 45002 | 45008) => Class::Terminal(Reason::Content),
        (Call::Send, 70000) => Class::Terminal(Reason::Policy),
        // 41001, 40008, 40033, 40101, 45072 and every undocumented code: a bug or the unknown,
        // with the code kept beside the reason.
        _ => Class::Terminal(Reason::Unknown),
    }
}

/// What a code means, for the attempt's message.
pub const fn meaning(code: i64) -> &'static str {
    match code {
        0 => "ok",
        -1 => "the platform is busy",
        40001 => "the access token is invalid or superseded",
        40014 => "the access token is malformed",
        42001 => "the access token expired",
        41001 => "the access token is missing (a bug in the connector)",
        40003 => "the OpenID is wrong or belongs to another AppID",
        43004 => "the user does not follow the account",
        40007 => "the media id is expired or belongs to another account",
        40008 => "the message type is not valid (a bug in the connector)",
        40033 => "the body holds \\uXXXX escapes (a bug in the connector)",
        40101 => "a parameter is missing (a wrong endpoint)",
        45002 => "the content is too long",
        45008 => "news carries more than 1 article",
        40013 => "the AppID is not valid; check the account's appid",
        40125 => "the AppSecret is not valid; check the account's secret",
        40164 => "this server's IP is not in the account's IP allow-list; add it in the console",
        41002 | 41004 => "the AppID or AppSecret is missing; check the account",
        48001 => "the account lacks this API's permission",
        40200 => "the account type cannot use this API",
        45009 => "the daily API quota is used up; it resets at midnight (or with clear_quota)",
        45011 => "the per-minute API quota is used up; try after the next minute",
        45015 => "the send window is closed: the user has not written within 48 h, or unfollowed",
        45047 => "the messages allowed since the user last wrote are used up",
        45072 => "the typing command is not valid (a bug in the connector)",
        45080 => "no user interaction in the last 30 s; typing skipped",
        45081 => "already typing",
        70000 => "blocked by the platform to protect minors",
        _ => "an undocumented code",
    }
}

/// The attempt an HTTP answer of `call` comes to (protocols.md §9.1): a code's class from
/// [`code_class`]; a 2xx without a readable code, a 5xx, or any other unreadable answer is
/// unknown — [`Class::Ambiguous`] for a send, [`Class::Transient`] for the idempotent calls; a
/// 429 is throttled; any other 4xx without a code is terminal.
///
/// The message names the code, what it means and the platform's `errmsg`; the `rid` is kept.
///
/// ```
/// use kefu_core::{Class, Reason};
/// use kefu_payload::cgibin::{Call, classify};
/// let a = classify(Call::Send, 200, br#"{"errcode":45047,"errmsg":"out of response count limit rid: 6a-1"}"#);
/// assert_eq!(a.class, Class::Terminal(Reason::QuotaExhausted));
/// assert_eq!((a.code, a.rid.as_deref()), (Some(45047), Some("6a-1")));
/// assert_eq!(classify(Call::Send, 200, b"{}").class, Class::Ambiguous);
/// assert_eq!(classify(Call::Typing, 502, b"").class, Class::Transient);
/// ```
pub fn classify(call: Call, status: u16, body: &[u8]) -> Attempt {
    let reply = CgiReply::parse(body);
    let rid = reply.as_ref().and_then(|r| r.rid.clone());
    match reply.as_ref().and_then(|r| r.code) {
        Some(code) if (200..300).contains(&status) || (400..500).contains(&status) => {
            let errmsg = reply.as_ref().and_then(|r| r.message.as_deref());
            let mut message = format!("{code}: {}", meaning(code));
            if let Some(errmsg) = errmsg.filter(|m| *m != "ok") {
                message.push_str(&format!(" (errmsg {errmsg:?})"));
            }
            Attempt::new(code_class(call, code), Some(code), message).with_rid(rid)
        }
        _ => unreadable(call, status, reply.as_ref()).with_rid(rid),
    }
}

fn unreadable(call: Call, status: u16, reply: Option<&CgiReply>) -> Attempt {
    let what = match reply {
        None => "a body that is not a JSON object",
        Some(r) if r.malformed_code => "an errcode that is not an integer",
        Some(_) => "no errcode",
    };
    if status == 429 {
        return Attempt::new(Class::Throttled, None, format!("HTTP 429 with {what}"));
    }
    if (400..500).contains(&status) {
        return Attempt::new(
            Class::Terminal(Reason::Unknown),
            None,
            format!("HTTP {status} with {what}; not retried"),
        );
    }
    let (class, consequence) = match call {
        Call::Send => (
            Class::Ambiguous,
            "the message may have been delivered, so it is not resent",
        ),
        Call::Typing | Call::Token => (
            Class::Transient,
            "the call is idempotent and may be retried",
        ),
    };
    Attempt::new(
        class,
        None,
        format!("HTTP {status} with {what}; {consequence}"),
    )
}

/// The token or the attempt a `stable_token` answer comes to: the token and its lifetime on
/// success, else the classified failure (40013, 40125, 40164 config; 45009 throttled; −1 and
/// unreadable answers transient).
pub fn classify_token(status: u16, body: &[u8]) -> Result<(String, u64), Attempt> {
    match TokenReply::parse(body) {
        TokenReply::Token {
            access_token,
            expires_in,
        } if (200..300).contains(&status) => Ok((access_token, expires_in)),
        TokenReply::Token { .. } | TokenReply::Unreadable => {
            Err(unreadable(Call::Token, status, None))
        }
        TokenReply::Error(reply) => match reply.code {
            Some(code) if code != 0 => Err(classify(Call::Token, status, body)),
            _ => Err(unreadable(Call::Token, status, Some(&reply)).with_rid(reply.rid)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table of §5.4, §5.2 and §6.4.
    #[test]
    fn code_table() {
        use Call::*;
        use Reason::*;
        let t = Class::Terminal;
        #[rustfmt::skip]
        let table: &[(i64, Class, Class, Class)] = &[
            //  code   send                  typing                token
            (0,     Class::Success,       Class::Success,       Class::Success),
            (-1,    Class::Transient,     Class::Transient,     Class::Transient),
            (40001, Class::RefreshReplay, Class::RefreshReplay, t(Unknown)),
            (40014, Class::RefreshReplay, Class::RefreshReplay, t(Unknown)),
            (42001, Class::RefreshReplay, Class::RefreshReplay, t(Unknown)),
            (41001, t(Unknown),           t(Unknown),           t(Unknown)),
            (40003, t(Recipient),         t(Recipient),         t(Unknown)),
            (43004, t(Recipient),         t(Recipient),         t(Unknown)),
            (40008, t(Unknown),           t(Unknown),           t(Unknown)),
            (40007, t(Content),           t(Unknown),           t(Unknown)),
            (40033, t(Unknown),           t(Unknown),           t(Unknown)),
            (45002, t(Content),           t(Unknown),           t(Unknown)),
            (45008, t(Content),           t(Unknown),           t(Unknown)),
            (40013, t(Config),            t(Config),            t(Config)),
            (40125, t(Config),            t(Config),            t(Config)),
            (40164, t(Config),            t(Config),            t(Config)),
            (48001, t(Config),            t(Config),            t(Config)),
            (40101, t(Unknown),           t(Unknown),           t(Unknown)),
            (45009, Class::Throttled,     Class::Throttled,     Class::Throttled),
            (45011, Class::Throttled,     Class::Throttled,     Class::Throttled),
            (45015, t(WindowClosed),      t(WindowClosed),      t(Unknown)),
            (45047, t(QuotaExhausted),    t(Unknown),           t(Unknown)),
            (70000, t(Policy),            t(Unknown),           t(Unknown)),
            (45072, t(Unknown),           t(Unknown),           t(Unknown)),
            (45080, t(Unknown),           Class::Success,       t(Unknown)),
            (45081, t(Unknown),           Class::Success,       t(Unknown)),
            (40200, t(Config),            t(Config),            t(Config)),
            (99999, t(Unknown),           t(Unknown),           t(Unknown)),
        ];
        for &(code, send, typing, token) in table {
            assert_eq!(code_class(Send, code), send, "send {code}");
            assert_eq!(code_class(Typing, code), typing, "typing {code}");
            assert_eq!(code_class(Token, code), token, "token {code}");
            assert!(!meaning(code).is_empty());
        }
        // Every reason a send can end with is reachable from a code, but those a callback
        // gives (send_failed, unconfirmed), which cgi-bin has none of.
        for reason in Reason::ALL {
            if !matches!(reason, Throttled | Reason::SendFailed | Reason::Unconfirmed) {
                assert!(table.iter().any(|row| row.1 == t(reason)), "{reason}");
            }
        }
    }

    #[test]
    fn http_rules() {
        let a = classify(
            Call::Send,
            200,
            br#"{"errcode":"45015","errmsg":"response out of time limit rid: r-9"}"#,
        );
        assert_eq!(a.class, Class::Terminal(Reason::WindowClosed));
        assert_eq!(a.rid.as_deref(), Some("r-9"));
        assert!(
            a.message.contains("45015") && a.message.contains("out of time limit"),
            "{}",
            a.message
        );
        let typing = classify(
            Call::Typing,
            200,
            br#"{"errcode":45080,"errmsg":"no interaction"}"#,
        );
        assert_eq!(typing.class, Class::Success);
        assert!(typing.message.contains("skipped"), "{}", typing.message);
        for (call, status, body, want) in [
            (Call::Send, 200, &b"{}"[..], Class::Ambiguous),
            (Call::Send, 200, b"not json", Class::Ambiguous),
            (Call::Send, 200, br#"{"errcode":"x"}"#, Class::Ambiguous),
            (Call::Send, 500, br#"{"errcode":0}"#, Class::Ambiguous),
            (Call::Send, 503, b"", Class::Ambiguous),
            (Call::Typing, 200, b"{}", Class::Transient),
            (Call::Typing, 504, b"", Class::Transient),
            (
                Call::Send,
                404,
                b"not found",
                Class::Terminal(Reason::Unknown),
            ),
            (Call::Send, 429, b"", Class::Throttled),
            (
                Call::Send,
                400,
                br#"{"errcode":40003}"#,
                Class::Terminal(Reason::Recipient),
            ),
            (
                Call::Send,
                200,
                br#"{"errcode":0,"errmsg":"ok"}"#,
                Class::Success,
            ),
        ] {
            assert_eq!(
                classify(call, status, body).class,
                want,
                "{call:?} {status} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            classify_token(200, br#"{"access_token":"T","expires_in":7200}"#).unwrap(),
            ("T".to_owned(), 7200)
        );
        for (status, body, want) in [
            (
                200,
                &br#"{"errcode":40013,"errmsg":"invalid appid"}"#[..],
                Class::Terminal(Reason::Config),
            ),
            (
                200,
                br#"{"errcode":40125,"errmsg":"invalid appsecret"}"#,
                Class::Terminal(Reason::Config),
            ),
            (
                200,
                br#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4"}"#,
                Class::Terminal(Reason::Config),
            ),
            (
                200,
                br#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#,
                Class::Throttled,
            ),
            (
                200,
                br#"{"errcode":-1,"errmsg":"system error"}"#,
                Class::Transient,
            ),
            (200, b"{}", Class::Transient),
            (502, b"bad gateway", Class::Transient),
            (
                500,
                br#"{"access_token":"T","expires_in":7200}"#,
                Class::Transient,
            ),
        ] {
            assert_eq!(
                classify_token(status, body).unwrap_err().class,
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
