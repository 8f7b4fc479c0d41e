//! The inbound side over real loopback sockets: the Dialogue platform's handoff callback, the
//! standard WeChat callbacks, delivery to a webhook (signature checked) and by long poll, and the
//! conversation state, across a restart.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use kefu_connector::config::Config;
use kefu_connector::desk::{Desk, DeskReply};
use kefu_connector::inbound::wechat::{UNAUTHENTICATED_ANSWER, UNREADABLE_ANSWER};
use kefu_connector::sandbox::{
    AskForPerson, CallbackDelivery, OaAccount, OaFormat, OaMode, OaSay, Redelivery, Sandbox,
    SandboxConfig,
};
use kefu_connector::serve::Relay;
use kefu_payload::envelope::{DialogueCallback, JsonCallback, XmlCallback};
use kefu_payload::{CallbackEvent, HandoffCallback, KefuState};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use wxbizmsgcrypt::MsgCrypt;

const TOKEN: &str = "INBOUNDTOKEN0123456789";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const OTHER_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const BOT: &str = "Gg8HejYTkUsEIlG";
const API_KEY: &str = "inbound-desk-key-0123456789";
const SECRET: &str = "dialogue-callback-secret-0123";
const HOOK_SECRET: &str = "webhook-hmac-secret-0123456789";

const OA_TOKEN: &str = "oatoken";
const OA_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const OA_OLD_KEY: &str = OTHER_KEY;
const OA_APPID: &str = "wx1111111111111111";
const CORP_TOKEN: &str = "corptoken";
const CORP_ID: &str = "ww2222222222222222";

/// The answer to every accepted Dialogue callback, and to every refused one.
const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;
const REFUSED: &str = r#"{"errcode":400,"errmsg":"invalid callback"}"#;

// ---------------------------------------------------------------------------------------------
// A desk's webhook receiver.

