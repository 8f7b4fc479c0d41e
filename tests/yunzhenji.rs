//! The yunzhenji channel end to end over loopback: desk API → outbox → `wechat/sendMessage` on
//! an in-process sandbox playing the vendor, whose `chatMsg` and `chatMsgSendFail` pushes come
//! back to `/v1/callbacks/yunzhenji/{callback_secret}` and settle the messages.

#[path = "common/relay.rs"]
mod relay;
#[path = "common/trace.rs"]
mod trace;

use std::path::Path;
use std::time::Duration;

use kefu_connector::desk::Desk;
use kefu_connector::sandbox::{
    CustomerSays, DEFAULT_YZJ_ACCESS_TOKEN, DEFAULT_YZJ_APP_ID, DEFAULT_YZJ_WXID, Sandbox,
    YunzhenjiChange,
};
use relay::Setup;
use serde_json::{Value, json};
use trace::captured_trace;

const API_KEY: &str = "yzj-desk-key-0123456789abcdef";
const CALLBACK_SECRET: &str = "yzjCallbackSecret0123456789abcdef";
const CUSTOMER: &str = "7881300000000001";

/// How the sandbox and the relay are set up.
struct Options {
    /// The fraction of the sandbox's platform requests dropped without an answer.
    drop_rate: f64,
    /// The relay's confirm window.
    window_secs: u64,
    /// Whether the sandbox pushes to the relay from the start.
    pushes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            drop_rate: 0.0,
            window_secs: 1,
            pushes: true,
        }
    }
}

/// A sandbox playing yunzhenji and a relay with the account `yzj` on it.
async fn start(outbox: &Path, options: Options) -> Setup {
    let mut config = relay::sandbox_config();
    config.drop_rate = options.drop_rate;
    config.yunzhenji.push_delay = Duration::from_millis(10);
    let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
    let mut settings = relay::settings(&sandbox, outbox, API_KEY);
    settings.extend([
        ("KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS", "yzj".into()),
        ("KEFU_YUNZHENJI_YZJ_APP_ID", DEFAULT_YZJ_APP_ID.into()),
        (
            "KEFU_YUNZHENJI_YZJ_ACCESS_TOKEN",
            DEFAULT_YZJ_ACCESS_TOKEN.into(),
        ),
        ("KEFU_YUNZHENJI_YZJ_WXID", DEFAULT_YZJ_WXID.into()),
        ("KEFU_YUNZHENJI_YZJ_BASE_URL", sandbox.url()),
        ("KEFU_YUNZHENJI_YZJ_CALLBACK_SECRET", CALLBACK_SECRET.into()),
        (
            "KEFU_YUNZHENJI_YZJ_CONFIRM_WINDOW_SECS",
            options.window_secs.to_string(),
        ),
    ]);
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    if options.pushes {
        setup.push_to_relay();
    }
    setup
}

impl Setup {
    fn callback_url(&self) -> String {
        format!(
            "http://{}/v1/callbacks/yunzhenji/{CALLBACK_SECRET}",
            self.relay.addr
        )
    }

    /// The sandbox pushes to the relay from now on.
    fn push_to_relay(&self) {
        self.sandbox
            .set_yunzhenji(&YunzhenjiChange {
                callback_url: Some(self.callback_url()),
                ..YunzhenjiChange::default()
            })
            .expect("the callback URL");
    }

