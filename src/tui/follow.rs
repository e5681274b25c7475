//! Following runs: what the console does with a run's updates (spawned, found, attached,
//! its protocol `Event`s, the replies to its commands). The Backfill pane, the badges'
//! paused / throttled words, the manual throttle and (while a run streams its metrics)
//! the Health pane all come from here, from the run's own figures: the console computes
//! no rate or ETA of its own, and shows the numbers the run's throttle acts on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::app::{BackfillView, GateRow, Level, MigrationState, Pane};
use super::backend;
use super::event_loop::Console;
use super::runs::{Purpose, RunUpdate};
use crate::format;
use crate::protocol::{
    phase_name, Command, Event, Phase, Reply, RunState, RunStatus, Stamped, Status, Verdict,
};
use crate::settings::{Setting, SettingKey};

/// Batches are logged at most this often (the Backfill pane shows every one).
const BATCH_LOG_EVERY: Duration = Duration::from_secs(10);

/// One run the console follows over its control socket.
#[derive(Debug, Clone)]
pub struct Followed {
    pub socket: PathBuf,
    /// Known once attached (or from discovery / the spawn before that).
    pub migration: String,
    pub pid: u32,
    /// Started by this console (its runner's log is known once it serves).
    pub own: bool,
    /// The runner's log file, when this console started it.
    pub log: Option<PathBuf>,
    /// The event stream is open.
    pub attached: bool,
    /// Events read from the stream (a stream that closes before any was read belonged
    /// to a run that was ending as the console found it).
    pub events: u64,
    /// The run said it is done (`Finished`): its stream closing is expected.
    pub finished: bool,
    /// The phase of the step running now.
    pub phase: Option<Phase>,
    /// The backfill's state in the run's last progress.
    pub state: Option<RunState>,
    /// The run streams its monitor's samples: the Health pane shows those while it is live.
    pub metrics: bool,
    last_batch_log: Option<Instant>,
}

impl Followed {
    pub fn new(socket: PathBuf, migration: String, pid: u32) -> Self {
        Followed {
            socket,
            migration,
            pid,
            own: false,
            log: None,
            attached: false,
            events: 0,
            finished: false,
            phase: None,
            state: None,
            metrics: false,
            last_batch_log: None,
        }
    }

    /// Attached and not finished: it holds the run lock and works.
    pub fn is_live(&self) -> bool {
        self.attached && !self.finished
    }

    /// Live and in its backfill: the run p, t and + / - steer.
    pub fn is_backfilling(&self) -> bool {
        self.is_live() && self.phase == Some(Phase::Backfill)
    }

    /// "its log /…/runs/m.….log", or where detached runners write theirs when this console
    /// did not start it (a run started in a terminal wrote to that terminal).
    fn log_words(&self) -> String {
        match &self.log {
            Some(log) => format!("its log {}", log.display()),
            None => {
                let zdm_log = crate::logging::default_log_file();
                match zdm_log.parent() {
                    Some(dir) => format!(
                        "its log (detached runners write theirs in {})",
                        dir.join("runs").display()
                    ),
                    None => "its log".to_string(),
                }
            }
        }
    }
}

/// Whether the Health pane shows a followed run's own metrics (a live run streams them)
/// rather than the console's sampler.
pub fn run_feeds_health(followed: &[Followed]) -> bool {
    followed.iter().any(|run| run.metrics && run.is_live())
}

/// The badge of a backfilling migration whose backfill is in `state`.
pub fn backfill_badge(state: Option<RunState>) -> MigrationState {
    match state {
        Some(RunState::Paused) => MigrationState::Paused,
        Some(RunState::Throttled) => MigrationState::Throttled,
        Some(RunState::Running) | None => MigrationState::Backfilling,
    }
}

