//! The console's one state: what is shown, what is selected, which dialog is open, and
//! the key handling that turns keystrokes into [`Action`]s for the engine.
//!
//! Nothing here touches the database or a socket: actions are returned to the event loop,
//! which sends them on; a run's events and the metrics come back as updates to this state.

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_input::backend::crossterm::EventHandler;
use tui_input::Input;

use super::health::HealthView;
use super::keymap::Hint;
use crate::plan::Plan;
use crate::protocol::{GateReport, Observing, Progress, RunState};
/// Severity of a log line, and a gate's verdict: the protocol's.
pub use crate::protocol::{Level, Verdict};

/// The most log lines kept; older ones are dropped first.
const LOG_CAPACITY: usize = 5_000;

/// Where a migration is, as the operator sees it (a badge with a word, never colour alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    Pending,
    Expanding,
    Backfilling,
    Paused,
    Throttled,
    ReadyToContract,
    Contracting,
    Complete,
    RollingBack,
    RolledBack,
    Failed,
}

impl MigrationState {
    /// The badge's word.
    pub fn label(self) -> &'static str {
        match self {
            MigrationState::Pending => "pending",
            MigrationState::Expanding => "expanding",
            MigrationState::Backfilling => "backfilling",
            MigrationState::Paused => "paused",
            MigrationState::Throttled => "throttled",
            MigrationState::ReadyToContract => "ready to contract",
            MigrationState::Contracting => "contracting",
            MigrationState::Complete => "complete",
            MigrationState::RollingBack => "rolling back",
            MigrationState::RolledBack => "rolled back",
            MigrationState::Failed => "FAILED",
        }
    }

    /// Whether the engine is working on it right now (quitting asks first).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            MigrationState::Expanding
                | MigrationState::Backfilling
                | MigrationState::Paused
                | MigrationState::Throttled
                | MigrationState::Contracting
                | MigrationState::RollingBack
        )
    }

    /// Rollback undoes expand and backfill; once contract has begun there is no way back.
    pub fn can_roll_back(self) -> bool {
        matches!(
            self,
            MigrationState::Expanding
                | MigrationState::Backfilling
                | MigrationState::Paused
                | MigrationState::Throttled
                | MigrationState::ReadyToContract
                | MigrationState::Failed
        )
    }
}

/// One line of the migrations list.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRow {
    pub name: String,
    pub description: Option<String>,
    pub state: MigrationState,
    /// The file changed after it ran: zdm refuses to run it.
    pub checksum_mismatch: bool,
    /// Recorded as in progress, but no zdm holds the run lock: it was stopped (a killed
    /// run, a quit) and waits to be resumed.
    pub stopped: bool,
    /// Why `s` would not start or resume it, in the words of `zdm start`
    /// ([`crate::ledger::Ledger::may_start`]); `None`: `s` starts or resumes it.
    pub start_refusal: Option<String>,
}

impl MigrationRow {
    /// Whether a zdm works on it right now.
    pub fn is_running(&self) -> bool {
        self.state.is_running() && !self.stopped
    }

    /// Whether `s` would start or resume it: what `zdm start` would do.
    pub fn can_start(&self) -> bool {
        self.start_refusal.is_none()
    }

    /// The badge's word: a stopped run says so before what it was doing.
    pub fn badge(&self) -> String {
        if self.stopped {
            format!("stopped: {}", self.state.label())
        } else {
            self.state.label().to_string()
        }
    }
}

/// The backfill of the running migration, as its runner last reported it (`Progress`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillView {
    pub table: String,
    pub rows_done: u64,
    /// Estimated from statistics, refined as the backfill goes.
    pub rows_total: u64,
    pub rows_per_second_now: f64,
    pub rows_per_second_average: f64,
    /// Shown only once it means something.
    pub eta: Option<Duration>,
    pub batch_size: u64,
    pub last_batch: Duration,
    /// The batch time the backfill aims for; `None` when batches have a fixed size.
    pub batch_target: Option<Duration>,
    /// Why the backfill is held back right now, in words; `None` when it is not.
    pub throttle_reason: Option<String>,
    pub paused: bool,
    /// Every row that needed it is done.
    pub finished: bool,
    /// This run's time running, held by the throttle and paused (apart: the rates and
    /// the ETA count running time only).
    pub time_running: Duration,
    pub time_throttled: Duration,
    pub time_paused: Duration,
}

