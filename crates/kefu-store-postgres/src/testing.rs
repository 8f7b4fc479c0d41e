//! A throwaway PostgreSQL cluster for tests (feature `testing`), from the system's binaries.
//!
//! * **Binaries.** `initdb` and `pg_ctl` are looked for in `KEFU_PG_BIN`, `pg_config --bindir`,
//!   the highest `/usr/lib/postgresql/*/bin` (Debian's place, outside PATH), `/usr/local/bin`,
//!   then PATH ([`find_binaries`]).
//! * **Root.** `initdb` refuses to run as root: as root, the cluster's temporary directory is
//!   handed to the `postgres` user (which Debian's package creates) and every PostgreSQL binary
//!   runs as `runuser -u postgres -- …`. As any other user, they run directly.
//! * **Cluster.** In a temporary directory: the data directory, the log, and the unix socket;
//!   TCP only on 127.0.0.1, on a port the OS chose as free. Trust authentication, except for
//!   the role [`PASSWORD_ROLE`], which logs in over TCP with a password (scram-sha-256).
//! * **One cluster per test binary** ([`Cluster::shared`]), stopped when the binary ends: a
//!   watchdog shell, in its own process group, waits for the test process to exit, then stops
//!   the server (`pg_ctl stop -m immediate`) and removes the directory. A cluster a test starts
//!   for itself ([`Cluster::start`]) is also stopped and removed when dropped.
//! * **One database per test:** [`fresh_database`] clones a template migrated once
//!   (`CREATE DATABASE … TEMPLATE kefu_template`); [`empty_database`] gives one without the
//!   `kefu` schema.
//! * **A store per test:** [`fresh_store`] opens a [`PgStore`](crate::PgStore) on a fresh
//!   database, as the storage traits' conformance suite takes it
//!   (`kefu_store::conformance_suite!(kefu_store_postgres::testing::fresh_store())`).
//! * **Skip or fail.** Without PostgreSQL, both return `None` and the first call prints a loud
//!   line on stderr; with `KEFU_REQUIRE_POSTGRES=1` they panic instead, so that CI cannot pass
//!   without running the tests.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use kefu_core::BoxFuture;
use kefu_store::conformance::Fresh;
use kefu_store::{Fleet, Head, Lane, PendingJob, Store, StoreResult};
use tokio_postgres::{Client, NoTls};

use crate::PgStore;
use crate::config::{PgConfig, RelayId};

/// The role that must log in with a password over TCP (scram-sha-256), for tests that need a
/// secret in the URL; it does not exist until a test creates it
/// (`CREATE ROLE kefu_password LOGIN PASSWORD '…'`).
pub const PASSWORD_ROLE: &str = "kefu_password";

/// The line printed (once) on stderr when PostgreSQL is missing and the tests are skipped.
pub const SKIP_BANNER: &str = "!! PostgreSQL NOT FOUND: the postgres backend tests are SKIPPED (apt-get install postgresql) !!";

/// The template database [`fresh_database`] clones, migrated once per cluster.
const TEMPLATE: &str = "kefu_template";

