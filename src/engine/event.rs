//! What the engine reports while it works (steps, lock waits, backfill batches), sent to
//! whichever front-end listens: the headless commands print them, a console draws them.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::progress::BackfillProgress;
use crate::plan::Phase;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step is about to run. `position` is 0-based among the steps of its phase.
    StepStarted {
        migration: String,
        phase: Phase,
        position: usize,
        total: usize,
        description: String,
    },
    /// A step is done and recorded.
    StepDone {
        migration: String,
        phase: Phase,
        position: usize,
    },
    /// A statement gave up waiting for its lock and will try again after `retry_in`.
    LockWait {
        step: String,
        attempt: u32,
        max_attempts: u32,
        retry_in: Duration,
        blocked_by: String,
    },
    /// A backfill batch committed with its checkpoint. `batches` and `rows_updated` count
    /// the whole backfill (earlier runs included); `batch_rows` is what this batch
    /// updated, of the `batch_size` keys it was sized for.
    BatchCommitted {
        step: String,
        batches: i64,
        rows_updated: i64,
        batch_rows: u64,
        batch_size: u64,
        took: Duration,
    },
    /// Where a backfill stands: sent after batches (at most about once a second) and
    /// every second while it waits (throttled or paused), so a front-end always shows
    /// the current state and throttle reason.
    BackfillProgress(BackfillProgress),
    /// The throttle (or an operator, by hand) holds the backfill; `reason` names every
    /// input holding it back. Sent again when the reason changes.
    Throttled {
        step: String,
        reason: String,
    },
    /// The throttle let go after holding the backfill for `after`.
    ThrottleReleased {
        step: String,
        after: Duration,
    },
    /// The backfill is paused (`by`: the operator, or a critical throttle level).
    Paused {
        step: String,
        by: String,
    },
    Resumed {
        step: String,
    },
    /// A throttle input passed its critical level: the backfill is paused until an
    /// operator resumes it. An alert, not a log line.
    CriticalLevel {
        step: String,
        reason: String,
    },
    /// The database does not answer (a restart, a crash, a failover, the network): the
    /// run waits and tries again with backoff until `budget` is spent. Sent on each try.
    Unreachable {
        down_for: Duration,
        budget: Duration,
        why: String,
    },
    /// The backfill stopped after its last committed batch because `why` (a signal, an
    /// abort); the checkpoint holds and running the command again resumes.
    BackfillStopped {
        step: String,
        why: String,
        rows_updated: i64,
    },
}

/// Where events go: nowhere, or a channel. Cheap to clone; a closed channel is ignored
/// (a front-end going away never stops a run).
#[derive(Debug, Clone, Default)]
pub struct Events(Option<UnboundedSender<Event>>);

impl Events {
    /// Events sent to `sender`.
    pub fn to(sender: UnboundedSender<Event>) -> Self {
        Events(Some(sender))
    }

    /// Events dropped.
    pub fn none() -> Self {
        Events(None)
    }

    pub fn emit(&self, event: Event) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(event);
        }
    }
}
