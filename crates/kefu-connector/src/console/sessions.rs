//! The console's logins: sessions held in memory (by the SHA-256 of their cookie, never the
//! cookie itself), each with its CSRF token, and the slowing down of wrong passwords per client
//! address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
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
    /// The open sessions (a panic elsewhere while they were held leaves them usable).
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

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
        let mut open = self.lock();
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
        let mut open = self.lock();
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
        let mut open = self.lock();
        open.remove(&key_of(cookie));
    }
}

/// Wrong passwords a client may give before it must wait.
const FREE_TRIES: u32 = 3;
/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// The wait asked of a client whose previous try is still being checked.
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// Client addresses remembered at most; beyond that the one whose last try is oldest is
/// forgotten.
const MAX_CLIENTS: usize = 4096;
/// A client's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The tries of one client.
#[derive(Debug, Clone, Copy)]
struct Tries {
    /// Tries counted as wrong (a try being checked counts until it proves right).
    count: u32,
    /// When the last try was answered (or began, while it is checked).
    last: Instant,
    /// Whether a try is being checked now.
    busy: bool,
}

/// Wrong passwords per client: after [`FREE_TRIES`], each try must wait twice as long as the
/// one before (1 s, 2 s, 4 s, … up to 5 minutes) after the last one. A client has one try
/// checked at a time, counted as wrong from its start: tries sent together cannot all pass the
/// check before the first failure is counted. An IPv6 client is its /64, which one host
/// usually holds whole.
#[derive(Default)]
pub(crate) struct Throttle {
    tries: Mutex<HashMap<IpAddr, Tries>>,
}

/// A client's try being checked; ends it when dropped (also when the request is abandoned, which
/// counts as a wrong password from the try's start).
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    client: IpAddr,
}

impl Attempt<'_> {
    /// The password was wrong: the client's wait runs from `now`, the answer, however long
    /// the check took.
    pub(crate) fn failed(self, now: Instant) {
        let mut tries = self.throttle.lock();
        if let Some(entry) = tries.get_mut(&self.client) {
            entry.last = now;
        }
    }

    /// The password was right: the client's wrong ones are forgotten.
    pub(crate) fn succeeded(self) {
        let mut tries = self.throttle.lock();
        tries.remove(&self.client);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut tries = self.throttle.lock();
        if let Some(entry) = tries.get_mut(&self.client) {
            entry.busy = false;
        }
    }
}

/// The address a client is throttled under: itself, or for IPv6 its /64.
fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

impl Throttle {
    /// The tries per client (a panic elsewhere while they were held leaves them usable).
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Tries>> {
        self.tries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a try of `client`, counted as wrong until it [succeeds](Attempt::succeeded), or
    /// says how long the client must still wait.
    pub(crate) fn begin(&self, client: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
        let client = bucket(client);
        let mut tries = self.lock();
        if let Some(entry) = tries.get(&client) {
            if entry.busy {
                return Err(BUSY_WAIT);
            }
            let ready_at = entry.last + delay_after(entry.count);
            if ready_at > now {
                return Err(ready_at - now);
            }
        } else if tries.len() >= MAX_CLIENTS {
            tries.retain(|_, entry| entry.busy || now.duration_since(entry.last) < FORGET_AFTER);
            if tries.len() >= MAX_CLIENTS {
                if let Some(oldest) = tries
                    .iter()
                    .filter(|(_, entry)| !entry.busy)
                    .min_by_key(|(_, entry)| entry.last)
                    .map(|(ip, _)| *ip)
                {
                    tries.remove(&oldest);
                }
            }
        }
        let entry = tries.entry(client).or_insert(Tries {
            count: 0,
            last: now,
            busy: false,
        });
        *entry = Tries {
            count: entry.count.saturating_add(1),
            last: now,
            busy: true,
        };
        Ok(Attempt {
            throttle: self,
            client,
        })
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
        for _ in 0..FREE_TRIES {
            throttle.begin(client, now).unwrap().failed(now);
        }
        assert_eq!(
            throttle.begin(client, now).err(),
            Some(Duration::from_secs(1))
        );
        drop(
            throttle
                .begin(client, now + Duration::from_secs(1))
                .unwrap(),
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            throttle.begin(client, later).err(),
            Some(Duration::from_secs(2))
        );
        assert!(
            throttle.begin(other, now).is_ok(),
            "another client is not slowed"
        );
        let mut at = later;
        for _ in 0..40 {
            at += MAX_WAIT;
            throttle.begin(client, at).unwrap().failed(at);
        }
        assert_eq!(throttle.begin(client, at).err(), Some(MAX_WAIT));
        throttle.begin(client, at + MAX_WAIT).unwrap().succeeded();
        assert!(throttle.begin(client, at + MAX_WAIT).is_ok());
    }

    #[test]
    fn the_wait_runs_from_the_answer_however_long_the_check_took() {
        let throttle = Throttle::default();
        let client: IpAddr = "192.0.2.10".parse().unwrap();
        let start = Instant::now();
        let answered = start + Duration::from_secs(10);
        for _ in 1..FREE_TRIES {
            throttle.begin(client, start).unwrap().failed(start);
        }
        // The last free try took 10 s to check.
        throttle.begin(client, start).unwrap().failed(answered);
        assert_eq!(
            throttle.begin(client, answered).err(),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn tries_sent_together_are_checked_one_at_a_time() {
        let throttle = Throttle::default();
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let now = Instant::now();
        let first = throttle.begin(client, now).unwrap();
        assert_eq!(throttle.begin(client, now).err(), Some(BUSY_WAIT));
        drop(first);
        // Counted as wrong from its start: three tries, then a wait, however they overlap.
        throttle.begin(client, now).unwrap().failed(now);
        throttle.begin(client, now).unwrap().failed(now);
        assert!(throttle.begin(client, now).is_err());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for host in 1..=FREE_TRIES {
            let client: IpAddr = format!("2001:db8:1:2::{host}").parse().unwrap();
            throttle.begin(client, now).unwrap().failed(now);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(throttle.begin(same_64, now).is_err());
        assert!(throttle.begin(other_64, now).is_ok());
    }

    #[test]
    fn the_clients_remembered_are_bounded() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 10) {
            throttle
                .begin(IpAddr::from(n.to_be_bytes()), now)
                .unwrap()
                .failed(now);
        }
        assert!(throttle.tries.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
