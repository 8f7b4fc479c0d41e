//! A tiny HTTP/1.1 server on 127.0.0.1 with an OS-chosen port, playing the platform, and the
//! helpers the loopback tests share. Every server task belongs to its test's runtime and stops
//! with it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu_client::kefu_core::RetryPolicy;
use kefu_client::{Client, Error};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use wxbizmsgcrypt::MsgCrypt;

#[path = "../http1/mod.rs"]
mod http1;

/// What the server does with the n-th request (0-based).
pub use http1::Reply;

pub const TOKEN: &str = "TestTokenAbCdEfGhIjKlMnOpQrSt12";
pub const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APPID: &str = "Gg8HejYTkUsEIlG";
pub const XML: &str = "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>您好,请问需要什么帮助</msg><channel>0</channel><event>waiterEnter</event><kefuname>客服小红</kefuname></xml>";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    /// Decrypts the `{"encrypt": …}` body as the platform would.
    pub fn plaintext(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 1, "the body is exactly {{\"encrypt\": …}}");
        let encrypt = obj["encrypt"].as_str().unwrap();
        let crypt = MsgCrypt::new(TOKEN, KEY, APPID).unwrap();
        String::from_utf8(crypt.decrypt(encrypt).unwrap().into_message()).unwrap()
    }
}

pub fn json(status: u16, body: &str) -> Reply {
    Reply::Json(status, body.to_owned())
}

pub struct Server {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start(respond: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
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

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn client(&self) -> Client {
        client(&self.base_url)
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_elapsed(Duration::from_secs(10))
}

pub fn client(base_url: &str) -> Client {
    Client::builder(TOKEN, KEY, APPID)
        .base_url(base_url)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(fast_retry())
        .build()
        .unwrap()
}

pub async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Arc<impl Fn(usize) -> Reply + Send + Sync + 'static>,
) {
    let mut stream = BufReader::new(stream);
    while let Some(request) = http1::read_request(&mut stream).await {
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Seen {
                method: request.method,
                path: request.target,
                headers: request.headers,
                body: request.body,
            });
            seen.len() - 1
        };
        if !http1::reply(stream.get_mut(), respond(index), "application/json").await {
            return;
        }
    }
}

/// Neither rendering of an error may show the TOKEN or the key, nor the message text.
pub fn assert_no_secrets(error: &Error) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(TOKEN), "TOKEN leaked: {text}");
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains("请问需要什么帮助"), "message leaked: {text}");
    }
    if let Some(body) = error.body() {
        assert!(!body.contains(TOKEN), "TOKEN leaked in body(): {body}");
    }
}
