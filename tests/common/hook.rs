//! The desk's side of inbound events for the crash tests: a signed handoff callback as the
//! Dialogue platform posts it, and a webhook receiver that keeps what the relays pushed.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use kefu_payload::envelope::DialogueCallback;
use kefu_payload::{HandoffCallback, KefuState};
use sha2::Sha256;
use wxbizmsgcrypt::MsgCrypt;

/// What the desk's webhook received: (event id header, timestamp, signature, body).
pub type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    seen.lock().unwrap().push((
        header("x-kefu-event-id"),
        header("x-kefu-timestamp"),
        header("x-kefu-signature"),
        String::from_utf8(body.to_vec()).unwrap(),
    ));
    StatusCode::OK
}

/// Serves the desk's webhook at `/hook` on `listener` and returns what it receives.
pub fn serve_hook(listener: tokio::net::TcpListener) -> Seen {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}

/// Whether `signature` is the webhook's HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn verify(secret: &str, timestamp: &str, signature: &str, body: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .is_some_and(|expected| mac.verify_slice(&expected).is_ok())
}

/// Seconds since the epoch, as a callback's `createtime`.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The encrypted JSON body of a handoff callback in which `user` asks for a person with `text`.
pub fn handoff(crypt: &MsgCrypt, user: &str, text: &str, createtime: i64) -> String {
    let callback = HandoffCallback {
        userid: user.to_owned(),
        appid: "wx0000000000000000".into(),
        content: Some(text.to_owned()),
        from: Some(0),
        kfstate: Some(KefuState::NeedPerson),
        channel: Some(0),
        createtime: Some(createtime),
        ..HandoffCallback::default()
    };
    DialogueCallback {
        encrypted: crypt
            .encrypt(callback.to_xml().unwrap().as_bytes())
            .unwrap(),
    }
    .to_json()
}
