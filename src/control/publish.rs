//! The run's side of the event stream: `EventSender` stamps each event and broadcasts it
//! to every attached client without ever waiting for one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::protocol::{Event, Stamped};

/// Events kept for a client that reads slowly; past this it is told how many it missed.
pub const EVENT_BUFFER: usize = 1024;

/// Cheap to clone; sending never blocks and never fails (with no client attached the
/// event is simply not delivered).
#[derive(Debug, Clone)]
pub struct EventSender {
    sender: broadcast::Sender<Stamped>,
    attached: Arc<AtomicUsize>,
}

impl Default for EventSender {
    fn default() -> Self {
        Self::new(EVENT_BUFFER)
    }
}

impl EventSender {
    /// A sender that keeps up to `buffer` events for each slow client.
    pub fn new(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        EventSender {
            sender,
            attached: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Stamps `event` with the time now and sends it to every listener.
    pub fn send(&self, event: Event) {
        let _ = self.sender.send(Stamped::now(event));
    }

    /// A new listener that sees every event sent from now on (in-process front-ends,
    /// such as a console running in the same process, use this directly).
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }

    /// How many socket clients follow the stream right now.
    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::SeqCst)
    }

    /// Counts one attached client until the guard is dropped.
    pub(crate) fn attach_guard(&self) -> AttachGuard {
        self.attached.fetch_add(1, Ordering::SeqCst);
        AttachGuard(self.attached.clone())
    }
}

/// Decrements the attached count when a client's stream ends, however it ends.
pub(crate) struct AttachGuard(Arc<AtomicUsize>);

impl Drop for AttachGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
