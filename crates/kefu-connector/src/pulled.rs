//! Conversations worked from a store that several relays share (design §3.5): the relay keeps
//! no queue in memory. Storing into a conversation kicks it; a kicked conversation's task takes
//! its lease and pulls its head from the store ([`Fleet::head`]), delivers it through the same
//! [`Deliver`] worker as a local queue, and reads the head again until it is empty, then lets
//! the conversation go ([`Fleet::release`]), unless new work arrived in between. A claim loop
//! finds, every [`Fleet::poll_every`] and at start, the conversations with work that nobody
//! works: another relay's after it stopped or died, or this relay's after a store failure.
//!
//! [`Queues`] is the switch the dispatchers hold: a local store keeps today's in-memory queues
//! ([`Conversations`]), exactly as before; a shared store gets [`Pulled`].
//!
//! [`Fleet::head`]: crate::store::Fleet::head
//! [`Fleet::release`]: crate::store::Fleet::release
//! [`Fleet::poll_every`]: crate::store::Fleet::poll_every

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

use crate::conversations::{Conversations, Deliver, Tasks};
use crate::store::{ConvKey, Head, Lane, PendingEvent, PendingJob, Store};

/// How many items one read of a head takes: the batches delivered from it, then a new read.
const HEAD_LIMIT: usize = 32;

/// How many conversations one claim takes; the next round takes more.
const CLAIM_MAX: usize = 64;

/// How long a task keeps a conversation whose head it found empty, waiting for more work
/// before it lets it go. A desk often writes to a user again within moments: kept, the next
/// message costs one read of the head instead of a release, a take and two reads. A kept
/// conversation is read again at once when this relay stores into it (a kick), or another one
/// does ([`Pulled::follow_elsewhere`]); a missed notification delays it by this much at most
/// (the release then fails on the version, and the head is read again).
const LINGER: Duration = Duration::from_millis(100);

/// An item of a conversation: where it queues locally, and where it lives in a shared store.
pub(crate) trait Item: Clone + Send + Sync + 'static {
    /// The key of its in-memory queue (local mode).
    type Key: Eq + Hash + Clone + Send + Sync + 'static;
    /// The lane it travels on.
    const LANE: Lane;
    /// Its in-memory queue.
    fn key(&self) -> Self::Key;
    /// Its conversation in a shared store.
    fn conversation(&self) -> ConvKey;
    /// The items of a head read from the lane (none if the store answered for another lane).
    fn from_head(head: Head) -> Vec<Self>;
}

impl Item for PendingJob {
    type Key = (String, String);
    const LANE: Lane = Lane::Jobs;

    fn key(&self) -> (String, String) {
        (self.job.account.clone(), self.job.recipient.clone())
    }

    fn conversation(&self) -> ConvKey {
        ConvKey::jobs(&self.job.account, &self.job.recipient)
    }

    fn from_head(head: Head) -> Vec<PendingJob> {
        match head {
            Head::Jobs(jobs) => jobs,
            Head::Events(_) => Vec::new(),
        }
    }
}

impl Item for PendingEvent {
    type Key = String;
    const LANE: Lane = Lane::Webhook;

    fn key(&self) -> String {
        self.openid.clone()
    }

    fn conversation(&self) -> ConvKey {
        ConvKey::webhook(&self.openid)
    }

    fn from_head(head: Head) -> Vec<PendingEvent> {
        match head {
            Head::Events(events) => events,
            Head::Jobs(_) => Vec::new(),
        }
    }
}

/// A dispatcher's conversations: in memory for a store one relay owns, pulled from a shared
/// one.
pub(crate) enum Queues<J: Item, W> {
    /// Today's in-memory queues, fed by the store's pending list and this relay's calls.
    Local(Arc<Conversations<J::Key, J, W>>),
    /// Kicked and pulled from the shared store.
    Shared(Arc<Pulled<J, W>>),
}

