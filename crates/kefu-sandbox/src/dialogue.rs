//! The Dialogue platform's side of `sendmsg`, `kefustate/get` and `kefustate/change`: the TOKEN
//! check, decryption, validation, recording and the answers, without any I/O.

use std::sync::{Arc, Mutex, PoisonError};

use hyper::StatusCode;
use kefu_client::Operation;
use kefu_payload::envelope::DialogueRequest;
use kefu_payload::{Channel, KefuStateChange, KefuStateGet, SendMsg, StateQuery};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use wxbizmsgcrypt::{ErrorCode, MsgCrypt};

use crate::state::{Store, switch};

/// Splits `/openapi/<name>/<rest>` into the operation and `<rest>` (the would-be TOKEN,
/// possibly empty or holding further slashes, which then fails the TOKEN check).
pub(crate) fn route(path: &str) -> Option<(Operation, &str)> {
    let tail = path.strip_prefix("/openapi/")?;
    Operation::ALL.into_iter().find_map(|operation| {
        tail.strip_prefix(operation.name())
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|token| (operation, token))
    })
}

/// One answer of the emulated platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The HTTP status: 200, like the platform, except for a missing JSON content type (415).
    pub(crate) status: StatusCode,
    /// The JSON body, keys in the order the platform's documented examples show.
    pub(crate) body: String,
    /// The code the body carries (0 on success), for logs.
    pub(crate) code: i64,
    /// The `rid` the body carries.
    pub(crate) rid: String,
}

/// The `msg` of the platform's `-1` answer.
pub(crate) const SYSTEM_ERROR_MSG: &str = "系统异常,请稍候再试";

