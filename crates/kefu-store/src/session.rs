//! Each user's conversation state, from the platform's callbacks and the desk's own calls.
//!
//! The states are the platform's: `asking` (with the bot), `needperson` (waiting for a person),
//! `personserving` (an agent is connected) and `complete`.
//!
//! * A callback's `kfstate` moves the user to that state; its event takes precedence:
//!   `customerStuffEnter` (or an echoed `waiterEnter`) → `personserving` with the agent named in
//!   `customerInfo`, `customerStuffQuit`, `waiterQuit` or `userQuit` → `complete`.
//! * The desk's `POST /v1/sessions/{openid}/enter` → `personserving` with `kefuname` as the
//!   agent; `switch` changes the agent; `quit` → `complete`.
//!
//! The desk's calls reach the platform only once the relay has delivered them, so callbacks sent
//! meanwhile still report the old `kfstate`. After a desk call, a `kfstate` that contradicts it
//! is therefore ignored for [`DESK_GRACE_MS`], until a callback agrees with it, or until an
//! event says otherwise.

use kefu_payload::{CallbackEvent, HandoffCallback, KefuState};
use serde::Serialize;

/// How long after a desk call a contradicting `kfstate` is taken for a report sent before the
/// platform learned of the call.
pub const DESK_GRACE_MS: i64 = 60_000;

/// Who last changed a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangedBy {
    /// A callback of the platform.
    Callback,
    /// The desk, through `/v1/sessions/{openid}/…`.
    Desk,
}

impl ChangedBy {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangedBy::Callback => "callback",
            ChangedBy::Desk => "desk",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<ChangedBy> {
        match text {
            "callback" => Some(ChangedBy::Callback),
            "desk" => Some(ChangedBy::Desk),
            _ => None,
        }
    }
}

/// One user's conversation on one account, as `GET /v1/sessions/{openid}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// The account the user talks to (`dialogue`, or an `[wechat.<name>]` name).
    pub account: String,
    /// The user.
    pub openid: String,
    /// The current state.
    pub state: KefuState,
    /// The agent serving (or who last served) the user, if known.
    pub agent: Option<String>,
    /// The user's channel, from the last callback or desk call that named one.
    pub channel: Option<u8>,
    /// The OA/MP AppID, from the last callback or desk call that named one.
    pub appid: Option<String>,
    /// Who made the last state change.
    pub changed_by: ChangedBy,
    /// When the user entered the current state, in Unix milliseconds.
    pub state_since_ms: i64,
    /// When the user last asked for a person (entered `needperson`), in Unix milliseconds.
    pub requested_at_ms: Option<i64>,
    /// First seen, in Unix milliseconds.
    pub created_at_ms: i64,
    /// Last changed, in Unix milliseconds.
    pub updated_at_ms: i64,
    /// The last inbound event of the user, if any.
    pub last_event_id: Option<i64>,
    /// Until when a contradicting `kfstate` is ignored after a desk call (Unix ms); internal.
    #[serde(skip)]
    pub desk_pending_until_ms: Option<i64>,
    /// When the user last wrote or acted (a message, a menu tap, a follow), in Unix
    /// milliseconds: on an Official Account, the start of the window in which it may be sent
    /// to.
    pub last_user_message_at_ms: Option<i64>,
}

impl Session {
    /// A user of `account` seen for the first time, in `asking`.
    pub fn new(account: &str, openid: &str, now_ms: i64) -> Session {
        Session {
            account: account.to_owned(),
            openid: openid.to_owned(),
            state: KefuState::Asking,
            agent: None,
            channel: None,
            appid: None,
            changed_by: ChangedBy::Callback,
            state_since_ms: now_ms,
            requested_at_ms: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            last_event_id: None,
            desk_pending_until_ms: None,
            last_user_message_at_ms: None,
        }
    }

    fn enter(&mut self, state: KefuState, by: ChangedBy, now_ms: i64) {
        if state != self.state {
            self.state = state;
            self.state_since_ms = now_ms;
            if state == KefuState::NeedPerson {
                self.requested_at_ms = Some(now_ms);
            }
            if matches!(state, KefuState::Asking | KefuState::NeedPerson) {
                self.agent = None;
            }
        }
        self.changed_by = by;
        self.updated_at_ms = now_ms;
    }

    /// Applies a Dialogue callback received at `now_ms`.
    pub fn apply_callback(&mut self, callback: &HandoffCallback, now_ms: i64) {
        if let Some(channel) = callback.channel {
            self.channel = Some(channel);
        }
        if !callback.appid.is_empty() {
            self.appid = Some(callback.appid.clone());
        }
        self.updated_at_ms = now_ms;
        let agent = callback
            .customer_info
            .as_ref()
            .map(|info| info.name.clone())
            .filter(|name| !name.is_empty());
        let by_event = match &callback.event {
            Some(CallbackEvent::CustomerStuffEnter | CallbackEvent::WaiterEnter) => {
                Some(KefuState::PersonServing)
            }
            Some(
                CallbackEvent::CustomerStuffQuit
                | CallbackEvent::WaiterQuit
                | CallbackEvent::UserQuit,
            ) => Some(KefuState::Complete),
            _ => None,
        };
        if let Some(state) = by_event {
            self.desk_pending_until_ms = None;
            self.enter(state, ChangedBy::Callback, now_ms);
            if state == KefuState::PersonServing && agent.is_some() {
                self.agent = agent;
            }
            return;
        }
        let Some(reported) = callback.kfstate else {
            return;
        };
        if let Some(until) = self.desk_pending_until_ms {
            if reported == self.state {
                // The platform has caught up with the desk.
                self.desk_pending_until_ms = None;
                return;
            }
            if now_ms < until {
                return;
            }
            self.desk_pending_until_ms = None;
        }
        self.enter(reported, ChangedBy::Callback, now_ms);
    }

