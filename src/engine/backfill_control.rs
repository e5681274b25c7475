//! The live-control seam of a running backfill: a cloneable [`BackfillControl`] handle a
//! front-end (the headless runner's signal handler, the control socket, the console) uses
//! to pause, resume, retune, throttle or stop the backfill, and whose state the run loop
//! reads between batches. Everything is a `watch` channel: the loop sees the latest value,
//! a change wakes it at once (so a pause lands within one batch), and nothing queues.

use tokio::sync::watch;

use super::settings::BackfillSettings;

/// Why the run should stop after its current batch.
#[derive(Debug, Clone, PartialEq)]
pub enum StopRequest {
    /// Stop the backfill (and the command) after the current batch; a rerun resumes.
    Stop { why: String },
}

/// The handle. Cheap to clone; every clone steers the same backfill.
#[derive(Debug, Clone)]
pub struct BackfillControl {
    settings: watch::Sender<BackfillSettings>,
    /// `Some(who)` while paused.
    paused: watch::Sender<Option<String>>,
    /// `Some(who)` while an operator throttles by hand.
    manual_throttle: watch::Sender<Option<String>>,
    stop: watch::Sender<Option<StopRequest>>,
}

impl BackfillControl {
    pub fn new(settings: BackfillSettings) -> Self {
        BackfillControl {
            settings: watch::channel(settings).0,
            paused: watch::channel(None).0,
            manual_throttle: watch::channel(None).0,
            stop: watch::channel(None).0,
        }
    }

    pub fn settings(&self) -> BackfillSettings {
        self.settings.borrow().clone()
    }

    /// Changes settings with `change`; the loop applies them before its next batch.
    pub fn update(&self, change: impl FnOnce(&mut BackfillSettings)) {
        self.settings.send_modify(change);
    }

    /// Pauses after the current batch until [`BackfillControl::resume`]; `by` is shown.
    pub fn pause(&self, by: &str) {
        self.paused.send_replace(Some(by.to_string()));
    }

    pub fn resume(&self) {
        self.paused.send_replace(None);
    }

    pub fn paused_by(&self) -> Option<String> {
        self.paused.borrow().clone()
    }

    /// Throttles by hand (shown as the throttle reason) until [`BackfillControl::clear_throttle`].
    pub fn throttle(&self, by: &str) {
        self.manual_throttle.send_replace(Some(by.to_string()));
    }

    pub fn clear_throttle(&self) {
        self.manual_throttle.send_replace(None);
    }

    /// `Some(who)` while an operator throttles by hand.
    pub fn manual_throttle_by(&self) -> Option<String> {
        self.manual_throttle.borrow().clone()
    }

    /// Stops after the current batch; the checkpoint holds and a rerun resumes.
    pub fn stop(&self, why: &str) {
        self.stop.send_replace(Some(StopRequest::Stop {
            why: why.to_string(),
        }));
    }

    pub fn stop_requested(&self) -> Option<String> {
        self.stop
            .borrow()
            .as_ref()
            .map(|StopRequest::Stop { why }| why.clone())
    }

    /// The loop's view: receivers that wake on any change.
    pub(crate) fn watcher(&self) -> Watcher {
        Watcher {
            settings: self.settings.subscribe(),
            paused: self.paused.subscribe(),
            manual_throttle: self.manual_throttle.subscribe(),
            stop: self.stop.subscribe(),
        }
    }
}

impl Default for BackfillControl {
    fn default() -> Self {
        BackfillControl::new(BackfillSettings::default())
    }
}

/// What the run loop holds.
#[derive(Debug)]
pub(crate) struct Watcher {
    settings: watch::Receiver<BackfillSettings>,
    paused: watch::Receiver<Option<String>>,
    manual_throttle: watch::Receiver<Option<String>>,
    stop: watch::Receiver<Option<StopRequest>>,
}

impl Watcher {
    pub fn settings(&mut self) -> BackfillSettings {
        self.settings.borrow_and_update().clone()
    }

    pub fn paused_by(&mut self) -> Option<String> {
        self.paused.borrow_and_update().clone()
    }

    pub fn manual_throttle(&mut self) -> Option<String> {
        self.manual_throttle.borrow_and_update().clone()
    }

    pub fn stop_requested(&mut self) -> Option<String> {
        self.stop
            .borrow_and_update()
            .as_ref()
            .map(|StopRequest::Stop { why }| why.clone())
    }

    /// Sleeps for `for_at_most`, waking early when anything is changed.
    pub async fn sleep(&mut self, for_at_most: std::time::Duration) {
        tokio::select! {
            _ = tokio::time::sleep(for_at_most) => {}
            _ = self.settings.changed() => {}
            _ = self.paused.changed() => {}
            _ = self.manual_throttle.changed() => {}
            _ = self.stop.changed() => {}
        }
    }
}
