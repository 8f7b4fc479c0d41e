//! `kefu-connector sandbox` over real loopback sockets: kefu-client against the emulated
//! platform, the control routes, the handoff callback, fault injection, and the binary itself.
//! Every sandbox listens on 127.0.0.1:0 and is stopped by its test.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use hyper::Method;
use kefu_client::{Client, Error, KefuSwitch, Operation, PlatformCode};
use kefu_connector::sandbox::{
    AskForPerson, CallbackDelivery, OaAccount, OaSay, RecordedMessage, Redelivery, Sandbox,
    SandboxConfig, Say,
};
use kefu_payload::envelope::{DialogueCallback, XmlCallback};
use kefu_payload::{
    Article, ArticleType, CallbackEvent, Channel, Event, HandoffCallback, KefuState,
    KefuStateChange, KefuStateGet, Msg, News, SendMsg, StateQuery,
};
use serde_json::Value;
use tokio::net::TcpListener;
use wxbizmsgcrypt::MsgCrypt;

mod common;

const TOKEN: &str = "SandboxTestToken0123456789abcd";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OTHER_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APPID: &str = "Gg8HejYTkUsEIlG";
const OA: &str = "wx0000000000000000";

fn config() -> SandboxConfig {
    SandboxConfig::new(TOKEN, KEY, APPID)
}

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts")
}

fn client(sandbox: &Sandbox) -> Client {
    client_with(sandbox, TOKEN, KEY, APPID)
}

fn client_with(sandbox: &Sandbox, token: &str, key: &str, appid: &str) -> Client {
    Client::builder(token, key, appid)
        .base_url(sandbox.base_url())
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("the client builds")
}

fn text(openid: &str, text: &str) -> SendMsg {
    SendMsg::builder(openid, Channel::OfficialAccount, text)
        .appid(OA)
        .build()
        .unwrap()
}

/// A plain HTTP exchange: (status, body).
async fn http(method: Method, url: &str, content_type: Option<&str>, body: &str) -> (u16, String) {
    common::exchange(method, url, content_type, body.as_bytes())
        .await
        .expect("the sandbox answers")
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = http(Method::GET, url, None, "").await;
    (status, serde_json::from_str(&body).unwrap())
}

fn platform_code(error: &Error) -> i64 {
    error
        .platform_code()
        .unwrap_or_else(|| panic!("expected a platform error, got {error}"))
        .code()
}

#[tokio::test]
async fn client_messages_are_accepted_and_recorded_exactly() {
    let sandbox = start(config()).await;
    let client = client(&sandbox);

    let greeting = SendMsg::builder("oUSER", Channel::OfficialAccount, "您好 <客服> & welcome")
        .appid(OA)
        .event(Event::WaiterEnter)
        .kefuname("客服小红")
        .kefuavatar("https://example.com/a.png")
        .ans_node_name("售后")
        .build()
        .unwrap();
    let reply = client.send(&greeting).await.expect("sendmsg succeeds");
    assert_eq!(reply.message(), Some("Success"));
    let rid = reply.rid().expect("every answer carries a rid");
    assert_eq!(rid.len(), 8);
    assert!(rid.bytes().all(|b| b.is_ascii_hexdigit()));

    let news = Msg::News(News {
        articles: vec![Article {
            title: "退货指南".into(),
            description: "三步完成退货".into(),
            url: "https://example.com/return".into(),
            picurl: "https://example.com/return.png".into(),
            article_type: Some(ArticleType::H5),
        }],
    });
    let card = SendMsg::builder("oUSER", Channel::OfficialAccount, news.clone())
        .appid(OA)
        .build()
        .unwrap();
    client.send(&card).await.expect("a news card is accepted");

    let recorded = sandbox.messages(Some("oUSER"));
    assert_eq!(recorded.len(), 2);
    let first = &recorded[0];
    assert_eq!(first.xml, greeting.to_xml().unwrap(), "the exact plaintext");
    assert_eq!(first.msg, Msg::text("您好 <客服> & welcome"));
    assert_eq!(first.event, Some(Event::WaiterEnter));
    assert_eq!(first.appid.as_deref(), Some(OA));
    assert_eq!(first.kefuname.as_deref(), Some("客服小红"));
    assert_eq!(
        first.kefuavatar.as_deref(),
        Some("https://example.com/a.png")
    );
    assert_eq!(first.ans_node_name.as_deref(), Some("售后"));
    assert_eq!(first.channel, Channel::OfficialAccount);
    let second = &recorded[1];
    assert_eq!(second.xml, card.to_xml().unwrap());
    assert_eq!(second.msg, news);
    assert!(second.seq > first.seq);
    assert!(first.received_at_ms > 1_600_000_000_000);

    // The same over HTTP: msg is a string for text and the object for rich content.
    let (status, json) =
        get_json(&format!("{}/sandbox/messages?openid=oUSER", sandbox.url())).await;
    assert_eq!(status, 200);
    assert_eq!(json[0]["msg"], "您好 <客服> & welcome");
    assert_eq!(json[0]["event"], "waiterEnter");
    assert_eq!(json[0]["channel"], 0);
    assert_eq!(json[0]["xml"], greeting.to_xml().unwrap());
    assert_eq!(json[1]["msg"]["news"]["articles"][0]["title"], "退货指南");
    assert_eq!(json[1]["event"], Value::Null);
    let over_http: Vec<RecordedMessage> = serde_json::from_value(json).unwrap();
    assert_eq!(over_http, recorded);
    sandbox.stop().await;
}

