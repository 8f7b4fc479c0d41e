//! The locks a lane group takes before its commands run, all of them in one fixed order (design
//! §9.1), so that two relays' groups touching the same users in different orders cannot wait on
//! each other: the event counter, then the users' sessions, then the jobs' conversations, then
//! the webhook's. Each command takes its own locks again as it runs (a lock already held is
//! granted at once), so the group's are an ordering device, not what correctness rests on.

use crate::error::PgError;
use crate::sessions::LOCK_SESSIONS;
use crate::sql::Conn;

/// Locks (creating them if need be) the lease rows of the conversations `$2`/`$3` of lane `$1`
/// in one fixed order, and bumps their version: new work was queued.
pub(crate) const LOCK_CONVERSATIONS: &str = "
INSERT INTO kefu.leases (lane, account, key, version, updated_at_ms)
SELECT $1::text, t.a, t.k, 1, $4 FROM unnest($2::text[], $3::text[]) AS t(a, k) ORDER BY t.a, t.k
ON CONFLICT (lane, account, key) DO UPDATE SET version = kefu.leases.version + 1,
    updated_at_ms = excluded.updated_at_ms";

/// The jobs lane's name in `kefu.leases`.
pub(crate) const JOB_LANE: &str = "job";

/// The webhook lane's name in `kefu.leases`; its conversations are keyed by openid alone.
pub(crate) const WEBHOOK_LANE: &str = "webhook";

/// What a command will lock, declared when it is called.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    /// The event counter: the command may store events.
    counter: bool,
    /// (account, openid) of sessions.
    sessions: Vec<(String, String)>,
    /// (account, recipient) of job conversations.
    jobs: Vec<(String, String)>,
    /// openids of webhook conversations.
    webhook: Vec<String>,
}

impl Locks {
    /// The event counter too.
    pub(crate) fn counter(mut self) -> Locks {
        self.counter = true;
        self
    }

    /// A user's session too.
    pub(crate) fn session(mut self, account: &str, openid: &str) -> Locks {
        self.sessions.push((account.to_owned(), openid.to_owned()));
        self
    }

    /// A job conversation too.
    pub(crate) fn job(mut self, account: &str, recipient: &str) -> Locks {
        self.jobs.push((account.to_owned(), recipient.to_owned()));
        self
    }

    /// A user's webhook conversation too.
    pub(crate) fn webhook(mut self, openid: &str) -> Locks {
        self.webhook.push(openid.to_owned());
        self
    }

    /// The job conversations (account, recipient) a group with these locks stores into.
    pub(crate) fn jobs(&self) -> &[(String, String)] {
        &self.jobs
    }

    /// Whether a group with these locks takes the event counter first.
    pub(crate) fn has_counter(&self) -> bool {
        self.counter
    }

    /// Adds `other`'s locks to these.
    pub(crate) fn absorb(&mut self, other: &mut Locks) {
        self.counter |= other.counter;
        self.sessions.append(&mut other.sessions);
        self.jobs.append(&mut other.jobs);
        self.webhook.append(&mut other.webhook);
    }
}

fn split(mut pairs: Vec<(String, String)>) -> (Vec<String>, Vec<String>) {
    pairs.sort_unstable();
    pairs.dedup();
    pairs.into_iter().unzip()
}

/// Takes the sessions' and conversations' locks of `locks` (the counter is the caller's, in
/// its `BEGIN`), pipelined, in the fixed order.
pub(crate) async fn take(c: &Conn, now: i64, locks: &Locks) -> Result<(), PgError> {
    if locks.sessions.is_empty() && locks.jobs.is_empty() && locks.webhook.is_empty() {
        return Ok(());
    }
    let (session_accounts, session_openids) = split(locks.sessions.clone());
    let (job_accounts, job_recipients) = split(locks.jobs.clone());
    let mut webhook = locks.webhook.clone();
    webhook.sort_unstable();
    webhook.dedup();
    let no_accounts = vec![String::new(); webhook.len()];
    let (sessions, conversations) = tokio::try_join!(
        c.prepare_cached(LOCK_SESSIONS),
        c.prepare_cached(LOCK_CONVERSATIONS)
    )?;
    let lock_sessions = async {
        if session_accounts.is_empty() {
            return Ok(0);
        }
        c.execute(&sessions, &[&session_accounts, &session_openids])
            .await
    };
    let lock_jobs = async {
        if job_accounts.is_empty() {
            return Ok(0);
        }
        c.execute(
            &conversations,
            &[&JOB_LANE, &job_accounts, &job_recipients, &now],
        )
        .await
    };
    let lock_webhook = async {
        if webhook.is_empty() {
            return Ok(0);
        }
        c.execute(
            &conversations,
            &[&WEBHOOK_LANE, &no_accounts, &webhook, &now],
        )
        .await
    };
    tokio::try_join!(lock_sessions, lock_jobs, lock_webhook)?;
    Ok(())
}
