//! The demo's yunzhenji and company-gateway part, through the same relay: a customer writes to
//! the WeCom account that yunzhenji drives, the desk hears it and answers with `target_wxid`;
//! the answer is accepted, echoed by a `chatMsg` push, and delivered once the confirm window
//! passes without a `chatMsgSendFail`. Then the desk reaches the Official Account's user through
//! the company gateway.

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::oa::{OA_USER, settled};
use super::{BuiltInDesk, Heard, answered, hear};
use crate::loopback::{
    GATEWAY_ACCOUNT, Loopback, YUNZHENJI_ACCOUNT, YUNZHENJI_CONFIRM_WINDOW_SECS,
};
use crate::sandbox::{CustomerSays, DEFAULT_OA_APPID};

/// A customer of the WeCom account.
const CUSTOMER: &str = "7881300000000001";
const CUSTOMER_TEXT: &str = "请问今天能发货吗?";

/// Steps 8 and 9 of the demo.
pub(super) async fn converse(
    setup: &Loopback,
    desk: &mut BuiltInDesk,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> Result<(), String> {
    let sandbox = &setup.sandbox;
    println!(
        "8. a customer writes to the WeCom account yunzhenji drives (account \"{YUNZHENJI_ACCOUNT}\" in the relay)"
    );
    let pushed = sandbox
        .yunzhenji_customer_says(CUSTOMER, CustomerSays::new(CUSTOMER_TEXT))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "   {CUSTOMER}: \"{CUSTOMER_TEXT}\" → yunzhenji's chatMsg push to /v1/callbacks/yunzhenji/<callback_secret>: {}",
        answered(&pushed.callback)
    );
    let asked = hear(heard, "message").await?;
    let target = asked["openid"].as_str().unwrap_or(CUSTOMER).to_owned();
    let id = send(
        desk,
        json!({"account": YUNZHENJI_ACCOUNT, "target_wxid": target, "msg": "今天下午四点前下单,当天发货。"}),
    )
    .await?;
    println!(
        "   desk: answered with \"target_wxid\": {target}; yunzhenji's errcode 0 makes message {id} accepted, not yet delivered"
    );
    let sent = hear(heard, "sent").await?;
    println!(
        "   the chatMsg echo of message {} came back ({}); no chatMsgSendFail within {YUNZHENJI_CONFIRM_WINDOW_SECS} s makes it delivered",
        sent["message_id"], sent["msg_id"]
    );
    delivered(setup, id).await?;
    println!("   message {id}: delivered");
    for message in sandbox.yunzhenji_messages(Some(&target)) {
        println!(
            "  yunzhenji #{} {} api_send_id {} {}",
            message.seq,
            message.msg_type,
            message.api_send_id.as_deref().unwrap_or("-"),
            message.content
        );
    }

    println!(
        "9. the desk reaches {OA_USER} through the company gateway (account \"{GATEWAY_ACCOUNT}\")"
    );
    // The gateway sends through the Official Account, whose quota step 7 used up.
    sandbox.api_user_writes(DEFAULT_OA_APPID, OA_USER);
    println!("   {OA_USER} writes to the Official Account again: its quota resets");
    let id = send(
        desk,
        json!({"account": GATEWAY_ACCOUNT, "openid": OA_USER, "msg": "您的快递已签收,欢迎评价。"}),
    )
    .await?;
    let status = settled(setup, id).await?;
    println!(
        "   message {id}: status {}; the gateway answers code 200 even when WeChat refuses, so the relay also checks data.errcode",
        status["status"]
    );
    if status["status"] != "delivered" {
        return Err(format!("message {id} through the gateway: {status}"));
    }
    for message in sandbox.gateway_messages(Some(OA_USER)) {
        println!(
            "  gateway #{} openId {} msg {:?}",
            message.seq, message.open_id, message.msg
        );
    }
    Ok(())
}

/// `POST /v1/messages`; the id of its job.
async fn send(desk: &mut BuiltInDesk, body: Value) -> Result<i64, String> {
    desk.jobs.clear();
    desk.post("/v1/messages", body).await?;
    desk.jobs
        .first()
        .copied()
        .ok_or_else(|| "the relay answered no message id".to_owned())
}

/// Waits until message `id` is delivered (an accepted message is not yet).
async fn delivered(setup: &Loopback, id: i64) -> Result<(), String> {
    loop {
        let status = settled(setup, id).await?;
        match status["status"].as_str() {
            Some("delivered") => return Ok(()),
            Some("failed" | "ambiguous") => {
                return Err(format!("message {id} was not delivered: {status}"));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}
