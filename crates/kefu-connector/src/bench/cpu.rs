//! CPU time from `/proc`: this process's, and a local PostgreSQL server's (its postmaster and
//! every child), so that the bench can charge each message what the database spent on it too.

use std::time::Duration;

use kefu_store_postgres::PgConfig;
use kefu_store_postgres::tokio_postgres::config::Host;

/// The Linux ABI's USER_HZ: `/proc/<pid>/stat` counts CPU time in hundredths of a second.
const TICKS_PER_SEC: u64 = 100;

/// The fields of one `/proc/<pid>/stat` line that the bench reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    /// The parent's pid.
    ppid: u32,
    /// User plus system time of the process itself, in ticks.
    own: u64,
    /// User plus system time of its children that have exited and been waited for, in ticks.
    reaped: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name in parentheses may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let number = |at: usize| fields.get(at)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: u32::try_from(number(1)?).ok()?,
        own: number(11)? + number(12)?,
        reaped: number(13)? + number(14)?,
    })
}

fn read_stat(pid: &str) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks.saturating_mul(1000 / TICKS_PER_SEC))
}

/// User plus system CPU time of this whole process so far, like `getrusage(RUSAGE_SELF)` (zero
/// where there is no procfs).
pub fn own() -> Duration {
    read_stat("self").map_or(Duration::ZERO, |stat| ticks(stat.own))
}

/// A PostgreSQL server running on this machine, whose CPU time can be read.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    postmaster: u32,
}

impl Server {
    /// The server behind `url`, when it listens on loopback or a unix socket and its
    /// postmaster shows in this machine's `/proc`; `None` otherwise (a remote server's CPU is
    /// not this machine's to read).
    pub async fn find(url: &str) -> Option<Server> {
        let config = PgConfig::new(url).ok()?;
        let local = config
            .url
            .expose()
            .get_hosts()
            .iter()
            .all(|host| match host {
                Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
                Host::Unix(_) => true,
            });
        if !local {
            return None;
        }
        let (client, driver) = super::sweep::session(url).await.ok()?;
        let backend: Option<i32> = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .ok()
            .and_then(|row| row.try_get(0).ok());
        // Read while the session lasts: its backend exits once the client is gone.
        let stat = backend.and_then(|pid| read_stat(&pid.to_string()));
        drop(client);
        let _ = driver.await;
        let postmaster = stat?.ppid;
        let name = std::fs::read_to_string(format!("/proc/{postmaster}/comm")).ok()?;
        (name.trim() == "postgres").then_some(Server { postmaster })
    }

    /// The CPU time the server has spent so far: the postmaster, its live children, and the
    /// children that have exited (which the kernel adds to the postmaster's account as it
    /// reaps them, so that a difference of two readings counts each backend once).
    pub fn cpu(&self) -> Duration {
        let Some(postmaster) = read_stat(&self.postmaster.to_string()) else {
            return Duration::ZERO;
        };
        let children: u64 = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.bytes().all(|b| b.is_ascii_digit()).then_some(name)
            })
            .filter_map(|pid| read_stat(&pid))
            .filter(|stat| stat.ppid == self.postmaster)
            .map(|stat| stat.own + stat.reaped)
            .sum();
        ticks(postmaster.own + postmaster.reaped + children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_from_the_last_parenthesis() {
        let line = "4242 (postgres: a) b) S 4200 4200 4200 0 -1 4194560 900 0 0 0 150 25 7 3 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 4200,
                own: 175,
                reaped: 10
            })
        );
        for bad in [
            "",
            "4242 (x",
            "4242 (x) S 1 2 3",
            "4242 (x) S -1 1 1 0 0 0 0 0 0 0 1 1 1 1",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad}");
        }
    }

    #[test]
    fn ticks_are_hundredths_of_a_second() {
        assert_eq!(ticks(175), Duration::from_millis(1750));
    }
}
