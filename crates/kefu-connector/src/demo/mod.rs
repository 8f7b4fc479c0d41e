//! `kefu-connector demo`: the whole handoff loop on loopback, with no setup.
//!
//! It starts three things in-process: the sandbox (the platform, playing the user), the relay
//! (with its outbox in a temporary directory), and a small built-in desk that receives the
//! relay's signed webhooks and answers through the relay's API. Then:
//!
//! 1. the user asks for a person; the platform's callback reaches the relay, which stores it and
//!    pushes a `handoff_requested` event to the desk;
//! 2. the desk takes the session (`enter`), answers with a text, a news card and a mini-program
//!    card, and asks for a rating;
//! 3. the user rates the service; the `rating` event reaches the desk, which thanks the user and
//!    leaves (`quit`).
//!
//! It prints what the sandbox received, decrypted, and the relay's view of the session. Then the
//! same relay serves an Official Account conversation (see `oa.rs`): the user writes to the OA,
//! the desk hears it, shows typing, answers through `custom/send`, and runs into the quota.
//! Then (see `vendors.rs`) a customer writes to the WeCom account yunzhenji drives, and the desk
//! answers through yunzhenji and reaches the OA's user through the company gateway.
//! Finally it prints what to run next. The desk acts in the demo's own task, so the output comes
//! in a fixed order.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Args;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::desk::Desk;
use crate::inbound::webhook;
use crate::loopback::Loopback;
use crate::sandbox::{SandboxConfig, Say};

mod oa;
mod vendors;

const TOKEN: &str = "DEMOTOKEN0123456789abcdefghij";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const BOT_APPID: &str = "Gg8HejYTkUsEIlG";
const WEBHOOK_SECRET: &str = "demo-webhook-secret-0123456789";
const USER: &str = "oDEMO_user_0001";
const AGENT: &str = "客服小红";

/// Arguments of `demo` (none are needed).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to wait for the whole loop, in seconds.
    #[arg(long, default_value_t = 20)]
    pub timeout_secs: u64,
}

/// Runs the demo; exit status 0 when the whole loop completed as expected.
pub fn run(args: DemoArgs) -> ExitCode {
    crate::runtime::block_on(async {
        match tokio::time::timeout(Duration::from_secs(args.timeout_secs), play()).await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(message)) => {
                eprintln!("demo failed: {message}");
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!(
                    "demo failed: the loop did not complete in {} s",
                    args.timeout_secs
                );
                ExitCode::FAILURE
            }
        }
    })
}

/// The built-in desk: it answers through the relay's API. It acts in the demo's own task, one
/// step after another, so that what it prints comes in a fixed order.
struct BuiltInDesk {
    relay: Desk,
    /// Ids of the relay jobs the desk created, to wait for their delivery.
    jobs: Vec<i64>,
}