impl Console {
    pub(super) fn on_run(&mut self, update: RunUpdate) {
        match update {
            RunUpdate::Spawned {
                job,
                migration,
                detached,
            } => {
                self.spawning = None;
                if self.cancel_when_served.as_deref() == Some(migration.as_str()) {
                    // Its contract dialog was closed while it started.
                    self.cancel_when_served = None;
                    self.runs.send(
                        detached.socket.clone(),
                        Command::Abort,
                        Purpose::Key(Command::Abort),
                    );
                }
                self.log(
                    Level::Info,
                    format!(
                        "{job} of {migration}: runner process {} started (log {})",
                        detached.pid,
                        detached.log.display()
                    ),
                );
                match self.followed_mut(&detached.socket) {
                    Some(run) => {
                        // Being attached to since the spawn began (see `Runs::spawn`).
                        run.log = Some(detached.log.clone());
                        run.pid = detached.pid;
                    }
                    None => {
                        let mut run =
                            Followed::new(detached.socket.clone(), migration, detached.pid);
                        run.own = true;
                        run.log = Some(detached.log.clone());
                        self.followed.push(run);
                        self.runs.attach(detached.socket);
                    }
                }
                self.backend.refresh();
            }
            RunUpdate::EndedEarly {
                job,
                migration,
                log,
                tail,
            } => {
                self.spawning = None;
                self.followed
                    .retain(|run| !(run.own && !run.attached && run.migration == migration));
                // Followed after all (the console attached before the spawn saw the
                // socket): its stream tells, or told, how it ended.
                let followed = self
                    .followed
                    .iter()
                    .any(|run| run.attached && run.migration == migration);
                if self.finish_shown.remove(&migration) || followed {
                    self.backend.refresh();
                    return;
                }
                // Its own last words say what it did (`rollback of … done`).
                let last = tail
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default();
                self.log(
                    Level::Info,
                    format!(
                        "{job} of {migration} finished before the console could follow it \
                         (its runner exited with success){last}; its log {}",
                        log.display()
                    ),
                );
                self.app.notice = Some(format!("{job} of {migration} succeeded"));
                self.backend.refresh();
            }
            RunUpdate::SpawnFailed {
                job,
                migration,
                error,
            } => {
                self.spawning = None;
                // The placeholder followed while it started, unless it found a run.
                self.followed
                    .retain(|run| !(run.own && !run.attached && run.migration == migration));
                self.log(
                    Level::Error,
                    format!("{job} of {migration} did not start: {error}"),
                );
                self.app
                    .contract_run_ended(&migration, "its runner did not start (see the log)");
                self.app.notice = Some(format!("{job} of {migration} failed: see the log"));
                self.backend.refresh();
            }
            RunUpdate::Discovered(found) => {
                self.discovering = false;
                for run in found {
                    let known = self.followed.iter().any(|f| f.socket == run.path)
                        || self.ended.contains(&(run.path.clone(), run.info.pid));
                    if !known {
                        self.followed.push(Followed::new(
                            run.path.clone(),
                            run.info.migration.clone(),
                            run.info.pid,
                        ));
                        self.runs.attach(run.path);
                    }
                }
            }
            RunUpdate::Attached { socket, info } => {
                self.attach_failures.remove(&socket);
                let Some(run) = self.followed_mut(&socket) else {
                    return;
                };
                run.attached = true;
                run.migration = info.migration.clone();
                run.pid = info.pid;
                if run.log.is_none() {
                    run.log = info.log.clone();
                }
                self.log(Level::Info, format!("attached to {}", info.describe()));
                // Where it stands now (paused? manual throttle? which target?).
                self.runs.send(socket, Command::Status, Purpose::Status);
                self.after_run_change();
            }
            RunUpdate::AttachFailed { socket, error } => {
                let Some(index) = self.followed.iter().position(|f| f.socket == socket) else {
                    return;
                };
                let run = self.followed.remove(index);
                if run.own {
                    // Started by this console: it may have ended before the attach. The
                    // status read tells how it ended; its log tells the rest.
                    self.log(
                        Level::Warning,
                        format!(
                            "{} (runner pid {}): the console could not follow it ({error}); \
                             see {}",
                            run.migration,
                            run.pid,
                            run.log_words()
                        ),
                    );
                    self.backend.refresh();
                } else if self.attach_failures.insert(socket) {
                    self.log(
                        Level::Warning,
                        format!("cannot follow the run of {}: {error}", run.migration),
                    );
                }
            }
            RunUpdate::Event { socket, event } => self.on_run_event(&socket, event),
            RunUpdate::Unreadable { socket, line } => {
                let name = self.followed_name(&socket);
                self.log(
                    Level::Warning,
                    format!("{name}: an event this zdm cannot read: {line}"),
                );
            }
            RunUpdate::StreamEnded { socket, error } => self.on_stream_end(&socket, error),
            RunUpdate::Replied {
                socket,
                purpose,
                reply,
            } => self.on_reply(&socket, purpose, reply),
        }
    }