/// Starting, stopping or using the throwaway cluster failed; the text says what to do.
#[derive(Debug, Clone)]
pub struct HarnessError(String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn err<T>(message: impl Into<String>) -> Result<T, HarnessError> {
    Err(HarnessError(message.into()))
}

/// The directory holding `initdb` and `pg_ctl`, or `None` when PostgreSQL is not installed.
pub fn find_binaries() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("KEFU_PG_BIN").map(PathBuf::from) {
        if has(&dir) {
            return Some(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/local/bin"))
        .chain(std::env::split_paths(&path))
        .find(|dir| has(dir))
}

/// Whether `KEFU_REQUIRE_POSTGRES=1` makes a missing PostgreSQL a failure.
pub fn postgres_required() -> bool {
    std::env::var("KEFU_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == user {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// A throwaway PostgreSQL cluster in a temporary directory, listening on 127.0.0.1.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    next_db: AtomicU32,
    template: OnceLock<Result<(), HarnessError>>,
}

impl Cluster {
    /// The cluster of this test binary, started at the first call, with `fsync=off`; `None`
    /// (after printing [`SKIP_BANNER`] once) when PostgreSQL is not installed.
    ///
    /// # Panics
    /// When PostgreSQL is missing and `KEFU_REQUIRE_POSTGRES=1`, or when it is installed but
    /// the cluster does not start: both are failures, not skips.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                if find_binaries().is_none() {
                    missing();
                    return None;
                }
                match Cluster::start(false) {
                    Ok(cluster) => Some(cluster),
                    Err(e) => panic!("the throwaway PostgreSQL cluster did not start: {e}"),
                }
            })
            .as_ref()
    }

    /// Starts a cluster of its own (for a test that stops or restarts it), stopped and removed
    /// when dropped; `fsync` on for crash tests, off otherwise.
    pub fn start(fsync: bool) -> Result<Cluster, HarnessError> {
        let Some(bin) = find_binaries() else {
            return err(
                "PostgreSQL's initdb and pg_ctl were not found (KEFU_PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin, /usr/local/bin, PATH): install it with apt-get install postgresql",
            );
        };
        let as_postgres = effective_uid() == Some(0);
        let dir = tempfile::Builder::new()
            .prefix("kefu-pg-")
            .tempdir()
            .map_err(|e| HarnessError(format!("creating a temporary directory failed: {e}")))?
            .keep();
        if dir.to_string_lossy().contains('\'') {
            return err(format!(
                "the temporary directory {} has a quote in its name",
                dir.display()
            ));
        }
        if as_postgres {
            let Some((uid, gid)) = user_ids("postgres") else {
                let _ = std::fs::remove_dir_all(&dir);
                return err(
                    "running as root, and there is no `postgres` user to run PostgreSQL as (initdb refuses root): install Debian's postgresql package, which creates it, or run the tests as another user",
                );
            };
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| {
                HarnessError(format!("handing {} to postgres failed: {e}", dir.display()))
            })?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            next_db: AtomicU32::new(0),
            template: OnceLock::new(),
        };
        cluster.watchdog()?;
        cluster.initdb()?;
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start(fsync) {
                Ok(()) => return Ok(cluster),
                Err(e) if cluster.log().contains("could not bind") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError("no free port".into())))
    }

    /// A command running the PostgreSQL binary `name`, as `postgres` when this process is root.
    fn command(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output, HarnessError> {
        let out = cmd
            .output()
            .map_err(|e| HarnessError(format!("{what}: could not run it: {e}")))?;
        if !out.status.success() {
            return err(format!(
                "{what} failed ({}): {}{}\n-- server log --\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        Ok(out)
    }

    /// Stops the server and removes the directory once this process has exited, whatever way.
    fn watchdog(&self) -> Result<(), HarnessError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let run_as = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {run_as}'{pg_ctl}' stop -D '{data}' -m immediate -w >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError(format!("starting the cluster's watchdog failed: {e}")))?;
        Ok(())
    }

    fn initdb(&self) -> Result<(), HarnessError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"]);
        self.run(cmd, "initdb")?;
        // The password role logs in with a password over TCP; everyone else is trusted.
        let hba = self.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba)
            .map_err(|e| HarnessError(format!("reading pg_hba.conf failed: {e}")))?;
        let new = format!(
            "host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\nhost all {PASSWORD_ROLE} ::1/128 scram-sha-256\n{old}"
        );
        std::fs::write(&hba, new)
            .map_err(|e| HarnessError(format!("writing pg_hba.conf failed: {e}")))?;
        Ok(())
    }

    fn pg_ctl_start(&self, fsync: bool) -> Result<(), HarnessError> {
        let options = format!(
            "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.dir.display(),
            if fsync { "on" } else { "off" }
        );
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "120", "-o", &options, "start"])
            .stdout(Stdio::null());
        self.run(cmd, "pg_ctl start").map(|_| ())
    }

    /// The server's log so far (empty if there is none).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The cluster's temporary directory (data, log, unix socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running postmaster, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The superuser's URL of `database` (trust authentication, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A relay's settings for `database`, as the superuser, named `test`.
    pub fn config(&self, database: &str) -> PgConfig {
        let mut config = PgConfig::new(&self.url(database))
            .unwrap_or_else(|e| panic!("the harness's own URL did not parse: {e}"));
        config.relay_name = "test".into();
        config
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its data.
    pub fn stop(&self) -> Result<(), HarnessError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"]);
        self.run(cmd, "pg_ctl stop").map(|_| ())
    }

    /// Starts the server again on the same port after [`stop`](Cluster::stop).
    pub fn start_again(&self, fsync: bool) -> Result<(), HarnessError> {
        self.pg_ctl_start(fsync)
    }

    /// Restarts the server (`pg_ctl restart -m fast`), keeping its settings.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.pg_ctl_restart("fast")
    }

    /// Crashes the server and starts it again (`pg_ctl restart -m immediate`): no checkpoint,
    /// so what it acknowledged comes back only from the WAL's crash recovery.
    pub fn crash_restart(&self) -> Result<(), HarnessError> {
        self.pg_ctl_restart("immediate")
    }

    fn pg_ctl_restart(&self, mode: &str) -> Result<(), HarnessError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-m", mode, "-w", "-t", "120", "restart"])
            .stdout(Stdio::null());
        self.run(cmd, "pg_ctl restart").map(|_| ())
    }

    /// A connection to `database` as the superuser; its connection task is spawned on the
    /// current tokio runtime.
    pub async fn admin(&self, database: &str) -> Result<Client, HarnessError> {
        let (client, connection) = tokio_postgres::connect(&self.url(database), NoTls)
            .await
            .map_err(|e| HarnessError(format!("connecting to {database} failed: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates a new, uniquely named database (a copy of `template`, or an empty one) and
    /// returns its name.
    pub async fn create_database(&self, template: Option<&str>) -> Result<String, HarnessError> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{n}");
        let admin = self.admin("postgres").await?;
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name} TEMPLATE template0"),
        };
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| HarnessError(format!("{sql} failed: {e}")))?;
        Ok(name)
    }

    /// Creates and migrates the template once (on a thread of its own, so that it can be
    /// called from any runtime).
    fn ensure_template(&self) -> Result<(), HarnessError> {
        self.template
            .get_or_init(|| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| HarnessError(format!("a runtime: {e}")))?;
                        rt.block_on(async {
                            let admin = self.admin("postgres").await?;
                            admin
                                .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                                .await
                                .map_err(|e| HarnessError(format!("creating the template: {e}")))?;
                            let mut client = self.admin(TEMPLATE).await?;
                            crate::schema::migrate(&mut client, "harness")
                                .await
                                .map_err(|e| {
                                    HarnessError(format!("migrating the template: {e}"))
                                })?;
                            Ok(())
                        })
                    })
                    .join()
                    .unwrap_or_else(|_| err("creating the template panicked"))
                })
            })
            .clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 that the OS just found free.
fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError(format!("binding 127.0.0.1:0 failed: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError(format!("reading the bound port failed: {e}")))
}

/// PostgreSQL is missing: fail under `KEFU_REQUIRE_POSTGRES=1`, else say so loudly, once.
fn missing() {
    if postgres_required() {
        panic!(
            "KEFU_REQUIRE_POSTGRES=1 but PostgreSQL's initdb and pg_ctl were not found: install it (apt-get install postgresql) or set KEFU_PG_BIN"
        );
    }
    static BANNER: std::sync::Once = std::sync::Once::new();
    BANNER.call_once(|| {
        // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{SKIP_BANNER}");
    });
}

/// Whether PostgreSQL is installed, for a test that starts a [`Cluster`] of its own: `false`
/// after printing [`SKIP_BANNER`] (once per binary) when it is not.
///
/// # Panics
/// When it is not installed and `KEFU_REQUIRE_POSTGRES=1`.
pub fn postgres_available() -> bool {
    if find_binaries().is_some() {
        return true;
    }
    missing();
    false
}

/// A database of its own for one test, on the binary's shared cluster.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// A relay's settings for it (superuser, relay name `test`).
    pub config: PgConfig,
    /// The cluster it lives on.
    pub cluster: &'static Cluster,
}

impl TestDb {
    /// A new relay id for this database's tests.
    pub fn relay(&self) -> RelayId {
        RelayId::generate(&self.config.relay_name)
    }

    /// A superuser connection to the database.
    pub async fn admin(&self) -> Result<Client, HarnessError> {
        self.cluster.admin(&self.name).await
    }

