//! The OA/MP provider end to end over loopback, against a fake cgi-bin: tokens (§6.4), every
//! msgtype (§5.1), typing (§5.2) and every reason (§5.4).

mod fake_cgibin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_cgibin::*;
use kefu_client::kefu_payload::cgibin::AccountKind;
use kefu_client::wechat::WechatProvider;
use kefu_core::{Class, Job, Provider, Reason, RetryDecision, StopReason};
use serde_json::json;

/// Sends `count` texts at once, spread round robin over `providers`, and checks each succeeded.
async fn send_all_at_once(providers: &[Arc<WechatProvider>], count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let provider = providers[i % providers.len()].clone();
        tasks.spawn(async move {
            let job = text_job(&provider, &format!("消息 {i}"));
            provider.send(&job).await
        });
    }
    while let Some(attempt) = tasks.join_next().await {
        let attempt = attempt.unwrap();
        assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
    }
}

#[tokio::test]
async fn two_hundred_concurrent_sends_on_a_cold_cache_fetch_one_token() {
    let fake = Fake::start().await;
    let provider = Arc::new(fake.provider());
    send_all_at_once(std::slice::from_ref(&provider), 200).await;
    assert_eq!(fake.fetches(), 1);
    assert_eq!(fake.with(|s| s.accepted.len()), 200);
    assert_eq!(provider.counters().token_fetches, 1);
}

#[tokio::test]
async fn a_superseded_token_gives_one_refresh_and_one_replay() {
    let fake = Fake::start().await;
    let provider = fake.provider();
    let job = text_job(&provider, "第一条");
    assert_eq!(provider.send(&job).await.class, Class::Success);
    let first = fake.with(|s| s.current.clone().unwrap());

    fake.with(State::supersede);
    let (decision, attempts) = drive(&provider, &job).await;
    assert_eq!(decision, RetryDecision::Done);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].class, Class::RefreshReplay);
    assert_eq!(attempts[0].code, Some(40001));
    assert_eq!(attempts[0].rid.as_deref(), Some("6a1-40001"));
    assert_eq!(attempts[1].class, Class::Success);
    assert_eq!(fake.fetches(), 2, "one fetch, one refresh");
    let sends: Vec<_> = fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.path.ends_with("/send"))
            .map(|r| r.access_token().unwrap().to_owned())
            .collect()
    });
    let second = fake.with(|s| s.current.clone().unwrap());
    assert_eq!(sends, [first.clone(), first, second]);
    let counters = provider.counters();
    assert_eq!((counters.refresh_replays, counters.config_failures), (1, 0));
}

#[tokio::test]
async fn a_second_rejection_ends_config_without_a_loop() {
    let fake = Fake::start().await;
    fake.with(|s| {
        s.reject_every_token = true;
        s.rotate_every_fetch = true;
    });
    let provider = fake.provider();
    let job = text_job(&provider, "hello");
    let (decision, attempts) = drive(&provider, &job).await;
    assert_eq!(decision, stopped(StopReason::ReplayExhausted));
    assert_eq!(
        StopReason::ReplayExhausted.failure_reason(),
        Some(Reason::Config)
    );
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.class == Class::RefreshReplay));
    let sends = fake.with(|s| s.seen.iter().filter(|r| r.path.ends_with("/send")).count());
    assert_eq!(sends, 2);
}

