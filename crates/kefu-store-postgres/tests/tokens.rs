//! The access-token fetch lease across relays on one database: one relay per AppID fetches at a
//! time, until it ends its fetch or its lease runs out on the database's clock.

use std::time::Duration;

use kefu_core::TokenStore as _;
use kefu_store_postgres::testing::fresh_database;
use kefu_store_postgres::{PgConfig, PgStore};

async fn relay(config: &PgConfig, name: &str) -> PgStore {
    let mut config = config.clone();
    config.relay_name = name.into();
    PgStore::open(&config).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_per_appid_fetches_at_a_time() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let one = relay(&db.config, "one").await;
    let two = relay(&db.config, "two").await;

    assert!(one.begin_fetch("wx-a", 60_000).await.unwrap());
    assert!(
        one.begin_fetch("wx-a", 60_000).await.unwrap(),
        "its own lease again"
    );
    assert!(!two.begin_fetch("wx-a", 60_000).await.unwrap(), "taken");
    assert!(
        two.begin_fetch("wx-b", 60_000).await.unwrap(),
        "another AppID"
    );

    two.end_fetch("wx-a").await.unwrap();
    assert!(
        !two.begin_fetch("wx-a", 60_000).await.unwrap(),
        "only the holder ends it"
    );
    one.end_fetch("wx-a").await.unwrap();
    assert!(
        two.begin_fetch("wx-a", 60_000).await.unwrap(),
        "ended: the next may fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_lease_runs_out_for_a_relay_that_never_ends_it() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let gone = relay(&db.config, "gone").await;
    let two = relay(&db.config, "two").await;
    assert!(gone.begin_fetch("wx-a", 200).await.unwrap());
    assert!(!two.begin_fetch("wx-a", 60_000).await.unwrap());
    let mut waited = Duration::ZERO;
    while !two.begin_fetch("wx-a", 60_000).await.unwrap() {
        assert!(waited < Duration::from_secs(10), "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(!gone.begin_fetch("wx-a", 200).await.unwrap(), "taken over");
}
