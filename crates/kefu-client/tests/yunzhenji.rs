//! The yunzhenji provider end to end over loopback against a scripted fake (protocols.md §7):
//! the exact body of a batch, per-message outcomes, the vendor's refusal, and the transport
//! failures split between not sent and ambiguous.

mod fake_vendor;

use std::time::Duration;

use fake_vendor::*;
use kefu_client::yunzhenji::YunzhenjiProvider;
use kefu_core::{Class, Provider, Reason};
use serde_json::json;

const TOKEN: &str = "YzjSecretAccessToken0042";

fn provider(base_url: &str) -> YunzhenjiProvider {
    YunzhenjiProvider::builder("shop", "APP1", TOKEN, "wxid_account")
        .base_url(base_url)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn accepted(n: usize) -> Reply {
    let data: Vec<_> = (0..n)
        .map(|i| json!({"idx": i, "api_send_svrid": format!("S{i}")}))
        .collect();
    Reply::Json(200, json!({"errcode": 0, "data": data}).to_string())
}

fn classes(attempts: &[kefu_core::Attempt]) -> Vec<Class> {
    attempts.iter().map(|a| a.class).collect()
}

#[tokio::test]
async fn a_batch_goes_out_as_one_exact_body() {
    let fake = Fake::start(accepted(3)).await;
    let provider = provider(&fake.base_url);
    let jobs = jobs(
        &provider,
        41,
        json!({"target_wxid": "wxid_customer", "msg": {"multimsg": [
            "您好",
            {"link": {"cover": "https://e.com/c.png", "desc": "D", "title": "T", "url": "https://e.com"}},
            {"voice": {"url": "https://e.com/v.mp3", "duration": 3}},
        ]}}),
    );
    let attempts = provider.send_batch(&jobs).await;
    assert_eq!(classes(&attempts), [Class::Success; 3], "{attempts:?}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/wechat/sendMessage");
    assert!(
        seen[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        String::from_utf8(seen[0].body.clone()).unwrap(),
        concat!(
            r#"{"app_id":"APP1","access_token":"YzjSecretAccessToken0042","wxid":"wxid_account","target_wxid":"wxid_customer","messages":["#,
            r#"{"api_send_id":"41","content":{"items":[{"text":"您好","type":"text"}]},"delayed_time":0,"msg_type":"text"},"#,
            r#"{"api_send_id":"42","content":{"cover":"https://e.com/c.png","desc":"D","title":"T","url":"https://e.com"},"delayed_time":0,"msg_type":"link"},"#,
            r#"{"api_send_id":"43","content":{"duration":3,"org_content":"","url":"https://e.com/v.mp3"},"delayed_time":0,"msg_type":"voice"}]}"#
        )
    );
    // A send is a batch of one.
    let one = provider.send(&jobs[0]).await;
    assert_eq!(one.class, Class::Success);
    assert_eq!(
        fake.seen()[1].json()["messages"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_partial_data_fails_only_the_messages_left_out() {
    let fake = Fake::start(Reply::Json(
        200,
        r#"{"errcode":"0","data":[{"idx":0,"api_send_svrid":"S0","api_send_id":"1"},{"idx":"2","api_send_svrid":"S2","api_send_id":"3"}]}"#.into(),
    ))
    .await;
    let provider = provider(&fake.base_url);
    let jobs = jobs(
        &provider,
        1,
        json!({"target_wxid": "c", "msg": {"multimsg": ["a", "b", "c"]}}),
    );
    let attempts = provider.send_batch(&jobs).await;
    assert_eq!(
        classes(&attempts),
        [
            Class::Success,
            Class::Terminal(Reason::Unknown),
            Class::Success
        ]
    );
    assert!(
        attempts[1].message.contains("no entry for message 1"),
        "{}",
        attempts[1].message
    );
}

#[tokio::test]
async fn a_refusal_fails_the_batch_with_the_message_key() {
    let fake = Fake::start(Reply::Json(
        200,
        r#"{"errcode":"10003","message":"企微号不在线","errmsg":"not this one"}"#.into(),
    ))
    .await;
    let provider = provider(&fake.base_url);
    let jobs = jobs(
        &provider,
        1,
        json!({"target_wxid": "c", "msg": {"multimsg": ["a", "b"]}}),
    );
    for attempt in provider.send_batch(&jobs).await {
        assert_eq!(attempt.class, Class::Terminal(Reason::Unknown));
        assert_eq!(attempt.code, Some(10003));
        assert!(
            attempt.message.contains("企微号不在线"),
            "{}",
            attempt.message
        );
    }
}

#[tokio::test]
async fn transport_failures_are_not_sent_or_ambiguous() {
    let fake = Fake::start(accepted(1)).await;
    let provider = provider(&fake.base_url);
    let jobs = jobs(
        &provider,
        1,
        json!({"target_wxid": "c", "msg": {"multimsg": ["a", "b"]}}),
    );
    for (reply, want) in [
        (Reply::Stall, Class::Ambiguous),
        (Reply::Close, Class::Ambiguous),
        (
            Reply::Json(502, "<html>bad gateway</html>".into()),
            Class::Ambiguous,
        ),
        (Reply::Json(200, "not json".into()), Class::Ambiguous),
    ] {
        fake.script(reply.clone());
        let attempts = provider.send_batch(&jobs).await;
        assert_eq!(classes(&attempts), [want; 2], "{reply:?}: {attempts:?}");
        assert!(
            attempts[0].message.contains("not resent"),
            "{}",
            attempts[0].message
        );
    }
    let timed_out = fake.seen().len();
    assert_eq!(timed_out, 4, "each failure was one call, never resent");

    let refused = self::provider(&closed_base_url().await);
    let attempts = refused.send_batch(&jobs).await;
    assert_eq!(classes(&attempts), [Class::Transient; 2], "{attempts:?}");
    assert!(attempts[0].message.contains("not sent"));
}
