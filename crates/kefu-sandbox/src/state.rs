//! What the sandbox remembers: the messages it accepted, in order, and each user's handoff state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kefu_payload::{Channel, Event, KefuState, Msg, SendMsg};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One `sendmsg` the sandbox accepted, decrypted, as `GET /sandbox/messages` lists it.
///
/// In JSON, `msg` is a string for text and the rich object (`{"news":…}`, `{"image":…}`, …) for
/// rich content; absent optional fields are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMessage {
    /// Position among all accepted messages, from 1. Gaps at the start mean the oldest messages
    /// were evicted (see [`SandboxConfig::max_messages`](crate::SandboxConfig::max_messages)).
    pub seq: u64,
    /// The user.
    pub openid: String,
    /// The Official Account or Mini Program AppID (or the TOKEN on channel 7), if sent.
    pub appid: Option<String>,
    /// The channel, as its number.
    pub channel: Channel,
    /// The agent event, if any.
    pub event: Option<Event>,
    /// The content: text or rich.
    pub msg: Msg,
    /// The agent nickname, if sent.
    pub kefuname: Option<String>,
    /// The agent avatar URL, if sent.
    pub kefuavatar: Option<String>,
    /// The category or skill name, if sent.
    pub ans_node_name: Option<String>,
    /// The decrypted plaintext, exactly as it arrived.
    pub xml: String,
    /// When the sandbox accepted it, in Unix milliseconds.
    pub received_at_ms: u64,
}

/// A user as the sandbox sees them: `GET /sandbox/users/{openid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    /// The user.
    pub openid: String,
    /// The handoff state (`asking` until something changes it).
    pub status: KefuState,
    /// `on` when an agent is serving the user (`status` is `personserving`), `off` otherwise: what
    /// `kefustate/get` answers.
    pub kefustate: String,
    /// The state as the callback numbers it: 0 asking, 1 personserving, 2 complete, 3 needperson.
    pub kfstate: u8,
    /// The OA/MP AppID last seen for the user (in a `sendmsg`, a `kefustate` call or a `say`).
    pub appid: Option<String>,
    /// The channel last seen for the user.
    pub channel: Option<u8>,
    /// How many accepted messages to this user the sandbox still holds.
    pub messages: usize,
    /// `true` when the sandbox accepted a `waiterQualityEvaluate` for the user that has not been
    /// answered yet: a rating (`POST /sandbox/users/{openid}/rate`) is expected.
    pub evaluation_pending: bool,
    /// The user's last rating (1..=5), if they ever rated.
    pub assessment: Option<u8>,
}

/// `on` iff an agent is serving the user.
pub(crate) fn switch(state: KefuState) -> &'static str {
    if state == KefuState::PersonServing {
        "on"
    } else {
        "off"
    }
}

/// Where a user stands with the platform's rating card (protocols.md §4.8 step 5): a rating
/// answers exactly one `waiterQualityEvaluate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Evaluation {
    /// No `waiterQualityEvaluate` was ever accepted for the user.
    #[default]
    Never,
    /// The `waiterQualityEvaluate` accepted as message `seq` awaits a rating.
    Pending {
        /// Its sequence number.
        seq: u64,
    },
    /// The user rated the `waiterQualityEvaluate` accepted as message `seq`.
    Rated {
        /// Its sequence number.
        seq: u64,
        /// The rating given.
        assessment: u8,
    },
    /// The `waiterQualityEvaluate` accepted as message `seq` was never answered, and the
    /// `waiterEnter` accepted as message `by` started a new agent session.
    Superseded {
        /// Its sequence number.
        seq: u64,
        /// The sequence number of the `waiterEnter`.
        by: u64,
    },
}

/// The last handoff callback pushed for a user, kept for `redeliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The plaintext XML.
    pub(crate) xml: String,
    /// The `encrypted` value sent.
    pub(crate) encrypted: String,
    /// The state the callback carries.
    pub(crate) kfstate: KefuState,
}

#[derive(Debug, Clone)]
struct User {
    state: KefuState,
    appid: Option<String>,
    channel: Option<u8>,
    evaluation: Evaluation,
    last_assessment: Option<u8>,
    last_push: Option<Pushed>,
}

