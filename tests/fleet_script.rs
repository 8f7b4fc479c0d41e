//! `examples/fleet.sh` as an operator runs it: one command brings up PostgreSQL, the sandbox and
//! three relays; a message posted to the second relay is delivered; Ctrl-C (SIGINT) takes it all
//! down, frees the ports and removes the temporary directory. Skipped loudly where PostgreSQL is
//! not installed.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kefu_connector::desk::Desk;
use kefu_store_postgres::testing::postgres_available;
use serde_json::json;

/// The script under `timeout`, interrupted (as Ctrl-C does) when dropped, also on a panic.
struct Script(Child);

impl Script {
    /// Sends SIGINT to `timeout`, which passes it on to the script, and waits for the end
    /// (bounded: then SIGKILL).
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.interrupt();
        }
    }
}

/// `count` consecutive ports on 127.0.0.1 that were free just now, below the range the kernel
/// picks the local ports of outgoing connections from (so that the relays' own connections to
/// PostgreSQL and the sandbox cannot take one before the script binds it).
fn free_ports(count: u16) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral > 10_000 + count,
        "ephemeral ports from {ephemeral}"
    );
    for _ in 0..100 {
        let start = rand::random_range(10_000..ephemeral - count);
        let all: Result<Vec<TcpListener>, _> = (start..start + count)
            .map(|port| TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if all.is_ok() {
            return start;
        }
    }
    panic!("no {count} consecutive free ports");
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn the_fleet_script_serves_through_every_relay_and_goes_away_on_ctrl_c() {
    if !postgres_available() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo.join("kefu.example.toml")).unwrap()).unwrap();
    let api_key = example["server"]["api_key"].as_str().unwrap();
    // PostgreSQL, the sandbox, then the three relays.
    let base = free_ports(5);
    let (pg, sandbox, relays) = (base, base + 1, base + 2);
    let child = Command::new("timeout")
        .args(["-s", "INT", "300"])
        .arg(repo.join("examples/fleet.sh"))
        .env("KEFU_BIN", env!("CARGO_BIN_EXE_kefu-connector"))
        .env("FLEET_PG_PORT", pg.to_string())
        .env("FLEET_SANDBOX_PORT", sandbox.to_string())
        .env("FLEET_RELAY_PORT", relays.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timeout and bash run");
    let mut script = Script(child);
    let stdout = script.0.stdout.take().unwrap();
    let mut stderr = script.0.stderr.take().unwrap();
    let (printed, dir) = tokio::task::spawn_blocking(move || {
        let mut printed = String::new();
        let mut dir = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(path) = line.strip_prefix("temporary directory: ") {
                dir = Some(PathBuf::from(path));
            }
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("fleet ready") {
                break;
            }
        }
        (printed, dir)
    })
    .await
    .unwrap();
    let Some(dir) = dir.filter(|_| printed.contains("fleet ready")) else {
        script.interrupt();
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        panic!("the fleet never came up:\n{printed}\n{text}");
    };
    assert!(dir.is_dir(), "{printed}");
    for port in [pg, sandbox, relays, relays + 1, relays + 2] {
        assert!(printed.contains(&format!("127.0.0.1:{port}")), "{printed}");
    }
    assert!(printed.contains(api_key), "the README's curl: {printed}");

    let second = Desk::new(format!("http://127.0.0.1:{}", relays + 1), api_key);
    let reply = second
        .post(
            "/v1/messages",
            &json!({"openid": "oFLEETSH", "channel": 0, "msg": "through relay2"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.body["id"].as_i64().unwrap();
    // Read back through another relay: they share the database.
    let first = Desk::new(format!("http://127.0.0.1:{relays}"), api_key);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = first.get(&format!("/v1/messages/{id}")).await.unwrap().body;
        if status["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "never delivered: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let platform = Desk::new(format!("http://127.0.0.1:{sandbox}"), "");
    let received = platform
        .get("/sandbox/messages?openid=oFLEETSH")
        .await
        .unwrap()
        .body;
    assert_eq!(received[0]["msg"], "through relay2", "{received}");

    let status = tokio::task::spawn_blocking(move || script.interrupt())
        .await
        .unwrap();
    let mut text = String::new();
    let _ = stderr.read_to_string(&mut text);
    assert!(
        status.is_some(),
        "the script did not stop on SIGINT:\n{text}"
    );
    assert!(text.contains("stopped;"), "{text}");
    assert!(!dir.exists(), "{} is left behind:\n{text}", dir.display());
    for port in [pg, sandbox, relays, relays + 1, relays + 2] {
        assert!(is_free(port), "port {port} is still taken:\n{text}");
    }
}
