//! `Idempotency-Key` over real loopback sockets: a desk that hangs up after sending and tries
//! again gets the first answer and one delivery; a key reused on another request is 422; keys
//! survive a restart, cover session actions and resends, and expire.
//!
//! The desk here speaks raw HTTP/1.1 over a `TcpStream`, so that it can hang up right after
//! writing a request and read the response headers.

use std::net::SocketAddr;
use std::time::Duration;

use kefu_connector::config::Config;
use kefu_connector::desk::Desk;
use kefu_connector::loopback::Loopback;
use kefu_connector::sandbox::SandboxConfig;
use kefu_connector::serve::Relay;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use kefu_connector::loopback::API_KEY;
/// Every wait is bounded by this; none is expected to come near it.
const BOUND: Duration = Duration::from_secs(30);

/// An answer read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request(path: &str, key: Option<&str>, body: &str) -> String {
    let key = key
        .map(|key| format!("Idempotency-Key: {key}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends a request and hangs up at once, without reading a byte of the answer: what a desk
/// whose request timed out leaves behind.
async fn send_and_hang_up(addr: SocketAddr, path: &str, key: Option<&str>, body: &str) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(request(path, key, body).as_bytes())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    drop(stream);
}

/// Sends a request on a new connection and reads the whole answer.
async fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &str) -> Raw {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(request(path, key, body).as_bytes())
            .await
            .unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        bytes
    };
    let bytes = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the relay answers");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

