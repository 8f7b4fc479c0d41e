//! `kefu-connector bench`: the relay under load, on loopback.
//!
//! Many concurrent users post to `POST /v1/messages` of an in-process relay whose durable outbox
//! delivers to an in-process sandbox. The same messages sent straight through `kefu-client` to the
//! sandbox, with no outbox, give the ceiling. The run also checks what it measures: every
//! acknowledged message must end delivered, failed or ambiguous, and none may reach the sandbox
//! twice. The same load also goes through an Official Account (`custom/send`, with its access
//! token), `--provider` choosing either path or both in one run. `--inbound` measures the other
//! direction: see `inbound.rs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use kefu_client::Client;
use kefu_payload::{Channel, Msg, SendMsg};
use serde_json::json;
use tokio::time::Instant;

use crate::desk::Desk;
use crate::loopback::{Loopback, OA_ACCOUNT, OA_APPID};
use crate::sandbox::{DEFAULT_OA_APPID, OaAccount, Sandbox, SandboxConfig};

mod cpu;
mod inbound;
mod sweep;

const TOKEN: &str = "BENCHTOKEN0123456789abcdef";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const BOT_APPID: &str = "Gg8HejYTkUsEIlG";
const OA_TOKEN: &str = "BENCHOATOKEN0123456789";
const OA_AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

/// Which platform path the relay's load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// The Dialogue platform's `sendmsg` (encrypted XML), with the direct-client ceiling.
    Dialogue,
    /// An Official Account's `custom/send` (JSON, with an access token).
    Oa,
    /// Both, one after the other in the same run, each against a fresh relay and sandbox.
    All,
}

/// Arguments of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Concurrent users; each posts its own messages one after another, in order.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Messages in all. Ignored with --duration-secs.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Run for this long instead of a fixed count, printing memory every 30 s (a soak test).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Offered load in messages per second across all users (open loop). Without it each user
    /// posts as fast as acknowledgements come back (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Deliveries in flight at once in the relay.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Sandbox: fraction of requests answered -1 (retried by the relay).
    #[arg(long, default_value_t = 0.0)]
    pub system_error_rate: f64,
    /// Sandbox: fraction of requests dropped unanswered (ambiguous, never retried).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Sandbox: delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Seed of the sandbox's faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to put the outbox [default: a temporary directory]. Its disk decides the fsync cost.
    #[arg(long, conflicts_with = "store")]
    pub outbox: Option<PathBuf>,
    /// Run the relay on this PostgreSQL database instead of an SQLite file
    /// (`postgres://user:password@host:port/db`; the relay migrates its `kefu` schema). No other
    /// relay may run on it.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With --store: compare in one run the Dialogue path on SQLite (a temporary file) and on the
    /// database with each of these numbers of relays (in process, the users spread round robin
    /// over them), each run closed loop, then open loop at --rate (default 1000 msg/s), and
    /// print a table. Each run starts on an empty `kefu` schema: the bench DROPS the database's
    /// `kefu` schema, so never point it at a database whose data you need.
    #[arg(long, value_name = "N,N…", value_delimiter = ',', requires = "store",
          value_parser = sweep::parse_relays, conflicts_with_all = ["inbound", "duration_secs", "outbox"])]
    pub relays: Vec<usize>,
    /// Skip the direct-client ceiling.
    #[arg(long)]
    pub no_direct: bool,
    /// The path to measure. The OA path raises the sandbox's quota and send window out of the
    /// way, so that it measures the relay and not the platform's rules.
    #[arg(long, value_enum, default_value_t = Provider::All, conflicts_with_all = ["inbound", "duration_secs"])]
    pub provider: Provider,
    /// Measure the inbound side instead: sandbox users push handoff callbacks to the relay, which
    /// must acknowledge each once stored, without waiting for the desk's webhook.
    #[arg(long, conflicts_with = "duration_secs")]
    pub inbound: bool,
    /// With --inbound: how long the desk's webhook takes to answer each event, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub webhook_delay_ms: u64,
}

