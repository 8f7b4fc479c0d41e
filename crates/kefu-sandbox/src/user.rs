//! The simulated user: what they do, how it moves their handoff state, and the handoff callback
//! (`POST {"encrypted": …}`) the platform pushes to the connector for it.
//!
//! Each thing a user can do is a [`UserAction`]; [`UserAction::apply`] checks it against the
//! user's state, moves the state, and returns the callback plaintext; the server encrypts it,
//! remembers it for `redeliver`, and pushes it.

use kefu_payload::{CallbackEvent, HandoffCallback, KefuState};
use serde::{Deserialize, Serialize};

use crate::push::CallbackDelivery;
use crate::state::{Evaluation, UserEntry};

/// The AppID a simulated user is on when neither the request nor anything earlier names one.
pub const DEFAULT_USER_APPID: &str = "wx0000000000000000";

/// The text of a user message that asks for a human, as the platform's handoff skill
/// recognises it (protocols.md §4.6).
pub(crate) const HANDOFF_KEYWORD: &str = "转人工";

/// A message the simulated user types: the body of `POST /sandbox/users/{openid}/say`.
///
/// ```json
/// {"text": "我要转人工", "channel": 0, "appid": "wx0000000000000000"}
/// ```
///
/// `channel` defaults to the user's last channel, then 0; `appid` to the user's last AppID, then
/// [`DEFAULT_USER_APPID`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    /// What the user types. Must not be empty.
    pub text: String,
    /// The channel the user writes on (any number, even an undocumented one such as 8).
    #[serde(default)]
    pub channel: Option<u8>,
    /// The Official Account or Mini Program AppID the user writes to.
    #[serde(default)]
    pub appid: Option<String>,
}

impl Say {
    /// The user types `text`, on their usual channel and AppID.
    pub fn new(text: impl Into<String>) -> Say {
        Say {
            text: text.into(),
            channel: None,
            appid: None,
        }
    }

    /// On this channel.
    #[must_use]
    pub fn channel(mut self, channel: u8) -> Say {
        self.channel = Some(channel);
        self
    }

    /// To this Official Account or Mini Program AppID.
    #[must_use]
    pub fn appid(mut self, appid: impl Into<String>) -> Say {
        self.appid = Some(appid.into());
        self
    }
}

/// The body of `POST /sandbox/users/{openid}/ask-for-person`: the user hits the platform's
/// handoff skill (转人工技能).
///
/// ```json
/// {"text": "我要找客服"}
/// ```
///
/// Both the body and `text` are optional; `text` defaults to "转人工". Whatever the text, the
/// skill fires: the user moves to `needperson`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskForPerson {
    /// What the user types to reach the skill; "转人工" when `None`. Must not be empty.
    #[serde(default)]
    pub text: Option<String>,
}

impl AskForPerson {
    /// The user types "转人工".
    pub fn new() -> AskForPerson {
        AskForPerson { text: None }
    }

    /// The user types `text`, which the platform matched to its handoff skill.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> AskForPerson {
        self.text = Some(text.into());
        self
    }
}

/// How to re-send the last push for a user (`POST …/redeliver` with `{"reencrypt": bool}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redelivery {
    /// Byte for byte the request first sent: the same body (and, for an Official Account push,
    /// the same query), as a replay would be.
    #[default]
    SameCiphertext,
    /// The same plaintext encrypted again with a fresh random prefix, as a platform retry may
    /// be: a different ciphertext that decrypts to the same message.
    Reencrypt,
}

/// The answer to a user action: the user's state, the callback plaintext and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SayOutcome {
    /// The user.
    pub openid: String,
    /// The handoff state the callback carries: the user's state after the action (for a
    /// redelivery, the state at the original push).
    pub status: KefuState,
    /// The same state as the callback numbers it.
    pub kfstate: u8,
    /// The callback plaintext the platform encrypted.
    pub xml: String,
    /// The `encrypted` value of the body `{"encrypted": …}` (also when nothing was sent).
    pub encrypted: String,
    /// What became of the callback.
    pub callback: CallbackDelivery,
}