impl<J: Item, W: Deliver<J>> Queues<J, W> {
    /// The queues `store` calls for, worked by `worker`. On a shared store, the claim loop
    /// starts at once, woken also by each change of `wake` (the webhook lane: new events
    /// elsewhere in the fleet); the jobs' lane also follows what other relays store
    /// ([`Fleet::stored_elsewhere`](crate::store::Fleet::stored_elsewhere)).
    pub(crate) fn start(
        store: &Arc<dyn Store>,
        worker: W,
        wake: Option<watch::Receiver<i64>>,
    ) -> Queues<J, W> {
        if !store.shared() {
            return Queues::Local(Conversations::new(worker));
        }
        let pulled = Arc::new(Pulled {
            store: Arc::clone(store),
            worker,
            running: Mutex::new(HashMap::new()),
            tasks: Tasks::new(),
            items: PhantomData,
        });
        let claimer = Arc::clone(&pulled);
        pulled.tasks.spawn(claimer.claim_loop(wake));
        if let Some(stored) = store.stored_elsewhere().filter(|_| J::LANE == Lane::Jobs) {
            let follower = Arc::clone(&pulled);
            pulled.tasks.spawn(follower.follow_elsewhere(stored));
        }
        Queues::Shared(pulled)
    }

    /// Hands over a stored item: queued behind its conversation's earlier items (local), or
    /// its conversation kicked (shared: the store has it already).
    pub(crate) fn enqueue(&self, item: J) {
        match self {
            Queues::Local(conversations) => conversations.enqueue(item.key(), item),
            Queues::Shared(pulled) => pulled.kick(item.conversation()),
        }
    }

    /// A receiver that turns true when [`shutdown`](Queues::shutdown) begins.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        match self {
            Queues::Local(conversations) => conversations.stopping(),
            Queues::Shared(pulled) => pulled.tasks.stopping(),
        }
    }

    /// Stops starting new deliveries (and claims) and waits up to `grace` for those in
    /// flight; `what` names them in the warning if some are still running then.
    pub(crate) async fn shutdown(&self, grace: Duration, what: &str) {
        match self {
            Queues::Local(conversations) => conversations.shutdown(grace, what).await,
            Queues::Shared(pulled) => pulled.tasks.shutdown(grace, what).await,
        }
    }
}

/// The kicks of a conversation whose task runs.
#[derive(Default)]
struct Kicks {
    /// Whether it was kicked since its task last read the head.
    again: bool,
    /// Wakes the task while it lingers.
    wake: Arc<Notify>,
}

impl Kicks {
    /// Has the task read the head again before it lets the conversation go.
    fn kick(&mut self) {
        self.again = true;
        self.wake.notify_one();
    }
}

/// The conversations of one lane this relay works on a shared store.
pub(crate) struct Pulled<J, W> {
    store: Arc<dyn Store>,
    worker: W,
    /// The conversations with a running task, each with whether it was kicked again since the
    /// task last read the head.
    running: Mutex<HashMap<ConvKey, Kicks>>,
    tasks: Tasks,
    /// The lane's items, which the store hands out by head.
    items: PhantomData<fn() -> J>,
}