impl BuiltInDesk {
    async fn post(&mut self, path: &str, body: Value) -> Result<(), String> {
        let reply = self
            .relay
            .post(path, &body)
            .await
            .map_err(|e| e.to_string())?;
        if reply.status != 202 {
            return Err(format!("{path}: {} {}", reply.status, reply.text));
        }
        let ids = reply.body["ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
            .or_else(|| reply.body["id"].as_i64().map(|id| vec![id]))
            .unwrap_or_default();
        self.jobs.extend(ids);
        Ok(())
    }

    /// A user asked for a person: take the session, answer, and ask for a rating.
    async fn take_session(&mut self, openid: &str, channel: i64) -> Result<(), String> {
        println!("   desk: taking the session of {openid}");
        self.post(
            &format!("/v1/sessions/{openid}/enter"),
            json!({"channel": channel, "kefuname": AGENT, "kefuavatar": "https://example.com/avatar.png"}),
        )
        .await?;
        for msg in [
            json!("您好,我是客服小红。您的退货申请已经收到。"),
            json!({"news": {"articles": [{
                "title": "退换货说明",
                "description": "七天无理由退换",
                "url": "https://example.com/returns",
                "picurl": "https://example.com/returns.png",
                "type": "h5"
            }]}}),
            json!({"miniprogrampage": {
                "title": "查看订单",
                "appid": "wx1111111111111111",
                "pagepath": "pages/orders/index",
                "thumb_media_id": "MEDIA_ID_DEMO"
            }}),
        ] {
            self.post(
                "/v1/messages",
                json!({"openid": openid, "channel": channel, "msg": msg, "kefuname": AGENT}),
            )
            .await?;
        }
        println!("   desk: answered with a text, a news card and a mini-program card");
        self.post(
            &format!("/v1/sessions/{openid}/evaluate"),
            json!({"channel": channel}),
        )
        .await?;
        println!("   desk: asked {openid} to rate the service");
        Ok(())
    }

    /// The user rated: thank them and leave.
    async fn close_session(&mut self, openid: &str, channel: i64) -> Result<(), String> {
        self.post(
            &format!("/v1/sessions/{openid}/quit"),
            json!({"channel": channel, "msg": "感谢您的评价,再见!"}),
        )
        .await?;
        println!("   desk: thanked {openid} and left the session");
        Ok(())
    }
}

/// What the desk's webhook hands to the demo's task: a verified event, or why one was refused.
type Heard = Result<Value, String>;

/// The webhook side of the built-in desk.
struct Webhook {
    heard: mpsc::UnboundedSender<Heard>,
    /// Event ids already handed on: delivery is at least once.
    seen: Mutex<Vec<i64>>,
}

/// `POST /webhook` of the built-in desk: verify, acknowledge at once, and hand the event to the
/// demo's task, which prints and acts on it in order.
async fn webhook_received(
    State(webhook): State<Arc<Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let expected = webhook::signature(
        WEBHOOK_SECRET.as_bytes(),
        &header("X-Kefu-Timestamp"),
        &body,
    );
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(header("X-Kefu-Signature").as_bytes()),
    ) {
        let _ = webhook
            .heard
            .send(Err("the desk refused a webhook with a bad signature".into()));
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = event["id"].as_i64().unwrap_or_default();
    let first_time = match webhook.seen.lock() {
        Ok(mut seen) if !seen.contains(&id) => {
            seen.push(id);
            true
        }
        _ => false,
    };
    if first_time {
        let _ = webhook.heard.send(Ok(event));
    }
    StatusCode::OK
}

/// Waits for the next webhook event of `kind`, printing every event heard on the way.
async fn hear(heard: &mut mpsc::UnboundedReceiver<Heard>, kind: &str) -> Result<Value, String> {
    loop {
        let event = heard.recv().await.ok_or("the built-in desk stopped")??;
        let id = event["id"].as_i64().unwrap_or_default();
        let this = event["kind"].as_str().unwrap_or("other");
        let openid = event["openid"].as_str().unwrap_or_default();
        let on = match event["account"].as_str() {
            Some(account) => format!(" on \"{account}\""),
            None => String::new(),
        };
        // `openid` names the conversation: the user who wrote, or whom the relay's own message
        // (a yunzhenji `sent` or `send_failed` report) went to.
        let party = if matches!(this, "sent" | "send_failed") {
            "to"
        } else {
            "from"
        };
        println!(
            "   desk ← webhook event #{id} {this} {party} {openid}{on}{}",
            // yunzhenji's `content` is the vendor's JSON; its `text` is what the customer wrote.
            match (
                event["text"].as_str().or(event["content"].as_str()),
                event["assessment"].as_i64(),
            ) {
                (_, Some(stars)) if this == "rating" => format!(" ({stars} stars)"),
                (Some(text), _) if !text.is_empty() => format!(": \"{text}\""),
                _ => String::new(),
            }
        );
        if this == kind {
            return Ok(event);
        }
    }
}

async fn play() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the built-in desk: {e}"))?;
    let desk_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut sandbox = SandboxConfig::new(TOKEN, AES_KEY, BOT_APPID);
    sandbox.oa = Some(oa::account());
    let setup = Loopback::start(
        sandbox,
        &[
            ("KEFU_WEBHOOK_URL", format!("http://{desk_addr}/webhook")),
            ("KEFU_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("KEFU_WEBHOOK_INITIAL_BACKOFF_MS", "100".to_owned()),
        ],
    )
    .await?;
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/webhook", post(webhook_received))
        .with_state(Arc::new(Webhook {
            heard: heard_tx,
            seen: Mutex::new(Vec::new()),
        }));
    let desk_server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut desk = BuiltInDesk {
        relay: setup.desk.clone(),
        jobs: Vec::new(),
    };

    println!("kefu-connector demo");
    println!(
        "The sandbox plays WeChat's Dialogue platform, an Official Account's api.weixin.qq.com,"
    );
    println!(
        "yunzhenji, a company gateway and their users; the relay is `kefu-connector serve`, which"
    );
    println!("stores and forwards both ways;");
    println!("the built-in desk stands in for your agent desk.");
    println!("  sandbox (Dialogue):     {}", setup.sandbox.base_url());
    println!("  sandbox (cgi-bin):      {}", setup.sandbox.api_base_url());
    println!("  relay (the desk API):   http://{}", setup.relay.addr);
    println!(
        "  the OA's server URL:    http://{}/v1/callbacks/wechat/{}",
        setup.relay.addr,
        crate::loopback::OA_ACCOUNT
    );
    println!("  built-in desk webhook:  http://{desk_addr}/webhook");
    println!(
        "  outbox:                 {}",
        setup.outbox_path().display()
    );
    println!();

    let sandbox = &setup.sandbox;
    println!("1. the user asks for a person");
    let said = sandbox
        .say(USER, Say::new("我要转人工"))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "   {USER}: \"我要转人工\" → the platform's callback to the relay: {}",
        answered(&said.callback)
    );

