//! The pool over a database that stops and restarts, and the password kept out of every error,
//! on a cluster of this test's own (`Cluster::start`), since it is stopped and restarted.

use kefu_store_postgres::testing::{Cluster, PASSWORD_ROLE, postgres_available};
use kefu_store_postgres::{PgConfig, PgError, RelayId, connect, connect_one, ping};

const PASSWORD: &str = "pw-Zq81xK3vVh";

/// A cluster of its own with the password role, or `None` (skipped) without PostgreSQL.
async fn cluster() -> Option<Cluster> {
    if !postgres_available() {
        return None;
    }
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(false))
        .await
        .unwrap()
        .unwrap();
    let admin = cluster.admin("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE kefu OWNER {PASSWORD_ROLE}"))
        .await
        .unwrap();
    Some(cluster)
}

fn config(cluster: &Cluster, password: &str) -> PgConfig {
    let mut config = PgConfig::new(&format!(
        "postgres://{PASSWORD_ROLE}:{password}@127.0.0.1:{}/kefu",
        cluster.port()
    ))
    .unwrap();
    config.relay_name = "restart".into();
    config.connect_timeout_ms = 1_000;
    config
}

fn assert_secret_free(e: &PgError) {
    let text = format!("{e} | {e:?}");
    eprintln!("error: {e}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("Zq81"), "{text}");
}

async fn answer(pool: &kefu_store_postgres::Pool) -> Result<i32, PgError> {
    let client = pool.get().await?;
    Ok(client.query_one("SELECT 41 + 1", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_survives_a_restart_and_fails_typed_while_the_database_is_down() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    let config = config(&cluster, PASSWORD);
    assert!(!format!("{config:?}").contains(PASSWORD));
    let relay = RelayId::generate("restart");
    let pool = connect(&config, &relay).await.unwrap();
    assert_eq!(answer(&pool).await, Ok(42));

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    // The connections the restart closed are not handed out again: the next query works.
    assert_eq!(answer(&pool).await, Ok(42));

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let e = answer(&pool).await.unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
        assert_secret_free(&e);
        let e = ping(&pool).await.unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
        assert_secret_free(&e);
    }
    let e = connect(&config, &relay).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert_secret_free(&e);
    let e = connect_one(&config, &relay).await.map(|_| ()).unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert_secret_free(&e);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again(false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer(&pool).await, Ok(42));
    ping(&pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_not_in_the_error() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let relay = RelayId::generate("pw");
    // The right password works.
    let pool = connect(&config(&cluster, PASSWORD), &relay).await.unwrap();
    assert_eq!(answer(&pool).await, Ok(42));
    // A wrong one: a typed error that names neither password.
    let wrong = format!("{PASSWORD}-wrong");
    let e = connect(&config(&cluster, &wrong), &relay)
        .await
        .unwrap_err();
    let text = format!("{e} | {e:?}");
    assert!(!text.contains("Zq81"), "{text}");
    assert!(
        matches!(e, PgError::Database { ref code, .. } if code == "28P01"),
        "{text}"
    );
    let e = connect_one(&config(&cluster, &wrong), &relay)
        .await
        .map(|_| ())
        .unwrap_err();
    let text = format!("{e} | {e:?}");
    assert!(!text.contains("Zq81"), "{text}");
}