    fn followed_mut(&mut self, socket: &Path) -> Option<&mut Followed> {
        self.followed.iter_mut().find(|run| run.socket == socket)
    }

    fn followed_name(&self, socket: &Path) -> String {
        self.followed
            .iter()
            .find(|run| run.socket == socket)
            .map_or_else(|| "a run".to_string(), |run| run.migration.clone())
    }

    /// Whether p, t, + / - have something to steer; redraw.
    fn after_run_change(&mut self) {
        self.app.following = self.live_run().map(|run| run.migration.clone());
        self.app.live_control = self.followed.iter().any(Followed::is_backfilling);
        self.dirty = true;
        self.start_waiting_contract();
    }

    /// Shows `migration` with `state` at once (the next status read confirms it).
    fn set_row_state(&mut self, migration: &str, state: MigrationState) {
        if let Some(row) = self.app.migrations.iter_mut().find(|m| m.name == migration) {
            row.state = state;
            row.stopped = false;
        }
        self.dirty = true;
    }

    fn on_stream_end(&mut self, socket: &Path, error: Option<String>) {
        let Some(index) = self.followed.iter().position(|f| f.socket == socket) else {
            return;
        };
        let run = self.followed.remove(index);
        self.ended.insert((run.socket.clone(), run.pid));
        self.app
            .contract_run_ended(&run.migration, "its run ended first (see the log)");
        if !run.finished {
            if run.events == 0 && error.is_none() {
                // Found as it was ending: its last events went to the clients it had. The
                // status read tells how it ended.
                self.log(
                    Level::Info,
                    format!(
                        "the run of {} ended (pid {}; see {})",
                        run.migration,
                        run.pid,
                        run.log_words()
                    ),
                );
            } else {
                let how = error.map_or_else(String::new, |e| format!(" ({e})"));
                self.log(
                    Level::Error,
                    format!(
                        "the runner of {} (pid {}) ended without finishing{how}: it died or \
                         was killed. See {}; `zdm start {}` resumes an expand or backfill.",
                        run.migration,
                        run.pid,
                        run.log_words(),
                        run.migration
                    ),
                );
                self.app.notice = Some(format!("the run of {} died: see the log", run.migration));
            }
        }
        if self
            .app
            .backfill
            .as_ref()
            .is_some_and(|view| !view.finished)
            && run.phase == Some(Phase::Backfill)
        {
            // No more figures will come: the pane stops claiming a live rate.
            if let Some(view) = &mut self.app.backfill {
                view.rows_per_second_now = 0.0;
                view.eta = None;
            }
        }
        if self
            .quitting
            .as_ref()
            .is_some_and(|q| q.purpose == Purpose::StopAndQuit && q.socket == run.socket)
        {
            self.quitting = None;
            // Only the demo stops a run to quit, and its servers go with it: nothing to
            // resume, so no command to suggest.
            self.farewell = Some(format!(
                "{} stopped after its last committed batch. The demo's servers stop now and \
                 their data is removed with them; `zdm demo` starts afresh.",
                run.migration
            ));
            self.quit = true;
        }
        self.after_run_change();
        self.backend.refresh();
    }