#[derive(Debug, Clone)]
struct Delivery {
    event_id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// What the desk does: recompute the HMAC over `<timestamp>.<body>` and compare.
    fn verify(&self, secret: &str) -> bool {
        let Some(hex) = self.signature.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(expected) = hex::decode(hex) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.timestamp.as_bytes());
        mac.update(b".");
        mac.update(self.body.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

#[derive(Clone, Default)]
struct Hook {
    seen: Arc<Mutex<Vec<Delivery>>>,
    failing: Arc<AtomicBool>,
}

impl Hook {
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `count` distinct events have been acknowledged.
    async fn wait_for(&self, count: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen();
            let mut ids: Vec<&str> = seen.iter().map(|d| d.event_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() >= count {
                return seen;
            }
            assert!(Instant::now() < deadline, "webhook got {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    hook.seen.lock().unwrap().push(Delivery {
        event_id: header("x-kefu-event-id"),
        timestamp: header("x-kefu-timestamp"),
        signature: header("x-kefu-signature"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    if hook.failing.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

// ---------------------------------------------------------------------------------------------
// The relay.

async fn start_relay(outbox: &Path, platform: &str, extra: &[(&str, String)]) -> (Relay, Desk) {
    let mut settings: Vec<(&str, String)> = vec![
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".into()),
        ("KEFU_SERVER_API_KEY", API_KEY.into()),
        ("KEFU_DIALOGUE_TOKEN", TOKEN.into()),
        ("KEFU_DIALOGUE_AES_KEY", KEY.into()),
        ("KEFU_DIALOGUE_BOT_APPID", BOT.into()),
        ("KEFU_DIALOGUE_APPID", "wx0000000000000000".into()),
        ("KEFU_DIALOGUE_BASE_URL", platform.into()),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "5".into()),
        ("KEFU_OUTBOX_PATH", outbox.display().to_string()),
        ("KEFU_CALLBACKS_DIALOGUE_SECRET", SECRET.into()),
        ("KEFU_WEBHOOK_SECRET", HOOK_SECRET.into()),
        ("KEFU_WEBHOOK_INITIAL_BACKOFF_MS", "20".into()),
        ("KEFU_WEBHOOK_MAX_BACKOFF_MS", "200".into()),
        ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "oa,corp,open".into()),
        // An Official Account in plaintext mode (明文模式): no key, the plain signature only.
        ("KEFU_WECHAT_OPEN_TOKEN", OA_TOKEN.into()),
        ("KEFU_WECHAT_OA_TOKEN", OA_TOKEN.into()),
        ("KEFU_WECHAT_OA_AES_KEY", OA_KEY.into()),
        ("KEFU_WECHAT_OA_PREVIOUS_AES_KEY", OA_OLD_KEY.into()),
        ("KEFU_WECHAT_OA_RECEIVE_ID", OA_APPID.into()),
        ("KEFU_WECHAT_CORP_KIND", "wecom".into()),
        ("KEFU_WECHAT_CORP_TOKEN", CORP_TOKEN.into()),
        ("KEFU_WECHAT_CORP_AES_KEY", KEY.into()),
        ("KEFU_WECHAT_CORP_RECEIVE_ID", CORP_ID.into()),
    ];
    settings.extend(extra.iter().cloned());
    let config = Config::from_settings(&settings).unwrap();
    let relay = Relay::start(&config).await.unwrap();
    let desk = Desk::new(format!("http://{}", relay.addr), API_KEY);
    (relay, desk)
}

/// A base URL that refuses connections, for tests that never reach the platform.
fn dead_platform() -> String {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/openapi", dead.local_addr().unwrap());
    drop(dead);
    url
}

fn handoff(userid: &str, kfstate: KefuState, text: &str, createtime: i64) -> HandoffCallback {
    HandoffCallback {
        userid: userid.into(),
        appid: "wx0000000000000000".into(),
        content: Some(text.into()),
        from: Some(0),
        kfstate: Some(kfstate),
        channel: Some(0),
        assessment: Some(0),
        createtime: Some(createtime),
        ..HandoffCallback::default()
    }
}

/// The platform's callback body: the callback encrypted with a fresh random prefix.
fn encrypted(callback: &HandoffCallback, key: &str, receive_id: &str) -> String {
    encrypted_plaintext(&callback.to_xml().unwrap(), key, receive_id)
}

fn encrypted_plaintext(plaintext: &str, key: &str, receive_id: &str) -> String {
    let crypt = MsgCrypt::new(TOKEN, key, receive_id).unwrap();
    DialogueCallback {
        encrypted: crypt.encrypt(plaintext.as_bytes()).unwrap(),
    }
    .to_json()
}

async fn post_dialogue(desk: &Desk, secret: &str, body: impl Into<Bytes>) -> DeskReply {
    desk.post_raw(&format!("/v1/callbacks/dialogue/{secret}"), body)
        .await
        .unwrap()
}

async fn events(desk: &Desk, query: &str) -> Value {
    let reply = desk.get(&format!("/v1/events?{query}")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn metrics(desk: &Desk) -> String {
    desk.get("/metrics").await.unwrap().text
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// The Dialogue callback.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialogue_callbacks_are_stored_pushed_signed_pulled_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::default();
    let url = hook.start().await;
    let (relay, desk) = start_relay(
        &dir.path().join("o.sqlite3"),
        &dead_platform(),
        &[("KEFU_WEBHOOK_URL", url)],
    )
    .await;

    let ask = handoff("oUSER", KefuState::NeedPerson, "我要转人工", now_secs());
    let started = Instant::now();
    let reply = post_dialogue(&desk, SECRET, encrypted(&ask, KEY, BOT)).await;
    assert_eq!((reply.status.as_u16(), reply.text.as_str()), (200, OK));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The platform's redelivery: the same plaintext, encrypted again with a new random prefix.
    let again = encrypted(&ask, KEY, BOT);
    let reply = post_dialogue(&desk, SECRET, again).await;
    assert_eq!((reply.status.as_u16(), reply.text.as_str()), (200, OK));
    let more = handoff("oUSER", KefuState::NeedPerson, "在吗?", now_secs() + 5);
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&more, KEY, BOT))
            .await
            .text,
        OK
    );

    // Pull.
    let page = events(&desk, "after=0").await;
    assert_eq!(page["next"], 2, "{page}");
    let pulled = page["events"].as_array().unwrap().clone();
    assert_eq!(pulled.len(), 2, "the redelivery is dropped: {page}");
    assert_eq!(pulled[0]["id"], 1);
    assert_eq!(pulled[0]["kind"], "handoff_requested");
    assert_eq!(pulled[0]["source"], "dialogue");
    assert_eq!(pulled[0]["openid"], "oUSER");
    assert_eq!(pulled[0]["content"], "我要转人工");
    assert_eq!(pulled[0]["kfstate"], "needperson");
    assert_eq!(pulled[0]["channel"], 0);
    assert_eq!(pulled[0]["created_at"], ask.createtime.unwrap());
    assert_eq!(pulled[0]["raw"]["content"]["msg"], "我要转人工");
    assert_eq!(pulled[1]["id"], 2);
    assert_eq!(pulled[1]["kind"], "message", "already waiting for a person");
    assert_eq!(events(&desk, "after=1").await["events"][0]["id"], 2);

    // Push: the same events, in order, signed.
    let pushed = hook.wait_for(2).await;
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    for (delivery, pulled) in pushed.iter().zip(&pulled) {
        assert!(delivery.verify(HOOK_SECRET), "{delivery:?}");
        assert!(!delivery.verify("another-secret-0123456789"));
        assert_eq!(&delivery.json(), pulled);
        assert_eq!(delivery.event_id, pulled["id"].to_string());
        let age = now_secs() - delivery.timestamp.parse::<i64>().unwrap();
        assert!((0..60).contains(&age), "{delivery:?}");
    }

    // A long poll with nothing new waits, then answers empty with the same cursor.
    let started = Instant::now();
    let page = events(&desk, "after=2&wait=1").await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(page, json!({"events": [], "next": 2}));
    // A long poll is woken by the next callback.
    let poller = desk.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        (events(&poller, "after=2&wait=20").await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rating = HandoffCallback {
        assessment: Some(5),
        content: Some(String::new()),
        kfstate: Some(KefuState::PersonServing),
        ..handoff("oUSER", KefuState::PersonServing, "", now_secs() + 100)
    };
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&rating, KEY, BOT))
            .await
            .text,
        OK
    );
    let (page, waited) = poll.await.unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(page["events"][0]["kind"], "rating");
    assert_eq!(page["events"][0]["assessment"], 5);
    assert_eq!(page["next"], 3);

    // The conversation's state followed.
    let session = desk.get("/v1/sessions/oUSER").await.unwrap().body;
    assert_eq!(session["state"], "personserving", "{session}");
    assert_eq!(session["last_event_id"], 3);

    let text = metrics(&desk).await;
    for line in [
        r#"kefu_callbacks_total{source="dialogue",outcome="stored",reason="none"} 3"#,
        r#"kefu_callbacks_total{source="dialogue",outcome="duplicate",reason="none"} 1"#,
        r#"kefu_dialogue_receive_id_total{observed="bot_appid",bot_appid="true"} 4"#,
        r#"kefu_http_requests_total{route="/v1/callbacks/dialogue/{secret}",status="200"} 4"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains(SECRET));
    // The event feed needs the bearer key; the callback does not.
    let anonymous = desk.with_key("wrong");
    assert_eq!(anonymous.get("/v1/events").await.unwrap().status, 401);
    assert_eq!(anonymous.get("/v1/sessions").await.unwrap().status, 401);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_dialogue_callbacks_get_one_uniform_answer_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let valid = handoff("oUSER", KefuState::NeedPerson, "hi", now_secs());
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "secret",
            "wrong-secret-0123456789",
            encrypted(&valid, KEY, BOT),
        ),
        ("secret", "", encrypted(&valid, KEY, BOT)),
        ("body", SECRET, "not json".into()),
        ("body", SECRET, r#"{"cipher":"x"}"#.into()),
        ("base64", SECRET, r#"{"encrypted":"not base64!"}"#.into()),
        ("base64", SECRET, r#"{"encrypted":"QUJD"}"#.into()),
        ("wrong key", SECRET, encrypted(&valid, OTHER_KEY, BOT)),
        (
            "receive_id",
            SECRET,
            encrypted(&valid, KEY, "wxSomeoneElse"),
        ),
        (
            "xml",
            SECRET,
            encrypted_plaintext("<xml><appid>a</appid></xml>", KEY, BOT),
        ),
        (
            "xml",
            SECRET,
            encrypted_plaintext("{\"userid\":1}", KEY, BOT),
        ),
        (
            "xml",
            SECRET,
            encrypted_plaintext(
                "<xml><userid>u</userid><appid>a</appid><kfstate>9</kfstate></xml>",
                KEY,
                BOT,
            ),
        ),
    ];
    for (what, secret, body) in &cases {
        let reply = post_dialogue(&desk, secret, body.clone()).await;
        let status = if secret.is_empty() {
            // No secret segment at all: no such route.
            404
        } else {
            400
        };
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text);
        if status == 400 {
            assert_eq!(reply.text, REFUSED, "{what}");
        }
    }
    assert_eq!(events(&desk, "").await, json!({"events": [], "next": 0}));
    assert_eq!(
        desk.get("/v1/sessions/oUSER").await.unwrap().status,
        404,
        "no session either"
    );
    let text = metrics(&desk).await;
    for line in [
        r#"kefu_callbacks_total{source="dialogue",outcome="rejected",reason="secret"} 1"#,
        r#"kefu_callbacks_total{source="dialogue",outcome="rejected",reason="body"} 2"#,
        // Base64, padding, receive-id and the plaintext inside: one label.
        r#"kefu_callbacks_total{source="dialogue",outcome="rejected",reason="decrypt"} 7"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains("outcome=\"stored\""), "{text}");
    // And a valid one is still accepted afterwards.
    let reply = post_dialogue(&desk, SECRET, encrypted(&valid, KEY, BOT)).await;
    assert_eq!(reply.text, OK);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_mode_accepts_another_receive_id_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(
        &dir.path().join("o.sqlite3"),
        &dead_platform(),
        &[("KEFU_CALLBACKS_DIALOGUE_RECEIVE_ID", "log".into())],
    )
    .await;
    let valid = handoff("oUSER", KefuState::Asking, "hi", now_secs());
    let reply = post_dialogue(&desk, SECRET, encrypted(&valid, KEY, "wx0000000000000000")).await;
    assert_eq!(reply.text, OK);
    assert_eq!(events(&desk, "").await["events"][0]["content"], "hi");
    assert!(metrics(&desk).await.contains(
        r#"kefu_dialogue_receive_id_total{observed="wx0000000000000000",bot_appid="false"} 1"#
    ));
    relay.stop().await;
}

/// One HTTP/1.1 GET over a fresh connection with exactly the headers given (the desk client
/// always sends its key): the status and the body.
async fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_default();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Regression (issue 9): `/metrics` was public, and counted a Dialogue callback with bad
/// padding (`aes`) apart from one with good padding and another receive-id (`receive_id`):
/// anyone with the callback URL could run a CBC padding oracle against the EncodingAESKey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_key_or_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(
        &dir.path().join("o.sqlite3"),
        &dead_platform(),
        &[("KEFU_METRICS_LISTEN", "127.0.0.1:0".into())],
    )
    .await;
    let addr = relay.addr;
    let (status, _) = raw_get(addr, "/metrics", "").await;
    assert_eq!(status, 401, "no key");
    let (status, _) = raw_get(
        addr,
        "/metrics",
        "Authorization: Bearer wrong-key-0123456789\r\n",
    )
    .await;
    assert_eq!(status, 401, "a wrong key");
    // RFC 9110: the scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, body) = raw_get(
            addr,
            "/metrics",
            &format!("Authorization: {scheme} {API_KEY}\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{scheme}");
        assert!(body.contains("kefu_callbacks_total"), "{body}");
        let (status, _) = raw_get(
            addr,
            "/v1/events",
            &format!("Authorization: {scheme} {API_KEY}\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{scheme}");
    }
    // metrics.listen: the same text without a key, and nothing else.
    let metrics_addr = relay.metrics_addr.expect("metrics.listen was set");
    assert_ne!(metrics_addr, addr);
    let (status, body) = raw_get(metrics_addr, "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("kefu_callbacks_total"), "{body}");
    assert_eq!(raw_get(metrics_addr, "/v1/events", "").await.0, 404);
    assert_eq!(raw_get(metrics_addr, "/healthz", "").await.0, 404);
    drop(desk);
    relay.stop().await;
    // It stops with the relay.
    assert!(tokio::net::TcpStream::connect(metrics_addr).await.is_err());
}

/// Regression (issue 9): a Dialogue callback with bad padding, one with bad base64, one with
/// good padding and another receive-id, and one with an unreadable plaintext are answered alike
/// AND leave identical metrics, on relays that saw nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialogue_decryption_failures_are_indistinguishable_in_answers_and_metrics() {
    let valid = handoff("oUSER", KefuState::NeedPerson, "hi", now_secs());
    let bodies = [
        (
            "wrong key: padding or framing",
            encrypted(&valid, OTHER_KEY, BOT),
        ),
        ("receive-id", encrypted(&valid, KEY, "wxSomeoneElse")),
        ("base64", r#"{"encrypted":"not base64!"}"#.to_owned()),
        ("length", r#"{"encrypted":"QUJD"}"#.to_owned()),
        (
            "plaintext",
            encrypted_plaintext("<xml><appid>a</appid></xml>", KEY, BOT),
        ),
    ];
    let bodies = &bodies;
    assert_refusals_alike(
        "dialogue",
        bodies.len(),
        (400, REFUSED),
        async |index, desk| {
            let (what, body) = &bodies[index];
            (*what, post_dialogue(desk, SECRET, body.clone()).await)
        },
    )
    .await;
}

/// Feeds each of `cases` refused callbacks to a relay of its own that saw nothing else, and
/// checks that every one was counted as `decrypt` and got the same answer (`expected`) and the
/// same `/metrics`, byte for byte: neither may tell an attacker which check failed.
async fn assert_refusals_alike(
    source: &str,
    cases: usize,
    expected: (u16, &str),
    mut post: impl AsyncFnMut(usize, &Desk) -> (&'static str, DeskReply),
) {
    let dir = tempfile::tempdir().unwrap();
    let counted = format!(
        r#"kefu_callbacks_total{{source="{source}",outcome="rejected",reason="decrypt"}} 1"#
    );
    let mut seen: Vec<(&str, u16, String, String)> = Vec::new();
    for index in 0..cases {
        let (relay, desk) = start_relay(
            &dir.path().join(format!("o{index}.sqlite3")),
            &dead_platform(),
            &[("KEFU_METRICS_LISTEN", "127.0.0.1:0".into())],
        )
        .await;
        let (what, reply) = post(index, &desk).await;
        let (_, text) = raw_get(relay.metrics_addr.unwrap(), "/metrics", "").await;
        assert!(text.contains(&counted), "{what}:\n{text}");
        seen.push((what, reply.status.as_u16(), reply.text, text));
        relay.stop().await;
    }
    let (first, rest) = seen.split_first().unwrap();
    assert_eq!((first.1, first.2.as_str()), expected);
    for other in rest {
        assert_eq!(
            (other.1, &other.2, &other.3),
            (first.1, &first.2, &first.3),
            "{} vs {}",
            other.0,
            first.0
        );
    }
}

/// The same for a WeChat account: once the signature verifies, a wrong key, another receive-id
/// and an unreadable message are one answer and one metric line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_decryption_failures_are_indistinguishable_in_answers_and_metrics() {
    let now = now_secs();
    let cases = [
        ("wrong key", KEY, OA_APPID, oa_text(1, "x", now)),
        ("receive-id", OA_KEY, "wxSomeoneElse", oa_text(1, "x", now)),
        (
            "plaintext",
            OA_KEY,
            OA_APPID,
            "<xml><MsgType>text</MsgType></xml>".to_owned(),
        ),
    ];
    let cases = &cases;
    assert_refusals_alike(
        "wechat",
        cases.len(),
        (400, UNREADABLE_ANSWER),
        async |index, desk| {
            let (what, key, receive_id, plaintext) = &cases[index];
            let encrypt = MsgCrypt::new(OA_TOKEN, key, *receive_id)
                .unwrap()
                .encrypt(plaintext.as_bytes())
                .unwrap();
            let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
            let query = safe_query(OA_TOKEN, now, "n1", &encrypt).query;
            (*what, post_wechat(desk, "oa", &query, body).await)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The standard WeChat callbacks.

struct Signed {
    query: String,
}

/// A safe-mode query: `msg_signature` over the token, timestamp, nonce and `encrypt`.
fn safe_query(token: &str, timestamp: i64, nonce: &str, encrypt: &str) -> Signed {
    let signature = wxbizmsgcrypt::sign_message(token, timestamp.to_string(), nonce, encrypt);
    let plain = wxbizmsgcrypt::sign_plain(token, timestamp.to_string(), nonce);
    Signed {
        query: format!(
            "signature={}&timestamp={timestamp}&nonce={nonce}&openid=oOA&encrypt_type=aes&msg_signature={}",
            plain.as_str(),
            signature.as_str()
        ),
    }
}

fn oa_text(msg_id: u64, text: &str, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_oa]]></ToUserName><FromUserName><![CDATA[oOA]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId><Extra>kept</Extra></xml>"
    )
}

/// Two fields of each event of a page, in order.
fn pairs<'a>(page: &'a Value, first: &str, second: &str) -> Vec<(&'a str, &'a str)> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[first].as_str().unwrap(), e[second].as_str().unwrap()))
        .collect()
}

async fn post_wechat(desk: &Desk, name: &str, query: &str, body: impl Into<Bytes>) -> DeskReply {
    desk.post_raw(&format!("/v1/callbacks/wechat/{name}?{query}"), body)
        .await
        .unwrap()
}

/// Regression (issue 9): in plain mode, the signature of a URL verification (a GET, whose URL
/// proxies log) let one forged push through: it was never remembered against replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_verification_signature_cannot_carry_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let now = now_secs();
    let signature = wxbizmsgcrypt::sign_plain(OA_TOKEN, now.to_string(), "n-verify");
    let query = format!(
        "signature={}&timestamp={now}&nonce=n-verify",
        signature.as_str()
    );
    let verified = desk
        .get(&format!("/v1/callbacks/wechat/open?{query}&echostr=hello"))
        .await
        .unwrap();
    assert_eq!(
        (verified.status.as_u16(), verified.text.as_str()),
        (200, "hello")
    );
    let forged = post_wechat(&desk, "open", &query, oa_text(7, "forged", now)).await;
    assert_eq!(
        (forged.status.as_u16(), forged.text.as_str()),
        (403, "replayed request")
    );
    assert_eq!(events(&desk, "after=0").await["events"], json!([]));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_url_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;

