//! The inbound side of the relay: WeChat's callbacks are received, stored durably, delivered
//! to the desk (pushed to a webhook, or pulled with a long poll), and each user's conversation
//! state is tracked.
//!
//! # Routes
//!
//! | Route | Authentication | Answer |
//! |---|---|---|
//! | `POST /v1/callbacks/dialogue/{secret}` | the secret path segment (`callbacks.dialogue_secret`) | `200 {"errcode":0,"errmsg":"ok"}` once stored (or recognised as a redelivery); any refusal `400 {"errcode":400,"errmsg":"invalid callback"}`, always the same |
//! | `GET /v1/callbacks/wechat/{name}` | `signature` (OA/MP) or `msg_signature` (WeCom) | URL verification: `echostr` (OA/MP) or its decrypted text (WeCom), exactly, as `text/plain` |
//! | `POST /v1/callbacks/yunzhenji/{secret}` | the secret path segment (`yunzhenji.<name>.callback_secret`), which names the account | `200 {"errcode":0,"message":"ok"}` once stored (or recognised as a redelivery); a wrong secret is answered as a path without a route (`404`), before the body is read; a body that is no `chatMsg`/`chatMsgSendFail` push, or larger than 64 KiB, `400 {"errcode":400,"message":"invalid callback"}` |
//! | `POST /v1/callbacks/wechat/{name}` | `signature` (an account in `plain` mode) or `msg_signature` (safe and compatible modes, WeCom) | `200 success` once stored (or recognised as a redelivery); any refusal before authentication (unknown account included) one `403`, any unusable authenticated push one `400`, a replay `403 replayed request` |
//! | `GET /v1/events?after=<id>&wait=<s>&limit=<n>` | bearer | `{"events": [...], "next": <id>}`: events with an id above `after`, oldest first; waits up to `wait` seconds (capped by `events.max_wait_secs`) for one if there is none; an `after` beyond the newest id is `409 {"error": {"message", "field": "after", "newest": <id>}}` (the store was reset) |
//! | `GET /v1/sessions/{openid}?account=<name>` | bearer | the user's [`Session`](session::Session) on that account (`dialogue` when absent), or 404 |
//! | `GET /v1/sessions?state=needperson&limit=<n>&account=<name>` | bearer | `{"sessions": [...]}` of that account (`dialogue` when absent), longest in their state first |
//!
//! A callback is acknowledged only once it is durably stored (§9.3), through the relay's
//! [`Store`]; delivery to the desk happens afterwards and never holds up the
//! answer. A redelivery is recognised by its key (Dialogue: bot APPID, userid, createtime and the
//! SHA-256 of the decrypted plaintext; WeChat: `MsgId`, or `FromUserName`, `CreateTime` and
//! `Event`), acknowledged and dropped; keys are kept for `callbacks.dedup_retention_secs`, at least
//! twice `callbacks.replay_window_secs`, outside which a callback's time (Dialogue `createtime`,
//! WeChat `timestamp`) is refused: a callback seen once cannot be stored again after its key
//! expires.
//!
//! # The event
//!
//! One JSON schema for every source. Every key is always present; `null` when it does not apply.
//!
//! | Key | Type | Meaning |
//! |---|---|---|
//! | `id` | integer | The event id: increasing, never reused. The cursor of `GET /v1/events`, and the `X-Kefu-Event-Id` of the webhook: deduplicate on it, since delivery is at least once. |
//! | `source` | string | `dialogue` (the handoff callback), `wechat` (a standard callback) or `yunzhenji` (a `chatMsg` or `chatMsgSendFail` push) |
//! | `account` | string | The `[wechat.<name>]` or `[yunzhenji.<name>]` account; `null` for `dialogue` |
//! | `kind` | string | `message`, `user_enter`, `user_quit`, `agent_enter`, `agent_quit`, `handoff_requested` (the user asked for a person: the conversation entered `needperson`), `rating`, `other`; yunzhenji: `message` (a customer's), `sent` (the echo of one of the relay's messages: sent, not yet delivered), `send_failed` (one of the relay's messages failed: it is now `failed` with reason `send_failed`) |
//! | `openid` | string | The user: `userid` (Dialogue), `FromUserName` (WeChat), or the customer or group (yunzhenji: the `target_wxid` to answer to). Events of one user are delivered in `id` order. |
//! | `appid` | string | Dialogue `appid`; WeChat `ToUserName` |
//! | `channel` | integer | Dialogue `channel`: echo it when answering |
//! | `from` | integer | Dialogue `from`: 0 the user, 1 a bot answer, 2 an agent inside the platform (only 0 is confirmed) |
//! | `content` | string | Dialogue `content/msg` (text or rich JSON as a string); WeChat `Content`; yunzhenji `content` (a string, or the object as JSON text) |
//! | `msgtype` | string | Dialogue `content/msgtype`; WeChat `MsgType`; yunzhenji `msg_type` |
//! | `event` | string | Dialogue `event` (`userEnter`, `customerStuffEnter`, …); WeChat `Event`; yunzhenji `chatMsg` or `chatMsgSendFail` |
//! | `kfstate` | string | Dialogue `kfstate`: `asking`, `personserving`, `complete` or `needperson` |
//! | `assessment` | integer | Dialogue rating, 1 (very dissatisfied) to 5 (very satisfied) |
//! | `agent` | object | `{"name", "avatar", "openid"}`: Dialogue `customerInfo`, WeChat `KfAccount` (as `name`) |
//! | `msg_id` | string | WeChat `MsgId`; yunzhenji `api_send_svrid` |
//! | `created_at` | integer | `createtime` / `CreateTime`, Unix seconds (yunzhenji: `create_time`, in seconds whether it came in seconds or milliseconds; `null` when the push has none) |
//! | `received_at_ms` | integer | When the connector stored it, Unix milliseconds |
//! | `sender` | string | yunzhenji `from_wxid` |
//! | `receiver` | string | yunzhenji `to_wxid` |
//! | `text` | string | yunzhenji: the text of a text message |
//! | `message_id` | integer | yunzhenji: the relay's message (`GET /v1/messages/{id}`) that a `sent` or `send_failed` event is about: its `api_send_id` |
//! | `api_send_id` | string | yunzhenji `api_send_id` as received |
//! | `error` | string | yunzhenji: a `chatMsgSendFail`'s reason (`message`) |
//! | `raw` | object | Every field of the decrypted plaintext as received: XML elements as strings (nested elements as objects, repeated ones as arrays), or the JSON object (yunzhenji: the body as received) |
//!
//! The webhook's request and its signature are described in [`webhook`].

