//! The sandbox's two vendors over real loopback sockets: yunzhenji's `wechat/sendMessage` (every
//! check, the `message` error key, a partial `data` array, the `chatMsg` / `chatMsgSendFail`
//! pushes and a customer's message, delivered to a local listener) and the company gateway's
//! `sendCustomerMessage` (the `system` header, the `code: 200` wrapping of WeChat's refusals,
//! injected answers), with their faults and control routes. Everything listens on
//! 127.0.0.1:0 and stops with its test; waits for pushes are bounded and assert nothing about
//! time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response};
use kefu_http_server::{RequestBody, ServerLimits};
use kefu_sandbox::{
    AccountKind, ApiAccount, CustomerSays, DEFAULT_OA_APPID, DEFAULT_YZJ_ACCESS_TOKEN,
    DEFAULT_YZJ_APP_ID, DEFAULT_YZJ_WXID, GatewayInjection, Sandbox, SandboxConfig,
    YunzhenjiAccount, YunzhenjiChange,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

mod common;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SEND: &str = "/wechat/sendMessage";
const GATEWAY: &str = "/wisdom-api/weixin/v1/sendCustomerMessage";
/// How long a test waits for one push before failing: far above any configured delay.
const PUSH_WAIT: Duration = Duration::from_secs(20);

fn config() -> SandboxConfig {
    let mut config = SandboxConfig::new("SandboxTestToken", KEY, "Gg8HejYTkUsEIlG");
    config.yunzhenji.push_delay = Duration::from_millis(20);
    config
}

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts")
}