    /// Posts a message; the ids of its jobs.
    async fn post(&self, msg: Value, target: &str) -> Vec<i64> {
        let body = json!({"account": "yzj", "target_wxid": target, "msg": msg});
        let reply = self.desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 202, "{body}: {}", reply.text);
        match reply.body["ids"].as_array() {
            Some(ids) => ids.iter().map(|id| id.as_i64().unwrap()).collect(),
            None => vec![reply.body["id"].as_i64().unwrap()],
        }
    }

    /// The job's status once it is one of `states`.
    async fn status_in(&self, id: i64, states: &[&str]) -> Value {
        relay::status_in(&self.desk, id, states).await
    }

    /// The job's final status: delivered or failed.
    async fn settled(&self, id: i64) -> Value {
        self.status_in(id, &["delivered", "failed"]).await
    }

    /// The events from `GET /v1/events`, oldest first.
    async fn events(&self) -> Vec<Value> {
        let reply = self.desk.get("/v1/events?after=0&limit=100").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// The events once `ready` holds for them (bounded).
    async fn events_when(&self, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events().await;
            if ready(&events) {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "events never ready: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn texts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("第{i}条")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_messages_go_out_as_five_and_two_in_order_and_are_delivered_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), Options::default()).await;
    let ids = setup.post(json!({"multimsg": texts(7)}), CUSTOMER).await;
    assert_eq!(ids.len(), 7);
    for id in &ids {
        let status = setup.settled(*id).await;
        assert_eq!(status["status"], "delivered", "{status}");
    }
    let sent = setup.sandbox.yunzhenji_messages(Some(CUSTOMER));
    let positions: Vec<usize> = sent.iter().map(|m| m.idx).collect();
    assert_eq!(
        positions,
        [0, 1, 2, 3, 4, 0, 1],
        "one call of 5, then one of 2"
    );
    let send_ids: Vec<String> = sent
        .iter()
        .map(|m| m.api_send_id.clone().unwrap_or_default())
        .collect();
    let expected: Vec<String> = ids.iter().map(i64::to_string).collect();
    assert_eq!(
        send_ids, expected,
        "each with its own api_send_id, in order"
    );
    let words: Vec<&str> = sent
        .iter()
        .map(|m| m.content["items"][0]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(words, texts(7));
    // Each echo reached the desk as a `sent` event naming its message.
    let events = setup
        .events_when(|events| events.iter().filter(|e| e["kind"] == "sent").count() == 7)
        .await;
    // The vendor's pushes come in the order it sends them, not necessarily the messages'.
    let mut named: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "sent")
        .map(|e| e["message_id"].as_i64().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(named, ids);
    assert!(
        events
            .iter()
            .all(|e| e["source"] == "yunzhenji" && e["account"] == "yzj")
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_data_array_fails_the_missing_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), Options::default()).await;
    setup.sandbox.yunzhenji_accept_only(3);
    let ids = setup.post(json!({"multimsg": texts(5)}), CUSTOMER).await;
    let mut states = Vec::new();
    for id in &ids {
        states.push(setup.settled(*id).await["status"].clone());
    }
    assert_eq!(
        states,
        ["delivered", "delivered", "delivered", "failed", "failed"]
    );
    assert_eq!(setup.sandbox.yunzhenji_messages(Some(CUSTOMER)).len(), 3);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_failure_push_turns_an_accepted_message_failed() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        window_secs: 600,
        ..Options::default()
    };
    let setup = start(&dir.path().join("o.db"), options).await;
    setup
        .sandbox
        .set_yunzhenji(&YunzhenjiChange {
            failure_rate: Some(1.0),
            ..YunzhenjiChange::default()
        })
        .unwrap();
    let id = setup.post(json!("会失败"), CUSTOMER).await[0];
    let status = setup.settled(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "send_failed", "{status}");
    let events = setup
        .events_when(|events| events.iter().any(|e| e["kind"] == "send_failed"))
        .await;
    let failed = events.iter().find(|e| e["kind"] == "send_failed").unwrap();
    assert_eq!(failed["message_id"], id);
    assert_eq!(failed["openid"], CUSTOMER);
    assert!(failed["error"].is_string(), "{failed}");
    assert_eq!(
        failed["raw"]["event"], "chatMsgSendFail",
        "the body as received"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_send_is_resolved_by_its_echo_or_ends_unconfirmed_never_resent() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        drop_rate: 1.0,
        window_secs: 3,
        pushes: false,
    };
    let setup = start(&dir.path().join("o.db"), options).await;
    // Every call is dropped without an answer, yet processed. The first one's echo goes
    // nowhere: it stays unconfirmed.
    let lost = setup.post(json!("无回音"), "7lost").await[0];
    let status = setup.status_in(lost, &["ambiguous", "failed"]).await;
    assert_ne!(status["status"], "delivered", "{status}");
    // Its echo has gone nowhere before the sandbox pushes to the relay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !setup
        .sandbox
        .yunzhenji_pushes()
        .iter()
        .any(|push| push.api_send_id == Some(lost.to_string()))
    {
        assert!(tokio::time::Instant::now() < deadline, "no push of {lost}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.push_to_relay();
    let echoed = setup.post(json!("有回音"), "7echo").await[0];
    let status = setup.settled(echoed).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let status = setup.settled(lost).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "unconfirmed", "{status}");
    assert_eq!(setup.sandbox.yunzhenji_messages(Some("7lost")).len(), 1);
    assert_eq!(setup.sandbox.yunzhenji_messages(Some("7echo")).len(), 1);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_message_reaches_the_desk_once() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), Options::default()).await;
    let push = setup
        .sandbox
        .yunzhenji_customer_says(CUSTOMER, CustomerSays::new("您好"))
        .await
        .unwrap();
    let events = setup.events_when(|events| !events.is_empty()).await;
    let event = &events[0];
    assert_eq!(event["kind"], "message", "{event}");
    assert_eq!(event["openid"], CUSTOMER);
    assert_eq!(event["sender"], CUSTOMER);
    assert_eq!(event["text"], "您好");
    assert_eq!(event["msg_id"], push.api_send_svrid.as_str());
    assert_eq!(event["raw"], push.body, "the body as received");
    assert_eq!(event["created_at"], push.body["data"]["create_time"]);
    assert!(
        event["created_at"].as_i64().is_some_and(|t| t > 0),
        "{event}"
    );
    // A redelivery is acknowledged and dropped.
    let url = setup.callback_url();
    let desk = Desk::new(url, "unused");
    let again = desk.post("", &push.body).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(setup.events().await.len(), 1);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_answered_as_an_unknown_route_and_a_bad_body_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), Options::default()).await;
    let base = format!("http://{}", setup.relay.addr);
    let push = json!({"event": "chatMsg", "data": {"from_wxid": CUSTOMER, "content": "x"}});
    let answer = |path: &str| {
        let desk = Desk::new(format!("{base}{path}"), "unused");
        let push = push.clone();
        async move { desk.post("", &push).await.unwrap() }
    };
    let wrong = format!("/v1/callbacks/yunzhenji/{}X", CALLBACK_SECRET);
    let unknown = format!("/v1/callbacks/yunzhenjx/{CALLBACK_SECRET}X");
    let (wrong_reply, unknown_reply) = (answer(&wrong).await, answer(&unknown).await);
    assert_eq!(wrong_reply.status, 404);
    assert_eq!(wrong_reply.status, unknown_reply.status);
    assert_eq!(
        wrong_reply.text.replace(&wrong, "PATH"),
        unknown_reply.text.replace(&unknown, "PATH")
    );
    let bad = Desk::new(setup.callback_url(), "unused")
        .post("", &json!({"event": "somethingElse"}))
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text);
    let text = "长".repeat(30_000);
    let large = json!({"event": "chatMsg", "data": {"from_wxid": CUSTOMER, "content": text}});
    let large = Desk::new(setup.callback_url(), "unused")
        .post("", &large)
        .await
        .unwrap();
    assert_eq!(large.status, 400, "a body over 64 KiB: {}", large.text);
    assert!(setup.events().await.is_empty(), "nothing stored");
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    for line in [
        r#"kefu_callbacks_total{source="yunzhenji",outcome="rejected",reason="secret"} 1"#,
        r#"kefu_callbacks_total{source="yunzhenji",outcome="rejected",reason="parse"} 1"#,
        r#"kefu_callbacks_total{source="yunzhenji",outcome="rejected",reason="body"} 1"#,
        r#"kefu_http_requests_total{route="/v1/callbacks/yunzhenji/{secret}",status="404"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        !metrics.contains(CALLBACK_SECRET),
        "the path is in no label"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_token_or_callback_secret_in_any_trace_line() {
    let captured = captured_trace();
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), Options::default()).await;
    let id = setup.post(json!("一"), CUSTOMER).await[0];
    let status = setup.settled(id).await;
    assert_eq!(status["status"], "delivered", "{status}");
    setup
        .sandbox
        .yunzhenji_customer_says(CUSTOMER, CustomerSays::new("二"))
        .await
        .unwrap();
    setup.events_when(|events| events.len() >= 2).await;
    let wrong = Desk::new(
        format!(
            "http://{}/v1/callbacks/yunzhenji/{CALLBACK_SECRET}-wrong",
            setup.relay.addr
        ),
        "unused",
    );
    assert_eq!(wrong.post("", &json!({})).await.unwrap().status, 404);
    setup.stop().await;
    let text = captured.text();
    assert!(text.lines().count() > 20, "trace output captured: {text}");
    assert!(
        text.contains("yunzhenji callback stored"),
        "the callback was traced: {text}"
    );
    assert!(
        !text.contains(DEFAULT_YZJ_ACCESS_TOKEN),
        "the access token leaked"
    );
    assert!(
        !text.contains(CALLBACK_SECRET),
        "the callback secret leaked"
    );
}
