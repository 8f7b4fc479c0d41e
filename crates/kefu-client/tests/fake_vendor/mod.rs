//! A scripted fake vendor on 127.0.0.1 with an OS-chosen port, for the yunzhenji and gateway
//! providers: it records every request and answers each from a script (or a default). Every
//! task belongs to its test's runtime and stops with it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kefu_core::{ComposeRequest, Job, Provider};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

#[path = "../http1/mod.rs"]
mod http1;

/// A scripted answer.
pub use http1::Reply;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub struct State {
    pub script: VecDeque<Reply>,
    pub default: Reply,
    pub seen: Vec<Seen>,
}

pub struct Fake {
    pub base_url: String,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    /// A fake that answers `default` to every request the script does not cover.
    pub async fn start(default: Reply) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default,
            seen: Vec::new(),
        }));
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Fake {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    pub fn script(&self, reply: Reply) {
        self.state.lock().unwrap().script.push_back(reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut stream = BufReader::new(stream);
    while let Some(request) = http1::read_request(&mut stream).await {
        let reply = {
            let mut state = state.lock().unwrap();
            state.seen.push(Seen {
                target: request.target,
                headers: request.headers,
                body: request.body,
            });
            state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default.clone())
        };
        if !http1::reply(stream.get_mut(), reply, "application/json").await {
            return;
        }
    }
}

/// The jobs a desk body composes to, with ids from `first_id`.
pub fn jobs(provider: &dyn Provider, first_id: i64, body: serde_json::Value) -> Vec<Job> {
    let composed = provider
        .compose(ComposeRequest {
            body: body.as_object().unwrap(),
            session_appid: None,
        })
        .unwrap();
    composed
        .into_iter()
        .zip(first_id..)
        .map(|(c, id)| Job {
            id,
            account: "acct".into(),
            recipient: c.recipient,
            operation: c.operation,
            payload: c.payload,
        })
        .collect()
}

/// An address on which nothing listens: a port bound, then released.
pub async fn closed_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
