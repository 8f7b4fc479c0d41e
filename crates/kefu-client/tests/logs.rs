//! The debug logs carry rids, codes and sizes, and no secret. Alone in its own test binary,
//! with a global subscriber, so that no other test races the callsite registration.

mod common;

use common::*;
use kefu_client::Operation;

mod logs {
    //! Captures this thread's tracing events and checks that they carry no secret.

    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<String>>);

    struct Line<'a>(&'a mut String);

    impl Visit for Line<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut out = self.0.lock().unwrap();
            span.record(&mut Line(&mut out));
            out.push('\n');
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut out = self.0.lock().unwrap();
            values.record(&mut Line(&mut out));
            out.push('\n');
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut out = self.0.lock().unwrap();
            let _ = write!(
                out,
                "{} {}:",
                event.metadata().level(),
                event.metadata().target()
            );
            event.record(&mut Line(&mut out));
            out.push('\n');
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test]
async fn debug_logs_carry_rid_and_sizes_but_no_secrets() {
    let capture = logs::Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let server = Server::start(|i| match i {
        0 => json(200, r#"{"success":false,"code":-1,"msg":"busy"}"#),
        1 => json(200, r#"{"errcode":0,"msg":"Success","rid":"rid-42"}"#),
        _ => Action::Close,
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