/// Waits until `check` holds for the job's status, within [`BOUND`].
async fn wait_for(desk: &Desk, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let reply = desk.get(&format!("/v1/messages/{id}")).await.unwrap();
        if reply.status == 200 && check(&reply.body) {
            return reply.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id}: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_final(status: &Value) -> bool {
    matches!(
        status["status"].as_str(),
        Some("delivered" | "failed" | "ambiguous")
    )
}

/// A sandbox and a relay delivering to it, in-process.
async fn sandbox_and_relay() -> Loopback {
    Loopback::start(
        SandboxConfig::new(
            "IDEMTOKEN0123456789",
            "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
            "Gg8HejYTkUsEIlG",
        ),
        &[],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_desk_that_hangs_up_and_retries_gets_the_first_answer_and_one_delivery() {
    let setup = sandbox_and_relay().await;
    let addr = setup.relay.addr;
    let body = json!({"openid": "oRETRY", "channel": 0, "msg": "只发一次"}).to_string();
    let key = "0f8e2b1c-retry-after-timeout";

    send_and_hang_up(addr, "/v1/messages", Some(key), &body).await;
    // The desk does not know whether that was stored; the relay did store it.
    let first = wait_for(&setup.desk, 1, is_final).await;
    assert_eq!(first["status"], "delivered", "{first}");

    let retry = post(addr, "/v1/messages", Some(key), &body).await;
    assert_eq!(retry.status, 202, "{}", retry.text());
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.header("content-type"), Some("application/json"));
    // Exactly what the first request was answered (the bytes a new message gets, for id 1).
    assert_eq!(retry.text(), "{\"id\":1,\"status\":\"queued\"}");

    // One job, one delivery: the retry created nothing.
    assert_eq!(setup.desk.get("/v1/messages/2").await.unwrap().status, 404);
    assert_eq!(setup.sandbox.messages(Some("oRETRY")).len(), 1);
    // A new message is answered in the very shape the replay had.
    let next = setup
        .desk
        .post_raw("/v1/messages", body.clone())
        .await
        .unwrap();
    assert_eq!(next.text, "{\"id\":2,\"status\":\"queued\"}");
    setup.stop().await;
}

/// Found writing the test above: the server drops a handler whose desk hung up, and the job it
/// had just stored was never handed to delivery (it stayed `queued` until the next start).
#[tokio::test]
async fn a_message_whose_desk_hung_up_is_delivered_all_the_same() {
    let setup = sandbox_and_relay().await;
    let addr = setup.relay.addr;
    let body = json!({"openid": "oGONE", "channel": 0, "msg": "还在吗"}).to_string();
    send_and_hang_up(addr, "/v1/messages", None, &body).await;
    let status = wait_for(&setup.desk, 1, is_final).await;
    assert_eq!(status["status"], "delivered", "{status}");
    // A session action goes the same way.
    let evaluate = json!({"channel": 0}).to_string();
    send_and_hang_up(addr, "/v1/sessions/oGONE/evaluate", None, &evaluate).await;
    let status = wait_for(&setup.desk, 2, is_final).await;
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(setup.sandbox.messages(Some("oGONE")).len(), 2);
    setup.stop().await;
}

/// A relay whose platform is a dead port: nothing is delivered, and every message ends failed.
async fn dead_platform_relay(dir: &tempfile::TempDir, overrides: &[(&str, &str)]) -> (Relay, Desk) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/openapi", dead.local_addr().unwrap());
    drop(dead);
    let mut env = vec![
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("KEFU_SERVER_API_KEY", API_KEY.to_owned()),
        ("KEFU_DIALOGUE_TOKEN", "TOKEN0123456789".to_owned()),
        (
            "KEFU_DIALOGUE_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned(),
        ),
        ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG".to_owned()),
        ("KEFU_DIALOGUE_APPID", "wx0000000000000000".to_owned()),
        ("KEFU_DIALOGUE_BASE_URL", dead_url),
        ("KEFU_DELIVERY_MAX_ATTEMPTS", "1".to_owned()),
        (
            "KEFU_OUTBOX_PATH",
            dir.path().join("outbox.sqlite3").display().to_string(),
        ),
    ];
    env.extend(overrides.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let config = Config::from_settings(&env).unwrap();
    let relay = Relay::start(&config).await.unwrap();
    let desk = Desk::new(format!("http://{}", relay.addr), API_KEY);
    (relay, desk)
}

#[tokio::test]
async fn the_same_key_on_another_request_is_422_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = dead_platform_relay(&dir, &[]).await;
    let addr = relay.addr;
    let hi = json!({"openid": "o1", "channel": 0, "msg": "hi"}).to_string();
    let first = post(addr, "/v1/messages", Some("k-1"), &hi).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert!(!first.replayed());
    assert_eq!(first.text(), "{\"id\":1,\"status\":\"queued\"}");

    let bye = json!({"openid": "o1", "channel": 0, "msg": "bye"}).to_string();
    let session = json!({"channel": 0, "kefuname": "小红"}).to_string();
    for (path, body) in [
        ("/v1/messages", bye.as_str()),
        // The same body on another route is another request too.
        ("/v1/messages/1/resend", hi.as_str()),
        ("/v1/messages/1/resend", ""),
        ("/v1/sessions/o1/enter", session.as_str()),
    ] {
        let reused = post(addr, path, Some("k-1"), body).await;
        assert_eq!(reused.status, 422, "{path}: {}", reused.text());
        assert!(!reused.replayed());
        assert_eq!(reused.json()["error"]["field"], "Idempotency-Key");
        let message = reused.json()["error"]["message"].to_string();
        assert!(
            message.contains(
                "Idempotency-Key: this key was used for another request (POST /v1/messages"
            ),
            "{message}"
        );
    }
    // Nothing was stored by any of them.
    assert_eq!(desk.get("/v1/messages/2").await.unwrap().status, 404);

    // A malformed key is refused before anything else, naming the header.
    for bad in ["", &"k".repeat(256), "clé"] {
        let refused = post(addr, "/v1/messages", Some(bad), &hi).await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.text());
        assert_eq!(refused.json()["error"]["field"], "Idempotency-Key");
    }
    assert_eq!(desk.get("/v1/messages/2").await.unwrap().status, 404);

    // A request refused by validation does not spend its key: corrected, it is new work.
    let invalid = json!({"openid": "o1", "channel": 0, "msg": ""}).to_string();
    let refused = post(addr, "/v1/messages", Some("k-2"), &invalid).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["error"]["field"], "msg");
    let corrected = post(addr, "/v1/messages", Some("k-2"), &hi).await;
    assert_eq!(corrected.status, 202, "{}", corrected.text());
    assert!(!corrected.replayed());
    assert_eq!(corrected.json()["id"], 2);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_copies_of_one_request_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = dead_platform_relay(&dir, &[]).await;
    let addr = relay.addr;
    let body = json!({"openid": "o1", "channel": 0, "msg": "once"}).to_string();
    let copies: Vec<_> = (0..16)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { post(addr, "/v1/messages", Some("race"), &body).await })
        })
        .collect();
    let mut fresh = 0;
    for copy in copies {
        let answer = copy.await.unwrap();
        assert_eq!(answer.status, 202, "{}", answer.text());
        assert_eq!(answer.text(), "{\"id\":1,\"status\":\"queued\"}");
        if !answer.replayed() {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(desk.get("/v1/messages/2").await.unwrap().status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn a_key_is_answered_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({"openid": "o1", "channel": 0, "msg": "hi"}).to_string();
    let (relay, _) = dead_platform_relay(&dir, &[]).await;
    let first = post(relay.addr, "/v1/messages", Some("survives"), &body).await;
    assert_eq!(first.status, 202, "{}", first.text());
    relay.stop().await;

    let (relay, desk) = dead_platform_relay(&dir, &[]).await;
    let again = post(relay.addr, "/v1/messages", Some("survives"), &body).await;
    assert_eq!(again.status, 202, "{}", again.text());
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    assert_eq!(again.text(), "{\"id\":1,\"status\":\"queued\"}");
    assert_eq!(desk.get("/v1/messages/2").await.unwrap().status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn session_actions_and_resends_with_a_key_happen_once() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = dead_platform_relay(&dir, &[]).await;
    let addr = relay.addr;
    let enter = json!({"channel": 0, "kefuname": "小红"}).to_string();
    let first = post(addr, "/v1/sessions/o1/enter", Some("enter-1"), &enter).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.text(), "{\"ids\":[1,2],\"status\":\"queued\"}");
    let again = post(addr, "/v1/sessions/o1/enter", Some("enter-1"), &enter).await;
    assert!(again.replayed());
    assert_eq!((again.status, &again.body), (202, &first.body));
    assert_eq!(desk.get("/v1/messages/3").await.unwrap().status, 404);
    // The same action for another user is another request.
    let other = post(addr, "/v1/sessions/o2/enter", Some("enter-1"), &enter).await;
    assert_eq!(other.status, 422, "{}", other.text());

    // The platform is a dead port: the message fails, and may be sent again once.
    let failed = wait_for(&desk, 2, is_final).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let resend = post(addr, "/v1/messages/2/resend", Some("resend-1"), "").await;
    assert_eq!(resend.status, 202, "{}", resend.text());
    assert!(!resend.replayed());
    assert_eq!(resend.text(), "{\"id\":2,\"status\":\"queued\"}");
    // Answered after the commit that queued it again: the next final state is the resend's.
    let failed_again = wait_for(&desk, 2, is_final).await;
    assert_eq!(failed_again["status"], "failed", "{failed_again}");
    // Without the key this would queue the message a third time; with it, the first answer.
    let repeated = post(addr, "/v1/messages/2/resend", Some("resend-1"), "").await;
    assert!(repeated.replayed());
    assert_eq!((repeated.status, &repeated.body), (202, &resend.body));
    let unchanged = desk.get("/v1/messages/2").await.unwrap().body;
    assert_eq!(unchanged, failed_again);
    relay.stop().await;
}

/// Keys expire `server.idempotency_retention_secs` after they were saved, with the retention in
/// force then: a key saved under the default day outlives a restart with a shorter retention.
#[tokio::test]
async fn an_expired_key_is_new_again() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({"openid": "o1", "channel": 0, "msg": "hi"}).to_string();
    let (relay, _) = dead_platform_relay(&dir, &[]).await;
    let day = post(relay.addr, "/v1/messages", Some("a-day"), &body).await;
    assert_eq!(day.text(), "{\"id\":1,\"status\":\"queued\"}");
    assert!(
        post(relay.addr, "/v1/messages", Some("a-day"), &body)
            .await
            .replayed()
    );
    relay.stop().await;

    let (relay, desk) =
        dead_platform_relay(&dir, &[("KEFU_SERVER_IDEMPOTENCY_RETENTION_SECS", "1")]).await;
    let addr = relay.addr;
    let first = post(addr, "/v1/messages", Some("a-second"), &body).await;
    assert_eq!(first.text(), "{\"id\":2,\"status\":\"queued\"}");
    // Within the second it is a repeat; after it, new work. Bounded, not timed.
    let deadline = tokio::time::Instant::now() + BOUND;
    let fresh = loop {
        let answer = post(addr, "/v1/messages", Some("a-second"), &body).await;
        assert_eq!(answer.status, 202, "{}", answer.text());
        if !answer.replayed() {
            break answer;
        }
        assert_eq!(answer.body, first.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(fresh.text(), "{\"id\":3,\"status\":\"queued\"}");
    assert_eq!(desk.get("/v1/messages/3").await.unwrap().status, 200);
    // The key saved for a day is still answered.
    let still = post(addr, "/v1/messages", Some("a-day"), &body).await;
    assert!(still.replayed());
    assert_eq!(still.body, day.body);
    relay.stop().await;
}