impl<J: Item, W: Deliver<J>> Pulled<J, W> {
    /// Makes sure a task works `key`: starts one, or tells the running one to read the head
    /// again before it lets the conversation go.
    pub(crate) fn kick(self: &Arc<Self>, key: ConvKey) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if let Some(kicks) = running.get_mut(&key) {
            kicks.kick();
            return;
        }
        running.insert(key.clone(), Kicks::default());
        drop(running);
        let this = Arc::clone(self);
        self.tasks.spawn(async move {
            if !this.work_through(&key).await {
                this.forget(&key);
            }
        });
    }

    /// Claims the conversations nobody works, at once and then every
    /// [`Fleet::poll_every`](crate::store::Fleet::poll_every) or on `wake`, and kicks them,
    /// until the service stops.
    async fn claim_loop(self: Arc<Self>, mut wake: Option<watch::Receiver<i64>>) {
        let mut stopping = self.tasks.stopping();
        let every = self.store.poll_every();
        loop {
            if *stopping.borrow() {
                return;
            }
            match self.store.claim_idle(J::LANE, CLAIM_MAX).await {
                Ok(claimed) => {
                    for key in claimed {
                        self.kick(key);
                    }
                }
                Err(error) => tracing::warn!("cannot claim the conversations left idle: {error}"),
            }
            let woken = async {
                match wake.as_mut() {
                    Some(wake) => {
                        if wake.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = woken => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Reads `key`'s head and delivers it until it is empty and let go (`true`: the task is
    /// forgotten already, so that a new kick may start another), another relay holds it, the
    /// service stops, or the store fails (the claim loop then takes it up again).
    async fn work_through(&self, key: &ConvKey) -> bool {
        let stopping = self.tasks.stopping();
        loop {
            if *stopping.borrow() {
                return false;
            }
            self.mark_read(key);
            let (version, head) = match self.store.head(key, HEAD_LIMIT).await {
                Ok(Some(head)) => head,
                // Another live relay holds it, and will see what was stored; or nothing waits.
                Ok(None) => return false,
                Err(error) => {
                    tracing::warn!("cannot read a conversation's queue: {error}");
                    return false;
                }
            };
            let items = J::from_head(head);
            if items.is_empty() {
                if self.linger(key, &stopping).await {
                    continue;
                }
                match self.store.release(key, version).await {
                    Ok(true) if self.done(key) => return true,
                    // Kicked, or stored into, since the read: read again.
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!("cannot let a conversation go: {error}");
                        return false;
                    }
                }
            }
            if !self.deliver(&items, &stopping).await {
                return false;
            }
        }
    }

    /// Delivers a head's `items` in batches of the worker's limit; `false` as soon as one
    /// delivery does not finish (stopping, the store failed, or the conversation was lost).
    async fn deliver(&self, items: &[J], stopping: &watch::Receiver<bool>) -> bool {
        let mut rest = items;
        while let Some(first) = rest.first() {
            let take = self.worker.batch_limit(first).clamp(1, rest.len());
            let (batch, after) = rest.split_at(take);
            let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
            self.worker.pending(count);
            let delivered = self.worker.deliver(batch, stopping.clone()).await;
            self.worker.pending(-count);
            if !delivered {
                return false;
            }
            rest = after;
        }
        true
    }

    /// Has the conversations this relay keeps read again at once when another relay stores into
    /// them (all of them when it does not say which, or when notes were missed), until the
    /// service stops. Conversations it does not work are left to their holder, or the claim loop.
    async fn follow_elsewhere(self: Arc<Self>, mut stored: broadcast::Receiver<Vec<ConvKey>>) {
        let mut stopping = self.tasks.stopping();
        loop {
            let note = tokio::select! {
                note = stored.recv() => note,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            match note {
                Ok(keys) if !keys.is_empty() => {
                    for key in keys {
                        if let Some(kicks) = running.get_mut(&key) {
                            kicks.kick();
                        }
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    running.values_mut().for_each(Kicks::kick);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Waits up to [`LINGER`] for a kick of `key`: `true` if one came (or came since the last
    /// read).
    async fn linger(&self, key: &ConvKey, stopping: &watch::Receiver<bool>) -> bool {
        let wake = match self.running.lock() {
            Ok(running) => match running.get(key) {
                Some(kicks) if kicks.again => return true,
                Some(kicks) => Arc::clone(&kicks.wake),
                None => return false,
            },
            Err(_) => return false,
        };
        let mut stopping = stopping.clone();
        tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(LINGER) => false,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    /// Notes that the task is about to read `key`'s head, which covers every kick so far.
    fn mark_read(&self, key: &ConvKey) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(kicks) = running.get_mut(key) {
                kicks.again = false;
            }
        }
    }

    /// After a release: `true` (and the task is forgotten, in the same critical section as
    /// the check, so that no kick falls in between) unless a kick came since the last read,
    /// which the released lease may not have seen yet.
    fn done(&self, key: &ConvKey) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return true;
        };
        if running.get(key).is_some_and(|kicks| kicks.again) {
            return false;
        }
        running.remove(key);
        true
    }

    fn forget(&self, key: &ConvKey) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use kefu_core::{
        Attempt, BoxFuture, ComposeRequest, Composed, Invalid, Job, Provider, RetryPolicy,
    };
    use kefu_payload::{HandoffCallback, KefuState};
    use tokio::sync::Notify;

    use super::*;
    use crate::config::Config;
    use crate::config::WebhookConfig;
    use crate::delivery::Dispatcher;
    use crate::fleet_double::{Ground, RelayStore};
    use crate::inbound::Inbound;
    use crate::inbound::webhook::WebhookDispatcher;
    use crate::metrics::Metrics;
    use crate::providers::Providers;
    use crate::store::{Claimed, JobState, NewDialogue, NewJob};

    /// Every send of the fleet, in the order made: (relay, job id).
    type Sends = Arc<Mutex<Vec<(usize, i64)>>>;

    /// A gate a send stops at until the test opens it.
    #[derive(Default)]
    struct Gate {
        reached: Notify,
        open: Notify,
    }

    /// A provider that accepts every job, recording which relay sent it; the first send may
    /// stop at a gate.
    struct Recorder {
        relay: usize,
        sends: Sends,
        gate: Mutex<Option<Arc<Gate>>>,
    }

    impl Provider for Recorder {
        fn kind(&self) -> &'static str {
            "recorder"
        }

        fn compose(&self, _: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
            Err(Invalid::new("msg", "not composed in these tests"))
        }

        fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
            Box::pin(async move {
                let gate = self.gate.lock().unwrap().take();
                if let Some(gate) = gate {
                    gate.reached.notify_one();
                    gate.open.notified().await;
                }
                self.sends.lock().unwrap().push((self.relay, job.id));
                // Let the other relay run between sends, as a network call would.
                tokio::task::yield_now().await;
                Attempt::success()
            })
        }
    }

    fn dispatcher(store: &Arc<RelayStore>, relay: usize, sends: &Sends) -> Dispatcher {
        dispatcher_gated(store, relay, sends, None)
    }

    fn dispatcher_gated(
        store: &Arc<RelayStore>,
        relay: usize,
        sends: &Sends,
        gate: Option<Arc<Gate>>,
    ) -> Dispatcher {
        let mut providers = Providers::new();
        let recorder = Recorder {
            relay,
            sends: Arc::clone(sends),
            gate: Mutex::new(gate),
        };
        providers.register("acct", Arc::new(recorder));
        Dispatcher::start(
            Arc::clone(store) as Arc<dyn Store>,
            Arc::new(providers),
            RetryPolicy::default(),
            4,
            Arc::new(Metrics::default()),
            Vec::new(),
        )
    }

    async fn insert(store: &RelayStore, recipient: &str) -> PendingJob {
        let job = NewJob {
            account: "acct".into(),
            recipient: recipient.into(),
            operation: "send".into(),
            payload: b"{}".to_vec(),
        };
        match crate::store::JobStore::insert(store, vec![job], None, None)
            .await
            .unwrap()
        {
            Claimed::Done(mut jobs) => jobs.remove(0),
            other => panic!("not stored: {other:?}"),
        }
    }

    /// Waits, without timing anything, until `done` holds; fails after many rounds.
    async fn until(mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..5_000 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never came to pass");
    }

    async fn delivered(store: &RelayStore, ids: &[i64]) -> bool {
        for id in ids {
            let status = crate::store::JobStore::get(store, *id).await.unwrap();
            if status.map(|status| status.status) != Some(JobState::Delivered) {
                return false;
            }
        }
        true
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_relays_kicked_for_one_recipient_deliver_in_order_once() {
        let ground = Ground::new();
        let relays = [ground.relay(0), ground.relay(1)];
        let sends = Sends::default();
        let dispatchers = [
            dispatcher(&relays[0], 0, &sends),
            dispatcher(&relays[1], 1, &sends),
        ];
        let mut ids = Vec::new();
        for n in 0..24 {
            let job = insert(&relays[n % 2], "oU").await;
            ids.push(job.id());
            // Both relays learn of every job, as when the desk spreads its calls.
            dispatchers[0].enqueue(job.clone());
            dispatchers[1].enqueue(job);
        }
        until(async || delivered(&relays[0], &ids).await).await;
        let sent: Vec<i64> = sends.lock().unwrap().iter().map(|(_, id)| *id).collect();
        assert_eq!(sent, ids, "each job once, in the order stored");
        for dispatcher in &dispatchers {
            dispatcher.shutdown(Duration::from_secs(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relay_that_lost_the_conversation_sends_nothing_more() {
        let ground = Ground::new();
        let (a, b) = (ground.relay(0), ground.relay(1));
        let sends = Sends::default();
        let gate = Arc::new(Gate::default());
        let first_sender = dispatcher_gated(&a, 0, &sends, Some(Arc::clone(&gate)));
        let first = insert(&a, "oL").await;
        let second = insert(&a, "oL").await;
        first_sender.enqueue(first.clone());
        gate.reached.notified().await;
        // While the first job is on the wire, the conversation passes to relay 1.
        ground.give(&ConvKey::jobs("acct", "oL"), 1);
        gate.open.notify_one();
        until(async || delivered(&a, &[first.id()]).await).await;
        let taker = dispatcher(&b, 1, &sends);
        until(async || delivered(&b, &[second.id()]).await).await;
        assert_eq!(
            *sends.lock().unwrap(),
            [(0, first.id()), (1, second.id())],
            "relay 0 sent nothing after it lost the conversation"
        );
        first_sender.shutdown(Duration::from_secs(5)).await;
        taker.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_stored_while_its_conversation_is_let_go_is_delivered_at_once() {
        // No claim round after the first: only the holder's own re-read can find the job.
        let ground = Ground::polling_every(Duration::from_secs(3_600));
        let relay = ground.relay(0);
        let sends = Sends::default();
        let dispatcher = dispatcher(&relay, 0, &sends);
        let racing = ground.race_the_release("acct", "oR").await;
        // The kick finds the conversation empty; the job lands as the holder lets it go.
        dispatcher.enqueue(racing.clone());
        until(async || delivered(&relay, &[racing.id()]).await).await;
        assert_eq!(*sends.lock().unwrap(), [(0, racing.id())]);
        dispatcher.shutdown(Duration::from_secs(5)).await;
    }

    fn config() -> Config {
        Config::from_settings(&[
            ("KEFU_DIALOGUE_TOKEN", "TOKEN0123456789"),
            (
                "KEFU_DIALOGUE_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
            // Longer than any wait of these tests: a long poll returns early only when woken.
            ("KEFU_EVENTS_MAX_WAIT_SECS", "300"),
        ])
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_poll_on_one_relay_wakes_for_an_event_stored_through_another() {
        let ground = Ground::new();
        let (a, b) = (ground.relay(0), ground.relay(1));
        let metrics = Arc::new(Metrics::default());
        let inbound = Inbound::start(Arc::clone(&b) as Arc<dyn Store>, &config(), metrics)
            .await
            .unwrap();
        let router = crate::inbound::http::desk_routes().with_state(inbound.clone());
        let poll = tokio::spawn(async move {
            let request = axum::http::Request::get("/v1/events?after=0&wait=300")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower_service::Service::call(&mut router.clone(), request)
                .await
                .unwrap();
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap()
        });
        until(async || inbound.long_polls() > 0).await;
        crate::store::EventStore::admit_dialogue(&*a, said("oE", "e1"))
            .await
            .unwrap();
        // Woken, not run out: the poll answers long before its 300 s.
        until(async || poll.is_finished()).await;
        let body = poll.await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["next"], 1, "woken for event 1: {body}");
        inbound.shutdown(Duration::from_secs(5)).await;
    }

    /// A webhook on loopback that acknowledges every push and keeps its event ids in order.
    async fn webhook() -> (WebhookConfig, Arc<Mutex<Vec<i64>>>) {
        webhook_answering(axum::http::StatusCode::OK).await
    }

    /// A webhook on loopback that answers every push with `status` and keeps its event ids in
    /// order; it retries every 10 ms, up to 100 times.
    async fn webhook_answering(
        status: axum::http::StatusCode,
    ) -> (WebhookConfig, Arc<Mutex<Vec<i64>>>) {
        let pushed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&pushed);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    let id = headers
                        .get("x-kefu-event-id")
                        .and_then(|id| id.to_str().ok())
                        .and_then(|id| id.parse().ok())
                        .unwrap_or(-1);
                    seen.lock().unwrap().push(id);
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = WebhookConfig {
            url: format!("http://{addr}/hook"),
            secret: crate::config::Secret::new("0123456789abcdef-webhook"),
            timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            max_attempts: 100,
            concurrency: 4,
        };
        (config, pushed)
    }

    fn said(openid: &str, key: &str) -> NewDialogue {
        let callback = HandoffCallback {
            userid: openid.into(),
            appid: "wx1".into(),
            content: Some("hello".into()),
            kfstate: Some(KefuState::NeedPerson),
            ..HandoffCallback::default()
        };
        NewDialogue {
            callback,
            raw: serde_json::Map::new(),
            dedup_key: key.into(),
            dedup_expires_ms: i64::MAX,
            webhook: true,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_users_events_stored_through_two_relays_reach_the_webhook_in_order_once() {
        let ground = Ground::new();
        let relays = [ground.relay(0), ground.relay(1)];
        let (config, pushed) = webhook().await;
        let mut dispatchers = Vec::new();
        for relay in &relays {
            let store = Arc::clone(relay) as Arc<dyn Store>;
            let metrics = Arc::new(Metrics::default());
            dispatchers.push(
                WebhookDispatcher::start(store, config.clone(), metrics, Vec::new()).unwrap(),
            );
        }
        let mut ids = Vec::new();
        for n in 0..16 {
            let admitted = crate::store::EventStore::admit_dialogue(
                &*relays[n % 2],
                said("oW", &format!("w{n}")),
            )
            .await
            .unwrap();
            let crate::store::Admission::Stored(event) = admitted else {
                panic!("not stored: {admitted:?}");
            };
            ids.push(event.id);
            // Only the relay that stored it is told; the other learns from the fleet.
            dispatchers[n % 2].enqueue(event);
        }
        until(async || pushed.lock().unwrap().len() >= ids.len()).await;
        assert_eq!(*pushed.lock().unwrap(), ids, "each event once, in id order");
        for dispatcher in &dispatchers {
            dispatcher.shutdown(Duration::from_secs(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relay_that_lost_a_user_stops_pushing_the_users_events() {
        let ground = Ground::new();
        let (a, b) = (ground.relay(0), ground.relay(1));
        // Relay 0's webhook refuses every push, so it keeps retrying until it loses the user.
        let (refusing, refused) = webhook_answering(axum::http::StatusCode::BAD_GATEWAY).await;
        let (accepting, accepted) = webhook().await;
        let start = |relay: &Arc<RelayStore>, config: WebhookConfig| {
            let store = Arc::clone(relay) as Arc<dyn Store>;
            WebhookDispatcher::start(store, config, Arc::new(Metrics::default()), Vec::new())
                .unwrap()
        };
        let first = start(&a, refusing);
        let admitted = crate::store::EventStore::admit_dialogue(&*a, said("oF", "f1"))
            .await
            .unwrap();
        let crate::store::Admission::Stored(event) = admitted else {
            panic!("not stored: {admitted:?}");
        };
        first.enqueue(event.clone());
        until(async || !refused.lock().unwrap().is_empty()).await;

        // The user passes to relay 1 while relay 0 is between two attempts.
        ground.give(&ConvKey::webhook("oF"), 1);
        let second = start(&b, accepting);
        second.enqueue(event.clone());
        until(async || !accepted.lock().unwrap().is_empty()).await;
        let pushed_by_the_loser = refused.lock().unwrap().len();
        // Ten of relay 0's retry periods: an unfenced relay would have pushed again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            refused.lock().unwrap().len(),
            pushed_by_the_loser,
            "relay 0 pushed the user's event after it lost the user"
        );
        assert_eq!(*accepted.lock().unwrap(), [event.id]);
        first.shutdown(Duration::from_secs(5)).await;
        second.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn periodic_work_runs_only_on_the_leader() {
        let ground = Ground::new();
        let relays = [ground.relay(0), ground.relay(1)];
        let sends = Sends::default();
        let mut dispatchers = Vec::new();
        let mut inbounds = Vec::new();
        for (n, relay) in relays.iter().enumerate() {
            dispatchers.push(dispatcher(relay, n, &sends));
            let store = Arc::clone(relay) as Arc<dyn Store>;
            let metrics = Arc::new(Metrics::default());
            inbounds.push(Inbound::start(store, &config(), metrics).await.unwrap());
        }
        // Two settle rounds of the leader: the follower's first round (at its start) has
        // passed too, and so has the first purge round of both.
        until(async || {
            relays[0].settles.load(Ordering::SeqCst) >= 2
                && relays[0].purges.load(Ordering::SeqCst) >= 1
        })
        .await;
        assert_eq!(relays[1].settles.load(Ordering::SeqCst), 0);
        assert_eq!(relays[1].purges.load(Ordering::SeqCst), 0);
        ground.elect(1);
        until(async || relays[1].settles.load(Ordering::SeqCst) >= 1).await;
        for dispatcher in &dispatchers {
            dispatcher.shutdown(Duration::from_secs(5)).await;
        }
        for inbound in &inbounds {
            inbound.shutdown(Duration::from_secs(5)).await;
        }
    }
}
