//! End-to-end tests over real loopback sockets (see `common` for the server).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use kefu_client::{Client, InvalidResponse, Operation, PlatformCode, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn success_posts_the_encrypted_xml_to_the_token_path() {
    let server = Server::start(|_| json(200, r#"{"errcode":0,"msg":"Success","rid":"r-1"}"#)).await;
    let client = server.client();
    for operation in Operation::ALL {
        let reply = client.call_xml(operation, XML).await.unwrap();
        assert_eq!(reply.rid(), Some("r-1"));
        assert_eq!(reply.message(), Some("Success"));
        assert_eq!(reply.status(), StatusCode::OK);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for (req, operation) in seen.iter().zip(Operation::ALL) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, format!("/openapi/{}/{TOKEN}", operation.name()));
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.plaintext(), XML, "decrypts to exactly the XML sent");
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "keep-alive: one connection serves every call"
    );
}

#[tokio::test]
async fn every_code_spelling() {
    let bodies = [
        r#"{"errcode":1001,"errmsg":"TOKEN is not valid","rid":"621bb347"}"#,
        r#"{"code":1011,"errcode":1011,"errmsg":"appid is not valid","rid":"a427f780"}"#,
        r#"{"errorcode":2928312,"errormsg":"unsupport, to do."}"#,
        r#"{"success":false,"code":-1,"msg":"系统异常,请稍候再试"}"#,
        r#"{"errcode":"1008","errmsg":"openid empty"}"#,
        r#"{"code":"4242","msg":"new, rid: 9f9f"}"#,
    ];
    let want: [(PlatformCode, Option<&str>, Option<&str>); 6] = [
        (
            PlatformCode::InvalidToken,
            Some("TOKEN is not valid"),
            Some("621bb347"),
        ),
        (
            PlatformCode::InvalidAppid,
            Some("appid is not valid"),
            Some("a427f780"),
        ),
        (PlatformCode::Unsupported, Some("unsupport, to do."), None),
        (PlatformCode::SystemBusy, Some("系统异常,请稍候再试"), None),
        (PlatformCode::RequiredFieldEmpty, Some("openid empty"), None),
        (
            PlatformCode::Other(4242),
            Some("new, rid: 9f9f"),
            Some("9f9f"),
        ),
    ];
    let server = Server::start(move |i| json(200, bodies[i])).await;
    let client = server.client();
    for (code, message, rid) in want {
        let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
        assert!(error.is_platform(), "{error}");
        assert_eq!(error.platform_code(), Some(code));
        assert_eq!(error.message(), message);
        assert_eq!(error.rid(), rid);
        assert_eq!(error.status(), Some(StatusCode::OK));
        assert!(!error.is_ambiguous() && !error.is_not_sent());
        assert_eq!(error.is_transient(), code == PlatformCode::SystemBusy);
        assert_eq!(error.operation(), Some(Operation::SendMsg));
        assert_no_secrets(&error);
    }

    // The codes 0 in each spelling succeed; a 2xx without a code does not.
    let server = Server::start(|i| {
        json(
            200,
            [
                r#"{"errcode":0,"errmsg":""}"#,
                r#"{"errorcode":"0"}"#,
                r#"{"code":0,"success":true}"#,
                r#"{"msg":"Success"}"#,
            ][i],
        )
    })
    .await;
    let client = server.client();
    for _ in 0..3 {
        client.call_xml(Operation::SendMsg, XML).await.unwrap();
    }
    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert_eq!(error.invalid_response(), Some(InvalidResponse::MissingCode));
    assert!(error.is_ambiguous());
}