/// Why a user action was refused. Nothing was changed or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SayError {
    /// The openid is empty.
    #[error("openid must not be empty")]
    EmptyOpenid,
    /// The text is empty: a user cannot send an empty message.
    #[error("text must not be empty: a user cannot send an empty message")]
    EmptyText,
    /// A rating outside 1..=5.
    #[error(
        "assessment must be 1..=5 (1 very dissatisfied, 2 dissatisfied, 3 neutral, 4 satisfied, 5 very satisfied), got {found}"
    )]
    Assessment {
        /// The rating given.
        found: i64,
    },
    /// A rating when none is expected: the platform shows the rating card only after a
    /// `waiterQualityEvaluate`, and takes one rating per card.
    #[error("{openid} cannot rate now: {reason}")]
    RatingNotExpected {
        /// The user.
        openid: String,
        /// Why not, and what would make a rating possible.
        reason: String,
    },
    /// A request for a person while an agent serves the user: the platform's handoff skill
    /// does not fire then (the bot is silent).
    #[error(
        "{openid} is already served by an agent (personserving): the platform's handoff skill does not fire while an agent serves the user; use say to send them a message, or kefustate/change to end the session first"
    )]
    AgentServing {
        /// The user.
        openid: String,
    },
    /// `redeliver` before anything was pushed for the user.
    #[error("nothing to redeliver: the sandbox has pushed no {what} for {openid} yet")]
    NothingToRedeliver {
        /// The user.
        openid: String,
        /// `handoff callback` or `Official Account message`.
        what: &'static str,
    },
    /// An Official Account route on a sandbox started without an Official Account.
    #[error(
        "the sandbox has no Official Account: start it with --oa-token, --oa-aes-key and --oa-appid (and --oa-callback-url to deliver the pushes)"
    )]
    NoOfficialAccount,
    /// A value holds a character XML 1.0 cannot carry (a user cannot type it either).
    #[error("{field} holds a character XML cannot carry (U+{code:04X}) at position {position}")]
    Unrepresentable {
        /// The request field.
        field: &'static str,
        /// Zero-based position of the character, counted in characters.
        position: usize,
        /// The character's code point.
        code: u32,
    },
    /// A field holds a character XML cannot carry.
    #[error("cannot write the callback: {0}")]
    Payload(#[from] kefu_payload::Error),
    /// The callback could not be encrypted.
    #[error("cannot encrypt the callback: {0}")]
    Encrypt(#[from] wxbizmsgcrypt::Error),
}

impl SayError {
    /// The request field the error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SayError::EmptyOpenid => Some("openid"),
            SayError::EmptyText => Some("text"),
            SayError::Assessment { .. } => Some("assessment"),
            SayError::Unrepresentable { field, .. } => Some(field),
            SayError::Payload(error) => error.field().map(|f| match f {
                "msg" | "content/msg" => "text",
                "userid" => "openid",
                other => other,
            }),
            SayError::RatingNotExpected { .. }
            | SayError::AgentServing { .. }
            | SayError::NothingToRedeliver { .. }
            | SayError::NoOfficialAccount
            | SayError::Encrypt(_) => None,
        }
    }

    /// `true` when the request is well formed but the user's or the sandbox's state does not
    /// allow it now (HTTP 409), as opposed to an invalid request (422).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            SayError::RatingNotExpected { .. }
                | SayError::AgentServing { .. }
                | SayError::NothingToRedeliver { .. }
                | SayError::NoOfficialAccount
        )
    }
}

/// Something the simulated user does. Every action produces exactly one callback, `from` = 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserAction {
    /// The user types a message (no event). A text containing "转人工" fires the handoff skill.
    Say(String),
    /// The user hits the handoff skill with this text: `needperson`, whatever the text.
    AskForPerson(String),
    /// The user rates the service (1..=5, already checked) on the pending rating card.
    Rate(u8),
    /// The user opens the conversation (`event` = `userEnter`, empty content).
    Enter,
    /// The user leaves (`event` = `userQuit`, empty content).
    Leave,
}

