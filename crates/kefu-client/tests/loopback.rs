//! End-to-end tests over real loopback sockets: a tiny HTTP/1.1 server on 127.0.0.1 with an
//! OS-chosen port plays the platform. Every server task belongs to its test's runtime and stops
//! with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_client::{
    Client, Error, InvalidResponse, Operation, PlatformCode, RetryPolicy, StatusCode,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wxbizmsgcrypt::MsgCrypt;

const TOKEN: &str = "TestTokenAbCdEfGhIjKlMnOpQrSt12";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "Gg8HejYTkUsEIlG";
const XML: &str = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>您好,请问需要什么帮助</msg><channel>0</channel><event>waiterEnter</event><kefuname>客服小红</kefuname></xml>";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decrypts the `{"encrypt": …}` body as the platform would.
    fn plaintext(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 1, "the body is exactly {{\"encrypt\": …}}");
        let encrypt = obj["encrypt"].as_str().unwrap();
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        String::from_utf8(crypt.decrypt(encrypt).unwrap().into_message()).unwrap()
    }
}

/// What the server does with the n-th request (0-based).
enum Action {
    Reply(u16, String),
    /// Read the request, then close without answering.
    Close,
    /// Read the request, then never answer.
    Stall,
}

fn json(status: u16, body: &str) -> Action {
    Action::Reply(status, body.to_owned())
}

struct Server {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start(respond: impl Fn(usize) -> Action + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, s.clone(), respond.clone()));
            }
        });
        Server {
            base_url: format!("http://{addr}/openapi"),
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn client(&self) -> Client {
        client(&self.base_url)
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_elapsed(Duration::from_secs(10))
}

fn client(base_url: &str) -> Client {
    Client::builder(TOKEN, KEY, APPID)
        .base_url(base_url)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(fast_retry())
        .build()
        .unwrap()
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Arc<impl Fn(usize) -> Action + Send + Sync + 'static>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Seen {
                method,
                path,
                headers,
                body,
            });
            seen.len() - 1
        };
        match respond(index) {
            Action::Reply(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let stream = stream.get_mut();
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
            Action::Close => return,
            Action::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
    }
}

/// Neither rendering of an error may show the TOKEN or the key, nor the message text.
fn assert_no_secrets(error: &Error) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(TOKEN), "TOKEN leaked: {text}");
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains("请问需要什么帮助"), "message leaked: {text}");
    }
    if let Some(body) = error.body() {
        assert!(!body.contains(TOKEN), "TOKEN leaked in body(): {body}");
    }
}

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
    let server = Server::start(|_| Action::Close).await;
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
        0 => Action::Close,
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
    let server = Server::start(|_| Action::Stall).await;
    let client = Client::builder(TOKEN, KEY, APPID)
        .base_url(&server.base_url)
        .request_timeout(Duration::from_millis(300))
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

mod logs {
    //! Captures this thread's tracing events and checks that they carry no secret.

    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<String>>);

    struct Line<'a>(&'a mut String);

    impl Visit for Line<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut out = self.0.lock().unwrap();
            span.record(&mut Line(&mut out));
            out.push('\n');
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut out = self.0.lock().unwrap();
            values.record(&mut Line(&mut out));
            out.push('\n');
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut out = self.0.lock().unwrap();
            let _ = write!(
                out,
                "{} {}:",
                event.metadata().level(),
                event.metadata().target()
            );
            event.record(&mut Line(&mut out));
            out.push('\n');
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test]
async fn debug_logs_carry_rid_and_sizes_but_no_secrets() {
    let capture = logs::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let server = Server::start(|i| match i {
        0 => json(200, r#"{"success":false,"code":-1,"msg":"busy"}"#),
        1 => json(200, r#"{"errcode":0,"msg":"Success","rid":"rid-42"}"#),
        _ => Action::Close,
    })
    .await;
    let client = server.client();
    client
        .call_xml_with_retry(Operation::SendMsg, XML)
        .await
        .unwrap();
    let _ = client.call_xml(Operation::SendMsg, XML).await.unwrap_err();

    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.contains("rid=\"rid-42\""), "{logs}");
    assert!(logs.contains("errcode=-1"), "{logs}");
    assert!(logs.contains("request_bytes="), "{logs}");
    assert!(logs.contains("elapsed_ms="), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
    assert!(!logs.contains(TOKEN), "TOKEN in logs: {logs}");
    assert!(!logs.contains(KEY), "key in logs: {logs}");
    assert!(
        !logs.contains("请问需要什么帮助"),
        "message text in logs: {logs}"
    );
    let encrypt =
        serde_json::from_slice::<serde_json::Value>(&server.seen()[0].body).unwrap()["encrypt"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(!logs.contains(&encrypt), "ciphertext in logs");
}