impl Default for User {
    fn default() -> User {
        User {
            state: KefuState::Asking,
            appid: None,
            channel: None,
            evaluation: Evaluation::Never,
            last_assessment: None,
            last_push: None,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    last_seq: u64,
    messages: VecDeque<Arc<RecordedMessage>>,
    users: HashMap<String, User>,
}

/// The sandbox's memory, shared by every connection.
#[derive(Debug)]
pub(crate) struct Store {
    max_messages: usize,
    inner: Mutex<Inner>,
    // One copy of each message, shared by the record and every subscriber.
    accepted: broadcast::Sender<Arc<RecordedMessage>>,
}

/// How many accepted messages a slow subscriber may fall behind before it misses some.
const SUBSCRIBER_BACKLOG: usize = 1 << 16;

impl Store {
    /// An empty store that keeps at most `max_messages` messages (the oldest go first).
    pub(crate) fn new(max_messages: usize) -> Store {
        Store {
            max_messages,
            inner: Mutex::new(Inner::default()),
            accepted: broadcast::channel(SUBSCRIBER_BACKLOG).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an accepted `sendmsg` and returns its sequence number.
    pub(crate) fn record(&self, send: &SendMsg, xml: String, received_at_ms: u64) -> u64 {
        let mut inner = self.lock();
        inner.last_seq += 1;
        let seq = inner.last_seq;
        let user = inner.users.entry(send.openid().to_owned()).or_default();
        if let Some(appid) = send.appid() {
            user.appid = Some(appid.to_owned());
        }
        user.channel = Some(send.channel().code());
        match (send.event(), user.evaluation) {
            (Some(Event::WaiterQualityEvaluate), _) => {
                user.evaluation = Evaluation::Pending { seq };
            }
            (Some(Event::WaiterEnter), Evaluation::Pending { seq: pending }) => {
                user.evaluation = Evaluation::Superseded {
                    seq: pending,
                    by: seq,
                };
            }
            _ => {}
        }
        let message = Arc::new(RecordedMessage {
            seq,
            openid: send.openid().to_owned(),
            appid: send.appid().map(str::to_owned),
            channel: send.channel(),
            event: send.event(),
            msg: send.msg().clone(),
            kefuname: send.kefuname().map(str::to_owned),
            kefuavatar: send.kefuavatar().map(str::to_owned),
            ans_node_name: send.ans_node_name().map(str::to_owned),
            xml,
            received_at_ms,
        });
        if self.accepted.receiver_count() > 0 {
            let _ = self.accepted.send(Arc::clone(&message));
        }
        if self.max_messages == 0 {
            return seq;
        }
        if inner.messages.len() >= self.max_messages {
            inner.messages.pop_front();
        }
        inner.messages.push_back(message);
        seq
    }

    /// Every message accepted from now on, as it is accepted.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<RecordedMessage>> {
        self.accepted.subscribe()
    }

    /// The recorded messages in order, all of them or one user's.
    pub(crate) fn messages(&self, openid: Option<&str>) -> Vec<RecordedMessage> {
        let inner = self.lock();
        inner
            .messages
            .iter()
            .filter(|m| openid.is_none_or(|o| m.openid == o))
            .map(|m| RecordedMessage::clone(m))
            .collect()
    }

    /// A user's state (`asking` for a user never seen).
    pub(crate) fn state(&self, openid: &str) -> KefuState {
        self.lock()
            .users
            .get(openid)
            .map_or(KefuState::Asking, |u| u.state)
    }

    /// Sets a user's state (`kefustate/change`), remembering the AppID used.
    pub(crate) fn set_state(&self, openid: &str, appid: &str, state: KefuState) {
        let mut inner = self.lock();
        let user = inner.users.entry(openid.to_owned()).or_default();
        user.state = state;
        user.appid = Some(appid.to_owned());
    }

    /// Notes the AppID of a `kefustate/get`, without creating a state.
    pub(crate) fn seen(&self, openid: &str, appid: &str) {
        let mut inner = self.lock();
        let user = inner.users.entry(openid.to_owned()).or_default();
        user.appid = Some(appid.to_owned());
    }

    /// Runs `f` on the user (created with the defaults if new) under the lock, so that a state
    /// transition and what it reports are consistent.
    pub(crate) fn with_user<T>(&self, openid: &str, f: impl FnOnce(&mut UserEntry<'_>) -> T) -> T {
        let mut inner = self.lock();
        let user = inner.users.entry(openid.to_owned()).or_default();
        f(&mut UserEntry { user })
    }

    /// The last handoff callback pushed for a user, if any.
    pub(crate) fn last_push(&self, openid: &str) -> Option<Pushed> {
        self.lock()
            .users
            .get(openid)
            .and_then(|user| user.last_push.clone())
    }

    /// The user as `GET /sandbox/users/{openid}` shows them.
    pub(crate) fn snapshot(&self, openid: &str) -> UserSnapshot {
        let inner = self.lock();
        let user = inner.users.get(openid).cloned().unwrap_or_default();
        let messages = inner.messages.iter().filter(|m| m.openid == openid).count();
        UserSnapshot {
            openid: openid.to_owned(),
            status: user.state,
            kefustate: switch(user.state).to_owned(),
            kfstate: user.state.kfstate(),
            appid: user.appid,
            channel: user.channel,
            messages,
            evaluation_pending: matches!(user.evaluation, Evaluation::Pending { .. }),
            assessment: user.last_assessment,
        }
    }
}

/// Access to one user inside [`Store::with_user`].
pub(crate) struct UserEntry<'a> {
    user: &'a mut User,
}

/// A user's state, appid and channel as they were, to undo an action that cannot complete.
pub(crate) struct Checkpoint(User);

impl UserEntry<'_> {
    /// Remembers the user as they are now.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.user.clone())
    }

    /// Puts the user back as they were at `checkpoint`.
    pub(crate) fn restore(&mut self, checkpoint: Checkpoint) {
        *self.user = checkpoint.0;
    }

    /// The handoff state.
    pub(crate) fn state(&self) -> KefuState {
        self.user.state
    }

    /// Moves the user to `state`.
    pub(crate) fn set_state(&mut self, state: KefuState) {
        self.user.state = state;
    }

    /// The AppID last seen.
    pub(crate) fn appid(&self) -> Option<&str> {
        self.user.appid.as_deref()
    }

    /// The channel last seen.
    pub(crate) fn channel(&self) -> Option<u8> {
        self.user.channel
    }

    /// Remembers the AppID and channel the user is on.
    pub(crate) fn note(&mut self, appid: &str, channel: u8) {
        self.user.appid = Some(appid.to_owned());
        self.user.channel = Some(channel);
    }

    /// Where the user stands with the rating card.
    pub(crate) fn evaluation(&self) -> Evaluation {
        self.user.evaluation
    }

    /// Records the user's rating of the pending evaluation accepted as message `seq`.
    pub(crate) fn rated(&mut self, seq: u64, assessment: u8) {
        self.user.evaluation = Evaluation::Rated { seq, assessment };
        self.user.last_assessment = Some(assessment);
    }

    /// Remembers the callback just pushed, for `redeliver`.
    pub(crate) fn pushed(&mut self, pushed: Pushed) {
        self.user.last_push = Some(pushed);
    }
}

/// Keeps a record at the end of `records`, evicting the oldest beyond `max` (0 keeps none).
pub(crate) fn keep<T>(records: &mut VecDeque<T>, record: T, max: usize) {
    if max == 0 {
        return;
    }
    if records.len() >= max {
        records.pop_front();
    }
    records.push_back(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(openid: &str, text: &str) -> SendMsg {
        SendMsg::builder(openid, Channel::OfficialAccount, text)
            .appid("wx0000000000000000")
            .build()
            .unwrap()
    }

    #[test]
    fn records_in_order_and_filters_by_user() {
        let store = Store::new(10);
        assert_eq!(store.record(&send("a", "1"), "x1".into(), 1), 1);
        assert_eq!(store.record(&send("b", "2"), "x2".into(), 2), 2);
        assert_eq!(store.record(&send("a", "3"), "x3".into(), 3), 3);
        let all: Vec<u64> = store.messages(None).iter().map(|m| m.seq).collect();
        assert_eq!(all, [1, 2, 3]);
        let a: Vec<String> = store
            .messages(Some("a"))
            .iter()
            .map(|m| m.xml.clone())
            .collect();
        assert_eq!(a, ["x1", "x3"]);
        assert!(store.messages(Some("c")).is_empty());
        assert_eq!(store.snapshot("a").messages, 2);
    }

    #[test]
    fn evicts_the_oldest_beyond_the_limit() {
        let store = Store::new(2);
        for i in 0..5 {
            store.record(&send("a", "m"), format!("x{i}"), 0);
        }
        let seqs: Vec<u64> = store.messages(None).iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [4, 5]);
        let none = Store::new(0);
        assert_eq!(none.record(&send("a", "m"), "x".into(), 0), 1);
        assert!(none.messages(None).is_empty());
    }

    #[test]
    fn users_start_asking_and_keep_their_state() {
        let store = Store::new(10);
        assert_eq!(store.state("o"), KefuState::Asking);
        let fresh = store.snapshot("o");
        assert_eq!(
            (fresh.status, fresh.kefustate.as_str(), fresh.kfstate),
            (KefuState::Asking, "off", 0)
        );
        store.set_state("o", "wx1", KefuState::PersonServing);
        let served = store.snapshot("o");
        assert_eq!(served.kefustate, "on");
        assert_eq!(served.kfstate, 1);
        assert_eq!(served.appid.as_deref(), Some("wx1"));
        store.seen("o", "wx2");
        assert_eq!(store.state("o"), KefuState::PersonServing);
        assert_eq!(store.snapshot("o").appid.as_deref(), Some("wx2"));
    }
}