    fn on_reply(&mut self, socket: &Path, purpose: Purpose, reply: Result<Reply, String>) {
        let name = self.followed_name(socket);
        match purpose {
            Purpose::Status => {
                if let Ok(Reply::Status(status)) = reply {
                    self.apply_run_status(socket, &status);
                }
            }
            Purpose::Key(command) => {
                let word = command.name().replace('_', " ");
                match reply {
                    Ok(Reply::Error(why)) | Err(why) => {
                        if matches!(command, Command::Throttle | Command::NoThrottle) {
                            // The optimistic toggle did not happen.
                            self.app.manual_throttle = command != Command::Throttle;
                        }
                        self.refuse(format!("{word} refused by {name}: {why}"));
                    }
                    Ok(reply) => {
                        if matches!(command, Command::Throttle | Command::NoThrottle) {
                            self.app.manual_throttle = command == Command::Throttle;
                        }
                        let text = match &reply {
                            Reply::Done { message } if !message.is_empty() => message.clone(),
                            Reply::Value(setting) => {
                                self.apply_setting(setting);
                                format!("{setting} in force")
                            }
                            _ => "done".to_string(),
                        };
                        self.app.notice = Some(format!("{name}: {text}"));
                        self.log(Level::Info, format!("{word} ({name}): {text}"));
                    }
                }
                // The run's own view corrects what the key assumed.
                self.runs
                    .send(socket.to_path_buf(), Command::Status, Purpose::Status);
            }
            Purpose::PauseAndQuit => {
                let Some(quitting) = self.quitting.take() else {
                    return;
                };
                let pid = self
                    .followed
                    .iter()
                    .find(|run| run.socket == quitting.socket)
                    .map_or(String::new(), |run| format!(" (runner pid {})", run.pid));
                self.farewell = Some(match reply {
                    Ok(Reply::Error(why)) | Err(why) => format!(
                        "{name} could not be paused ({why}): it goes on in its runner{pid}.\n\
                         `zdm ctl pause` pauses it; `zdm attach {name}` follows it."
                    ),
                    Ok(reply) => {
                        let said = match reply {
                            Reply::Done { message } if !message.is_empty() => {
                                format!(" ({message})")
                            }
                            _ => String::new(),
                        };
                        format!(
                            "{name} is paused, holding its place in its runner{pid}{said}.\n\
                             Resume it by reopening the console and pressing p, or with \
                             `zdm ctl resume`; `zdm attach {name}` follows it."
                        )
                    }
                });
                self.quit = true;
            }
            Purpose::Confirm(migration) => {
                let refused = match reply {
                    Ok(Reply::Error(why)) | Err(why) => Some(why),
                    Ok(_) => None,
                };
                if refused.is_none() {
                    self.log(
                        Level::Info,
                        format!("contract of {migration} confirmed by name"),
                    );
                }
                self.app.contract_answered(&migration, refused);
                self.dirty = true;
            }
            Purpose::StopAndQuit => {
                if let Ok(Reply::Error(why)) | Err(why) = reply {
                    self.quitting = None;
                    self.farewell = Some(format!("{name} could not be stopped: {why}."));
                    self.quit = true;
                } else {
                    // Stopping after its batch: the stream's end quits the console.
                    self.app.notice = Some(format!("{name} stops after its current batch…"));
                    self.dirty = true;
                }
            }
        }
    }

