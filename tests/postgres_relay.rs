//! The relay on PostgreSQL (`[store] url`) end to end over loopback: the desk's messages stored in
//! the database and delivered in order per user, `/healthz` naming the store, a second relay on
//! the same database serving beside the first (each message delivered once, in order per user,
//! whichever relay took it), and what was acknowledged still there after a restart. Runs on a
//! throwaway cluster (`kefu_store_postgres::testing`; skipped loudly where PostgreSQL is missing).

#[path = "common/relay.rs"]
mod relay;

use std::collections::HashMap;

use kefu_connector::config::Config;
use kefu_connector::desk::Desk;
use kefu_connector::loopback::OA_APPID;
use kefu_connector::sandbox::Sandbox;
use kefu_connector::serve::Relay;
use kefu_store_postgres::testing::fresh_database;
use relay::Setup;
use serde_json::{Value, json};

const API_KEY: &str = "postgres-desk-key-0123456789abcdef";

/// The messages posted so far, per user in the order they were acknowledged, and their ids.
#[derive(Default)]
struct Sent {
    posted: HashMap<String, Vec<String>>,
    ids: Vec<i64>,
}

impl Sent {
    /// Posts rounds `rounds` of one message to each of three users, one after the other, each
    /// through the next of `desks` in turn.
    async fn post(&mut self, desks: &[&Desk], rounds: std::ops::Range<usize>) {
        let mut turn = 0;
        for i in rounds {
            for user in ["oPGA", "oPGB", "oPGC"] {
                let text = format!("{user} 第{i}条");
                let reply = desks[turn % desks.len()]
                    .post(
                        "/v1/messages",
                        &json!({"openid": user, "channel": 0, "msg": text}),
                    )
                    .await
                    .unwrap();
                turn += 1;
                assert_eq!(reply.status, 202, "{}", reply.text);
                self.ids.push(reply.body["id"].as_i64().unwrap());
                self.posted.entry(user.to_owned()).or_default().push(text);
            }
        }
    }

    /// Waits until every message is final (read through `desk`), and checks that each was
    /// delivered, and that each user got exactly its messages, in order.
    async fn check_delivered(&self, desk: &Desk, sandbox: &Sandbox) {
        for &id in &self.ids {
            let status = relay::status_in(desk, id, &["delivered", "failed", "ambiguous"]).await;
            assert_eq!(status["status"], "delivered", "{status}");
        }
        for (user, texts) in &self.posted {
            let got: Vec<Value> = sandbox
                .messages(Some(user))
                .iter()
                .map(|m| serde_json::to_value(&m.msg).unwrap())
                .collect();
            let want: Vec<Value> = texts.iter().map(|t| json!(t)).collect();
            assert_eq!(got, want, "{user}: order, content or count differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_on_one_postgres_deliver_each_message_once_in_order_and_keep_it_all() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(relay::sandbox_config()).await.unwrap();
    let mut settings = relay::settings(&sandbox, &outbox.path().join("unused.sqlite3"), API_KEY);
    settings.push(("KEFU_STORE_URL", db.cluster.url(&db.name)));
    settings.push(("KEFU_STORE_RELAY_NAME", "pg-e2e".to_owned()));
    settings.push(("KEFU_DIALOGUE_APPID", OA_APPID.to_owned()));
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    let desk = &setup.desk;

    let health = desk.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body, json!({"status": "ok", "store": "postgres"}));

    let mut sent = Sent::default();
    sent.post(&[desk], 0..6).await;
    sent.check_delivered(desk, &setup.sandbox).await;
    assert!(
        !outbox.path().join("unused.sqlite3").exists(),
        "the relay wrote to SQLite as well"
    );

    // A second relay on the same database: both answer, and the messages posted through either,
    // one after the other, reach each user once and in the order they were acknowledged.
    let second_settings: Vec<(&str, String)> = settings
        .iter()
        .map(|(key, value)| match *key {
            "KEFU_STORE_RELAY_NAME" => (*key, "pg-e2e-second".to_owned()),
            _ => (*key, value.clone()),
        })
        .collect();
    let config = Config::from_settings(&second_settings).unwrap();
    let second = Relay::start(&config)
        .await
        .expect("relays share a database");
    let second_desk = Desk::new(format!("http://{}", second.addr), API_KEY);
    let health = second_desk.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200, "{}", health.text);
    sent.post(&[desk, &second_desk], 6..12).await;
    sent.check_delivered(&second_desk, &setup.sandbox).await;
    second.stop().await;

    let Setup { sandbox, relay, .. } = setup;
    relay.stop().await;
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    for &id in &sent.ids {
        let status = setup
            .desk
            .get(&format!("/v1/messages/{id}"))
            .await
            .unwrap()
            .body;
        assert_eq!(status["status"], "delivered", "{status}");
    }
    let delivered: usize = sent
        .posted
        .keys()
        .map(|user| setup.sandbox.messages(Some(user)).len())
        .sum();
    assert_eq!(
        delivered,
        sent.ids.len(),
        "nothing was sent again after the restart"
    );
    setup.stop().await;
}

/// Runs `kefu-connector bench --store <a fresh database> <args>` and returns what it printed,
/// once it succeeded; `None` without PostgreSQL.
fn bench_on_postgres(args: &[&str]) -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(fresh_database())?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .args(["bench", "--store", &db.cluster.url(&db.name)])
        .args(args)
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

/// `kefu-connector bench --store URL` runs the relay on the database and checks what it measured:
/// every acknowledged message final, none lost, none sent twice.
#[test]
fn the_bench_runs_the_relay_on_postgres() {
    let Some(text) = bench_on_postgres(&[
        "--users",
        "4",
        "--messages",
        "100",
        "--no-direct",
        "--provider",
        "dialogue",
    ]) else {
        return;
    };
    assert!(text.contains("relay, postgres store"), "{text}");
    assert!(
        text.contains("100 accepted: 100 delivered, 0 failed, 0 ambiguous, 0 lost, 0 duplicated"),
        "{text}"
    );
}

/// `bench --store URL --relays 1` runs SQLite and PostgreSQL in one invocation, each closed and
/// open loop, checks every message of every run, and ends with one table row per configuration.
#[test]
fn the_bench_compares_sqlite_and_postgres_in_one_run() {
    let Some(text) = bench_on_postgres(&[
        "--relays",
        "1",
        "--users",
        "4",
        "--messages",
        "60",
        "--rate",
        "300",
    ]) else {
        return;
    };
    for run in [
        "sqlite × 1, closed loop:",
        "sqlite × 1, open loop:",
        "postgres × 1, closed loop:",
        "postgres × 1, open loop:",
    ] {
        assert!(text.contains(run), "{run}: {text}");
    }
    assert_eq!(
        text.matches("60 accepted: 60 delivered, 0 failed, 0 ambiguous, 0 lost, 0 duplicated")
            .count(),
        4,
        "{text}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("store "))
        .collect();
    assert!(table[0].contains("at 300 msg/s"), "{text}");
    assert!(table[1].starts_with("sqlite "), "{text}");
    assert!(table[2].starts_with("postgres "), "{text}");
    assert!(
        table[3].starts_with("load average (1, 5, 15 min): "),
        "{text}"
    );
    assert_eq!(table.len(), 4, "{text}");
}
