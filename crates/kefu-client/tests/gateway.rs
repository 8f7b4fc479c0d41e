//! The company-gateway provider end to end over loopback against a scripted fake (protocols.md
//! §8): success needs `code` 200 and `data.errcode` 0, WeChat's codes are classified, and the
//! `system` header is sent.

mod fake_vendor;

use std::time::Duration;

use fake_vendor::*;
use kefu_client::gateway::{GatewayProvider, SEND_PATH};
use kefu_core::{Class, Provider, Reason, RetryDecision, RetryPolicy, StopReason};
use serde_json::json;

fn provider(fake: &Fake) -> GatewayProvider {
    GatewayProvider::builder("members")
        .base_url(&fake.base_url)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn answer(code: serde_json::Value, errcode: serde_json::Value, errmsg: &str) -> Reply {
    Reply::Json(
        200,
        json!({"code": code, "msg": "操作成功", "data": {"errcode": errcode, "errmsg": errmsg}})
            .to_string(),
    )
}

fn ok() -> Reply {
    answer(json!(200), json!(0), "ok")
}

#[tokio::test]
async fn a_text_goes_out_with_the_system_header() {
    let fake = Fake::start(ok()).await;
    let provider = provider(&fake);
    let job = jobs(&provider, 7, json!({"openid": "oUSER", "msg": "客服消息"})).remove(0);
    let attempt = provider.send(&job).await;
    assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
    let seen = fake.seen();
    assert_eq!(seen[0].target, SEND_PATH);
    assert_eq!(seen[0].header("system"), Some("NEW_MEMBER"));
    assert_eq!(
        seen[0].body,
        r#"{"msg":"客服消息","openId":"oUSER"}"#.as_bytes()
    );

    let other = GatewayProvider::builder("members")
        .base_url(&fake.base_url)
        .system("CRM")
        .build()
        .unwrap();
    assert_eq!(other.send(&job).await.class, Class::Success);
    assert_eq!(fake.seen()[1].header("system"), Some("CRM"));
}

#[tokio::test]
async fn code_200_with_a_wechat_refusal_is_a_failure() {
    let fake = Fake::start(answer(
        json!(200),
        json!(40003),
        "invalid openid rid: 66f3bd4d-25a283a9-73c6a452",
    ))
    .await;
    let provider = provider(&fake);
    let job = jobs(&provider, 1, json!({"openid": "oNOBODY", "msg": "hi"})).remove(0);
    let attempt = provider.send(&job).await;
    assert_eq!(fake.seen().len(), 1);
    // The outer code alone says the call succeeded: a client checking only it would be wrong.
    let only_code =
        kefu_client::kefu_payload::gateway::classify(200, br#"{"code":200,"msg":"ok","data":{}}"#);
    assert_ne!(
        only_code.class,
        Class::Success,
        "a code without data.errcode is no success"
    );
    assert_eq!(
        attempt.class,
        Class::Terminal(Reason::Recipient),
        "{}",
        attempt.message
    );
    assert_eq!(attempt.code, Some(40003));
    assert_eq!(attempt.rid.as_deref(), Some("66f3bd4d-25a283a9-73c6a452"));
}

#[tokio::test]
async fn every_answer_class() {
    let fake = Fake::start(ok()).await;
    let provider = provider(&fake);
    let job = jobs(&provider, 1, json!({"openid": "oUSER", "msg": "hi"})).remove(0);
    let cases = [
        (answer(json!("200"), json!("0"), "ok"), Class::Success),
        (
            answer(json!(200), json!("45015"), "out of time"),
            Class::Terminal(Reason::WindowClosed),
        ),
        (
            answer(json!(200), json!(40001), "invalid credential"),
            Class::RefreshReplay,
        ),
        (
            Reply::Json(200, r#"{"code":402,"msg":"无权限"}"#.into()),
            Class::Terminal(Reason::Unknown),
        ),
        (
            Reply::Json(500, r#"{"code":500,"msg":"error"}"#.into()),
            Class::Ambiguous,
        ),
        (
            Reply::Json(200, r#"{"code":200,"msg":"ok"}"#.into()),
            Class::Ambiguous,
        ),
        (Reply::Stall, Class::Ambiguous),
    ];
    for (reply, want) in cases {
        fake.script(reply.clone());
        let attempt = provider.send(&job).await;
        assert_eq!(attempt.class, want, "{reply:?}: {}", attempt.message);
    }
    let refused = GatewayProvider::builder("members")
        .base_url(closed_base_url().await)
        .build()
        .unwrap();
    assert_eq!(refused.send(&job).await.class, Class::Transient);
}

#[tokio::test]
async fn the_gateways_token_trouble_replays_once_then_is_config() {
    let fake = Fake::start(answer(json!(200), json!(42001), "access_token expired")).await;
    let provider = provider(&fake);
    let job = jobs(&provider, 1, json!({"openid": "oUSER", "msg": "hi"})).remove(0);
    let policy = RetryPolicy::default();
    let mut replays = 0;
    let decision = loop {
        assert!(fake.seen().len() < 5, "a loop");
        let attempt = provider.send(&job).await;
        match policy.decide(attempt.class, 1, replays, Duration::from_millis(1), 0.5) {
            RetryDecision::ReplayNow => replays += 1,
            other => break other,
        }
    };
    assert_eq!(decision, RetryDecision::Stop(StopReason::ReplayExhausted));
    assert_eq!(
        StopReason::ReplayExhausted.failure_reason(),
        Some(Reason::Config)
    );
    assert_eq!(fake.seen().len(), 2, "one call and one replay");
}
