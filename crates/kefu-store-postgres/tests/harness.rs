//! The harness itself: the cluster of a test binary does not outlive it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kefu_store_postgres::testing::{Cluster, postgres_available};

const CHILD: &str = "KEFU_PG_HARNESS_CHILD";

/// Run by `no_postgres_outlives_its_test_binary` in a child process: starts the binary's
/// shared cluster and prints where it is. Does nothing otherwise.
#[test]
fn child_starts_the_shared_cluster() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let cluster = Cluster::shared().expect("PostgreSQL is installed");
    println!(
        "CLUSTER pid={} dir={}",
        cluster.postmaster_pid().expect("a running postmaster"),
        cluster.dir().display()
    );
}

#[test]
fn no_postgres_outlives_its_test_binary() {
    if !postgres_available() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_starts_the_shared_cluster",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CLUSTER ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no CLUSTER line in {stdout}"));
    let (pid, dir) = line.split_once(' ').unwrap();
    let pid: u32 = pid.strip_prefix("pid=").unwrap().parse().unwrap();
    let dir = PathBuf::from(dir.strip_prefix("dir=").unwrap());
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));

    // The child has exited; its watchdog stops the server and removes the directory. This is a
    // bound on a hang, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (is_postgres(&proc_dir) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !is_postgres(&proc_dir),
        "postgres {pid} outlived its test binary"
    );
    assert!(!dir.exists(), "{} outlived its test binary", dir.display());
}

/// Whether the process is alive and still postgres (not a reused pid, not a zombie).
fn is_postgres(proc_dir: &std::path::Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    stat.contains("(postgres)") && !state.starts_with('Z')
}

#[test]
fn a_dropped_cluster_is_stopped_and_removed() {
    if !postgres_available() {
        return;
    }
    let cluster = Cluster::start(false).unwrap();
    let pid = cluster.postmaster_pid().unwrap();
    let dir = cluster.dir().to_owned();
    drop(cluster);
    assert!(!dir.exists());
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while is_postgres(&proc_dir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !is_postgres(&proc_dir),
        "postgres {pid} outlived its cluster"
    );
}
