//! Crash safety with real processes: messages are acknowledged while the platform fails, the
//! relay is killed with SIGKILL, and after a restart every acknowledged message arrives exactly
//! once, in order per user.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kefu_connector::desk::Desk;
use serde_json::{Value, json};

const TOKEN: &str = "CRASHTOKEN0123456789";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const BOT: &str = "Gg8HejYTkUsEIlG";
const API_KEY: &str = "crash-desk-key-0123456789";

/// A child process that is killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the first `http://…` URL it prints on stdout.
fn spawn(args: &[&str], env: &[(&str, String)]) -> (Proc, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the process prints its address")
            .expect("stdout is readable");
        if let Some(start) = line.find("http://") {
            let url: String = line[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',')
                .collect();
            break url;
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url)
}

fn sandbox(error_rate: &str) -> (Proc, String) {
    let (proc, url) = spawn(
        &[
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--aes-key",
            KEY,
            "--appid",
            BOT,
            "--system-error-rate",
            error_rate,
            "--seed",
            "1",
        ],
        &[],
    );
    let root = url.split("/openapi").next().unwrap_or(&url).to_owned();
    (proc, root)
}

fn serve(platform_root: &str, outbox: &std::path::Path) -> (Proc, Desk) {
    let env = [
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("KEFU_SERVER_API_KEY", API_KEY.to_owned()),
        ("KEFU_DIALOGUE_TOKEN", TOKEN.to_owned()),
        ("KEFU_DIALOGUE_AES_KEY", KEY.to_owned()),
        ("KEFU_DIALOGUE_BOT_APPID", BOT.to_owned()),
        ("KEFU_DIALOGUE_APPID", "wx0000000000000000".to_owned()),
        ("KEFU_DIALOGUE_BASE_URL", format!("{platform_root}/openapi")),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "1500".to_owned()),
        ("KEFU_DELIVERY_MAX_ATTEMPTS", "50".to_owned()),
        ("KEFU_DELIVERY_MAX_ELAPSED_MS", "600000".to_owned()),
        ("KEFU_OUTBOX_PATH", outbox.display().to_string()),
    ];
    let (proc, url) = spawn(&["serve"], &env);
    (proc, Desk::new(url, API_KEY))
}

async fn statuses(desk: &Desk, ids: &[i64]) -> Vec<Value> {
    let mut all = Vec::new();
    for id in ids {
        all.push(desk.get(&format!("/v1/messages/{id}")).await.unwrap().body);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_queued_messages_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.sqlite3");
    let (failing, failing_root) = sandbox("1.0");
    let (relay, desk) = serve(&failing_root, &outbox);

    let users = 4;
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let openid = format!("oCRASH{}", i % users);
        let text = format!("message {i} for {openid}");
        let reply = desk
            .post(
                "/v1/messages",
                &json!({"openid": openid, "channel": 0, "msg": text}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text);
        ids.push(reply.body["id"].as_i64().unwrap());
        expected.push((openid, text));
    }

    // Wait until each user's first message has failed once with -1 and sits in the queue
    // waiting for its retry, with nothing in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = statuses(&desk, &ids).await;
        let heads_tried = all[..users]
            .iter()
            .all(|s| s["attempts"].as_u64() >= Some(1) && s["status"] == "queued");
        if heads_tried && all.iter().all(|s| s["status"] == "queued") {
            assert!(
                all[..users].iter().all(|s| s["error_code"] == -1),
                "{all:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop(relay); // SIGKILL
    drop(failing);
    let (healthy, healthy_root) = sandbox("0.0");
    let (_relay, desk) = serve(&healthy_root, &outbox);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = statuses(&desk, &ids).await;
        if all.iter().all(|s| s["status"] == "delivered") {
            break;
        }
        assert!(
            all.iter()
                .all(|s| s["status"] != "failed" && s["status"] != "ambiguous"),
            "{all:?}"
        );
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let platform = Desk::new(healthy_root, "");
    let received = platform.get("/sandbox/messages").await.unwrap().body;
    let received: Vec<(String, String)> = received
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["openid"].as_str().unwrap().to_owned(),
                m["msg"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(received.len(), expected.len(), "exactly once: {received:?}");
    for user in 0..users {
        let openid = format!("oCRASH{user}");
        let got: Vec<&String> = received
            .iter()
            .filter(|(o, _)| *o == openid)
            .map(|(_, t)| t)
            .collect();
        let want: Vec<&String> = expected
            .iter()
            .filter(|(o, _)| *o == openid)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(got, want, "{openid}: in order");
    }
    drop(healthy);
}