    // OA: plaintext echostr, echoed exactly; the signature does not cover it.
    let signature = wxbizmsgcrypt::sign_plain(OA_TOKEN, "1409659813", "1372623149");
    let reply = desk
        .get(&format!(
            "/v1/callbacks/wechat/oa?signature={}&echostr=7086316417%2B1&timestamp=1409659813&nonce=1372623149",
            signature.as_str()
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text, "7086316417+1",
        "decoded once, no newline, no quotes"
    );
    let reply = desk
        .get("/v1/callbacks/wechat/oa?signature=0000000000000000000000000000000000000000&echostr=1&timestamp=1&nonce=2")
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, UNAUTHENTICATED_ANSWER)
    );

    // WeCom: the echostr is encrypted and signed; a '+' in it arrives as %2B, decoded once.
    let crypt = MsgCrypt::new(CORP_TOKEN, KEY, CORP_ID).unwrap();
    let (plain, echostr) = (0..1000)
        .map(|i| {
            let plain = format!("{}", 5_927_782_489_442_352_469_u64 + i);
            let echostr = crypt.encrypt(plain.as_bytes()).unwrap();
            (plain, echostr)
        })
        .find(|(_, e)| e.contains('+'))
        .unwrap();
    let sign =
        |echostr: &str| wxbizmsgcrypt::sign_message(CORP_TOKEN, "1409659589", "263014780", echostr);
    let encoded = echostr
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let reply = desk
        .get(&format!(
            "/v1/callbacks/wechat/corp?msg_signature={}&timestamp=1409659589&nonce=263014780&echostr={encoded}",
            sign(&echostr).as_str()
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, plain);
    // A receive-id mismatch is answered like any other decryption failure.
    let stranger = MsgCrypt::new(CORP_TOKEN, KEY, "wwSomeOtherCorp").unwrap();
    let echostr = stranger.encrypt(b"123").unwrap();
    let reply = desk
        .get(&format!(
            "/v1/callbacks/wechat/corp?msg_signature={}&timestamp=1409659589&nonce=263014780&echostr={}",
            sign(&echostr).as_str(),
            echostr.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
        ))
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (400, UNREADABLE_ANSWER)
    );
    // An unknown account is answered like a known one with a bad signature.
    let reply = desk
        .get("/v1/callbacks/wechat/nobody?signature=0000000000000000000000000000000000000000&echostr=1&timestamp=1&nonce=2")
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, UNAUTHENTICATED_ANSWER)
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_pushes_in_every_mode_with_replay_and_redelivery_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let now = now_secs();
    let oa = MsgCrypt::new(OA_TOKEN, OA_KEY, OA_APPID).unwrap();

    // Safe mode, XML.
    let encrypt = oa.encrypt(oa_text(1, "safe xml", now).as_bytes()).unwrap();
    let body = XmlCallback {
        to_user_name: Some("gh_oa".into()),
        encrypt: encrypt.clone(),
        agent_id: None,
    }
    .to_xml()
    .unwrap();
    let signed = safe_query(OA_TOKEN, now, "n1", &encrypt);
    let reply = post_wechat(&desk, "oa", &signed.query, body.clone()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (200, "success")
    );
    // The very same request again (WeChat's retry when an answer is lost): dropped.
    let reply = post_wechat(&desk, "oa", &signed.query, body).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (200, "success")
    );

    // Safe mode, JSON.
    let json_plain = json!({"ToUserName": "gh_oa", "FromUserName": "oOA", "CreateTime": now, "MsgType": "text", "Content": "safe json", "MsgId": 2}).to_string();
    let encrypt = oa.encrypt(json_plain.as_bytes()).unwrap();
    let body = JsonCallback {
        to_user_name: Some("gh_oa".into()),
        encrypt: encrypt.clone(),
    }
    .to_json();
    let reply = post_wechat(
        &desk,
        "oa",
        &safe_query(OA_TOKEN, now, "n2", &encrypt).query,
        body,
    )
    .await;
    assert_eq!(reply.text, "success");

    // Compatible mode: the plaintext fields next to Encrypt; the decrypted message counts.
    let encrypt = oa
        .encrypt(oa_text(3, "compatible", now).as_bytes())
        .unwrap();
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_oa]]></ToUserName><FromUserName><![CDATA[oOA]]></FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[compatible]]></Content><MsgId>3</MsgId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let reply = post_wechat(
        &desk,
        "oa",
        &safe_query(OA_TOKEN, now, "n3", &encrypt).query,
        body,
    )
    .await;
    assert_eq!(reply.text, "success");

    // Plaintext mode: the plain signature, to the account in plain mode.
    let plain = wxbizmsgcrypt::sign_plain(OA_TOKEN, now.to_string(), "n4");
    let reply = post_wechat(
        &desk,
        "open",
        &format!(
            "signature={}&timestamp={now}&nonce=n4&openid=oOA",
            plain.as_str()
        ),
        oa_text(4, "plaintext", now),
    )
    .await;
    assert_eq!(reply.text, "success");
    // The plain signature covers no body: replayed with another message, it is refused.
    let reply = post_wechat(
        &desk,
        "open",
        &format!(
            "signature={}&timestamp={now}&nonce=n4&openid=oOA",
            plain.as_str()
        ),
        oa_text(44, "forged", now),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, "replayed request")
    );

    // Key rotation: a message encrypted with the previous key.
    let old = MsgCrypt::new(OA_TOKEN, OA_OLD_KEY, OA_APPID).unwrap();
    let encrypt = old
        .encrypt(oa_text(5, "previous key", now).as_bytes())
        .unwrap();
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let reply = post_wechat(
        &desk,
        "oa",
        &safe_query(OA_TOKEN, now, "n5", &encrypt).query,
        body,
    )
    .await;
    assert_eq!(reply.text, "success");

    // A redelivery of MsgId 1: new timestamp, nonce and ciphertext, same message.
    let encrypt = oa.encrypt(oa_text(1, "safe xml", now).as_bytes()).unwrap();
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let reply = post_wechat(
        &desk,
        "oa",
        &safe_query(OA_TOKEN, now + 1, "n6", &encrypt).query,
        body,
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (200, "success")
    );

    // An event has no MsgId: it is keyed by sender, time and event.
    let event = format!(
        "<xml><ToUserName>gh_oa</ToUserName><FromUserName>oOA</FromUserName><CreateTime>{now}</CreateTime><MsgType>event</MsgType><Event>kf_create_session</Event><KfAccount>test1@test</KfAccount></xml>"
    );
    for nonce in ["n7", "n8"] {
        let encrypt = oa.encrypt(event.as_bytes()).unwrap();
        let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        let reply = post_wechat(
            &desk,
            "oa",
            &safe_query(OA_TOKEN, now, nonce, &encrypt).query,
            body,
        )
        .await;
        assert_eq!(reply.text, "success");
    }

    // WeCom: always encrypted, without encrypt_type.
    let corp = MsgCrypt::new(CORP_TOKEN, KEY, CORP_ID).unwrap();
    let encrypt = corp.encrypt(b"<xml><ToUserName>ww2222222222222222</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>wecom</Content><MsgId>99</MsgId><AgentID>1</AgentID></xml>").unwrap();
    let signature = wxbizmsgcrypt::sign_message(CORP_TOKEN, now.to_string(), "n9", &encrypt);
    let reply = post_wechat(
        &desk,
        "corp",
        &format!("msg_signature={}&timestamp={now}&nonce=n9", signature.as_str()),
        format!("<xml><ToUserName>ww2222222222222222</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID>1</AgentID></xml>"),
    )
    .await;
    assert_eq!(reply.text, "success");

    // Refusals: wrong signature, old timestamp, unknown account.
    let encrypt = oa.encrypt(oa_text(10, "x", now).as_bytes()).unwrap();
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let forged = safe_query("not-the-token", now, "n10", &encrypt);
    let reply = post_wechat(&desk, "oa", &forged.query, body.clone()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, UNAUTHENTICATED_ANSWER)
    );
    let stale = safe_query(OA_TOKEN, now - 3600, "n11", &encrypt);
    let reply = post_wechat(&desk, "oa", &stale.query, body.clone()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, UNAUTHENTICATED_ANSWER)
    );
    // An unknown account: the same answer, so names cannot be enumerated.
    let reply = post_wechat(
        &desk,
        "nobody",
        &safe_query(OA_TOKEN, now, "n12", &encrypt).query,
        body,
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (403, UNAUTHENTICATED_ANSWER)
    );

    let page = events(&desk, "").await;
    let got: Vec<(String, String, String)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["account"].as_str().unwrap().to_owned(),
                e["kind"].as_str().unwrap().to_owned(),
                e["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("oa", "message", "safe xml"),
        ("oa", "message", "safe json"),
        ("oa", "message", "compatible"),
        ("open", "message", "plaintext"),
        ("oa", "message", "previous key"),
        ("oa", "agent_enter", ""),
        ("corp", "message", "wecom"),
    ]
    .iter()
    .map(|(a, k, c)| (a.to_string(), k.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, expected, "{page}");
    let first = &page["events"][0];
    assert_eq!(first["source"], "wechat");
    assert_eq!(first["openid"], "oOA");
    assert_eq!(first["appid"], "gh_oa");
    assert_eq!(first["msg_id"], "1");
    assert_eq!(first["created_at"], now);
    assert_eq!(first["raw"]["Extra"], "kept");
    assert_eq!(page["events"][1]["raw"]["MsgId"], 2);
    assert_eq!(page["events"][5]["agent"]["name"], "test1@test");
    // The OA user's session is the account's own, and knows when the user last wrote (the
    // start of the send window); the Dialogue platform has no user of that id.
    let session = desk.get("/v1/sessions/oOA?account=oa").await.unwrap();
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.body["account"], "oa");
    assert!(
        session.body["last_user_message_at_ms"].is_i64(),
        "{}",
        session.text
    );
    assert_eq!(desk.get("/v1/sessions/oOA").await.unwrap().status, 404);

    let text = metrics(&desk).await;
    for line in [
        r#"kefu_callbacks_total{source="wechat",outcome="stored",reason="none"} 7"#,
        r#"kefu_callbacks_total{source="wechat",outcome="duplicate",reason="none"} 3"#,
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="replay"} 1"#,
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="signature"} 1"#,
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="timestamp"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    relay.stop().await;
}