impl BackfillView {
    /// The pane's figures from the runner's own: the one source of rates, ETA and state.
    pub fn from_progress(progress: &Progress) -> Self {
        BackfillView {
            table: progress.table.clone(),
            rows_done: progress.rows_done,
            // Estimates run short: the gauge never goes past what is done.
            rows_total: progress
                .rows_total_estimate
                .unwrap_or(0)
                .max(progress.rows_done),
            rows_per_second_now: progress.rows_per_second_now,
            rows_per_second_average: progress.rows_per_second_average,
            eta: progress.eta,
            batch_size: progress.batch_size,
            last_batch: progress.last_batch.unwrap_or(Duration::ZERO),
            batch_target: Some(progress.batch_target),
            throttle_reason: match progress.state {
                RunState::Throttled => Some(
                    progress
                        .reason
                        .clone()
                        .unwrap_or_else(|| "held back".to_string()),
                ),
                RunState::Running | RunState::Paused => None,
            },
            paused: progress.state == RunState::Paused,
            finished: false,
            time_running: progress.time_running,
            time_throttled: progress.time_throttled,
            time_paused: progress.time_paused,
        }
    }
}

/// A gate as the contract dialog lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    pub name: String,
    pub result: Verdict,
    pub evidence: String,
}

impl From<&GateReport> for GateRow {
    fn from(report: &GateReport) -> Self {
        GateRow {
            name: report.name.clone(),
            result: report.verdict,
            evidence: report.evidence.join("\n"),
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Wall-clock time, already formatted (`23:41:07`).
    pub at: String,
    pub level: Level,
    pub text: String,
}

/// How the console's connection to the target is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Connected,
    /// The database answered with an error (refused the connection, say): why.
    Failed(String),
    /// No answer for this long: shown prominently, the console keeps answering keys.
    NotResponding(Duration),
}

/// The panes a person can focus with Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Migrations,
    Plan,
    Backfill,
    Health,
    Log,
}

impl Pane {
    const ORDER: [Pane; 5] = [
        Pane::Migrations,
        Pane::Plan,
        Pane::Backfill,
        Pane::Health,
        Pane::Log,
    ];

    fn next(self) -> Pane {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    fn previous(self) -> Pane {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + Self::ORDER.len() - 1) % Self::ORDER.len()]
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Migrations => "Migrations",
            Pane::Plan => "Plan",
            Pane::Backfill => "Backfill",
            Pane::Health => "Health",
            Pane::Log => "Log",
        }
    }
}

/// The contract confirmation, talking to the run that will contract (`zdm complete
/// --await-confirmation`, started when the dialog opens): the gates' countdown and each
/// verdict as it settles, then the migration's name typed, then (only when a gate did not
/// pass) the word `override` typed as a second confirmation, sent to that run.
#[derive(Debug, Clone)]
pub struct ContractDialog {
    pub migration: String,
    /// The gates that have judged so far (all of them once the window closed).
    pub gates: Vec<GateRow>,
    /// The gates still watching the database.
    pub watching: Vec<String>,
    /// The window's time left and its length, once the run reported it.
    pub countdown: Option<(Duration, Duration)>,
    /// The run waits for the confirmation (the gates have judged).
    pub awaiting: bool,
    /// The confirmation went to the run: its answer is awaited.
    pub sent: bool,
    pub input: Input,
    /// True once the name matched and the failing gates need an explicit override.
    pub overriding: bool,
    pub error: Option<String>,
    /// The first gate shown when the list is taller than the screen (↑ / ↓ scroll it).
    pub gate_scroll: usize,
}

impl ContractDialog {
    fn new(migration: String) -> Self {
        ContractDialog {
            migration,
            gates: Vec::new(),
            watching: Vec::new(),
            countdown: None,
            awaiting: false,
            sent: false,
            input: Input::default(),
            overriding: false,
            error: None,
            gate_scroll: 0,
        }
    }

    /// The gates that did not pass (failed or unknown): each blocks contract unless overridden.
    pub fn blocking_gates(&self) -> Vec<String> {
        self.gates
            .iter()
            .filter(|gate| gate.result != Verdict::Pass)
            .map(|gate| gate.name.clone())
            .collect()
    }
}