#[tokio::test]
async fn the_same_token_back_is_config() {
    let fake = Fake::start().await;
    fake.with(|s| s.reject_every_token = true);
    let provider = fake.provider();
    let job = text_job(&provider, "hello");
    let (decision, attempts) = drive(&provider, &job).await;
    assert_eq!(
        decision,
        stopped(StopReason::Terminal(Reason::Config)),
        "{attempts:?}"
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].code, Some(40001));
    assert!(
        attempts[0].message.contains("same one back"),
        "{}",
        attempts[0].message
    );
    let counters = provider.counters();
    assert_eq!((counters.same_token_back, counters.config_failures), (1, 1));
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn a_restart_reuses_the_stored_token() {
    let fake = Fake::start().await;
    let store = Arc::new(MemoryStore::default());
    let before = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(
        before.send(&text_job(&before, "a")).await.class,
        Class::Success
    );
    drop(before);

    let after = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(
        after.send(&text_job(&after, "b")).await.class,
        Class::Success
    );
    assert_eq!(fake.fetches(), 1);
    assert_eq!(after.counters().token_fetches, 0);

    // A rejected token leaves the store too (compare-and-invalidate), and the new one is kept.
    fake.with(State::supersede);
    let (decision, _) = drive(&after, &text_job(&after, "c")).await;
    assert_eq!(decision, RetryDecision::Done);
    let current = fake.with(|s| s.current.clone().unwrap());
    assert_eq!(store.tokens.lock().unwrap()[APPID].token, current);
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_ahead_and_keeps_serving_if_that_fails() {
    let fake = Fake::start().await;
    // Inside the platform's last 5 minutes from the start.
    fake.with(|s| s.expires_in = 200);
    let provider = fake.provider();
    assert_eq!(
        provider.send(&text_job(&provider, "a")).await.class,
        Class::Success
    );
    assert_eq!(
        provider.send(&text_job(&provider, "b")).await.class,
        Class::Success
    );
    assert_eq!(fake.fetches(), 2, "the second send refreshed ahead");

    fake.with(|s| s.token_script.push_back(code(-1)));
    let attempt = provider.send(&text_job(&provider, "c")).await;
    assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
    // The failed refresh holds off the next one: the still-valid token serves.
    assert_eq!(
        provider.send(&text_job(&provider, "d")).await.class,
        Class::Success
    );
    assert_eq!(fake.fetches(), 3);
}

#[tokio::test]
async fn token_fetch_failures_are_classified_and_nothing_is_sent() {
    for (reply, want) in [
        (code(40013), Class::Terminal(Reason::Config)),
        (code(40125), Class::Terminal(Reason::Config)),
        (code(40164), Class::Terminal(Reason::Config)),
        (code(45009), Class::Throttled),
        (code(-1), Class::Transient),
        (Reply::Json(200, "{}".into()), Class::Transient),
        (Reply::Close, Class::Transient),
    ] {
        let fake = Fake::start().await;
        fake.with(|s| s.token_script.push_back(reply.clone()));
        let provider = fake.provider();
        let attempt = provider.send(&text_job(&provider, "x")).await;
        assert_eq!(attempt.class, want, "{reply:?}: {}", attempt.message);
        assert!(
            attempt.message.starts_with("stable_token"),
            "{}",
            attempt.message
        );
        let config = u64::from(want == Class::Terminal(Reason::Config));
        assert_eq!(provider.counters().config_failures, config, "{reply:?}");
        assert_eq!(fake.with(|s| s.seen.len()), 1, "only the fetch");
    }
    // A wrong secret, through the fake's own check.
    let fake = Fake::start().await;
    let provider = WechatProvider::builder("shop", AccountKind::OfficialAccount, APPID, "wrong")
        .api_base_url(&fake.base_url)
        .build()
        .unwrap();
    let attempt = provider.send(&text_job(&provider, "x")).await;
    assert_eq!(attempt.class, Class::Terminal(Reason::Config));
    assert_eq!(attempt.code, Some(40125));
}

/// Sends `count` jobs at once and returns their attempts.
async fn concurrent_sends(provider: &Arc<WechatProvider>, count: usize) -> Vec<kefu_core::Attempt> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let provider = provider.clone();
        tasks.spawn(async move { provider.send(&text_job(&provider, &format!("{i}"))).await });
    }
    let mut attempts = Vec::new();
    while let Some(attempt) = tasks.join_next().await {
        attempts.push(attempt.unwrap());
    }
    attempts
}

#[tokio::test]
async fn a_wrong_secret_costs_one_fetch_for_two_hundred_concurrent_sends() {
    let fake = Fake::start().await;
    let provider = Arc::new(
        WechatProvider::builder("shop", AccountKind::OfficialAccount, APPID, "wrong")
            .api_base_url(&fake.base_url)
            .build()
            .unwrap(),
    );
    for attempt in concurrent_sends(&provider, 200).await {
        assert_eq!(
            attempt.class,
            Class::Terminal(Reason::Config),
            "{}",
            attempt.message
        );
        assert_eq!(attempt.code, Some(40125));
    }
    // The failure is remembered: a later send fails the same way without fetching.
    let attempt = provider.send(&text_job(&provider, "later")).await;
    assert_eq!(
        (attempt.class, attempt.code),
        (Class::Terminal(Reason::Config), Some(40125))
    );
    assert_eq!(fake.fetches(), 1);
    assert_eq!(provider.counters().token_fetches, 1);
    assert_eq!(fake.with(|s| s.accepted.len()), 0);
}

