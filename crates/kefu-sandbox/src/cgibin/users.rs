//! What an account's users have done, as the send rules see it (protocols.md §5.2–5.3): when
//! the user last wrote (the send window), how many messages the account sent since (the quota),
//! the last message interaction, and the typing state.

use serde::{Deserialize, Serialize};

use super::codes::Refusal;

/// The clocks of the rules, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) send_window_ms: u64,
    pub(crate) quota: u32,
    pub(crate) typing_interaction_ms: u64,
    pub(crate) typing_duration_ms: u64,
}

/// One user of one account, as `GET /sandbox/accounts/{appid}/users/{openid}` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUser {
    /// The user's OpenID for this account.
    pub openid: String,
    /// When the user last wrote, in Unix milliseconds: the start of the send window.
    pub wrote_at_ms: Option<u64>,
    /// Messages accepted since then (the quota counts these).
    pub sent_since_wrote: u32,
    /// The last message interaction (the user's message or an accepted `custom/send`), in Unix
    /// milliseconds: typing needs one in the last 30 s.
    pub interaction_at_ms: Option<u64>,
    /// Until when the user sees the account typing, in Unix milliseconds, if typing.
    pub typing_until_ms: Option<u64>,
}

impl ApiUser {
    /// A user who has not written yet.
    pub(crate) fn new(openid: &str) -> ApiUser {
        ApiUser {
            openid: openid.to_owned(),
            ..ApiUser::default()
        }
    }

    /// The user writes: the window opens and the quota starts again.
    pub(crate) fn wrote(&mut self, now_ms: u64) {
        self.wrote_at_ms = Some(now_ms);
        self.sent_since_wrote = 0;
        self.interaction_at_ms = Some(now_ms);
    }

    /// The window (45015) and then the quota (45047) for one more message.
    pub(crate) fn may_send(&self, rules: Rules, now_ms: u64) -> Result<(), Refusal> {
        self.window_open(rules, now_ms)?;
        if self.sent_since_wrote >= rules.quota {
            return Err(Refusal::ResponseCount);
        }
        Ok(())
    }

    /// An accepted message: counted, an interaction, and the end of any typing.
    pub(crate) fn sent(&mut self, now_ms: u64) {
        self.sent_since_wrote = self.sent_since_wrote.saturating_add(1);
        self.interaction_at_ms = Some(now_ms);
        self.typing_until_ms = None;
    }

    /// `Typing` (`true`) or `CancelTyping`: the window (45015), an interaction in the last
    /// 30 s (45080), and for `Typing` no typing state already showing (45081).
    pub(crate) fn typing(
        &mut self,
        typing: bool,
        rules: Rules,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.window_open(rules, now_ms)?;
        let recent = self
            .interaction_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < rules.typing_interaction_ms);
        if !recent {
            return Err(Refusal::TypingNoInteraction);
        }
        let showing = self.typing_until_ms.filter(|&until| until > now_ms);
        if typing {
            if showing.is_some() {
                return Err(Refusal::AlreadyTyping);
            }
            self.typing_until_ms = Some(now_ms.saturating_add(rules.typing_duration_ms));
        } else {
            self.typing_until_ms = None;
        }
        Ok(())
    }

    fn window_open(&self, rules: Rules, now_ms: u64) -> Result<(), Refusal> {
        match self.wrote_at_ms {
            Some(at) if now_ms.saturating_sub(at) < rules.send_window_ms => Ok(()),
            _ => Err(Refusal::OutOfTimeLimit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        send_window_ms: 48 * 3600 * 1000,
        quota: 5,
        typing_interaction_ms: 30_000,
        typing_duration_ms: 15_000,
    };

    #[test]
    fn the_window_and_the_quota() {
        let mut user = ApiUser::new("o");
        assert_eq!(user.may_send(RULES, 0), Err(Refusal::OutOfTimeLimit));
        user.wrote(0);
        for _ in 0..5 {
            assert_eq!(user.may_send(RULES, 1), Ok(()));
            user.sent(1);
        }
        assert_eq!(user.may_send(RULES, 1), Err(Refusal::ResponseCount));
        user.wrote(2);
        assert_eq!(user.may_send(RULES, 2), Ok(()));
        assert_eq!(
            user.may_send(RULES, 2 + RULES.send_window_ms),
            Err(Refusal::OutOfTimeLimit)
        );
    }

    #[test]
    fn typing_needs_a_recent_interaction_and_lasts() {
        let mut user = ApiUser::new("o");
        user.wrote(0);
        assert_eq!(
            user.typing(true, RULES, 30_000),
            Err(Refusal::TypingNoInteraction)
        );
        assert_eq!(user.typing(true, RULES, 1), Ok(()));
        assert_eq!(user.typing(true, RULES, 2), Err(Refusal::AlreadyTyping));
        assert_eq!(user.typing(true, RULES, 15_001), Ok(()), "it lasted 15 s");
        user.sent(15_002);
        assert_eq!(
            user.typing(true, RULES, 15_003),
            Ok(()),
            "a message ends it"
        );
        assert_eq!(user.typing(false, RULES, 15_004), Ok(()));
        assert_eq!(user.typing(true, RULES, 15_005), Ok(()));
        assert_eq!(user.typing(false, RULES, 15_006), Ok(()));
        assert_eq!(user.typing(false, RULES, 15_007), Ok(()));
    }
}
