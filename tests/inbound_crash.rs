//! Crash safety of the inbound side, with the binary in real processes: callbacks acknowledged
//! while the desk's webhook is down survive a SIGKILL, and after a restart each one reaches the
//! desk, with the event id it had before.

#[path = "common/hook.rs"]
mod hook;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kefu_connector::desk::Desk;
use serde_json::Value;
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
    let now_secs = hook::now_secs();
    let mut sent = Vec::new();
    for i in 0..12_i64 {
        let user = format!("oCRASH{}", i % 3);
        let text = format!("message {i} from {user}");
        let body = hook::handoff(&crypt, &user, &text, now_secs + i);
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
    let listener = tokio::net::TcpListener::bind(hook_addr).await.unwrap();
    let seen = hook::serve_hook(listener);
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
        assert!(
            hook::verify(HOOK_SECRET, timestamp, signature, body),
            "{id}: bad signature"
        );
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
