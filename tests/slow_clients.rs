//! Slow and idle clients over real loopback sockets: the relay (and the sandbox, which shares
//! its accept loop) closes connections that idle, send half a request head or half a body, at
//! the connection limit closes such a connection to serve a new one, and answers connections
//! over its limit, when all are busy, instead of holding them.
//!
//! Timeouts here are short (a few hundred milliseconds); every wait is bounded by a much longer
//! one, which only a server that never closes reaches. Nothing asserts on how fast anything is.

use std::time::Duration;

use kefu_connector::config::Config;
use kefu_connector::http_server::ServerLimits;
use kefu_connector::sandbox::{Sandbox, SandboxConfig};
use kefu_connector::serve::Relay;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const API_KEY: &str = "desk-key-0123456789";
/// Far longer than any configured timeout here: reaching it means the server held on.
const BOUND: Duration = Duration::from_secs(10);

async fn relay(dir: &tempfile::TempDir, settings: &[(&str, &str)]) -> Relay {
    // A port that refuses connections: nothing is ever delivered.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/openapi", dead.local_addr().unwrap());
    drop(dead);
    let outbox = dir.path().join("outbox.sqlite3").display().to_string();
    let mut env = vec![
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("KEFU_SERVER_API_KEY", API_KEY.to_owned()),
        ("KEFU_DIALOGUE_TOKEN", "TOKEN0123456789".to_owned()),
        (
            "KEFU_DIALOGUE_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned(),
        ),
        ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG".to_owned()),
        ("KEFU_DIALOGUE_BASE_URL", dead_url),
        ("KEFU_OUTBOX_PATH", outbox),
    ];
    env.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let config = Config::from_settings(&env).unwrap();
    Relay::start(&config).await.unwrap()
}

/// Reads until the server closes the connection (a reset counts as closing), and returns what
/// it sent. Panics if it does not close within [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {BOUND:?}; it sent {:?}",
        String::from_utf8_lossy(&received)
    );
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends one keep-alive request and reads its whole answer (the connection stays open).
async fn request(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.unwrap();
    read_answer(stream).await
}

/// Reads one whole answer (its head and `content-length` bytes of body), or whatever arrives
/// before the server closes the connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
    })
    .await
    .expect("an answer or a close within the bound");
    String::from_utf8_lossy(&received).into_owned()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n";

