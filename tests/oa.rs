//! The Official Account / Mini Program channel end to end over loopback: desk API → outbox →
//! `custom/send` → an in-process sandbox playing api.weixin.qq.com, with its token, window,
//! quota and error rules.

#[path = "common/relay.rs"]
mod relay;
#[path = "common/trace.rs"]
mod trace;

use std::path::Path;
use std::time::Duration;

use kefu_connector::config::Config;
use kefu_connector::desk::Desk;
use kefu_connector::sandbox::{
    CallbackDelivery, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, DEFAULT_OA_APPID, DEFAULT_OA_SECRET,
    OaAccount, OaSay, Sandbox, SandboxConfig,
};
use kefu_connector::serve::Relay;
use relay::Setup;
use serde_json::{Value, json};
use trace::captured_trace;

const API_KEY: &str = "oa-desk-key-0123456789abcdef";
/// The callback configuration of the `shop` account.
const SHOP_CALLBACK_TOKEN: &str = "shopcallbacktoken";
const SHOP_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn relay_config(sandbox: &Sandbox, outbox: &Path, oa_secret: &str) -> Config {
    Config::from_settings(&relay_settings(sandbox, outbox, oa_secret))
        .expect("the relay's settings")
}

/// The relay's settings by environment variable: two sending accounts, `shop` (OA) and `mini`
/// (MP).
fn relay_settings(
    sandbox: &Sandbox,
    outbox: &Path,
    oa_secret: &str,
) -> Vec<(&'static str, String)> {
    let api = sandbox.api_base_url();
    let mut settings = relay::settings(sandbox, outbox, API_KEY);
    settings.extend([
        ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", "shop,mini".into()),
        ("KEFU_WECHAT_SHOP_TOKEN", SHOP_CALLBACK_TOKEN.into()),
        ("KEFU_WECHAT_SHOP_AES_KEY", SHOP_AES_KEY.into()),
        ("KEFU_WECHAT_SHOP_RECEIVE_ID", DEFAULT_OA_APPID.into()),
        ("KEFU_WECHAT_SHOP_SECRET", oa_secret.into()),
        ("KEFU_WECHAT_SHOP_API_BASE_URL", api.clone()),
        ("KEFU_WECHAT_MINI_KIND", "mp".into()),
        ("KEFU_WECHAT_MINI_TOKEN", "minicallbacktoken".into()),
        ("KEFU_WECHAT_MINI_RECEIVE_ID", DEFAULT_MP_APPID.into()),
        ("KEFU_WECHAT_MINI_SECRET", DEFAULT_MP_SECRET.into()),
        ("KEFU_WECHAT_MINI_API_BASE_URL", api),
    ]);
    settings
}

/// The default sandbox and a relay whose account `shop` has the sandbox's OA AppSecret.
async fn start_oa(outbox: &Path) -> Setup {
    start_with(relay::sandbox_config(), outbox, DEFAULT_OA_SECRET).await
}

async fn start_with(sandbox: SandboxConfig, outbox: &Path, oa_secret: &str) -> Setup {
    let sandbox = Sandbox::start(sandbox).await.expect("the sandbox starts");
    let settings = relay_settings(&sandbox, outbox, oa_secret);
    Setup::start(sandbox, &settings, API_KEY).await
}

impl Setup {
    /// `openid` writes to the sandbox's OA: its send window opens and its quota resets.
    fn oa_user_writes(&self, openid: &str) {
        self.sandbox
            .api_user_writes(DEFAULT_OA_APPID, openid)
            .unwrap();
    }

