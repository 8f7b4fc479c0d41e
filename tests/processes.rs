//! The binary as operators run it, in real processes: crash safety (SIGKILL with messages queued,
//! then a restart), graceful shutdown on SIGTERM, logs free of secrets, `send` and `demo`.

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
    spawn_with_stderr(args, env, Stdio::null())
}

fn spawn_with_stderr(args: &[&str], env: &[(&str, String)], stderr: Stdio) -> (Proc, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
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
            "--bot-appid",
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
    let (proc, url) = spawn(&["serve"], &serve_env(platform_root, outbox));
    (proc, Desk::new(url, API_KEY))
}

fn serve_env(platform_root: &str, outbox: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
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
    ]
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

#[tokio::test]
async fn sigterm_stops_gracefully_and_logs_carry_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, root) = sandbox("0.0");
    let log = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut env = serve_env(&root, &dir.path().join("outbox.sqlite3"));
    env.push(("RUST_LOG", "debug".to_owned()));
    let (mut relay, url) = spawn_with_stderr(&["serve"], &env, Stdio::from(log_file));
    let desk = Desk::new(url, API_KEY);
    let reply = desk
        .post(
            "/v1/messages",
            &json!({"openid": "oLOG", "channel": 0, "msg": "hello"}),
        )
        .await
        .unwrap();
    let id = reply.body["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while desk.get(&format!("/v1/messages/{id}")).await.unwrap().body["status"] != "delivered" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A wrong key is refused, and the wrong key is not logged either.
    let wrong = desk.with_key("wrong-key-that-must-not-be-logged");
    assert_eq!(wrong.get("/v1/messages/1").await.unwrap().status, 401);

    let pid = relay.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = relay.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no graceful stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // The stop checkpointed: the database file alone holds the message, and the WAL is empty.
    let wal = dir.path().join("outbox.sqlite3-wal");
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
    let copy = dir.path().join("copy.sqlite3");
    std::fs::copy(dir.path().join("outbox.sqlite3"), &copy).unwrap();
    let stored: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, 1);

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("delivered"), "{logs}");
    for secret in [TOKEN, KEY, API_KEY, "wrong-key-that-must-not-be-logged"] {
        assert!(!logs.contains(secret), "a secret reached the log: {logs}");
    }
    drop(platform);
}

#[tokio::test]
async fn send_delivers_one_message_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (_platform, root) = sandbox("0.0");
    let env = serve_env(&root, &dir.path().join("unused.sqlite3"));
    let run = |args: &[&str], token: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
        command.arg("send").args(args);
        for (key, value) in &env {
            command.env(key, value);
        }
        command.env("KEFU_DIALOGUE_TOKEN", token);
        command.output().unwrap()
    };
    let card = dir.path().join("card.json");
    std::fs::write(
        &card,
        r#"{"miniprogrampage":{"title":"订单","appid":"wx1111111111111111","pagepath":"pages/a"}}"#,
    )
    .unwrap();

    let ok = run(
        &["--openid", "oSEND", "--channel", "0", "--text", "您好"],
        TOKEN,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("delivered"));
    let card_sent = run(
        &[
            "--openid",
            "oSEND",
            "--channel",
            "0",
            "--json",
            card.to_str().unwrap(),
            "--event",
            "waiterEnter",
            "--kefuname",
            "小红",
        ],
        TOKEN,
    );
    assert!(
        card_sent.status.success(),
        "{}",
        String::from_utf8_lossy(&card_sent.stderr)
    );

    let received = Desk::new(root.clone(), "")
        .get("/sandbox/messages?openid=oSEND")
        .await
        .unwrap()
        .body;
    assert_eq!(received[0]["msg"], "您好");
    assert_eq!(received[1]["msg"]["miniprogrampage"]["title"], "订单");
    assert_eq!(received[1]["event"], "waiterEnter");

    let refused = run(
        &["--openid", "oSEND", "--channel", "0", "--text", "x"],
        "WRONGTOKEN123456",
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("1001"), "{stderr}");
    assert!(!stderr.contains("WRONGTOKEN123456"), "{stderr}");

    let usage = run(
        &["--openid", "oSEND", "--channel", "8", "--text", "x"],
        TOKEN,
    );
    assert_eq!(usage.status.code(), Some(2));
}

