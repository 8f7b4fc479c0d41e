//! `kefu-connector migrate` as operators run it, against a throwaway PostgreSQL cluster (see
//! `kefu_store_postgres::testing`; skipped loudly where PostgreSQL is not installed) and against
//! a SQLite file; and the relay's start-up checks on PostgreSQL (`kefu_connector::postgres`).

use std::path::Path;
use std::process::{Command, Stdio};

use kefu_connector::postgres::open;
use kefu_connector::store::Fleet as _;
use kefu_connector::store::sqlite::SqliteStore;
use kefu_connector::store::sqlite::schema::LATEST as SQLITE_LATEST;
use kefu_store_postgres::testing::{PASSWORD_ROLE, empty_database, fresh_database};
use kefu_store_postgres::{LATEST, MigrateMode, PgError, schema_version};

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kefu-connector migrate ARGS` in `dir` with only `env` set (no config file there, no
/// platform credentials).
async fn migrate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    binary(dir, &[&["migrate"], args].concat(), env).await
}

/// Runs the binary with `args` in `dir`, with only `env` set.
async fn binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("an exit status, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Both `migrate` and `migrate --check` exit 2 with `stderr`.
async fn both_refuse(dir: &Path, env: &[(&str, &str)], stderr: &str) {
    for args in [&[][..], &["--check"]] {
        let run = migrate(dir, args, env).await;
        assert_eq!((run.code, run.stderr.as_str()), (2, stderr), "{args:?}");
    }
}

/// `kefu.schema_migrations` in one line: `1 by <applied_by>, …`.
async fn applied(client: &kefu_store_postgres::tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT string_agg(version || ' by ' || applied_by, ', ' ORDER BY version) FROM kefu.schema_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_postgres_database_is_migrated_once_and_checked() {
    let Some(db) = empty_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = db.cluster.url(&db.name);
    let env = [
        ("KEFU_STORE_URL", url.as_str()),
        ("KEFU_STORE_RELAY_NAME", "ops"),
    ];

    let due = migrate(dir.path(), &["--check"], &env).await;
    assert_eq!(due.code, 1, "{due:?}");
    assert_eq!(
        due.stdout,
        format!(
            "postgres kefu schema: version 0, this relay needs {LATEST}: run kefu-connector migrate\n"
        )
    );
    let admin = db.admin().await.unwrap();
    let exists: bool = admin
        .query_one("SELECT to_regnamespace('kefu') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "--check created nothing");

    let first = migrate(dir.path(), &[], &env).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(
        first.stdout,
        format!("postgres kefu schema: version {LATEST} (was 0)\n")
    );
    let first_applied = applied(&admin).await;
    let versions: Vec<&str> = first_applied.split(", ").collect();
    assert_eq!(
        versions.len(),
        usize::try_from(LATEST).unwrap(),
        "{first_applied}"
    );
    for (version, applied) in (1..).zip(&versions) {
        assert!(
            applied.starts_with(&format!("{version} by ops-")),
            "{first_applied}"
        );
    }

    let again = migrate(dir.path(), &[], &env).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout,
        format!("postgres kefu schema: version {LATEST} (was {LATEST})\n")
    );
    let current = migrate(dir.path(), &["--check"], &env).await;
    assert_eq!(current.code, 0, "{current:?}");
    assert_eq!(
        current.stdout,
        format!("postgres kefu schema: version {LATEST}, current\n")
    );
    assert_eq!(applied(&admin).await, first_applied);
}

#[tokio::test]
async fn a_newer_postgres_schema_is_refused_with_what_to_do() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let admin = db.admin().await.unwrap();
    let newer = LATEST + 1;
    db.record_version(newer).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = db.cluster.url(&db.name);
    let env = [("KEFU_STORE_URL", url.as_str())];
    both_refuse(
        dir.path(),
        &env,
        &format!(
            "error: the database's kefu schema is at version {newer}, newer than this relay knows ({LATEST}); run the relay that wrote it, or a newer one\n(the database: {url})\n"
        ),
    )
    .await;
    assert!(
        applied(&admin).await.ends_with("by a newer relay"),
        "nothing was changed"
    );
}

#[tokio::test]
async fn postgres_failures_never_show_the_password() {
    let Some(db) = empty_database().await else {
        return;
    };
    let admin = db.cluster.admin("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'Right-pw-4711';
             ALTER DATABASE {} OWNER TO {PASSWORD_ROLE}",
            db.name
        ))
        .await
        .unwrap();
    let port = db.cluster.port();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    for (url, code) in [
        (
            format!(
                "postgres://{PASSWORD_ROLE}:Wrong-pw-4711@127.0.0.1:{port}/{}",
                db.name
            ),
            1,
        ),
        (
            format!("postgresql://{PASSWORD_ROLE}:Wrong-pw-4711@127.0.0.1:{closed_port}/kefu"),
            1,
        ),
        (
            format!("mysql://{PASSWORD_ROLE}:Wrong-pw-4711@127.0.0.1:{port}/kefu"),
            2,
        ),
        (
            format!(
                "postgres://{PASSWORD_ROLE}:Wrong-pw-4711@127.0.0.1:{port}/kefu?sslmode=require"
            ),
            2,
        ),
    ] {
        let run = migrate(dir.path(), &[], &[("KEFU_STORE_URL", &url)]).await;
        assert_eq!(run.code, code, "{run:?}");
        assert!(run.stderr.starts_with("error: "), "{run:?}");
        if code == 1 {
            assert!(
                run.stderr.contains(&format!(
                    "(the database: postgres://{PASSWORD_ROLE}:***@127.0.0.1:"
                )),
                "{run:?}"
            );
        }
        assert!(!run.stderr.contains("Wrong-pw"), "{run:?}");
        assert!(!run.stdout.contains("Wrong-pw"), "{run:?}");
    }
    let url = format!(
        "postgres://{PASSWORD_ROLE}:Right-pw-4711@127.0.0.1:{port}/{}",
        db.name
    );
    let run = migrate(dir.path(), &[], &[("KEFU_STORE_URL", &url)]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("postgres kefu schema: version {LATEST} (was 0)\n")
    );
}

#[tokio::test]
async fn a_sqlite_file_is_migrated_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = path.to_str().unwrap();
    // A config file that names the file; no platform credentials anywhere.
    let config = dir.path().join("migrate.toml");
    std::fs::write(&config, format!("[outbox]\npath = {outbox:?}\n")).unwrap();
    let args = ["--config", config.to_str().unwrap()];

    let due = migrate(dir.path(), &[&args[..], &["--check"]].concat(), &[]).await;
    assert_eq!(due.code, 1, "{due:?}");
    assert_eq!(
        due.stdout,
        format!(
            "sqlite outbox schema: version 0, this relay needs {SQLITE_LATEST}: run kefu-connector migrate\n"
        )
    );
    assert!(!path.exists(), "--check created nothing");

    let first = migrate(dir.path(), &args, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(
        first.stdout,
        format!("sqlite outbox schema: version {SQLITE_LATEST} (was 0)\n")
    );
    let again = migrate(dir.path(), &args, &[]).await;
    assert_eq!(
        again.stdout,
        format!("sqlite outbox schema: version {SQLITE_LATEST} (was {SQLITE_LATEST})\n")
    );
    let current = migrate(dir.path(), &[&args[..], &["--check"]].concat(), &[]).await;
    assert_eq!(current.code, 0, "{current:?}");
    assert_eq!(
        current.stdout,
        format!("sqlite outbox schema: version {SQLITE_LATEST}, current\n")
    );

    // The variable wins over the file, as for serve.
    let other = dir.path().join("other.sqlite3");
    let run = migrate(
        dir.path(),
        &args,
        &[("KEFU_OUTBOX_PATH", other.to_str().unwrap())],
    )
    .await;
    assert_eq!(
        run.stdout,
        format!("sqlite outbox schema: version {SQLITE_LATEST} (was 0)\n")
    );
    assert!(other.exists());
}

#[tokio::test]
async fn a_running_relay_keeps_the_sqlite_migration_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let env = [("KEFU_OUTBOX_PATH", path.to_str().unwrap())];
    // This test process holds the file as a running relay does.
    let (store, _pending) = SqliteStore::open(&path).unwrap();
    let refused = migrate(dir.path(), &[], &env).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("is in use by another process"),
        "{refused:?}"
    );
    // A check only reads, which the relay allows.
    let checked = migrate(dir.path(), &["--check"], &env).await;
    assert_eq!(checked.code, 0, "{checked:?}");
    drop(store);
}

#[tokio::test]
async fn a_newer_sqlite_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let env = [("KEFU_OUTBOX_PATH", path.to_str().unwrap())];
    assert_eq!(migrate(dir.path(), &[], &env).await.code, 0);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 9)
        .unwrap();
    both_refuse(
        dir.path(),
        &env,
        &format!(
            "error: the outbox file {} is at schema version 9, newer than this relay knows ({SQLITE_LATEST}); run the relay that wrote it, or a newer one\n",
            path.display()
        ),
    )
    .await;
}

#[tokio::test]
async fn configuration_errors_exit_2_and_help_explains() {
    let dir = tempfile::tempdir().unwrap();
    let run = migrate(dir.path(), &["--config", "missing.toml"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("missing.toml does not exist"),
        "{run:?}"
    );
    let run = migrate(dir.path(), &[], &[("KEFU_STORE_POOL_SIZE", "0")]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("store.pool_size"), "{run:?}");

    let help = migrate(dir.path(), &["--help"], &[]).await;
    assert_eq!(help.code, 0, "{help:?}");
    for text in [
        "--check",
        "KEFU_STORE_URL",
        "outbox.path",
        "Exit status",
        "newer than this build",
    ] {
        assert!(help.stdout.contains(text), "{text}: {}", help.stdout);
    }
}

/// `serve`'s start on PostgreSQL: the schema brought up to date (auto) or checked (manual), the
/// server's durability settings warned about, and a second relay joining the first on the
/// database.
#[tokio::test]
async fn the_start_up_path_migrates_or_refuses_and_warns() {
    let Some(db) = empty_database().await else {
        return;
    };
    let mut config = db.config.clone();
    config.migrate = MigrateMode::Manual;
    let refused = open(&config)
        .await
        .err()
        .expect("an older schema is refused");
    assert_eq!(
        refused,
        PgError::SchemaBehind {
            found: 0,
            known: LATEST
        }
    );
    assert!(
        refused.to_string().contains("run `kefu-connector migrate`"),
        "{refused}"
    );

    config.migrate = MigrateMode::Auto;
    let opened = open(&config).await.unwrap();
    assert!(opened.store.relay().as_str().starts_with("test-"));
    // The test cluster runs without fsync.
    assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
    assert!(opened.warnings[0].contains("fsync=off"));
    let second = open(&config).await.expect("relays share a database");
    assert_ne!(second.store.relay(), opened.store.relay());
    drop(second);
    drop(opened);

    let admin = db.admin().await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    config.migrate = MigrateMode::Manual;
    let opened = open(&config)
        .await
        .expect("a relay starts on the schema its predecessors left");
    assert_eq!(schema_version(&admin).await.unwrap(), LATEST);
    assert_eq!(opened.warnings.len(), 2, "{:?}", opened.warnings);
    assert!(
        opened.warnings[1].contains("default synchronous_commit is off"),
        "{:?}",
        opened.warnings
    );
    drop(opened);

    db.record_version(LATEST + 1).await.unwrap();
    for mode in [MigrateMode::Auto, MigrateMode::Manual] {
        config.migrate = mode;
        let refused = open(&config)
            .await
            .err()
            .expect("a newer schema is refused");
        assert_eq!(
            refused,
            PgError::SchemaTooNew {
                found: LATEST + 1,
                known: LATEST
            }
        );
    }
}

/// `serve` on a database it cannot reach fails (exit 1: the machine, not the configuration)
/// without the URL's password, and creates no SQLite file instead.
#[tokio::test]
async fn serve_on_an_unreachable_database_fails_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let run = binary(
        dir.path(),
        &["serve"],
        &[
            ("KEFU_SERVER_API_KEY", "0123456789abcdef-desk"),
            ("KEFU_SERVER_LISTEN", "127.0.0.1:0"),
            ("KEFU_DIALOGUE_TOKEN", "tokentokentoken"),
            (
                "KEFU_DIALOGUE_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
            (
                "KEFU_STORE_URL",
                "postgres://kefu:Wrong-pw-4711@127.0.0.1:1/kefu",
            ),
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("postgres store unavailable"), "{run:?}");
    assert!(!run.stderr.contains("Wrong-pw"), "{run:?}");
    assert!(!dir.path().join("kefu-outbox.sqlite3").exists());
}

/// After a database restart, the relay's listener connects again by itself and the relay leads
/// the fleet's periodic work again (on a cluster of this test's own, since it is restarted).
#[tokio::test]
async fn the_relay_leads_again_after_a_database_restart() {
    if !kefu_store_postgres::testing::postgres_available() {
        return;
    }
    let cluster =
        tokio::task::spawn_blocking(|| kefu_store_postgres::testing::Cluster::start(false))
            .await
            .unwrap()
            .unwrap();
    let admin = cluster.admin("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE relay").await.unwrap();
    drop(admin);
    let mut config = cluster.config("relay");
    config.connect_timeout_ms = 1_000;
    let opened = open(&config).await.unwrap();

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().unwrap();
        cluster
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(admin) = cluster.admin("relay").await {
            let held: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1801807477 AND objid = 2 AND granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if held == 1 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never led again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let second = open(&config).await.expect("relays share a database");
    assert!(!second.store.is_leader(), "one leader at a time");
    drop(second);
    drop(opened);
}