impl UserAction {
    /// A short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            UserAction::Say(_) => "say",
            UserAction::AskForPerson(_) => "ask-for-person",
            UserAction::Rate(_) => "rate",
            UserAction::Enter => "enter",
            UserAction::Leave => "leave",
        }
    }

    /// Applies the action to the user under the store's lock and returns the callback the
    /// platform sends for it. On an error the caller restores the user (the AppID and channel
    /// are noted first).
    ///
    /// * `Say`: a message containing "转人工" moves a user who is talking to the bot (`asking` or
    ///   `complete`) to `needperson` first, as the platform's handoff skill does; the bot is
    ///   silent while an agent serves the user, so `personserving` stays.
    /// * `AskForPerson`: `asking`, `complete` or `needperson` → `needperson`; refused while
    ///   `personserving`.
    /// * `Rate`: only on a pending `waiterQualityEvaluate`, which it answers; the state stays.
    /// * `Enter`, `Leave`: the state stays (only `kefustate/change` and the handoff skill move
    ///   it); the callback reports it.
    pub(crate) fn apply(
        &self,
        user: &mut UserEntry<'_>,
        openid: &str,
        channel: Option<u8>,
        appid: Option<&str>,
        now_secs: i64,
    ) -> Result<HandoffCallback, SayError> {
        let channel = channel.or(user.channel()).unwrap_or(0);
        let appid = appid
            .or(user.appid())
            .unwrap_or(DEFAULT_USER_APPID)
            .to_owned();
        user.note(&appid, channel);
        let mut event = None;
        let mut assessment = 0;
        let content = match self {
            UserAction::Say(text) => {
                if text.contains(HANDOFF_KEYWORD)
                    && matches!(user.state(), KefuState::Asking | KefuState::Complete)
                {
                    user.set_state(KefuState::NeedPerson);
                }
                text.clone()
            }
            UserAction::AskForPerson(text) => {
                if user.state() == KefuState::PersonServing {
                    return Err(SayError::AgentServing {
                        openid: openid.to_owned(),
                    });
                }
                user.set_state(KefuState::NeedPerson);
                text.clone()
            }
            UserAction::Rate(rating) => {
                let seq = match user.evaluation() {
                    Evaluation::Pending { seq } => seq,
                    other => {
                        return Err(SayError::RatingNotExpected {
                            openid: openid.to_owned(),
                            reason: not_ratable(other),
                        });
                    }
                };
                user.rated(seq, *rating);
                assessment = *rating;
                String::new()
            }
            UserAction::Enter => {
                event = Some(CallbackEvent::UserEnter);
                String::new()
            }
            UserAction::Leave => {
                event = Some(CallbackEvent::UserQuit);
                String::new()
            }
        };
        Ok(HandoffCallback {
            userid: openid.to_owned(),
            appid,
            content: Some(content),
            event,
            from: Some(0),
            kfstate: Some(user.state()),
            channel: Some(channel),
            assessment: Some(assessment),
            createtime: Some(now_secs),
            ..HandoffCallback::default()
        })
    }
}