    /// What a status reply says: paused, manual throttle, the backfill's figures.
    fn apply_run_status(&mut self, socket: &Path, status: &RunStatus) {
        let phase = status.status.and_then(Status::running_phase);
        let state = if status.paused {
            Some(RunState::Paused)
        } else {
            status.progress.as_ref().map(|progress| progress.state)
        };
        let Some(run) = self.followed_mut(socket) else {
            return;
        };
        if !run.is_live() {
            return;
        }
        if phase.is_some() {
            run.phase = phase;
        }
        if phase == Some(Phase::Backfill) {
            run.state = state;
        }
        let migration = run.migration.clone();
        self.app.manual_throttle = status.manual_throttle;
        if let Some(progress) = &status.progress {
            // The run's last progress, kept for status: shown unless an event already
            // brought newer figures.
            let newer = self.app.backfill.as_ref().is_none_or(|view| {
                view.table != progress.table || progress.rows_done > view.rows_done
            });
            if newer {
                self.show_backfill(BackfillView::from_progress(progress));
            }
        }
        if let Some(view) = &mut self.app.backfill {
            // The settings in force, not those of the last progress (a `set` since).
            if let Some(Setting::BatchTarget(target)) = status.setting(SettingKey::BatchTarget) {
                view.batch_target = Some(*target);
            }
            if phase == Some(Phase::Backfill) && !view.finished {
                view.paused = status.paused;
            }
        }
        if phase == Some(Phase::Backfill) {
            self.set_row_state(&migration, backfill_badge(state));
        }
        self.after_run_change();
    }

    /// A setting the run holds now: the batch target shows in the Backfill pane.
    fn apply_setting(&mut self, setting: &Setting) {
        if let (Setting::BatchTarget(target), Some(view)) = (setting, &mut self.app.backfill) {
            view.batch_target = Some(*target);
            self.dirty = true;
        }
    }

    /// Changes the followed run at `socket`, if it is still followed.
    fn update_run(&mut self, socket: &Path, change: impl FnOnce(&mut Followed)) {
        if let Some(run) = self.followed_mut(socket) {
            change(run);
        }
    }