#[tokio::test]
async fn http_500_and_non_json() {
    let server = Server::start(|i| match i {
        0 => json(500, "<html>Internal Server Error</html>"),
        1 => json(200, "<html>maintenance</html>"),
        _ => json(404, "not found"),
    })
    .await;
    let client = server.client();

    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert!(error.is_http_status() && error.is_ambiguous(), "{error}");
    assert_eq!(error.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(error.body(), Some("<html>Internal Server Error</html>"));
    assert_no_secrets(&error);

    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert_eq!(error.invalid_response(), Some(InvalidResponse::NotJson));
    assert!(error.is_ambiguous() && !error.is_http_status());

    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert!(error.is_http_status() && !error.is_ambiguous());
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn closed_without_answer_is_ambiguous_and_sendmsg_is_not_retried() {
    let server = Server::start(|_| Reply::Close).await;
    let client = server.client();
    let error = client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap_err();
    assert!(error.is_ambiguous() && error.is_transport(), "{error}");
    assert!(!error.is_not_sent() && !error.is_timeout());
    assert_eq!(error.attempts(), 1);
    assert_no_secrets(&error);
    assert_eq!(server.seen().len(), 1, "exactly one request: no duplicate");
}

#[tokio::test]
async fn closed_without_answer_is_retried_for_idempotent_kefustate() {
    let server = Server::start(|i| match i {
        0 => Reply::Close,
        _ => json(200, r#"{"errcode":0,"errmsg":""}"#),
    })
    .await;
    let client = server.client();
    client
        .call_xml_with_retry(Operation::KefuStateChange, XML)
        .await
        .unwrap();
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_not_sent_and_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}/openapi"));

    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert!(
        error.is_connect() && error.is_not_sent() && error.is_transient(),
        "{error}"
    );
    assert!(!error.is_ambiguous() && !error.is_timeout());
    assert_no_secrets(&error);

    let error = client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap_err();
    assert!(error.is_connect());
    assert_eq!(error.attempts(), 3, "retried up to max_attempts");
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    assert_no_secrets(&error);
}

#[tokio::test]
async fn system_busy_then_success_is_retried() {
    let server = Server::start(|i| match i {
        0 => json(
            200,
            r#"{"success":false,"code":-1,"msg":"系统异常,请稍候再试"}"#,
        ),
        _ => json(200, r#"{"errcode":0,"msg":"Success"}"#),
    })
    .await;
    let client = server.client();
    let reply = client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap();
    assert_eq!(reply.message(), Some("Success"));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].body, seen[1].body,
        "each attempt is freshly encrypted"
    );
    assert_eq!(seen[0].plaintext(), XML);
    assert_eq!(seen[1].plaintext(), XML);
}

#[tokio::test]
async fn request_timeout_is_ambiguous() {
    let server = Server::start(|_| Reply::Stall).await;
    let client = Client::builder(TOKEN, KEY, APPID)
        .base_url(&server.base_url)
        .request_timeout(Duration::from_millis(500))
        .retry_policy(fast_retry())
        .build()
        .unwrap();

    let error = client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap_err();
    assert!(error.is_timeout() && error.is_ambiguous(), "{error}");
    assert!(!error.is_not_sent() && !error.is_connect());
    assert_no_secrets(&error);
    assert_eq!(
        server.seen().len(),
        1,
        "an ambiguous send is never replayed"
    );

    let error = client
        .call_xml_with_retry(Operation::KefuStateGet, XML)
        .await
        .unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(error.attempts(), 3);
    assert_eq!(server.seen().len(), 4, "the idempotent get was retried");
}

#[tokio::test]
async fn stalled_tls_handshake_is_a_connect_timeout() {
    // Accepts TCP but never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = Client::builder(TOKEN, KEY, APPID)
        .base_url(format!("https://{addr}/openapi"))
        .connect_timeout(Duration::from_millis(200))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert!(
        error.is_connect() && error.is_timeout() && error.is_not_sent(),
        "{error:?}"
    );
    assert_no_secrets(&error);
}

#[tokio::test]
async fn tls_garbage_is_a_connect_error() {
    // Answers the ClientHello with plain HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let client = client(&format!("https://{addr}/openapi"));
    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert!(
        error.is_connect() && error.is_not_sent() && !error.is_timeout(),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_text_never_shows_the_token() {
    let server = Server::start(|i| match i {
        0 => json(404, &format!("Cannot POST /openapi/sendmsg/{TOKEN}")),
        _ => json(
            200,
            &format!(r#"{{"errcode":1001,"errmsg":"TOKEN {TOKEN} is not valid","rid":"x"}}"#),
        ),
    })
    .await;
    let client = server.client();
    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert_eq!(error.body(), Some("Cannot POST /openapi/sendmsg/{TOKEN}"));
    assert_no_secrets(&error);
    assert!(
        error.to_string().contains("/openapi/sendmsg/{TOKEN}"),
        "{error}"
    );

    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert_eq!(error.message(), Some("TOKEN {TOKEN} is not valid"));
    assert_no_secrets(&error);
}

#[tokio::test]
async fn oversized_answer_is_invalid() {
    let server = Server::start(|_| {
        json(
            200,
            &format!(r#"{{"errcode":0,"pad":"{}"}}"#, "x".repeat(100_000)),
        )
    })
    .await;
    let client = server.client();
    let error = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();
    assert_eq!(
        error.invalid_response(),
        Some(InvalidResponse::TooLarge { limit: 64 * 1024 })
    );
    assert!(error.is_ambiguous());
}

mod typed {
    //! The typed calls: kefu-payload's builders, serialised and posted.

    use kefu_client::kefu_payload::{
        Channel, Event, KefuState, KefuStateChange, KefuStateGet, SendMsg, StateQuery,
    };
    use kefu_client::{KefuSwitch, Operation};

    use super::*;

    #[tokio::test]
    async fn send_posts_the_payload_xml() {
        let server = Server::start(|_| json(200, r#"{"errcode":0,"msg":"成功"}"#)).await;
        let client = server.client();
        let msg = SendMsg::builder("oUSER", Channel::OfficialAccount, "客服已接入 <&>")
            .appid("wx0000000000000000")
            .event(Event::WaiterEnter)
            .kefuname("客服小红")
            .build()
            .unwrap();
        let reply = client.send(&msg).await.unwrap();
        assert_eq!(reply.message(), Some("成功"));
        client.send_with_retry(&msg).await.unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        for req in &seen {
            assert_eq!(req.path, format!("/openapi/sendmsg/{TOKEN}"));
            assert_eq!(req.plaintext(), msg.to_xml().unwrap());
        }
    }

    #[tokio::test]
    async fn kefustate_get_reads_both_optional_fields() {
        let server = Server::start(|i| {
            json(
                200,
                [
                    r#"{"errcode":0,"kefustate":"on","status":"personserving"}"#,
                    r#"{"errcode":0,"status":"needperson"}"#,
                    r#"{"errcode":"0","kefustate":"off"}"#,
                    r#"{"errcode":0,"kefustate":"maybe","status":"later"}"#,
                    r#"{"errcode":1001,"errmsg":"TOKEN is not valid"}"#,
                ][i],
            )
        })
        .await;
        let client = server.client();
        let get = KefuStateGet::new("wx0000000000000000", "oUSER", StateQuery::All).unwrap();
        let want = [
            (Some(KefuSwitch::On), Some(KefuState::PersonServing)),
            (None, Some(KefuState::NeedPerson)),
            (Some(KefuSwitch::Off), None),
            (None, None),
        ];
        for (kefustate, status) in want {
            let state = client.kefustate_get(&get).await.unwrap();
            assert_eq!(state.kefustate(), kefustate);
            assert_eq!(state.status(), status);
        }
        let error = client.kefustate_get_with_retry(&get).await.unwrap_err();
        assert_eq!(error.platform_code(), Some(PlatformCode::InvalidToken));
        assert_eq!(error.attempts(), 1, "terminal codes are not retried");
        assert_eq!(error.operation(), Some(Operation::KefuStateGet));

        let seen = server.seen();
        assert_eq!(seen.len(), 5);
        for req in &seen {
            assert_eq!(req.path, format!("/openapi/kefustate/get/{TOKEN}"));
            assert_eq!(req.plaintext(), get.to_xml().unwrap());
        }
    }

    #[tokio::test]
    async fn kefustate_change_posts_the_payload_xml() {
        let server = Server::start(|_| json(200, r#"{"errcode":0,"errmsg":""}"#)).await;
        let client = server.client();
        let change =
            KefuStateChange::new("wx0000000000000000", "oUSER", KefuState::Complete).unwrap();
        let reply = client.kefustate_change(&change).await.unwrap();
        assert_eq!(reply.message(), None);
        client.kefustate_change_with_retry(&change).await.unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        for req in &seen {
            assert_eq!(req.path, format!("/openapi/kefustate/change/{TOKEN}"));
            assert_eq!(req.plaintext(), change.to_xml().unwrap());
        }
    }

    #[tokio::test]
    async fn unserialisable_payload_is_not_sent() {
        let server = Server::start(|_| json(200, r#"{"errcode":0}"#)).await;
        let client = server.client();
        let msg = SendMsg::builder("oUSER", Channel::OfficialAccount, "bell \u{7}")
            .appid("wx0000000000000000")
            .build()
            .unwrap();
        let error = client.send_with_retry(&msg).await.unwrap_err();
        assert!(error.is_payload() && error.is_not_sent(), "{error}");
        assert!(!error.is_ambiguous() && !error.is_transient());
        assert!(error.payload_error().is_some());
        assert_eq!(error.attempts(), 1);
        assert_no_secrets(&error);
        assert!(server.seen().is_empty());
    }
}