    /// Posts a message; the id of its first job.
    async fn post(&self, body: Value) -> i64 {
        let reply = self.desk.post("/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 202, "{body}: {}", reply.text);
        reply.body["id"].as_i64().unwrap()
    }

    /// The job's status once final.
    async fn final_status(&self, id: i64) -> Value {
        relay::status_in(&self.desk, id, &["delivered", "failed", "ambiguous"]).await
    }

    async fn delivered(&self, id: i64) {
        let status = self.final_status(id).await;
        assert_eq!(status["status"], "delivered", "{status}");
    }

    /// The reason and code of a job that must fail.
    async fn failed(&self, id: i64) -> (String, Value) {
        let status = self.final_status(id).await;
        assert_eq!(status["status"], "failed", "{status}");
        (
            status["reason"].as_str().unwrap_or_default().to_owned(),
            status["error_code"].clone(),
        )
    }

    fn bodies(&self, appid: &str, openid: &str) -> Vec<String> {
        self.sandbox
            .api_requests(appid, Some(openid))
            .unwrap()
            .into_iter()
            .map(|r| r.body)
            .collect()
    }

    fn token_fetches(&self, appid: &str) -> u64 {
        self.sandbox.api_account(appid).unwrap().token_fetches
    }

    async fn inject(&self, appid: &str, errcode: i64, count: u32) {
        let sandbox = Desk::new(self.sandbox.url(), "unused");
        let reply = sandbox
            .post(
                &format!("/sandbox/accounts/{appid}/inject"),
                &json!({"errcode": errcode, "count": count}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

/// The raw bodies as they went on the wire, parsed, with no `\u` escape in the raw text.
fn wire(bodies: &[String]) -> Vec<Value> {
    bodies
        .iter()
        .map(|body| {
            assert!(!body.contains("\\u"), "escaped: {body}");
            serde_json::from_str(body).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_msgtype_of_oa_and_mp_reaches_the_platform_raw_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = relay::sandbox_config();
    config.api.quota_per_message = 20;
    let setup = start_with(config, &dir.path().join("o.db"), DEFAULT_OA_SECRET).await;
    setup.oa_user_writes("oUSER");
    setup
        .sandbox
        .api_user_writes(DEFAULT_MP_APPID, "oMP")
        .unwrap();
    let text = "您好 <a href=\"https://e.com/?a=1&b=2\">链接</a> \\ 😀";
    // (the desk's msg, the exact body custom/send received)
    let oa: Vec<(Value, &str)> = vec![
        (
            json!(text),
            r#"{"touser":"oUSER","msgtype":"text","text":{"content":"您好 <a href=\"https://e.com/?a=1&b=2\">链接</a> \\ 😀"}}"#,
        ),
        (
            json!({"image": {"media_id": "M1"}}),
            r#"{"touser":"oUSER","msgtype":"image","image":{"media_id":"M1"}}"#,
        ),
        (
            json!({"voice": {"media_id": "V1"}}),
            r#"{"touser":"oUSER","msgtype":"voice","voice":{"media_id":"V1"}}"#,
        ),
        (
            json!({"video": {"media_id": "V", "thumb_media_id": "T", "title": "视频"}}),
            r#"{"touser":"oUSER","msgtype":"video","video":{"media_id":"V","thumb_media_id":"T","title":"视频"}}"#,
        ),
        (
            json!({"music": {"musicurl": "u", "hqmusicurl": "h", "thumb_media_id": "t"}}),
            r#"{"touser":"oUSER","msgtype":"music","music":{"musicurl":"u","hqmusicurl":"h","thumb_media_id":"t"}}"#,
        ),
        (
            json!({"news": {"articles": [{"title": "标题", "description": "d", "url": "https://e.com", "picurl": "https://e.com/p.png"}]}}),
            r#"{"touser":"oUSER","msgtype":"news","news":{"articles":[{"title":"标题","description":"d","url":"https://e.com","picurl":"https://e.com/p.png"}]}}"#,
        ),
        (
            json!({"mpnews": {"media_id": "N"}}),
            r#"{"touser":"oUSER","msgtype":"mpnews","mpnews":{"media_id":"N"}}"#,
        ),
        (
            json!({"mpnewsarticle": {"article_id": "A"}}),
            r#"{"touser":"oUSER","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"A"}}"#,
        ),
        (
            json!({"msgmenu": {"head_content": "满意吗", "list": [{"id": "1", "content": "满意"}], "tail_content": "谢谢"}}),
            r#"{"touser":"oUSER","msgtype":"msgmenu","msgmenu":{"head_content":"满意吗","list":[{"id":"1","content":"满意"}],"tail_content":"谢谢"}}"#,
        ),
        (
            json!({"wxcard": {"card_id": "C"}}),
            r#"{"touser":"oUSER","msgtype":"wxcard","wxcard":{"card_id":"C"}}"#,
        ),
        (
            json!({"miniprogrampage": {"title": "订单", "appid": "wx1111111111111111", "pagepath": "pages/a", "thumb_media_id": "T"}}),
            r#"{"touser":"oUSER","msgtype":"miniprogrampage","miniprogrampage":{"title":"订单","appid":"wx1111111111111111","pagepath":"pages/a","thumb_media_id":"T"}}"#,
        ),
    ];
    let mut last = 0;
    for (msg, _) in &oa {
        last = setup
            .post(json!({"account": "shop", "openid": "oUSER", "msg": msg}))
            .await;
    }
    setup.delivered(last).await;
    let mp: Vec<(Value, &str)> = vec![
        (
            json!("小程序 😀"),
            r#"{"touser":"oMP","msgtype":"text","text":{"content":"小程序 😀"}}"#,
        ),
        (
            json!({"image": {"media_id": "M2"}}),
            r#"{"touser":"oMP","msgtype":"image","image":{"media_id":"M2"}}"#,
        ),
        (
            json!({"link": {"title": "t", "description": "d", "url": "https://e.com", "thumb_url": "https://e.com/t.png"}}),
            r#"{"touser":"oMP","msgtype":"link","link":{"title":"t","description":"d","url":"https://e.com","thumb_url":"https://e.com/t.png"}}"#,
        ),
        (
            json!({"miniprogrampage": {"title": "订单", "pagepath": "pages/a", "thumb_media_id": "T"}}),
            r#"{"touser":"oMP","msgtype":"miniprogrampage","miniprogrampage":{"title":"订单","pagepath":"pages/a","thumb_media_id":"T"}}"#,
        ),
    ];
    for (msg, _) in &mp {
        last = setup
            .post(json!({"account": "mini", "openid": "oMP", "msg": msg}))
            .await;
    }
    setup.delivered(last).await;
    for (appid, openid, cases) in [
        (DEFAULT_OA_APPID, "oUSER", &oa),
        (DEFAULT_MP_APPID, "oMP", &mp),
    ] {
        let bodies = setup.bodies(appid, openid);
        wire(&bodies);
        let expected: Vec<&str> = cases.iter().map(|(_, body)| *body).collect();
        assert_eq!(bodies, expected, "byte-exact, in order");
    }
    // A type the kind cannot carry is 422 naming it, before anything is stored.
    let reply = setup
        .desk
        .post(
            "/v1/messages",
            &json!({"account": "mini", "openid": "oMP", "msg": {"voice": {"media_id": "V"}}}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.text.contains("voice"), "{}", reply.text);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_text_is_split_in_order_multimsg_keeps_its_order_and_typing_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start_oa(&dir.path().join("o.db")).await;
    setup.oa_user_writes("oUSER");
    // 2,400 bytes of three-byte characters with a link in the middle: two jobs, the link whole.
    let long = format!(
        "{}<a href=\"https://e.com\">点这里</a>{}",
        "字".repeat(660),
        "尾".repeat(130)
    );
    let first = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": long}))
        .await;
    setup.delivered(first + 1).await;
    let parts: Vec<String> = wire(&setup.bodies(DEFAULT_OA_APPID, "oUSER"))
        .iter()
        .map(|b| b["text"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts.concat(), long, "ordered, nothing lost");
    assert!(parts.iter().all(|p| p.len() <= 2_000));
    assert!(
        parts
            .iter()
            .any(|p| p.contains("<a href=\"https://e.com\">点这里</a>"))
    );

    // A new interaction for the quota; multimsg is one job per part, in order.
    setup.oa_user_writes("oUSER");
    let id = setup
        .post(
            json!({"account": "shop", "openid": "oUSER", "msg": {"multimsg": [
                "一", {"image": {"media_id": "M"}}, "三"
            ]}}),
        )
        .await;
    setup.delivered(id + 2).await;
    let got = wire(&setup.bodies(DEFAULT_OA_APPID, "oUSER"));
    let kinds: Vec<&str> = got[2..]
        .iter()
        .map(|b| b["msgtype"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "image", "text"]);
    assert_eq!(got[2]["text"]["content"], "一");
    assert_eq!(got[4]["text"]["content"], "三");

    // Typing on and off reach the typing path. The second "on" meets the sandbox's 45080
    // (typing already shown), skipped silently; an injected 45081 counts as success. All four
    // end delivered; the platform accepted two.
    for (typing, inject) in [
        (true, None),
        (true, None),
        (false, Some(45081)),
        (false, None),
    ] {
        if let Some(code) = inject {
            setup.inject(DEFAULT_OA_APPID, code, 1).await;
        }
        let reply = setup
            .desk
            .post(
                "/v1/typing",
                &json!({"account": "shop", "openid": "oUSER", "typing": typing}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text);
        let id = reply.body["id"]
            .as_i64()
            .or_else(|| reply.body["ids"][0].as_i64())
            .unwrap();
        setup.delivered(id).await;
    }
    let typing: Vec<String> = setup
        .sandbox
        .api_requests(DEFAULT_OA_APPID, Some("oUSER"))
        .unwrap()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/message/custom/typing")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        typing,
        [
            r#"{"touser":"oUSER","command":"Typing"}"#,
            r#"{"touser":"oUSER","command":"CancelTyping"}"#
        ]
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_reason_surfaces_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start_oa(&dir.path().join("o.db")).await;
    let send = |openid: &str, msg: Value| json!({"account": "shop", "openid": openid, "msg": msg});

    // A user who never wrote: 40003 recipient (the platform does not know them here).
    let id = setup.post(send("oNOBODY", json!("hi"))).await;
    assert_eq!(setup.failed(id).await, ("recipient".into(), json!(40003)));

    // The quota: the 6th message after one user message is 45047.
    setup.oa_user_writes("oUSER");
    let mut last = 0;
    for i in 0..6 {
        last = setup.post(send("oUSER", json!(format!("m{i}")))).await;
    }
    assert_eq!(
        setup.failed(last).await,
        ("quota_exhausted".into(), json!(45047))
    );
    assert_eq!(setup.bodies(DEFAULT_OA_APPID, "oUSER").len(), 5);

    // Codes the sandbox cannot produce by its rules, injected: each ends with its reason.
    setup.oa_user_writes("oUSER");
    for (errcode, reason) in [
        (45015, "window_closed"),
        (45009, "throttled"),
        (45011, "throttled"),
        (70000, "policy"),
        (45002, "content"),
        (40007, "content"),
        (43004, "recipient"),
        (99999, "unknown"),
    ] {
        setup.inject(DEFAULT_OA_APPID, errcode, 1).await;
        let id = setup
            .post(send("oUSER", json!(format!("e{errcode}"))))
            .await;
        assert_eq!(
            setup.failed(id).await,
            (reason.into(), json!(errcode)),
            "{errcode}"
        );
    }
    // The relay refuses what the platform would refuse with 45008 (news with two articles)
    // at 422, before anything is stored.
    let two =
        json!({"news": {"articles": [{"title": "a", "url": "u"}, {"title": "b", "url": "u"}]}});
    let reply = setup
        .desk
        .post("/v1/messages", &send("oUSER", two))
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);

    // The second 40001 ends `config`, with one refresh and no loop.
    let before = setup.token_fetches(DEFAULT_OA_APPID);
    setup.inject(DEFAULT_OA_APPID, 40001, 2).await;
    let id = setup.post(send("oUSER", json!("again"))).await;
    let (reason, _) = setup.failed(id).await;
    assert_eq!(reason, "config");
    assert_eq!(
        setup.token_fetches(DEFAULT_OA_APPID),
        before + 1,
        "one refresh"
    );
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    assert!(
        metrics.contains("kefu_wechat_config_failures_total{account=\"shop\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kefu_delivery_failures_total{account=\"shop\",reason=\"throttled\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains(DEFAULT_OA_SECRET) && !metrics.contains(DEFAULT_OA_APPID));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_window_elapses_and_a_wrong_appsecret_is_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = relay::sandbox_config();
    config.api.send_window = Duration::from_millis(1);
    let setup = start_with(
        config,
        &dir.path().join("o.db"),
        "wrongwrongwrongwrongwrongwrong00",
    )
    .await;
    // The OA's wrong AppSecret: 40125 at the token fetch, config.
    setup.oa_user_writes("oUSER");
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "x"}))
        .await;
    assert_eq!(setup.failed(id).await, ("config".into(), json!(40125)));
    // The MP's window is 1 ms: elapsed by the time the job is sent.
    setup
        .sandbox
        .api_user_writes(DEFAULT_MP_APPID, "oMP")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = setup
        .post(json!({"account": "mini", "openid": "oMP", "msg": "x"}))
        .await;
    assert_eq!(
        setup.failed(id).await,
        ("window_closed".into(), json!(45015))
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_one_fetch_for_a_cold_crowd_one_replay_when_superseded_and_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("o.db");
    let mut config = relay::sandbox_config();
    config.api.quota_per_message = 1_000;
    let setup = start_with(config.clone(), &outbox, DEFAULT_OA_SECRET).await;
    setup.oa_user_writes("oUSER");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let desk = setup.desk.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"account": "shop", "openid": "oUSER", "msg": format!("m{i}")});
            let reply = desk.post("/v1/messages", &body).await.unwrap();
            assert_eq!(reply.status, 202, "{}", reply.text);
            reply.body["id"].as_i64().unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    for id in &ids {
        setup.delivered(*id).await;
    }
    assert_eq!(
        setup.token_fetches(DEFAULT_OA_APPID),
        1,
        "one fetch for 200 sends"
    );

    // Superseded: one 40001, one refresh, one replay, delivered.
    setup.sandbox.supersede_token(DEFAULT_OA_APPID).unwrap();
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "after"}))
        .await;
    setup.delivered(id).await;
    assert_eq!(setup.token_fetches(DEFAULT_OA_APPID), 2);
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    assert!(
        metrics.contains("kefu_wechat_refresh_replays_total{account=\"shop\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kefu_wechat_token_fetches_total{account=\"shop\"} 2"),
        "{metrics}"
    );

    // A restart on the same outbox reuses the stored token: no fetch.
    let Setup { sandbox, relay, .. } = setup;
    relay.stop().await;
    let settings = relay_settings(&sandbox, &outbox, DEFAULT_OA_SECRET);
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "restarted"}))
        .await;
    setup.delivered(id).await;
    assert_eq!(
        setup.token_fetches(DEFAULT_OA_APPID),
        2,
        "the stored token served"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_token_or_appsecret_in_any_trace_line() {
    let captured = captured_trace();
    let dir = tempfile::tempdir().unwrap();
    let setup = start_oa(&dir.path().join("o.db")).await;
    setup.oa_user_writes("oUSER");
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "一"}))
        .await;
    setup.delivered(id).await;
    // Every token the relay held: the one before and the one after the supersession.
    let mut tokens = vec![current_token(&setup).await];
    setup.sandbox.supersede_token(DEFAULT_OA_APPID).unwrap();
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "二"}))
        .await;
    setup.delivered(id).await;
    let id = setup
        .post(json!({"account": "shop", "openid": "oNOBODY", "msg": "三"}))
        .await;
    setup.failed(id).await;
    tokens.push(current_token(&setup).await);
    assert_ne!(tokens[0], tokens[1]);
    setup.stop().await;
    let text = captured.text();
    assert!(text.lines().count() > 20, "trace output captured: {text}");
    assert!(text.contains("access token fetched"), "{text}");
    assert!(!text.contains(DEFAULT_OA_SECRET), "the AppSecret leaked");
    for token in tokens {
        assert!(!text.contains(&token), "an access token leaked");
    }
    for line in text.lines().filter(|l| l.contains("access_token=")) {
        assert!(line.contains("access_token=<redacted>"), "{line}");
    }
}