#[tokio::test]
async fn a_throttled_fetch_is_remembered() {
    let fake = Fake::start().await;
    fake.with(|s| s.token_script.push_back(code(45009)));
    let provider = Arc::new(fake.provider());
    for attempt in concurrent_sends(&provider, 50).await {
        assert_eq!(
            (attempt.class, attempt.code),
            (Class::Throttled, Some(45009))
        );
    }
    let attempt = provider.send(&text_job(&provider, "later")).await;
    assert_eq!(attempt.class, Class::Throttled);
    assert_eq!(fake.fetches(), 1);
}

#[tokio::test]
async fn waiters_share_a_transient_fetch_failure_but_a_later_send_fetches_again() {
    let fake = Fake::start().await;
    fake.with(|s| s.token_script.push_back(Reply::Stall));
    let provider = Arc::new(
        fake.builder(AccountKind::OfficialAccount)
            .token_fetch_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    for attempt in concurrent_sends(&provider, 50).await {
        assert_eq!(attempt.class, Class::Transient, "{}", attempt.message);
    }
    assert_eq!(fake.fetches(), 1, "the waiters shared the leader's failure");
    // A transient failure is not remembered: the next send fetches and goes through.
    assert_eq!(
        provider.send(&text_job(&provider, "y")).await.class,
        Class::Success
    );
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn a_hung_token_fetch_is_bounded_by_the_fetch_timeout() {
    let fake = Fake::start().await;
    fake.with(|s| s.token_script.push_back(Reply::Stall));
    let provider = fake
        .builder(AccountKind::OfficialAccount)
        .token_fetch_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let attempt = provider.send(&text_job(&provider, "x")).await;
    assert_eq!(attempt.class, Class::Transient);
    assert!(
        attempt.message.contains("fetch timeout"),
        "{}",
        attempt.message
    );
    // The next send fetches again and goes through.
    assert_eq!(
        provider.send(&text_job(&provider, "y")).await.class,
        Class::Success
    );
}

#[tokio::test]
async fn every_msgtype_goes_on_the_wire_raw() {
    let fake = Fake::start().await;
    let oa = fake.provider();
    let mp = fake.builder(AccountKind::MiniProgram).build().unwrap();
    let link = r#"<a href="https://shop.example/?a=1&b=2">点这里</a>"#;
    let oa_msgs = [
        json!(format!("您好 😀 {link} 1<2 & 3>2 =")),
        json!({"image": {"media_id": "MEDIA_IMAGE"}}),
        json!({"voice": {"media_id": "MEDIA_VOICE"}}),
        json!({"video": {"media_id": "MEDIA_VIDEO", "thumb_media_id": "THUMB", "title": "视频", "description": "说明"}}),
        json!({"music": {"title": "歌", "musicurl": "https://m/1.mp3", "hqmusicurl": "https://m/1hq.mp3", "thumb_media_id": "THUMB"}}),
        json!({"news": {"articles": [{"title": "新闻", "description": "d", "url": "https://n/?x=1&y=2", "picurl": "https://p/1.png"}]}}),
        json!({"mpnews": {"media_id": "MEDIA_MPNEWS"}}),
        json!({"mpnewsarticle": {"article_id": "ARTICLE"}}),
        json!({"msgmenu": {"head_content": "您对本次服务是否满意呢? ", "list": [{"id": "101", "content": "满意"}, {"id": "102", "content": "不满意"}], "tail_content": "欢迎再次光临"}}),
        json!({"wxcard": {"card_id": "CARD"}}),
        json!({"miniprogrampage": {"title": "title", "appid": "wx0123456789abcdef", "pagepath": "pages/index/index?foo=bar", "thumb_media_id": "MEDIA_ID"}}),
    ];
    let mp_msgs = [
        json!("小程序 👋"),
        json!({"image": {"media_id": "MEDIA_IMAGE"}}),
        json!({"link": {"title": "链接", "description": "d", "url": "https://l/?a=1&b=2", "thumb_url": "https://t/1.png"}}),
        json!({"miniprogrampage": {"title": "t", "pagepath": "pages/a", "thumb_media_id": "M"}}),
    ];
    let mut expected = Vec::new();
    for (provider, msgs) in [(&oa, &oa_msgs[..]), (&mp, &mp_msgs[..])] {
        for msg in msgs {
            let mut body = json!({"openid": "oUSER", "msg": msg});
            if std::ptr::eq(provider, &oa) {
                body["kf_account"] = json!("test1@kftest");
            }
            for job in jobs(provider, body) {
                let attempt = provider.send(&job).await;
                assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
                expected.push(job.payload);
            }
        }
    }
    let accepted = fake.with(|s| s.accepted.clone());
    assert_eq!(accepted.len(), 15);
    for (seen, want) in accepted.iter().zip(&expected) {
        assert_eq!(&seen.body, want);
        assert_eq!(seen.path, "/cgi-bin/message/custom/send");
        assert_eq!(
            seen.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let text = seen.body_text();
        assert!(!text.contains("\\u"), "{text}");
    }
    // Byte for byte, the characters serialisers like to escape.
    assert_eq!(
        accepted[0].body_text(),
        r#"{"touser":"oUSER","msgtype":"text","text":{"content":"您好 😀 <a href=\"https://shop.example/?a=1&b=2\">点这里</a> 1<2 & 3>2 ="},"customservice":{"kf_account":"test1@kftest"}}"#
    );
    assert_eq!(
        accepted[11].body_text(),
        r#"{"touser":"oUSER","msgtype":"text","text":{"content":"小程序 👋"}}"#
    );
}

#[tokio::test]
async fn long_text_becomes_ordered_jobs_within_the_budget() {
    let fake = Fake::start().await;
    let provider = fake
        .builder(AccountKind::OfficialAccount)
        .text_budget_bytes(30)
        .build()
        .unwrap();
    let link = r#"<a href="https://a.b/c">链接</a>"#;
    let text = format!("第一段文字很长很长。{link}第二段😀结束");
    let jobs = jobs(&provider, json!({"openid": "oUSER", "msg": text}));
    let mut parts = String::new();
    for job in &jobs {
        let body: serde_json::Value = serde_json::from_slice(&job.payload).unwrap();
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.len() <= 30 || content == link, "{content}");
        parts.push_str(content);
    }
    assert_eq!(parts, text);
    assert!(jobs.len() > 2);
}

#[tokio::test]
async fn typing_goes_to_each_kind_s_path_and_skips_quietly() {
    let fake = Fake::start().await;
    let oa = fake.provider();
    let mp = fake.builder(AccountKind::MiniProgram).build().unwrap();
    let custom_mp = fake
        .builder(AccountKind::MiniProgram)
        .typing_path("/cgi-bin/message/custom/typing")
        .build()
        .unwrap();
    for (provider, on, path) in [
        (&oa, true, "/cgi-bin/message/custom/typing"),
        (&mp, false, "/cgi-bin/message/custom/business/typing"),
        (&custom_mp, true, "/cgi-bin/message/custom/typing"),
    ] {
        let composed = provider.typing("oUSER", on).unwrap();
        let job = as_job(composed);
        assert_eq!(provider.send(&job).await.class, Class::Success);
        let seen = fake.with(|s| s.accepted.last().cloned().unwrap());
        assert_eq!(seen.path, path);
        let command = if on { "Typing" } else { "CancelTyping" };
        assert_eq!(
            seen.body_text(),
            format!(r#"{{"touser":"oUSER","command":"{command}"}}"#)
        );
    }
    let job = as_job(oa.typing("oUSER", true).unwrap());
    for (reply, want, says) in [
        (code(45080), Class::Success, "skipped"),
        (code(45081), Class::Success, "already typing"),
        (code(45072), Class::Terminal(Reason::Unknown), "45072"),
        (code(40200), Class::Terminal(Reason::Config), "40200"),
        (Reply::Close, Class::Transient, "may be retried"),
        (
            Reply::Json(200, "{}".into()),
            Class::Transient,
            "may be retried",
        ),
    ] {
        fake.with(|s| s.call_script.push_back(reply.clone()));
        let attempt = oa.send(&job).await;
        assert_eq!(attempt.class, want, "{reply:?}: {}", attempt.message);
        assert!(attempt.message.contains(says), "{}", attempt.message);
    }
    assert_eq!(oa.typing("", true).unwrap_err().field, "openid");
}

fn as_job(composed: kefu_core::Composed) -> Job {
    Job {
        id: 1,
        account: "shop".into(),
        recipient: composed.recipient,
        operation: composed.operation,
        payload: composed.payload,
    }
}

#[tokio::test]
async fn every_reason_is_classified() {
    let fake = Fake::start().await;
    let provider = fake.provider();
    let job = text_job(&provider, "hello");
    let t = Class::Terminal;
    let cases = [
        (code(0), Class::Success),
        (code(-1), Class::Transient),
        (code(45015), t(Reason::WindowClosed)),
        (code(45047), t(Reason::QuotaExhausted)),
        (code(40003), t(Reason::Recipient)),
        (code(43004), t(Reason::Recipient)),
        (code(40007), t(Reason::Content)),
        (code(45002), t(Reason::Content)),
        (code(45008), t(Reason::Content)),
        (code(70000), t(Reason::Policy)),
        (code(45009), Class::Throttled),
        (code(45011), Class::Throttled),
        (code(48001), t(Reason::Config)),
        (code(40013), t(Reason::Config)),
        (code(41001), t(Reason::Unknown)),
        (code(40033), t(Reason::Unknown)),
        (code(12345), t(Reason::Unknown)),
        (
            Reply::Json(200, r#"{"errcode":"45015","errmsg":"x rid: r"}"#.into()),
            t(Reason::WindowClosed),
        ),
        (Reply::Json(200, "{}".into()), Class::Ambiguous),
        (Reply::Json(200, "<html>".into()), Class::Ambiguous),
        (Reply::Json(502, "bad gateway".into()), Class::Ambiguous),
        (Reply::Json(404, "no".into()), t(Reason::Unknown)),
        (Reply::Close, Class::Ambiguous),
    ];
    for (reply, want) in cases {
        fake.with(|s| s.call_script.push_back(reply.clone()));
        let attempt = provider.send(&job).await;
        assert_eq!(attempt.class, want, "{reply:?}: {}", attempt.message);
        if let Reply::Json(_, body) = &reply {
            if body.starts_with(r#"{"errcode":"#) && !body.contains("x rid") {
                let code: i64 = body[11..].split(',').next().unwrap().parse().unwrap();
                assert_eq!(attempt.code, Some(code));
                assert_eq!(attempt.rid.as_deref(), Some(format!("rid-{code}").as_str()));
            }
        }
    }
    // Two config refusals were counted for the account.
    assert_eq!(provider.counters().config_failures, 2);
}

#[tokio::test]
async fn an_ambiguous_send_is_never_replayed_and_a_timeout_is_ambiguous() {
    let fake = Fake::start().await;
    let provider = fake
        .builder(AccountKind::OfficialAccount)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let job = text_job(&provider, "hello");
    for reply in [Reply::Close, Reply::Stall] {
        fake.with(|s| s.call_script.push_back(reply.clone()));
        let (decision, attempts) = drive(&provider, &job).await;
        assert_eq!(decision, stopped(StopReason::Ambiguous), "{reply:?}");
        assert_eq!(attempts.len(), 1);
        assert!(
            attempts[0].message.contains("not resent"),
            "{}",
            attempts[0].message
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_not_sent() {
    // A port with nothing behind it, and a fresh token in the store so that the send is tried.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let store = Arc::new(MemoryStore::default());
    store.tokens.lock().unwrap().insert(
        APPID.to_owned(),
        kefu_core::StoredToken {
            token: "StoredTokenAbC123".into(),
            fetched_at_ms: 0,
            expires_at_ms: i64::MAX / 2,
        },
    );
    let provider = WechatProvider::builder("shop", AccountKind::OfficialAccount, APPID, SECRET)
        .api_base_url(format!("http://{addr}"))
        .token_store(store)
        .build()
        .unwrap();
    let attempt = provider.send(&text_job(&provider, "x")).await;
    assert_eq!(attempt.class, Class::Transient, "{}", attempt.message);
    assert!(
        attempt.message.contains("access_token=<redacted>"),
        "{}",
        attempt.message
    );
    assert!(
        !attempt.message.contains("StoredTokenAbC123"),
        "{}",
        attempt.message
    );
}

#[tokio::test]
async fn force_refresh_replaces_the_token_everywhere() {
    let fake = Fake::start().await;
    let store = Arc::new(MemoryStore::default());
    let provider = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(
        provider.send(&text_job(&provider, "a")).await.class,
        Class::Success
    );
    let lifetime = provider.tokens().force_refresh().await.unwrap();
    assert!(lifetime > 7000, "{lifetime}");
    assert_eq!(fake.with(|s| s.forced), 1);
    let current = fake.with(|s| s.current.clone().unwrap());
    assert_eq!(store.tokens.lock().unwrap()[APPID].token, current);
    // The next send uses the new token without a refresh.
    assert_eq!(
        provider.send(&text_job(&provider, "b")).await.class,
        Class::Success
    );
    assert_eq!(fake.fetches(), 2);
    assert!(kefu_client::wechat::FORCE_REFRESH_HELP.contains("20"));
}

#[tokio::test]
async fn desk_refusals_name_the_field_type_and_kind() {
    let fake = Fake::start().await;
    let mp = fake.builder(AccountKind::MiniProgram).build().unwrap();
    let body = json!({"openid": "oUSER", "msg": {"news": {"articles": []}}});
    let err = mp
        .compose(kefu_core::ComposeRequest {
            body: body.as_object().unwrap(),
            session_appid: None,
        })
        .unwrap_err();
    assert_eq!(err.field, "msg.news");
    assert!(
        err.message.contains("mini_program") && err.message.contains("news"),
        "{err}"
    );
    assert_eq!(mp.kind(), "mini_program");
    assert_eq!(fake.with(|s| s.seen.len()), 0);
}

#[tokio::test]
async fn after_a_restart_a_stored_token_due_for_refresh_serves_if_the_refresh_fails() {
    let fake = Fake::start().await;
    let store = Arc::new(MemoryStore::default());
    let first = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(
        first.send(&text_job(&first, "a")).await.class,
        Class::Success
    );
    // Another replica's token, 200 s from expiry: inside the refresh-ahead window.
    let stored = fake.with(|s| s.current.clone().unwrap());
    store
        .tokens
        .lock()
        .unwrap()
        .get_mut(APPID)
        .unwrap()
        .expires_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 200_000;
    fake.with(|s| s.token_script.push_back(code(-1)));

    let restarted = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(store)
        .build()
        .unwrap();
    let attempt = restarted.send(&text_job(&restarted, "b")).await;
    assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
    assert_eq!(fake.fetches(), 2, "the refresh ahead was tried");
    let used = fake.with(|s| {
        s.accepted
            .last()
            .unwrap()
            .access_token()
            .unwrap()
            .to_owned()
    });
    assert_eq!(used, stored);
}

/// Two relays sharing a token store, each with its own provider (its own memory and single
/// flight), as a fleet on one database.
fn fleet_of_two(fake: &Fake, store: &Arc<MemoryStore>) -> [Arc<WechatProvider>; 2] {
    ["relay-1", "relay-2"].map(|relay| {
        let member = FleetMember {
            store: store.clone(),
            relay,
        };
        Arc::new(
            fake.builder(AccountKind::OfficialAccount)
                .token_store(Arc::new(member))
                .build()
                .unwrap(),
        )
    })
}

#[tokio::test]
async fn a_fleet_on_a_cold_store_fetches_one_token_between_its_relays() {
    let fake = Fake::start().await;
    // A second fetch would show: every fetch issues a new token.
    fake.with(|s| s.rotate_every_fetch = true);
    let store = Arc::new(MemoryStore::default());
    let relays = fleet_of_two(&fake, &store);
    send_all_at_once(&relays, 40).await;
    assert_eq!(fake.fetches(), 1, "one fetch for the whole fleet");
    let fetched: u64 = relays.iter().map(|p| p.counters().token_fetches).sum();
    assert_eq!(fetched, 1);
    assert!(store.leases.lock().unwrap().is_empty(), "the fetch ended");
}

#[tokio::test]
async fn a_relay_fetches_itself_once_a_dead_relays_fetch_lease_runs_out() {
    let fake = Fake::start().await;
    let store = Arc::new(MemoryStore::default());
    // A relay that died while fetching: its lease would hold for a long while.
    store.leases.lock().unwrap().insert(
        APPID.to_owned(),
        ("gone", Instant::now() + Duration::from_secs(600)),
    );
    let member = FleetMember {
        store: store.clone(),
        relay: "relay-1",
    };
    let provider = fake
        .builder(AccountKind::OfficialAccount)
        .token_store(Arc::new(member))
        .token_fetch_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let attempt = tokio::time::timeout(
        Duration::from_secs(20),
        provider.send(&text_job(&provider, "a")),
    )
    .await
    .expect("the relay stopped waiting for the dead relay's fetch");
    assert_eq!(attempt.class, Class::Success, "{}", attempt.message);
    assert_eq!(fake.fetches(), 1);
}