/// Writes a JSON object with its keys in the given order (serde_json would sort them).
fn object(pairs: &[(&str, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// The platform: credentials, memory, and the generator of `rid`s. Deliberately not `Debug`:
/// it holds the TOKEN.
pub(crate) struct Platform {
    token: Box<str>,
    crypt: MsgCrypt,
    store: Arc<Store>,
    rids: Mutex<StdRng>,
}

impl Platform {
    /// The platform for one bot. `seed` makes the `rid`s repeatable too.
    pub(crate) fn new(token: &str, crypt: MsgCrypt, store: Arc<Store>, seed: u64) -> Platform {
        Platform {
            token: token.into(),
            crypt,
            store,
            // A stream of its own, so that rids never shift the fault sequence.
            rids: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5249_445f_5249_445f)),
        }
    }

    /// A fresh request id: 8 lowercase hexadecimal digits, like the platform's.
    pub(crate) fn rid(&self) -> String {
        let value: u32 = self
            .rids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        format!("{value:08x}")
    }

    /// The `-1` answer of a busy platform.
    pub(crate) fn system_error(&self) -> Answer {
        let rid = self.rid();
        Answer {
            status: StatusCode::OK,
            body: object(&[
                ("success", Value::Bool(false)),
                ("code", Value::from(-1)),
                ("msg", Value::from(SYSTEM_ERROR_MSG)),
                ("rid", Value::from(rid.as_str())),
            ]),
            code: -1,
            rid,
        }
    }

    /// `{"errcode":code,"errmsg":message,"rid":…}`.
    fn error(&self, code: i64, message: &str) -> Answer {
        let rid = self.rid();
        Answer {
            status: StatusCode::OK,
            body: object(&[
                ("errcode", Value::from(code)),
                ("errmsg", Value::from(message)),
                ("rid", Value::from(rid.as_str())),
            ]),
            code,
            rid,
        }
    }

    /// The answer for a validation failure found by kefu-payload: its platform code with the
    /// body the platform uses for it, or −40002 for a plaintext that cannot be read at all.
    fn payload_error(&self, error: &kefu_payload::Error) -> Answer {
        match error.platform_code() {
            Some(2_928_312) => {
                let rid = self.rid();
                Answer {
                    status: StatusCode::OK,
                    body: object(&[
                        ("errorcode", Value::from(2_928_312)),
                        ("errormsg", Value::from("unsupport, to do.")),
                        ("rid", Value::from(rid.as_str())),
                    ]),
                    code: 2_928_312,
                    rid,
                }
            }
            Some(code) => self.error(code, &error.to_string()),
            None => self.error(
                i64::from(ErrorCode::ParseXml.code()),
                &format!("cannot read the decrypted XML: {error}"),
            ),
        }
    }

    /// `{"code":1011,"errcode":1011,"errmsg":"appid is not valid","rid":…}`.
    fn invalid_appid(&self) -> Answer {
        let rid = self.rid();
        Answer {
            status: StatusCode::OK,
            body: object(&[
                ("code", Value::from(1011)),
                ("errcode", Value::from(1011)),
                ("errmsg", Value::from("appid is not valid")),
                ("rid", Value::from(rid.as_str())),
            ]),
            code: 1011,
            rid,
        }
    }

    /// `true` when the path segment is the TOKEN (compared in constant time).
    pub(crate) fn token_matches(&self, segment: &str) -> bool {
        bool::from(segment.as_bytes().ct_eq(self.token.as_bytes()))
    }

    /// Handles one request whose body has been read and which no fault has hit.
    ///
    /// The checks run in this order, and the first failure answers:
    ///
    /// 1. the TOKEN path segment (1001);
    /// 2. `Content-Type: application/json` (HTTP 415, the sandbox's own answer);
    /// 3. the `{"encrypt":"…"}` envelope (−40002);
    /// 4. decryption with the sandbox's key, receive-id = its APPID (the WXBizMsgCrypt code:
    ///    −40010, −40007, −40008 or −40005);
    /// 5. the plaintext: UTF-8 and the endpoint's XML (−40002), then the platform's rules (1008,
    ///    2928312, then 1011 for channel 7 without an appid).
    pub(crate) fn handle(
        &self,
        operation: Operation,
        token_segment: &str,
        content_type: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Answer {
        if !self.token_matches(token_segment) {
            return self.error(1001, "TOKEN is not valid");
        }
        if !content_type.is_some_and(is_json) {
            let rid = self.rid();
            let message = match content_type {
                Some(found) => format!(
                    "Content-Type must be application/json, got {found:?}; the platform requires it"
                ),
                None => "Content-Type must be application/json, and the request has none; the platform requires it".to_owned(),
            };
            return Answer {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                body: object(&[
                    ("errmsg", Value::from(message)),
                    ("rid", Value::from(rid.as_str())),
                ]),
                code: 415,
                rid,
            };
        }
        let parse_xml = i64::from(ErrorCode::ParseXml.code());
        let Ok(text) = std::str::from_utf8(body) else {
            return self.error(parse_xml, "the request body is not UTF-8 JSON");
        };
        let request = match DialogueRequest::parse(text) {
            Ok(request) => request,
            Err(error) => {
                return self.error(
                    parse_xml,
                    &format!("the request body must be {{\"encrypt\":\"<base64>\"}}: {error}"),
                );
            }
        };
        let plaintext = match self.crypt.decrypt(&request.encrypt) {
            Ok(plaintext) => plaintext,
            Err(error) => {
                return self.error(
                    i64::from(error.code()),
                    &format!(
                        "cannot decrypt \"encrypt\" with this bot's EncodingAESKey and APPID: {error}"
                    ),
                );
            }
        };
        let xml = match String::from_utf8(plaintext.into_message()) {
            Ok(xml) => xml,
            Err(error) => {
                return self.error(
                    parse_xml,
                    &format!(
                        "the decrypted message is not UTF-8 (invalid byte at {})",
                        error.utf8_error().valid_up_to()
                    ),
                );
            }
        };
        match operation {
            Operation::SendMsg => self.sendmsg(xml, now_ms),
            Operation::KefuStateGet => self.kefustate_get(&xml),
            Operation::KefuStateChange => self.kefustate_change(&xml),
        }
    }

    fn sendmsg(&self, xml: String, now_ms: u64) -> Answer {
        let send = match SendMsg::from_xml(&xml) {
            Ok(send) => send,
            Err(error) => return self.payload_error(&error),
        };
        if send.channel() == Channel::WebH5 && send.appid().is_none() {
            return self.invalid_appid();
        }
        self.store.record(&send, xml, now_ms);
        let rid = self.rid();
        Answer {
            status: StatusCode::OK,
            body: object(&[
                ("errcode", Value::from(0)),
                ("msg", Value::from("Success")),
                ("rid", Value::from(rid.as_str())),
            ]),
            code: 0,
            rid,
        }
    }

    fn kefustate_get(&self, xml: &str) -> Answer {
        let request = match KefuStateGet::from_xml(xml) {
            Ok(request) => request,
            Err(error) => return self.payload_error(&error),
        };
        self.store.seen(request.openid(), request.appid());
        let state = self.store.state(request.openid());
        let rid = self.rid();
        let mut pairs = vec![
            ("errcode", Value::from(0)),
            ("kefustate", Value::from(switch(state))),
        ];
        if request.query() == StateQuery::All {
            pairs.push(("status", Value::from(state.as_str())));
        }
        pairs.push(("rid", Value::from(rid.as_str())));
        Answer {
            status: StatusCode::OK,
            body: object(&pairs),
            code: 0,
            rid,
        }
    }

    fn kefustate_change(&self, xml: &str) -> Answer {
        let request = match KefuStateChange::from_xml(xml) {
            Ok(request) => request,
            Err(error) => return self.payload_error(&error),
        };
        self.store
            .set_state(request.openid(), request.appid(), request.state());
        let rid = self.rid();
        Answer {
            status: StatusCode::OK,
            body: object(&[
                ("errcode", Value::from(0)),
                ("errmsg", Value::from("")),
                ("rid", Value::from(rid.as_str())),
            ]),
            code: 0,
            rid,
        }
    }
}

/// `application/json`, with or without parameters such as `charset`, in any case.
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use kefu_payload::{Article, ArticleType, KefuState, Msg, News};

    use super::*;

    const TOKEN: &str = "SandboxTokenAbCdEfGhIjKlMnOpQr";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const OTHER_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APPID: &str = "Gg8HejYTkUsEIlG";
    const JSON: Option<&str> = Some("application/json");

    fn platform() -> (Platform, Arc<Store>) {
        let store = Arc::new(Store::new(100));
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        (Platform::new(TOKEN, crypt, Arc::clone(&store), 1), store)
    }

    fn body(key: &str, appid: &str, xml: &str) -> Vec<u8> {
        let crypt = MsgCrypt::new(TOKEN, key, appid).unwrap();
        DialogueRequest {
            encrypt: crypt.encrypt(xml.as_bytes()).unwrap(),
        }
        .to_json()
        .into_bytes()
    }

    /// Encrypted with another key and a fixed random, so that the garbage it decrypts to is
    /// always the same (with a fresh random, about 1 in 256 wrong-key bodies pass the padding
    /// check by chance and fail later, at -40008 or -40005).
    fn wrong_key_body(xml: &str) -> Vec<u8> {
        let crypt = MsgCrypt::new(TOKEN, OTHER_KEY, APPID).unwrap();
        DialogueRequest {
            encrypt: crypt
                .encrypt_with_random(b"0123456789abcdef", xml.as_bytes())
                .unwrap(),
        }
        .to_json()
        .into_bytes()
    }

    fn call(platform: &Platform, operation: Operation, xml: &str) -> Answer {
        platform.handle(operation, TOKEN, JSON, &body(KEY, APPID, xml), 7)
    }

    fn json(answer: &Answer) -> serde_json::Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    #[test]
    fn routes_the_three_endpoints() {
        assert_eq!(route("/openapi/sendmsg/T"), Some((Operation::SendMsg, "T")));
        assert_eq!(
            route("/openapi/kefustate/get/T"),
            Some((Operation::KefuStateGet, "T"))
        );
        assert_eq!(
            route("/openapi/kefustate/change/"),
            Some((Operation::KefuStateChange, ""))
        );
        assert_eq!(
            route("/openapi/sendmsg/T/x"),
            Some((Operation::SendMsg, "T/x"))
        );
        assert_eq!(route("/openapi/sendmsg"), None);
        assert_eq!(route("/openapi/sendmsgs/T"), None);
        assert_eq!(route("/openapi/kefustate/T"), None);
        assert_eq!(route("/sendmsg/T"), None);
    }

    #[test]
    fn accepts_and_records_a_message_exactly() {
        let (platform, store) = platform();
        let xml = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>您好 &amp; welcome</msg><channel>0</channel><event>waiterEnter</event><kefuname>客服小红</kefuname></xml>";
        let answer = call(&platform, Operation::SendMsg, xml);
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.code, 0);
        assert_eq!(
            answer.body,
            format!(r#"{{"errcode":0,"msg":"Success","rid":"{}"}}"#, answer.rid)
        );
        assert_eq!(answer.rid.len(), 8);
        assert!(answer.rid.bytes().all(|b| b.is_ascii_hexdigit()));
        let recorded = store.messages(None);
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].xml, xml);
        assert_eq!(recorded[0].msg, Msg::text("您好 & welcome"));
        assert_eq!(recorded[0].kefuname.as_deref(), Some("客服小红"));
        assert_eq!(recorded[0].received_at_ms, 7);
    }

    #[test]
    fn records_rich_content_as_an_object() {
        let (platform, store) = platform();
        let news = Msg::News(News {
            articles: vec![Article {
                title: "标题".into(),
                description: "d".into(),
                url: "https://example.com/".into(),
                picurl: "https://example.com/p.png".into(),
                article_type: Some(ArticleType::H5),
            }],
        });
        let send = SendMsg::builder("oUSER", Channel::MiniProgram, news.clone())
            .build()
            .unwrap();
        let answer = call(&platform, Operation::SendMsg, &send.to_xml().unwrap());
        assert_eq!(answer.code, 0);
        let recorded = &store.messages(Some("oUSER"))[0];
        assert_eq!(recorded.msg, news);
        let json = serde_json::to_value(recorded).unwrap();
        assert_eq!(json["msg"]["news"]["articles"][0]["title"], "标题");
        assert_eq!(json["channel"], 1);
        assert_eq!(json["appid"], serde_json::Value::Null);
    }

    #[test]
    fn wrong_token_is_1001_before_anything_else() {
        let (platform, store) = platform();
        for segment in ["", "nope", "SandboxTokenAbCdEfGhIjKlMnOpQ", "x/y"] {
            let answer = platform.handle(Operation::SendMsg, segment, None, b"garbage", 0);
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(
                answer.body,
                format!(
                    r#"{{"errcode":1001,"errmsg":"TOKEN is not valid","rid":"{}"}}"#,
                    answer.rid
                )
            );
        }
        assert!(store.messages(None).is_empty());
    }

    #[test]
    fn requires_a_json_content_type() {
        let (platform, _) = platform();
        let xml = "<xml><openid>o</openid><msg>m</msg><channel>1</channel></xml>";
        let encrypted = body(KEY, APPID, xml);
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let answer = platform.handle(Operation::SendMsg, TOKEN, Some(ok), &encrypted, 0);
            assert_eq!(answer.code, 0, "{ok}");
        }
        let answer = platform.handle(Operation::SendMsg, TOKEN, Some("text/plain"), &encrypted, 0);
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(answer.body.contains("text/plain"), "{}", answer.body);
        let answer = platform.handle(Operation::SendMsg, TOKEN, None, &encrypted, 0);
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn undecryptable_bodies_answer_the_wxbizmsgcrypt_code() {
        let (platform, store) = platform();
        let xml = "<xml><openid>o</openid><msg>m</msg><channel>1</channel></xml>";
        let cases: [(Vec<u8>, i64, &str); 6] = [
            (body(KEY, "OtherAppid", xml), -40005, "receive-id"),
            (wrong_key_body(xml), -40007, "padding"),
            (br#"{"encrypt":"not base64!"}"#.to_vec(), -40010, "base64"),
            (br#"{"encrypt":"QUJD"}"#.to_vec(), -40007, "multiple of 32"),
            (br#"{"encrypted":"QUJD"}"#.to_vec(), -40002, "encrypt"),
            (b"\xff\xfe".to_vec(), -40002, "UTF-8"),
        ];
        for (request, code, hint) in cases {
            let answer = platform.handle(Operation::SendMsg, TOKEN, JSON, &request, 0);
            assert_eq!(answer.code, code, "{}", answer.body);
            let json = json(&answer);
            assert_eq!(json["errcode"], code);
            let errmsg = json["errmsg"].as_str().unwrap();
            assert!(errmsg.contains(hint), "{errmsg}");
            assert!(!errmsg.contains(KEY) && !errmsg.contains(TOKEN));
        }
        assert!(store.messages(None).is_empty());
    }

    #[test]
    fn validation_failures_answer_the_documented_bodies() {
        let (platform, store) = platform();
        let cases = [
            (
                "<xml><appid>wx1</appid><openid></openid><msg>m</msg><channel>0</channel></xml>",
                1008,
                "openid",
            ),
            (
                "<xml><appid>wx1</appid><openid>o</openid><msg></msg><channel>0</channel></xml>",
                1008,
                "msg",
            ),
            (
                "<xml><openid>o</openid><msg>m</msg><channel>0</channel></xml>",
                1008,
                "appid",
            ),
            (
                "<xml><openid>o</openid><msg>m</msg><channel>6</channel></xml>",
                1008,
                "appid",
            ),
            (
                "<xml><openid>o</openid><msg>m</msg><channel>9</channel><event>nope</event></xml>",
                -40002,
                "event",
            ),
            (
                "<xml><openid>o</openid><msg>m</msg></xml>",
                -40002,
                "channel",
            ),
            ("<root/>", -40002, "root"),
        ];
        for (xml, code, hint) in cases {
            let answer = call(&platform, Operation::SendMsg, xml);
            let json = json(&answer);
            assert_eq!(json["errcode"], code, "{xml}: {}", answer.body);
            assert!(
                json["errmsg"].as_str().unwrap().contains(hint),
                "{xml}: {}",
                answer.body
            );
        }
        for channel in [2, 3, 4] {
            let xml = format!(
                "<xml><appid>wx1</appid><openid>o</openid><msg>m</msg><channel>{channel}</channel></xml>"
            );
            let answer = call(&platform, Operation::SendMsg, &xml);
            assert_eq!(
                answer.body,
                format!(
                    r#"{{"errorcode":2928312,"errormsg":"unsupport, to do.","rid":"{}"}}"#,
                    answer.rid
                )
            );
        }
        let answer = call(
            &platform,
            Operation::SendMsg,
            "<xml><openid>o</openid><msg>m</msg><channel>7</channel></xml>",
        );
        assert_eq!(
            answer.body,
            format!(
                r#"{{"code":1011,"errcode":1011,"errmsg":"appid is not valid","rid":"{}"}}"#,
                answer.rid
            )
        );
        let answer = call(
            &platform,
            Operation::SendMsg,
            &format!(
                "<xml><appid>{TOKEN}</appid><openid>o</openid><msg>m</msg><channel>7</channel></xml>"
            ),
        );
        assert_eq!(answer.code, 0);
        assert_eq!(store.messages(None).len(), 1);
    }

    #[test]
    fn kefustate_change_then_get() {
        let (platform, store) = platform();
        let get = |query: &str| {
            call(
                &platform,
                Operation::KefuStateGet,
                &format!("<xml><appid>wx1</appid><openid>o</openid><type>{query}</type></xml>"),
            )
        };
        let answer = get("all");
        assert_eq!(
            answer.body,
            format!(
                r#"{{"errcode":0,"kefustate":"off","status":"asking","rid":"{}"}}"#,
                answer.rid
            )
        );
        let answer = call(
            &platform,
            Operation::KefuStateChange,
            "<xml><appid>wx1</appid><openid>o</openid><kefustate>personserving</kefustate></xml>",
        );
        assert_eq!(
            answer.body,
            format!(r#"{{"errcode":0,"errmsg":"","rid":"{}"}}"#, answer.rid)
        );
        assert_eq!(store.state("o"), KefuState::PersonServing);
        let all = json(&get("all"));
        assert_eq!(
            (&all["kefustate"], &all["status"]),
            (&"on".into(), &"personserving".into())
        );
        let simple = json(&get("simple"));
        assert_eq!(simple["kefustate"], "on");
        assert!(simple.get("status").is_none());
        // Legacy `off` means complete.
        call(
            &platform,
            Operation::KefuStateChange,
            "<xml><appid>wx1</appid><openid>o</openid><kefustate>off</kefustate></xml>",
        );
        assert_eq!(json(&get("all"))["status"], "complete");
        // Validation: empty appid is 1008, an unknown state -40002.
        let answer = call(
            &platform,
            Operation::KefuStateChange,
            "<xml><appid></appid><openid>o</openid><kefustate>asking</kefustate></xml>",
        );
        assert_eq!(answer.code, 1008);
        let answer = call(
            &platform,
            Operation::KefuStateChange,
            "<xml><appid>wx1</appid><openid>o</openid><kefustate>busy</kefustate></xml>",
        );
        assert_eq!(answer.code, -40002);
        assert_eq!(store.state("o"), KefuState::Complete);
    }

    #[test]
    fn system_error_body_is_the_reported_one() {
        let (platform, _) = platform();
        let answer = platform.system_error();
        assert_eq!(
            answer.body,
            format!(
                r#"{{"success":false,"code":-1,"msg":"系统异常,请稍候再试","rid":"{}"}}"#,
                answer.rid
            )
        );
    }

    #[test]
    fn rids_repeat_with_the_seed() {
        let (a, _) = platform();
        let (b, _) = platform();
        let first: Vec<String> = (0..5).map(|_| a.rid()).collect();
        let second: Vec<String> = (0..5).map(|_| b.rid()).collect();
        assert_eq!(first, second);
    }
}
