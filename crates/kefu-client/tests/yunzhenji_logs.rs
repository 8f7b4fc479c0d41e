//! No log line, at any level down to trace, and no attempt's message carries yunzhenji's
//! access token, which travels in the request body (protocols.md §9.4). Alone in its own test
//! binary, with a global subscriber, so that no other test races the callsite registration.

mod fake_vendor;
mod log_capture;

use std::time::Duration;

use fake_vendor::*;
use kefu_client::yunzhenji::YunzhenjiProvider;
use kefu_core::{Class, Provider};
use log_capture::Capture;
use serde_json::json;

const TOKEN: &str = "YzjLogSecretToken-7f3a9c";

#[tokio::test]
async fn no_log_line_carries_the_access_token() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let fake = Fake::start(Reply::Json(
        200,
        r#"{"errcode":0,"data":[{"idx":0,"api_send_svrid":"S0"}]}"#.into(),
    ))
    .await;
    let provider = YunzhenjiProvider::builder("shop", "APP1", TOKEN, "wxid_account")
        .base_url(&fake.base_url)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let jobs = jobs(&provider, 1, json!({"target_wxid": "c", "msg": "您好"}));
    // An acceptance, a refusal echoing the body, a reset, a stall, a 5xx echoing the token.
    fake.script(Reply::Json(
        200,
        r#"{"errcode":0,"data":[{"idx":0}]}"#.into(),
    ));
    fake.script(Reply::Json(
        200,
        format!(r#"{{"errcode":1,"message":"bad access_token {TOKEN} in {{\"access_token\":\"{TOKEN}\"}}"}}"#),
    ));
    fake.script(Reply::Close);
    fake.script(Reply::Stall);
    fake.script(Reply::Json(503, format!("upstream said {TOKEN}")));
    let mut attempts = Vec::new();
    for _ in 0..5 {
        attempts.extend(provider.send_batch(&jobs).await);
    }
    let unreachable = YunzhenjiProvider::builder("shop", "APP1", TOKEN, "wxid_account")
        .base_url(closed_base_url().await)
        .build()
        .unwrap();
    attempts.extend(unreachable.send_batch(&jobs).await);
    assert_eq!(
        attempts.iter().map(|a| a.class).collect::<Vec<_>>(),
        [
            Class::Success,
            Class::Terminal(kefu_core::Reason::Unknown),
            Class::Ambiguous,
            Class::Ambiguous,
            Class::Ambiguous,
            Class::Transient
        ]
    );
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.json()["access_token"] == TOKEN)
    );

    let logs = capture.0.lock().unwrap().clone();
    assert!(!logs.contains(TOKEN), "the token leaked in:\n{logs}");
    for attempt in &attempts {
        assert!(!attempt.message.contains(TOKEN), "{}", attempt.message);
    }
    assert!(
        attempts[1].message.contains("<redacted>"),
        "{}",
        attempts[1].message
    );
    assert!(logs.contains("yunzhenji call"), "{logs}");
}
