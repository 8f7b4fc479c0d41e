//! `kefu-connector bench --inbound`: how fast the relay acknowledges the platform's handoff
//! callbacks while the desk is slow.
//!
//! Sandbox users type messages; the sandbox pushes each as the platform does, `{"encrypted": …}`
//! to the relay's Dialogue callback URL, and times the exchange as the platform would see it. The
//! relay decrypts, parses, stores the event durably and answers; the desk's webhook answers only
//! after `--webhook-delay-ms`, so an acknowledgement that waited for the desk would show.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::{
    BenchArgs, Histogram, cpu, micros, micros_f64, millis, pacer, per_message, print_peak_memory,
};
use crate::loopback::Loopback;
use crate::sandbox::Say;

/// What one inbound run measured.
#[derive(Debug, Clone)]
pub struct InboundReport {
    /// Callbacks the relay answered with 200.
    pub acknowledged: usize,
    /// Acknowledgements per second over the run.
    pub acknowledged_per_sec: f64,
    /// Acknowledgement latency percentiles (p50, p99), as the platform sees it.
    pub ack: (Duration, Duration),
    /// Events the desk's webhook had answered when the last callback was acknowledged.
    pub delivered_to_desk: u64,
}

/// Runs the inbound bench and prints its report. Fails if any callback was not acknowledged.
pub(super) async fn run(args: &BenchArgs) -> Result<InboundReport, String> {
    let delivered_to_desk = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the desk's webhook: {e}"))?;
    let webhook = listener.local_addr().map_err(|e| e.to_string())?;
    let delay = Duration::from_millis(args.webhook_delay_ms);
    let desk = Router::new().route(
        "/events",
        post({
            let delivered_to_desk = Arc::clone(&delivered_to_desk);
            move || async move {
                tokio::time::sleep(delay).await;
                delivered_to_desk.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let desk = tokio::spawn(async move { axum::serve(listener, desk).await });
    let mut overrides = vec![
        ("KEFU_WEBHOOK_URL", format!("http://{webhook}/events")),
        (
            "KEFU_WEBHOOK_SECRET",
            "bench-webhook-secret-0123456789".to_owned(),
        ),
    ];
    overrides.extend(super::store_overrides(args));
    let setup = Arc::new(Loopback::start(super::sandbox_config(args), &overrides).await?);

    let users = args.users.max(1);
    let total = args.messages.max(users);
    let ack_latency = Arc::new(Histogram::new());
    let rate = args.rate;
    let clock = Instant::now();
    let cpu_before = cpu::own();
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..users {
        let setup = Arc::clone(&setup);
        let ack_latency = Arc::clone(&ack_latency);
        let count = total / users + usize::from(user < total % users);
        tasks.spawn(async move {
            let openid = format!("oBENCH{user:05}");
            let mut pacing = pacer(rate, user, users);
            for i in 0..count {
                if let Some(ticker) = pacing.as_mut() {
                    ticker.tick().await;
                }
                let start = micros(clock);
                let outcome = setup
                    .sandbox
                    .say(&openid, Say::new(format!("bench {user} {i}")))
                    .await
                    .map_err(|e| e.to_string())?;
                if !outcome.callback.is_success() {
                    return Err(format!(
                        "callback {i} of {openid} not acknowledged: {:?}",
                        outcome.callback
                    ));
                }
                ack_latency.record(micros(clock) - start);
            }
            Ok::<_, String>(count)
        });
    }
    let mut acknowledged = 0;
    while let Some(done) = tasks.join_next().await {
        acknowledged += done.map_err(|e| e.to_string())??;
    }
    let elapsed = clock.elapsed();
    let cpu = per_message(cpu::own().saturating_sub(cpu_before), acknowledged);
    let report = InboundReport {
        acknowledged,
        acknowledged_per_sec: acknowledged as f64 / elapsed.as_secs_f64(),
        ack: ack_latency.percentiles(),
        delivered_to_desk: delivered_to_desk.load(Ordering::Relaxed),
    };
    println!(
        "relay, handoff callbacks   {:>9.0} callbacks/s acknowledged   ack p50 {:>7.2} ms  p99 {:>7.2} ms",
        report.acknowledged_per_sec,
        millis(report.ack.0),
        millis(report.ack.1)
    );
    println!(
        "cpu                        {:>9.1} µs/callback  (all threads, sandbox and desk included)",
        micros_f64(cpu)
    );
    println!(
        "desk                       {} of {} events answered by the webhook ({} ms each) by then",
        report.delivered_to_desk, report.acknowledged, args.webhook_delay_ms
    );
    print_peak_memory();
    // The webhook backlog stays stored for a next start; only the pushes in flight finish.
    if let Ok(setup) = Arc::try_unwrap(setup) {
        setup.stop().await;
    }
    desk.abort();
    Ok(report)
}
