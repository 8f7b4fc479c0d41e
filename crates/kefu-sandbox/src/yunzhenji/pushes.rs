//! The `chatMsg` and `chatMsgSendFail` pushes: posted after their delay, retried a few times,
//! in the background so that the send path never waits, and stopped with the sandbox.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Yunzhenji, YunzhenjiAccount, YunzhenjiPush, id_string};
use crate::push::CallbackDelivery;
use crate::state::keep;

/// How many times one push is posted at most.
pub(crate) const PUSH_ATTEMPTS: u32 = 3;

/// The pause before the second attempt; it doubles for each one after.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One push to make: its body and when it is due.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    due: Instant,
    body: Value,
}

impl Planned {
    /// `{"event", "app_id", "wxid", "data"}`, the shape documented in [`crate`], due `after`
    /// from now.
    pub(crate) fn new(
        event: &str,
        account: &YunzhenjiAccount,
        after: Duration,
        data: Value,
    ) -> Planned {
        Planned {
            due: Instant::now() + after,
            body: json!({
                "event": event,
                "app_id": account.app_id,
                "wxid": account.wxid,
                "data": data,
            }),
        }
    }
}

#[cfg(test)]
impl Planned {
    /// The body to post.
    pub(crate) fn body(&self) -> &Value {
        &self.body
    }
}

impl Yunzhenji {
    /// Posts `planned` in order, each once it is due, in a task of its own that ends when the
    /// sandbox stops.
    pub(super) fn schedule(self: &Arc<Self>, planned: Vec<Planned>) {
        if planned.is_empty() {
            return;
        }
        let this = Arc::clone(self);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let pushes = async {
                for push in planned {
                    tokio::time::sleep_until(push.due).await;
                    this.push(push).await;
                }
            };
            tokio::select! {
                () = pushes => {}
                _ = shutdown.wait_for(|stopping| *stopping) => {}
            }
        });
    }

    /// Posts one push until the target answers 2xx, at most [`PUSH_ATTEMPTS`] times, and
    /// records how it ended.
    pub(super) async fn push(&self, planned: Planned) -> YunzhenjiPush {
        let bytes = Bytes::from(planned.body.to_string());
        let mut attempts = 0;
        let callback = loop {
            attempts += 1;
            let outcome = self
                .target
                .post(None, "application/json", bytes.clone())
                .await;
            let last = attempts >= PUSH_ATTEMPTS;
            if outcome.is_success() || outcome == CallbackDelivery::NotConfigured || last {
                break outcome;
            }
            tokio::time::sleep(RETRY_PAUSE * 2u32.pow(attempts - 1)).await;
        };
        let data = &planned.body["data"];
        let event = planned.body["event"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        tracing::info!(
            event,
            attempts,
            callback = ?callback_outcome(&callback),
            target = self.target.redacted().as_deref(),
            "yunzhenji push"
        );
        let mut push = YunzhenjiPush {
            seq: 0,
            event,
            api_send_id: data.get("api_send_id").map(id_string),
            api_send_svrid: data["api_send_svrid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body: planned.body,
            attempts,
            callback,
        };
        let mut state = self.lock();
        state.pushed += 1;
        push.seq = state.pushed;
        keep(&mut state.pushes, push.clone(), self.max_records);
        push
    }
}

/// The outcome without the target's answer body, for the log.
fn callback_outcome(callback: &CallbackDelivery) -> (&'static str, Option<u16>) {
    match callback {
        CallbackDelivery::NotConfigured => ("not_configured", None),
        CallbackDelivery::Delivered { status, .. } => ("delivered", Some(*status)),
        CallbackDelivery::Failed { .. } => ("failed", None),
    }
}
