//! The console's logins: sessions held in memory (by the SHA-256 of their cookie, never the
//! cookie itself), each with its CSRF token, and the slowing down of wrong passwords per client
//! address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Sessions held at most; a login beyond that ends the session closest to its expiry.
const MAX_SESSIONS: usize = 256;

/// An operator's login.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// A short name of the session for logs and records: 8 hex digits of the cookie's hash,
    /// which reveal nothing of the cookie.
    pub(crate) handle: String,
    /// Who logged in, as the operator named themselves (may be empty).
    pub(crate) name: String,
    /// The token every action must carry in `X-CSRF-Token`.
    pub(crate) csrf: String,
    /// When the login ends.
    pub(crate) expires: Instant,
}

impl Session {
    /// How records and logs name the operator: the name they gave, and the session.
    pub(crate) fn operator(&self) -> String {
        if self.name.is_empty() {
            format!("session {}", self.handle)
        } else {
            format!("{} (session {})", self.name, self.handle)
        }
    }
}

/// The logins of this relay.
pub(crate) struct Sessions {
    ttl: Duration,
    open: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn key_of(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// Sessions that last `ttl`.
    pub(crate) fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// How long a login lasts.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `name`; returns its cookie value and the session.
    pub(crate) fn open(&self, name: String, now: Instant) -> (String, Session) {
        let cookie = random_hex();
        let key = key_of(&cookie);
        let session = Session {
            handle: hex::encode(&key[..4]),
            name,
            csrf: random_hex(),
            expires: now + self.ttl,
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, session| session.expires > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(soonest) = open
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(key, _)| *key)
            {
                open.remove(&soonest);
            }
        }
        open.insert(key, session.clone());
        (cookie, session)
    }

    /// The live session of a cookie value.
    pub(crate) fn find(&self, cookie: &str, now: Instant) -> Option<Session> {
        let key = key_of(cookie);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        match open.get(&key) {
            Some(session) if session.expires > now => Some(session.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of a cookie value.
    pub(crate) fn close(&self, cookie: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(&key_of(cookie));
    }
}

/// Wrong passwords a client may give before it must wait.
const FREE_TRIES: u32 = 3;
/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Client addresses remembered at most; beyond that the one whose last failure is oldest is
/// forgotten.
const MAX_CLIENTS: usize = 4096;
/// A client's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Wrong passwords per client address: after [`FREE_TRIES`], each try must wait twice as long
/// as the one before (1 s, 2 s, 4 s, … up to 5 minutes) after the last failure.
#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// How long `client` must still wait before its password is checked, if at all.
    pub(crate) fn wait(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let &(count, last) = failures.get(&client)?;
        let ready_at = last + delay_after(count);
        (ready_at > now).then(|| ready_at - now)
    }

    /// Counts a wrong password of `client`.
    pub(crate) fn failed(&self, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= MAX_CLIENTS {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(ip, _)| *ip)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(client).or_insert((0, now));
        *entry = (entry.0.saturating_add(1), now);
    }

    /// Forgets `client`'s failures after a right password.
    pub(crate) fn succeeded(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&client);
    }
}

/// The wait after `count` wrong passwords.
fn delay_after(count: u32) -> Duration {
    if count < FREE_TRIES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_TRIES).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let now = Instant::now();
        let (cookie, session) = sessions.open("ana".into(), now);
        assert_eq!(cookie.len(), 64);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(cookie, session.csrf);
        assert_eq!(session.handle.len(), 8);
        assert!(
            !cookie.starts_with(&session.handle),
            "the handle is not the cookie's prefix"
        );
        assert_eq!(
            session.operator(),
            format!("ana (session {})", session.handle)
        );
        assert!(sessions.find(&cookie, now).is_some());
        assert!(sessions.find("0".repeat(64).as_str(), now).is_none());
        assert!(
            sessions
                .find(&cookie, now + Duration::from_secs(61))
                .is_none()
        );
        let (cookie, _) = sessions.open(String::new(), now);
        sessions.close(&cookie);
        assert!(sessions.find(&cookie, now).is_none());
    }

    #[test]
    fn logins_beyond_the_cap_end_the_oldest() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let start = Instant::now();
        let (first, _) = sessions.open(String::new(), start);
        for n in 1..=MAX_SESSIONS {
            sessions.open(String::new(), start + Duration::from_millis(n as u64));
        }
        assert!(sessions.find(&first, start).is_none());
        assert_eq!(sessions.open.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn wrong_passwords_wait_longer_and_longer() {
        let throttle = Throttle::default();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let now = Instant::now();
        for _ in 0..FREE_TRIES - 1 {
            throttle.failed(client, now);
            assert_eq!(throttle.wait(client, now), None);
        }
        throttle.failed(client, now);
        assert_eq!(throttle.wait(client, now), Some(Duration::from_secs(1)));
        throttle.failed(client, now);
        assert_eq!(throttle.wait(client, now), Some(Duration::from_secs(2)));
        assert_eq!(
            throttle.wait(client, now + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.wait(client, now + Duration::from_secs(2)), None);
        assert_eq!(
            throttle.wait(other, now),
            None,
            "another client is not slowed"
        );
        for _ in 0..40 {
            throttle.failed(client, now);
        }
        assert_eq!(throttle.wait(client, now), Some(MAX_WAIT));
        throttle.succeeded(client);
        assert_eq!(throttle.wait(client, now), None);
    }

    #[test]
    fn the_clients_remembered_are_bounded() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 10) {
            throttle.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(throttle.failures.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
