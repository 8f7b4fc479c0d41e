//! The relay on PostgreSQL (`[store] url`) end to end over loopback: the desk's messages stored in
//! the database and delivered in order per user, `/healthz` naming the store, a second relay on
//! the same database refused, and what was acknowledged still there after a restart. Runs on a
//! throwaway cluster (`kefu_store_postgres::testing`; skipped loudly where PostgreSQL is missing).

use std::collections::HashMap;
use std::time::Duration;

use kefu_connector::desk::Desk;
use kefu_connector::loopback::Loopback;
use kefu_connector::sandbox::SandboxConfig;
use kefu_connector::serve::Relay;
use kefu_store_postgres::testing::fresh_database;
use serde_json::{Value, json};

const TOKEN: &str = "PGTOKEN0123456789";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const BOT: &str = "Gg8HejYTkUsEIlG";

/// Message `id`'s status once it is final (bounded by a deadline, not a timed assertion).
async fn final_status(desk: &Desk, id: i64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = desk.get(&format!("/v1/messages/{id}")).await.unwrap().body;
        if matches!(
            status["status"].as_str(),
            Some("delivered" | "failed" | "ambiguous")
        ) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} stuck: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_postgres_delivers_in_order_alone_on_its_database_and_keeps_it_all() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let url = db.cluster.url(&db.name);
    let overrides = [
        ("KEFU_STORE_URL", url.clone()),
        ("KEFU_STORE_RELAY_NAME", "pg-e2e".to_owned()),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "5".to_owned()),
    ];
    let Loopback {
        sandbox,
        relay,
        desk,
        config,
        ..
    } = Loopback::start(SandboxConfig::new(TOKEN, KEY, BOT), &overrides)
        .await
        .unwrap();

    let health = desk.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body, json!({"status": "ok", "store": "postgres"}));

    let mut posted: HashMap<String, Vec<String>> = HashMap::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        for user in ["oPGA", "oPGB", "oPGC"] {
            let text = format!("{user} 第{i}条");
            let reply = desk
                .post(
                    "/v1/messages",
                    &json!({"openid": user, "channel": 0, "msg": text}),
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 202, "{}", reply.text);
            ids.push(reply.body["id"].as_i64().unwrap());
            posted.entry(user.to_owned()).or_default().push(text);
        }
    }
    for &id in &ids {
        assert_eq!(final_status(&desk, id).await["status"], "delivered");
    }
    for (user, texts) in &posted {
        let got: Vec<Value> = sandbox
            .messages(Some(user))
            .iter()
            .map(|m| serde_json::to_value(&m.msg).unwrap())
            .collect();
        let want: Vec<Value> = texts.iter().map(|t| json!(t)).collect();
        assert_eq!(got, want, "{user}: order, content or count differs");
    }

    let second = Relay::start(&config)
        .await
        .err()
        .expect("a second relay on the same database is refused");
    assert!(second.is_config(), "{second}");
    assert!(
        second
            .to_string()
            .contains("another relay is running on this database"),
        "{second}"
    );

    relay.stop().await;
    let relay = Relay::start(&config)
        .await
        .expect("the database is free once the relay stopped");
    let desk = Desk::new(
        format!("http://{}", relay.addr),
        config.api_key().unwrap().expose(),
    );
    for &id in &ids {
        let status = desk.get(&format!("/v1/messages/{id}")).await.unwrap().body;
        assert_eq!(status["status"], "delivered", "{status}");
    }
    let delivered: usize = posted
        .keys()
        .map(|user| sandbox.messages(Some(user)).len())
        .sum();
    assert_eq!(
        delivered,
        ids.len(),
        "nothing was sent again after the restart"
    );
    relay.stop().await;
    sandbox.stop().await;
}
