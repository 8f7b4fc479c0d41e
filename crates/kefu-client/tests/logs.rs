//! The debug logs carry rids, codes and sizes, and no secret. Alone in its own test binary,
//! with a global subscriber, so that no other test races the callsite registration.

mod common;
mod log_capture;

use common::*;
use kefu_client::Operation;

#[tokio::test]
async fn debug_logs_carry_rid_and_sizes_but_no_secrets() {
    let capture = log_capture::Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let server = Server::start(|i| match i {
        0 => json(200, r#"{"success":false,"code":-1,"msg":"busy"}"#),
        1 => json(200, r#"{"errcode":0,"msg":"Success","rid":"rid-42"}"#),
        _ => Reply::Close,
    })
    .await;
    let client = server.client();
    client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap();
    let _ = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();

    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.contains("rid=\"rid-42\""), "{logs}");
    assert!(logs.contains("errcode=-1"), "{logs}");
    assert!(logs.contains("request_bytes="), "{logs}");
    assert!(logs.contains("elapsed_ms="), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
    assert!(!logs.contains(TOKEN), "TOKEN in logs: {logs}");
    assert!(!logs.contains(KEY), "key in logs: {logs}");
    assert!(
        !logs.contains("请问需要什么帮助"),
        "message text in logs: {logs}"
    );
    let encrypt =
        serde_json::from_slice::<serde_json::Value>(&server.seen()[0].body).unwrap()["encrypt"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(!logs.contains(&encrypt), "ciphertext in logs");
}