/// A yunzhenji call: HTTP 200 and a JSON body, always.
async fn send(sandbox: &Sandbox, body: &Value) -> Value {
    let url = format!("{}{SEND}", sandbox.url());
    let (status, text) = common::exchange(
        Method::POST,
        &url,
        Some("application/json; charset=UTF-8"),
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The `errcode` of a refusal, after checking the vendor's `message` key (never `errmsg`).
fn refused(answer: &Value) -> i64 {
    let code = answer["errcode"].as_i64().expect("an errcode");
    assert_ne!(code, 0, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    assert!(
        answer.get("errmsg").is_none() && answer.get("data").is_none(),
        "{answer}"
    );
    code
}

fn text(text: &str, id: Option<Value>) -> Value {
    let mut message =
        json!({"msg_type": "text", "content": {"items": [{"type": "text", "text": text}]}});
    if let Some(id) = id {
        message["api_send_id"] = id;
    }
    message
}

fn call(target: &str, messages: Vec<Value>) -> Value {
    json!({
        "app_id": DEFAULT_YZJ_APP_ID,
        "access_token": DEFAULT_YZJ_ACCESS_TOKEN,
        "wxid": DEFAULT_YZJ_WXID,
        "target_wxid": target,
        "messages": messages,
    })
}

async fn control(sandbox: &Sandbox, method: Method, path: &str, body: &str) -> (u16, Value) {
    let url = format!("{}{path}", sandbox.url());
    let (status, text) = common::exchange(method, &url, Some("application/json"), body.as_bytes())
        .await
        .unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

/// A local callback receiver: every push body, in arrival order. The first `failing` requests
/// are answered 500 and not reported.
struct Receiver {
    url: String,
    pushes: mpsc::UnboundedReceiver<(Option<String>, Value)>,
    answered: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    async fn start(failing: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/v1/callbacks/yunzhenji/cb-secret",
            listener.local_addr().unwrap()
        );
        let (sender, pushes) = mpsc::unbounded_channel();
        let answered = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let count = Arc::clone(&answered);
        let service = move |_closer| {
            let sender = sender.clone();
            let count = Arc::clone(&count);
            move |request: Request<RequestBody>| {
                let sender = sender.clone();
                let count = Arc::clone(&count);
                async move {
                    let content_type = request
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let status = if count.fetch_add(1, Ordering::SeqCst) < failing {
                        500
                    } else {
                        let _ = sender.send((content_type, serde_json::from_slice(&body).unwrap()));
                        200
                    };
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(b"success")))
                        .unwrap()
                }
            }
        };
        tokio::spawn(kefu_http_server::serve(
            listener,
            ServerLimits::default(),
            None,
            service,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        Receiver {
            url,
            pushes,
            answered,
            _stop: stop,
        }
    }

    /// The next push body, checked to be JSON.
    async fn next(&mut self) -> Value {
        let (content_type, body) = tokio::time::timeout(PUSH_WAIT, self.pushes.recv())
            .await
            .expect("a push arrives")
            .expect("the receiver is running");
        assert_eq!(content_type.as_deref(), Some("application/json"));
        body
    }
}

/// Points yunzhenji's pushes at `receiver`.
async fn push_to(sandbox: &Sandbox, receiver: &Receiver, failure_rate: f64) {
    let body =
        json!({"callback_url": receiver.url, "push_delay_ms": 20, "failure_rate": failure_rate});
    let (status, answer) = control(
        sandbox,
        Method::POST,
        "/sandbox/yunzhenji/settings",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["push_delay_ms"], 20);
    let callback = answer["callback"].as_str().unwrap();
    assert!(
        !callback.contains("cb-secret"),
        "the URL's path is never shown: {callback}"
    );
}

#[tokio::test]
async fn yunzhenji_checks_every_documented_rule_and_answers_with_message() {
    let sandbox = start(config()).await;
    let ok = call("7881300000000001", vec![text("hi", None)]);
    let mut cases: Vec<(Value, i64)> = Vec::new();
    for field in ["app_id", "access_token", "wxid", "target_wxid", "messages"] {
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove(field);
        cases.push((missing, 40001));
        let mut empty = ok.clone();
        empty[field] = json!("");
        cases.push((empty, 40001));
    }
    let mut wrong = ok.clone();
    wrong["access_token"] = json!("not-the-token");
    cases.push((wrong, 40002));
    let mut wrong = ok.clone();
    wrong["app_id"] = json!("someone-else");
    cases.push((wrong, 40002));
    let mut wrong = ok.clone();
    wrong["wxid"] = json!("1688859999999999");
    cases.push((wrong, 40003));
    cases.push((call("t", vec![]), 40004));
    cases.push((
        call("t", (0..6).map(|i| text(&i.to_string(), None)).collect()),
        40004,
    ));
    let bad_messages = [
        (json!({"msg_type": "sticker", "content": {}}), 40005),
        (json!({"msg_type": "text", "content": {"items": []}}), 40006),
        (json!({"msg_type": "announcement", "content": {}}), 40006),
        (
            json!({"msg_type": "picture", "content": {"url": ""}}),
            40006,
        ),
        (
            json!({"msg_type": "link", "content": {"cover": "c", "desc": "d", "url": "u"}}),
            40006,
        ),
        (
            json!({"msg_type": "file", "content": {"title": "t"}}),
            40006,
        ),
        (
            json!({"msg_type": "voice", "content": {"url": "v.mp3", "duration": 61}}),
            40007,
        ),
        (
            json!({"msg_type": "voice", "content": {"url": "v.mp3", "duration": 0}}),
            40007,
        ),
        (json!({"msg_type": "text"}), 40001),
        (json!({"content": {"url": "u"}}), 40001),
    ];
    for (message, code) in bad_messages {
        cases.push((call("t", vec![text("first", None), message]), code));
    }
    for (body, code) in cases {
        let answer = send(&sandbox, &body).await;
        assert_eq!(refused(&answer), code, "{body}: {answer}");
        assert!(
            !answer.to_string().contains(DEFAULT_YZJ_ACCESS_TOKEN),
            "{answer}"
        );
    }
    // Not JSON at all.
    let url = format!("{}{SEND}", sandbox.url());
    let (_, answer) = common::exchange(Method::POST, &url, Some("application/json"), b"{app_id")
        .await
        .unwrap();
    assert_eq!(refused(&serde_json::from_str(&answer).unwrap()), 40000);
    // A wrong token and an unknown app_id read the same: nothing tells which one is wrong.
    let mut token = ok.clone();
    token["access_token"] = json!("x");
    let mut app = ok.clone();
    app["app_id"] = json!("x");
    assert_eq!(send(&sandbox, &token).await, send(&sandbox, &app).await);
    assert!(
        sandbox.yunzhenji_messages(None).is_empty(),
        "nothing refused is recorded"
    );
    let (status, _) = common::exchange(Method::GET, &url, None, b"")
        .await
        .unwrap();
    assert_eq!(status, 405);
    sandbox.stop().await;
}

#[tokio::test]
async fn every_message_type_is_accepted_recorded_and_its_api_send_id_echoed() {
    let sandbox = start(config()).await;
    let messages = vec![
        text("您好", Some(json!("41"))),
        json!({"msg_type": "link", "content": {"cover": "https://c", "desc": "d", "title": "t", "url": "https://u"}, "api_send_id": 42}),
        json!({"msg_type": "voice", "content": {"url": "v.mp3", "duration": 60, "org_content": ""}, "delayed_time": 0}),
        json!({"msg_type": "file", "content": {"title": "t", "url": "https://f"}, "api_send_id": "44"}),
        json!({"msg_type": "announcement", "content": {"text": "公告"}, "api_send_id": "45"}),
    ];
    let answer = send(&sandbox, &call("R:10696051737", messages)).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    for (idx, entry) in data.iter().enumerate() {
        assert_eq!(entry["idx"], idx);
        let svrid = entry["api_send_svrid"].as_str().unwrap();
        assert_eq!(svrid.split(',').count(), 3, "{svrid}");
    }
    assert_eq!(data[0]["api_send_id"], "41");
    assert_eq!(data[1]["api_send_id"], 42, "echoed as sent");
    assert!(data[2].get("api_send_id").is_none(), "echoed only if sent");
    let recorded = sandbox.yunzhenji_messages(Some("R:10696051737"));
    let ids: Vec<Option<&str>> = recorded.iter().map(|m| m.api_send_id.as_deref()).collect();
    assert_eq!(ids, [Some("41"), Some("42"), None, Some("44"), Some("45")]);
    let types: Vec<&str> = recorded.iter().map(|m| m.msg_type.as_str()).collect();
    assert_eq!(types, ["text", "link", "voice", "file", "announcement"]);
    assert_eq!(recorded[0].content["items"][0]["text"], "您好");
    assert_eq!(recorded[1].api_send_svrid, data[1]["api_send_svrid"]);
    assert!(
        recorded
            .iter()
            .all(|m| !m.fails && m.wxid == DEFAULT_YZJ_WXID)
    );
    let (status, listed) = control(
        &sandbox,
        Method::GET,
        "/sandbox/yunzhenji/messages?target_wxid=nobody",
        "",
    )
    .await;
    assert_eq!((status, listed), (200, json!([])));
    let (_, listed) = control(&sandbox, Method::GET, "/sandbox/yunzhenji/messages", "").await;
    assert_eq!(listed.as_array().unwrap().len(), 5);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_partial_data_array_on_demand_then_whole_calls_again() {
    let sandbox = start(config()).await;
    let (status, answer) = control(
        &sandbox,
        Method::POST,
        "/sandbox/yunzhenji/partial",
        r#"{"accept":2}"#,
    )
    .await;
    assert_eq!((status, answer["partial_next"].clone()), (200, json!(2)));
    let ids = |range: std::ops::Range<u32>| {
        range
            .map(|i| text(&format!("m{i}"), Some(json!(i.to_string()))))
            .collect::<Vec<_>>()
    };
    // A refused call does not use the limit up.
    assert_eq!(refused(&send(&sandbox, &call("t", vec![])).await), 40004);
    let answer = send(&sandbox, &call("t", ids(1..6))).await;
    assert_eq!(answer["errcode"], 0);
    let echoed: Vec<&Value> = answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["api_send_id"])
        .collect();
    assert_eq!(echoed, [&json!("1"), &json!("2")]);
    let answer = send(&sandbox, &call("t", ids(6..9))).await;
    assert_eq!(answer["data"].as_array().unwrap().len(), 3);
    let recorded: Vec<String> = sandbox
        .yunzhenji_messages(None)
        .into_iter()
        .filter_map(|m| m.api_send_id)
        .collect();
    assert_eq!(
        recorded,
        ["1", "2", "6", "7", "8"],
        "missing indices were not accepted"
    );
    sandbox.yunzhenji_accept_only(0);
    let answer = send(&sandbox, &call("t", ids(9..10))).await;
    assert_eq!(answer, json!({"errcode": 0, "data": []}));
    sandbox.stop().await;
}

#[tokio::test]
async fn chat_msg_pushes_arrive_in_order_with_the_documented_shape() {
    let sandbox = start(config()).await;
    let mut receiver = Receiver::start(0).await;
    push_to(&sandbox, &receiver, 0.0).await;
    let answer = send(
        &sandbox,
        &call(
            "7881300000000001",
            vec![text("一", Some(json!("42"))), text("二", Some(json!(43)))],
        ),
    )
    .await;
    let data = answer["data"].as_array().unwrap().clone();
    for (i, expected_id) in [json!("42"), json!(43)].into_iter().enumerate() {
        let push = receiver.next().await;
        assert_eq!(push["event"], "chatMsg");
        assert_eq!(push["app_id"], DEFAULT_YZJ_APP_ID);
        assert_eq!(push["wxid"], DEFAULT_YZJ_WXID);
        let body = &push["data"];
        assert_eq!(body["api_send_id"], expected_id);
        assert_eq!(body["api_send_svrid"], data[i]["api_send_svrid"]);
        assert_eq!(body["from_wxid"], DEFAULT_YZJ_WXID);
        assert_eq!(body["to_wxid"], "7881300000000001");
        assert_eq!(body["msg_type"], "text");
        assert!(body["content"]["items"][0]["text"].is_string());
        assert!(body["create_time"].as_u64().is_some());
        assert!(!push.to_string().contains(DEFAULT_YZJ_ACCESS_TOKEN));
    }
    // The record is written once the push is done: wait for it, boundedly.
    let pushes = wait_for_pushes(&sandbox, 2).await;
    assert!(
        pushes
            .iter()
            .all(|p| p.attempts == 1 && p.callback.is_success())
    );
    assert_eq!(pushes[0].api_send_id.as_deref(), Some("42"));
    assert_eq!(
        pushes[1].api_send_id.as_deref(),
        Some("43"),
        "a number reads as a string"
    );
    let (_, listed) = control(&sandbox, Method::GET, "/sandbox/yunzhenji/pushes", "").await;
    assert_eq!(listed[0]["event"], "chatMsg");
    sandbox.stop().await;
}

/// Waits (boundedly) until the sandbox reports `n` finished pushes.
async fn wait_for_pushes(sandbox: &Sandbox, n: usize) -> Vec<kefu_sandbox::YunzhenjiPush> {
    for _ in 0..400 {
        let pushes = sandbox.yunzhenji_pushes();
        if pushes.len() >= n {
            return pushes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{n} pushes were not finished: {:?}",
        sandbox.yunzhenji_pushes()
    );
}

#[tokio::test]
async fn a_failure_rate_of_one_sends_a_chat_msg_send_fail_after_every_chat_msg() {
    let sandbox = start(config()).await;
    let mut receiver = Receiver::start(0).await;
    push_to(&sandbox, &receiver, 1.0).await;
    let ids = ["a1", "a2", "a3"];
    let messages = ids.iter().map(|id| text(id, Some(json!(id)))).collect();
    assert_eq!(
        send(&sandbox, &call("7881300000000002", messages)).await["errcode"],
        0
    );
    let mut events = Vec::new();
    for _ in 0..6 {
        let push = receiver.next().await;
        events.push((
            push["event"].as_str().unwrap().to_owned(),
            push["data"]["api_send_id"].as_str().unwrap().to_owned(),
        ));
        if push["event"] == "chatMsgSendFail" {
            assert_eq!(push["data"]["to_wxid"], "7881300000000002");
            assert!(
                push["data"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert!(push["data"]["api_send_svrid"].is_string());
        }
    }
    let expected: Vec<(String, String)> = ["chatMsg", "chatMsgSendFail"]
        .iter()
        .flat_map(|event| ids.iter().map(|id| (event.to_string(), id.to_string())))
        .collect();
    assert_eq!(events, expected);
    assert!(sandbox.yunzhenji_messages(None).iter().all(|m| m.fails));
    sandbox.stop().await;
}

#[tokio::test]
async fn a_customer_message_is_a_chat_msg_without_api_send_id() {
    let sandbox = start(config()).await;
    let mut receiver = Receiver::start(0).await;
    push_to(&sandbox, &receiver, 0.0).await;
    let (status, outcome) = control(
        &sandbox,
        Method::POST,
        "/sandbox/yunzhenji/customers/7881300000000003/say",
        r#"{"text":"你好,在吗"}"#,
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["callback"]["outcome"], "delivered");
    let push = receiver.next().await;
    assert_eq!(push["event"], "chatMsg");
    assert_eq!(push, outcome["body"]);
    let data = &push["data"];
    assert!(data.get("api_send_id").is_none(), "{push}");
    assert_eq!(data["from_wxid"], "7881300000000003");
    assert_eq!(data["to_wxid"], DEFAULT_YZJ_WXID);
    assert_eq!(
        data["content"],
        json!({"items": [{"type": "text", "text": "你好,在吗"}]})
    );
    let says = CustomerSays {
        group: Some("R:10696051737".into()),
        ..CustomerSays::new("群里说话")
    };
    let push = sandbox
        .yunzhenji_customer_says("7881300000000003", says)
        .await
        .unwrap();
    assert_eq!(receiver.next().await["data"]["to_wxid"], "R:10696051737");
    assert_eq!(push.api_send_id, None);
    for (path, body, field) in [
        (
            "/sandbox/yunzhenji/customers/c/say",
            r#"{"text":""}"#,
            "text",
        ),
        (
            "/sandbox/yunzhenji/customers/c/say",
            r#"{"text":"x","app_id":"nope"}"#,
            "app_id",
        ),
    ] {
        let (status, error) = control(&sandbox, Method::POST, path, body).await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (422, Some(field)),
            "{error}"
        );
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn pushes_are_retried_a_bounded_number_of_times() {
    let sandbox = start(config()).await;
    let mut receiver = Receiver::start(1).await;
    push_to(&sandbox, &receiver, 0.0).await;
    send(&sandbox, &call("t", vec![text("x", Some(json!("r1")))])).await;
    assert_eq!(receiver.next().await["data"]["api_send_id"], "r1");
    let pushes = wait_for_pushes(&sandbox, 1).await;
    assert_eq!(pushes[0].attempts, 2, "answered 500 once, then 200");
    sandbox.stop().await;

    let sandbox = start(config()).await;
    let receiver = Receiver::start(usize::MAX).await;
    push_to(&sandbox, &receiver, 0.0).await;
    let (status, outcome) = control(
        &sandbox,
        Method::POST,
        "/sandbox/yunzhenji/customers/c/say",
        r#"{"text":"hi"}"#,
    )
    .await;
    assert_eq!((status, outcome["attempts"].clone()), (200, json!(3)));
    assert_eq!(outcome["callback"]["status"], 500, "{outcome}");
    assert_eq!(receiver.answered.load(Ordering::SeqCst), 3);
    sandbox.stop().await;
}

#[tokio::test]
async fn yunzhenji_settings_are_checked_whole() {
    let sandbox = start(config()).await;
    for (body, field) in [
        (r#"{"failure_rate":1.5,"push_delay_ms":7}"#, "failure_rate"),
        (
            r#"{"callback_url":"https://example.com/hidden","push_delay_ms":7}"#,
            "callback_url",
        ),
        (
            r#"{"push_delay_ms":3600001,"failure_rate":0.5}"#,
            "push_delay_ms",
        ),
    ] {
        let (status, error) =
            control(&sandbox, Method::POST, "/sandbox/yunzhenji/settings", body).await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (422, Some(field)),
            "{error}"
        );
        assert!(!error.to_string().contains("hidden"), "{error}");
    }
    // A message scheduled far in the future is accepted; its pushes wait, boundedly.
    let mut far = text("later", None);
    far["delayed_time"] = json!(u64::MAX);
    assert_eq!(send(&sandbox, &call("t", vec![far])).await["errcode"], 0);
    let (status, now) = control(&sandbox, Method::GET, "/sandbox/yunzhenji", "").await;
    assert_eq!(status, 200);
    assert_eq!(now["push_delay_ms"], 20, "a refused change changes nothing");
    assert_eq!(now["failure_rate"], 0.0);
    assert_eq!(now["callback"], Value::Null);
    let (status, _) = control(
        &sandbox,
        Method::POST,
        "/sandbox/yunzhenji/settings",
        r#"{"delay":1}"#,
    )
    .await;
    assert_eq!(status, 400);
    let change = YunzhenjiChange {
        failure_rate: Some(0.25),
        ..YunzhenjiChange::default()
    };
    assert_eq!(sandbox.set_yunzhenji(&change).unwrap().failure_rate, 0.25);
    sandbox.stop().await;
}

#[tokio::test]
async fn yunzhenji_faults_answer_minus_one_or_drop_after_accepting() {
    let mut config = config();
    config.system_error_rate = 1.0;
    let sandbox = start(config).await;
    let answer = send(&sandbox, &call("t", vec![text("x", None)])).await;
    assert_eq!(refused(&answer), -1);
    assert!(sandbox.yunzhenji_messages(None).is_empty());
    sandbox.stop().await;

    let mut config = self::config();
    config.drop_rate = 1.0;
    let sandbox = start(config).await;
    let mut receiver = Receiver::start(0).await;
    push_to(&sandbox, &receiver, 0.0).await;
    let url = format!("{}{SEND}", sandbox.url());
    let body = call("t", vec![text("x", Some(json!("d1")))]).to_string();
    let dropped = common::exchange_with(Method::POST, &url, &[], body.as_bytes()).await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        sandbox.yunzhenji_messages(None).len(),
        1,
        "processed before the drop"
    );
    assert_eq!(
        receiver.next().await["data"]["api_send_id"],
        "d1",
        "the vendor acted: its chatMsg comes"
    );
    sandbox.stop().await;
}

/// A gateway call with these headers; the answer's HTTP status and JSON body.
async fn gateway(sandbox: &Sandbox, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let url = format!("{}{GATEWAY}", sandbox.url());
    let (status, text) = common::exchange_with(Method::POST, &url, headers, body.as_bytes())
        .await
        .unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

/// Request headers, as `(name, value)`.
type Headers<'a> = Vec<(&'a str, &'a str)>;

const HEADERS: [(&str, &str); 2] = [
    ("system", "NEW_MEMBER"),
    ("content-type", "application/json"),
];

fn gateway_body(open_id: &str, msg: &str) -> String {
    json!({"openId": open_id, "msg": msg}).to_string()
}

#[tokio::test]
async fn the_gateway_checks_its_system_header_and_body() {
    let sandbox = start(config()).await;
    let body = gateway_body("oUSER", "客服消息");
    let json_only = [("content-type", "application/json")];
    let cases: Vec<(Headers, String, i64)> = vec![
        (json_only.to_vec(), body.clone(), 401),
        (vec![("system", "OTHER"), json_only[0]], body.clone(), 402),
        (
            vec![("system", "new_member"), json_only[0]],
            body.clone(),
            402,
        ),
        (vec![("system", "NEW_MEMBER")], body.clone(), 415),
        (HEADERS.to_vec(), "openId=o".into(), 400),
        (
            HEADERS.to_vec(),
            json!({"openid": "oUSER", "msg": "x"}).to_string(),
            400,
        ),
        (
            HEADERS.to_vec(),
            json!({"touser": "oUSER", "msg": "x"}).to_string(),
            400,
        ),
        (
            HEADERS.to_vec(),
            json!({"openId": "oUSER"}).to_string(),
            400,
        ),
        (
            HEADERS.to_vec(),
            json!({"openId": "oUSER", "msg": ""}).to_string(),
            400,
        ),
        (
            HEADERS.to_vec(),
            json!({"openId": "oUSER", "msg": {"text": "rich"}}).to_string(),
            400,
        ),
    ];
    for (headers, body, code) in cases {
        let (status, answer) = gateway(&sandbox, &headers, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["code"], code, "{headers:?} {body}: {answer}");
        assert!(
            answer["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        assert_eq!(answer["data"], Value::Null, "{answer}");
    }
    let openid_missing = gateway(&sandbox, &HEADERS, r#"{"openid":"o","msg":"x"}"#)
        .await
        .1;
    assert!(
        openid_missing["msg"].as_str().unwrap().contains("openId"),
        "{openid_missing}"
    );
    assert!(sandbox.gateway_messages(None).is_empty());
    sandbox.stop().await;
}

#[tokio::test]
async fn the_gateway_wraps_wechat_refusals_in_code_200() {
    let sandbox = start(config()).await;
    // Nobody wrote to the account: WeChat's 40003 comes back inside code 200.
    let (status, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oNOBODY", "客服消息")).await;
    assert_eq!(
        (status, answer["code"].clone(), answer["msg"].clone()),
        (200, json!(200), json!("操作成功"))
    );
    assert_eq!(answer["data"]["errcode"], 40003, "{answer}");
    let errmsg = answer["data"]["errmsg"].as_str().unwrap();
    assert!(errmsg.starts_with("invalid openid rid: "), "{errmsg}");

    // A user of the gateway's account: accepted, recorded by the gateway and the account.
    let write = format!("/sandbox/accounts/{DEFAULT_OA_APPID}/users/oUSER/write");
    assert_eq!(control(&sandbox, Method::POST, &write, "").await.0, 200);
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "客服消息")).await;
    assert_eq!(
        answer,
        json!({"code": 200, "msg": "操作成功", "data": {"errcode": 0, "errmsg": "ok"}})
    );
    let recorded = sandbox.gateway_messages(Some("oUSER"));
    assert_eq!((recorded.len(), recorded[0].msg.as_str()), (1, "客服消息"));
    let sent = sandbox
        .api_requests(DEFAULT_OA_APPID, Some("oUSER"))
        .unwrap();
    let sent: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"touser": "oUSER", "msgtype": "text", "text": {"content": "客服消息"}})
    );
    // The account's quota holds for the gateway too: 45047 after five.
    for i in 1..5 {
        let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", &i.to_string())).await;
        assert_eq!(answer["data"]["errcode"], 0);
    }
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "6")).await;
    assert_eq!(
        (answer["code"].clone(), answer["data"]["errcode"].clone()),
        (json!(200), json!(45047))
    );
    assert_eq!(sandbox.gateway_messages(None).len(), 5);
    let (_, listed) = control(
        &sandbox,
        Method::GET,
        "/sandbox/gateway/messages?openid=oUSER",
        "",
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 5);
    sandbox.stop().await;
}

#[tokio::test]
async fn gateway_injections_and_string_errcodes() {
    let sandbox = start(config()).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    let (status, injected) = control(
        &sandbox,
        Method::POST,
        "/sandbox/gateway/inject",
        r#"{"errcode":40001,"count":2,"as_string":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{injected}");
    assert_eq!(injected["injected"]["count"], 2);
    for _ in 0..2 {
        let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "x")).await;
        assert_eq!(answer["code"], 200);
        assert_eq!(
            answer["data"]["errcode"], "40001",
            "a numeric string: {answer}"
        );
    }
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "x")).await;
    assert_eq!(answer["data"]["errcode"], 0);

    let injection = GatewayInjection {
        errcode: None,
        code: Some(402),
        count: 1,
        as_string: false,
    };
    sandbox.gateway_inject(injection).unwrap();
    let (status, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "x")).await;
    assert_eq!(
        (status, answer["code"].clone(), answer["data"].clone()),
        (200, json!(402), Value::Null)
    );

    let (_, status) = control(
        &sandbox,
        Method::POST,
        "/sandbox/gateway/settings",
        r#"{"errcode_as_string":true}"#,
    )
    .await;
    assert_eq!(status["errcode_as_string"], true);
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oUSER", "x")).await;
    assert_eq!(answer["data"]["errcode"], "0");
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oNOBODY", "x")).await;
    assert_eq!(answer["data"]["errcode"], "40003");

    for bad in [
        r#"{"errcode":0,"count":1}"#,
        r#"{"code":200,"count":1}"#,
        r#"{"errcode":40001,"code":500,"count":1}"#,
        r#"{"errcode":40001,"count":0}"#,
        r#"{"count":1}"#,
    ] {
        let (status, _) = control(&sandbox, Method::POST, "/sandbox/gateway/inject", bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(
        sandbox.gateway_messages(None).len(),
        2,
        "injected answers accept nothing"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn gateway_faults_and_a_configured_system() {
    let mut config = config();
    config.system_error_rate = 1.0;
    config.gateway.system = "MY_SYSTEM".into();
    let sandbox = start(config).await;
    let headers = [
        ("system", "MY_SYSTEM"),
        ("content-type", "application/json"),
    ];
    let (status, answer) = gateway(&sandbox, &headers, &gateway_body("o", "x")).await;
    assert_eq!((status, answer["code"].clone()), (500, json!(500)));
    sandbox.stop().await;

    let mut config = self::config();
    config.drop_rate = 1.0;
    let sandbox = start(config).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    let url = format!("{}{GATEWAY}", sandbox.url());
    let dropped = common::exchange_with(
        Method::POST,
        &url,
        &HEADERS,
        gateway_body("oUSER", "x").as_bytes(),
    )
    .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        sandbox.gateway_messages(None).len(),
        1,
        "processed before the drop"
    );
    sandbox.stop().await;

    // Without the default Official Account, the gateway sends through the first account.
    let mut config = self::config();
    config.api.accounts = vec![ApiAccount::new(AccountKind::Mp, "wxMini", "MiniSecret")];
    let sandbox = start(config).await;
    let (_, status) = control(&sandbox, Method::GET, "/sandbox/gateway", "").await;
    assert_eq!(status["appid"], "wxMini");
    sandbox.api_user_writes("wxMini", "oMINI").unwrap();
    let (_, answer) = gateway(&sandbox, &HEADERS, &gateway_body("oMINI", "x")).await;
    assert_eq!(answer["data"]["errcode"], 0);
    sandbox.stop().await;

    let mut config = self::config();
    config.gateway.appid = Some("wxUnknown".into());
    let error = Sandbox::start(config).await.unwrap_err();
    assert!(error.to_string().contains("--gateway-appid"), "{error}");
}

#[tokio::test]
async fn configured_yunzhenji_accounts_replace_the_default() {
    let mut config = config();
    config.yunzhenji.accounts = vec![YunzhenjiAccount::new("mine", "MineToken", "1688")];
    let sandbox = start(config).await;
    assert_eq!(
        refused(&send(&sandbox, &call("t", vec![text("x", None)])).await),
        40002
    );
    let mut body = call("t", vec![text("x", None)]);
    body["app_id"] = json!("mine");
    body["access_token"] = json!("MineToken");
    body["wxid"] = json!("1688");
    assert_eq!(send(&sandbox, &body).await["errcode"], 0);
    sandbox.stop().await;

    let mut config = self::config();
    config.yunzhenji.failure_rate = -0.5;
    let error = Sandbox::start(config).await.unwrap_err();
    assert!(error.to_string().contains("--yzj-failure-rate"), "{error}");
}

/// The `kefu-sandbox` binary serves both vendors by default, and at trace level logs neither
/// yunzhenji's access token nor a callback URL's path.
#[test]
fn the_binary_serves_both_vendors_and_logs_no_access_token() {
    let mut child = common::spawn_logging(
        env!("CARGO_BIN_EXE_kefu-sandbox"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            "BinToken",
            "--aes-key",
            KEY,
            "--bot-appid",
            "BinBot",
            "--yzj-account",
            "yzj-bin:YzjBinarySecret42:1688851111111111",
            "--yzj-callback-url",
            "http://127.0.0.1:9/v1/callbacks/yunzhenji/CallbackPathSecret",
            "--yzj-push-delay-ms",
            "0",
        ],
        "trace",
    );
    let line = common::startup_line(&mut child);
    let base = common::startup_field(&line, "api_base_url");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let body = json!({"app_id": "yzj-bin", "access_token": "YzjBinarySecret42", "wxid": "1688851111111111",
            "target_wxid": "t", "messages": [text("hi", Some(json!("1")))]});
        let url = format!("{base}{SEND}");
        let (_, answer) = common::exchange(Method::POST, &url, Some("application/json"), body.to_string().as_bytes())
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((answer["errcode"].clone(), answer["data"][0]["api_send_id"].clone()), (json!(0), json!("1")));
        let mut wrong = body.clone();
        wrong["access_token"] = json!("YzjWrongSecret42");
        let (_, answer) = common::exchange(Method::POST, &url, Some("application/json"), wrong.to_string().as_bytes())
            .await
            .unwrap();
        assert!(answer.contains("40002"), "{answer}");
        let url = format!("{base}{GATEWAY}");
        let (status, answer) = common::exchange_with(Method::POST, &url, &HEADERS, gateway_body("oX", "hi").as_bytes())
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(answer.contains(r#""errcode":40003"#), "{answer}");
        // The push to the closed port is retried, then given up: wait for it to be recorded.
        let pushes = format!("{base}/sandbox/yunzhenji/pushes");
        for _ in 0..400 {
            let (_, listed) = common::exchange(Method::GET, &pushes, None, b"").await.unwrap();
            if listed != "[]" {
                assert!(listed.contains(r#""attempts":3"#), "{listed}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the push was never finished");
    });

    let status = common::terminate(&mut child);
    let stderr = common::stderr_of(&mut child);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains(SEND) && stderr.contains("yunzhenji push"),
        "{stderr}"
    );
    assert!(stderr.contains("yzj-bin"), "{stderr}");
    for secret in [
        "YzjBinarySecret42",
        "YzjWrongSecret42",
        "CallbackPathSecret",
        "BinToken",
    ] {
        assert!(
            !stderr.contains(secret),
            "no {secret} in the logs:\n{stderr}"
        );
    }
}