/// Runs the binary to the end, asserts that it succeeded, and returns what it printed.
fn run_to_success(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_plays_the_whole_handoff() {
    let text = run_to_success(&["demo"]);
    for expected in [
        "HTTP 200",
        "webhook event #1 handoff_requested from oDEMO_user_0001",
        "waiterEnter",
        "\"news\"",
        "miniprogrampage",
        "waiterQualityEvaluate",
        "rating from oDEMO_user_0001 (5 stars)",
        "waiterQuit",
        "session of oDEMO_user_0001: state \"complete\", agent \"客服小红\"",
        "The platform's state of oDEMO_user_0001: complete",
        "webhook event #3 message from oDEMO_oa_user_0001 on \"shop\"",
        "/cgi-bin/message/custom/typing Typing",
        "\"msgtype\":\"msgmenu\"",
        "\"msgtype\":\"image\"",
        "error_code 45047, reason \"quota_exhausted\"",
    ] {
        assert!(text.contains(expected), "missing {expected}: {text}");
    }
    // In a fixed order: what each piece is, the steps with the desk's lines under the step they
    // belong to, and what to run next last.
    let mut at = 0;
    for line in [
        "The sandbox plays WeChat's Dialogue platform, an Official Account's api.weixin.qq.com,",
        "yunzhenji, a company gateway and their users;",
        "the built-in desk stands in for your agent desk.",
        "1. the user asks for a person",
        "2. the desk hears it",
        "desk ← webhook event #1 handoff_requested",
        "desk: taking the session",
        "desk: answered with a text",
        "desk: asked oDEMO_user_0001 to rate",
        "3. the user rates the service",
        "4. the desk hears the rating and leaves",
        "desk ← webhook event #2 rating",
        "desk: thanked oDEMO_user_0001",
        "The sandbox received, decrypted, in order:",
        "The platform's state of oDEMO_user_0001: complete",
        "5. the user writes to the Official Account",
        "6. the desk hears it, shows typing",
        "desk ← webhook event #3 message",
        "desk: typing…",
        "desk: answered with a text, an image and a menu",
        "7. one more message runs into the quota",
        "status \"failed\", error_code 45047, reason \"quota_exhausted\"",
        "switches channel",
        "The sandbox received for the Official Account wx0a0a0a0a0a0a0a0a, raw JSON, in order:",
        "/cgi-bin/message/custom/typing Typing",
        "/cgi-bin/message/custom/send text",
        "/cgi-bin/message/custom/send image",
        "/cgi-bin/message/custom/send msgmenu",
        "The relay's session of oDEMO_oa_user_0001 on \"shop\"",
        "8. a customer writes to the WeCom account yunzhenji drives (account \"wecom_sales\" in the relay)",
        "desk ← webhook event #4 message from 7881300000000001 on \"wecom_sales\"",
        "makes message 16 accepted, not yet delivered",
        "desk ← webhook event #5 sent to 7881300000000001 on \"wecom_sales\"",
        "message 16: delivered",
        "yunzhenji #1 text api_send_id 16",
        "9. the desk reaches oDEMO_oa_user_0001 through the company gateway (account \"feihe\")",
        "message 17: status \"delivered\"",
        "gateway #1 openId oDEMO_oa_user_0001",
        "Next, the same with separate processes and kefu.example.toml",
        "kefu-connector serve --config kefu.example.toml",
    ] {
        let found = text[at..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} after byte {at} of:\n{text}"));
        at += found + line.len();
    }
    // The commands it suggests match kefu.example.toml.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kefu.example.toml");
    let settings: toml::Table = toml::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    for (section, key) in [
        ("dialogue", "token"),
        ("dialogue", "aes_key"),
        ("dialogue", "bot_appid"),
        ("server", "api_key"),
        ("server", "listen"),
        ("callbacks", "dialogue_secret"),
    ] {
        let value = settings[section][key].as_str().unwrap();
        assert!(text.contains(value), "{section}.{key} = {value} in {text}");
    }
    let base_url = settings["dialogue"]["base_url"].as_str().unwrap();
    let sandbox = base_url
        .trim_start_matches("http://")
        .trim_end_matches("/openapi");
    assert!(
        text.contains(&format!("sandbox --listen {sandbox}")),
        "{text}"
    );
}

#[test]
fn inbound_bench_acknowledges_every_callback_ahead_of_a_slow_desk() {
    let text = run_to_success(&[
        "bench",
        "--inbound",
        "--users",
        "4",
        "--messages",
        "200",
        "--webhook-delay-ms",
        "1000",
    ]);
    assert!(text.contains("callbacks/s acknowledged"), "{text}");
    // Four users, each event held a second by the desk: the callbacks cannot have waited for it.
    let answered: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("desk "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no desk line: {text}"));
    assert!(answered < 200, "{text}");
}

/// Runs the binary with no KEFU_* variables, in `dir`, to the end.
fn run_clean(args: &[&str], env: &[(&str, String)], dir: &std::path::Path) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KEFU_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The first run without a config: `serve` says which file it looked for, once, in plain text,
/// with exit status 2.
#[test]
fn serve_without_a_config_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(&["serve"], &[], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is required"), "{err}");
    assert!(
        err.contains("no --config given and ./kefu.toml does not exist"),
        "{err}"
    );
    assert_eq!(err.matches("error").count(), 1, "printed once: {err}");
    let out = run_clean(
        &["send", "--openid", "o1", "--channel", "7", "--text", "x"],
        &[],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a configuration error: {err}");
    assert!(err.contains("./kefu.toml does not exist"), "{err}");

    // ./kefu.toml is read without --config.
    std::fs::write(
        dir.path().join("kefu.toml"),
        "[server]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let out = run_clean(&["serve"], &[], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("server.listen (from the config file)"),
        "{err}"
    );
    assert!(err.contains("settings were read from ./kefu.toml"), "{err}");
}

/// A missing outbox directory names itself and the setting, once, with exit status 2, and the
/// log lines before it carry no colour codes when stderr is not a terminal.
#[test]
fn a_missing_outbox_directory_is_named_once_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("var/lib/kefu");
    let mut env = serve_env("http://127.0.0.1:9", &missing.join("outbox.sqlite3"));
    env.push(("RUST_LOG", "info".to_owned()));
    let out = run_clean(&["serve"], &env, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let missing = missing.display().to_string();
    assert!(
        err.contains(&format!(
            "the directory {missing} of outbox.path does not exist; create it (mkdir -p {missing}) or set outbox.path"
        )),
        "{err}"
    );
    assert_eq!(
        err.matches("outbox.path does not exist").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("settings came from the KEFU_* environment variables only"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
    for secret in [TOKEN, KEY, API_KEY] {
        assert!(!err.contains(secret), "{err}");
    }
}

/// The quickstart as the README gives it: the sandbox with kefu.example.toml's credentials, and
/// `serve --config kefu.example.toml`, deliver a message (addresses moved to free ports).
#[tokio::test]
async fn the_example_config_serves_against_the_sandbox() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kefu.example.toml");
    let settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let dialogue = &settings["dialogue"];
    let (platform, base_url) = spawn(
        &[
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--token",
            dialogue["token"].as_str().unwrap(),
            "--aes-key",
            dialogue["aes_key"].as_str().unwrap(),
            "--bot-appid",
            dialogue["bot_appid"].as_str().unwrap(),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&example, dir.path().join("kefu.example.toml")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KEFU_") {
            command.env_remove(name);
        }
    }
    let child = command
        .args(["serve", "--config", "kefu.example.toml"])
        .env("KEFU_SERVER_LISTEN", "127.0.0.1:0")
        .env("KEFU_DIALOGUE_BASE_URL", &base_url)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut relay = Proc(child);
    let stdout = relay.0.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let url = &line[line.find("http://").unwrap()..];
    let desk = Desk::new(url, settings["server"]["api_key"].as_str().unwrap());
    let reply = desk
        .post(
            "/v1/messages",
            &json!({"openid": "oQUICKSTART", "channel": 0, "msg": "hello"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.body["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while desk.get(&format!("/v1/messages/{id}")).await.unwrap().body["status"] != "delivered" {
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.path().join("kefu-outbox.sqlite3").is_file());
    drop(relay);
    drop(platform);
}

/// `--help` ends with the exit statuses, and lists every subcommand.
#[test]
fn help_documents_the_exit_statuses() {
    let text = run_to_success(&["--help"]);
    for expected in [
        "Exit status (every subcommand):",
        "0  success",
        "1  failure at run time",
        "2  usage or configuration error",
        "./kefu.toml",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    for sub in [
        "crypt", "serve", "migrate", "send", "sandbox", "demo", "bench",
    ] {
        assert!(text.contains(&format!("\n  {sub} ")), "{sub} in {text}");
    }
}