/// The account's current token, as `stable_token` in normal mode hands it out (the same one
/// while valid).
async fn current_token(setup: &Setup) -> String {
    let body = json!({"grant_type": "client_credential", "appid": DEFAULT_OA_APPID, "secret": DEFAULT_OA_SECRET});
    let reply = Desk::new(setup.sandbox.url(), "unused")
        .post("/cgi-bin/stable_token", &body)
        .await
        .unwrap();
    reply.body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oa_user_s_push_shows_the_session_and_its_window_then_a_send_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start_oa(&dir.path().join("o.db")).await;
    // A second sandbox plays the user's phone: its Official Account pushes to the relay, which
    // is only known once the relay has started on the first sandbox's api.weixin.qq.com.
    let mut phone = relay::sandbox_config();
    let mut oa = OaAccount::new(SHOP_CALLBACK_TOKEN, SHOP_AES_KEY, DEFAULT_OA_APPID);
    oa.callback_url = Some(format!(
        "http://{}/v1/callbacks/wechat/shop",
        setup.relay.addr
    ));
    phone.oa = Some(oa);
    let phone = Sandbox::start(phone).await.unwrap();

    let before = setup
        .desk
        .get("/v1/sessions/oPUSH?account=shop")
        .await
        .unwrap();
    assert_eq!(before.status, 404, "{}", before.text);
    let pushed = phone.oa_say("oPUSH", OaSay::new("在吗")).await.unwrap();
    assert!(
        matches!(
            pushed.callback,
            CallbackDelivery::Delivered { status: 200, .. }
        ),
        "{:?}",
        pushed.callback
    );
    let session = setup
        .desk
        .get("/v1/sessions/oPUSH?account=shop")
        .await
        .unwrap();
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.body["account"], "shop", "{}", session.text);
    assert!(
        session.body["last_user_message_at_ms"].as_i64().is_some(),
        "{}",
        session.text
    );
    // The platform's side of the same message (the phone's sandbox opened its own window).
    setup
        .sandbox
        .api_user_writes(DEFAULT_OA_APPID, "oPUSH")
        .unwrap();
    let id = setup
        .post(json!({"account": "shop", "openid": "oPUSH", "msg": "在的"}))
        .await;
    setup.delivered(id).await;
    phone.stop().await;
    setup.stop().await;
}