    fn on_run_event(&mut self, socket: &Path, stamped: Stamped) {
        let Some(run) = self.followed_mut(socket) else {
            return;
        };
        run.events += 1;
        let migration = run.migration.clone();
        match stamped.event {
            Event::Progress(progress) => {
                self.update_run(socket, |run| {
                    run.phase = Some(Phase::Backfill);
                    run.state = Some(progress.state);
                });
                let view = BackfillView::from_progress(&progress);
                if self.app.backfill.as_ref() != Some(&view) {
                    self.show_backfill(view);
                }
                self.set_row_state(&migration, backfill_badge(Some(progress.state)));
            }
            Event::BatchDone(batch) => {
                let mut due = false;
                self.update_run(socket, |run| {
                    due = run
                        .last_batch_log
                        .is_none_or(|at| at.elapsed() >= BATCH_LOG_EVERY);
                    if due {
                        run.last_batch_log = Some(Instant::now());
                    }
                });
                if due {
                    self.log(
                        Level::Info,
                        format!(
                            "backfill: {} rows updated in {} batches",
                            format::thousands(batch.rows_done),
                            format::thousands(batch.batch)
                        ),
                    );
                }
            }
            Event::ThrottleOn { reason } => {
                self.update_run(socket, |run| run.state = Some(RunState::Throttled));
                self.set_row_state(&migration, MigrationState::Throttled);
                self.log(Level::Warning, format!("{migration}: throttled: {reason}"));
                // Was it the operator's throttle (here or `zdm ctl throttle`)? Ask.
                self.runs
                    .send(socket.to_path_buf(), Command::Status, Purpose::Status);
            }
            Event::ThrottleOff {
                reason,
                throttled_for,
            } => {
                self.update_run(socket, |run| run.state = Some(RunState::Running));
                if let Some(view) = &mut self.app.backfill {
                    view.throttle_reason = None;
                }
                self.set_row_state(&migration, MigrationState::Backfilling);
                self.log(
                    Level::Info,
                    format!(
                        "{migration}: throttle released after {}: {reason}",
                        format::duration(throttled_for)
                    ),
                );
                self.runs
                    .send(socket.to_path_buf(), Command::Status, Purpose::Status);
            }
            Event::Paused { reason } => {
                self.update_run(socket, |run| run.state = Some(RunState::Paused));
                if let Some(view) = &mut self.app.backfill {
                    view.paused = true;
                }
                self.set_row_state(&migration, MigrationState::Paused);
                self.log(Level::Warning, format!("{migration}: paused: {reason}"));
            }
            Event::Resumed { paused_for } => {
                self.update_run(socket, |run| run.state = Some(RunState::Running));
                if let Some(view) = &mut self.app.backfill {
                    view.paused = false;
                }
                self.set_row_state(&migration, MigrationState::Backfilling);
                self.log(
                    Level::Info,
                    format!(
                        "{migration}: resumed after {} paused",
                        format::duration(paused_for)
                    ),
                );
            }
            Event::StepStarted {
                phase,
                index,
                total,
                description,
                ..
            } => {
                self.update_run(socket, |run| {
                    run.phase = Some(phase);
                    run.state = None;
                });
                self.log(
                    Level::Info,
                    format!(
                        "{migration}: {} {}/{total}: {description}",
                        phase_name(phase),
                        index + 1
                    ),
                );
                let state = match phase {
                    Phase::Expand => MigrationState::Expanding,
                    Phase::Backfill => MigrationState::Backfilling,
                    Phase::Contract => MigrationState::Contracting,
                    Phase::Rollback => MigrationState::RollingBack,
                };
                self.set_row_state(&migration, state);
                // A finished backfill's figures stay until the next one's first progress
                // (a backfill phase also has steps that are not batched: validations).
                if let Some((plan, current)) = self.plans.get_mut(&migration) {
                    *current = backend::step_index(plan, phase, index);
                }
                if self.selected_name().as_deref() == Some(migration.as_str()) {
                    self.app.plan = self.plans.get(&migration).cloned();
                }
            }
            Event::StepFinished { phase, .. } => {
                if phase == Phase::Backfill {
                    self.update_run(socket, |run| run.state = None);
                    self.finish_backfill_view();
                }
            }
            Event::GatesObserving(observing) => {
                self.app.set_gates_observing(&observing);
                self.dirty = true;
            }
            Event::AwaitingConfirmation { migration, .. } => {
                self.app.set_awaiting_confirmation(&migration);
                self.dirty = true;
            }
            Event::GatesEvaluated(report) => {
                let rows = report.gates.iter().map(GateRow::from).collect();
                self.app.set_gates_of(&report.migration, rows);
                let verdicts: Vec<String> = report
                    .gates
                    .iter()
                    .map(|gate| format!("{} {}", gate.name, gate.verdict))
                    .collect();
                let passed = report.gates.iter().all(|g| g.verdict == Verdict::Pass);
                self.log(
                    if passed { Level::Info } else { Level::Warning },
                    format!(
                        "{}: contract gates evaluated: {}",
                        report.migration,
                        verdicts.join(", ")
                    ),
                );
            }
            Event::SettingChanged(setting) => {
                self.apply_setting(&setting);
                self.log(
                    Level::Info,
                    format!("{migration}: setting changed: {setting}"),
                );
            }
            Event::Metrics(metrics) => {
                let live = self.followed_mut(socket).is_some_and(|run| {
                    run.metrics = true;
                    run.is_live()
                });
                if live {
                    self.on_run_metrics(socket, &metrics);
                }
            }
            Event::Log { level, text } => match level {
                Level::Debug => tracing::debug!("{migration}: {text}"),
                level => self.log(level, text),
            },
            Event::LockWait { .. } | Event::Unreachable { .. } | Event::BackfillStopped { .. } => {
                // The words are the event's own, without the "warning: " a terminal shows.
                let text = stamped.event.describe();
                let text = text.strip_prefix("warning: ").unwrap_or(&text).to_string();
                self.log(Level::Warning, text);
            }
            Event::CriticalLevel { step, reason } => self.log(
                Level::Error,
                format!(
                    "{migration}: {step}: critical level reached, the backfill is paused until \
                     an operator resumes it: {reason}"
                ),
            ),
            Event::Error { message } => self.log(Level::Error, format!("{migration}: {message}")),
            Event::StatusChanged { migration, status } => {
                self.set_row_state(&migration, backend::state_of(status));
                self.log(Level::Info, format!("{migration}: now {status}"));
                self.backend.refresh();
            }
            Event::Missed { count } => self.log(
                Level::Warning,
                format!(
                    "{migration}: {} events missed (the console read too slowly)",
                    format::thousands(count)
                ),
            ),
            Event::Finished {
                command,
                migration,
                ok,
                message,
            } => {
                self.update_run(socket, |run| {
                    run.finished = true;
                    run.state = None;
                });
                self.finish_shown.insert(migration.clone());
                // The console's word for `zdm complete` is the phase's: contract.
                let command = match command.as_str() {
                    "complete" => "contract".to_string(),
                    _ => command,
                };
                if ok {
                    self.log(Level::Info, format!("{command}: {message}"));
                } else {
                    self.log(Level::Error, format!("{command} of {migration}: {message}"));
                    self.app.notice = Some(format!("{command} of {migration} failed: see the log"));
                }
                self.backend.refresh();
            }
        }
        self.after_run_change();
    }