    println!("2. the desk hears it, takes the session, answers and asks for a rating");
    let asked = hear(&mut heard, "handoff_requested").await?;
    desk.take_session(
        asked["openid"].as_str().unwrap_or(USER),
        asked["channel"].as_i64().unwrap_or(0),
    )
    .await?;
    while !sandbox.user(USER).evaluation_pending {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("3. the user rates the service: 5 stars");
    sandbox.rate(USER, 5).await.map_err(|e| e.to_string())?;

    println!("4. the desk hears the rating and leaves");
    let rated = hear(&mut heard, "rating").await?;
    desk.close_session(
        rated["openid"].as_str().unwrap_or(USER),
        rated["channel"].as_i64().unwrap_or(0),
    )
    .await?;
    loop {
        let session = session_of(&setup.desk, USER).await?;
        if session["state"] == "complete" && all_delivered(&setup.desk, &desk.jobs).await? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!();
    println!("The sandbox received, decrypted, in order:");
    for message in sandbox.messages(Some(USER)) {
        let event = message.event.map(|e| e.to_string());
        println!(
            "  #{} {} {}",
            message.seq,
            event.as_deref().unwrap_or("message"),
            message.msg.to_wire()
        );
        println!("      {}", message.xml);
    }
    let session = session_of(&setup.desk, USER).await?;
    println!(
        "The relay's session of {USER}: state {}, agent {}",
        session["state"], session["agent"]
    );
    println!(
        "The platform's state of {USER}: {}",
        sandbox.user(USER).status.as_str()
    );

    println!();
    oa::converse(&setup, &mut desk, &mut heard).await?;
    println!();
    vendors::converse(&setup, &mut desk, &mut heard).await?;

    setup.stop().await;
    desk_server.abort();
    println!();
    print!("{NEXT}");
    Ok(())
}

/// What to run next: the same pieces as separate processes, with kefu.example.toml.
const NEXT: &str = "\
Next, the same with separate processes and kefu.example.toml (from the repository's top level):
  kefu-connector sandbox --listen 127.0.0.1:9000 --token DEMOTOKEN0123456789 \\
      --aes-key abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG --bot-appid DEMOBOTAPPID0001 \\
      --callback-url http://127.0.0.1:8080/v1/callbacks/dialogue/demo-callback-secret-0123
  kefu-connector serve --config kefu.example.toml
  curl -H 'Authorization: Bearer demo-desk-key-0123456789' -H 'Content-Type: application/json' \\
      -d '{\"openid\":\"oUSER\",\"channel\":0,\"msg\":\"hello\"}' http://127.0.0.1:8080/v1/messages
  curl http://127.0.0.1:9000/sandbox/messages
For the Official Account, add its push to the sandbox and the account to the relay:
  kefu-connector sandbox … --oa-token DEMOOATOKEN0123456789 --oa-appid wx0a0a0a0a0a0a0a0a \\
      --oa-aes-key kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR \\
      --oa-callback-url http://127.0.0.1:8080/v1/callbacks/wechat/shop
  KEFU_CALLBACKS_WECHAT_ACCOUNTS=shop KEFU_WECHAT_SHOP_TOKEN=DEMOOATOKEN0123456789 \\
      KEFU_WECHAT_SHOP_AES_KEY=kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR \\
      KEFU_WECHAT_SHOP_RECEIVE_ID=wx0a0a0a0a0a0a0a0a KEFU_WECHAT_SHOP_SECRET=0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a \\
      KEFU_WECHAT_SHOP_API_BASE_URL=http://127.0.0.1:9000 kefu-connector serve --config kefu.example.toml
  curl -H 'Content-Type: application/json' -d '{\"text\":\"你好\"}' http://127.0.0.1:9000/sandbox/oa/users/oUSER/say
  curl -H 'Authorization: Bearer demo-desk-key-0123456789' -H 'Content-Type: application/json' \\
      -d '{\"account\":\"shop\",\"openid\":\"oUSER\",\"msg\":\"hello\"}' http://127.0.0.1:8080/v1/messages
  curl http://127.0.0.1:9000/sandbox/accounts/wx0a0a0a0a0a0a0a0a/messages
For yunzhenji and the company gateway, point yunzhenji's pushes at the relay and add both accounts:
  kefu-connector sandbox … \\
      --yzj-callback-url http://127.0.0.1:8080/v1/callbacks/yunzhenji/demo-yunzhenji-secret-0123456789
  KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS=wecom_sales KEFU_YUNZHENJI_WECOM_SALES_APP_ID=yzj-sandbox \\
      KEFU_YUNZHENJI_WECOM_SALES_ACCESS_TOKEN=yzj-sandbox-token KEFU_YUNZHENJI_WECOM_SALES_WXID=1688850000000001 \\
      KEFU_YUNZHENJI_WECOM_SALES_BASE_URL=http://127.0.0.1:9000 \\
      KEFU_YUNZHENJI_WECOM_SALES_CALLBACK_SECRET=demo-yunzhenji-secret-0123456789 \\
      KEFU_DELIVERY_GATEWAY_ACCOUNTS=feihe KEFU_GATEWAY_FEIHE_BASE_URL=http://127.0.0.1:9000 \\
      kefu-connector serve --config kefu.example.toml
  curl -H 'Content-Type: application/json' -d '{\"text\":\"你好\"}' http://127.0.0.1:9000/sandbox/yunzhenji/customers/7881300000000001/say
  curl -H 'Authorization: Bearer demo-desk-key-0123456789' -H 'Content-Type: application/json' \\
      -d '{\"account\":\"wecom_sales\",\"target_wxid\":\"7881300000000001\",\"msg\":\"hello\"}' http://127.0.0.1:8080/v1/messages
  curl http://127.0.0.1:9000/sandbox/yunzhenji/messages
Then `kefu-connector serve --help` for every setting, and `kefu-connector crypt --help` to decrypt by hand.
";

/// How the relay answered a push or callback of the sandbox: `HTTP 200 in 4 ms`.
fn answered(delivery: &impl serde::Serialize) -> String {
    let delivery = serde_json::to_value(delivery).unwrap_or_default();
    format!(
        "HTTP {} in {} ms",
        delivery["status"], delivery["elapsed_ms"]
    )
}

/// The relay's view of a user's session: `GET /v1/sessions/{openid}`.
async fn session_of(desk: &Desk, openid: &str) -> Result<Value, String> {
    let reply = desk
        .get(&format!("/v1/sessions/{openid}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.body)
}

async fn all_delivered(relay: &Desk, ids: &[i64]) -> Result<bool, String> {
    for id in ids {
        let status = relay
            .get(&format!("/v1/messages/{id}"))
            .await
            .map_err(|e| e.to_string())?
            .body;
        match status["status"].as_str() {
            Some("delivered") => {}
            Some("failed" | "ambiguous") => {
                return Err(format!("message {id} was not delivered: {status}"));
            }
            _ => return Ok(false),
        }
    }
    Ok(!ids.is_empty())
}
