//! The crash test of a fleet: [`N`] `kefu-connector serve` processes on one PostgreSQL
//! database (a cluster of this test's own, fsync on, so that it can be crashed) and the sandbox.
//! Desks post each user's messages in order, with an `Idempotency-Key`, to a random relay, and
//! retry at another one on a refused connection or a 503; the platform posts signed callbacks for
//! the same users the same way. Every few seconds one relay is SIGKILLed and started again under
//! its name, and once the database crashes and recovers (`pg_ctl restart -m immediate`).
//!
//! At the end: every acknowledged message is delivered, failed or ambiguous; the sandbox holds
//! each delivered one exactly once, no failed one, each ambiguous one at most once, and each
//! user's in the order they were posted; every acknowledged callback reached the desk's webhook,
//! each user's in order; and every relay serves the same feed of events, with the ids increasing
//! and each callback in it once. Skipped loudly where PostgreSQL is not installed.

#[path = "common/hook.rs"]
mod hook;
// Only the relay's settings and the sandbox's credentials are needed here, not the in-process setup.
#[allow(dead_code)]
#[path = "common/relay.rs"]
mod relay;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_connector::desk::{Desk, DeskReply};
use kefu_connector::loopback::OA_APPID;
use kefu_connector::sandbox::Sandbox;
use kefu_store_postgres::testing::{Cluster, postgres_available};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use wxbizmsgcrypt::MsgCrypt;

/// Relays in the fleet.
const N: usize = 3;
/// Users, each with its own desk task and platform task.
const USERS: usize = 30;
/// Messages each user's desk posts, one after the other.
const MESSAGES: usize = 36;
/// Callbacks the platform posts for each user, one after the other.
const CALLBACKS: usize = 8;
/// A relay's lease: short, so that a killed relay's users move on quickly.
const LEASE_TTL_MS: u64 = 2_000;
const API_KEY: &str = "fleet-crash-desk-key-0123456789";
const SECRET: &str = "fleet-crash-callback-secret-0123";
const HOOK_SECRET: &str = "fleet-crash-webhook-secret-0123456";

