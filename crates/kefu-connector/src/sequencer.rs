//! Hands stored jobs to delivery in the order the store placed them, not in the order their
//! store calls happened to finish.
//!
//! Two desk requests for one user are stored in one order (the store's), but each request's task
//! learns of its commit on its own: without this, the second could reach delivery first and the
//! user would read the messages swapped. Each store call that queues jobs takes a ticket in the
//! same critical section in which the store receives the call (store backends take their calls in
//! call order, see [`crate::store`]); a finished call releases its jobs only after every earlier
//! ticket has released its own, or given up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::store::PendingJob;

/// Tickets and the jobs of finished calls that wait for an earlier one.
pub(crate) struct Sequencer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The next ticket to hand out.
    issued: u64,
    /// The next ticket to release.
    released: u64,
    /// Finished tickets waiting for an earlier one, with their jobs.
    finished: BTreeMap<u64, Vec<PendingJob>>,
}

impl Sequencer {
    pub(crate) fn new() -> Arc<Sequencer> {
        Arc::new(Sequencer {
            state: Mutex::new(State::default()),
        })
    }

    /// Takes the next ticket and makes `call` (a store call, which must hand its work to the
    /// store before it returns) while holding the ticket lock, so that tickets follow the order
    /// in which the store receives the calls.
    pub(crate) fn submit<R>(
        self: &Arc<Self>,
        release: impl Fn(PendingJob) + Send + Sync + 'static,
        call: impl FnOnce() -> R,
    ) -> (Ticket, R) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let number = state.issued;
        state.issued += 1;
        let result = call();
        drop(state);
        let ticket = Ticket {
            sequencer: Arc::clone(self),
            number,
            release: Box::new(release),
            released: false,
        };
        (ticket, result)
    }

    fn finish(&self, number: u64, jobs: Vec<PendingJob>, release: &dyn Fn(PendingJob)) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.finished.insert(number, jobs);
        // Released under the lock: a later ticket cannot overtake this one between the
        // removal and the hand-over.
        while let Some(jobs) = {
            let next = state.released;
            state.finished.remove(&next)
        } {
            state.released += 1;
            for job in jobs {
                release(job);
            }
        }
    }
}

/// One store call's place in line. Dropped without [`Ticket::release`] (the call failed, found
/// an earlier answer, or was abandoned), it releases nothing but lets later tickets through.
pub(crate) struct Ticket {
    sequencer: Arc<Sequencer>,
    number: u64,
    release: Box<dyn Fn(PendingJob) + Send + Sync>,
    released: bool,
}

impl Ticket {
    /// Hands `jobs` to delivery once every earlier ticket is done.
    pub(crate) fn release(mut self, jobs: Vec<PendingJob>) {
        self.released = true;
        self.sequencer.finish(self.number, jobs, &*self.release);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.released {
            self.sequencer
                .finish(self.number, Vec::new(), &*self.release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kefu_core::Job;

    use super::*;

    fn job(id: i64) -> PendingJob {
        PendingJob {
            job: Job {
                id,
                account: "dialogue".into(),
                recipient: "oU".into(),
                operation: "sendmsg".into(),
                payload: Vec::new(),
            },
            attempts: 0,
            not_before_ms: 0,
        }
    }

    #[test]
    fn a_call_that_finishes_first_waits_for_the_earlier_ones() {
        let sequencer = Sequencer::new();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = |delivered: &Arc<Mutex<Vec<i64>>>| {
            let delivered = Arc::clone(delivered);
            move |job: PendingJob| delivered.lock().unwrap().push(job.job.id)
        };
        let (first, ()) = sequencer.submit(sink(&delivered), || ());
        let (second, ()) = sequencer.submit(sink(&delivered), || ());
        let (third, ()) = sequencer.submit(sink(&delivered), || ());
        let (fourth, ()) = sequencer.submit(sink(&delivered), || ());
        // The later calls finish first: nothing moves until the first is done.
        fourth.release(vec![job(7)]);
        second.release(vec![job(3), job(4)]);
        assert!(delivered.lock().unwrap().is_empty());
        first.release(vec![job(1), job(2)]);
        assert_eq!(*delivered.lock().unwrap(), [1, 2, 3, 4]);
        // A call that stored nothing (refused, replayed, failed) lets the later ones through.
        drop(third);
        assert_eq!(*delivered.lock().unwrap(), [1, 2, 3, 4, 7]);
    }
}
