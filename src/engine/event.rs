//! Where the engine's events go: the engine emits the protocol's [`Event`]s directly
//! (steps, status changes, lock waits, backfill batches and progress), to whichever
//! listens: a run's control socket and printer (`runner::Served`), or a test.

use tokio::sync::mpsc::UnboundedSender;

pub use crate::protocol::Event;

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
