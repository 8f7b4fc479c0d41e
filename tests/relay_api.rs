//! The relay's desk API over a real loopback socket: authentication, validation before storage,
//! and the body limit. The platform here is a dead port, so nothing is ever delivered.

use kefu_connector::config::Config;
use kefu_connector::desk::Desk;
use kefu_connector::serve::Relay;
use serde_json::json;

const API_KEY: &str = "desk-key-0123456789";

async fn relay(dir: &tempfile::TempDir) -> (Relay, Desk) {
    // A port that refuses connections: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/openapi", dead.local_addr().unwrap());
    drop(dead);
    let outbox = dir.path().join("outbox.sqlite3");
    let env = [
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("KEFU_SERVER_API_KEY", API_KEY.to_owned()),
        ("KEFU_SERVER_MAX_BODY_BYTES", "2048".to_owned()),
        ("KEFU_DIALOGUE_TOKEN", "TOKEN0123456789".to_owned()),
        (
            "KEFU_DIALOGUE_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned(),
        ),
        ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG".to_owned()),
        ("KEFU_DIALOGUE_BASE_URL", dead_url),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "10".to_owned()),
        ("KEFU_OUTBOX_PATH", outbox.display().to_string()),
    ];
    let config = Config::from_settings(&env).unwrap();
    let relay = Relay::start(&config).await.unwrap();
    let desk = Desk::new(format!("http://{}", relay.addr), API_KEY);
    (relay, desk)
}

#[tokio::test]
async fn requests_without_the_right_key_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = relay(&dir).await;
    let body = json!({"openid": "o1", "channel": 7, "msg": "hi"});
    for wrong in [
        desk.with_key("nope"),
        desk.with_key(""),
        desk.with_key(&API_KEY[..18]),
    ] {
        let reply = wrong.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
    }
    assert_eq!(
        desk.with_key("nope")
            .get("/v1/messages/1")
            .await
            .unwrap()
            .status,
        401
    );
    // Health stays open for probes; the metrics, which count the callbacks' refusals, do not.
    let health = desk.with_key("nope").get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok", "store": "sqlite"}));
    assert_eq!(
        desk.with_key("nope").get("/metrics").await.unwrap().status,
        401
    );
    relay.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_refused_with_the_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = relay(&dir).await;

    let malformed = desk
        .post_raw("/v1/messages", "{\"openid\": ")
        .await
        .unwrap();
    assert_eq!(malformed.status, 400, "{}", malformed.text);

    let cases = [
        (
            json!({"channel": 0, "appid": "wx1", "msg": "hi"}),
            "openid",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 0, "msg": "hi"}),
            "appid",
            Some(1008),
        ),
        (
            json!({"openid": "", "channel": 0, "appid": "wx1", "msg": "hi"}),
            "openid",
            Some(1008),
        ),
        (
            json!({"openid": "o1", "channel": 0, "appid": "wx1", "msg": ""}),
            "msg",
            Some(1008),
        ),
        (
            json!({"openid": "o1", "channel": 8, "appid": "wx1", "msg": "hi"}),
            "channel",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 2, "appid": "wx1", "msg": "hi"}),
            "channel",
            Some(2_928_312),
        ),
        (
            json!({"openid": "o1", "channel": "zero", "msg": "hi"}),
            "channel",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 0, "appid": "wx1", "msg": "hi", "colour": 1}),
            "colour",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 0, "appid": "wx1", "msg": {"news": {"articles": [{"title": 1}]}}}),
            "msg",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 0, "appid": "wx1", "msg": "a\u{1}b"}),
            "msg",
            None,
        ),
        (
            json!({"openid": "o1", "channel": 0, "appid": "wx1", "msg": "hi", "event": "waiterDance"}),
            "event",
            None,
        ),
    ];
    for (body, field, platform_code) in cases {
        let reply = desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        let error = &reply.body["error"];
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
        assert!(
            error["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{body}: expected field {field}, got {error}"
        );
        assert_eq!(
            error["platform_code"].as_i64(),
            platform_code,
            "{body}: {error}"
        );
    }

    let too_big = json!({"openid": "o1", "channel": 7, "msg": "x".repeat(4096)});
    assert_eq!(
        desk.post("/v1/messages", &too_big).await.unwrap().status,
        413
    );

    assert_eq!(desk.get("/v1/messages/1").await.unwrap().status, 404);
    let metrics = desk.get("/metrics").await.unwrap().text;
    assert!(metrics.contains("kefu_outbox_pending 0"), "{metrics}");
    relay.stop().await;
}