/// Runs `kefu-connector token refresh …` with the relay's settings in its environment (and
/// nothing else: no config file in its directory): (exit code, stdout, stderr).
fn token_command(settings: &[(&str, String)], args: &[&str], dir: &Path) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kefu-connector"))
        .args(["token", "refresh"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refresh_forces_through_the_running_relay_or_the_store_and_says_when_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("o.db");
    let setup = start_oa(&outbox).await;
    let mut settings = relay_settings(&setup.sandbox, &outbox, DEFAULT_OA_SECRET);
    // The command finds the running relay where serve listens.
    settings.push(("KEFU_SERVER_LISTEN", setup.relay.addr.to_string()));
    setup.oa_user_writes("oUSER");
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "before"}))
        .await;
    setup.delivered(id).await;
    let old = current_token(&setup).await;

    let help = token_command(&settings, &["--help"], dir.path());
    assert_eq!(help.0, 0);
    assert!(
        help.1
            .contains("20 forced refreshes a day, at least 30 s apart"),
        "{}",
        help.1
    );
    let refused = token_command(&settings, &["--account", "shop"], dir.path());
    assert_eq!(refused.0, 2, "{refused:?}");
    assert!(
        refused.2.contains("--force") && refused.2.contains("20"),
        "{}",
        refused.2
    );
    let unknown = token_command(&settings, &["--account", "nope", "--force"], dir.path());
    assert_eq!(unknown.0, 2, "{unknown:?}");

    // Through the running relay: a new token, used from the relay's next call on.
    let (code, out, err) = token_command(&settings, &["--account", "shop", "--force"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("new access token"), "{out}");
    assert_eq!(
        setup
            .sandbox
            .api_account(DEFAULT_OA_APPID)
            .unwrap()
            .force_refreshes,
        1
    );
    let new = current_token(&setup).await;
    assert_ne!(new, old);
    assert!(!out.contains(&new) && !err.contains(&new) && !out.contains(DEFAULT_OA_SECRET));
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "after"}))
        .await;
    setup.delivered(id).await;
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    assert!(
        metrics.contains("kefu_wechat_refresh_replays_total{account=\"shop\"} 0"),
        "the relay used the new token at once: {metrics}"
    );

    // Again within 30 s: the platform ignores it, and the command says so.
    let (code, out, err) = token_command(&settings, &["--account", "shop", "--force"], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ignored the refresh"), "{out}");

    // Without a relay, the command opens the store itself; a relay started later uses the
    // token it saved without fetching.
    let Setup { sandbox, relay, .. } = setup;
    relay.stop().await;
    let (code, out, err) = token_command(&settings, &["--account", "shop", "--force"], dir.path());
    assert_eq!(code, 1, "ignored again, within 30 s: {out}{err}");
    assert!(out.contains("ignored the refresh"), "{out}");
    let fetches = sandbox.api_account(DEFAULT_OA_APPID).unwrap().token_fetches;
    let settings = relay_settings(&sandbox, &outbox, DEFAULT_OA_SECRET);
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "restarted"}))
        .await;
    setup.delivered(id).await;
    assert_eq!(setup.token_fetches(DEFAULT_OA_APPID), fetches);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_s_forced_refresh_costs_this_relay_one_40001_and_one_replay() {
    let dir = tempfile::tempdir().unwrap();
    let setup = start_oa(&dir.path().join("a.db")).await;
    setup.oa_user_writes("oUSER");
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "一"}))
        .await;
    setup.delivered(id).await;
    // A second relay (its own outbox) on the same AppID: the operator forces a refresh there.
    let other = Relay::start(&relay_config(
        &setup.sandbox,
        &dir.path().join("b.db"),
        DEFAULT_OA_SECRET,
    ))
    .await
    .unwrap();
    let other_desk = Desk::new(format!("http://{}", other.addr), API_KEY);
    let reply = other_desk
        .post("/v1/tokens/shop/refresh", &json!({"force": true}))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["changed"], true, "{}", reply.text);
    let refused = other_desk
        .post("/v1/tokens/shop/refresh", &json!({}))
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.text);
    other.stop().await;
    // This relay still holds the old token: 40001 once, compare-and-invalidate, the current
    // token fetched, one replay, delivered.
    let id = setup
        .post(json!({"account": "shop", "openid": "oUSER", "msg": "二"}))
        .await;
    setup.delivered(id).await;
    let metrics = setup.desk.get("/metrics").await.unwrap().text;
    assert!(
        metrics.contains("kefu_wechat_refresh_replays_total{account=\"shop\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kefu_wechat_config_failures_total{account=\"shop\"} 0"),
        "{metrics}"
    );
    assert_eq!(
        setup.bodies(DEFAULT_OA_APPID, "oUSER").len(),
        2,
        "each sent once"
    );
    setup.stop().await;
}