/// Regression (issue 9): a safe-mode push's query carries a plain `signature`, which covers
/// only the Token, timestamp and nonce. With `encrypt_type` and `msg_signature` dropped, it
/// carried any plaintext message, from any `FromUserName`, to the desk as genuine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_url_cannot_carry_a_forged_plaintext_message() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        (
            "KEFU_CALLBACKS_WECHAT_ACCOUNTS",
            "oa,corp,open,compat,mixed".to_owned(),
        ),
        ("KEFU_WECHAT_COMPAT_MODE", "compatible".into()),
        ("KEFU_WECHAT_COMPAT_TOKEN", OA_TOKEN.into()),
        ("KEFU_WECHAT_COMPAT_AES_KEY", OA_KEY.into()),
        ("KEFU_WECHAT_COMPAT_RECEIVE_ID", OA_APPID.into()),
        // Plain mode with a key: encrypted pushes are taken too, during a switch of modes.
        ("KEFU_WECHAT_MIXED_MODE", "plain".into()),
        ("KEFU_WECHAT_MIXED_TOKEN", OA_TOKEN.into()),
        ("KEFU_WECHAT_MIXED_AES_KEY", OA_KEY.into()),
        ("KEFU_WECHAT_MIXED_RECEIVE_ID", OA_APPID.into()),
    ];
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &extra).await;
    let now = now_secs();
    let oa = MsgCrypt::new(OA_TOKEN, OA_KEY, OA_APPID).unwrap();
    let forged = oa_text(666, "forged", now).replace("oOA", "oVICTIM");
    for (account, nonce, refusal) in [
        ("oa", "s1", (403, UNAUTHENTICATED_ANSWER)),
        ("compat", "s2", (403, UNAUTHENTICATED_ANSWER)),
        ("mixed", "s3", (403, "replayed request")),
    ] {
        // A real push, as WeChat sends it, is accepted.
        let encrypt = oa.encrypt(oa_text(1, account, now).as_bytes()).unwrap();
        let query = safe_query(OA_TOKEN, now, nonce, &encrypt).query;
        let body = format!(
            "<xml><ToUserName>gh_oa</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        let reply = post_wechat(&desk, account, &query, body.clone()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.text.as_str()),
            (200, "success"),
            "{account}"
        );
        // The same push with its msg_signature in upper case: not the platform's spelling.
        let upper: Vec<String> = query
            .split('&')
            .map(|pair| match pair.strip_prefix("msg_signature=") {
                Some(signature) => format!("msg_signature={}", signature.to_ascii_uppercase()),
                None => pair.to_owned(),
            })
            .collect();
        let reply = post_wechat(&desk, account, &upper.join("&"), body.clone()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.text.as_str()),
            (403, UNAUTHENTICATED_ANSWER),
            "{account}: upper-case hex"
        );
        // Its URL, seen in a proxy's log, stripped of encrypt_type and msg_signature.
        let stripped: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                !pair.starts_with("encrypt_type=") && !pair.starts_with("msg_signature=")
            })
            .collect();
        for query in [
            stripped.join("&"),
            format!("{}&encrypt_type=raw", stripped.join("&")),
        ] {
            let reply = post_wechat(&desk, account, &query, forged.clone()).await;
            assert_eq!(
                (reply.status.as_u16(), reply.text.as_str()),
                refusal,
                "{account}: {query}"
            );
        }
    }
    let page = events(&desk, "").await;
    let got = pairs(&page, "account", "openid");
    assert_eq!(
        got,
        [("oa", "oOA"), ("compat", "oOA"), ("mixed", "oOA")],
        "nothing forged is stored: {page}"
    );
    assert_eq!(desk.get("/v1/sessions/oVICTIM").await.unwrap().status, 404);
    let text = metrics(&desk).await;
    for line in [
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="unencrypted"} 4"#,
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="signature"} 3"#,
        r#"kefu_callbacks_total{source="wechat",outcome="rejected",reason="replay"} 2"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    relay.stop().await;
}

