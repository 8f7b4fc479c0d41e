//! The operator console as a person uses it, in a real headless Chromium (WebDriver) against a
//! relay and the sandbox on loopback, and its refusals over plain HTTP.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/relay.rs"]
mod relay;

use std::time::Duration;

use bytes::Bytes;
use fantoccini::Locator;
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kefu_connector::console::password::hash_password;
use kefu_connector::sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

use browser::Browser;
use relay::{Setup, sandbox_config, settings, status_in};

const API_KEY: &str = "console-test-desk-key-0123";
const PASSWORD: &str = "the operators' long password";

/// A message whose text would run a script if the console put it on the page as HTML.
const HOSTILE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

/// A relay on `sandbox` with the console on, its password [`PASSWORD`].
async fn relay_with_console(sandbox: Sandbox, outbox: &std::path::Path) -> Setup {
    let mut settings = settings(&sandbox, outbox, API_KEY);
    settings.push((
        "KEFU_CONSOLE_PASSWORD_HASH",
        hash_password(PASSWORD).unwrap(),
    ));
    Setup::start(sandbox, &settings, API_KEY).await
}

/// `(status, headers, body)` of one request with `headers`.
async fn http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, HeaderMap, String) {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// `GET url` with the session `cookie` (none when empty).
async fn get_as(url: &str, cookie: &str) -> (u16, HeaderMap, String) {
    let headers: Vec<(&str, &str)> = if cookie.is_empty() {
        Vec::new()
    } else {
        vec![("cookie", cookie)]
    };
    http(Method::GET, url, &headers, "").await
}

/// The login form's content type.
const FORM: &str = "application/x-www-form-urlencoded";

/// The login form's body with `password`.
fn login_form(password: &str) -> String {
    format!(
        "password={}",
        password.replace(' ', "+").replace('\'', "%27")
    )
}

/// The session cookie (`name=value`) a login answered with.
fn cookie_in(headers: &HeaderMap) -> String {
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token in the console's page.
fn csrf_in(page: &str) -> String {
    page.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned()
}

/// Posts messages for `openid` until the sandbox's drop fault leaves one ambiguous; its id.
async fn an_ambiguous_message(setup: &Setup, openid: &str) -> i64 {
    for attempt in 0..40 {
        let reply = setup
            .desk
            .post(
                "/v1/messages",
                &json!({"openid": openid, "channel": 0, "appid": "wx2222222222222222", "msg": format!("{HOSTILE} #{attempt}")}),
            )
            .await
            .unwrap();
        let id = reply.body["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}", reply.text));
        let status = status_in(&setup.desk, id, &["delivered", "failed", "ambiguous"]).await;
        if status["status"] == "ambiguous" {
            return id;
        }
    }
    panic!("a 50% drop rate left no message of 40 ambiguous");
}

async fn log_in(browser: &Browser, base: &str, operator: &str, password: &str) {
    let client = &browser.client;
    client.goto(&format!("{base}/console/login")).await.unwrap();
    client
        .find(Locator::Id("operator"))
        .await
        .unwrap()
        .send_keys(operator)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    client
        .find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resends_an_ambiguous_message_and_watches_it_delivered_once() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut config: SandboxConfig = sandbox_config();
    config.drop_rate = 0.5;
    config.seed = Some(5);
    let sandbox = Sandbox::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = relay_with_console(sandbox, &dir.path().join("outbox.sqlite3")).await;
    let base = format!("http://{}", setup.relay.addr);
    let openid = "oBrowserUser";
    let id = an_ambiguous_message(&setup, openid).await;
    let text = setup
        .desk
        .get(&format!("/v1/messages/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(text["status"], "ambiguous");
    // A dropped request never reached the platform's records.
    let wire_before = setup.sandbox.messages(Some(openid)).len();

    // A wrong password is refused, and the console stays closed.
    log_in(&browser, &base, "mallory", "not the password at all").await;
    let error = browser.text_of("#login-error").await;
    assert_eq!(error, "Wrong password.");
    browser
        .client
        .goto(&format!("{base}/console#/messages"))
        .await
        .unwrap();
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/console/login", "no session, no console");

    // The right one opens it; the session cookie is HttpOnly and SameSite=Strict.
    log_in(&browser, &base, "ana", PASSWORD).await;
    browser.text_of("#accounts").await;
    let cookie = browser
        .client
        .get_named_cookie("kefu_console")
        .await
        .unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(cookie.path(), Some("/console"));

    // The ambiguous message is listed, its text shown as text and not run.
    browser
        .client
        .goto(&format!("{base}/console#/messages"))
        .await
        .unwrap();
    let row = format!("tr[data-job-id=\"{id}\"]");
    let status = browser.text_of(&format!("{row} td.status")).await;
    assert_eq!(status, "ambiguous");
    let payload = browser.text_of(&format!("{row} td.payload")).await;
    assert!(
        payload.contains("<script>window.__pwned = 1</script>"),
        "{payload}"
    );
    let pwned = browser
        .client
        .execute("return window.__pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true), "a message's script ran in the console");

    // The page refreshes itself, and what the operator is typing in the filters stays.
    browser.click("#filter-reason").await;
    browser
        .client
        .find(Locator::Id("filter-reason"))
        .await
        .unwrap()
        .send_keys("window")
        .await
        .unwrap();
    let updated = browser.text_of("#updated").await;
    browser.until_text("#updated", |t| t != updated).await;
    let typing = browser
        .client
        .execute(
            "return [document.activeElement.id, document.activeElement.value]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        typing,
        json!(["filter-reason", "window"]),
        "a refresh lost the filter"
    );

    // An action without the page's CSRF token is refused and changes nothing.
    let refused = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/console/api/resend', {method: 'POST', credentials: 'same-origin',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({ids: [arguments[0]], action: 'forged-click-0001'})})
               .then(r => done(r.status), e => done(String(e)));",
            vec![json!(id)],
        )
        .await
        .unwrap();
    assert_eq!(refused, json!(403));
    let unchanged = setup
        .desk
        .get(&format!("/v1/messages/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(
        unchanged["status"], "ambiguous",
        "the forged resend was done"
    );

    // Resend it from the list, then watch it in the user's timeline until it is delivered
    // (the sandbox drops half the requests: an attempt dropped again is resent again).
    browser.click(&format!("{row} button.resend")).await;
    browser
        .until_text("#flash", |text| text.starts_with("1 queued again"))
        .await;
    browser
        .client
        .goto(&format!("{base}/console#/user/dialogue/{openid}"))
        .await
        .unwrap();
    let item = format!("li[data-job-id=\"{id}\"]");
    let mut resends = 1;
    loop {
        let status = browser
            .until_text(&format!("{item} .status"), |s| {
                matches!(s, "delivered" | "ambiguous")
            })
            .await;
        if status == "delivered" {
            break;
        }
        resends += 1;
        assert!(resends <= 10, "ten resends were all dropped");
        browser.click(&format!("{item} button.resend")).await;
        browser
            .until_text(&format!("{item} .status"), |s| s != "ambiguous")
            .await;
    }
    let meta = browser.text_of(&format!("{item} .meta")).await;
    assert!(meta.contains("resent by ana (session "), "{meta}");
    // The platform received it exactly once more.
    let wire: Vec<String> = setup
        .sandbox
        .messages(Some(openid))
        .iter()
        .map(|m| m.msg.to_wire())
        .collect();
    assert_eq!(wire.len(), wire_before + 1, "{wire:?}");
    let delivered = setup
        .desk
        .get(&format!("/v1/messages/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(delivered["status"], "delivered");
    let pwned = browser
        .client
        .execute("return window.__pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true), "a message's script ran in the timeline");

    browser.stop().await;
    setup.stop().await;
}

#[tokio::test]
async fn the_console_refuses_what_it_must_over_plain_http() {
    let sandbox = Sandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = relay_with_console(sandbox, &dir.path().join("outbox.sqlite3")).await;
    let base = format!("http://{}", setup.relay.addr);

    // Every answer forbids inline scripts and framing.
    let (status, headers, page) = get_as(&format!("{base}/console/login"), "").await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.contains("name=\"password\""));

    // Without a session: the page sends to the login, the data is 401.
    let (status, headers, _) = get_as(&format!("{base}/console"), "").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/login");
    let (status, _, _) = get_as(&format!("{base}/console/api/overview"), "").await;
    assert_eq!(status, 401);

    // The desk's bearer key opens nothing of the console.
    let bearer = format!("Bearer {API_KEY}");
    let (status, _, _) = http(
        Method::GET,
        &format!("{base}/console/api/messages"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 401);

    // A login from another site is refused before the password is checked.
    let form = FORM;
    let body = login_form(PASSWORD);
    let (status, _, _) = http(
        Method::POST,
        &format!("{base}/console/login"),
        &[("content-type", form), ("origin", "http://evil.example")],
        &body,
    )
    .await;
    assert_eq!(status, 403);

    // The right password: a cookie that is HttpOnly, SameSite=Strict, expiring.
    let (status, headers, _) = http(
        Method::POST,
        &format!("{base}/console/login"),
        &[("content-type", form)],
        &body,
    )
    .await;
    assert_eq!(status, 303);
    let set_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(set_cookie.contains("Max-Age=28800") && !set_cookie.contains("Secure"));
    let cookie = cookie_in(&headers);
    // Behind a TLS proxy it is Secure.
    let (_, headers, _) = http(
        Method::POST,
        &format!("{base}/console/login"),
        &[("content-type", form), ("x-forwarded-proto", "https")],
        &body,
    )
    .await;
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );

    // A logged-in action without the CSRF token, or with a wrong one, is refused.
    let (status, _, page) = get_as(&format!("{base}/console"), &cookie).await;
    assert_eq!(status, 200);
    let csrf = csrf_in(&page);
    let action = r#"{"ids":[1],"action":"click-0000001"}"#;
    for token in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/json"),
        ];
        if !token.is_empty() {
            headers.push(("x-csrf-token", token));
        }
        let (status, _, _) = http(
            Method::POST,
            &format!("{base}/console/api/resolve"),
            &headers,
            action,
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, _, answer) = http(
        Method::POST,
        &format!("{base}/console/api/resolve"),
        &[
            ("cookie", &cookie),
            ("content-type", "application/json"),
            ("x-csrf-token", &csrf),
        ],
        action,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["unchanged"], json!([1]));

    // Wrong passwords are slowed down: after three, the next waits, whatever it is.
    let wrong = "password=wrong-wrong-wrong";
    for _ in 0..3 {
        let (status, _, _) = http(
            Method::POST,
            &format!("{base}/console/login"),
            &[("content-type", form)],
            wrong,
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, headers, _) = http(
        Method::POST,
        &format!("{base}/console/login"),
        &[("content-type", form)],
        &body,
    )
    .await;
    assert_eq!(status, 429, "the right password waits its turn too");
    assert_eq!(headers["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = http(
        Method::POST,
        &format!("{base}/console/login"),
        &[("content-type", form)],
        &body,
    )
    .await;
    assert_eq!(status, 303);

    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sent_together_cannot_outrun_the_slowing_down() {
    let sandbox = Sandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = relay_with_console(sandbox, &dir.path().join("outbox.sqlite3")).await;
    let url = format!("http://{}/console/login", setup.relay.addr);
    let form = [("content-type", FORM)];

    // Twenty wrong passwords at once from one address: one is checked at a time, and each
    // counts from its start, so no more than the free three are ever checked.
    let tries: Vec<_> = (0..20)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move {
                let body = format!("password=wrong-guess-{n}");
                http(Method::POST, &url, &form, &body).await.0
            })
        })
        .collect();
    let mut checked = 0;
    for attempt in tries {
        match attempt.await.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("a wrong password answered {other}"),
        }
    }
    assert!(
        (1..=3).contains(&checked),
        "{checked} passwords were checked"
    );

    // A login form is small: a large one is refused unread.
    let huge = format!("password={}", "x".repeat(100 * 1024));
    let (status, _, _) = http(Method::POST, &url, &form, &huge).await;
    assert_eq!(status, 413);

    // Any other path under /console is 404, with the console's policy.
    let (status, headers, _) = http(
        Method::GET,
        &format!("http://{}/console/nothing/here", setup.relay.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(headers.contains_key("content-security-policy"));
    setup.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_slowed_down_alone() {
    let sandbox = Sandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&sandbox, &dir.path().join("outbox.sqlite3"), API_KEY);
    settings.push((
        "KEFU_CONSOLE_PASSWORD_HASH",
        hash_password(PASSWORD).unwrap(),
    ));
    settings.push(("KEFU_CONSOLE_TRUSTED_PROXIES", "127.0.0.1".to_owned()));
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    let url = format!("http://{}/console/login", setup.relay.addr);
    let login = |client: &'static str, password: String| {
        let url = url.clone();
        async move {
            let headers = [("content-type", FORM), ("x-forwarded-for", client)];
            http(Method::POST, &url, &headers, &login_form(&password))
                .await
                .0
        }
    };
    for _ in 0..3 {
        assert_eq!(login("198.51.100.7", "wrong".into()).await, 401);
    }
    assert_eq!(login("198.51.100.7", PASSWORD.into()).await, 429);
    assert_eq!(
        login("203.0.113.20", PASSWORD.into()).await,
        303,
        "another client behind the same proxy is not locked out"
    );
    setup.stop().await;
}

#[tokio::test]
async fn without_a_password_hash_there_is_no_console() {
    let sandbox = Sandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&sandbox, &dir.path().join("outbox.sqlite3"), API_KEY);
    let setup = Setup::start(sandbox, &settings, API_KEY).await;
    let base = format!("http://{}", setup.relay.addr);
    for path in ["/console", "/console/login", "/console/api/overview"] {
        let (status, _, _) = get_as(&format!("{base}{path}"), "").await;
        assert_eq!(status, 404, "{path}");
    }
    setup.stop().await;
}

/// Logs in to the console at `base` over plain HTTP; the session's cookie and CSRF token.
async fn http_login(base: &str) -> (String, String) {
    let url = format!("{base}/console/login");
    let (status, headers, _) = http(
        Method::POST,
        &url,
        &[("content-type", FORM)],
        &login_form(PASSWORD),
    )
    .await;
    assert_eq!(status, 303);
    let cookie = cookie_in(&headers);
    let (_, _, page) = get_as(&format!("{base}/console"), &cookie).await;
    (cookie, csrf_in(&page))
}

/// The console's JSON at `path`, with the session `cookie`.
async fn console_json(base: &str, path: &str, cookie: &str) -> Value {
    let (status, _, body) = get_as(&format!("{base}{path}"), cookie).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_fleet_every_relay_shows_the_same_messages_and_marks() {
    let Some(db) = kefu_store_postgres::testing::fresh_database().await else {
        return;
    };
    let mut config = sandbox_config();
    config.drop_rate = 0.5;
    config.seed = Some(5);
    let sandbox = Sandbox::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut first = settings(&sandbox, &dir.path().join("unused.sqlite3"), API_KEY);
    first.push(("KEFU_STORE_URL", db.cluster.url(&db.name)));
    first.push((
        "KEFU_CONSOLE_PASSWORD_HASH",
        hash_password(PASSWORD).unwrap(),
    ));
    let mut second = first.clone();
    first.push(("KEFU_STORE_RELAY_NAME", "console-one".to_owned()));
    second.push(("KEFU_STORE_RELAY_NAME", "console-two".to_owned()));
    let setup = Setup::start(sandbox, &first, API_KEY).await;
    let other = kefu_connector::serve::Relay::start(
        &kefu_connector::config::Config::from_settings(&second).unwrap(),
    )
    .await
    .unwrap();
    let id = an_ambiguous_message(&setup, "oFleetUser").await;
    let one = format!("http://{}", setup.relay.addr);
    let two = format!("http://{}", other.addr);
    let (cookie_one, _) = http_login(&one).await;
    let (cookie_two, csrf_two) = http_login(&two).await;

    // Posted through the first relay, listed by the second.
    let listed = console_json(&two, "/console/api/messages?account=dialogue", &cookie_two).await;
    let ids: Vec<i64> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&id), "{listed}");
    let overview = console_json(&two, "/console/api/overview", &cookie_two).await;
    assert_eq!(overview["store"]["backend"], "postgres");
    assert!(
        overview["accounts"][0]["states"]["ambiguous"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // Resolved on the second relay: gone from the first's list, shown with its mark there.
    let (status, _, answer) = http(
        Method::POST,
        &format!("{two}/console/api/resolve"),
        &[
            ("cookie", &cookie_two),
            ("content-type", "application/json"),
            ("x-csrf-token", &csrf_two),
        ],
        &format!(r#"{{"ids":[{id}],"action":"fleet-resolve-1"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let listed = console_json(&one, "/console/api/messages", &cookie_one).await;
    assert!(
        listed["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != id),
        "{listed}"
    );
    let listed = console_json(&one, "/console/api/messages?resolved=true", &cookie_one).await;
    let marked = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .expect("listed with the resolved ones")
        .clone();
    assert_eq!(marked["mark"]["action"], "resolve");
    assert!(
        marked["mark"]["operator"]
            .as_str()
            .unwrap()
            .starts_with("session ")
    );

    // A login on one relay is no login on the other.
    let (status, _, _) = get_as(&format!("{one}/console/api/overview"), &cookie_two).await;
    assert_eq!(status, 401);

    other.stop().await;
    setup.stop().await;
}

/// Takes the README's screenshots of the console (`examples/console/screenshots.sh` runs it):
/// users who wrote and asked for a person, messages delivered and some left ambiguous by the
/// sandbox's drop fault, then the overview and one user's timeline, from the same browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by examples/console/screenshots.sh"]
async fn take_the_readme_screenshots() {
    use kefu_connector::loopback::{Loopback, OA_APPID};
    use kefu_connector::sandbox::{AskForPerson, Say};

    let out = std::path::PathBuf::from(
        std::env::var("KEFU_SCREENSHOTS_DIR").expect("KEFU_SCREENSHOTS_DIR: where to save"),
    );
    let browser = Browser::start().await.expect("chromium and chromedriver");
    let mut config = sandbox_config();
    config.drop_rate = 0.25;
    config.seed = Some(2);
    config.latency = Duration::from_millis(40);
    let setup = Loopback::start(
        config,
        &[(
            "KEFU_CONSOLE_PASSWORD_HASH",
            hash_password(PASSWORD).unwrap(),
        )],
    )
    .await
    .unwrap();
    let base = format!("http://{}", setup.relay.addr);
    let users = ["oZhangWei", "oLiNa", "oWangFang", "oChenJie"];
    let say = |text: &str| Say {
        text: text.to_owned(),
        channel: Some(0),
        appid: Some(OA_APPID.to_owned()),
    };
    let questions = [
        "你好,我的订单还没有发货",
        "能改一下收货地址吗?",
        "好的,谢谢",
    ];
    let answers = [
        "您好,订单已发货,<b>请查收</b>",
        "可以,请把新地址发给我",
        "不客气,祝您生活愉快",
    ];
    for (question, answer) in questions.iter().zip(answers) {
        for user in users {
            setup.sandbox.say(user, say(question)).await.unwrap();
            let reply = setup
                .desk
                .post(
                    "/v1/messages",
                    &json!({"openid": user, "channel": 0, "msg": answer}),
                )
                .await
                .unwrap();
            let id = reply.body["id"].as_i64().unwrap();
            status_in(&setup.desk, id, &["delivered", "failed", "ambiguous"]).await;
        }
    }
    for user in users.iter().step_by(2) {
        setup
            .sandbox
            .ask_for_person(user, AskForPerson::new())
            .await
            .unwrap();
    }
    log_in(&browser, &base, "ana", PASSWORD).await;
    browser.text_of("#accounts").await;
    browser
        .until_text("#updated", |t| t.starts_with("Updated"))
        .await;
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("overview.png"),
        browser.client.screenshot().await.unwrap(),
    )
    .unwrap();
    browser
        .client
        .goto(&format!("{base}/console#/user/dialogue/{}", users[0]))
        .await
        .unwrap();
    browser.text_of("#timeline").await;
    std::fs::write(
        out.join("timeline.png"),
        browser.client.screenshot().await.unwrap(),
    )
    .unwrap();
    browser
        .client
        .goto(&format!("{base}/console#/messages"))
        .await
        .unwrap();
    browser.text_of("#messages, #messages-empty").await;
    std::fs::write(
        out.join("messages.png"),
        browser.client.screenshot().await.unwrap(),
    )
    .unwrap();
    browser.stop().await;
    setup.stop().await;
}