/// What one relay run measured.
#[derive(Debug, Clone)]
pub struct RelayReport {
    /// Messages acknowledged with 202.
    pub accepted: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Of those, ambiguous.
    pub ambiguous: usize,
    /// Acknowledged messages whose final state could not be read, or that never finished.
    pub lost: usize,
    /// Messages the sandbox received more than once.
    pub duplicated: usize,
    /// Acknowledgements per second over the posting phase.
    pub accepted_per_sec: f64,
    /// Deliveries per second, from the first post to the last delivery.
    pub delivered_per_sec: f64,
    /// Acknowledgement latency percentiles (p50, p99).
    pub ack: (Duration, Duration),
    /// Post-to-sandbox latency percentiles (p50, p99) of delivered messages.
    pub end_to_end: (Duration, Duration),
    /// This process's CPU time (load generator, relays and sandbox) per acknowledged message,
    /// from the first post to the last delivery.
    pub cpu: Duration,
    /// The PostgreSQL server's CPU time per acknowledged message over the same span, when it
    /// runs on this machine.
    pub server_cpu: Option<Duration>,
}

/// Slots of the per-message tables in a soak run, which reuses them round-robin: more than the
/// messages ever in flight at once. A fixed-count run has one slot per message.
const SOAK_SLOTS: usize = 1 << 17;

/// A table of zeroed counters whose pages are all touched now, so that the process's memory
/// during the run measures the relay and not this table filling up.
fn counters(len: usize) -> Arc<Vec<AtomicU64>> {
    let table: Vec<AtomicU64> = (0..len).map(|_| AtomicU64::new(0)).collect();
    // The allocator hands out untouched zero pages for a zeroed table; storing makes them real.
    for counter in &table {
        counter.store(0, Ordering::Relaxed);
    }
    Arc::new(table)
}

/// Latencies in logarithmic buckets 1 % apart, from 1 µs to over an hour: fixed memory, 1 %
/// precision.
struct Histogram(std::sync::Mutex<Vec<u64>>);

impl Histogram {
    const GROWTH: f64 = 1.01;
    const BUCKETS: usize = 2400;

    fn new() -> Histogram {
        Histogram(std::sync::Mutex::new(vec![0; Histogram::BUCKETS]))
    }

    fn record(&self, micros: u64) {
        let bucket = ((micros.max(1) as f64).ln() / Histogram::GROWTH.ln()) as usize;
        if let Ok(mut counts) = self.0.lock() {
            if let Some(count) = counts.get_mut(bucket.min(Histogram::BUCKETS - 1)) {
                *count += 1;
            }
        }
    }

    /// The p50 and p99, each the upper edge of its bucket.
    fn percentiles(&self) -> (Duration, Duration) {
        let counts = self.0.lock().map(|c| c.clone()).unwrap_or_default();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| {
            let rank = (total as f64 * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (bucket, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    let micros = Histogram::GROWTH.powi(bucket as i32 + 1);
                    return Duration::from_secs_f64(micros / 1e6);
                }
            }
            Duration::ZERO
        };
        if total == 0 {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (at(0.50), at(0.99))
        }
    }
}

