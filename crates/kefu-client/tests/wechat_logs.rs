//! No log line, at any level down to trace, carries an access token or the AppSecret. Alone in
//! its own test binary, with a global subscriber, so that no other test races the callsite
//! registration.

mod fake_cgibin;
mod log_capture;

use std::sync::Arc;

use fake_cgibin::*;
use kefu_core::{Class, Provider};
use log_capture::Capture;

#[tokio::test]
async fn no_log_line_carries_a_token_or_the_secret() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let fake = Fake::start().await;
    let store = Arc::new(MemoryStore::default());
    let provider = fake
        .builder(kefu_client::kefu_payload::cgibin::AccountKind::OfficialAccount)
        .token_store(store)
        .build()
        .unwrap();
    let job = text_job(&provider, "您好");
    let mut attempts = Vec::new();
    // A fetch, a send, a rejection with its refresh, and its replay.
    attempts.push(provider.send(&job).await);
    fake.with(State::supersede);
    attempts.extend(drive(&provider, &job).await.1);
    // A send cut off, a platform error echoing the token, a failed and a forced refresh.
    let token = fake.with(|s| s.current.clone().unwrap());
    fake.with(|s| {
        s.call_script.push_back(Reply::Close);
        s.call_script.push_back(Reply::Json(
            200,
            format!(r#"{{"errcode":40033,"errmsg":"bad access_token={token} rid: r-1"}}"#),
        ));
    });
    attempts.push(provider.send(&job).await);
    attempts.push(provider.send(&job).await);
    provider.tokens().force_refresh().await.unwrap();
    fake.with(|s| {
        s.reject_every_token = true;
        s.token_script.push_back(code(-1));
    });
    attempts.push(provider.send(&job).await);
    assert_eq!(attempts[0].class, Class::Success);
    assert!(attempts.iter().any(|a| a.class == Class::Ambiguous));

    let logs = capture.0.lock().unwrap().clone();
    let tokens = fake.with(|s| s.all_tokens.clone());
    assert!(tokens.len() >= 3, "{tokens:?}");
    for secret in tokens.iter().map(String::as_str).chain([SECRET]) {
        assert!(!logs.contains(secret), "{secret} leaked in:\n{logs}");
        for attempt in &attempts {
            assert!(
                !attempt.message.contains(secret),
                "{secret} leaked: {}",
                attempt.message
            );
        }
    }
    assert!(logs.contains("rid=\"6a1-40001\""), "{logs}");
    assert!(logs.contains("access_token=<redacted>"), "{logs}");
    assert!(logs.contains("access token fetched"), "{logs}");
}
