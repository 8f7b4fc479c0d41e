//! The sandbox's `api.weixin.qq.com` over real loopback sockets: `stable_token` and its token
//! lifecycle, every check of `custom/send`, the send window and the quota, typing, faults, and
//! the `/sandbox/accounts` routes. Every sandbox listens on 127.0.0.1:0 and is stopped by its
//! test. The few waits are for the sandbox's own clocks (set short) to run out, with wide margins.

use std::time::Duration;

use hyper::Method;
use kefu_sandbox::{
    AccountKind, ApiAccount, ApiSettings, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, DEFAULT_OA_APPID,
    DEFAULT_OA_SECRET, OaAccount, OaSay, Sandbox, SandboxConfig,
};
use serde_json::{Value, json};

mod common;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn sandbox_config() -> SandboxConfig {
    SandboxConfig::new("SandboxTestToken", KEY, "Gg8HejYTkUsEIlG")
}

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts")
}

/// `(status, body)` of one JSON exchange; `Err` when the connection ended without an answer.
async fn exchange(method: Method, url: &str, body: &[u8]) -> Result<(u16, String), String> {
    common::exchange(method, url, Some("application/json"), body).await
}

/// POSTs to a platform route: the answer must be HTTP 200 with a JSON body.
async fn call(sandbox: &Sandbox, path_and_query: &str, body: &[u8]) -> Value {
    let url = format!("{}{path_and_query}", sandbox.api_base_url());
    let (status, text) = exchange(Method::POST, &url, body).await.unwrap();
    assert_eq!(status, 200, "{path_and_query}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The `errcode` of an answer, after checking the platform's `errmsg … rid: x-x-x` shape.
fn code(answer: &Value) -> i64 {
    let code = answer["errcode"].as_i64().expect("an errcode");
    let message = answer["errmsg"].as_str().expect("an errmsg");
    if code == 0 {
        assert_eq!(message, "ok");
    } else {
        let (_, rid) = message.rsplit_once(" rid: ").expect("a rid suffix");
        let groups: Vec<&str> = rid.split('-').collect();
        assert_eq!(groups.len(), 3, "{message}");
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 8 && g.bytes().all(|b| b.is_ascii_hexdigit())),
            "{message}"
        );
    }
    code
}

async fn fetch_token(sandbox: &Sandbox, appid: &str, secret: &str, force: bool) -> String {
    let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": force});
    let answer = call(
        sandbox,
        "/cgi-bin/stable_token",
        body.to_string().as_bytes(),
    )
    .await;
    assert!(answer["expires_in"].as_u64().is_some(), "{answer}");
    answer["access_token"].as_str().expect("a token").to_owned()
}

async fn oa_token(sandbox: &Sandbox) -> String {
    fetch_token(sandbox, DEFAULT_OA_APPID, DEFAULT_OA_SECRET, false).await
}

async fn send(sandbox: &Sandbox, token: &str, body: &str) -> i64 {
    let path = format!("/cgi-bin/message/custom/send?access_token={token}");
    code(&call(sandbox, &path, body.as_bytes()).await)
}

async fn typing(sandbox: &Sandbox, path: &str, token: &str, openid: &str, command: &str) -> i64 {
    let path = format!("{path}?access_token={token}");
    let body = json!({"touser": openid, "command": command}).to_string();
    code(&call(sandbox, &path, body.as_bytes()).await)
}

fn text(openid: &str, content: &str) -> String {
    json!({"touser": openid, "msgtype": "text", "text": {"content": content}}).to_string()
}