    /// Waits until no session of `relay` is left on the server (a dropped store's connections
    /// close a moment after it is dropped, as a killed process's do), polling
    /// `pg_stat_activity` every 20 ms for at most 30 s.
    ///
    /// Errors: the query failed, or a session was still there after 30 s.
    pub async fn sessions_ended(&self, relay: &RelayId) -> Result<(), HarnessError> {
        let admin = self.admin().await?;
        for _ in 0..1_500 {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&relay.application_name()],
                )
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| HarnessError(format!("reading pg_stat_activity: {e}")))?;
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(HarnessError(format!("{relay}'s sessions did not end")))
    }

    /// Records `version` in `kefu.schema_migrations` as applied by `a newer relay`, for the
    /// tests of a schema newer than this build knows.
    pub async fn record_version(&self, version: i32) -> Result<(), HarnessError> {
        self.admin()
            .await?
            .execute(
                "INSERT INTO kefu.schema_migrations (version, applied_by) VALUES ($1, 'a newer relay')",
                &[&version],
            )
            .await
            .map(|_| ())
            .map_err(|e| HarnessError(format!("recording schema version {version}: {e}")))
    }
}

/// A new database with the `kefu` schema at the newest version, cloned from a template migrated
/// once; `None` when PostgreSQL is missing (see the [module docs](self)).
///
/// # Panics
/// When PostgreSQL is required or installed but does not work.
pub async fn fresh_database() -> Option<TestDb> {
    let cluster = Cluster::shared()?;
    if let Err(e) = cluster.ensure_template() {
        panic!("{e}");
    }
    Some(database(cluster, Some(TEMPLATE)).await)
}

/// A new database without the `kefu` schema; `None` when PostgreSQL is missing.
///
/// # Panics
/// When PostgreSQL is required or installed but does not work.
pub async fn empty_database() -> Option<TestDb> {
    let cluster = Cluster::shared()?;
    Some(database(cluster, None).await)
}

async fn database(cluster: &'static Cluster, template: Option<&str>) -> TestDb {
    let name = cluster
        .create_database(template)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    TestDb {
        config: cluster.config(&name),
        name,
        cluster,
    }
}

/// How many conversations, and jobs of each, [`claimed_jobs`] reads at most.
const CLAIM_ALL: usize = 10_000;

/// The jobs `store`'s relay finds to deliver, as its claim loop finds them: the conversations
/// with queued jobs that no live relay holds (now held by this one), each read from its head,
/// in order per conversation.
///
/// Errors: the store's.
pub async fn claimed_jobs(store: &PgStore) -> StoreResult<Vec<PendingJob>> {
    let mut pending = Vec::new();
    for key in store.claim_idle(Lane::Jobs, CLAIM_ALL).await? {
        if let Some((_, Head::Jobs(jobs))) = store.head(&key, CLAIM_ALL).await? {
            pending.extend(jobs);
        }
    }
    Ok(pending)
}

/// A [`PgStore`] on a database of its own, as the conformance suite takes it.
pub struct FreshStore {
    store: PgStore,
    config: PgConfig,
}

/// A new, empty store on a fresh database, opened by a relay named `test`; `None` when
/// PostgreSQL is missing (see the [module docs](self)).
///
/// # Panics
/// When PostgreSQL is required or installed but does not work.
pub async fn fresh_store() -> Option<FreshStore> {
    let db = fresh_database().await?;
    match PgStore::open(&db.config).await {
        Ok((store, _)) => Some(FreshStore {
            store,
            config: db.config,
        }),
        Err(e) => panic!("cannot open a store on a fresh database: {e}"),
    }
}

impl Fresh for FreshStore {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    /// Stops this relay as a relay stops (its leases let go, then its lanes done), and opens
    /// the next one under the same name, which recovers what the first left `sending`. The
    /// store is shared, so its open hands out no jobs: the jobs still to deliver are those the
    /// new relay's claim finds, each conversation's read from its head, as the relay reads them.
    fn reopen(self) -> BoxFuture<'static, StoreResult<(Self, Vec<PendingJob>)>> {
        Box::pin(async move {
            let FreshStore { store, config } = self;
            store.stop().await?;
            store.checkpoint().await?;
            drop(store);
            let (store, _) = PgStore::open(&config).await?;
            let pending = claimed_jobs(&store).await?;
            Ok((FreshStore { store, config }, pending))
        })
    }

    fn recorded(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Waits for the lanes, which never fails.
            let _ = self.store.checkpoint().await;
        })
    }
}