/// A child process, SIGKILLed when dropped (also when the test panics).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The relays: the settings they share, each one's process, and its desk URL while it is up.
struct Fleet {
    settings: Vec<(&'static str, String)>,
    logs: PathBuf,
    procs: Mutex<Vec<Option<Proc>>>,
    urls: Mutex<Vec<Option<String>>>,
}

impl Fleet {
    /// Starts relay `i` under its name, waiting for its desk URL; a relay that exits first with
    /// status 1 (the database is coming back) is started again, a bounded number of times, and
    /// one refused with status 2 (its settings, or the database) fails the test.
    fn start(&self, i: usize) {
        for _ in 0..120 {
            let log = File::options()
                .create(true)
                .append(true)
                .open(self.logs.join(format!("r{}.log", i + 1)))
                .unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
                .arg("serve")
                .envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())))
                .env("KEFU_STORE_RELAY_NAME", format!("r{}", i + 1))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("the binary starts");
            let stdout = child.stdout.take().expect("stdout is piped");
            let mut lines = BufReader::new(stdout).lines();
            let url = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.find("http://")
                    .map(|start| line[start..].trim().to_owned())
            });
            let mut proc = Proc(child);
            if let Some(url) = url {
                // Keep draining stdout so that the relay never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                self.procs.lock().unwrap()[i] = Some(proc);
                self.urls.lock().unwrap()[i] = Some(url);
                return;
            }
            let status = proc.0.wait().unwrap();
            assert_ne!(
                status.code(),
                Some(2),
                "relay r{} was refused:\n{}",
                i + 1,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("relay r{} never started:\n{}", i + 1, self.logs());
    }

    /// SIGKILLs relay `i`.
    fn kill(&self, i: usize) {
        self.urls.lock().unwrap()[i] = None;
        let proc = self.procs.lock().unwrap()[i].take();
        drop(proc);
    }

    fn url(&self, i: usize) -> Option<String> {
        self.urls.lock().unwrap()[i % N].clone()
    }

    /// The end of every relay's log, for a failure's message.
    fn logs(&self) -> String {
        (1..=N)
            .map(|i| {
                let text = std::fs::read_to_string(self.logs.join(format!("r{i}.log")))
                    .unwrap_or_default();
                let tail: String = text
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                format!("-- r{i} --\n{tail}\n")
            })
            .collect()
    }

    /// Sends a request through a random relay and fails over to the others until one answers
    /// with a status that is not 5xx (bounded: a relay or the database may be down a while).
    async fn call<F, Fut>(&self, request: F) -> DeskReply
    where
        F: Fn(Desk) -> Fut,
        Fut: Future<Output = Result<DeskReply, kefu_connector::desk::DeskError>>,
    {
        let first = rand::random_range(0..N);
        for attempt in 0..600 {
            if let Some(url) = self.url(first + attempt) {
                match request(Desk::new(url, API_KEY)).await {
                    Ok(reply) if !reply.status.is_server_error() => return reply,
                    Ok(_) | Err(_) => {}
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
        panic!("no relay answered:\n{}", self.logs());
    }
}

/// One user's desk: posts its messages in order, each acknowledged before the next; returns
/// `(id, text)` of each.
async fn desk_posts(fleet: Arc<Fleet>, user: usize) -> Vec<(i64, String)> {
    let openid = format!("oFLEET{user:02}");
    let mut acked = Vec::new();
    for n in 0..MESSAGES {
        let text = format!("{openid} message {n:02}");
        let key = format!("fleet-{user}-{n}");
        let body = json!({"openid": openid, "channel": 0, "msg": text});
        let reply = fleet
            .call(|desk| {
                let (body, key) = (&body, &key);
                async move { desk.post_with_key("/v1/messages", body, key).await }
            })
            .await;
        assert_eq!(reply.status, 202, "{text}: {}", reply.text);
        acked.push((reply.body["id"].as_i64().unwrap(), text));
        sleep(Duration::from_millis(rand::random_range(300..700))).await;
    }
    acked
}

/// One user's platform: posts its handoff callbacks in order, each acknowledged before the
/// next; returns the text of each.
async fn platform_posts(fleet: Arc<Fleet>, user: usize, crypt: Arc<MsgCrypt>) -> Vec<String> {
    let openid = format!("oFLEET{user:02}");
    let start = hook::now_secs();
    let mut acked = Vec::new();
    for n in 0..CALLBACKS {
        let text = format!("{openid} callback {n}");
        let body = hook::handoff(&crypt, &openid, &text, start + i64::try_from(n).unwrap());
        let path = format!("/v1/callbacks/dialogue/{SECRET}");
        let reply = fleet
            .call(|desk| {
                let (body, path) = (body.clone(), &path);
                async move { desk.post_raw(path, body).await }
            })
            .await;
        assert_eq!(reply.status, 200, "{text}: {}", reply.text);
        acked.push(text);
        sleep(Duration::from_millis(rand::random_range(1_500..2_500))).await;
    }
    acked
}

/// Every 3 to 5 seconds until the load is done: SIGKILL one relay and start it again under its
/// name; the second time, crash the database instead.
async fn chaos(fleet: Arc<Fleet>, cluster: Arc<Cluster>, done: Arc<AtomicBool>) -> usize {
    let mut round = 0;
    while !(done.load(Ordering::SeqCst) && round >= 3) {
        assert!(round < 40, "the load never finished");
        sleep(Duration::from_millis(rand::random_range(3_000..5_000))).await;
        let (fleet, cluster) = (Arc::clone(&fleet), Arc::clone(&cluster));
        tokio::task::spawn_blocking(move || {
            if round == 1 {
                cluster.crash_restart().expect("the database restarts");
            } else {
                let victim = round % N;
                fleet.kill(victim);
                fleet.start(victim);
            }
        })
        .await
        .unwrap();
        round += 1;
    }
    round
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_sigkills_and_a_database_crash_loses_duplicates_and_reorders_nothing() {
    if !postgres_available() {
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(true))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let cluster = Arc::new(cluster);
    let admin = cluster.admin("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE fleet").await.unwrap();
    drop(admin);

    let sandbox = Sandbox::start(relay::sandbox_config()).await.unwrap();
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    let seen = hook::serve_hook(hook_listener);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = relay::settings(&sandbox, &dir.path().join("unused.sqlite3"), API_KEY);
    settings.extend([
        ("KEFU_DIALOGUE_APPID", OA_APPID.to_owned()),
        ("KEFU_DIALOGUE_REQUEST_TIMEOUT_MS", "1000".to_owned()),
        ("KEFU_DIALOGUE_CONNECT_TIMEOUT_MS", "500".to_owned()),
        ("KEFU_STORE_URL", cluster.url("fleet")),
        ("KEFU_STORE_LEASE_TTL_MS", LEASE_TTL_MS.to_string()),
        ("KEFU_STORE_HEARTBEAT_MS", "300".to_owned()),
        ("KEFU_STORE_POLL_MS", "200".to_owned()),
        ("KEFU_STORE_CONNECT_TIMEOUT_MS", "1000".to_owned()),
        ("KEFU_CALLBACKS_DIALOGUE_SECRET", SECRET.to_owned()),
        ("KEFU_WEBHOOK_URL", webhook),
        ("KEFU_WEBHOOK_SECRET", HOOK_SECRET.to_owned()),
        ("KEFU_WEBHOOK_INITIAL_BACKOFF_MS", "50".to_owned()),
        ("KEFU_WEBHOOK_MAX_BACKOFF_MS", "300".to_owned()),
        ("KEFU_WEBHOOK_TIMEOUT_MS", "2000".to_owned()),
    ]);
    let fleet = Arc::new(Fleet {
        settings,
        logs: dir.path().to_owned(),
        procs: Mutex::new((0..N).map(|_| None).collect()),
        urls: Mutex::new(vec![None; N]),
    });
    for i in 0..N {
        let fleet = Arc::clone(&fleet);
        tokio::task::spawn_blocking(move || fleet.start(i))
            .await
            .unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(chaos(
        Arc::clone(&fleet),
        Arc::clone(&cluster),
        Arc::clone(&done),
    ));
    let crypt = Arc::new(MsgCrypt::new(relay::TOKEN, relay::AES_KEY, relay::BOT_APPID).unwrap());
    let desks: Vec<_> = (0..USERS)
        .map(|user| tokio::spawn(desk_posts(Arc::clone(&fleet), user)))
        .collect();
    let platforms: Vec<_> = (0..USERS)
        .map(|user| tokio::spawn(platform_posts(Arc::clone(&fleet), user, Arc::clone(&crypt))))
        .collect();
    let mut posted = Vec::new();
    for desk in desks {
        posted.push(desk.await.unwrap());
    }
    let mut called = Vec::new();
    for platform in platforms {
        called.push(platform.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let rounds = chaos.await.unwrap();
    assert!(rounds >= 3, "a database crash and at least two SIGKILLs");

    // Every acknowledged message settles: nothing queued or sending is left once the relays
    // have taken over what the killed ones held.
    let mut status: HashMap<i64, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(30);
    loop {
        for (id, _) in posted.iter().flatten() {
            if status
                .get(id)
                .is_some_and(|s| s != "queued" && s != "sending")
            {
                continue;
            }
            let path = format!("/v1/messages/{id}");
            let reply = fleet
                .call(|desk| {
                    let path = &path;
                    async move { desk.get(path).await }
                })
                .await;
            assert_eq!(reply.status, 200, "{id}: {}", reply.text);
            status.insert(*id, reply.body["status"].as_str().unwrap().to_owned());
        }
        let open = status
            .values()
            .filter(|s| *s == "queued" || *s == "sending")
            .count();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} messages still queued or sending:\n{}",
            fleet.logs()
        );
        sleep(Duration::from_millis(200)).await;
    }

    for (user, acked) in posted.iter().enumerate() {
        let openid = format!("oFLEET{user:02}");
        let received: Vec<String> = sandbox
            .messages(Some(&openid))
            .iter()
            .map(|m| serde_json::to_value(&m.msg).unwrap())
            .map(|m| m.as_str().unwrap_or_default().to_owned())
            .collect();
        let position: HashMap<&str, usize> = acked
            .iter()
            .enumerate()
            .map(|(n, (_, text))| (text.as_str(), n))
            .collect();
        let mut last = None;
        for text in &received {
            let n = position.get(text.as_str()).copied();
            assert!(
                n.is_some(),
                "{openid}: the sandbox got {text:?}, never acknowledged"
            );
            assert!(n > last, "{openid}: out of order or twice: {received:?}");
            last = n;
        }
        for (id, text) in acked {
            let got = received.iter().filter(|r| *r == text).count();
            let state = status[id].as_str();
            let allowed = match state {
                "delivered" => 1..=1,
                "ambiguous" => 0..=1,
                "failed" => 0..=0,
                other => panic!("{text}: ended {other}"),
            };
            assert!(
                allowed.contains(&got),
                "{text} is {state} and reached the sandbox {got} times:\n{}",
                fleet.logs()
            );
        }
    }

    // Every acknowledged callback reaches the desk, each user's in order of first arrival.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let firsts = first_seen(&seen);
        let missing: Vec<&String> = called
            .iter()
            .flatten()
            .filter(|text| !firsts.values().flatten().any(|seen| seen == *text))
            .collect();
        if missing.is_empty() {
            for (user, acked) in called.iter().enumerate() {
                let openid = format!("oFLEET{user:02}");
                assert_eq!(firsts.get(&openid), Some(acked), "{openid}: in order");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged callbacks never reached the desk, such as {:?}:\n{}",
            missing.len(),
            missing.first(),
            fleet.logs()
        );
        sleep(Duration::from_millis(200)).await;
    }

    // Every relay serves the same feed: ids increasing, each callback stored once.
    let mut feed: BTreeMap<i64, Value> = BTreeMap::new();
    for i in 0..N {
        let url = fleet.url(i).expect("every relay is up after the chaos");
        let reply = Desk::new(url, API_KEY)
            .get("/v1/events?limit=1000")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "r{}: {}", i + 1, reply.text);
        let events = reply.body["events"].as_array().unwrap();
        let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert!(ids.is_sorted_by(|a, b| a < b), "r{}: {ids:?}", i + 1);
        for event in events {
            let id = event["id"].as_i64().unwrap();
            let known = feed.entry(id).or_insert_with(|| event.clone());
            assert_eq!(known, event, "r{}: event {id} differs", i + 1);
        }
        assert_eq!(feed.len(), events.len(), "r{}: events missing", i + 1);
    }
    let mut stored: Vec<&str> = feed
        .values()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    stored.sort_unstable();
    let mut acked: Vec<&str> = called.iter().flatten().map(String::as_str).collect();
    acked.sort_unstable();
    assert_eq!(stored, acked, "each acknowledged callback stored once");
    sandbox.stop().await;
}

/// Each user's callback texts in the order the webhook first received them, every push signed.
fn first_seen(seen: &hook::Seen) -> BTreeMap<String, Vec<String>> {
    let mut firsts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, timestamp, signature, body) in seen.lock().unwrap().iter() {
        assert!(
            hook::verify(HOOK_SECRET, timestamp, signature, body),
            "{id}: bad signature"
        );
        let event: Value = serde_json::from_str(body).unwrap();
        let texts = firsts
            .entry(event["openid"].as_str().unwrap().to_owned())
            .or_default();
        let text = event["content"].as_str().unwrap().to_owned();
        if !texts.contains(&text) {
            texts.push(text);
        }
    }
    firsts
}