/// Runs `bench` and prints its report.
pub fn run(args: BenchArgs) -> ExitCode {
    crate::runtime::block_on(async {
        let users = args.users.max(1);
        println!(
            "kefu-connector bench: {users} users, {}, {}",
            match (args.duration_secs, args.inbound) {
                (Some(secs), _) => format!("{secs} s soak"),
                (None, false) => format!("{} messages", args.messages),
                (None, true) => format!("{} handoff callbacks", args.messages),
            },
            match args.rate {
                Some(rate) => format!("open loop at {rate} msg/s"),
                None => "closed loop".to_owned(),
            }
        );
        let outcome = if args.inbound {
            inbound::run(&args).await.map(|_| true)
        } else if !args.relays.is_empty() {
            sweep::run(&args).await
        } else {
            paths(&args).await
        };
        match outcome {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("error: messages were lost or duplicated");
                ExitCode::FAILURE
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs the chosen paths; true when neither lost nor duplicated a message.
async fn paths(args: &BenchArgs) -> Result<bool, String> {
    let mut clean = true;
    if args.provider != Provider::Oa {
        println!("Dialogue platform (sendmsg, encrypted XML):");
        let report = bench(args).await?;
        clean &= report.lost == 0 && report.duplicated == 0;
    }
    if args.provider != Provider::Dialogue {
        println!("Official Account (custom/send, JSON with an access token):");
        let report = relay_run(args, Path::Oa, 1).await?;
        clean &= report.lost == 0 && report.duplicated == 0;
    }
    Ok(clean)
}

async fn bench(args: &BenchArgs) -> Result<RelayReport, String> {
    if !args.no_direct {
        let (ceiling, cpu) = direct_ceiling(args).await?;
        println!(
            "direct client, no outbox   {ceiling:>9.0} msg/s  (the ceiling)  cpu {:>6.1} µs/msg",
            micros_f64(cpu)
        );
        let report = relay_run(args, Path::Dialogue, 1).await?;
        println!(
            "relay / direct             {:>9.0} %",
            100.0 * report.delivered_per_sec / ceiling
        );
        Ok(report)
    } else {
        relay_run(args, Path::Dialogue, 1).await
    }
}

/// The relay path of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Dialogue,
    Oa,
}

/// The sandbox of the OA path: the Official Account whose users write, on the default
/// api.weixin.qq.com account; no quota and a week-long window, so that every message is
/// accepted; and every request kept, since the bench reads them back to count deliveries.
fn oa_sandbox_config(args: &BenchArgs) -> SandboxConfig {
    let mut config = sandbox_config(args);
    config.oa = Some(OaAccount::new(OA_TOKEN, OA_AES_KEY, DEFAULT_OA_APPID));
    config.api.quota_per_message = u32::MAX;
    config.api.send_window = Duration::from_secs(7 * 24 * 3600);
    config.max_messages = args.messages.max(args.users) * 2;
    config
}

fn sandbox_config(args: &BenchArgs) -> SandboxConfig {
    let mut config = SandboxConfig::new(TOKEN, AES_KEY, BOT_APPID);
    config.system_error_rate = args.system_error_rate;
    config.drop_rate = args.drop_rate;
    config.latency = Duration::from_millis(args.latency_ms);
    config.seed = Some(args.seed);
    // The sandbox keeps nothing: the bench counts deliveries through its subscription, so memory
    // stays flat however long the run.
    config.max_messages = 0;
    config
}

/// The same traffic through `kefu-client` straight to the sandbox: no HTTP hop, no outbox.
async fn direct_ceiling(args: &BenchArgs) -> Result<(f64, Duration), String> {
    let mut config = sandbox_config(args);
    config.system_error_rate = 0.0;
    config.drop_rate = 0.0;
    let sandbox = Sandbox::start(config).await.map_err(|e| e.to_string())?;
    let client = Client::builder(TOKEN, AES_KEY, BOT_APPID)
        .base_url(sandbox.base_url())
        .build()
        .map_err(|e| e.to_string())?;
    let users = args.users.max(1);
    let total = args.messages.max(users);
    let started = Instant::now();
    let cpu_before = cpu::own();
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..users {
        let client = client.clone();
        let count = total / users + usize::from(user < total % users);
        tasks.spawn(async move {
            for i in 0..count {
                let message = SendMsg::builder(
                    format!("oBENCH{user:05}"),
                    Channel::OfficialAccount,
                    Msg::text(format!("direct {user} {i}")),
                )
                .appid(OA_APPID)
                .build()
                .map_err(|e| e.to_string())?;
                client.send(&message).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu = per_message(cpu::own().saturating_sub(cpu_before), total);
    sandbox.stop().await;
    Ok((rate, cpu))
}

/// The settings that put the relay's store where `args` say: an SQLite file (`--outbox`, else a
/// temporary one) or a PostgreSQL database (`--store`).
fn store_overrides(args: &BenchArgs) -> Vec<(&'static str, String)> {
    match (&args.store, &args.outbox) {
        (Some(url), _) => vec![
            ("KEFU_STORE_URL", url.clone()),
            ("KEFU_STORE_RELAY_NAME", relay_name(1)),
        ],
        (None, Some(path)) => vec![("KEFU_OUTBOX_PATH", path.display().to_string())],
        (None, None) => Vec::new(),
    }
}

/// The fleet name of the `nth` relay of a run (from 1).
fn relay_name(nth: usize) -> String {
    format!("bench-{nth}")
}

/// The store as the figures name it.
fn store_name(args: &BenchArgs) -> &'static str {
    if args.store.is_some() {
        "postgres store "
    } else {
        "sqlite outbox  "
    }
}

/// One run of the relay path on `relays` relays (more than one only on PostgreSQL), the users
/// posting to them round robin.
async fn relay_run(args: &BenchArgs, path: Path, relays: usize) -> Result<RelayReport, String> {
    if path == Path::Oa && args.duration_secs.is_some() {
        return Err("a soak run (--duration-secs) measures the Dialogue path only".into());
    }
    if relays > 1 && args.store.is_none() {
        return Err("more than one relay needs a PostgreSQL store (--store)".into());
    }
    let mut overrides = vec![
        ("KEFU_DIALOGUE_REQUEST_TIMEOUT_MS", "2000".to_owned()),
        ("KEFU_DELIVERY_CONCURRENCY", args.concurrency.to_string()),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "20".to_owned()),
        ("KEFU_DELIVERY_MAX_ATTEMPTS", "5".to_owned()),
    ];
    overrides.extend(store_overrides(args));
    let sandbox = match path {
        Path::Dialogue => sandbox_config(args),
        Path::Oa => oa_sandbox_config(args),
    };
    let setup = Loopback::start(sandbox, &overrides).await?;
    let mut peers = Vec::new();
    for nth in 2..=relays {
        match setup.start_peer(&relay_name(nth)).await {
            Ok(peer) => peers.push(peer),
            Err(error) => {
                stop_all(setup, peers).await;
                return Err(format!("relay {nth} of {relays}: {error}"));
            }
        }
    }
    let desks: Vec<Desk> = std::iter::once(setup.desk.clone())
        .chain(peers.iter().map(|(_, desk)| desk.clone()))
        .collect();
    let server = match &args.store {
        Some(url) => cpu::Server::find(url).await,
        None => None,
    };

    let users = args.users.max(1);
    if path == Path::Oa {
        // Each user writes first: the platform answers 40003 to a user who never wrote.
        for user in 0..users {
            setup
                .sandbox
                .api_user_writes(DEFAULT_OA_APPID, &format!("oBENCH{user:05}"))
                .ok_or("the sandbox has no Official Account to bench")?;
        }
    }
    let deadline = args
        .duration_secs
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let clock = Instant::now();
    let clock_unix_micros = unix_micros();
    let cpu_before = cpu::own();
    let server_before = server.map(|server| server.cpu());
    let slots = if deadline.is_some() {
        SOAK_SLOTS
    } else {
        args.messages.max(users)
    };
    let posted_at = counters(slots);
    let received = counters(slots);
    let received_total = Arc::new(AtomicU64::new(0));
    let end_to_end = Arc::new(Histogram::new());
    let ack_latency = Arc::new(Histogram::new());
    let last_delivery = Arc::new(AtomicU64::new(0));

    let mut deliveries = setup.sandbox.subscribe();
    let watcher = {
        let (posted_at, received, received_total, end_to_end, last_delivery) = (
            Arc::clone(&posted_at),
            Arc::clone(&received),
            Arc::clone(&received_total),
            Arc::clone(&end_to_end),
            Arc::clone(&last_delivery),
        );
        tokio::spawn(async move {
            loop {
                let message = match deliveries.recv().await {
                    Ok(message) => message,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        eprintln!("warning: the bench fell {missed} deliveries behind");
                        continue;
                    }
                    Err(_) => return,
                };
                let now = micros(clock);
                let Msg::Text(text) = &message.msg else {
                    continue;
                };
                let Some(index) = text
                    .strip_prefix("bench ")
                    .and_then(|i| i.parse::<usize>().ok())
                else {
                    continue;
                };
                received_total.fetch_add(1, Ordering::Relaxed);
                if let (Some(count), Some(sent)) =
                    (received.get(index % slots), posted_at.get(index % slots))
                {
                    count.fetch_add(1, Ordering::Relaxed);
                    end_to_end.record(now.saturating_sub(sent.load(Ordering::Relaxed)));
                    last_delivery.fetch_max(now, Ordering::Relaxed);
                }
            }
        })
    };

    let soak = deadline.map(|_| {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(30));
            loop {
                ticker.tick().await;
                println!(
                    "  t={:>5.0} s  rss {:>7.1} MiB",
                    clock.elapsed().as_secs_f64(),
                    memory_kib("VmRSS:") as f64 / 1024.0
                );
            }
        })
    });

    let next_index = Arc::new(AtomicU64::new(0));
    let rate = args.rate;
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..users {
        let desk = desk_of(&desks, user).clone();
        let next_index = Arc::clone(&next_index);
        let posted_at = Arc::clone(&posted_at);
        let received = Arc::clone(&received);
        let ack_latency = Arc::clone(&ack_latency);
        let total = if deadline.is_some() {
            usize::MAX
        } else {
            args.messages.max(users)
        };
        let keep_ids = deadline.is_none();
        tasks.spawn(async move {
            let mut accepted = 0usize;
            let mut ids = Vec::new();
            let mut pacing = pacer(rate, user, users);
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(ticker) = pacing.as_mut() {
                    ticker.tick().await;
                }
                let index = usize::try_from(next_index.fetch_add(1, Ordering::Relaxed))
                    .unwrap_or(usize::MAX);
                if index >= total {
                    break;
                }
                let start = micros(clock);
                if let (Some(slot), Some(count)) =
                    (posted_at.get(index % slots), received.get(index % slots))
                {
                    slot.store(start, Ordering::Relaxed);
                    count.store(0, Ordering::Relaxed);
                }
                let openid = format!("oBENCH{user:05}");
                let msg = format!("bench {index}");
                let body = match path {
                    Path::Dialogue => json!({"openid": openid, "channel": 0, "msg": msg}),
                    Path::Oa => json!({"account": OA_ACCOUNT, "openid": openid, "msg": msg}),
                };
                let reply = desk
                    .post("/v1/messages", &body)
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.status != 202 {
                    return Err(format!(
                        "message {index} refused: {} {}",
                        reply.status, reply.text
                    ));
                }
                ack_latency.record(micros(clock) - start);
                accepted += 1;
                if keep_ids {
                    ids.push((index, user, reply.body["id"].as_i64().unwrap_or_default()));
                }
            }
            Ok::<_, String>((accepted, ids))
        });
    }
    let mut accepted = 0;
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (user_accepted, user_ids) = done.map_err(|e| e.to_string())??;
        accepted += user_accepted;
        ids.extend(user_ids);
    }
    let posting = clock.elapsed();
    if let Some(soak) = soak {
        soak.abort();
    }

    // Wait until nothing is pending, which ends the CPU measurement; then, unless this is a soak
    // run (which keeps no per-message list), read each acknowledged message's final state.
    for desk in &desks {
        wait_until_idle(desk).await?;
    }
    let cpu = per_message(cpu::own().saturating_sub(cpu_before), accepted);
    let server_cpu = server
        .zip(server_before)
        .map(|(server, before)| per_message(server.cpu().saturating_sub(before), accepted));
    let mut delivered = 0;
    let mut failed = 0;
    let mut ambiguous = 0;
    let mut lost = 0;
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    for (_, user, id) in &ids {
        let desk = desk_of(&desks, *user);
        loop {
            let status = desk
                .get(&format!("/v1/messages/{id}"))
                .await
                .map_err(|e| e.to_string())?
                .body;
            match status["status"].as_str() {
                Some("delivered") => delivered += 1,
                Some("failed") => failed += 1,
                Some("ambiguous") => ambiguous += 1,
                _ if Instant::now() < settle_deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                _ => lost += 1,
            }
            break;
        }
    }
    // Let the last deliveries reach the watcher.
    tokio::time::sleep(Duration::from_millis(50)).await;
    watcher.abort();
    if path == Path::Oa {
        // custom/send is not in the sandbox's subscription: read what it accepted instead, to
        // the millisecond it keeps.
        for request in setup
            .sandbox
            .api_requests(DEFAULT_OA_APPID, None)
            .unwrap_or_default()
        {
            let Some(index) = bench_index(&request.body) else {
                continue;
            };
            let now = (request.received_at_ms * 1000).saturating_sub(clock_unix_micros);
            if let (Some(count), Some(sent)) =
                (received.get(index % slots), posted_at.get(index % slots))
            {
                count.fetch_add(1, Ordering::Relaxed);
                end_to_end.record(now.saturating_sub(sent.load(Ordering::Relaxed)));
                last_delivery.fetch_max(now, Ordering::Relaxed);
            }
        }
    }
    let duplicated = received
        .iter()
        .filter(|count| count.load(Ordering::Relaxed) > 1)
        .count();
    if deadline.is_some() {
        // Without faults, every acknowledged message must have arrived once.
        delivered = usize::try_from(received_total.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        lost = accepted.saturating_sub(delivered);
    } else {
        let reached = ids
            .iter()
            .filter(|(index, _, _)| {
                received
                    .get(index % slots)
                    .is_some_and(|c| c.load(Ordering::Relaxed) == 1)
            })
            .count();
        lost += delivered.saturating_sub(reached);
    }

    let report = RelayReport {
        accepted,
        delivered,
        failed,
        ambiguous,
        lost,
        duplicated,
        accepted_per_sec: accepted as f64 / posting.as_secs_f64(),
        delivered_per_sec: delivered as f64
            / Duration::from_micros(last_delivery.load(Ordering::Relaxed).max(1)).as_secs_f64(),
        ack: ack_latency.percentiles(),
        end_to_end: end_to_end.percentiles(),
        cpu,
        server_cpu,
    };
    println!(
        "relay, {}     {:>9.0} msg/s accepted   ack p50 {:>7.2} ms  p99 {:>7.2} ms",
        store_name(args),
        report.accepted_per_sec,
        millis(report.ack.0),
        millis(report.ack.1)
    );
    println!(
        "                           {:>9.0} msg/s delivered  e2e p50 {:>7.2} ms  p99 {:>7.2} ms",
        report.delivered_per_sec,
        millis(report.end_to_end.0),
        millis(report.end_to_end.1)
    );
    println!(
        "cpu                        {:>9.1} µs/msg    (all threads, posting to the last delivery)",
        micros_f64(cpu)
    );
    if let Some(server_cpu) = server_cpu {
        println!(
            "postgres cpu               {:>9.1} µs/msg    (the local server's processes, same span)",
            micros_f64(server_cpu)
        );
    }
    println!(
        "outcomes                   {} accepted: {} delivered, {} failed, {} ambiguous, {} lost, {} duplicated",
        report.accepted,
        report.delivered,
        report.failed,
        report.ambiguous,
        report.lost,
        report.duplicated
    );
    print_peak_memory();
    stop_all(setup, peers).await;
    Ok(report)
}

