//! This relay's liveness in `kefu.relays` (design §3.4): the row it registers at start, the
//! heartbeat that keeps it alive, judged on the database's clock, and the tasks that end with the
//! store.

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::error::PgError;
use crate::sql::{self, Conn};

/// Inserts `relay`'s row, alive for `ttl_ms` from now on the database's clock, unless it exists.
pub(crate) const REGISTER: &str = "
INSERT INTO kefu.relays (relay_id, name, pid, started_at_ms, alive_until_ms)
VALUES ($1, $2, $3, kefu.now_ms(), kefu.now_ms() + $4)
ON CONFLICT (relay_id) DO NOTHING";

/// What identifies this relay's row, and how long a heartbeat keeps it alive.
#[derive(Clone)]
pub(crate) struct Registration {
    pub(crate) relay: String,
    pub(crate) name: String,
    pub(crate) ttl_ms: i64,
}

impl Registration {
    /// Registers the relay (or leaves its row as it is).
    pub(crate) async fn register(&self, c: &Conn) -> Result<(), PgError> {
        let pid = i32::try_from(std::process::id()).unwrap_or(0);
        sql::execute(c, REGISTER, &[&self.relay, &self.name, &pid, &self.ttl_ms]).await?;
        Ok(())
    }

    /// One heartbeat: alive for another TTL; the row is inserted again if it was removed (a
    /// relay row is deleted a day after it lapsed, so one that stalled that long comes back).
    /// A stopped relay stays stopped, even if a beat sent just before the stop arrives after it.
    async fn beat(&self, pool: &Pool) -> Result<(), PgError> {
        let c = pool.get().await?;
        let kept = sql::execute(
            &c,
            "UPDATE kefu.relays SET alive_until_ms = kefu.now_ms() + $2
             WHERE relay_id = $1 AND stopped_at_ms IS NULL",
            &[&self.relay, &self.ttl_ms],
        )
        .await?;
        if kept == 0 {
            self.register(&c).await?;
        }
        Ok(())
    }
}

/// Keeps the relay alive every `every` until the task is aborted; a failed beat is logged once
/// per outage (the relay's sends are fenced by its liveness, so a lapse is safe).
pub(crate) fn heartbeat(pool: Pool, registration: Registration, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match registration.beat(&pool).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("this relay's heartbeat reaches the database again");
                    }
                    failing = false;
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "this relay's heartbeat failed (its leases lapse if this lasts): {error}"
                    );
                }
                Err(_) => {}
            }
        }
    })
}

/// The store's background tasks (heartbeat, listener), aborted when the store stops or its
/// last clone is dropped.
#[derive(Default)]
pub(crate) struct Background(Mutex<Vec<JoinHandle<()>>>);

impl Background {
    /// Adds `task`.
    pub(crate) fn hold(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.push(task);
        }
    }

    /// Aborts every task.
    pub(crate) fn end(&self) {
        let tasks = match self.0.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.end();
    }
}