async fn get(sandbox: &Sandbox, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", sandbox.url());
    let (status, body) = exchange(Method::GET, &url, b"").await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

async fn post(sandbox: &Sandbox, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", sandbox.url());
    let (status, body) = exchange(Method::POST, &url, b"").await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

async fn post_json(sandbox: &Sandbox, path: &str, body: &str) -> (u16, Value) {
    let url = format!("{}{path}", sandbox.url());
    let (status, body) = exchange(Method::POST, &url, body.as_bytes()).await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn an_injected_errcode_answers_the_next_calls_then_the_account_works_again() {
    let sandbox = start(sandbox_config()).await;
    let token = oa_token(&sandbox).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    let inject = format!("/sandbox/accounts/{DEFAULT_OA_APPID}/inject");
    let (status, injected) = post_json(&sandbox, &inject, r#"{"errcode":45009,"count":2}"#).await;
    assert_eq!(status, 200, "{injected}");
    assert_eq!(injected, json!({"errcode": 45009, "count": 2}));
    // A call with a bad token is still refused for its token: the injection answers for the
    // platform behind the token check.
    assert_eq!(send(&sandbox, "nope", &text("oUSER", "0")).await, 40001);
    assert_eq!(send(&sandbox, &token, &text("oUSER", "1")).await, 45009);
    let typing_path = "/cgi-bin/message/custom/typing";
    assert_eq!(
        typing(&sandbox, typing_path, &token, "oUSER", "Typing").await,
        45009
    );
    assert_eq!(send(&sandbox, &token, &text("oUSER", "2")).await, 0);
    // Another injection replaces the pending one; the other account is untouched.
    post_json(&sandbox, &inject, r#"{"errcode":70000,"count":5}"#).await;
    let (status, _) = post_json(&sandbox, &inject, r#"{"errcode":45011,"count":1}"#).await;
    assert_eq!(status, 200);
    assert_eq!(send(&sandbox, &token, &text("oUSER", "3")).await, 45011);
    assert_eq!(send(&sandbox, &token, &text("oUSER", "4")).await, 0);
    let accepted: Vec<String> = sandbox
        .api_requests(DEFAULT_OA_APPID, Some("oUSER"))
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(
        accepted,
        [text("oUSER", "2"), text("oUSER", "4")],
        "injected calls are not accepted"
    );
    // Refusals: no errcode 0, a count of 1 to 10000, known fields, a known AppID.
    for body in [
        r#"{"errcode":0,"count":1}"#,
        r#"{"errcode":45009,"count":0}"#,
        r#"{"errcode":45009,"count":10001}"#,
        r#"{"errcode":45009,"count":1,"extra":1}"#,
        r#"{"errcode":45009}"#,
        "",
    ] {
        let (status, error) = post_json(&sandbox, &inject, body).await;
        assert_eq!(status, 400, "{body}: {error}");
    }
    let (status, _) = post_json(
        &sandbox,
        "/sandbox/accounts/wxnope/inject",
        r#"{"errcode":45009,"count":1}"#,
    )
    .await;
    assert_eq!(status, 404);
    sandbox.stop().await;
}

#[tokio::test]
async fn stable_token_checks_its_body_and_credentials() {
    let sandbox = start(sandbox_config()).await;
    let cases: [(&[u8], i64); 9] = [
        (b"", 44002),
        (b"{", 47001),
        (br#"{"appid":"wx","secret":"s"}"#, 40002),
        (br#"{"grant_type":"password","appid":"wx","secret":"s"}"#, 40002),
        (br#"{"grant_type":"client_credential","secret":"s"}"#, 41002),
        (br#"{"grant_type":"client_credential","appid":"wx0a0a0a0a0a0a0a0a"}"#, 41004),
        (br#"{"grant_type":"client_credential","appid":"wxnope","secret":"s"}"#, 40013),
        (br#"{"grant_type":"client_credential","appid":"wx0a0a0a0a0a0a0a0a","secret":"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"}"#, 40125),
        (br#"{"grant_type":"client_credential","appid":"wx0a0a0a0a0a0a0a0a","secret":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","force_refresh":"yes"}"#, 47001),
    ];
    for (body, expected) in cases {
        let answer = call(&sandbox, "/cgi-bin/stable_token", body).await;
        assert_eq!(code(&answer), expected, "{}", String::from_utf8_lossy(body));
    }
    let account = sandbox.api_account(DEFAULT_OA_APPID).unwrap();
    assert_eq!(account.token_fetches, 0, "refusals are not fetches");
    let answer = call(
        &sandbox,
        "/cgi-bin/stable_token",
        json!({"grant_type":"client_credential","appid":DEFAULT_OA_APPID,"secret":DEFAULT_OA_SECRET})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(answer["expires_in"], 7200);
    assert!(answer.get("errcode").is_none(), "{answer}");
    sandbox.stop().await;
}

#[tokio::test]
async fn the_same_token_while_valid_supersede_and_force_refresh() {
    let sandbox = start(sandbox_config()).await;
    let first = oa_token(&sandbox).await;
    assert_eq!(
        oa_token(&sandbox).await,
        first,
        "the same token while valid"
    );
    let mp = fetch_token(&sandbox, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, false).await;
    assert_ne!(mp, first, "accounts do not share tokens");
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    assert_eq!(send(&sandbox, &first, &text("oUSER", "1")).await, 0);

    // The admin call supersedes: the next call with the token gets 40001.
    let (status, account) = post(
        &sandbox,
        &format!("/sandbox/accounts/{DEFAULT_OA_APPID}/supersede"),
    )
    .await;
    assert_eq!((status, account["supersessions"].as_u64()), (200, Some(1)));
    assert_eq!(send(&sandbox, &first, &text("oUSER", "2")).await, 40001);
    let second = oa_token(&sandbox).await;
    assert_ne!(second, first);
    assert_eq!(send(&sandbox, &second, &text("oUSER", "2")).await, 0);

    // force_refresh invalidates the current token; a second one within 30 s does not refresh.
    let forced = fetch_token(&sandbox, DEFAULT_OA_APPID, DEFAULT_OA_SECRET, true).await;
    assert_ne!(forced, second);
    assert_eq!(send(&sandbox, &second, &text("oUSER", "3")).await, 40001);
    assert_eq!(send(&sandbox, &forced, &text("oUSER", "3")).await, 0);
    assert_eq!(
        fetch_token(&sandbox, DEFAULT_OA_APPID, DEFAULT_OA_SECRET, true).await,
        forced
    );

    let (status, account) = get(&sandbox, &format!("/sandbox/accounts/{DEFAULT_OA_APPID}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        account,
        json!({"appid": DEFAULT_OA_APPID, "kind": "oa", "token_fetches": 5,
               "force_refreshes": 1, "supersessions": 1, "accepted": 3})
    );
    assert_eq!(
        sandbox.api_account(DEFAULT_MP_APPID).unwrap().token_fetches,
        1
    );
    let (status, error) = get(&sandbox, "/sandbox/accounts/wxnope").await;
    assert_eq!(status, 404, "{error}");
    sandbox.stop().await;
}

#[tokio::test]
async fn tokens_renew_with_an_overlap_then_expire() {
    let mut config = sandbox_config();
    // Renewed in the second half of its life: after 1.5 s.
    config.api.token_lifetime = Duration::from_secs(3);
    let sandbox = start(config).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    let old = oa_token(&sandbox).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let new = oa_token(&sandbox).await;
    assert_ne!(new, old, "a new token in the renewal window");
    assert_eq!(
        send(&sandbox, &old, &text("oUSER", "old")).await,
        0,
        "both work"
    );
    assert_eq!(send(&sandbox, &new, &text("oUSER", "new")).await, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(&sandbox, &old, &text("oUSER", "late")).await, 42001);
    assert_eq!(send(&sandbox, &new, &text("oUSER", "new")).await, 0);
    sandbox.stop().await;
}

#[tokio::test]
async fn custom_send_checks_in_the_platform_s_order() {
    let sandbox = start(sandbox_config()).await;
    let token = oa_token(&sandbox).await;
    let mp = fetch_token(&sandbox, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, false).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    sandbox.api_user_writes(DEFAULT_MP_APPID, "oMP").unwrap();

    let missing = call(
        &sandbox,
        "/cgi-bin/message/custom/send",
        text("oUSER", "x").as_bytes(),
    )
    .await;
    assert_eq!(code(&missing), 41001);
    let empty = call(
        &sandbox,
        "/cgi-bin/message/custom/send?access_token=",
        b"{}",
    )
    .await;
    assert_eq!(code(&empty), 41001);
    assert_eq!(send(&sandbox, "garbage", &text("oUSER", "x")).await, 40001);

    let long = "字".repeat(682) + "abc";
    let cases: Vec<(String, i64)> = vec![
        (String::new(), 44002),
        (r#"{"touser":"oUSER","msgtype":"text","text":{"content":"\u4f60\u597d"}}"#.into(), 40033),
        (r#"{"touser":"oUSER","msgtype":"text","text":{"content":"x"}"#.into(), 47001),
        (r#"{"msgtype":"text","text":{"content":"x"}}"#.into(), 41009),
        (r#"{"touser":"oUSER","msgtype":"sticker","sticker":{}}"#.into(), 40008),
        (r#"{"touser":"oUSER","msgtype":"link","link":{"title":"t","description":"d","url":"u","thumb_url":"p"}}"#.into(), 40008),
        (r#"{"touser":"oUSER","msgtype":"text","text":{"content":""}}"#.into(), 44004),
        (r#"{"touser":"oUSER","msgtype":"image","image":{}}"#.into(), 41006),
        (text("oUSER", &long), 45002),
        (r#"{"touser":"oUSER","msgtype":"news","news":{"articles":[{"title":"a"},{"title":"b"}]}}"#.into(), 45008),
        (r#"{"touser":"oUSER","msgtype":"news","news":{"articles":[]}}"#.into(), 44003),
        (r#"{"touser":"oUSER","msgtype":"wxcard","wxcard":{}}"#.into(), 40097),
        (text("oMP", "a user of the Mini Program"), 40003),
        (text("oNOBODY", "never wrote"), 40003),
    ];
    for (body, expected) in &cases {
        assert_eq!(send(&sandbox, &token, body).await, *expected, "{body}");
    }
    // A Mini Program cannot send what only an Official Account can.
    let voice = r#"{"touser":"oMP","msgtype":"voice","voice":{"media_id":"m"}}"#;
    assert_eq!(send(&sandbox, &mp, voice).await, 40008);
    // 2,048 bytes fit; an escaped backslash before a u is not an escape.
    let fits = "字".repeat(682) + "ab";
    assert_eq!(send(&sandbox, &token, &text("oUSER", &fits)).await, 0);
    let backslash = r#"{"touser":"oUSER","msgtype":"text","text":{"content":"C:\\users"}}"#;
    assert_eq!(send(&sandbox, &token, backslash).await, 0);
    // The alias is refused as the platform refuses it.
    let alias = format!("/cgi-bin/message/custom/business/send?access_token={token}");
    assert_eq!(
        code(&call(&sandbox, &alias, text("oUSER", "x").as_bytes()).await),
        40101
    );

    let accepted = sandbox.api_requests(DEFAULT_OA_APPID, None).unwrap();
    assert_eq!(accepted.len(), 2, "refusals are not recorded");
    assert_eq!(accepted[0].body, text("oUSER", &fits));
    assert_eq!(accepted[1].body, backslash, "the raw body, byte for byte");
    sandbox.stop().await;
}

#[tokio::test]
async fn every_msgtype_of_each_kind_is_accepted_and_recorded_raw() {
    let mut config = sandbox_config();
    config.api.quota_per_message = 20;
    let sandbox = start(config).await;
    let oa = oa_token(&sandbox).await;
    let mp = fetch_token(&sandbox, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, false).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    sandbox.api_user_writes(DEFAULT_MP_APPID, "oMP").unwrap();
    let oa_bodies = [
        r#"{"touser":"oUSER","msgtype":"text","text":{"content":"你好 <a href=\"https://example.com/?a=1&b=2\">链接</a>"},"customservice":{"kf_account":"test1@kftest"}}"#,
        r#"{"touser":"oUSER","msgtype":"image","image":{"media_id":"MEDIA"}}"#,
        r#"{"touser":"oUSER","msgtype":"voice","voice":{"media_id":"MEDIA"}}"#,
        r#"{"touser":"oUSER","msgtype":"video","video":{"media_id":"MEDIA","thumb_media_id":"THUMB","title":"t","description":"d"}}"#,
        r#"{"touser":"oUSER","msgtype":"music","music":{"title":"t","description":"d","musicurl":"http://m","hqmusicurl":"http://h","thumb_media_id":"THUMB"}}"#,
        r#"{"touser":"oUSER","msgtype":"news","news":{"articles":[{"title":"t","description":"d","url":"http://u","picurl":"http://p"}]}}"#,
        r#"{"touser":"oUSER","msgtype":"mpnews","mpnews":{"media_id":"MEDIA"}}"#,
        r#"{"touser":"oUSER","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"ARTICLE"}}"#,
        r#"{"touser":"oUSER","msgtype":"msgmenu","msgmenu":{"head_content":"您对本次服务是否满意呢? ","list":[{"id":"101","content":"满意"},{"id":"102","content":"不满意"}],"tail_content":"欢迎再次光临"}}"#,
        r#"{"touser":"oUSER","msgtype":"wxcard","wxcard":{"card_id":"CARD"}}"#,
        r#"{"touser":"oUSER","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"wx0b0b0b0b0b0b0b0b","pagepath":"pages/index/index?foo=bar","thumb_media_id":"THUMB"}}"#,
    ];
    for body in oa_bodies {
        assert_eq!(send(&sandbox, &oa, body).await, 0, "{body}");
    }
    let mp_bodies = [
        r#"{"touser":"oMP","msgtype":"text","text":{"content":"hi"}}"#,
        r#"{"touser":"oMP","msgtype":"image","image":{"media_id":"MEDIA"}}"#,
        r#"{"touser":"oMP","msgtype":"link","link":{"title":"t","description":"d","url":"http://u","thumb_url":"http://p"}}"#,
        r#"{"touser":"oMP","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"pages/a","thumb_media_id":"THUMB"}}"#,
    ];
    for body in mp_bodies {
        assert_eq!(send(&sandbox, &mp, body).await, 0, "{body}");
    }
    let (status, listed) = get(
        &sandbox,
        &format!("/sandbox/accounts/{DEFAULT_OA_APPID}/messages?openid=oUSER"),
    )
    .await;
    assert_eq!(status, 200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), oa_bodies.len());
    for (record, body) in listed.iter().zip(oa_bodies) {
        assert_eq!(record["body"], body);
        assert_eq!(record["path"], "/cgi-bin/message/custom/send");
        assert_eq!(record["appid"], DEFAULT_OA_APPID);
    }
    assert_eq!(listed[8]["kind"], "msgmenu");
    let mp_listed = sandbox.api_requests(DEFAULT_MP_APPID, Some("oMP")).unwrap();
    let kinds: Vec<&str> = mp_listed.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["text", "image", "link", "miniprogrampage"]);
    sandbox.stop().await;
}

#[tokio::test]
async fn the_quota_is_five_per_user_message_and_a_new_message_resets_it() {
    let sandbox = start(sandbox_config()).await;
    let token = oa_token(&sandbox).await;
    let (status, user) = post(
        &sandbox,
        &format!("/sandbox/accounts/{DEFAULT_OA_APPID}/users/oUSER/write"),
    )
    .await;
    assert_eq!((status, user["sent_since_wrote"].as_u64()), (200, Some(0)));
    for n in 0..5 {
        assert_eq!(
            send(&sandbox, &token, &text("oUSER", &n.to_string())).await,
            0
        );
    }
    assert_eq!(send(&sandbox, &token, &text("oUSER", "6")).await, 45047);
    let (_, user) = get(
        &sandbox,
        &format!("/sandbox/accounts/{DEFAULT_OA_APPID}/users/oUSER"),
    )
    .await;
    assert_eq!(user["sent_since_wrote"], 5);
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    assert_eq!(send(&sandbox, &token, &text("oUSER", "again")).await, 0);
    sandbox.stop().await;
}

#[tokio::test]
async fn the_send_window_closes_and_the_official_account_push_opens_it() {
    let mut config = sandbox_config();
    config.api.send_window = Duration::from_millis(300);
    let mut oa = OaAccount::new("OaToken", KEY, DEFAULT_OA_APPID);
    oa.callback_url = None;
    config.oa = Some(oa);
    let sandbox = start(config).await;
    let token = oa_token(&sandbox).await;
    // The user writes to the Official Account: the push opens the window of the same AppID.
    sandbox.oa_say("oUSER", OaSay::new("你好")).await.unwrap();
    assert_eq!(send(&sandbox, &token, &text("oUSER", "answer")).await, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(send(&sandbox, &token, &text("oUSER", "late")).await, 45015);
    let typing_path = "/cgi-bin/message/custom/typing";
    assert_eq!(
        typing(&sandbox, typing_path, &token, "oUSER", "Typing").await,
        45015
    );
    sandbox.oa_say("oUSER", OaSay::new("again")).await.unwrap();
    assert_eq!(send(&sandbox, &token, &text("oUSER", "answer")).await, 0);
    sandbox.stop().await;
}

#[tokio::test]
async fn typing_codes() {
    let mut config = sandbox_config();
    config.api.typing_interaction = Duration::from_millis(300);
    let sandbox = start(config).await;
    let oa = oa_token(&sandbox).await;
    let mp = fetch_token(&sandbox, DEFAULT_MP_APPID, DEFAULT_MP_SECRET, false).await;
    let oa_path = "/cgi-bin/message/custom/typing";
    let mp_path = "/cgi-bin/message/custom/business/typing";
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    sandbox.api_user_writes(DEFAULT_MP_APPID, "oMP").unwrap();

    assert_eq!(
        typing(&sandbox, oa_path, "", "oUSER", "Typing").await,
        41001
    );
    assert_eq!(typing(&sandbox, oa_path, &mp, "oMP", "Typing").await, 40200);
    assert_eq!(
        typing(&sandbox, mp_path, &oa, "oUSER", "Typing").await,
        40200
    );
    assert_eq!(
        typing(&sandbox, oa_path, &oa, "oUSER", "typing").await,
        45072
    );
    assert_eq!(typing(&sandbox, oa_path, &oa, "oMP", "Typing").await, 40003);
    assert_eq!(typing(&sandbox, oa_path, &oa, "oUSER", "Typing").await, 0);
    assert_eq!(
        typing(&sandbox, oa_path, &oa, "oUSER", "Typing").await,
        45081
    );
    // A message cancels the typing state.
    assert_eq!(send(&sandbox, &oa, &text("oUSER", "hi")).await, 0);
    assert_eq!(typing(&sandbox, oa_path, &oa, "oUSER", "Typing").await, 0);
    assert_eq!(
        typing(&sandbox, oa_path, &oa, "oUSER", "CancelTyping").await,
        0
    );
    assert_eq!(typing(&sandbox, mp_path, &mp, "oMP", "Typing").await, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        typing(&sandbox, oa_path, &oa, "oUSER", "Typing").await,
        45080
    );

    let commands: Vec<String> = sandbox
        .api_requests(DEFAULT_OA_APPID, Some("oUSER"))
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.path, r.kind))
        .collect();
    assert_eq!(
        commands,
        [
            "/cgi-bin/message/custom/typing Typing",
            "/cgi-bin/message/custom/send text",
            "/cgi-bin/message/custom/typing Typing",
            "/cgi-bin/message/custom/typing CancelTyping",
        ]
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn faults_answer_minus_one_or_drop_after_accepting() {
    let mut config = sandbox_config();
    config.system_error_rate = 1.0;
    let sandbox = start(config).await;
    let body = json!({"grant_type":"client_credential","appid":DEFAULT_OA_APPID,"secret":DEFAULT_OA_SECRET});
    let answer = call(
        &sandbox,
        "/cgi-bin/stable_token",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(code(&answer), -1);
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("system error rid: ")
    );
    sandbox.stop().await;

    let mut config = sandbox_config();
    config.drop_rate = 1.0;
    let sandbox = start(config).await;
    sandbox.api_user_writes(DEFAULT_OA_APPID, "oUSER").unwrap();
    let url = format!("{}/cgi-bin/stable_token", sandbox.api_base_url());
    let dropped = exchange(Method::POST, &url, body.to_string().as_bytes()).await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        sandbox.api_account(DEFAULT_OA_APPID).unwrap().token_fetches,
        1
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn configured_accounts_replace_the_defaults() {
    let mut config = sandbox_config();
    config.api = ApiSettings {
        accounts: vec![ApiAccount::new(AccountKind::Mp, "wxmine", "MySecret")],
        ..ApiSettings::default()
    };
    let sandbox = start(config).await;
    assert!(sandbox.api_account(DEFAULT_OA_APPID).is_none());
    let mine = fetch_token(&sandbox, "wxmine", "MySecret", false).await;
    assert!(!mine.is_empty());
    sandbox.stop().await;

    let mut config = sandbox_config();
    config
        .api
        .accounts
        .push(ApiAccount::new(AccountKind::Oa, DEFAULT_OA_APPID, "x"));
    let error = Sandbox::start(config).await.unwrap_err();
    assert!(error.to_string().contains("--api-account"), "{error}");
}

/// The `kefu-sandbox` binary: its startup line, a token and a message through it, and at trace
/// level no AppSecret or access token in its logs; it stops on SIGTERM.
#[test]
fn the_binary_serves_the_api_and_logs_no_secret() {
    let mut child = common::spawn_logging(
        env!("CARGO_BIN_EXE_kefu-sandbox"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            "BinToken",
            "--aes-key",
            KEY,
            "--bot-appid",
            "BinBot",
            "--api-account",
            "oa:wxBinary:BinarySecret0123",
        ],
        "trace",
    );
    let line = common::startup_line(&mut child);
    let api = common::startup_field(&line, "api_base_url");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime.block_on(async {
        let body = json!({"grant_type":"client_credential","appid":"wxBinary","secret":"BinarySecret0123"});
        let url = format!("{api}/cgi-bin/stable_token");
        let (_, answer) = exchange(Method::POST, &url, body.to_string().as_bytes())
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let token = answer["access_token"].as_str().unwrap().to_owned();
        let write = format!("{api}/sandbox/accounts/wxBinary/users/oUSER/write");
        assert_eq!(exchange(Method::POST, &write, b"").await.unwrap().0, 200);
        let url = format!("{api}/cgi-bin/message/custom/send?access_token={token}");
        let (_, answer) = exchange(Method::POST, &url, text("oUSER", "hi").as_bytes())
            .await
            .unwrap();
        assert_eq!(answer, r#"{"errcode":0,"errmsg":"ok"}"#);
        token
    });

    let status = common::terminate(&mut child);
    let stderr = common::stderr_of(&mut child);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("/cgi-bin/message/custom/send"), "{stderr}");
    assert!(stderr.contains("oa:wxBinary"), "{stderr}");
    assert!(
        !stderr.contains(&token),
        "no access token in the logs:\n{stderr}"
    );
    assert!(
        !stderr.contains("BinarySecret0123"),
        "no AppSecret in the logs:\n{stderr}"
    );
    assert!(
        !stderr.contains("BinToken"),
        "no TOKEN in the logs:\n{stderr}"
    );
}