#[tokio::test]
async fn messages_are_listed_in_order_and_filtered_by_user() {
    let sandbox = start(config()).await;
    let client = client(&sandbox);
    for (openid, body) in [
        ("oA", "a1"),
        ("oB", "b1"),
        ("oA", "a2"),
        ("oB", "b2"),
        ("oA", "a3"),
    ] {
        client.send(&text(openid, body)).await.unwrap();
    }
    let texts = |json: &Value| -> Vec<String> {
        json.as_array()
            .unwrap()
            .iter()
            .map(|m| m["msg"].as_str().unwrap().to_owned())
            .collect()
    };
    let base = format!("{}/sandbox/messages", sandbox.url());
    let (_, all) = get_json(&base).await;
    assert_eq!(texts(&all), ["a1", "b1", "a2", "b2", "a3"]);
    let seqs: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (_, a) = get_json(&format!("{base}?openid=oA")).await;
    assert_eq!(texts(&a), ["a1", "a2", "a3"]);
    let (_, b) = get_json(&format!("{base}?openid=oB")).await;
    assert_eq!(texts(&b), ["b1", "b2"]);
    let (_, none) = get_json(&format!("{base}?openid=nobody")).await;
    assert_eq!(none, Value::Array(vec![]));
    let (status, typo) = get_json(&format!("{base}?openId=oA")).await;
    assert_eq!(status, 400);
    assert!(
        typo["error"]["message"]
            .as_str()
            .unwrap()
            .contains("openId")
    );
    assert_eq!(sandbox.messages(Some("oB")).len(), 2);
    assert_eq!(sandbox.messages(None).len(), 5);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_1001() {
    let sandbox = start(config()).await;
    let wrong = client_with(&sandbox, "NotTheSandboxToken", KEY, APPID);
    let error = wrong.send(&text("oUSER", "hi")).await.unwrap_err();
    assert_eq!(error.platform_code(), Some(PlatformCode::InvalidToken));
    assert_eq!(error.message(), Some("TOKEN is not valid"));
    assert_eq!(error.rid().map(str::len), Some(8));
    assert!(!error.is_transient());
    assert!(sandbox.messages(None).is_empty());
    sandbox.stop().await;
}

#[tokio::test]
async fn platform_rules_answer_their_codes() {
    let sandbox = start(config()).await;
    let client = client(&sandbox);
    let cases = [
        // Empty openid.
        (
            "<xml><appid>wx0000000000000000</appid><openid></openid><msg>hi</msg><channel>0</channel></xml>",
            1008,
        ),
        // Channel 0 without appid.
        (
            "<xml><openid>oUSER</openid><msg>hi</msg><channel>0</channel></xml>",
            1008,
        ),
        // Channel 2 is not open.
        (
            "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>hi</msg><channel>2</channel></xml>",
            2_928_312,
        ),
        // Channel 7 without appid.
        (
            "<xml><openid>oUSER</openid><msg>hi</msg><channel>7</channel></xml>",
            1011,
        ),
        // Not the sendmsg XML at all.
        ("<xml><openid>oUSER</openid></xml>", -40002),
    ];
    for (xml, code) in cases {
        let error = client.call_xml(Operation::SendMsg, xml).await.unwrap_err();
        assert_eq!(platform_code(&error), code, "{xml}: {error}");
        assert!(error.rid().is_some(), "{xml}: every answer carries a rid");
    }
    let error = client
        .call_xml(
            Operation::SendMsg,
            "<xml><openid>oUSER</openid><msg>hi</msg><channel>7</channel></xml>",
        )
        .await
        .unwrap_err();
    assert_eq!(error.platform_code(), Some(PlatformCode::InvalidAppid));
    assert_eq!(error.message(), Some("appid is not valid"));
    let error = client
        .call_xml(
            Operation::SendMsg,
            "<xml><appid>wx1</appid><openid>o</openid><msg>hi</msg><channel>3</channel></xml>",
        )
        .await
        .unwrap_err();
    assert_eq!(error.platform_code(), Some(PlatformCode::Unsupported));
    assert_eq!(error.message(), Some("unsupport, to do."));
    assert!(
        sandbox.messages(None).is_empty(),
        "nothing refused is recorded"
    );

    // Channel 7 with the TOKEN as appid is fine.
    client
        .call_xml(
            Operation::SendMsg,
            &format!("<xml><appid>{TOKEN}</appid><openid>oUSER</openid><msg>hi</msg><channel>7</channel></xml>"),
        )
        .await
        .unwrap();
    assert_eq!(sandbox.messages(None).len(), 1);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_body_encrypted_with_another_key_or_appid_is_refused() {
    let sandbox = start(config()).await;
    let other_key = client_with(&sandbox, TOKEN, OTHER_KEY, APPID);
    let error = other_key.send(&text("oUSER", "hi")).await.unwrap_err();
    let code = platform_code(&error);
    // Almost always -40007 (padding); a wrong key passes the padding check by chance about once
    // in 256 and then fails the frame (-40008) or the receive-id (-40005).
    assert!([-40007, -40008, -40005].contains(&code), "{error}");
    assert!(
        error.message().unwrap().contains("cannot decrypt"),
        "{error}"
    );
    assert!(!error.is_transient());

    let other_appid = client_with(&sandbox, TOKEN, KEY, "AnotherBotAppid");
    let error = other_appid.send(&text("oUSER", "hi")).await.unwrap_err();
    assert_eq!(platform_code(&error), -40005, "{error}");
    assert!(
        error.message().unwrap().contains("AnotherBotAppid"),
        "{error}"
    );
    assert!(sandbox.messages(None).is_empty());
    sandbox.stop().await;
}

#[tokio::test]
async fn raw_requests_get_precise_answers() {
    let sandbox = start(config()).await;
    let url = format!("{}/sendmsg/{TOKEN}", sandbox.base_url());
    let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
    let body = format!(
        r#"{{"encrypt":"{}"}}"#,
        crypt
            .encrypt(text("oUSER", "hi").to_xml().unwrap().as_bytes())
            .unwrap()
    );
    // No Content-Type: the platform requires application/json.
    let (status, answer) = http(Method::POST, &url, None, &body).await;
    assert_eq!(status, 415, "{answer}");
    // The callback's key spelling is not the request's.
    let wrong_key = body.replace("\"encrypt\"", "\"encrypted\"");
    let (status, answer) = http(Method::POST, &url, Some("application/json"), &wrong_key).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["errcode"], -40002, "{answer}");
    // Not base64.
    let (_, answer) = http(
        Method::POST,
        &url,
        Some("application/json"),
        r#"{"encrypt":"***"}"#,
    )
    .await;
    let json: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["errcode"], -40010, "{answer}");
    // Only POST.
    let (status, _) = http(Method::GET, &url, None, "").await;
    assert_eq!(status, 405);
    // Unknown routes.
    let (status, _) = http(Method::GET, &format!("{}/nowhere", sandbox.url()), None, "").await;
    assert_eq!(status, 404);
    // And the well-formed request goes through.
    let (status, answer) = http(Method::POST, &url, Some("application/json"), &body).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (&json["errcode"], &json["msg"]),
        (&0.into(), &"Success".into())
    );
    assert_eq!(sandbox.messages(None).len(), 1);
    sandbox.stop().await;
}