/// A dialog over the panes; it gets every key first.
#[derive(Debug, Clone)]
pub enum Popup {
    Help,
    Contract(ContractDialog),
    /// Rollback of the named migration, confirmed with `y`.
    Rollback(String),
    /// Quitting while a migration runs: detach or pause first (in the demo: stop it).
    Quit,
    /// Editing the log filter.
    Filter(Input),
}

/// What the operator asked for; the event loop carries it to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Expand and backfill the named migration.
    Start(String),
    /// The contract dialog of the named migration opened: start the run that evaluates its
    /// safety gates and waits for the confirmation.
    PrepareContract(String),
    /// The contract dialog closed unconfirmed: cancel that run (nothing is contracted).
    CancelContract(String),
    /// The selection moved to the named migration: show its plan.
    ShowPlan(String),
    Pause,
    Resume,
    /// Multiply the backfill's batch time target by this factor.
    ScaleBatchTarget(f64),
    ThrottleOn,
    ThrottleOff,
    /// Run contract, confirmed by name; `overrides` names the gates the operator overrode.
    Contract {
        migration: String,
        overrides: Vec<String>,
    },
    Rollback(String),
    /// Leave the migration running in its runner process and quit the console.
    Detach,
    /// Pause the running migration (it holds its place in its runner), then quit.
    PauseAndQuit,
    /// Stop the running migration after its current batch (resumable), then quit: where it
    /// cannot go on without the console (`zdm demo` stops its servers).
    StopAndQuit,
    Quit,
}

/// A migration's last rehearsal as its file (`zdm rehearse` keeps it) says.
#[derive(Debug, Clone, PartialEq)]
pub enum LastRehearsal {
    /// Never rehearsed: the command that would.
    Never {
        command: String,
    },
    Found(Box<crate::synth::rehearsal::Rehearsal>),
    /// The file is there but cannot be read as a rehearsal.
    Unreadable(String),
}

impl LastRehearsal {
    /// What the file of `migration`'s last rehearsal in `migrations_dir` says.
    pub fn of(migrations_dir: &std::path::Path, migration: &str) -> Self {
        match crate::synth::rehearsal::last(migrations_dir, migration) {
            Ok(Some(rehearsal)) => LastRehearsal::Found(Box::new(rehearsal)),
            Ok(None) => LastRehearsal::Never {
                command: format!("zdm rehearse {migration}"),
            },
            Err(why) => LastRehearsal::Unreadable(why),
        }
    }
}

/// Everything the console shows.
#[derive(Debug, Clone)]
pub struct App {
    /// The target, password already redacted.
    pub target: String,
    pub connection: Connection,
    pub migrations: Vec<MigrationRow>,
    /// The migration files found while the database could not be read: their names, in
    /// order (the list shows them until it has their recorded state).
    pub files_without_state: Vec<String>,
    pub selected: usize,
    pub focus: Pane,
    /// The detail pane shown beside the list on a small screen.
    pub detail: Pane,
    /// The plan of the selected migration and the index of its current step.
    pub plan: Option<(Plan, Option<usize>)>,
    /// Why the selected migration has no plan to show (or that it is being planned).
    pub plan_problem: Option<String>,
    pub plan_scroll: usize,
    /// The selected migration's last rehearsal, shown beside its plan; None until looked
    /// for.
    pub rehearsal: Option<LastRehearsal>,
    pub backfill: Option<BackfillView>,
    /// The database's health as the monitor last saw it.
    pub health: Option<HealthView>,
    /// Whether the operator's manual throttle is on.
    pub manual_throttle: bool,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the newest.
    pub log_scroll: usize,
    pub log_filter: String,
    pub popup: Option<Popup>,
    /// Immediate feedback for the last keystroke ("pause requested").
    pub notice: Option<String>,
    /// The migration of the run this console follows over its control socket, while that
    /// run works: it is running whatever its recorded status says (a contract evaluating
    /// its gates is still recorded as ready to contract).
    pub following: Option<String>,
    /// Whether the console follows a run that is backfilling, which p, t and + / - steer
    /// over its control socket; without it the footer does not offer those keys.
    pub live_control: bool,
    /// Whether a running migration can go on without the console (its runner process is
    /// detached; `zdm attach` returns to it). False in `zdm demo`, whose servers stop with
    /// the console: there the quit dialog offers to stop the run instead.
    pub can_detach: bool,
}