#[tokio::test]
async fn accepted_message_fails_after_retries_when_the_platform_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = relay(&dir).await;
    let reply = desk
        .post(
            "/v1/messages",
            &json!({"openid": "o1", "channel": 7, "msg": "hi"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.body["id"].as_i64().unwrap();
    let status = loop {
        let status = desk.get(&format!("/v1/messages/{id}")).await.unwrap().body;
        if status["status"] == "failed" {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Never sent, so retried up to the limit, then failed (not ambiguous), for no reason the
    // platform gave.
    assert_eq!(status["attempts"], 3, "{status}");
    assert_eq!(status["account"], "dialogue", "{status}");
    assert_eq!(status["reason"], "unknown", "{status}");
    assert!(
        status["error_message"].as_str().unwrap().len() > 10,
        "{status}"
    );
    assert!(!status.to_string().contains("TOKEN0123456789"), "{status}");

    let unknown = desk
        .post("/v1/messages/999/resend", &json!({}))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let again = desk
        .post(&format!("/v1/messages/{id}/resend"), &json!({}))
        .await
        .unwrap();
    assert_eq!(again.status, 202, "{}", again.text);
    relay.stop().await;
}

/// An account is a configured name: another is 422 naming `account`, before anything is
/// stored; the Dialogue platform has no typing indicator.
#[tokio::test]
async fn accounts_and_typing_are_checked_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = relay(&dir).await;
    let cases = [
        (
            "/v1/messages",
            json!({"account": "shop", "openid": "o1", "msg": "hi"}),
            "account",
        ),
        (
            "/v1/messages",
            json!({"account": ["dialogue"], "openid": "o1", "channel": 7, "msg": "hi"}),
            "account",
        ),
        (
            "/v1/typing",
            json!({"account": "shop", "openid": "o1", "typing": true}),
            "account",
        ),
        (
            "/v1/typing",
            json!({"account": "dialogue", "openid": "o1", "typing": true}),
            "typing",
        ),
        (
            "/v1/typing",
            json!({"account": "dialogue", "openid": "o1"}),
            "typing",
        ),
    ];
    for (path, body, field) in cases {
        let reply = desk.post(path, &body).await.unwrap();
        assert_eq!(reply.status, 422, "{path} {body}: {}", reply.text);
        assert_eq!(
            reply.body["error"]["field"], field,
            "{path} {body}: {}",
            reply.text
        );
    }
    assert_eq!(desk.get("/v1/messages/1").await.unwrap().status, 404);
    // A session of an account that is not configured is not "an unknown user" (404): the desk
    // named the wrong account.
    for path in ["/v1/sessions/o1?account=shop", "/v1/sessions?account=shop"] {
        let reply = desk.get(path).await.unwrap();
        assert_eq!(reply.status, 422, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"]["field"], "account", "{path}");
    }
    // Naming the Dialogue account is the same as naming none.
    let named = json!({"account": "dialogue", "openid": "o1", "channel": 7, "msg": "hi"});
    let reply = desk.post("/v1/messages", &named).await.unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text);
    relay.stop().await;
}

/// 404, 405 and 413 answer in the same JSON shape as every other error, and 413 names the
/// setting to raise; the callbacks keep the answers WeChat reads.
#[tokio::test]
async fn routing_and_body_limit_errors_have_the_api_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, desk) = relay(&dir).await;
    let message = |reply: &kefu_connector::desk::DeskReply| {
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{} {}", reply.status, reply.text))
            .to_owned()
    };

    for path in ["/v1/messages", "/v1/sessions/o1/enter"] {
        let too_big = json!({"openid": "o1", "channel": 7, "msg": "x".repeat(4096)});
        let reply = desk.post(path, &too_big).await.unwrap();
        assert_eq!(reply.status, 413, "{path}: {}", reply.text);
        assert!(
            message(&reply).contains("server.max_body_bytes (2048 bytes)"),
            "{path}: {}",
            reply.text
        );
    }

    for (reply, expected) in [
        (
            desk.get("/v2/messages").await.unwrap(),
            "no route /v2/messages",
        ),
        (
            desk.with_key("nope").get("/nothing/here").await.unwrap(),
            "no route /nothing/here",
        ),
    ] {
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert!(message(&reply).contains(expected), "{}", reply.text);
    }

    let reply = desk.get("/v1/messages").await.unwrap();
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert!(
        message(&reply).contains("GET is not allowed on /v1/messages"),
        "{}",
        reply.text
    );

    // Found by an attack on loopback: a path parameter that is not UTF-8 was answered in axum's
    // plain text.
    let reply = desk
        .post_raw("/v1/sessions/a%ffb/enter", r#"{"channel":0}"#)
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(message(&reply).contains("UTF-8"), "{}", reply.text);

    // A callback's oversized body is still refused, but not in the desk API's shape.
    let reply = desk
        .post_raw(
            "/v1/callbacks/dialogue/0123456789abcdef-callback",
            "x".repeat(4096),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(reply.body.get("error").is_none(), "{}", reply.text);
    relay.stop().await;
}