pub mod dialogue;
pub mod http;
pub mod log_limit;
pub mod query;
pub mod webhook;
pub mod wechat;
pub mod yunzhenji;

// The event, the session state machine and the plaintext reader run inside the store's
// transactions, so they live with the storage traits; these names keep their paths here.
pub use kefu_store::{event, message, session};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxbizmsgcrypt::MsgCrypt;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{DIALOGUE_ACCOUNT, DeskCall, PendingEvent, Store, StoreError, raise_newest};
use dialogue::DialogueReceiver;
use session::DeskAction;
use webhook::WebhookDispatcher;
use wechat::Accounts;
use yunzhenji::YunzhenjiReceiver;

/// How often expired dedup and replay keys and old events are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Why the inbound side could not start.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The store could not create or read the inbound tables.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A key is unusable (validated at configuration time, so this is not expected).
    #[error("invalid key: {0}")]
    Key(#[from] wxbizmsgcrypt::Error),
    /// The webhook client could not be built.
    #[error("{0}")]
    Webhook(#[from] webhook::WebhookError),
}

/// The inbound side: callback receivers, the event feed and the webhook. Clones share it.
#[derive(Clone)]
pub struct Inbound {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    dialogue: DialogueReceiver,
    accounts: Accounts,
    yunzhenji: YunzhenjiReceiver,
    replay_window: Duration,
    dedup_retention: Duration,
    max_wait: Duration,
    /// The highest stored event id, for long polls.
    latest: watch::Sender<i64>,
    /// Set when the service stops, so that long polls return at once.
    stopping: watch::Sender<bool>,
    webhook: Option<WebhookDispatcher>,
    purger: Mutex<Option<JoinHandle<()>>>,
    /// Per route, the sampling of the WARN lines of refused callbacks.
    refusal_logs: RefusalLogs,
}

/// The [`log_limit::LogLimit`] of each callback route.
#[derive(Default)]
struct RefusalLogs {
    dialogue: log_limit::LogLimit,
    wechat_verify: log_limit::LogLimit,
    wechat_push: log_limit::LogLimit,
    yunzhenji: log_limit::LogLimit,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Inbound {
    /// Creates the inbound tables in `store`, resumes the webhook deliveries left by the last
    /// run, and starts the periodic purge.
    pub async fn start(
        store: Arc<dyn Store>,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Inbound, InboundError> {
        let (pending, latest) = store.pending_events().await?;
        let dialogue = &config.dialogue;
        let crypt = MsgCrypt::new(
            dialogue.token.expose(),
            dialogue.aes_key.expose(),
            dialogue.bot_appid.as_str(),
        )?;
        let webhook = match &config.webhook {
            Some(webhook) => {
                if !pending.is_empty() {
                    tracing::info!(events = pending.len(), "resuming webhook deliveries");
                }
                Some(WebhookDispatcher::start(
                    Arc::clone(&store),
                    webhook.clone(),
                    Arc::clone(&metrics),
                    pending,
                )?)
            }
            None => {
                if !pending.is_empty() {
                    tracing::warn!(
                        events = pending.len(),
                        "events wait for a webhook, but webhook.url is not set; they stay available from GET /v1/events"
                    );
                }
                None
            }
        };
        if config.callbacks.dialogue_secret.is_none() {
            tracing::info!(
                "callbacks.dialogue_secret is not set: the Dialogue callback route refuses every call"
            );
        }
        let inbound = Inbound {
            inner: Arc::new(Inner {
                store: Arc::clone(&store),
                metrics,
                dialogue: DialogueReceiver::new(
                    config.callbacks.dialogue_secret.clone(),
                    crypt,
                    config.callbacks.dialogue_receive_id,
                    dialogue.bot_appid.clone(),
                    config.callbacks.replay_window.as_secs(),
                ),
                accounts: Accounts::new(&config.wechat)?,
                yunzhenji: YunzhenjiReceiver::new(&config.yunzhenji),
                replay_window: config.callbacks.replay_window,
                dedup_retention: config.callbacks.dedup_retention,
                max_wait: config.events.max_wait,
                latest: watch::channel(latest).0,
                stopping: watch::channel(false).0,
                webhook,
                purger: Mutex::new(None),
                refusal_logs: RefusalLogs::default(),
            }),
        };
        let retention = millis(config.events.retention);
        if store.shared() {
            inbound.follow_the_fleet(store.newest_event());
        }
        let purger = tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                every.tick().await;
                // On a shared store, one relay purges for the fleet.
                if !store.is_leader() {
                    continue;
                }
                let purged = store.purge_events(retention).await;
                match purged {
                    Ok(purged) if purged != crate::store::Purged::default() => {
                        tracing::debug!(?purged, "purged expired inbound keys and events");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!("cannot purge inbound keys: {error}"),
                }
                // The desk API's Idempotency-Keys live in the same store and expire the same way.
                let purged = store.purge_keys().await;
                match purged {
                    Ok(0) => {}
                    Ok(keys) => tracing::debug!(keys, "purged expired idempotency keys"),
                    Err(error) => tracing::error!("cannot purge idempotency keys: {error}"),
                }
            }
        });
        if let Ok(mut slot) = inbound.inner.purger.lock() {
            *slot = Some(purger);
        }
        Ok(inbound)
    }

    /// Makes long polls return now; called as soon as the service starts stopping.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.stopping.send(true);
    }

    /// Resolves once the service has begun to stop (see [`Inbound::begin_shutdown`]): what
    /// listeners other than the desk API's wait on to stop with it.
    pub async fn stopping(&self) {
        let mut stopping = self.inner.stopping.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
    }

    /// Stops the purge and waits up to `grace` for webhook calls in flight. Unacknowledged
    /// events stay stored for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.begin_shutdown();
        if let Ok(mut slot) = self.inner.purger.lock() {
            if let Some(purger) = slot.take() {
                purger.abort();
            }
        }
        if let Some(webhook) = &self.inner.webhook {
            webhook.shutdown(grace).await;
        }
    }

    /// How many long polls are waiting, for the tests that wake them.
    #[cfg(test)]
    pub(crate) fn long_polls(&self) -> usize {
        self.inner.latest.receiver_count()
    }

    /// Announces a newly stored event to long polls and the webhook.
    fn publish(&self, event: PendingEvent) {
        raise_newest(&self.inner.latest, event.id);
        if let Some(webhook) = &self.inner.webhook {
            webhook.enqueue(event);
        }
    }

    /// On a store several relays share, wakes this relay's long polls for the events stored
    /// through the others too, until the service stops.
    fn follow_the_fleet(&self, mut newest: watch::Receiver<i64>) {
        let inbound = self.clone();
        let mut stopping = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                let id = *newest.borrow_and_update();
                raise_newest(&inbound.inner.latest, id);
                tokio::select! {
                    changed = newest.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
            }
        });
    }

    /// The desk call (`enter`, `switch`, `quit`) to record on a Dialogue user's session, in
    /// the same transaction as the calls' jobs.
    pub fn desk_call(
        openid: String,
        action: DeskAction,
        agent: Option<String>,
        channel: u8,
        appid: Option<String>,
    ) -> DeskCall {
        DeskCall {
            account: DIALOGUE_ACCOUNT.to_owned(),
            openid,
            action,
            agent,
            channel: Some(channel),
            appid,
        }
    }
}
