//! The migrator and the connection setup over a real, throwaway PostgreSQL (see
//! `kefu_store_postgres::testing`): from empty, twice, concurrently, a newer schema refused.

use kefu_store_postgres::testing::{empty_database, fresh_database};
use kefu_store_postgres::{
    LATEST, Migrated, PgError, check_schema, connect, connect_one, migrate, schema_version,
};

/// The tables of the latest version.
const TABLES: [&str; 12] = [
    "access_tokens",
    "counters",
    "dedup",
    "events",
    "idempotency_keys",
    "jobs",
    "leases",
    "relays",
    "replay",
    "schema_migrations",
    "sessions",
    "token_fetches",
];

async fn tables(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'kefu' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn versions(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, applied_by FROM kefu.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn migrates_an_empty_database_then_does_nothing_the_second_time() {
    let Some(db) = empty_database().await else {
        return;
    };
    let relay = db.relay();
    let pool = connect(&db.config, &relay).await.unwrap();
    let mut client = pool.get().await.unwrap();
    assert_eq!(schema_version(&client).await.unwrap(), 0);
    assert_eq!(
        check_schema(&client).await,
        Err(PgError::SchemaBehind {
            found: 0,
            known: LATEST
        })
    );

    let first = migrate(&mut client, relay.as_str()).await.unwrap();
    assert_eq!(first, Migrated { from: 0, to: 3 });
    assert_eq!(LATEST, 3);
    assert_eq!(tables(&client).await, TABLES);
    assert_eq!(
        versions(&client).await,
        [1, 2, 3].map(|version| (version, relay.as_str().to_owned()))
    );
    assert_eq!(check_schema(&client).await, Ok(3));
    let counter: i64 = client
        .query_one(
            "SELECT value FROM kefu.counters WHERE name = 'event_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counter, 0);
    let now: i64 = client
        .query_one("SELECT kefu.now_ms()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(now > 1_700_000_000_000, "{now}");

    let second = migrate(&mut client, "another").await.unwrap();
    assert_eq!(second, Migrated { from: 3, to: 3 });
    assert_eq!(tables(&client).await, TABLES);
    assert_eq!(
        versions(&client).await,
        [1, 2, 3].map(|version| (version, relay.as_str().to_owned()))
    );
}

#[tokio::test]
async fn concurrent_migrators_migrate_once() {
    let Some(db) = empty_database().await else {
        return;
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let config = db.config.clone();
        tasks.push(tokio::spawn(async move {
            let relay = kefu_store_postgres::RelayId::generate(&format!("m{i}"));
            let (mut client, connection) = connect_one(&config, &relay).await.unwrap();
            tokio::spawn(connection);
            migrate(&mut client, relay.as_str()).await
        }));
    }
    let mut from_empty = 0;
    for task in tasks {
        let migrated = task.await.unwrap().unwrap();
        assert_eq!(migrated.to, LATEST);
        if migrated.from == 0 {
            from_empty += 1;
        }
    }
    assert_eq!(
        from_empty, 1,
        "exactly one migrator found the database empty"
    );
    let admin = db.admin().await.unwrap();
    assert_eq!(versions(&admin).await.len(), 3);
    assert_eq!(tables(&admin).await, TABLES);
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let admin = db.admin().await.unwrap();
    db.record_version(4).await.unwrap();
    let relay = db.relay();
    let pool = connect(&db.config, &relay).await.unwrap();
    let mut client = pool.get().await.unwrap();
    let e = migrate(&mut client, relay.as_str()).await.unwrap_err();
    assert_eq!(e, PgError::SchemaTooNew { found: 4, known: 3 });
    let text = e.to_string();
    assert!(
        text.contains("version 4, newer than this relay knows (3)"),
        "{text}"
    );
    assert!(
        text.contains("run the relay that wrote it, or a newer one"),
        "{text}"
    );
    assert_eq!(
        check_schema(&client).await,
        Err(PgError::SchemaTooNew { found: 4, known: 3 })
    );
    assert_eq!(versions(&admin).await.len(), 4);
}

#[tokio::test]
async fn a_newer_schema_is_refused_before_anything_is_created() {
    let Some(db) = empty_database().await else {
        return;
    };
    let admin = db.admin().await.unwrap();
    admin
        .batch_execute(
            "CREATE SCHEMA kefu;
             CREATE TABLE kefu.schema_migrations (version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL);
             INSERT INTO kefu.schema_migrations (version, applied_by) VALUES (7, 'the future')",
        )
        .await
        .unwrap();
    let relay = db.relay();
    let (mut client, connection) = connect_one(&db.config, &relay).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(
        migrate(&mut client, relay.as_str()).await,
        Err(PgError::SchemaTooNew { found: 7, known: 3 })
    );
    assert_eq!(tables(&admin).await, ["schema_migrations"]);
}

#[tokio::test]
async fn every_connection_commits_synchronously_and_names_its_relay() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let admin = db.admin().await.unwrap();
    // A server (here: database) default of off must not weaken the relay's acks.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let relay = db.relay();
    let pool = connect(&db.config, &relay).await.unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_commit'), current_setting('application_name'),
                    current_setting('statement_timeout'), current_setting('lock_timeout')",
            &[],
        )
        .await
        .unwrap();
    let settings: (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(settings.0, "on");
    assert_eq!(settings.1, format!("kefu/{relay}"));
    assert_eq!(settings.2, "30s");
    assert_eq!(settings.3, "10s");
    // The server notices a relay's host that died silently: its sessions (the leader's lock)
    // end within about 25 s rather than the kernel's hours.
    let row = client
        .query_one(
            "SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_user_timeout')",
            &[],
        )
        .await
        .unwrap();
    let keepalive: (String, String) = (row.get(0), row.get(1));
    assert_eq!(keepalive, ("10".to_owned(), "25000".to_owned()));

    let (lane, connection) = connect_one(&db.config, &relay).await.unwrap();
    tokio::spawn(connection);
    let sync: String = lane
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sync, "on");
    kefu_store_postgres::ping(&pool).await.unwrap();
}

/// Run by `two_processes_migrate_once` in a child process: migrates the database named by
/// `KEFU_PG_MIGRATE_URL` and prints what it found. Does nothing otherwise.
#[tokio::test]
async fn child_migrates() {
    let Ok(url) = std::env::var("KEFU_PG_MIGRATE_URL") else {
        return;
    };
    let mut config = kefu_store_postgres::PgConfig::new(&url).unwrap();
    config.relay_name = "child".into();
    let relay = kefu_store_postgres::RelayId::generate("child");
    let (mut client, connection) = connect_one(&config, &relay).await.unwrap();
    tokio::spawn(connection);
    let migrated = migrate(&mut client, relay.as_str()).await.unwrap();
    println!("MIGRATED from={} to={}", migrated.from, migrated.to);
}

#[tokio::test]
async fn two_processes_migrate_once() {
    let Some(db) = empty_database().await else {
        return;
    };
    let url = db.cluster.url(&db.name);
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "child_migrates",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("KEFU_PG_MIGRATE_URL", &url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut found = Vec::new();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("MIGRATED ").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no MIGRATED line in {stdout}"));
        found.push(line);
    }
    found.sort();
    assert_eq!(found, ["from=0 to=3", "from=3 to=3"]);
    let admin = db.admin().await.unwrap();
    assert_eq!(versions(&admin).await.len(), 3);
    assert_eq!(tables(&admin).await, TABLES);
}