    /// Applies the desk's `enter` (agent connected), `switch` (another agent) or `quit`.
    pub fn apply_desk(&mut self, action: DeskAction, agent: Option<&str>, now_ms: i64) {
        let state = match action {
            DeskAction::Enter | DeskAction::Switch => KefuState::PersonServing,
            DeskAction::Quit => KefuState::Complete,
        };
        self.enter(state, ChangedBy::Desk, now_ms);
        if let Some(agent) = agent.filter(|a| !a.is_empty()) {
            if action != DeskAction::Quit {
                self.agent = Some(agent.to_owned());
            }
        }
        self.desk_pending_until_ms = Some(now_ms.saturating_add(DESK_GRACE_MS));
    }
}

/// A desk call that changes the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskAction {
    /// `POST /v1/sessions/{openid}/enter`.
    Enter,
    /// `POST /v1/sessions/{openid}/switch`.
    Switch,
    /// `POST /v1/sessions/{openid}/quit`.
    Quit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_payload::CustomerInfo;

    fn report(kfstate: KefuState) -> HandoffCallback {
        HandoffCallback {
            userid: "oU".into(),
            appid: "wx1".into(),
            kfstate: Some(kfstate),
            channel: Some(0),
            ..HandoffCallback::default()
        }
    }

    #[test]
    fn callbacks_move_the_state_and_record_the_request() {
        let mut session = Session::new("dialogue", "oU", 1_000);
        session.apply_callback(&report(KefuState::NeedPerson), 2_000);
        assert_eq!(session.state, KefuState::NeedPerson);
        assert_eq!(session.requested_at_ms, Some(2_000));
        assert_eq!(session.state_since_ms, 2_000);
        assert_eq!(session.appid.as_deref(), Some("wx1"));
        // The same state again changes nothing but the update time.
        session.apply_callback(&report(KefuState::NeedPerson), 3_000);
        assert_eq!(session.state_since_ms, 2_000);
        assert_eq!(session.updated_at_ms, 3_000);

        let enter = HandoffCallback {
            event: Some(CallbackEvent::CustomerStuffEnter),
            customer_info: Some(CustomerInfo {
                name: "小红".into(),
                ..CustomerInfo::default()
            }),
            ..report(KefuState::NeedPerson)
        };
        session.apply_callback(&enter, 4_000);
        assert_eq!(session.state, KefuState::PersonServing);
        assert_eq!(session.agent.as_deref(), Some("小红"));
        let quit = HandoffCallback {
            event: Some(CallbackEvent::UserQuit),
            ..report(KefuState::PersonServing)
        };
        session.apply_callback(&quit, 5_000);
        assert_eq!(session.state, KefuState::Complete);
        assert_eq!(session.agent.as_deref(), Some("小红"), "who served is kept");
    }

    #[test]
    fn stale_reports_do_not_undo_the_desk() {
        let mut session = Session::new("dialogue", "oU", 0);
        session.apply_callback(&report(KefuState::NeedPerson), 1_000);
        session.apply_desk(DeskAction::Enter, Some("小明"), 2_000);
        assert_eq!(session.state, KefuState::PersonServing);
        assert_eq!(session.changed_by, ChangedBy::Desk);
        assert_eq!(session.agent.as_deref(), Some("小明"));
        // Sent before the platform learned of the desk's call.
        session.apply_callback(&report(KefuState::NeedPerson), 3_000);
        assert_eq!(session.state, KefuState::PersonServing);
        // The platform agrees: from now on its reports count again.
        session.apply_callback(&report(KefuState::PersonServing), 4_000);
        assert_eq!(session.desk_pending_until_ms, None);
        session.apply_callback(&report(KefuState::Complete), 5_000);
        assert_eq!(session.state, KefuState::Complete);
        assert_eq!(session.changed_by, ChangedBy::Callback);

        // Without agreement, the grace period ends.
        session.apply_desk(DeskAction::Quit, None, 10_000);
        session.apply_callback(&report(KefuState::NeedPerson), 10_000 + DESK_GRACE_MS - 1);
        assert_eq!(session.state, KefuState::Complete);
        session.apply_callback(&report(KefuState::NeedPerson), 10_000 + DESK_GRACE_MS);
        assert_eq!(session.state, KefuState::NeedPerson);
        assert_eq!(session.agent, None);
    }

    #[test]
    fn switch_changes_the_agent() {
        let mut session = Session::new("dialogue", "oU", 0);
        session.apply_desk(DeskAction::Enter, Some("a"), 1);
        session.apply_desk(DeskAction::Switch, Some("b"), 2);
        assert_eq!(session.agent.as_deref(), Some("b"));
        assert_eq!(session.state_since_ms, 1);
        session.apply_desk(DeskAction::Quit, Some("ignored"), 3);
        assert_eq!(session.agent.as_deref(), Some("b"));
        assert_eq!(session.state, KefuState::Complete);
    }
}
