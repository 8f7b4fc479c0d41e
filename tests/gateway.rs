//! The company gateway end to end over loopback: desk API → outbox → `sendCustomerMessage` on
//! an in-process sandbox playing the gateway, which wraps the answers of the sandbox's
//! `custom/send` in `{"code":200,…,"data":{…}}`.

#[path = "common/relay.rs"]
mod relay;

use std::path::Path;

use kefu_connector::sandbox::{DEFAULT_OA_APPID, GatewayChange, GatewayInjection, Sandbox};
use relay::Setup;
use serde_json::{Value, json};

const API_KEY: &str = "gateway-desk-key-0123456789abcdef";

/// The sandbox and a relay with the account `feihe` on its gateway, sending the `system`
/// header `system`.
async fn start(outbox: &Path, system: &str) -> Setup {
    let sandbox = Sandbox::start(relay::sandbox_config())
        .await
        .expect("the sandbox starts");
    let mut settings = relay::settings(&sandbox, outbox, API_KEY);
    settings.extend([
        ("KEFU_DELIVERY_GATEWAY_ACCOUNTS", "feihe".into()),
        ("KEFU_GATEWAY_FEIHE_BASE_URL", sandbox.url()),
        ("KEFU_GATEWAY_FEIHE_SYSTEM", system.into()),
    ]);
    Setup::start(sandbox, &settings, API_KEY).await
}

impl Setup {
    /// `openid` writes to the Official Account the gateway sends through: its window opens.
    fn user_writes(&self, openid: &str) {
        self.sandbox
            .api_user_writes(DEFAULT_OA_APPID, openid)
            .unwrap();
    }

    async fn post(&self, openid: &str, msg: Value) -> i64 {
        let body = json!({"account": "feihe", "openid": openid, "msg": msg});
        let reply = self.desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 202, "{body}: {}", reply.text);
        reply.body["id"].as_i64().unwrap()
    }

    /// The job's status once final.
    async fn final_status(&self, id: i64) -> Value {
        relay::status_in(&self.desk, id, &["delivered", "failed", "ambiguous"]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_delivered_and_rich_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), "NEW_MEMBER").await;
    setup.user_writes("oUSER");
    let id = setup.post("oUSER", json!("客服消息")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let sent = setup.sandbox.gateway_messages(Some("oUSER"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg, "客服消息");
    let rich = json!({"account": "feihe", "openid": "oUSER", "msg": {"image": {"media_id": "M"}}});
    let reply = setup.desk.post("/v1/messages", &rich).await.unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);
    setup.stop().await;
}

/// The gateway answers `code: 200` while WeChat refused the message: checking only `code`
/// would call it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_200_with_errcode_40003_is_failed_with_reason_recipient_as_number_or_string() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), "NEW_MEMBER").await;
    let id = setup.post("oNOBODY", json!("给谁")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "recipient", "{status}");
    assert_eq!(status["error_code"], 40003, "{status}");

    setup.sandbox.set_gateway(GatewayChange {
        errcode_as_string: Some(true),
    });
    let id = setup.post("oNOBODY", json!("再试")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "recipient", "{status}");
    setup.user_writes("oUSER");
    let id = setup.post("oUSER", json!("字符串的 0")).await;
    let status = setup.final_status(id).await;
    assert_eq!(
        status["status"], "delivered",
        "errcode \"0\" is success: {status}"
    );
    assert!(setup.sandbox.gateway_messages(Some("oNOBODY")).is_empty());
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_code_other_than_200_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), "NEW_MEMBER").await;
    setup.user_writes("oUSER");
    setup
        .sandbox
        .gateway_inject(GatewayInjection {
            errcode: None,
            code: Some(402),
            count: 1,
            as_string: false,
        })
        .unwrap();
    let id = setup.post("oUSER", json!("不行")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert!(setup.sandbox.gateway_messages(Some("oUSER")).is_empty());
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_system_header_is_refused_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), "OTHER_SYSTEM").await;
    setup.user_writes("oUSER");
    let id = setup.post("oUSER", json!("你好")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert!(setup.sandbox.gateway_messages(Some("oUSER")).is_empty());
    setup.stop().await;
}

/// 40001, 42001 and 40014 are the gateway's own token trouble: tried once more, then failed
/// with reason `config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_s_token_trouble_is_retried_once_then_config() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start(&dir.path().join("o.db"), "NEW_MEMBER").await;
    setup.user_writes("oUSER");
    let inject = |count| GatewayInjection {
        errcode: Some(40001),
        code: None,
        count,
        as_string: false,
    };
    setup.sandbox.gateway_inject(inject(1)).unwrap();
    let id = setup.post("oUSER", json!("一次")).await;
    let status = setup.final_status(id).await;
    assert_eq!(
        status["status"], "delivered",
        "once, then through: {status}"
    );
    setup.sandbox.gateway_inject(inject(5)).unwrap();
    let id = setup.post("oUSER", json!("两次")).await;
    let status = setup.final_status(id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "config", "{status}");
    assert_eq!(setup.sandbox.gateway_messages(Some("oUSER")).len(), 1);
    setup.stop().await;
}
