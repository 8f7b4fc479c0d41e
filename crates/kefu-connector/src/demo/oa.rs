//! The demo's Official Account conversation, through the same relay as the Dialogue handoff: the
//! user writes to the OA, the desk hears it through the webhook, shows typing, answers with a
//! text, an image and a menu through `custom/send`, follows up until the platform's quota is
//! used, and sees the next message fail with `quota_exhausted`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{BuiltInDesk, Heard, all_delivered, answered, hear};
use crate::loopback::{Loopback, OA_ACCOUNT};
use crate::sandbox::{DEFAULT_OA_APPID, OaAccount, OaSay};

/// The OA's callback Token and EncodingAESKey, as its console shows them.
const OA_TOKEN: &str = "DEMOOATOKEN0123456789";
const OA_AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
/// A follower of the Official Account.
pub(super) const OA_USER: &str = "oDEMO_oa_user_0001";
const USER_TEXT: &str = "你好,我的快递到哪里了?";

/// The Official Account the sandbox plays: the default `api.weixin.qq.com` account's AppID, so
/// that the user's push opens that account's send window.
pub(super) fn account() -> OaAccount {
    OaAccount::new(OA_TOKEN, OA_AES_KEY, DEFAULT_OA_APPID)
}

/// Steps 5 to 7 of the demo.
pub(super) async fn converse(
    setup: &Loopback,
    desk: &mut BuiltInDesk,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> Result<(), String> {
    let sandbox = &setup.sandbox;
    println!("5. the user writes to the Official Account (account \"{OA_ACCOUNT}\" in the relay)");
    let pushed = sandbox
        .oa_say(OA_USER, OaSay::new(USER_TEXT))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "   {OA_USER}: \"{USER_TEXT}\" → the OA's encrypted push to /v1/callbacks/wechat/{OA_ACCOUNT}: {}",
        answered(&pushed.callback)
    );

    println!("6. the desk hears it, shows typing and answers through custom/send");
    let asked = hear(heard, "message").await?;
    let openid = asked["openid"].as_str().unwrap_or(OA_USER).to_owned();
    desk.jobs.clear();
    desk.post(
        "/v1/typing",
        json!({"account": OA_ACCOUNT, "openid": openid, "typing": true}),
    )
    .await?;
    println!("   desk: typing…");
    for msg in [
        json!("您好,您的包裹已到达上海转运中心,预计明天送达。"),
        json!({"image": {"media_id": "MEDIA_ID_DEMO_MAP"}}),
        json!({"msgmenu": {
            "head_content": "还有什么可以帮您?",
            "list": [
                {"id": "101", "content": "修改收货地址"},
                {"id": "102", "content": "联系快递员"}
            ],
            "tail_content": "回复数字或点击选项"
        }}),
    ] {
        send(desk, &openid, msg).await?;
    }
    println!("   desk: answered with a text, an image and a menu (msgmenu)");
    send(
        desk,
        &openid,
        json!({"multimsg": ["快递单号: SF0000000000", "物流详情: https://example.com/track"]}),
    )
    .await?;
    println!(
        "   desk: followed up with two texts: 5 messages since the user wrote, the platform's quota"
    );
    wait_for(setup, desk).await?;

    println!("7. one more message runs into the quota");
    let reply = desk
        .relay
        .post(
            "/v1/messages",
            &json!({"account": OA_ACCOUNT, "openid": openid, "msg": "祝您生活愉快!"}),
        )
        .await
        .map_err(|e| e.to_string())?;
    let id = reply.body["id"]
        .as_i64()
        .ok_or_else(|| format!("/v1/messages: {} {}", reply.status, reply.text))?;
    let failed = settled(setup, id).await?;
    if failed["status"] != "failed" || failed["reason"] != "quota_exhausted" {
        return Err(format!(
            "message {id} should have failed with quota_exhausted: {failed}"
        ));
    }
    println!(
        "   message {id}: status {}, error_code {}, reason {}",
        failed["status"], failed["error_code"], failed["reason"]
    );
    println!(
        "   The user must write again before the OA may answer more. A desk seeing quota_exhausted"
    );
    println!(
        "   (or window_closed: no message from the user in 48 h) switches channel: it asks the user"
    );
    println!("   to write again, or reaches them another way (a template message, SMS, e-mail).");

    println!();
    println!(
        "The sandbox received for the Official Account {DEFAULT_OA_APPID}, raw JSON, in order:"
    );
    for request in sandbox
        .api_requests(DEFAULT_OA_APPID, Some(OA_USER))
        .unwrap_or_default()
    {
        println!("  #{} {} {}", request.seq, request.path, request.kind);
        println!("      {}", request.body);
    }
    let session = setup
        .desk
        .get(&format!("/v1/sessions/{OA_USER}?account={OA_ACCOUNT}"))
        .await
        .map_err(|e| e.to_string())?
        .body;
    println!(
        "The relay's session of {OA_USER} on \"{OA_ACCOUNT}\": state {}, last_user_message_at_ms {} (the send window's start)",
        session["state"], session["last_user_message_at_ms"]
    );
    Ok(())
}

/// `POST /v1/messages` through the OA account.
async fn send(desk: &mut BuiltInDesk, openid: &str, msg: Value) -> Result<(), String> {
    desk.post(
        "/v1/messages",
        json!({"account": OA_ACCOUNT, "openid": openid, "msg": msg}),
    )
    .await
}

/// Waits until every job the desk stored is delivered.
async fn wait_for(setup: &Loopback, desk: &BuiltInDesk) -> Result<(), String> {
    while !all_delivered(&setup.desk, &desk.jobs).await? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The status of message `id` once it is no longer queued (an `accepted` one included).
pub(super) async fn settled(setup: &Loopback, id: i64) -> Result<Value, String> {
    loop {
        let status = setup
            .desk
            .get(&format!("/v1/messages/{id}"))
            .await
            .map_err(|e| e.to_string())?
            .body;
        if matches!(
            status["status"].as_str(),
            Some("accepted" | "delivered" | "failed" | "ambiguous")
        ) {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
