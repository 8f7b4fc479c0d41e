//! `stable_token`'s tokens (protocols.md §6.1): the same token while it is valid, a new one in
//! the last part of its life with both working until the old one expires, force refreshes that
//! invalidate every live token of the account (20 a day, 30 s apart), and the admin call that
//! supersedes them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::Rng as _;
use rand::distr::Alphanumeric;

use super::codes::Refusal;

/// The platform renews a token this long before it expires.
const RENEWAL: Duration = Duration::from_secs(300);
/// At most this many force refreshes per account in a day.
const FORCE_PER_DAY: usize = 20;
/// At least this long between two force refreshes of an account.
const FORCE_SPACING_MS: u64 = 30_000;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// How long an expired token is still told apart from an unknown one (42001, not 40001).
const EXPIRED_MEMORY_MS: u64 = 3600 * 1000;

/// A token the platform issued: whose it is and until when it works.
#[derive(Debug, Clone)]
struct Issued {
    account: usize,
    expires_at_ms: u64,
    revoked: bool,
}

/// An issued token as `stable_token` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) access_token: String,
    /// Whole seconds left.
    pub(crate) expires_in: u64,
}

/// Every account's tokens.
#[derive(Debug)]
pub(crate) struct Tokens {
    lifetime_ms: u64,
    renewal_ms: u64,
    issued: HashMap<String, Issued>,
    /// Per account: the newest token, and the times of its force refreshes in the last day.
    current: Vec<Option<String>>,
    forced: Vec<VecDeque<u64>>,
}

impl Tokens {
    /// No token yet for `accounts` accounts. The renewal window is 5 minutes, or half the
    /// lifetime when that is shorter, so that a short lifetime still hands out one token for a
    /// while.
    pub(crate) fn new(accounts: usize, lifetime: Duration) -> Tokens {
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        let renewal_ms = u64::try_from(RENEWAL.as_millis())
            .unwrap_or(u64::MAX)
            .min(lifetime_ms / 2);
        Tokens {
            lifetime_ms,
            renewal_ms,
            issued: HashMap::new(),
            current: vec![None; accounts],
            forced: vec![VecDeque::new(); accounts],
        }
    }

    /// `stable_token` for an account whose credentials passed. A force refresh inside the
    /// limits invalidates every live token of the account first; outside them it does not
    /// refresh (the call is answered as in normal mode). Returns the grant and whether a force
    /// refresh happened.
    pub(crate) fn fetch(&mut self, account: usize, force: bool, now_ms: u64) -> (Grant, bool) {
        let forced = force && self.may_force(account, now_ms);
        if forced {
            self.revoke(account);
            if let Some(times) = self.forced.get_mut(account) {
                times.push_back(now_ms);
            }
        }
        let current = self
            .current
            .get(account)
            .and_then(Option::as_deref)
            .and_then(|token| Some((token, self.issued.get(token)?)))
            .filter(|(_, issued)| {
                !issued.revoked && issued.expires_at_ms.saturating_sub(now_ms) > self.renewal_ms
            })
            .map(|(token, issued)| (token.to_owned(), issued.expires_at_ms));
        let (access_token, expires_at_ms) = match current {
            Some(current) => current,
            None => self.issue(account, now_ms),
        };
        let grant = Grant {
            access_token,
            expires_in: expires_at_ms.saturating_sub(now_ms) / 1000,
        };
        (grant, forced)
    }

    /// The account a token works for, or why it does not (40001 unknown or superseded, 42001
    /// expired).
    pub(crate) fn check(&self, token: &str, now_ms: u64) -> Result<usize, Refusal> {
        match self.issued.get(token) {
            None => Err(Refusal::InvalidCredential),
            Some(issued) if issued.revoked => Err(Refusal::InvalidCredential),
            Some(issued) if issued.expires_at_ms <= now_ms => Err(Refusal::AccessTokenExpired),
            Some(issued) => Ok(issued.account),
        }
    }

    /// Invalidates every token of the account: the next call with one gets 40001, and the next
    /// `stable_token` issues a new one.
    pub(crate) fn revoke(&mut self, account: usize) {
        for issued in self.issued.values_mut() {
            if issued.account == account {
                issued.revoked = true;
            }
        }
        if let Some(current) = self.current.get_mut(account) {
            *current = None;
        }
    }

    /// Force refreshes left today and the spacing since the last one.
    fn may_force(&mut self, account: usize, now_ms: u64) -> bool {
        let Some(times) = self.forced.get_mut(account) else {
            return false;
        };
        while times
            .front()
            .is_some_and(|&at| now_ms.saturating_sub(at) >= DAY_MS)
        {
            times.pop_front();
        }
        times.len() < FORCE_PER_DAY
            && times
                .back()
                .is_none_or(|&at| now_ms.saturating_sub(at) >= FORCE_SPACING_MS)
    }