    /// Shows a backfill's figures; a backfill appearing brings its pane (and the health
    /// beside it) into view unless the operator is reading the plan or the log.
    fn show_backfill(&mut self, view: BackfillView) {
        // A late report (a status reply) of a backfill already finished changes nothing.
        if self.app.backfill.as_ref().is_some_and(|shown| {
            shown.finished && shown.table == view.table && view.rows_done <= shown.rows_done
        }) {
            return;
        }
        let appears = self
            .app
            .backfill
            .as_ref()
            .is_none_or(|shown| shown.table != view.table || shown.finished);
        if appears && self.app.focus == Pane::Migrations {
            self.app.detail = Pane::Backfill;
        }
        self.app.backfill = Some(view);
    }

    /// The backfill finished: every row that needed it is done.
    fn finish_backfill_view(&mut self) {
        let Some(view) = self.app.backfill.as_mut().filter(|view| !view.finished) else {
            // A step of the backfill phase that is not batched (a validation) ended.
            return;
        };
        view.rows_total = view.rows_done;
        view.eta = None;
        view.rows_per_second_now = 0.0;
        view.paused = false;
        view.throttle_reason = None;
        view.finished = true;
        let text = format!(
            "backfill of {} finished: {} rows updated",
            view.table,
            format::thousands(view.rows_done)
        );
        self.log(Level::Info, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_follow_the_backfill_state_and_status_keys() {
        assert_eq!(
            backfill_badge(Some(RunState::Paused)),
            MigrationState::Paused
        );
        assert_eq!(
            backfill_badge(Some(RunState::Throttled)),
            MigrationState::Throttled
        );
        assert_eq!(backfill_badge(None), MigrationState::Backfilling);
    }

    #[test]
    fn the_health_pane_follows_a_live_run_that_streams_its_metrics() {
        let mut run = Followed::new(PathBuf::from("/tmp/x.sock"), "m".to_string(), 42);
        run.attached = true;
        assert!(
            !run_feeds_health(std::slice::from_ref(&run)),
            "no sample yet"
        );
        run.metrics = true;
        assert!(run_feeds_health(std::slice::from_ref(&run)));
        run.finished = true;
        assert!(
            !run_feeds_health(std::slice::from_ref(&run)),
            "a finished run's figures give way to the console's own sampler"
        );
        assert!(!run_feeds_health(&[]));
    }

    #[test]
    fn only_an_attached_unfinished_run_in_its_backfill_is_steered() {
        let mut run = Followed::new(PathBuf::from("/tmp/x.sock"), "m".to_string(), 42);
        assert!(!run.is_live(), "not attached yet");
        run.attached = true;
        assert!(run.is_live());
        assert!(!run.is_backfilling(), "no step known yet");
        run.phase = Some(Phase::Backfill);
        assert!(run.is_backfilling());
        run.finished = true;
        assert!(!run.is_live() && !run.is_backfilling());
        assert!(run.log_words().contains("runs"), "{}", run.log_words());
        run.log = Some(PathBuf::from("/var/log/m.log"));
        assert_eq!(run.log_words(), "its log /var/log/m.log");
    }
}