#[tokio::test]
async fn kefustate_change_then_get() {
    let sandbox = start(config()).await;
    let client = client(&sandbox);
    let get = KefuStateGet::new(OA, "oUSER", StateQuery::All).unwrap();

    let state = client.kefustate_get(&get).await.unwrap();
    assert_eq!(state.kefustate(), Some(KefuSwitch::Off));
    assert_eq!(state.status(), Some(KefuState::Asking));

    let change = KefuStateChange::new(OA, "oUSER", KefuState::PersonServing).unwrap();
    let reply = client.kefustate_change(&change).await.unwrap();
    assert_eq!(reply.json()["errmsg"], "");

    let state = client.kefustate_get(&get).await.unwrap();
    assert_eq!(state.kefustate(), Some(KefuSwitch::On));
    assert_eq!(state.status(), Some(KefuState::PersonServing));
    let simple = KefuStateGet::new(OA, "oUSER", StateQuery::Simple).unwrap();
    let state = client.kefustate_get(&simple).await.unwrap();
    assert_eq!(state.kefustate(), Some(KefuSwitch::On));
    assert_eq!(state.status(), None, "type=simple answers only kefustate");

    let (status, user) = get_json(&format!("{}/sandbox/users/oUSER", sandbox.url())).await;
    assert_eq!(status, 200);
    assert_eq!(user["status"], "personserving");
    assert_eq!(user["kefustate"], "on");
    assert_eq!(user["kfstate"], 1);
    assert_eq!(user["appid"], OA);
    assert_eq!(sandbox.user("oUSER").status, KefuState::PersonServing);
    assert_eq!(sandbox.user("someone-else").status, KefuState::Asking);

    let done = KefuStateChange::new(OA, "oUSER", KefuState::Complete).unwrap();
    client.kefustate_change(&done).await.unwrap();
    let state = client.kefustate_get(&get).await.unwrap();
    assert_eq!(state.kefustate(), Some(KefuSwitch::Off));
    assert_eq!(state.status(), Some(KefuState::Complete));

    // An empty appid is refused with 1008 (the builder refuses it too, so send raw XML).
    let error = client
        .call_xml(
            Operation::KefuStateChange,
            "<xml><appid></appid><openid>oUSER</openid><kefustate>asking</kefustate></xml>",
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.platform_code(),
        Some(PlatformCode::RequiredFieldEmpty)
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn system_error_rate_one_is_a_transient_minus_one() {
    let mut config = config();
    config.system_error_rate = 1.0;
    let sandbox = start(config).await;
    let error = client(&sandbox)
        .send(&text("oUSER", "hi"))
        .await
        .unwrap_err();
    assert_eq!(error.platform_code(), Some(PlatformCode::SystemBusy));
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.message(), Some("系统异常,请稍候再试"));
    assert!(
        sandbox.messages(None).is_empty(),
        "a failed request is not recorded"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn drop_rate_one_is_an_ambiguous_failure() {
    let mut config = config();
    config.drop_rate = 1.0;
    let sandbox = start(config).await;
    let client = client(&sandbox);
    for _ in 0..3 {
        let started = Instant::now();
        let error = client.send(&text("oUSER", "hi")).await.unwrap_err();
        assert!(error.is_ambiguous(), "{error}");
        assert!(!error.is_not_sent(), "{error}");
        assert!(
            !error.is_timeout(),
            "the connection is closed, not left hanging: {error}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(
        sandbox.messages(None).is_empty(),
        "a dropped request is not recorded"
    );
    sandbox.stop().await;
}

/// What became of one request, with the rid when there is one.
async fn fault_sequence(seed: u64) -> Vec<(String, Option<String>)> {
    let mut config = config();
    config.drop_rate = 0.3;
    config.system_error_rate = 0.3;
    config.seed = Some(seed);
    let sandbox = start(config).await;
    assert_eq!(sandbox.seed(), seed);
    let client = client(&sandbox);
    let mut outcomes = Vec::new();
    for i in 0..24 {
        let outcome = match client.send(&text("oUSER", &format!("m{i}"))).await {
            Ok(reply) => ("ok".to_owned(), reply.rid().map(str::to_owned)),
            Err(e) if e.is_ambiguous() => ("drop".to_owned(), None),
            Err(e) if e.platform_code() == Some(PlatformCode::SystemBusy) => {
                ("system_error".to_owned(), e.rid().map(str::to_owned))
            }
            Err(e) => panic!("unexpected failure: {e}"),
        };
        outcomes.push(outcome);
    }
    let accepted = outcomes.iter().filter(|(o, _)| o == "ok").count();
    assert_eq!(
        sandbox.messages(None).len(),
        accepted,
        "only accepted requests are recorded"
    );
    sandbox.stop().await;
    outcomes
}

#[tokio::test]
async fn the_same_seed_repeats_the_same_faults() {
    let first = fault_sequence(11).await;
    let second = fault_sequence(11).await;
    assert_eq!(first, second);
    for kind in ["ok", "drop", "system_error"] {
        assert!(first.iter().any(|(o, _)| o == kind), "{kind} in {first:?}");
    }
    let other = fault_sequence(12).await;
    assert_ne!(
        first.iter().map(|(o, _)| o).collect::<Vec<_>>(),
        other.iter().map(|(o, _)| o).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn latency_delays_answers_and_stop_cuts_it_short() {
    let mut config = config();
    config.latency = Duration::from_millis(300);
    let sandbox = start(config).await;
    let client = client(&sandbox);
    let started = Instant::now();
    client.send(&text("oUSER", "hi")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    sandbox.stop().await;

    let mut config = self::config();
    config.latency = Duration::from_secs(60);
    let sandbox = start(config).await;
    let client = self::client(&sandbox);
    let call = tokio::spawn(async move { client.send(&text("oUSER", "slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    sandbox.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop does not wait out the latency"
    );
    let reply = call.await.unwrap();
    assert!(
        reply.is_ok(),
        "the request in flight is answered: {reply:?}"
    );
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
struct Received {
    /// The path and query, as sent.
    uri: Uri,
    headers: HeaderMap,
    body: String,
}

/// The requests a [`Receiver`] got, in order.
type Seen = Arc<Mutex<Vec<Received>>>;

/// A stand-in for the connector's callback endpoint: records what it receives.
struct Receiver {
    url: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers as the connector's Dialogue callback does.
    async fn start() -> Receiver {
        Receiver::answering(r#"{"errcode":0,"errmsg":"ok"}"#).await
    }

    /// Answers every request with `answer`.
    async fn answering(answer: &'static str) -> Receiver {
        let seen: Seen = Arc::default();
        let app =
            Router::new()
                .route(
                    "/callback/{secret}",
                    post(
                        move |State(seen): State<Seen>,
                              uri: Uri,
                              headers: HeaderMap,
                              body: String| async move {
                            seen.lock().unwrap().push(Received { uri, headers, body });
                            answer
                        },
                    ),
                )
                .with_state(Arc::clone(&seen));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/callback/unguessable-segment"),
            seen,
            task,
        }
    }

    fn callbacks(&self) -> Vec<HandoffCallback> {
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|Received { headers, body, .. }| {
                assert_eq!(headers["content-type"], "application/json");
                let json: Value = serde_json::from_str(body).unwrap();
                assert_eq!(
                    json.as_object().unwrap().len(),
                    1,
                    "exactly {{\"encrypted\"}}: {body}"
                );
                assert!(json["encrypted"].is_string(), "{body}");
                let envelope = DialogueCallback::parse(body).unwrap();
                let plaintext = crypt
                    .decrypt(&envelope.encrypted)
                    .expect("same key and APPID");
                HandoffCallback::parse(std::str::from_utf8(plaintext.message()).unwrap()).unwrap()
            })
            .collect()
    }
}

#[tokio::test]
async fn say_pushes_the_handoff_callback() {
    let receiver = Receiver::start().await;
    let mut config = config();
    config.callback_url = Some(receiver.url.clone());
    let sandbox = start(config).await;

    // In process: a plain message while the user talks to the bot.
    let outcome = sandbox.say("oUSER", Say::new("你好")).await.unwrap();
    assert_eq!(outcome.kfstate, 0);
    assert!(outcome.callback.is_success(), "{:?}", outcome.callback);

    // Over HTTP: asking for a human moves the user to needperson first.
    let (status, answer) = http(
        Method::POST,
        &format!("{}/sandbox/users/oUSER/say", sandbox.url()),
        Some("application/json"),
        r#"{"text":"我要转人工"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["status"], "needperson");
    assert_eq!(answer["kfstate"], 3);
    assert_eq!(answer["callback"]["outcome"], "delivered");
    assert_eq!(answer["callback"]["status"], 200);
    assert_eq!(answer["callback"]["body"], r#"{"errcode":0,"errmsg":"ok"}"#);

    let callbacks = receiver.callbacks();
    assert_eq!(callbacks.len(), 2);
    let handoff = &callbacks[1];
    assert_eq!(handoff.userid, "oUSER");
    assert_eq!(handoff.appid, OA);
    assert_eq!(handoff.content.as_deref(), Some("我要转人工"));
    assert_eq!(handoff.event, None);
    assert_eq!(handoff.from, Some(0));
    assert_eq!(handoff.kfstate, Some(KefuState::NeedPerson));
    assert_eq!(handoff.channel, Some(0));
    assert_eq!(handoff.assessment, Some(0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - handoff.createtime.unwrap()).abs() < 60);
    assert_eq!(callbacks[0].kfstate, Some(KefuState::Asking));
    assert_eq!(callbacks[0].content.as_deref(), Some("你好"));
    assert_eq!(sandbox.user("oUSER").status, KefuState::NeedPerson);

    // Channel and appid given explicitly.
    sandbox
        .say("oH5", Say::new("hello").channel(7).appid(TOKEN))
        .await
        .unwrap();
    let h5 = receiver.callbacks().pop().unwrap();
    assert_eq!((h5.channel, h5.appid.as_str()), (Some(7), TOKEN));

    // Bad requests.
    let (status, answer) = http(
        Method::POST,
        &format!("{}/sandbox/users/oUSER/say", sandbox.url()),
        Some("application/json"),
        r#"{"text":""}"#,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains(r#""field":"text""#), "{answer}");
    let (status, answer) = http(
        Method::POST,
        &format!("{}/sandbox/users/oUSER/say", sandbox.url()),
        Some("application/json"),
        r#"{"message":"hi"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("unknown field `message`"), "{answer}");

    sandbox.stop().await;
    receiver.task.abort();
}

#[tokio::test]
async fn say_reports_a_missing_or_unreachable_callback() {
    let sandbox = start(config()).await;
    let outcome = sandbox.say("oUSER", Say::new("我要转人工")).await.unwrap();
    assert_eq!(outcome.callback, CallbackDelivery::NotConfigured);
    assert_eq!(
        outcome.kfstate, 3,
        "the state moves even without a callback URL"
    );
    let (status, answer) = http(
        Method::POST,
        &format!("{}/sandbox/users/oUSER/say", sandbox.url()),
        Some("application/json"),
        r#"{"text":"在吗"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer.contains(r#""outcome":"not_configured""#), "{answer}");
    sandbox.stop().await;

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = config();
    config.callback_url = Some(format!("http://127.0.0.1:{port}/callback/x"));
    let sandbox = start(config).await;
    let (status, answer) = http(
        Method::POST,
        &format!("{}/sandbox/users/oUSER/say", sandbox.url()),
        Some("application/json"),
        r#"{"text":"hi"}"#,
    )
    .await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer.contains(r#""outcome":"failed""#), "{answer}");
    assert!(
        !answer.contains("/callback/x"),
        "the callback path is not echoed: {answer}"
    );
    sandbox.stop().await;
}

/// `POST {url}` with a JSON body (or none): (status, JSON answer).
async fn post_json(url: &str, body: &str) -> (u16, Value) {
    let (status, answer) = http(Method::POST, url, Some("application/json"), body).await;
    let json = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (status, json)
}

/// A sandbox pushing handoff callbacks to a fresh receiver.
async fn with_receiver() -> (Sandbox, Receiver) {
    let receiver = Receiver::start().await;
    let mut config = config();
    config.callback_url = Some(receiver.url.clone());
    (start(config).await, receiver)
}

fn evaluate(openid: &str) -> SendMsg {
    SendMsg::builder(openid, Channel::OfficialAccount, "请为本次服务评分")
        .appid(OA)
        .event(Event::WaiterQualityEvaluate)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_rating_is_accepted_only_after_a_waiter_quality_evaluate() {
    let (sandbox, receiver) = with_receiver().await;
    let client = client(&sandbox);
    let rate = format!("{}/sandbox/users/oUSER/rate", sandbox.url());

    // Before any waiterQualityEvaluate: 409, nothing pushed.
    let (status, answer) = post_json(&rate, r#"{"assessment":5}"#).await;
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("oUSER cannot rate now") && message.contains("waiterQualityEvaluate"),
        "{message}"
    );
    assert!(receiver.callbacks().is_empty());
    // A waiterEnter is not an evaluation.
    let enter = SendMsg::builder("oUSER", Channel::OfficialAccount, "您好")
        .appid(OA)
        .event(Event::WaiterEnter)
        .build()
        .unwrap();
    client.send(&enter).await.unwrap();
    let change = KefuStateChange::new(OA, "oUSER", KefuState::PersonServing).unwrap();
    client.kefustate_change(&change).await.unwrap();
    assert_eq!(post_json(&rate, r#"{"assessment":5}"#).await.0, 409);

    // The card, then the rating.
    client.send(&evaluate("oUSER")).await.unwrap();
    let (_, user) = get_json(&format!("{}/sandbox/users/oUSER", sandbox.url())).await;
    assert_eq!(user["evaluation_pending"], true);
    // Out of range or malformed first: nothing is consumed.
    let (status, answer) = post_json(&rate, r#"{"assessment":6}"#).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "assessment");
    assert_eq!(post_json(&rate, r#"{"assessment":0}"#).await.0, 422);
    assert_eq!(post_json(&rate, r#"{"rating":4}"#).await.0, 400);
    assert_eq!(post_json(&rate, "").await.0, 400);

    let (status, answer) = post_json(&rate, r#"{"assessment":4}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kfstate"], 1);
    assert_eq!(answer["callback"]["outcome"], "delivered");
    let callbacks = receiver.callbacks();
    assert_eq!(callbacks.len(), 1);
    let rating = &callbacks[0];
    assert_eq!(rating.assessment, Some(4));
    assert_eq!(
        rating.kfstate,
        Some(KefuState::PersonServing),
        "the current state"
    );
    assert_eq!(rating.from, Some(0));
    assert_eq!(rating.event, None);
    assert_eq!(rating.content.as_deref(), Some(""));
    assert_eq!(
        (rating.userid.as_str(), rating.appid.as_str()),
        ("oUSER", OA)
    );
    let (_, user) = get_json(&format!("{}/sandbox/users/oUSER", sandbox.url())).await;
    assert_eq!(
        (&user["evaluation_pending"], &user["assessment"]),
        (&false.into(), &4.into())
    );

    // One card, one rating.
    let (status, answer) = post_json(&rate, r#"{"assessment":5}"#).await;
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("already rated (assessment 4)"),
        "{message}"
    );
    let error = sandbox.rate("oUSER", 5).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");

    // In process, after a new card and the end of the session: the state it reports is complete.
    client.send(&evaluate("oUSER")).await.unwrap();
    let done = KefuStateChange::new(OA, "oUSER", KefuState::Complete).unwrap();
    client.kefustate_change(&done).await.unwrap();
    let outcome = sandbox.rate("oUSER", 2).await.unwrap();
    assert_eq!((outcome.status, outcome.kfstate), (KefuState::Complete, 2));
    let last = receiver.callbacks().pop().unwrap();
    assert_eq!(
        (last.assessment, last.kfstate),
        (Some(2), Some(KefuState::Complete))
    );
    assert_eq!(
        receiver.callbacks().len(),
        2,
        "refused ratings push nothing"
    );
    assert!(matches!(sandbox.rate("oUSER", 9).await, Err(e) if e.field() == Some("assessment")));
    sandbox.stop().await;
    receiver.task.abort();
}

#[tokio::test]
async fn leaving_pushes_user_quit_and_entering_user_enter() {
    let (sandbox, receiver) = with_receiver().await;
    sandbox
        .say("oUSER", Say::new("我要转人工").channel(1).appid("wxMP"))
        .await
        .unwrap();
    let (status, answer) =
        post_json(&format!("{}/sandbox/users/oUSER/leave", sandbox.url()), "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["status"], "needperson",
        "leaving does not change the state"
    );
    let quit = receiver.callbacks().pop().unwrap();
    assert_eq!(quit.event, Some(CallbackEvent::UserQuit));
    assert_eq!(quit.content.as_deref(), Some(""));
    assert_eq!(quit.from, Some(0));
    assert_eq!(quit.kfstate, Some(KefuState::NeedPerson));
    assert_eq!(
        (quit.channel, quit.appid.as_str()),
        (Some(1), "wxMP"),
        "as last used"
    );
    assert_eq!(quit.assessment, Some(0));
    assert_eq!(sandbox.user("oUSER").status, KefuState::NeedPerson);

    let (status, _) = post_json(
        &format!("{}/sandbox/users/oUSER/enter", sandbox.url()),
        "{}",
    )
    .await;
    assert_eq!(status, 200);
    let enter = receiver.callbacks().pop().unwrap();
    assert_eq!(enter.event, Some(CallbackEvent::UserEnter));
    assert_eq!(enter.content.as_deref(), Some(""));
    let outcome = sandbox.leave("oNEW").await.unwrap();
    assert_eq!(outcome.kfstate, 0);
    let fresh = receiver.callbacks().pop().unwrap();
    assert_eq!(
        (fresh.channel, fresh.appid.as_str()),
        (Some(0), OA),
        "the defaults"
    );
    sandbox.enter("oNEW").await.unwrap();
    assert_eq!(receiver.callbacks().len(), 5);

    // Bodies are strict; only POST.
    let (status, answer) = post_json(
        &format!("{}/sandbox/users/oUSER/leave", sandbox.url()),
        r#"{"why":"bye"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = http(
        Method::GET,
        &format!("{}/sandbox/users/oUSER/leave", sandbox.url()),
        None,
        "",
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = post_json(&format!("{}/sandbox/users/oUSER/dance", sandbox.url()), "").await;
    assert_eq!(status, 404);
    sandbox.stop().await;
    receiver.task.abort();
}

#[tokio::test]
async fn ask_for_person_moves_the_user_to_needperson() {
    let (sandbox, receiver) = with_receiver().await;
    let client = client(&sandbox);
    let ask = format!("{}/sandbox/users/oUSER/ask-for-person", sandbox.url());
    let (status, answer) = post_json(&ask, "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["kfstate"], &answer["status"]),
        (&3.into(), &"needperson".into())
    );
    let callback = receiver.callbacks().pop().unwrap();
    assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
    assert_eq!(callback.content.as_deref(), Some("转人工"));
    assert_eq!((callback.from, callback.event.clone()), (Some(0), None));
    let get = KefuStateGet::new(OA, "oUSER", StateQuery::All).unwrap();
    let state = client.kefustate_get(&get).await.unwrap();
    assert_eq!(state.status(), Some(KefuState::NeedPerson));
    assert_eq!(state.kefustate(), Some(KefuSwitch::Off));

    // Any text reaches the skill; in process too.
    let outcome = sandbox
        .ask_for_person("oOTHER", AskForPerson::new().text("找客服"))
        .await
        .unwrap();
    assert_eq!(outcome.kfstate, 3);
    assert_eq!(
        receiver.callbacks().pop().unwrap().content.as_deref(),
        Some("找客服")
    );

    // While an agent serves the user, the skill does not fire.
    let change = KefuStateChange::new(OA, "oUSER", KefuState::PersonServing).unwrap();
    client.kefustate_change(&change).await.unwrap();
    let (status, answer) = post_json(&ask, r#"{"text":"转人工"}"#).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("personserving"),
        "{answer}"
    );
    let said = sandbox.say("oUSER", Say::new("还在吗")).await.unwrap();
    assert_eq!(said.kfstate, 1, "messages while served carry personserving");
    assert_eq!(receiver.callbacks().len(), 3);
    let (status, answer) = post_json(&ask, r#"{"text":""}"#).await;
    assert_eq!((status, &answer["error"]["field"]), (422, &"text".into()));
    sandbox.stop().await;
    receiver.task.abort();
}

#[tokio::test]
async fn redeliver_repeats_the_last_callback_or_reencrypts_it() {
    let (sandbox, receiver) = with_receiver().await;
    let redeliver = format!("{}/sandbox/users/oUSER/redeliver", sandbox.url());
    let (status, answer) = post_json(&redeliver, "").await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing to redeliver")
    );

    let first = sandbox.say("oUSER", Say::new("我要转人工")).await.unwrap();
    // The state moves on; a redelivery still carries what the callback carried.
    sandbox.say("oOTHER", Say::new("hi")).await.unwrap();
    let (status, same) = post_json(&redeliver, "").await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["encrypted"], first.encrypted);
    let (_, again) = post_json(&redeliver, r#"{"reencrypt":true}"#).await;
    assert_ne!(again["encrypted"], first.encrypted);
    assert_eq!(again["xml"], first.xml);
    let reencrypted = sandbox
        .redeliver("oUSER", Redelivery::Reencrypt)
        .await
        .unwrap();
    assert_eq!(reencrypted.xml, first.xml);
    let replayed = sandbox
        .redeliver("oUSER", Redelivery::SameCiphertext)
        .await
        .unwrap();
    assert_eq!(
        replayed.encrypted, first.encrypted,
        "the original, not the last re-encryption"
    );

    let original = format!(r#"{{"encrypted":"{}"}}"#, first.encrypted);
    let seen: Vec<String> = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], original);
    assert_eq!(seen[2], original, "byte for byte");
    assert_eq!(seen[5], original);
    assert_ne!(seen[3], original);
    assert_ne!(seen[4], seen[3], "a fresh random each time");
    let callbacks = receiver.callbacks();
    for index in [2, 3, 4, 5] {
        assert_eq!(callbacks[index], callbacks[0], "the same plaintext");
    }
    assert_eq!(callbacks[1].userid, "oOTHER");
    let (status, _) = post_json(&redeliver, r#"{"reencrypt":"yes"}"#).await;
    assert_eq!(status, 400);
    sandbox.stop().await;
    receiver.task.abort();
}

const OA_TOKEN: &str = "OfficialAccountToken";
const OA_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const OA_APPID: &str = "wx2c2769f8efd9abc2";
const OA_GH: &str = "gh_10f6c3c3ac5a";

/// A sandbox with an Official Account pushing to a receiver that answers `success`.
async fn with_oa_receiver() -> (Sandbox, Receiver) {
    let receiver = Receiver::answering("success").await;
    let mut oa = OaAccount::new(OA_TOKEN, OA_KEY, OA_APPID);
    oa.original_id = OA_GH.into();
    oa.callback_url = Some(format!("{}?from=sandbox", receiver.url));
    let mut config = config();
    config.oa = Some(oa);
    (start(config).await, receiver)
}

/// The query parameters, percent-decoded exactly once.
fn query_params(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .unwrap();
            (key.to_owned(), value.into_owned())
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no {name} in {params:?}"))
}

/// Checks one safe-mode push as an OA server would, and returns its decrypted plaintext.
fn open_oa_push(received: &Received, openid: &str) -> String {
    let params = query_params(&received.uri);
    let keys: Vec<&str> = params.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "from",
            "signature",
            "timestamp",
            "nonce",
            "openid",
            "encrypt_type",
            "msg_signature"
        ],
        "the URL's own query, then WeChat's"
    );
    assert_eq!(param(&params, "encrypt_type"), "aes");
    assert_eq!(param(&params, "openid"), openid);
    let (timestamp, nonce) = (param(&params, "timestamp"), param(&params, "nonce"));
    let envelope = XmlCallback::parse(&received.body).unwrap();
    assert_eq!(envelope.to_user_name.as_deref(), Some(OA_GH));
    assert_eq!(
        received.body,
        format!(
            "<xml><ToUserName><![CDATA[{OA_GH}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
            envelope.encrypt
        )
    );
    wxbizmsgcrypt::verify_plain(OA_TOKEN, timestamp, nonce, param(&params, "signature"))
        .expect("signature is the plain 3-input signature");
    wxbizmsgcrypt::verify_message(
        OA_TOKEN,
        timestamp,
        nonce,
        &envelope.encrypt,
        param(&params, "msg_signature"),
    )
    .expect("msg_signature covers Encrypt");
    assert!(
        wxbizmsgcrypt::verify_plain(TOKEN, timestamp, nonce, param(&params, "signature")).is_err(),
        "signed with the OA's Token, not the bot's"
    );
    let crypt = MsgCrypt::new(OA_TOKEN, OA_KEY, OA_APPID).unwrap();
    let plaintext = crypt
        .decrypt(&envelope.encrypt)
        .expect("the OA's key and AppID");
    assert_eq!(plaintext.receive_id(), OA_APPID.as_bytes());
    String::from_utf8(plaintext.message().to_vec()).unwrap()
}

/// The text between `<tag>` and `</tag>`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

#[tokio::test]
async fn the_official_account_push_is_signed_and_encrypted_like_wechat_s() {
    let (sandbox, receiver) = with_oa_receiver().await;
    let openid = "oyORnuP8q7ou2gfYjqLzSIWZf0rs+/=";
    let url = format!(
        "{}/sandbox/oa/users/{}/say",
        sandbox.url(),
        "oyORnuP8q7ou2gfYjqLzSIWZf0rs%2B%2F%3D"
    );
    let (status, answer) = post_json(&url, r#"{"text":"你好 <abc> ]]> &"}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["callback"]["outcome"], "delivered");
    assert_eq!(answer["callback"]["status"], 200);
    assert_eq!(answer["callback"]["body"], "success");
    assert!(answer["callback"]["elapsed_ms"].is_u64());
    let msg_id: u64 = answer["msg_id"].as_str().unwrap().parse().unwrap();

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["content-type"], "text/xml");
    assert!(
        seen[0]
            .uri
            .query()
            .unwrap()
            .contains("&openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs%2B%2F%3D&"),
        "{}",
        seen[0].uri
    );
    let plaintext = open_oa_push(&seen[0], openid);
    assert_eq!(plaintext, answer["plaintext"]);
    assert_eq!(
        element(&plaintext, "ToUserName"),
        format!("<![CDATA[{OA_GH}]]>")
    );
    assert_eq!(
        element(&plaintext, "FromUserName"),
        format!("<![CDATA[{openid}]]>")
    );
    assert_eq!(element(&plaintext, "MsgType"), "<![CDATA[text]]>");
    assert_eq!(
        element(&plaintext, "Content"),
        "<![CDATA[你好 <abc> ]]]]><![CDATA[> &]]>"
    );
    assert_eq!(element(&plaintext, "MsgId"), msg_id.to_string());
    let create_time: i64 = element(&plaintext, "CreateTime").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - create_time).abs() < 60);
    let params = query_params(&seen[0].uri);
    assert_eq!(param(&params, "timestamp"), create_time.to_string());

    // In process; every message gets a fresh MsgId, and the Dialogue state is untouched.
    let second = sandbox.oa_say(openid, OaSay::new("第二条")).await.unwrap();
    assert!(second.callback.is_success(), "{:?}", second.callback);
    assert_ne!(second.msg_id, msg_id);
    let seen = receiver.seen.lock().unwrap().clone();
    let plaintext = open_oa_push(&seen[1], openid);
    assert_eq!(element(&plaintext, "MsgId"), second.msg_id.to_string());
    assert_eq!(element(&plaintext, "Content"), "<![CDATA[第二条]]>");
    assert_eq!(sandbox.user(openid).messages, 0);

    // The JSON format.
    let (status, answer) = post_json(
        &format!("{}/sandbox/oa/users/oJSON/say", sandbox.url()),
        r#"{"text":"json \"quoted\"","format":"json"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let seen = receiver.seen.lock().unwrap().clone();
    let json = &seen[2];
    assert_eq!(json.headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["ToUserName"], OA_GH);
    let params = query_params(&json.uri);
    let encrypt = body["Encrypt"].as_str().unwrap();
    wxbizmsgcrypt::verify_message(
        OA_TOKEN,
        param(&params, "timestamp"),
        param(&params, "nonce"),
        encrypt,
        param(&params, "msg_signature"),
    )
    .unwrap();
    let crypt = MsgCrypt::new(OA_TOKEN, OA_KEY, OA_APPID).unwrap();
    let message: Value = serde_json::from_slice(crypt.decrypt(encrypt).unwrap().message()).unwrap();
    assert_eq!(message["Content"], "json \"quoted\"");
    assert_eq!(message["MsgType"], "text");
    assert_eq!(message["FromUserName"], "oJSON");
    assert_eq!(
        message["MsgId"].as_u64().unwrap().to_string(),
        answer["msg_id"].as_str().unwrap()
    );

    // Bad requests.
    let (status, answer) = post_json(
        &format!("{}/sandbox/oa/users/o1/say", sandbox.url()),
        r#"{"text":"a\u0001"}"#,
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["field"]),
        (422, &"text".into()),
        "{answer}"
    );
    let (status, answer) = post_json(
        &format!("{}/sandbox/oa/users/o1/say", sandbox.url()),
        r#"{"text":"a","mode":"secure"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(receiver.seen.lock().unwrap().len(), 3);
    sandbox.stop().await;
    receiver.task.abort();

    // Without an Official Account, the routes say how to configure one.
    let sandbox = start(config()).await;
    let (status, answer) = post_json(
        &format!("{}/sandbox/oa/users/o1/say", sandbox.url()),
        r#"{"text":"hi"}"#,
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--oa-token")
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn the_official_account_push_can_be_replayed_or_reencrypted() {
    let (sandbox, receiver) = with_oa_receiver().await;
    let redeliver = format!("{}/sandbox/oa/users/oUSER/redeliver", sandbox.url());
    let (status, answer) = post_json(&redeliver, "").await;
    assert_eq!(status, 409, "{answer}");

    let first = sandbox.oa_say("oUSER", OaSay::new("你好")).await.unwrap();
    let (status, answer) = post_json(&redeliver, "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["body"], first.body);
    let (status, answer) = post_json(&redeliver, r#"{"reencrypt":true}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_ne!(answer["body"], first.body);
    let again = sandbox
        .oa_redeliver("oUSER", Redelivery::SameCiphertext)
        .await
        .unwrap();
    assert_eq!((&again.query, &again.body), (&first.query, &first.body));

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[1].uri, seen[0].uri, "the same query");
    assert_eq!(seen[1].body, seen[0].body, "the same body");
    assert_eq!(seen[3].uri, seen[0].uri);
    assert_eq!(seen[3].body, seen[0].body);
    // Re-encrypted: another ciphertext, a valid msg_signature over it, the same plaintext.
    assert_ne!(seen[2].body, seen[0].body);
    assert_ne!(
        seen[2].uri, seen[0].uri,
        "msg_signature covers the new ciphertext"
    );
    let original = open_oa_push(&seen[0], "oUSER");
    assert_eq!(open_oa_push(&seen[2], "oUSER"), original);
    assert_eq!(open_oa_push(&seen[1], "oUSER"), original);
    assert_eq!(element(&original, "MsgId"), first.msg_id.to_string());
    sandbox.stop().await;
    receiver.task.abort();
}

#[test]
fn the_binary_prints_its_address_answers_and_stops_on_sigterm() {
    let mut child = common::spawn_logging(
        env!("CARGO_BIN_EXE_kefu-connector"),
        &[
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--aes-key",
            KEY,
            "--bot-appid",
            APPID,
            "--seed",
            "5",
            "--oa-token",
            OA_TOKEN,
            "--oa-aes-key",
            OA_KEY,
            "--oa-appid",
            OA_APPID,
            "--oa-format",
            "json",
        ],
        "debug",
    );
    let line = common::startup_line(&mut child);
    assert!(line.starts_with("sandbox listening "), "{line:?}");
    let field = |name: &str| common::startup_field(&line, name);
    let addr = field("addr");
    let base_url = field("base_url");
    assert_eq!(base_url, format!("http://{addr}/openapi"));
    assert_eq!(field("seed"), "5");
    assert!(!addr.ends_with(":0"), "{addr}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::builder(TOKEN, KEY, APPID)
            .base_url(&base_url)
            .build()
            .unwrap();
        client
            .send(&text("oUSER", "hi"))
            .await
            .expect("the binary answers");
        let wrong = Client::builder("WrongToken", KEY, APPID)
            .base_url(&base_url)
            .build()
            .unwrap();
        let error = wrong.send(&text("oUSER", "hi")).await.unwrap_err();
        assert_eq!(error.platform_code(), Some(PlatformCode::InvalidToken));
        let (status, json) = get_json(&format!("http://{addr}/sandbox/messages")).await;
        assert_eq!(status, 200);
        assert_eq!(json.as_array().unwrap().len(), 1);
        let (status, push) = post_json(
            &format!("http://{addr}/sandbox/oa/users/oUSER/say"),
            r#"{"text":"hi"}"#,
        )
        .await;
        assert_eq!(status, 200, "{push}");
        assert_eq!(push["callback"]["outcome"], "not_configured");
        assert_eq!(push["format"], "json");
        let encrypt = push["encrypt"].as_str().unwrap();
        let crypt = MsgCrypt::new(OA_TOKEN, OA_KEY, OA_APPID).unwrap();
        let message: Value =
            serde_json::from_slice(crypt.decrypt(encrypt).unwrap().message()).unwrap();
        assert_eq!(message["Content"], "hi");
    });

    let status = common::terminate(&mut child);
    let stderr = common::stderr_of(&mut child);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("/openapi/sendmsg/{TOKEN}"), "{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the TOKEN is never logged:\n{stderr}"
    );
    assert!(!stderr.contains("WrongToken"), "nor a wrong one:\n{stderr}");
    assert!(!stderr.contains(KEY), "the key is never logged:\n{stderr}");
    assert!(
        !stderr.contains(OA_TOKEN) && !stderr.contains(OA_KEY),
        "nor the Official Account's:\n{stderr}"
    );
    assert!(
        stderr.contains("the user wrote to the Official Account"),
        "{stderr}"
    );
}

#[test]
fn a_sigterm_right_after_the_startup_line_stops_it_cleanly() {
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--token",
                TOKEN,
                "--aes-key",
                KEY,
                "--bot-appid",
                APPID,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let line = common::startup_line(&mut child);
        assert!(line.starts_with("sandbox listening "), "{line:?}");
        let status = common::terminate(&mut child);
        assert!(
            status.success(),
            "the signal was handled, not fatal: {status:?}"
        );
    }
}

#[test]
fn invalid_rates_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .args([
            "sandbox",
            "--token",
            TOKEN,
            "--aes-key",
            KEY,
            "--bot-appid",
            APPID,
            "--drop-rate",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--drop-rate") && stderr.contains("outside 0.0..=1.0"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--aes-key",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDE",
            "--bot-appid",
            APPID,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--aes-key") && stderr.contains("got 41"),
        "{stderr}"
    );
    assert!(!stderr.contains("abcdefghij"), "{stderr}");
}