/// The relay that `user` posts to: round robin over the run's relays.
fn desk_of(desks: &[Desk], user: usize) -> &Desk {
    &desks[user % desks.len()]
}

/// Stops the peers, then the first relay and the sandbox.
async fn stop_all(setup: Loopback, peers: Vec<(crate::serve::Relay, Desk)>) {
    for (relay, _) in peers {
        relay.stop().await;
    }
    setup.stop().await;
}

/// The index of a bench message in a `custom/send` body: its text is `bench <index>`.
fn bench_index(body: &str) -> Option<usize> {
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    body["text"]["content"]
        .as_str()?
        .strip_prefix("bench ")?
        .parse()
        .ok()
}

/// Now in Unix microseconds: the sandbox stamps what it accepts with the wall clock.
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The ticker of one user's posts in an open loop at `rate` messages per second across `users`,
/// the users spread evenly over the interval; `None` in a closed loop.
fn pacer(rate: Option<f64>, user: usize, users: usize) -> Option<tokio::time::Interval> {
    let interval = Duration::from_secs_f64(users as f64 / rate.filter(|rate| *rate > 0.0)?);
    let mut ticker = tokio::time::interval_at(
        Instant::now() + interval.mul_f64(user as f64 / users as f64),
        interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    Some(ticker)
}

fn print_peak_memory() {
    println!(
        "peak memory                {:>9.1} MiB  (this process: load generator, relay and sandbox)",
        memory_kib("VmHWM:") as f64 / 1024.0
    );
}

fn micros(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn micros_f64(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn per_message(cpu: Duration, messages: usize) -> Duration {
    cpu.checked_div(u32::try_from(messages.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Waits until the relay reports no pending job.
async fn wait_until_idle(desk: &Desk) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = desk.get("/metrics").await.map_err(|e| e.to_string())?.text;
        if metrics.lines().any(|line| line == "kefu_outbox_pending 0") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("jobs still pending two minutes after the last post".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `/proc/self/status` field in KiB (0 where there is no procfs).
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the relay part of the bench in-process and returns its report, for tests: the Dialogue
/// path, or with `--provider oa` the Official Account's.
pub async fn relay_report(args: &BenchArgs) -> Result<RelayReport, String> {
    let path = match args.provider {
        Provider::Oa => Path::Oa,
        Provider::Dialogue | Provider::All => Path::Dialogue,
    };
    relay_run(args, path, 1).await
}

#[cfg(test)]
mod tests {
    use super::bench_index;

    #[test]
    fn bench_index_reads_the_text_of_a_custom_send_body() {
        let body = r#"{"touser":"oBENCH00001","msgtype":"text","text":{"content":"bench 42"}}"#;
        assert_eq!(bench_index(body), Some(42));
        for other in [
            r#"{"msgtype":"text","text":{"content":"hello"}}"#,
            "not json",
            "{}",
        ] {
            assert_eq!(bench_index(other), None, "{other}");
        }
    }
}