/// Regression (issue 9): a 60,000-character `openid` was accepted. Every identifier is bounded
/// by what the platform can hold, with a 422 naming it, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_longer_than_the_platform_holds_are_422_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let long = "o".repeat(60_000);
    let cases = [
        (json!({"openid": long, "channel": 7, "msg": "hi"}), "openid"),
        (
            json!({"openid": "oU", "channel": 0, "appid": "w".repeat(129), "msg": "hi"}),
            "appid",
        ),
        (
            json!({"openid": "oU", "channel": 7, "msg": "hi", "kefuname": "客".repeat(86)}),
            "kefuname",
        ),
        (
            json!({"openid": "oU", "channel": 7, "msg": "hi", "kefuavatar": "h".repeat(2049)}),
            "kefuavatar",
        ),
        (
            json!({"openid": "oU", "channel": 7, "msg": "hi", "ans_node_name": "n".repeat(257)}),
            "ans_node_name",
        ),
    ];
    for (body, field) in cases {
        let reply = desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 422, "{field}: {}", reply.text);
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.text);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field} is ")),
            "{}",
            reply.text
        );
    }
    let path_openid = "o".repeat(129);
    let reply = desk
        .post(
            &format!("/v1/sessions/{path_openid}/enter"),
            &json!({"channel": 7, "kefuname": "A"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["error"]["field"], "openid");
    let reply = desk
        .get(&format!("/v1/sessions/{path_openid}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["error"]["field"], "openid");
    // At the bound, accepted.
    let reply = desk
        .post(
            "/v1/messages",
            &json!({"openid": "o".repeat(128), "channel": 7, "msg": "hi"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.body["id"], 1, "only this one was stored");
    relay.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Conversation state.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_follow_callbacks_and_desk_calls_and_survive_a_restart() {
    let sandbox = Sandbox::start(SandboxConfig::new(TOKEN, KEY, BOT))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite3");
    let (relay, desk) = start_relay(&path, &sandbox.base_url(), &[]).await;

    for (user, time) in [("oFIRST", now_secs()), ("oSECOND", now_secs() + 1)] {
        let ask = handoff(user, KefuState::NeedPerson, "我要转人工", time);
        assert_eq!(
            post_dialogue(&desk, SECRET, encrypted(&ask, KEY, BOT))
                .await
                .text,
            OK
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiting = |desk: Desk| async move {
        let reply = desk.get("/v1/sessions?state=needperson").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["openid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        waiting(desk.clone()).await,
        ["oFIRST", "oSECOND"],
        "oldest first"
    );
    let first = desk.get("/v1/sessions/oFIRST").await.unwrap().body;
    assert_eq!(first["state"], "needperson");
    assert_eq!(first["changed_by"], "callback");
    assert_eq!(first["requested_at_ms"], first["state_since_ms"]);
    assert_eq!(first["channel"], 0);

    let reply = desk
        .post(
            "/v1/sessions/oFIRST/enter",
            &json!({"channel": 0, "kefuname": "小红"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    let first = desk.get("/v1/sessions/oFIRST").await.unwrap().body;
    assert_eq!(first["state"], "personserving", "{first}");
    assert_eq!(first["agent"], "小红");
    assert_eq!(first["changed_by"], "desk");
    assert_eq!(waiting(desk.clone()).await, ["oSECOND"]);
    // A callback sent before the platform learned of the desk's call does not undo it.
    let late = handoff("oFIRST", KefuState::NeedPerson, "还在吗", now_secs() + 2);
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&late, KEY, BOT))
            .await
            .text,
        OK
    );
    assert_eq!(
        desk.get("/v1/sessions/oFIRST").await.unwrap().body["state"],
        "personserving"
    );

    let reply = desk
        .post("/v1/sessions/oFIRST/quit", &json!({"channel": 0}))
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    let first = desk.get("/v1/sessions/oFIRST").await.unwrap().body;
    assert_eq!(first["state"], "complete");
    assert_eq!(first["agent"], "小红", "who served is kept");

    // An agent joining inside the platform.
    let joined = HandoffCallback {
        event: Some(CallbackEvent::CustomerStuffEnter),
        customer_info: Some(kefu_payload::CustomerInfo {
            name: "平台客服".into(),
            avatar: String::new(),
            openid: "oAGENT".into(),
        }),
        content: None,
        ..handoff("oSECOND", KefuState::NeedPerson, "", now_secs() + 10)
    };
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&joined, KEY, BOT))
            .await
            .text,
        OK
    );
    let second = desk.get("/v1/sessions/oSECOND").await.unwrap().body;
    assert_eq!(second["state"], "personserving");
    assert_eq!(second["agent"], "平台客服");

    assert_eq!(desk.get("/v1/sessions/oNOBODY").await.unwrap().status, 404);
    let reply = desk.get("/v1/sessions?state=busy").await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), &reply.body["error"]["field"]),
        (400, &json!("state"))
    );
    let all = desk.get("/v1/sessions").await.unwrap().body;
    assert_eq!(all["sessions"].as_array().unwrap().len(), 2);
    let before = events(&desk, "").await;

    relay.stop().await;
    let (relay, desk) = start_relay(&path, &sandbox.base_url(), &[]).await;
    let first = desk.get("/v1/sessions/oFIRST").await.unwrap().body;
    assert_eq!(
        (first["state"].as_str(), first["agent"].as_str()),
        (Some("complete"), Some("小红"))
    );
    let second = desk.get("/v1/sessions/oSECOND").await.unwrap().body;
    assert_eq!(second["state"], "personserving");
    assert_eq!(
        events(&desk, "").await,
        before,
        "the events, ids and all, survive too"
    );
    // Ids keep counting after a restart.
    let next = handoff("oSECOND", KefuState::PersonServing, "谢谢", now_secs() + 20);
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&next, KEY, BOT))
            .await
            .text,
        OK
    );
    let page = events(&desk, &format!("after={}", before["next"])).await;
    assert_eq!(
        page["events"][0]["id"].as_i64(),
        before["next"].as_i64().map(|n| n + 1)
    );

    // The desk's calls reached the platform in order.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox.messages(Some("oFIRST")).len() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
    sandbox.stop().await;
}