#[tokio::test]
async fn an_idle_connection_is_closed_before_and_between_requests() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(
        &dir,
        &[
            // Long enough that the second request below, sent at once, always comes in time.
            ("KEFU_SERVER_IDLE_TIMEOUT_MS", "1000"),
            ("KEFU_SERVER_HEADER_READ_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    // Opened and never used.
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");
    // Used once, then left open.
    let mut used = TcpStream::connect(relay.addr).await.unwrap();
    let answer = request(&mut used, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request(&mut used, HEALTHZ).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "keep-alive still works: {answer}"
    );
    assert_eq!(read_until_closed(&mut used).await, "");
    relay.stop().await;
}

#[tokio::test]
async fn a_partial_request_line_or_partial_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(
        &dir,
        &[
            ("KEFU_SERVER_HEADER_READ_TIMEOUT_MS", "300"),
            ("KEFU_SERVER_IDLE_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    for partial in [
        "GET /heal",
        "GET /healthz HTTP/1.1\r\nhost: relay\r\nx-slow: ",
    ] {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        stream.write_all(partial.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream).await;
        assert!(!answer.contains(" 200 "), "{partial:?}: {answer}");
    }
    // After a whole request, the next head is timed from its own first byte.
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    let answer = request(&mut stream, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stream.write_all(b"GET /hea").await.unwrap();
    read_until_closed(&mut stream).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_partial_body_is_answered_408_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&dir, &[("KEFU_SERVER_BODY_READ_TIMEOUT_MS", "300")]).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"openid\": "
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("300 ms"), "{message}");
    relay.stop().await;
}

#[tokio::test]
async fn a_request_being_answered_is_not_cut_by_the_idle_or_header_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(
        &dir,
        &[
            ("KEFU_SERVER_IDLE_TIMEOUT_MS", "300"),
            ("KEFU_SERVER_HEADER_READ_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    // A long poll that finds nothing waits its full two seconds, several idle timeouts.
    let poll = format!(
        "GET /v1/events?wait=2 HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {API_KEY}\r\n\r\n"
    );
    let answer = request(&mut stream, &poll).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    relay.stop().await;
}

/// Opens a connection and sends one request on it, and returns it once the answer is in.
async fn used(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let answer = request(&mut stream, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stream
}

#[tokio::test]
async fn at_the_limit_a_new_connection_takes_the_place_of_the_one_idle_the_longest() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&dir, &[("KEFU_SERVER_MAX_CONNECTIONS", "8")]).await;
    // Four used once and left open, then four opened and never used: the eight places an
    // attacker holds without a key.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(used(relay.addr).await);
    }
    for _ in 0..4 {
        held.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    let mut newcomers = vec![used(relay.addr).await];
    assert_eq!(
        read_until_closed(&mut held[0]).await,
        "",
        "the oldest idle went"
    );
    // Only that one: the other three used ones still answer (which makes them the newest).
    for stream in &mut held[1..4] {
        let answer = request(stream, HEALTHZ).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Never used counts as idle too: each new connection closes the next of them.
    for silent in &mut held[4..8] {
        newcomers.push(used(relay.addr).await);
        assert_eq!(read_until_closed(silent).await, "");
    }
    relay.stop().await;
}

#[tokio::test]
async fn at_the_limit_a_connection_still_sending_its_request_makes_room_too() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&dir, &[("KEFU_SERVER_MAX_CONNECTIONS", "8")]).await;
    let partial_body = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"openid\": "
    );
    let partial_head = "POST /wechat/callback HTTP/1.1\r\nhost: relay\r\nx-slow: ";
    let mut held = Vec::new();
    for partial in [partial_body.as_str(), partial_head].repeat(4) {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        stream.write_all(partial.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // Kept open: a newcomer that closed would free its place rather than take one.
    let mut newcomers = Vec::new();
    for stream in &mut held {
        newcomers.push(used(relay.addr).await);
        let answer = read_until_closed(stream).await;
        assert!(!answer.contains(" 200 "), "{answer}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_answered_503_while_all_are_busy() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&dir, &[("KEFU_SERVER_MAX_CONNECTIONS", "8")]).await;
    // Long polls that find nothing: each keeps its connection busy for thirty seconds, or
    // until the relay stops.
    let poll = format!(
        "GET /v1/events?wait=30 HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {API_KEY}\r\n\r\n"
    );
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        stream.write_all(poll.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // The polls are busy only once their heads are in; until then a ninth could take the place
    // of one. Keep trying until one is refused, within a bound.
    let mut refused = None;
    let mut served = Vec::new();
    for _ in 0..200 {
        let mut ninth = TcpStream::connect(relay.addr).await.unwrap();
        ninth.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let answer = read_answer(&mut ninth).await;
        if answer.starts_with("HTTP/1.1 503 ") {
            refused = Some(answer);
            break;
        }
        // Kept open, so that it keeps the place it took.
        served.push(ninth);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = refused.expect("a ninth connection was refused while eight polls were busy");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_connections"),
        "{body}"
    );
    // A connection that sends nothing is refused as well.
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    let answer = read_until_closed(&mut silent).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    // No poll being answered was cut off to make room: stopping answers them. (Only a poll
    // whose head had not arrived when a ninth was served may have made room for it.)
    let stopped = tokio::spawn(relay.stop());
    let mut cut_off = 0;
    for stream in &mut held {
        let answer = read_answer(stream).await;
        if answer.is_empty() {
            cut_off += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    assert!(cut_off <= served.len(), "{cut_off} polls cut off");
    stopped.await.unwrap();
}

#[tokio::test]
async fn the_sandbox_closes_slow_clients_too() {
    let mut config = SandboxConfig::new(
        "TOKEN0123456789",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "Gg8HejYTkUsEIlG",
    );
    config.limits = ServerLimits::default()
        .idle_timeout(Duration::from_millis(300))
        .header_read_timeout(Duration::from_millis(300))
        .body_read_timeout(Duration::from_millis(300))
        .max_connections(1);
    let sandbox = Sandbox::start(config).await.unwrap();
    let addr = sandbox.addr();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // The only place is taken by an idle connection: the next one takes it.
    let mut next = TcpStream::connect(addr).await.unwrap();
    let answer = request(
        &mut next,
        "GET /sandbox/messages HTTP/1.1\r\nhost: sandbox\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(read_until_closed(&mut idle).await, "");
    assert_eq!(read_until_closed(&mut next).await, "", "idle in its turn");

    let partial_body =
        b"POST /sandbox/users/o1/say HTTP/1.1\r\nhost: sandbox\r\ncontent-length: 50\r\n\r\n{\"te";
    let answer = when_free(addr, partial_body).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(when_free(addr, b"GET /sandbox/mess").await, "");
    sandbox.stop().await;
}

/// Sends `bytes` on a new connection and reads until the close, once the sandbox's single
/// place is free again (the previous connection's close reaches it in its own time).
async fn when_free(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let answer = read_until_closed(&mut stream).await;
        if !answer.starts_with("HTTP/1.1 503 ") {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the sandbox never freed its connection");
}