/// Why a user whose rating card is not pending cannot rate, and what would let them.
fn not_ratable(evaluation: Evaluation) -> String {
    match evaluation {
        // (Pending is ratable; it is grouped here only to keep the match exhaustive.)
        Evaluation::Pending { .. } | Evaluation::Never => "the sandbox has not accepted a sendmsg with event=waiterQualityEvaluate for this user, and the platform shows the rating card only after one; send it first".to_owned(),
        Evaluation::Rated { seq, assessment } => format!(
            "they already rated (assessment {assessment}) the waiterQualityEvaluate accepted as message {seq}, and one card takes one rating; send a new waiterQualityEvaluate first"
        ),
        Evaluation::Superseded { seq, by } => format!(
            "the waiterQualityEvaluate accepted as message {seq} belongs to an agent session that ended: the waiterEnter accepted as message {by} started a new one; send a new waiterQualityEvaluate first"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kefu_payload::{Channel, Event, SendMsg};

    use super::*;
    use crate::state::Store;

    fn act(store: &Store, openid: &str, action: &UserAction) -> Result<HandoffCallback, SayError> {
        store.with_user(openid, |user| {
            let before = user.checkpoint();
            let result = action.apply(user, openid, None, None, 1_700_000_000);
            if result.is_err() {
                user.restore(before);
            }
            result
        })
    }

    fn say(store: &Store, openid: &str, action: &UserAction) -> HandoffCallback {
        act(store, openid, action).unwrap()
    }

    fn evaluate(store: &Store, openid: &str, event: Event) -> u64 {
        let send = SendMsg::builder(openid, Channel::OfficialAccount, "请评价")
            .appid("wx1")
            .event(event)
            .build()
            .unwrap();
        store.record(&send, String::new(), 0)
    }

    #[test]
    fn a_plain_message_keeps_the_state_and_reports_it() {
        let store = Store::new(10);
        let callback = say(&store, "o", &UserAction::Say("你好".into()));
        assert_eq!(
            callback.to_xml().unwrap(),
            "<xml><userid>o</userid><appid>wx0000000000000000</appid><content><msg>你好</msg></content><event></event><from>0</from><kfstate>0</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>"
        );
        assert_eq!(store.state("o"), KefuState::Asking);
    }

    #[test]
    fn asking_for_a_human_moves_to_needperson_first() {
        let store = Store::new(10);
        let callback = say(&store, "o", &UserAction::Say("我要转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
        assert_eq!(store.state("o"), KefuState::NeedPerson);
        // Later messages carry 3 too.
        let callback = say(&store, "o", &UserAction::Say("在吗".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
        // While an agent serves the user, the skill does not fire.
        store.set_state("o", "wx1", KefuState::PersonServing);
        let callback = say(&store, "o", &UserAction::Say("转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::PersonServing));
        // After the agent finished, it fires again.
        store.set_state("o", "wx1", KefuState::Complete);
        let callback = say(&store, "o", &UserAction::Say("再转人工".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
    }

    #[test]
    fn the_handoff_skill_fires_on_any_text_but_not_while_served() {
        let store = Store::new(10);
        let callback = say(&store, "o", &UserAction::AskForPerson("找客服".into()));
        assert_eq!(callback.kfstate, Some(KefuState::NeedPerson));
        assert_eq!(callback.content.as_deref(), Some("找客服"));
        assert_eq!((callback.event, callback.from), (None, Some(0)));
        // Asking again is fine.
        say(&store, "o", &UserAction::AskForPerson("转人工".into()));
        store.set_state("o", "wxB", KefuState::PersonServing);
        let error = act(&store, "o", &UserAction::AskForPerson("转人工".into())).unwrap_err();
        assert!(matches!(error, SayError::AgentServing { .. }), "{error}");
        assert!(error.is_conflict());
        assert_eq!(store.state("o"), KefuState::PersonServing);
        assert_eq!(
            store.snapshot("o").appid.as_deref(),
            Some("wxB"),
            "restored"
        );
    }

    #[test]
    fn a_rating_answers_exactly_one_evaluation() {
        let store = Store::new(10);
        let error = act(&store, "o", &UserAction::Rate(5)).unwrap_err();
        assert!(error.to_string().contains("has not accepted"), "{error}");
        assert!(error.is_conflict());

        let seq = evaluate(&store, "o", Event::WaiterQualityEvaluate);
        assert!(store.snapshot("o").evaluation_pending);
        store.set_state("o", "wx1", KefuState::Complete);
        let callback = say(&store, "o", &UserAction::Rate(4));
        assert_eq!(callback.assessment, Some(4));
        assert_eq!(callback.kfstate, Some(KefuState::Complete));
        assert_eq!(callback.content.as_deref(), Some(""));
        assert_eq!((callback.event, callback.from), (None, Some(0)));
        let user = store.snapshot("o");
        assert_eq!((user.evaluation_pending, user.assessment), (false, Some(4)));

        let error = act(&store, "o", &UserAction::Rate(5)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("already rated (assessment 4)")
                && text.contains(&format!("message {seq}")),
            "{text}"
        );

        // A new card, then a new session before the user answers it.
        let card = evaluate(&store, "o", Event::WaiterQualityEvaluate);
        let enter = evaluate(&store, "o", Event::WaiterEnter);
        let error = act(&store, "o", &UserAction::Rate(3)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!("message {card}")) && text.contains(&format!("message {enter}")),
            "{text}"
        );
        // Other events leave a pending card alone.
        evaluate(&store, "o", Event::WaiterQualityEvaluate);
        evaluate(&store, "o", Event::WaiterQuit);
        assert_eq!(say(&store, "o", &UserAction::Rate(1)).assessment, Some(1));
    }

    #[test]
    fn entering_and_leaving_are_events_that_keep_the_state() {
        let store = Store::new(10);
        store.set_state("o", "wx1", KefuState::NeedPerson);
        let enter = say(&store, "o", &UserAction::Enter);
        assert_eq!(enter.event, Some(CallbackEvent::UserEnter));
        let quit = say(&store, "o", &UserAction::Leave);
        assert_eq!(
            quit.to_xml().unwrap(),
            "<xml><userid>o</userid><appid>wx1</appid><content><msg></msg></content><event>userQuit</event><from>0</from><kfstate>3</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>"
        );
        assert_eq!(store.state("o"), KefuState::NeedPerson);
    }

    #[test]
    fn channel_and_appid_default_to_what_the_user_last_used() {
        let store = Arc::new(Store::new(10));
        store
            .with_user("o", |user| {
                UserAction::Say("a".into()).apply(user, "o", Some(7), Some("wxA"), 1)
            })
            .unwrap();
        let callback = say(&store, "o", &UserAction::Leave);
        assert_eq!(callback.channel, Some(7));
        assert_eq!(callback.appid, "wxA");
        assert_eq!(store.snapshot("o").channel, Some(7));
    }

    #[test]
    fn requests_are_strict() {
        let say: Say = serde_json::from_str(r#"{"text":"hi","channel":5,"appid":"wx1"}"#).unwrap();
        assert_eq!(say, Say::new("hi").channel(5).appid("wx1"));
        let err = serde_json::from_str::<Say>(r#"{"txt":"hi"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `txt`"), "{err}");
        assert_eq!(SayError::EmptyText.field(), Some("text"));
        let ask: AskForPerson = serde_json::from_str(r#"{"text":"找人"}"#).unwrap();
        assert_eq!(ask, AskForPerson::new().text("找人"));
        assert_eq!(
            serde_json::from_str::<AskForPerson>("{}").unwrap(),
            AskForPerson::new()
        );
        assert_eq!(
            SayError::Assessment { found: 6 }.field(),
            Some("assessment")
        );
    }
}
