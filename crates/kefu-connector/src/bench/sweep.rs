//! `bench --store URL --relays 1,3`: the Dialogue path on SQLite and on PostgreSQL with each
//! number of relays, in one invocation, each closed loop (throughput and CPU per message) and
//! open loop (acknowledgement latency at a fixed rate), ending with one table.

use std::time::Duration;

use kefu_store_postgres::tokio_postgres::Client;
use kefu_store_postgres::{PgConfig, RelayId, connect_one};
use tokio::task::JoinHandle;

use super::{BenchArgs, Path, RelayReport, micros_f64, millis, relay_run};

/// The most relays one sweep starts in this process.
const MAX_RELAYS: usize = 16;

/// The open loop's rate when `--rate` is not given: the figure is the p99 at 1,000 msg/s.
const DEFAULT_RATE: f64 = 1000.0;

/// Parses one entry of `--relays`: a number of relays from 1 to [`MAX_RELAYS`].
pub fn parse_relays(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_RELAYS).contains(&n) => Ok(n),
        _ => Err(format!("a number of relays from 1 to {MAX_RELAYS}")),
    }
}

/// Opens one session on the database of `url` with the relay's connection settings, its
/// connection driven by the returned task (which ends when the client is dropped).
pub(super) async fn session(url: &str) -> Result<(Client, JoinHandle<()>), String> {
    let config = PgConfig::new(url).map_err(|e| e.to_string())?;
    let (client, connection) = connect_one(&config, &RelayId::generate("bench"))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// Empties the database for the next run: drops the `kefu` schema, which the next relay
/// migrates again, so that no run inherits the tables, indexes or dead rows of the one before.
async fn reset(url: &str) -> Result<(), String> {
    let (client, driver) = session(url).await?;
    let dropped = client
        .batch_execute("DROP SCHEMA IF EXISTS kefu CASCADE")
        .await
        .map_err(|e| format!("cannot empty the kefu schema: {e}"));
    drop(client);
    let _ = driver.await;
    dropped
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them
/// ("unknown" where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|load| !load.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One configuration's figures: the closed loop's throughput and CPU, the open loop's latency.
#[derive(Debug, Clone)]
struct Row {
    store: &'static str,
    relays: usize,
    closed: RelayReport,
    open: RelayReport,
}

impl Row {
    /// CPU per message over the closed loop: this process, the server (when local), and their sum.
    fn cpu(&self) -> (Duration, Option<Duration>, Duration) {
        let server = self.closed.server_cpu;
        (
            self.closed.cpu,
            server,
            self.closed.cpu + server.unwrap_or_default(),
        )
    }

    /// Neither run lost or duplicated a message.
    fn clean(&self) -> bool {
        [&self.closed, &self.open]
            .iter()
            .all(|report| report.lost == 0 && report.duplicated == 0)
    }
}

/// The table of a sweep, one line per configuration.
fn table(rows: &[Row], rate: f64) -> String {
    let mut out = format!(
        "store      relays  acked msg/s  delivered msg/s  ack p50 / p99 at {rate:.0} msg/s  cpu µs/msg: process + postgres = total\n"
    );
    for row in rows {
        let (own, server, total) = row.cpu();
        let server = server.map_or_else(|| "–".to_owned(), |s| format!("{:.1}", micros_f64(s)));
        out.push_str(&format!(
            "{:<10} {:>6}  {:>11.0}  {:>15.0}  {:>10.2} / {:>6.2} ms {:>10}  {:>8.1} + {:>8} = {:>7.1}\n",
            row.store,
            row.relays,
            row.closed.accepted_per_sec,
            row.closed.delivered_per_sec,
            millis(row.open.ack.0),
            millis(row.open.ack.1),
            "",
            micros_f64(own),
            server,
            micros_f64(total),
        ));
    }
    out
}

/// Runs the sweep; true when no run lost or duplicated a message.
pub async fn run(args: &BenchArgs) -> Result<bool, String> {
    let url = args
        .store
        .clone()
        .ok_or("--relays compares PostgreSQL runs: give the database with --store")?;
    let rate = args.rate.filter(|r| *r > 0.0).unwrap_or(DEFAULT_RATE);
    let mut configurations = vec![("sqlite", 1)];
    configurations.extend(args.relays.iter().map(|&n| ("postgres", n)));
    let mut rows = Vec::new();
    let load_before = load_average();
    for (store, relays) in configurations {
        let mut closed = args.clone();
        closed.relays.clear();
        closed.rate = None;
        closed.store = (store == "postgres").then(|| url.clone());
        let open = BenchArgs {
            rate: Some(rate),
            ..closed.clone()
        };
        let mut reports = Vec::new();
        for (loop_args, name) in [(&closed, "closed loop"), (&open, "open loop")] {
            println!("{store} × {relays}, {name}:");
            if loop_args.store.is_some() {
                reset(&url).await?;
            }
            reports.push(relay_run(loop_args, Path::Dialogue, relays).await?);
        }
        let mut reports = reports.into_iter();
        if let (Some(closed), Some(open)) = (reports.next(), reports.next()) {
            rows.push(Row {
                store,
                relays,
                closed,
                open,
            });
        }
    }
    print!("{}", table(&rows, rate));
    // Other work on the machine takes CPU from the runs: the figures are read against it.
    println!(
        "load average (1, 5, 15 min): {load_before} at the start, {} at the end",
        load_average()
    );
    Ok(rows.iter().all(Row::clean))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn bench_args(line: &[&str]) -> Result<BenchArgs, String> {
        let argv = ["kefu-connector", "bench"].iter().chain(line);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Bench(args) => Ok(args),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn relays_take_a_comma_separated_list_with_a_store() {
        let args =
            bench_args(&["--store", "postgres://u@127.0.0.1/db", "--relays", "1,3"]).unwrap();
        assert_eq!(args.relays, vec![1, 3]);
        assert!(bench_args(&[]).unwrap().relays.is_empty());
        for wrong in [
            &["--relays", "1,3"][..],
            &["--store", "postgres://u@127.0.0.1/db", "--relays", "0"],
            &["--store", "postgres://u@127.0.0.1/db", "--relays", "1,x"],
            &["--store", "postgres://u@127.0.0.1/db", "--relays", "17"],
            &[
                "--store",
                "postgres://u@127.0.0.1/db",
                "--relays",
                "1",
                "--inbound",
            ],
        ] {
            assert!(bench_args(wrong).is_err(), "{wrong:?}");
        }
    }

    fn report(cpu_micros: u64, server_micros: Option<u64>) -> RelayReport {
        RelayReport {
            accepted: 100,
            delivered: 100,
            failed: 0,
            ambiguous: 0,
            lost: 0,
            duplicated: 0,
            accepted_per_sec: 5123.4,
            delivered_per_sec: 4987.6,
            ack: (Duration::from_micros(1500), Duration::from_micros(12_250)),
            end_to_end: (Duration::ZERO, Duration::ZERO),
            cpu: Duration::from_micros(cpu_micros),
            server_cpu: server_micros.map(Duration::from_micros),
        }
    }

    #[test]
    fn the_cpu_of_a_row_adds_the_servers_to_the_processes() {
        let row = Row {
            store: "postgres",
            relays: 3,
            closed: report(120, Some(80)),
            open: report(1, Some(1)),
        };
        assert_eq!(
            row.cpu(),
            (
                Duration::from_micros(120),
                Some(Duration::from_micros(80)),
                Duration::from_micros(200)
            )
        );
        let sqlite = Row {
            store: "sqlite",
            relays: 1,
            closed: report(90, None),
            open: report(1, None),
        };
        assert_eq!(sqlite.cpu().2, Duration::from_micros(90));
        let text = table(&[sqlite, row], 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("at 1000 msg/s"), "{text}");
        assert!(lines[1].starts_with("sqlite"), "{text}");
        assert!(lines[1].ends_with("90.0 +        – =    90.0"), "{text}");
        assert!(
            lines[2].contains(" 3         5123             4988"),
            "{text}"
        );
        assert!(lines[2].contains("1.50 /  12.25 ms"), "{text}");
        assert!(lines[2].ends_with("120.0 +     80.0 =   200.0"), "{text}");
    }

    #[test]
    fn a_row_with_a_lost_or_duplicated_message_is_not_clean() {
        let mut row = Row {
            store: "sqlite",
            relays: 1,
            closed: report(1, None),
            open: report(1, None),
        };
        assert!(row.clean());
        row.open.duplicated = 1;
        assert!(!row.clean());
    }
}
