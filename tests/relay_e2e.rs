//! The relay end to end over loopback: desk API → outbox → client → sandbox, with the sandbox
//! running in-process so that the test can read exactly what it decrypted.

use std::collections::HashMap;
use std::time::Duration;

use kefu_connector::desk::Desk;
use kefu_connector::loopback::{Loopback, OA_APPID};
use kefu_connector::sandbox::SandboxConfig;
use kefu_payload::Msg;
use serde_json::{Value, json};

const TOKEN: &str = "E2ETOKEN0123456789";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const BOT: &str = "Gg8HejYTkUsEIlG";

async fn loopback(sandbox: SandboxConfig, overrides: &[(&str, &str)]) -> Loopback {
    let mut settings = vec![("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "5".to_owned())];
    settings.extend(overrides.iter().map(|(k, v)| (*k, v.to_string())));
    Loopback::start(sandbox, &settings).await.unwrap()
}

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
async fn many_users_at_once_each_in_order_and_decrypted_exactly() {
    let setup = loopback(SandboxConfig::new(TOKEN, KEY, BOT), &[]).await;
    let sandbox = &setup.sandbox;

    let users = 12;
    let per_user = 8;
    let mut posted: HashMap<String, Vec<Value>> = HashMap::new();
    let mut tasks = Vec::new();
    for u in 0..users {
        let desk = setup.desk.clone();
        let openid = format!("oUSER{u:02}");
        let msgs: Vec<Value> = (0..per_user)
            .map(|i| match i % 3 {
                0 => json!(format!("第{i}条 <b>&amp;</b> ]]> 😀")),
                1 => json!({"news": {"articles": [{"title": format!("t{i}"), "description": "d", "url": "https://e.com", "picurl": "https://e.com/p.png"}]}}),
                _ => json!({"miniprogrampage": {"title": "订单", "appid": "wx1111111111111111", "pagepath": format!("pages/{i}")}}),
            })
            .collect();
        posted.insert(openid.clone(), msgs.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for msg in msgs {
                let reply = desk
                    .post(
                        "/v1/messages",
                        &json!({"openid": openid, "channel": 0, "msg": msg}),
                    )
                    .await
                    .unwrap();
                assert_eq!(reply.status, 202, "{}", reply.text);
                ids.push(reply.body["id"].as_i64().unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    for id in ids {
        assert_eq!(final_status(&setup.desk, id).await["status"], "delivered");
    }
    for (openid, msgs) in posted {
        let received = sandbox.messages(Some(&openid));
        let expected: Vec<Msg> = msgs
            .iter()
            .map(|m| serde_json::from_value(m.clone()).unwrap())
            .collect();
        let got: Vec<Msg> = received.iter().map(|m| m.msg.clone()).collect();
        assert_eq!(got, expected, "{openid}: order or content differs");
        assert!(
            received
                .iter()
                .all(|m| m.appid.as_deref() == Some(OA_APPID))
        );
    }
    setup.stop().await;
}

#[tokio::test]
async fn handoff_calls_reach_the_platform_in_the_order_it_needs() {
    let setup = loopback(SandboxConfig::new(TOKEN, KEY, BOT), &[]).await;
    let sandbox = &setup.sandbox;
    let desk = &setup.desk;
    let enter = desk
        .post(
            "/v1/sessions/oU1/enter",
            &json!({"channel": 0, "kefuname": "小红", "kefuavatar": "https://e.com/a.png"}),
        )
        .await
        .unwrap();
    assert_eq!(enter.status, 202, "{}", enter.text);
    for id in enter.body["ids"].as_array().unwrap() {
        assert_eq!(
            final_status(desk, id.as_i64().unwrap()).await["status"],
            "delivered"
        );
    }
    assert_eq!(sandbox.user("oU1").kefustate, "on");

    let missing_name = desk
        .post("/v1/sessions/oU1/switch", &json!({"channel": 0}))
        .await
        .unwrap();
    assert_eq!(missing_name.status, 422);
    assert_eq!(missing_name.body["error"]["field"], "kefuname");

    for action in ["evaluate", "quit"] {
        let reply = desk
            .post(
                &format!("/v1/sessions/oU1/{action}"),
                &json!({"channel": 0}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text);
        for id in reply.body["ids"].as_array().unwrap() {
            assert_eq!(
                final_status(desk, id.as_i64().unwrap()).await["status"],
                "delivered"
            );
        }
    }
    let events: Vec<String> = sandbox
        .messages(Some("oU1"))
        .iter()
        .map(|m| m.event.map(|e| e.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(
        events,
        ["waiterEnter", "waiterQualityEvaluate", "waiterQuit"]
    );
    assert_eq!(sandbox.user("oU1").status.as_str(), "complete");
    setup.stop().await;
}

/// Regression (issue 9): a session on channel 7 (a web H5 robot, no Official Account) could
/// never be entered or quit: the kefustate call's appid was always dropped, and every call was
/// 422, even with an `appid`.
#[tokio::test]
async fn a_web_h5_session_is_entered_and_quit_without_showing_the_token() {
    let setup = loopback(SandboxConfig::new(TOKEN, KEY, BOT), &[]).await;
    let desk = &setup.desk;
    for (action, body) in [
        ("enter", json!({"channel": 7, "kefuname": "小红"})),
        ("quit", json!({"channel": 7})),
    ] {
        let reply = desk
            .post(&format!("/v1/sessions/oH5/{action}"), &body)
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{action}: {}", reply.text);
        for id in reply.body["ids"].as_array().unwrap() {
            assert_eq!(
                final_status(desk, id.as_i64().unwrap()).await["status"],
                "delivered"
            );
        }
    }
    assert_eq!(setup.sandbox.user("oH5").status.as_str(), "complete");
    let session = desk.get("/v1/sessions/oH5").await.unwrap();
    assert!(!session.text.contains(TOKEN), "{}", session.text);
    setup.stop().await;
}

#[tokio::test]
async fn a_wrong_token_fails_with_1001_and_is_not_retried() {
    let setup = loopback(
        SandboxConfig::new(TOKEN, KEY, BOT),
        &[("KEFU_DIALOGUE_TOKEN", "NOTTHETOKEN12345")],
    )
    .await;
    let sandbox = &setup.sandbox;
    let reply = setup
        .desk
        .post(
            "/v1/messages",
            &json!({"openid": "o1", "channel": 0, "msg": "hi"}),
        )
        .await
        .unwrap();
    let status = final_status(&setup.desk, reply.body["id"].as_i64().unwrap()).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error_code"], 1001, "{status}");
    assert_eq!(status["attempts"], 1, "{status}");
    assert!(!status.to_string().contains("NOTTHETOKEN12345"), "{status}");
    assert!(sandbox.messages(None).is_empty());
    setup.stop().await;
}

#[tokio::test]
async fn system_busy_is_retried_then_delivered() {
    let mut config = SandboxConfig::new(TOKEN, KEY, BOT);
    config.system_error_rate = 0.5;
    config.seed = Some(7);
    let setup = loopback(config, &[("KEFU_DELIVERY_MAX_ATTEMPTS", "20")]).await;
    let sandbox = &setup.sandbox;
    let mut ids = Vec::new();
    for i in 0..20 {
        let reply = setup
            .desk
            .post(
                "/v1/messages",
                &json!({"openid": "o1", "channel": 0, "msg": format!("m{i}")}),
            )
            .await
            .unwrap();
        ids.push(reply.body["id"].as_i64().unwrap());
    }
    let mut retried = 0;
    for id in ids {
        let status = final_status(&setup.desk, id).await;
        assert_eq!(status["status"], "delivered", "{status}");
        if status["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(
        retried > 0,
        "with a 50% error rate some message needed a retry"
    );
    let texts: Vec<Msg> = sandbox.messages(None).into_iter().map(|m| m.msg).collect();
    let expected: Vec<Msg> = (0..20).map(|i| Msg::text(format!("m{i}"))).collect();
    assert_eq!(texts, expected, "each delivered exactly once, in order");
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    assert!(
        metrics.contains("outcome=\"retry\",errcode=\"-1\""),
        "{metrics}"
    );
    setup.stop().await;
}

#[tokio::test]
async fn dropped_answers_are_ambiguous_and_never_sent_twice() {
    let mut config = SandboxConfig::new(TOKEN, KEY, BOT);
    config.drop_rate = 0.3;
    config.seed = Some(11);
    let setup = loopback(config, &[]).await;
    let sandbox = &setup.sandbox;
    let mut ids = Vec::new();
    for i in 0..30 {
        let reply = setup
            .desk
            .post(
                "/v1/messages",
                &json!({"openid": format!("o{}", i % 3), "channel": 0, "msg": format!("m{i}")}),
            )
            .await
            .unwrap();
        ids.push(reply.body["id"].as_i64().unwrap());
    }
    let mut ambiguous = 0;
    for id in &ids {
        let status = final_status(&setup.desk, *id).await;
        match status["status"].as_str() {
            Some("delivered") => {}
            Some("ambiguous") => {
                ambiguous += 1;
                assert_eq!(
                    status["attempts"], 1,
                    "ambiguous sends are never retried: {status}"
                );
            }
            other => panic!("unexpected {other:?}: {status}"),
        }
    }
    assert!(ambiguous > 0, "a 30% drop rate left some message ambiguous");
    let mut texts: Vec<String> = sandbox
        .messages(None)
        .into_iter()
        .map(|m| m.msg.to_wire())
        .collect();
    let received = texts.len();
    texts.sort();
    texts.dedup();
    assert_eq!(
        texts.len(),
        received,
        "no message reached the platform twice"
    );
    assert_eq!(received, ids.len() - ambiguous);

    // The desk decides to send an ambiguous one again; a delivered one cannot be.
    let mut resent = None;
    let mut refused = false;
    for id in &ids {
        let status = setup
            .desk
            .get(&format!("/v1/messages/{id}"))
            .await
            .unwrap()
            .body;
        let wanted = match status["status"].as_str() {
            Some("ambiguous") if resent.is_none() => 202,
            Some("delivered") if !refused => 409,
            _ => continue,
        };
        let again = setup
            .desk
            .post(&format!("/v1/messages/{id}/resend"), &json!({}))
            .await
            .unwrap();
        assert_eq!(again.status, wanted, "{}", again.text);
        if wanted == 202 {
            resent = Some(*id);
        } else {
            refused = true;
        }
    }
    let resent = resent.unwrap();
    let status = final_status(&setup.desk, resent).await;
    assert!(
        matches!(status["status"].as_str(), Some("delivered" | "ambiguous")),
        "{status}"
    );
    setup.stop().await;
}
