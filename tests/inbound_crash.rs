//! Crash safety of the inbound side, with the binary in real processes: callbacks acknowledged
//! while the desk's webhook is down survive a SIGKILL, and after a restart each one reaches the
//! desk, with the event id it had before.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use kefu_connector::desk::Desk;
use kefu_payload::envelope::DialogueCallback;
use kefu_payload::{HandoffCallback, KefuState};
use serde_json::Value;
use sha2::Sha256;
use wxbizmsgcrypt::MsgCrypt;

const TOKEN: &str = "CRASHINBOUND0123456789";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const BOT: &str = "Gg8HejYTkUsEIlG";
const API_KEY: &str = "crash-inbound-desk-key-0123";
const SECRET: &str = "crash-callback-secret-0123";
const HOOK_SECRET: &str = "crash-webhook-secret-0123456";

/// A child process that is killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(outbox: &std::path::Path, webhook: &str) -> (Proc, Desk) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let platform = format!("http://{}/openapi", dead.local_addr().unwrap());
    drop(dead);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .arg("serve")
        .env("KEFU_SERVER_LISTEN", "127.0.0.1:0")
        .env("KEFU_SERVER_API_KEY", API_KEY)
        .env("KEFU_DIALOGUE_TOKEN", TOKEN)
        .env("KEFU_DIALOGUE_AES_KEY", KEY)
        .env("KEFU_DIALOGUE_BOT_APPID", BOT)
        .env("KEFU_DIALOGUE_BASE_URL", platform)
        .env("KEFU_OUTBOX_PATH", outbox)
        .env("KEFU_CALLBACKS_DIALOGUE_SECRET", SECRET)
        .env("KEFU_WEBHOOK_URL", webhook)
        .env("KEFU_WEBHOOK_SECRET", HOOK_SECRET)
        .env("KEFU_WEBHOOK_INITIAL_BACKOFF_MS", "50")
        .env("KEFU_WEBHOOK_MAX_BACKOFF_MS", "300")
        .env("KEFU_WEBHOOK_TIMEOUT_MS", "2000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve prints its address")
            .expect("stdout is readable");
        if let Some(start) = line.find("http://") {
            break line[start..].trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), Desk::new(url, API_KEY))
}

/// What the desk's webhook received: (event id header, timestamp, signature, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    seen.lock().unwrap().push((
        header("x-kefu-event-id"),
        header("x-kefu-timestamp"),
        header("x-kefu-signature"),
        String::from_utf8(body.to_vec()).unwrap(),
    ));
    StatusCode::OK
}

fn verify(timestamp: &str, signature: &str, body: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .is_some_and(|expected| mac.verify_slice(&expected).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_undelivered_events_then_each_reaches_the_desk_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.sqlite3");
    // The desk is down: its port refuses connections until after the crash.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let webhook = format!("http://{hook_addr}/hook");
    let (relay, desk) = serve(&outbox, &webhook);

    let crypt = MsgCrypt::new(TOKEN, KEY, BOT).unwrap();
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    let mut sent = Vec::new();
    for i in 0..12_i64 {
        let user = format!("oCRASH{}", i % 3);
        let text = format!("message {i} from {user}");
        let callback = HandoffCallback {
            userid: user.clone(),
            appid: "wx0000000000000000".into(),
            content: Some(text.clone()),
            from: Some(0),
            kfstate: Some(KefuState::NeedPerson),
            channel: Some(0),
            createtime: Some(now_secs + i),
            ..HandoffCallback::default()
        };
        let body = DialogueCallback {
            encrypted: crypt
                .encrypt(callback.to_xml().unwrap().as_bytes())
                .unwrap(),
        }
        .to_json();
        let reply = desk
            .post_raw(&format!("/v1/callbacks/dialogue/{SECRET}"), body)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        sent.push((user, text));
    }
    let before = desk.get("/v1/events?limit=100").await.unwrap().body;
    let ids_before: BTreeMap<String, i64> = before["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["content"].as_str().unwrap().to_owned(),
                e["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids_before.len(), sent.len(), "{before}");

    // Wait until the relay has tried (and failed) to reach the desk.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = desk.get("/metrics").await.unwrap().text;
        if metrics.contains(r#"kefu_webhook_deliveries_total{outcome="retry",status="none"}"#) {
            assert!(metrics.contains("kefu_inbound_pending 12"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(relay); // SIGKILL

    // The desk comes up, then the relay again on the same store.
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind(hook_addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_relay, desk) = serve(&outbox, &webhook);

    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let delivered = seen.lock().unwrap().clone();
        let mut ids: Vec<&str> = delivered.iter().map(|d| d.0.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() == sent.len() {
            break delivered;
        }
        assert!(Instant::now() < deadline, "{delivered:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, timestamp, signature, body) in &delivered {
        assert!(verify(timestamp, signature, body), "{id}: bad signature");
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(&event["id"].to_string(), id);
        let content = event["content"].as_str().unwrap();
        assert_eq!(
            Some(&event["id"].as_i64().unwrap()),
            ids_before.get(content),
            "stable id"
        );
        by_user
            .entry(event["openid"].as_str().unwrap().to_owned())
            .or_default()
            .push(content.to_owned());
    }
    for (user, got) in by_user {
        let mut got = got;
        got.dedup(); // at least once: a resend right after the restart is allowed
        let want: Vec<String> = sent
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, t)| t.clone())
            .collect();
        assert_eq!(got, want, "{user}: in order");
    }
    let after = desk.get("/v1/events?limit=100").await.unwrap().body;
    assert_eq!(after, before, "the feed is the same after the crash");
}