    /// A new token for the account, which becomes its current one. Tokens long expired are
    /// forgotten (they answer 40001 from then on), so that memory stays bounded.
    fn issue(&mut self, account: usize, now_ms: u64) -> (String, u64) {
        self.issued
            .retain(|_, issued| issued.expires_at_ms.saturating_add(EXPIRED_MEMORY_MS) > now_ms);
        // The platform's tokens are opaque, about 136 characters; 512 must fit (§6.1).
        let token: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(136)
            .map(char::from)
            .collect();
        let expires_at_ms = now_ms.saturating_add(self.lifetime_ms);
        self.issued.insert(
            token.clone(),
            Issued {
                account,
                expires_at_ms,
                revoked: false,
            },
        );
        if let Some(current) = self.current.get_mut(account) {
            *current = Some(token.clone());
        }
        (token, expires_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3600 * 1000;

    fn tokens() -> Tokens {
        Tokens::new(2, Duration::from_secs(7200))
    }

    #[test]
    fn the_same_token_while_valid_then_an_overlap() {
        let mut tokens = tokens();
        let (first, forced) = tokens.fetch(0, false, 0);
        assert!(!forced);
        assert_eq!(first.expires_in, 7200);
        assert_eq!(first.access_token.len(), 136);
        let (again, _) = tokens.fetch(0, false, HOUR_MS);
        assert_eq!(again.access_token, first.access_token);
        assert_eq!(again.expires_in, 3600);
        assert_eq!(tokens.check(&first.access_token, HOUR_MS), Ok(0));
        // In the last 5 minutes a new one comes, and both work until the old one expires.
        let renewal = 2 * HOUR_MS - 299_000;
        let (new, _) = tokens.fetch(0, false, renewal);
        assert_ne!(new.access_token, first.access_token);
        assert_eq!(new.expires_in, 7200);
        assert_eq!(tokens.check(&first.access_token, renewal), Ok(0));
        assert_eq!(tokens.check(&new.access_token, renewal), Ok(0));
        assert_eq!(
            tokens.check(&first.access_token, 2 * HOUR_MS),
            Err(Refusal::AccessTokenExpired)
        );
        assert_eq!(
            tokens.fetch(0, false, renewal + 1).0.access_token,
            new.access_token
        );
        // Accounts do not share tokens.
        let (other, _) = tokens.fetch(1, false, renewal);
        assert_eq!(tokens.check(&other.access_token, renewal), Ok(1));
        assert_eq!(tokens.check("nope", 0), Err(Refusal::InvalidCredential));
    }

    #[test]
    fn force_refresh_invalidates_within_its_limits() {
        let mut tokens = tokens();
        let (first, _) = tokens.fetch(0, false, 0);
        let (forced, did) = tokens.fetch(0, true, 1000);
        assert!(did);
        assert_ne!(forced.access_token, first.access_token);
        assert_eq!(
            tokens.check(&first.access_token, 1000),
            Err(Refusal::InvalidCredential)
        );
        // 30 s apart: a second force refresh too soon does not refresh.
        let (soon, did) = tokens.fetch(0, true, 20_000);
        assert!(!did);
        assert_eq!(soon.access_token, forced.access_token);
        let mut now = 1000;
        for _ in 1..FORCE_PER_DAY {
            now += FORCE_SPACING_MS;
            assert!(tokens.fetch(0, true, now).1);
        }
        now += FORCE_SPACING_MS;
        assert!(!tokens.fetch(0, true, now).1, "the 21st in a day");
        assert!(tokens.fetch(0, true, 1000 + DAY_MS).1, "a day later");
    }

    #[test]
    fn revoking_supersedes_every_token() {
        let mut tokens = tokens();
        let (first, _) = tokens.fetch(0, false, 0);
        tokens.revoke(0);
        assert_eq!(
            tokens.check(&first.access_token, 1),
            Err(Refusal::InvalidCredential)
        );
        let (next, _) = tokens.fetch(0, false, 2);
        assert_ne!(next.access_token, first.access_token);
    }

    #[test]
    fn a_short_lifetime_renews_in_its_second_half() {
        let mut tokens = Tokens::new(1, Duration::from_millis(1000));
        let (first, _) = tokens.fetch(0, false, 0);
        assert_eq!(
            tokens.fetch(0, false, 499).0.access_token,
            first.access_token
        );
        assert_ne!(
            tokens.fetch(0, false, 500).0.access_token,
            first.access_token
        );
        assert_eq!(
            tokens.check(&first.access_token, 1000),
            Err(Refusal::AccessTokenExpired)
        );
    }
}
