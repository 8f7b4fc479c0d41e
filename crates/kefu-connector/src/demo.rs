//! `kefu-connector demo`: the whole handoff on loopback, with no setup.
//!
//! It starts the sandbox (the platform) and the relay in-process, with the outbox in a temporary
//! directory, plays the desk through the relay's API, and prints what the sandbox received,
//! decrypted.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::desk::Desk;
use crate::loopback::{Loopback, OA_APPID};
use crate::sandbox::SandboxConfig;

const TOKEN: &str = "DEMOTOKEN0123456789abcdefghij";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const BOT_APPID: &str = "Gg8HejYTkUsEIlG";
const USER: &str = "oDEMO_user_0001";

/// Arguments of `demo` (none are needed).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to wait for every message to be delivered, in seconds.
    #[arg(long, default_value_t = 20)]
    pub timeout_secs: u64,
}

/// Runs the demo; exit status 0 when every step was delivered as expected.
pub fn run(args: DemoArgs) -> ExitCode {
    crate::runtime::block_on(async {
        match play(Duration::from_secs(args.timeout_secs)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("demo failed: {message}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn play(timeout: Duration) -> Result<(), String> {
    let setup = Loopback::start(SandboxConfig::new(TOKEN, AES_KEY, BOT_APPID), &[]).await?;
    let (sandbox, relay) = (&setup.sandbox, &setup.relay);

    println!("kefu-connector demo");
    println!("  sandbox (the platform): {}", sandbox.base_url());
    println!("  relay (the desk API):   http://{}", relay.addr);
    println!(
        "  outbox:                 {}",
        setup.outbox_path().display()
    );
    println!();

    let desk = &setup.desk;
    let user = Desk::new(format!("http://{}", sandbox.addr()), "");
    let mut ids = Vec::new();

    step(1, "the user asks for a person");
    let said = user
        .post(
            &format!("/sandbox/users/{USER}/say"),
            &json!({"text": "我要转人工", "channel": 0, "appid": OA_APPID}),
        )
        .await
        .map_err(|e| e.to_string())?;
    expect_status(&said.status, 200, &said.text)?;
    println!(
        "   {USER}: \"我要转人工\" → state {}",
        user_state(&user).await?
    );

    step(
        2,
        "the desk takes the session (kefustate → personserving, then waiterEnter)",
    );
    ids.extend(
        session(
            desk,
            "enter",
            json!({"channel": 0, "kefuname": "客服小红", "kefuavatar": "https://example.com/avatar.png"}),
        )
        .await?,
    );

    step(
        3,
        "the agent answers: a text, a news card and a mini-program card",
    );
    for msg in [
        json!("您好,我是客服小红。请问有什么可以帮您?"),
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
        let reply = desk
            .post(
                "/v1/messages",
                &json!({"openid": USER, "channel": 0, "msg": msg, "kefuname": "客服小红"}),
            )
            .await
            .map_err(|e| e.to_string())?;
        expect_status(&reply.status, 202, &reply.text)?;
        ids.push(reply.body["id"].as_i64().unwrap_or_default());
    }
    println!("   stored as messages {:?}", &ids[ids.len() - 3..]);

    step(4, "the agent asks for a rating (waiterQualityEvaluate)");
    ids.extend(session(desk, "evaluate", json!({"channel": 0})).await?);

    step(
        5,
        "the agent leaves (waiterQuit, then kefustate → complete)",
    );
    ids.extend(session(desk, "quit", json!({"channel": 0})).await?);

    wait_until_delivered(desk, &ids, timeout).await?;
    println!();
    println!("Every step was delivered. The sandbox received, decrypted, in order:");
    for message in sandbox.messages(Some(USER)) {
        let value = serde_json::to_value(&message).unwrap_or(Value::Null);
        println!(
            "  #{} {} {}",
            value["seq"],
            value["event"].as_str().unwrap_or("message"),
            value["msg"]
        );
        println!("      {}", value["xml"].as_str().unwrap_or_default());
    }
    println!("Final state of {USER}: {}", user_state(&user).await?);

    setup.stop().await;
    Ok(())
}

fn step(number: u32, what: &str) {
    println!("{number}. {what}");
}

fn expect_status(status: &hyper::StatusCode, expected: u16, body: &str) -> Result<(), String> {
    if status.as_u16() == expected {
        Ok(())
    } else {
        Err(format!("expected HTTP {expected}, got {status}: {body}"))
    }
}

async fn session(desk: &Desk, action: &str, body: Value) -> Result<Vec<i64>, String> {
    let reply = desk
        .post(&format!("/v1/sessions/{USER}/{action}"), &body)
        .await
        .map_err(|e| e.to_string())?;
    expect_status(&reply.status, 202, &reply.text)?;
    let ids: Vec<i64> = reply.body["ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    println!("   stored as messages {ids:?}");
    Ok(ids)
}

async fn user_state(user: &Desk) -> Result<String, String> {
    let reply = user
        .get(&format!("/sandbox/users/{USER}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.body["status"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned())
}

async fn wait_until_delivered(desk: &Desk, ids: &[i64], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for id in ids {
        loop {
            let reply = desk
                .get(&format!("/v1/messages/{id}"))
                .await
                .map_err(|e| e.to_string())?;
            match reply.body["status"].as_str() {
                Some("delivered") => break,
                Some("failed" | "ambiguous") => {
                    return Err(format!("message {id} was not delivered: {}", reply.body));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(format!("message {id} still not delivered: {}", reply.body));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}