impl App {
    /// An empty console for `target` (shown as given: redact it first).
    pub fn new(target: String) -> Self {
        App {
            target,
            connection: Connection::Connecting,
            migrations: Vec::new(),
            files_without_state: Vec::new(),
            selected: 0,
            focus: Pane::Migrations,
            detail: Pane::Plan,
            plan: None,
            plan_problem: None,
            plan_scroll: 0,
            rehearsal: None,
            backfill: None,
            health: None,
            manual_throttle: false,
            log: VecDeque::new(),
            log_scroll: 0,
            log_filter: String::new(),
            popup: None,
            notice: None,
            following: None,
            live_control: false,
            can_detach: false,
        }
    }

    /// The migration under the cursor.
    pub fn selected_migration(&self) -> Option<&MigrationRow> {
        self.migrations.get(self.selected)
    }

    /// The migration the engine is working on, if any.
    pub fn running_migration(&self) -> Option<&MigrationRow> {
        let followed = self
            .following
            .as_ref()
            .and_then(|name| self.migrations.iter().find(|m| &m.name == name));
        followed.or_else(|| self.migrations.iter().find(|m| m.is_running()))
    }

    /// Whether a footer hint applies now (the footer shows only keys that would do something).
    pub fn hint_applies(&self, hint: Hint) -> bool {
        let selected = self.selected_migration().map(|m| m.state);
        let running = self.running_migration().is_some();
        match hint {
            Hint::Help | Hint::Quit | Hint::Pane | Hint::Log => true,
            Hint::Start => {
                !running
                    && self
                        .selected_migration()
                        .is_some_and(MigrationRow::can_start)
            }
            Hint::Pause | Hint::Throttle => running && self.live_control,
            Hint::Target => running && self.live_control && self.backfill.is_some(),
            Hint::Contract => selected == Some(MigrationState::ReadyToContract),
            Hint::Rollback => selected.is_some_and(MigrationState::can_roll_back),
            Hint::Plan => self.focus == Pane::Migrations && selected.is_some(),
        }
    }