/// A bot bound to several Official Accounts answers each user on the account the user wrote
/// to: a message without `appid` takes the user's session's, before `dialogue.appid`, and the
/// session keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_appid_answers_on_the_account_the_user_wrote_to() {
    let sandbox = Sandbox::start(SandboxConfig::new(TOKEN, KEY, BOT))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &sandbox.base_url(), &[]).await;
    let mut wrote = handoff("oMULTI", KefuState::Asking, "你好", now_secs());
    wrote.appid = "wx1111111111111111".into();
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&wrote, KEY, BOT))
            .await
            .text,
        OK
    );
    for (user, body) in [
        (
            "oMULTI",
            json!({"openid": "oMULTI", "channel": 0, "msg": "您好"}),
        ),
        // A user the relay has not heard of gets the configured default.
        (
            "oNEW",
            json!({"openid": "oNEW", "channel": 0, "msg": "您好"}),
        ),
    ] {
        let reply = desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sandbox.messages(Some(user)).is_empty() {
            assert!(Instant::now() < deadline, "{user} never got the message");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let appid = |user| sandbox.messages(Some(user))[0].appid.clone();
    assert_eq!(appid("oMULTI").as_deref(), Some("wx1111111111111111"));
    assert_eq!(appid("oNEW").as_deref(), Some("wx0000000000000000"));
    let session = desk.get("/v1/sessions/oMULTI").await.unwrap().body;
    assert_eq!(session["appid"], "wx1111111111111111", "{session}");
    assert_eq!(session["account"], "dialogue", "{session}");
    assert!(session["last_user_message_at_ms"].is_i64(), "{session}");
    relay.stop().await;
    sandbox.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The webhook, when the desk is down for a while.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_until_the_desk_answers_keeping_each_users_order() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::default();
    hook.failing.store(true, Ordering::SeqCst);
    let url = hook.start().await;
    let (relay, desk) = start_relay(
        &dir.path().join("o.sqlite3"),
        &dead_platform(),
        &[("KEFU_WEBHOOK_URL", url)],
    )
    .await;
    for i in 0..6 {
        let user = if i % 2 == 0 { "oA" } else { "oB" };
        let cb = handoff(
            user,
            KefuState::NeedPerson,
            &format!("m{i}"),
            now_secs() + i,
        );
        assert_eq!(
            post_dialogue(&desk, SECRET, encrypted(&cb, KEY, BOT))
                .await
                .text,
            OK
        );
    }
    // Refused at least twice each for the heads of the queues.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.seen().len() < 4 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        metrics(&desk)
            .await
            .contains(r#"kefu_webhook_deliveries_total{outcome="retry",status="503"}"#)
    );
    hook.failing.store(false, Ordering::SeqCst);
    hook.wait_for(6).await;
    // Let the acknowledgements settle, then look at what was acknowledged, per user.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = hook.seen();
    for user in ["oA", "oB"] {
        let mut ids: Vec<i64> = seen
            .iter()
            .filter(|d| d.json()["openid"] == user)
            .map(|d| d.event_id.parse().unwrap())
            .collect();
        // Attempts of one user never overtake each other: ids appear in non-decreasing order.
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{user}: {ids:?}");
        ids.dedup();
        assert_eq!(ids.len(), 3, "{user}: {ids:?}");
    }
    assert!(metrics(&desk).await.contains("kefu_inbound_pending 0"));
    relay.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What the sandbox (the platform and an Official Account, emulated) sends is accepted.

fn delivered(outcome: &CallbackDelivery) -> (u16, String) {
    match outcome {
        CallbackDelivery::Delivered { status, body, .. } => (*status, body.clone()),
        other => panic!("not delivered: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_from_the_sandbox_are_accepted_and_redeliveries_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let base = format!("http://{}", relay.addr);
    let mut config = SandboxConfig::new(TOKEN, KEY, BOT);
    config.callback_url = Some(format!("{base}/v1/callbacks/dialogue/{SECRET}"));
    let mut oa = OaAccount::new(OA_TOKEN, OA_KEY, OA_APPID);
    oa.callback_url = Some(format!("{base}/v1/callbacks/wechat/oa"));
    config.oa = Some(oa);
    let sandbox = Sandbox::start(config).await.unwrap();

    let asked = sandbox
        .ask_for_person("oSANDBOX", AskForPerson::new())
        .await
        .unwrap();
    assert_eq!(delivered(&asked.callback), (200, OK.to_owned()));
    for how in [Redelivery::SameCiphertext, Redelivery::Reencrypt] {
        let again = sandbox.redeliver("oSANDBOX", how).await.unwrap();
        assert_eq!(delivered(&again.callback), (200, OK.to_owned()), "{how:?}");
    }
    let mut expected = vec![("dialogue", "handoff_requested")];
    // The account is in safe mode (it has a key): the sandbox's plaintext pushes are refused.
    for format in [OaFormat::Xml, OaFormat::Json] {
        let say = OaSay {
            format: Some(format),
            mode: Some(OaMode::Plain),
            ..OaSay::new("plaintext to a safe-mode account")
        };
        let pushed = sandbox.oa_say("oOAUSER", say).await.unwrap();
        assert_eq!(
            delivered(&pushed.callback),
            (403, UNAUTHENTICATED_ANSWER.to_owned()),
            "{format:?}"
        );
    }
    for (format, mode) in [
        (OaFormat::Xml, OaMode::Safe),
        (OaFormat::Json, OaMode::Safe),
        (OaFormat::Xml, OaMode::Compatible),
        (OaFormat::Json, OaMode::Compatible),
    ] {
        let say = OaSay {
            format: Some(format),
            mode: Some(mode),
            ..OaSay::new(format!("{format:?} {mode:?}"))
        };
        let pushed = sandbox.oa_say("oOAUSER", say).await.unwrap();
        assert_eq!(
            delivered(&pushed.callback),
            (200, "success".to_owned()),
            "{format:?} {mode:?}"
        );
        let again = sandbox
            .oa_redeliver("oOAUSER", Redelivery::Reencrypt)
            .await
            .unwrap();
        assert_eq!(
            delivered(&again.callback),
            (200, "success".to_owned()),
            "a re-encrypted redelivery is dropped quietly: {format:?} {mode:?}"
        );
        expected.push(("wechat", "message"));
    }
    let again = sandbox
        .oa_redeliver("oOAUSER", Redelivery::SameCiphertext)
        .await
        .unwrap();
    assert_eq!(
        delivered(&again.callback),
        (200, "success".to_owned()),
        "the same request again is a redelivery"
    );

    let page = events(&desk, "").await;
    let got = pairs(&page, "source", "kind");
    assert_eq!(got, expected, "{page}");
    assert_eq!(page["events"][1]["content"], "Xml Safe");
    assert_eq!(page["events"][4]["content"], "Json Compatible");
    sandbox.stop().await;

    // The same pushes in plaintext mode, to the account in plain mode, are accepted.
    let mut config = SandboxConfig::new(TOKEN, KEY, BOT);
    let mut open = OaAccount::new(OA_TOKEN, OA_KEY, OA_APPID);
    open.callback_url = Some(format!("{base}/v1/callbacks/wechat/open"));
    open.mode = OaMode::Plain;
    config.oa = Some(open);
    let sandbox = Sandbox::start(config).await.unwrap();
    for format in [OaFormat::Xml, OaFormat::Json] {
        let say = OaSay {
            format: Some(format),
            ..OaSay::new(format!("{format:?} Plain"))
        };
        let pushed = sandbox.oa_say("oOAUSER", say).await.unwrap();
        assert_eq!(
            delivered(&pushed.callback),
            (200, "success".to_owned()),
            "{format:?}"
        );
        let again = sandbox
            .oa_redeliver("oOAUSER", Redelivery::Reencrypt)
            .await
            .unwrap();
        assert_eq!(delivered(&again.callback), (200, "success".to_owned()));
    }
    let page = events(&desk, "after=5").await;
    let got = pairs(&page, "account", "content");
    assert_eq!(
        got,
        [("open", "Xml Plain"), ("open", "Json Plain")],
        "{page}"
    );
    sandbox.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_answers_long_polls_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let poll = tokio::spawn(async move { desk.get("/v1/events?wait=30").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    relay.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reply = poll.await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"events": [], "next": 0}));
}

/// A desk whose cursor is past the newest event (the relay's store was replaced, or the cursor
/// came from another relay) is told so at once, with the newest id, instead of waiting and then
/// silently missing every event stored under the ids in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_beyond_the_newest_event_is_409_with_the_newest_id() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = start_relay(&dir.path().join("o.sqlite3"), &dead_platform(), &[]).await;
    let beyond = desk.get("/v1/events?after=5&wait=30").await.unwrap();
    assert_eq!(beyond.status, 409, "{}", beyond.text);
    assert_eq!(beyond.body["error"]["newest"], 0, "{}", beyond.text);
    assert_eq!(beyond.body["error"]["field"], "after");
    assert!(
        beyond.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after=5 is beyond the newest event id 0"),
        "{}",
        beyond.text
    );

    let ask = handoff("oUSER", KefuState::NeedPerson, "我要转人工", now_secs());
    assert_eq!(
        post_dialogue(&desk, SECRET, encrypted(&ask, KEY, BOT))
            .await
            .text,
        OK
    );
    let beyond = desk.get("/v1/events?after=2").await.unwrap();
    assert_eq!(beyond.status, 409, "{}", beyond.text);
    assert_eq!(beyond.body["error"]["newest"], 1);
    // At the newest id a cursor is simply up to date; below it, the events follow.
    assert_eq!(
        events(&desk, "after=1").await,
        json!({"events": [], "next": 1})
    );
    assert_eq!(events(&desk, "after=0").await["events"][0]["id"], 1);
    relay.stop().await;
}