    /// A footer hint's word now: `p` says what it would do (pause, or resume a paused run).
    pub fn hint_label(&self, hint: Hint) -> &'static str {
        match hint {
            Hint::Pause if self.is_paused() => "resume",
            Hint::Pause => "pause",
            _ => hint.label(),
        }
    }

    /// Whether the running migration is paused.
    pub fn is_paused(&self) -> bool {
        self.running_migration()
            .is_some_and(|m| m.state == MigrationState::Paused)
            || self
                .backfill
                .as_ref()
                .is_some_and(|b| b.paused && !b.finished)
    }

    /// Appends to the log, dropping the oldest line past the capacity.
    pub fn push_log(&mut self, line: LogLine) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Log lines that match the filter (case-insensitive substring), oldest first.
    pub fn filtered_log(&self) -> impl Iterator<Item = &LogLine> {
        let filter = self.log_filter.to_lowercase();
        self.log
            .iter()
            .filter(move |line| filter.is_empty() || line.text.to_lowercase().contains(&filter))
    }

    /// Handles one terminal event; returns what the engine must be asked to do, if anything.
    pub fn handle_event(&mut self, event: &Event) -> Option<Action> {
        let Event::Key(key) = event else {
            return None;
        };
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            // Ctrl-C behaves like q: never a silent abandonment of a running migration.
            return self.request_quit();
        }
        match self.popup.take() {
            Some(popup) => self.handle_popup(popup, key, event),
            None => self.handle_global(key),
        }
    }

    fn handle_popup(&mut self, popup: Popup, key: &KeyEvent, event: &Event) -> Option<Action> {
        match popup {
            Popup::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Char('?') | KeyCode::Esc | KeyCode::Char('q')
                ) {
                    self.popup = Some(Popup::Help);
                }
                None
            }
            Popup::Quit => match key.code {
                KeyCode::Char('d') if self.can_detach => Some(Action::Detach),
                KeyCode::Char('p') if self.can_detach => Some(Action::PauseAndQuit),
                KeyCode::Char('s') if !self.can_detach => Some(Action::StopAndQuit),
                KeyCode::Esc | KeyCode::Char('n') => {
                    self.notice = Some("quit cancelled".into());
                    None
                }
                _ => {
                    self.popup = Some(Popup::Quit);
                    None
                }
            },
            Popup::Rollback(name) => match key.code {
                KeyCode::Char('y') => {
                    self.notice = Some(format!("rollback of {name} requested"));
                    Some(Action::Rollback(name))
                }
                KeyCode::Esc | KeyCode::Char('n') => {
                    self.notice = Some("rollback cancelled".into());
                    None
                }
                _ => {
                    self.popup = Some(Popup::Rollback(name));
                    None
                }
            },
            Popup::Filter(mut input) => match key.code {
                KeyCode::Enter => {
                    self.log_filter = input.value().trim().to_string();
                    self.log_scroll = 0;
                    None
                }
                KeyCode::Esc => {
                    self.log_filter.clear();
                    None
                }
                _ => {
                    input.handle_event(event);
                    self.popup = Some(Popup::Filter(input));
                    None
                }
            },
            Popup::Contract(dialog) => self.handle_contract(dialog, key, event),
        }
    }

    fn handle_contract(
        &mut self,
        mut dialog: ContractDialog,
        key: &KeyEvent,
        event: &Event,
    ) -> Option<Action> {
        match key.code {
            KeyCode::Esc => {
                self.notice = Some("contract cancelled: nothing was changed".into());
                Some(Action::CancelContract(dialog.migration))
            }
            KeyCode::Enter => {
                if dialog.sent {
                    self.popup = Some(Popup::Contract(dialog));
                    return None;
                }
                if !dialog.awaiting {
                    dialog.error = Some(match dialog.countdown {
                        Some((left, _)) if !left.is_zero() => format!(
                            "the safety gates are watching the database ({} s left): wait \
                             for them",
                            left.as_secs_f64().ceil() as u64
                        ),
                        _ => "the safety gates are still being checked: wait for them".into(),
                    });
                    self.popup = Some(Popup::Contract(dialog));
                    return None;
                }
                let typed = dialog.input.value().trim().to_string();
                let blocking = dialog.blocking_gates();
                if !dialog.overriding {
                    if typed != dialog.migration {
                        dialog.error = Some(format!(
                            "the name does not match: type {} exactly",
                            dialog.migration
                        ));
                        dialog.input.reset();
                        self.popup = Some(Popup::Contract(dialog));
                        return None;
                    }
                    if !blocking.is_empty() {
                        dialog.overriding = true;
                        dialog.error = None;
                        dialog.input.reset();
                        self.popup = Some(Popup::Contract(dialog));
                        return None;
                    }
                } else if typed != "override" {
                    dialog.error =
                        Some("type override to contract despite the gates, or Esc".into());
                    dialog.input.reset();
                    self.popup = Some(Popup::Contract(dialog));
                    return None;
                }
                dialog.sent = true;
                dialog.error = None;
                let action = Action::Contract {
                    migration: dialog.migration.clone(),
                    overrides: blocking,
                };
                self.popup = Some(Popup::Contract(dialog));
                Some(action)
            }
            // Arrows scroll the gates (letters belong to the name being typed).
            KeyCode::Up | KeyCode::Down => {
                let last = dialog.gates.len().saturating_sub(1);
                dialog.gate_scroll = if key.code == KeyCode::Up {
                    dialog.gate_scroll.saturating_sub(1)
                } else {
                    (dialog.gate_scroll + 1).min(last)
                };
                self.popup = Some(Popup::Contract(dialog));
                None
            }
            _ => {
                dialog.input.handle_event(event);
                dialog.error = None;
                self.popup = Some(Popup::Contract(dialog));
                None
            }
        }
    }

    fn handle_global(&mut self, key: &KeyEvent) -> Option<Action> {
        self.notice = None;
        match key.code {
            KeyCode::Char('q') => self.request_quit(),
            KeyCode::Char('?') => {
                self.popup = Some(Popup::Help);
                None
            }
            KeyCode::Tab => {
                self.focus = self.focus.next();
                self.show_focused_detail();
                None
            }
            KeyCode::BackTab => {
                self.focus = self.focus.previous();
                self.show_focused_detail();
                None
            }
            KeyCode::Char('j') | KeyCode::Down => self.move_cursor(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_cursor(-1),
            KeyCode::Enter => {
                if self.focus != Pane::Migrations {
                    return None;
                }
                let name = self.selected_migration()?.name.clone();
                self.detail = Pane::Plan;
                self.focus = Pane::Plan;
                Some(Action::ShowPlan(name))
            }
            KeyCode::Char('l') => {
                self.detail = Pane::Log;
                self.focus = Pane::Log;
                None
            }
            KeyCode::Char('/') => {
                self.detail = Pane::Log;
                self.focus = Pane::Log;
                self.popup = Some(Popup::Filter(Input::new(self.log_filter.clone())));
                None
            }
            KeyCode::Char('s') => self.start_selected(),
            KeyCode::Char('p') => self.toggle_pause(),
            KeyCode::Char('+') | KeyCode::Char('=') => self.scale_target(1.5, "raised"),
            KeyCode::Char('-') => self.scale_target(1.0 / 1.5, "lowered"),
            KeyCode::Char('t') => self.toggle_throttle(),
            KeyCode::Char('c') => self.open_contract(),
            KeyCode::Char('r') => {
                self.open_rollback();
                None
            }
            _ => None,
        }
    }

    fn show_focused_detail(&mut self) {
        if self.focus != Pane::Migrations {
            self.detail = self.focus;
        }
    }

    /// Moves the focused pane's cursor; a new selection asks for its plan.
    fn move_cursor(&mut self, delta: isize) -> Option<Action> {
        match self.focus {
            Pane::Migrations => {
                let last = self.migrations.len().saturating_sub(1);
                let before = self.selected;
                self.selected = self.selected.saturating_add_signed(delta).min(last);
                if self.selected != before {
                    self.plan_scroll = 0;
                    return self
                        .selected_migration()
                        .map(|m| Action::ShowPlan(m.name.clone()));
                }
            }
            Pane::Plan => self.plan_scroll = self.plan_scroll.saturating_add_signed(delta),
            // The log is read from the newest line: down goes towards it.
            Pane::Log => self.log_scroll = self.log_scroll.saturating_add_signed(-delta),
            Pane::Backfill | Pane::Health => {}
        }
        None
    }

    fn request_quit(&mut self) -> Option<Action> {
        if self.running_migration().is_some() {
            self.popup = Some(Popup::Quit);
            None
        } else {
            Some(Action::Quit)
        }
    }

    fn start_selected(&mut self) -> Option<Action> {
        let row = self.selected_migration()?.clone();
        if let Some(running) = self.running_migration() {
            self.notice = Some(format!(
                "{} is running: one migration at a time",
                running.name
            ));
            return None;
        }
        if row.checksum_mismatch {
            self.notice = Some(format!(
                "{} changed after it ran: refusing to start it",
                row.name
            ));
            return None;
        }
        if let Some(why) = &row.start_refusal {
            self.notice = Some(why.clone());
            return None;
        }
        let verb = match row.state {
            MigrationState::Pending => "start",
            MigrationState::RolledBack => "start over",
            _ => "resume",
        };
        self.notice = Some(format!("{verb} of {} requested", row.name));
        Some(Action::Start(row.name))
    }

    /// Refuses a live-control key when no followed backfill runs, saying why.
    fn no_live_control(&mut self, what: &str) -> bool {
        if self.live_control {
            return false;
        }
        self.notice = Some(match self.running_migration() {
            Some(running) => format!(
                "{what} steers a backfill: {} is {}",
                running.name,
                running.state.label()
            ),
            None => format!("nothing is running: {what} steers a backfill"),
        });
        true
    }

    fn toggle_pause(&mut self) -> Option<Action> {
        if self.no_live_control("pause") {
            return None;
        }
        let Some(running) = self.running_migration() else {
            self.notice = Some("nothing is running to pause".into());
            return None;
        };
        if self.is_paused() {
            self.notice = Some(format!("resume of {} requested", running.name));
            Some(Action::Resume)
        } else {
            self.notice = Some(format!("pause of {} requested", running.name));
            Some(Action::Pause)
        }
    }

    fn scale_target(&mut self, factor: f64, verb: &str) -> Option<Action> {
        if self.no_live_control("the batch time target") {
            return None;
        }
        if self.backfill.is_none() {
            self.notice = Some("no backfill is running".into());
            return None;
        }
        self.notice = Some(format!("batch time target {verb}: asking the run"));
        Some(Action::ScaleBatchTarget(factor))
    }

    fn toggle_throttle(&mut self) -> Option<Action> {
        if self.no_live_control("the manual throttle") {
            return None;
        }
        if self.running_migration().is_none() {
            self.notice = Some("nothing is running to throttle".into());
            return None;
        }
        // Optimistic: the run's reply (or its status) corrects it.
        self.manual_throttle = !self.manual_throttle;
        if self.manual_throttle {
            self.notice = Some("manual throttle on: asking the run".into());
            Some(Action::ThrottleOn)
        } else {
            self.notice = Some("manual throttle off: asking the run".into());
            Some(Action::ThrottleOff)
        }
    }

    /// Opens the contract dialog for the selected migration and asks for its gates.
    fn open_contract(&mut self) -> Option<Action> {
        let row = self.selected_migration()?;
        if row.state != MigrationState::ReadyToContract {
            self.notice = Some(format!(
                "{} is {}: contract needs a migration that is ready to contract",
                row.name,
                row.state.label()
            ));
            return None;
        }
        let name = row.name.clone();
        self.popup = Some(Popup::Contract(ContractDialog::new(name.clone())));
        Some(Action::PrepareContract(name))
    }

    fn open_rollback(&mut self) {
        let Some(row) = self.selected_migration() else {
            return;
        };
        if !row.state.can_roll_back() {
            self.notice = Some(format!(
                "{} is {}: rollback is only possible before contract",
                row.name,
                row.state.label()
            ));
            return;
        }
        self.popup = Some(Popup::Rollback(row.name.clone()));
    }

    /// The open contract dialog of `migration`, if it is the one open.
    pub fn contract_dialog_of(&mut self, migration: &str) -> Option<&mut ContractDialog> {
        match &mut self.popup {
            Some(Popup::Contract(dialog)) if dialog.migration == migration => Some(dialog),
            _ => None,
        }
    }

    /// Where the gates of `migration` are while their window runs.
    pub fn set_gates_observing(&mut self, observing: &Observing) {
        if let Some(dialog) = self.contract_dialog_of(&observing.migration) {
            dialog.gates = observing.settled.iter().map(GateRow::from).collect();
            dialog.watching = observing.watching.clone();
            dialog.countdown = Some((observing.remaining, observing.window));
        }
    }

    /// The gates of `migration` have all judged.
    pub fn set_gates_of(&mut self, migration: &str, gates: Vec<GateRow>) {
        if let Some(dialog) = self.contract_dialog_of(migration) {
            dialog.gates = gates;
            dialog.watching.clear();
            if let Some((_, window)) = dialog.countdown {
                dialog.countdown = Some((Duration::ZERO, window));
            }
        }
    }

    /// The run of `migration` waits for the confirmation: Enter sends it.
    pub fn set_awaiting_confirmation(&mut self, migration: &str) {
        if let Some(dialog) = self.contract_dialog_of(migration) {
            dialog.awaiting = true;
            dialog.watching.clear();
        }
    }

    /// The run answered the confirmation: contract runs (the dialog closes), or it was
    /// refused (said in the dialog, which asks again).
    pub fn contract_answered(&mut self, migration: &str, refused: Option<String>) {
        let Some(dialog) = self.contract_dialog_of(migration) else {
            return;
        };
        match refused {
            None => {
                self.popup = None;
                self.notice = Some(format!("contract of {migration} confirmed: it runs now"));
            }
            Some(why) => {
                dialog.sent = false;
                dialog.overriding = false;
                dialog.input.reset();
                dialog.error = Some(why);
            }
        }
    }

    /// The run of `migration` ended before it contracted: the dialog closes, saying so.
    pub fn contract_run_ended(&mut self, migration: &str, why: &str) {
        if self.contract_dialog_of(migration).is_some() {
            self.popup = None;
            self.notice = Some(format!("contract of {migration} did not run: {why}"));
        }
    }
}
