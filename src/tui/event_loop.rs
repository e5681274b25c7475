//! The console's event loop: one `select!` over terminal input, background updates (the
//! database poller's, and the followed runs' events and replies), the monitor's snapshots,
//! signals and a tick. It updates [`App`], hands [`Action`]s to the [`Backend`] and to
//! [`Runs`], and redraws only when something changed (little traffic over SSH). It never
//! awaits the database, a process or a socket.
//!
//! Migrations run in runner processes detached from the terminal: the console starts
//! them, attaches to them (also to runs started elsewhere: `zdm start` in another
//! terminal, an earlier console) and steers them over their control sockets, so quitting
//! or losing the terminal never stops a run.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::EventStream;
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::app::{Action, App, Connection, Level, LogLine, MigrationRow, MigrationState};
use super::backend::{self, Backend, Update};
use super::follow::{self, Followed};
use super::health::{HealthView, RunFeed};
use super::runs::{Purpose, Runs};
use super::theme::Theme;
use super::view;
use crate::config::{self, Config};
use crate::control::Command;
use crate::monitor::{self, alerts, Alert, AlertPolicy, Metrics, Monitor};
use crate::plan::Plan;
use crate::runner::Job;

/// How often the loop wakes up without input, to age the watchdog's clock.
const TICK: Duration = Duration::from_millis(250);

/// A status read unanswered for this long makes the status bar say so.
const NOT_RESPONDING_AFTER: Duration = Duration::from_secs(2);

/// `q` then `p`: how long the console waits for the run to answer the pause.
const PAUSE_BEFORE_QUIT: Duration = Duration::from_secs(5);

/// `q` then `s` (demo): how long the console waits for the run to stop after its batch.
const STOP_BEFORE_QUIT: Duration = Duration::from_secs(30);

/// Why the console could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("the terminal cannot be used as a console: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    Demo(#[from] crate::demo::Error),
}

/// Where the console runs: on its own, or inside `zdm demo`, whose servers stop when the
/// console quits (so a run cannot go on without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Console,
    Demo,
}

/// Opens the console on `config`'s database and migrations until the operator quits or a
/// signal (SIGTERM, SIGHUP, SIGINT) arrives; the terminal is restored in every case, and
/// runs go on in their runner processes.
pub async fn run(config: Config, theme: Theme) -> Result<(), Error> {
    open(config, theme, Mode::Console).await
}

async fn open(config: Config, theme: Theme, mode: Mode) -> Result<(), Error> {
    let target = config.database_url()?.to_string();
    let monitor_options = config.monitor_options()?;
    let interval = monitor_options.interval;
    let policy = monitor_options.alert_policy.clone();
    let monitor = Monitor::start(monitor_options);
    let config = Arc::new(config);
    let (update_tx, updates) = unbounded_channel();
    let backend = Backend::start(config.clone(), interval, update_tx.clone());
    let runs = Runs::new(config, update_tx);
    let mut app = App::new(target);
    app.can_detach = mode == Mode::Console;
    let mut console = Console::new(app, backend, runs, monitor, policy, interval);
    let mut terminal = ratatui::try_init()?;
    let result = console.run(&mut terminal, &theme, updates).await;
    ratatui::restore();
    let farewell = console.farewell.take();
    // Dropping the monitor aborts its sampler: a frozen database must not hold up quitting.
    drop(console);
    if let Some(farewell) = farewell {
        tracing::info!("{farewell}");
        // After SIGHUP there may be no terminal left to print to: that is fine.
        let _ = writeln!(std::io::stdout(), "{farewell}");
    }
    result
}

/// `zdm demo` with the console: the demo's servers and workload stay up while the console
/// runs on them (migrations from `dir`) and stop when it quits.
pub async fn run_demo(
    options: crate::demo::DemoOptions,
    dir: std::path::PathBuf,
    theme: Theme,
) -> Result<(), Error> {
    println!("Starting the zdm demo (scale {}).", options.scale);
    let shutdown = crate::signals::shutdown_requested();
    tokio::pin!(shutdown);
    let demo = tokio::select! {
        demo = crate::demo::Demo::start(&options, |line| println!("  {line}")) => demo?,
        signal = &mut shutdown => {
            println!("{signal}: stopped while starting; servers stopped and files removed.");
            return Ok(());
        }
    };
    let config = Config::load(&config::Overrides {
        config_file: None,
        database_url: Some(demo.database_url()),
        migrations_dir: Some(dir),
    });
    let result = match config {
        Ok(config) => open(config, theme, Mode::Demo).await,
        Err(error) => Err(error.into()),
    };
    println!("Stopping the demo's workload and servers…");
    let root = demo.pg().root().to_path_buf();
    demo.stop().await?;
    println!("Stopped; {} was removed.", root.display());
    result
}

/// The console quits once a run answered (or at the deadline).
#[derive(Debug)]
pub(super) struct Quitting {
    pub purpose: Purpose,
    pub socket: PathBuf,
    pub deadline: Instant,
}

/// Everything the loop keeps besides the app.
pub(super) struct Console {
    pub app: App,
    pub backend: Backend,
    pub runs: Runs,
    monitor: Monitor,
    policy: AlertPolicy,
    /// The Health pane from a followed run's own metrics (while one streams them).
    run_feed: Option<RunFeed>,
    /// How often runs are looked for (the status poll's interval).
    discovery_interval: Duration,
    /// Plans known so far: recorded ones (from status reads) and planned files.
    pub plans: HashMap<String, (Plan, Option<usize>)>,
    plan_problems: HashMap<String, String>,
    /// The plans asked for and not answered yet.
    planning: Vec<String>,
    /// The runs this console follows (attached, or being attached to).
    pub followed: Vec<Followed>,
    /// Runs whose stream ended, by (socket, pid): a socket found again before its file
    /// is gone is not attached to twice. (The same migration's next run has another pid.)
    pub ended: HashSet<(PathBuf, u32)>,
    /// Migrations whose run's `Finished` event was shown: a runner that exits before its
    /// spawn saw its socket was still followed, and its end is not told twice.
    pub finish_shown: HashSet<String>,
    /// Sockets that refused an attach, reported once.
    pub attach_failures: HashSet<PathBuf>,
    /// The migration whose runner is being started (one run at a time per console).
    pub spawning: Option<String>,
    /// A discovery is under way (they are not stacked when sockets are slow).
    pub discovering: bool,
    pub quitting: Option<Quitting>,
    /// A contract run cancelled while its runner was still starting: aborted once it serves.
    pub cancel_when_served: Option<String>,
    /// A contract dialog waiting for the migration's own run to end before its contract
    /// run starts.
    pub contract_when_free: Option<String>,
    /// Printed once the terminal is restored: where the run stands and how to get back.
    pub farewell: Option<String>,
    /// Since when a status read has gone unanswered.
    waiting_since: Option<Instant>,
    seen_alerts: Vec<Alert>,
    /// Whether the next screen differs from the last one drawn.
    pub dirty: bool,
    pub quit: bool,
}

impl Console {
    fn new(
        app: App,
        backend: Backend,
        runs: Runs,
        monitor: Monitor,
        policy: AlertPolicy,
        discovery_interval: Duration,
    ) -> Self {
        Console {
            app,
            backend,
            runs,
            monitor,
            policy,
            run_feed: None,
            discovery_interval,
            plans: HashMap::new(),
            plan_problems: HashMap::new(),
            planning: Vec::new(),
            followed: Vec::new(),
            ended: HashSet::new(),
            finish_shown: HashSet::new(),
            attach_failures: HashSet::new(),
            spawning: None,
            cancel_when_served: None,
            contract_when_free: None,
            discovering: false,
            quitting: None,
            farewell: None,
            waiting_since: None,
            seen_alerts: Vec::new(),
            dirty: true,
            quit: false,
        }
    }

    async fn run(
        &mut self,
        terminal: &mut DefaultTerminal,
        theme: &Theme,
        mut updates: UnboundedReceiver<Update>,
    ) -> Result<(), Error> {
        let mut input = EventStream::new();
        let mut samples = self.monitor.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: runs started earlier are attached to on open.
        let mut discovery = tokio::time::interval(self.discovery_interval);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = crate::signals::shutdown_requested();
        tokio::pin!(shutdown);
        self.log(Level::Info, "console opened".to_string());
        while !self.quit {
            if self.dirty {
                terminal.draw(|frame| view::draw(frame, &self.app, theme))?;
                self.dirty = false;
            }
            tokio::select! {
                key = input.next() => match key {
                    Some(Ok(event)) => self.on_terminal(&event),
                    Some(Err(error)) => return Err(error.into()),
                    None => self.quit = true,
                },
                Some(update) = updates.recv() => self.on_update(update),
                changed = samples.changed() => {
                    if changed.is_ok() {
                        let metrics = samples.borrow_and_update().clone();
                        self.on_metrics(&metrics);
                    }
                }
                _ = tick.tick() => self.on_tick(),
                _ = discovery.tick() => {
                    if !self.discovering {
                        self.discovering = true;
                        self.runs.discover();
                    }
                }
                signal = &mut shutdown => self.on_signal(signal),
            }
        }
        Ok(())
    }

    pub(super) fn log(&mut self, level: Level, text: String) {
        match level {
            Level::Debug => tracing::debug!("{text}"),
            Level::Info => tracing::info!("{text}"),
            Level::Warning => tracing::warn!("{text}"),
            Level::Error => tracing::error!("{text}"),
        }
        self.app.push_log(LogLine {
            at: chrono::Local::now().format("%H:%M:%S").to_string(),
            level,
            text,
        });
        self.dirty = true;
    }

    fn on_terminal(&mut self, event: &crossterm::event::Event) {
        // Every key and resize redraws: a keystroke always gets visible feedback at once.
        self.dirty = true;
        if self.quitting.is_some() {
            // Waiting for the run's answer before quitting: keys wait too, except a second
            // q or Ctrl-C, which quits now (the run is left as it is).
            if let crossterm::event::Event::Key(key) = event {
                let quit_key = key.code == crossterm::event::KeyCode::Char('q')
                    || (key.code == crossterm::event::KeyCode::Char('c')
                        && key
                            .modifiers
                            .contains(crossterm::event::KeyModifiers::CONTROL));
                if quit_key && key.kind != crossterm::event::KeyEventKind::Release {
                    self.quit_unanswered();
                }
            }
            return;
        }
        if let Some(action) = self.app.handle_event(event) {
            self.perform(action);
        }
    }

    /// SIGHUP (a dropped SSH session), SIGTERM, SIGINT: give the terminal back and quit.
    /// Runs live in process groups of their own, beyond the terminal's hangup, and go on.
    fn on_signal(&mut self, signal: &str) {
        let goes_on = match self.live_run().map(|run| run.migration.clone()) {
            // `zdm demo` stops its servers next: the run stops with them, resumable.
            Some(name) if !self.app.can_detach => {
                format!("; {name} stops with the demo's servers (its checkpoint holds)")
            }
            Some(name) => format!(
                "; {name} goes on in its runner process (`zdm attach {name}` follows it, \
                 `zdm ctl` steers it)"
            ),
            None => String::new(),
        };
        self.farewell = Some(format!("{signal}: the console closed{goes_on}."));
        self.quit = true;
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::ShowPlan(name) => self.show_plan(&name),
            Action::PrepareContract(name) => match self.busy() {
                // Its own start run is still ending (the backfill just finished): the
                // contract run starts the moment it has.
                Some(busy) if busy == name => {
                    self.contract_when_free = Some(name);
                    self.start_waiting_contract();
                }
                Some(busy) => {
                    self.app.popup = None;
                    self.refuse(format!(
                        "{busy} is being worked on: one run at a time (it must finish first)"
                    ));
                }
                // The run that will contract evaluates the gates (one window) and waits
                // for the confirmation this dialog sends it.
                None => self.spawn(Job::CompleteOnConfirmation {
                    migration: name,
                    window: None,
                }),
            },
            Action::CancelContract(name) => self.cancel_contract(name),
            Action::Start(name) => {
                self.monitor.set_baseline_end(Some(Utc::now()));
                self.spawn(Job::Start { migration: name });
            }
            Action::Contract {
                migration,
                overrides,
            } => {
                if !overrides.is_empty() {
                    self.log(
                        Level::Warning,
                        format!(
                            "contract of {migration} confirmed by name, overriding: {}",
                            overrides.join(", ")
                        ),
                    );
                }
                let Some(socket) = self.socket_of_run(&migration) else {
                    self.app.contract_answered(
                        &migration,
                        Some("its run is not reachable: press Esc and c to start again".into()),
                    );
                    return;
                };
                let command = Command::ConfirmContract {
                    confirmation: migration.clone(),
                    overrides,
                };
                self.runs.send(socket, command, Purpose::Confirm(migration));
            }
            Action::Rollback(name) => self.spawn(Job::Rollback { migration: name }),
            Action::Pause => self.steer(Command::Pause),
            Action::Resume => self.steer(Command::Resume),
            Action::ThrottleOn => self.steer(Command::Throttle),
            Action::ThrottleOff => self.steer(Command::NoThrottle),
            Action::ScaleBatchTarget(factor) => {
                let Some(socket) = self.backfilling_socket() else {
                    self.refuse("no followed run is backfilling: nothing to steer".to_string());
                    return;
                };
                let current = self
                    .app
                    .backfill
                    .as_ref()
                    .and_then(|view| view.batch_target);
                self.runs.scale_batch_target(socket, current, factor);
            }
            Action::Detach => {
                self.farewell = Some(self.detach_farewell());
                self.quit = true;
            }
            Action::PauseAndQuit => self.quit_after(Command::Pause, Purpose::PauseAndQuit),
            Action::StopAndQuit => self.quit_after(Command::Abort, Purpose::StopAndQuit),
        }
    }

    /// Starts `job` in a runner process, unless a run is under way (one at a time).
    fn spawn(&mut self, job: Job) {
        let (word, migration) = super::runs::describe(&job);
        if let Some(busy) = self.busy() {
            self.refuse(format!(
                "{busy} is being worked on: one run at a time (it must finish first)"
            ));
            return;
        }
        self.spawning = Some(migration.clone());
        // This run's end is yet to be shown, whatever an earlier run's was.
        self.finish_shown.remove(&migration);
        self.log(
            Level::Info,
            format!("{word} of {migration}: starting its runner process"),
        );
        // Followed from its first event: the socket is watched while the runner starts.
        let socket = self.runs.socket_of(&migration);
        if let Some(socket) = &socket {
            if !self.followed.iter().any(|run| &run.socket == socket) {
                let mut run = Followed::new(socket.clone(), migration, 0);
                run.own = true;
                self.followed.push(run);
            }
        }
        self.runs.spawn(job, socket);
    }

    /// The socket of the followed live run of `migration`.
    fn socket_of_run(&self, migration: &str) -> Option<PathBuf> {
        self.followed
            .iter()
            .find(|run| run.migration == migration && run.is_live())
            .map(|run| run.socket.clone())
    }

    /// Cancels the contract run of `migration` (nothing is contracted): at once when it is
    /// followed, else as soon as its runner serves its socket.
    fn cancel_contract(&mut self, migration: String) {
        if self.contract_when_free.as_deref() == Some(migration.as_str()) {
            // Not started yet: nothing to abort (and the live run is the start's, not ours).
            self.contract_when_free = None;
            return;
        }
        match self.socket_of_run(&migration) {
            Some(socket) if self.spawning.as_deref() != Some(migration.as_str()) => {
                self.runs
                    .send(socket, Command::Abort, Purpose::Key(Command::Abort));
            }
            _ => self.cancel_when_served = Some(migration),
        }
    }

    /// Starts the contract run a dialog waits for, once no run of this database is live.
    pub(super) fn start_waiting_contract(&mut self) {
        if self.busy().is_some() {
            return;
        }
        let Some(name) = self.contract_when_free.take() else {
            return;
        };
        if self.app.contract_dialog_of(&name).is_some() {
            self.spawn(Job::CompleteOnConfirmation {
                migration: name,
                window: None,
            });
        }
    }

    /// The migration a run of this console's database works on, or is being started for.
    fn busy(&self) -> Option<String> {
        self.spawning
            .clone()
            .or_else(|| self.live_run().map(|run| run.migration.clone()))
    }

    /// The followed run that has not finished (the engine's run lock allows one).
    pub(super) fn live_run(&self) -> Option<&Followed> {
        self.followed.iter().find(|run| run.is_live())
    }

    /// The socket of the followed run that is backfilling: the one p, t, + / - steer.
    fn backfilling_socket(&self) -> Option<PathBuf> {
        self.followed
            .iter()
            .find(|run| run.is_backfilling())
            .map(|run| run.socket.clone())
    }

    /// Sends a live-control command to the backfilling run; its reply becomes the notice.
    fn steer(&mut self, command: Command) {
        let Some(socket) = self.backfilling_socket() else {
            if matches!(command, Command::Throttle | Command::NoThrottle) {
                self.app.manual_throttle = false;
            }
            self.refuse("no followed run is backfilling: nothing to steer".to_string());
            return;
        };
        self.runs
            .send(socket, command.clone(), Purpose::Key(command));
    }

    /// `q` then `p` (pause) or `s` (stop, in the demo): asks the run, quits on its answer.
    fn quit_after(&mut self, command: Command, purpose: Purpose) {
        let Some(run) = self.live_run() else {
            // Nothing this console follows runs: there is nothing to ask.
            self.farewell = Some(self.detach_farewell());
            self.quit = true;
            return;
        };
        let (socket, name) = (run.socket.clone(), run.migration.clone());
        let wait = match purpose {
            Purpose::StopAndQuit => STOP_BEFORE_QUIT,
            _ => PAUSE_BEFORE_QUIT,
        };
        let doing = match purpose {
            Purpose::StopAndQuit => "stopping",
            _ => "pausing",
        };
        self.app.notice = Some(format!(
            "{doing} {name}, then quitting (at most {} s)…",
            wait.as_secs()
        ));
        self.runs.send(socket.clone(), command, purpose.clone());
        self.quitting = Some(Quitting {
            purpose,
            socket,
            deadline: Instant::now() + wait,
        });
    }

    /// The run did not answer in time (or the operator would not wait): quit anyway,
    /// saying where it may stand.
    fn quit_unanswered(&mut self) {
        let Some(quitting) = self.quitting.take() else {
            return;
        };
        let name = self
            .followed
            .iter()
            .find(|run| run.socket == quitting.socket)
            .map_or_else(|| "the migration".to_string(), |run| run.migration.clone());
        self.farewell = Some(match quitting.purpose {
            Purpose::StopAndQuit => format!(
                "{name} had not stopped when the console quit; the demo's servers stop now \
                 and take it with them."
            ),
            _ => format!(
                "{name} had not answered the pause when the console quit: it may still be \
                 running. `zdm ctl status` tells, `zdm ctl pause` pauses it; \
                 `zdm attach {name}` follows it."
            ),
        });
        self.quit = true;
    }

    /// What `d` leaves behind: the run goes on, and how to find it again.
    fn detach_farewell(&self) -> String {
        match self.live_run() {
            Some(run) => {
                let name = &run.migration;
                let mut whose = format!("its runner process (pid {}", run.pid);
                if let Some(log) = &run.log {
                    whose.push_str(&format!(", log {}", log.display()));
                }
                whose.push(')');
                format!(
                    "Detached: {name} goes on in {whose}.\n\
                     Follow it with `zdm attach {name}`; steer it with `zdm ctl status`, \
                     `zdm ctl pause` / `resume`, `zdm ctl throttle`, `zdm ctl abort`; or \
                     reopen the console."
                )
            }
            None => match self.app.running_migration() {
                Some(row) => format!(
                    "{} goes on in the zdm that runs it: `zdm attach {}` follows it, \
                     `zdm ctl` steers it.",
                    row.name, row.name
                ),
                None => "Nothing was running.".to_string(),
            },
        }
    }

    pub(super) fn refuse(&mut self, why: String) {
        self.app.notice = Some(why.clone());
        self.log(Level::Warning, why);
    }

    /// Shows the plan of `name`: a known one at once, else asks the planner.
    pub(super) fn show_plan(&mut self, name: &str) {
        // Its last rehearsal beside it (a rehearsal that ends while the console is open
        // shows at the next status read).
        let rehearsal = Some(self.backend.last_rehearsal(name));
        if rehearsal != self.app.rehearsal {
            self.app.rehearsal = rehearsal;
            self.dirty = true;
        }
        let plan = self.plans.get(name).cloned();
        let problem = self.plan_problems.get(name).cloned();
        // A status read every second re-shows the same plan: redraw only on a change.
        let known = plan.is_some() || problem.is_some();
        let planning = Some(format!("planning {name}…"));
        let unchanged = if known {
            plan == self.app.plan && problem == self.app.plan_problem
        } else {
            // Being planned: "planning …" is on screen already.
            self.app.plan.is_none() && self.app.plan_problem == planning
        };
        if unchanged {
            return;
        }
        self.app.plan = plan;
        self.app.plan_problem = problem;
        if !known {
            self.app.plan_problem = Some(format!("planning {name}…"));
            if !self.planning.iter().any(|n| n == name) {
                self.planning.push(name.to_string());
                self.backend.plan(name.to_string());
            }
        }
        self.dirty = true;
    }

    pub(super) fn selected_name(&self) -> Option<String> {
        self.app.selected_migration().map(|m| m.name.clone())
    }

    fn on_update(&mut self, update: Update) {
        match update {
            Update::Polling => {
                self.waiting_since.get_or_insert_with(Instant::now);
            }
            Update::Status(snapshot) => {
                self.waiting_since = None;
                self.set_connection(Connection::Connected);
                self.apply_status(*snapshot);
            }
            Update::StatusFailed(why, files) => {
                self.waiting_since = None;
                self.set_connection(Connection::Failed(why));
                self.app.files_without_state = files;
                self.dirty = true;
            }
            Update::StatusNoAnswer(files) => {
                self.app.files_without_state = files;
                self.dirty = true;
            }
            Update::Plan { migration, plan } => {
                self.planning.retain(|n| *n != migration);
                match plan {
                    Ok(plan) => {
                        self.plans.insert(migration.clone(), (plan, None));
                        self.plan_problems.remove(&migration);
                    }
                    Err(why) => {
                        self.plan_problems.insert(migration.clone(), why);
                    }
                }
                if self.selected_name().as_deref() == Some(migration.as_str()) {
                    self.show_plan(&migration);
                }
            }
            Update::Run(update) => self.on_run(update),
            Update::Log(level, text) => self.log(level, text),
        }
    }

    fn apply_status(&mut self, snapshot: backend::StatusSnapshot) {
        let selected = self.selected_name();
        let first_load = self.app.migrations.is_empty() && !snapshot.rows.is_empty();
        let states = |rows: &[MigrationRow]| -> Vec<(String, MigrationState)> {
            rows.iter().map(|r| (r.name.clone(), r.state)).collect()
        };
        if states(&snapshot.rows) != states(&self.app.migrations) {
            // Plans of files not started depend on the catalog and on what ran before
            // them: plan them again after any migration moved.
            let recorded: Vec<&String> = snapshot.plans.iter().map(|(name, _, _)| name).collect();
            self.plans.retain(|name, _| recorded.contains(&name));
            self.plan_problems.clear();
        }
        for (name, plan, current) in snapshot.plans {
            // A plan planned from the file is replaced by the one recorded at start.
            self.plans.insert(name.clone(), (plan, current));
            self.plan_problems.remove(&name);
        }
        let mut rows = snapshot.rows;
        // A followed run holds the run lock, whatever a racing read saw; while its backfill
        // is held back, the badge says so (the database only knows "backfilling").
        for run in self.followed.iter().filter(|run| run.is_live()) {
            for row in rows.iter_mut().filter(|r| r.name == run.migration) {
                row.stopped = false;
                if row.state == MigrationState::Backfilling {
                    row.state = follow::backfill_badge(run.state);
                }
            }
        }
        if rows != self.app.migrations {
            self.app.migrations = rows;
            self.dirty = true;
        }
        // Keep the cursor on the same migration when the list changes.
        if let Some(name) = &selected {
            if let Some(index) = self.app.migrations.iter().position(|m| &m.name == name) {
                self.app.selected = index;
            }
        }
        self.app.selected = self
            .app
            .selected
            .min(self.app.migrations.len().saturating_sub(1));
        if let Some(name) = self.selected_name() {
            let shown = self
                .app
                .plan
                .as_ref()
                .map(|(plan, _)| plan.migration.as_str());
            if first_load || self.plans.contains_key(&name) || shown != Some(name.as_str()) {
                self.show_plan(&name);
            }
        }
    }

    fn set_connection(&mut self, connection: Connection) {
        if self.app.connection != connection {
            if let Connection::Failed(why) = &connection {
                self.log(Level::Error, format!("database: {why}"));
            }
            if matches!(self.app.connection, Connection::NotResponding(_))
                && connection == Connection::Connected
            {
                self.log(Level::Info, "the database answers again".to_string());
            }
            self.app.connection = connection;
            self.dirty = true;
        }
    }

    fn on_tick(&mut self) {
        if self
            .quitting
            .as_ref()
            .is_some_and(|quitting| Instant::now() >= quitting.deadline)
        {
            self.quit_unanswered();
        }
        let Some(since) = self.waiting_since else {
            return;
        };
        let waited = since.elapsed();
        if waited >= NOT_RESPONDING_AFTER {
            // Whole seconds: the status bar changes (and the screen is sent) once a second.
            let seconds = Duration::from_secs(waited.as_secs());
            if !matches!(self.app.connection, Connection::NotResponding(_)) {
                self.log(
                    Level::Warning,
                    format!(
                        "the database is not responding (no answer for {} s)",
                        seconds.as_secs()
                    ),
                );
            }
            self.set_connection(Connection::NotResponding(seconds));
        }
    }

    /// A sample of the console's own monitor: shown unless a followed run streams its
    /// own (the run's are the numbers its throttle acts on).
    fn on_metrics(&mut self, metrics: &Arc<Metrics>) {
        if follow::run_feeds_health(&self.followed) {
            return;
        }
        self.run_feed = None;
        let history = self.monitor.history();
        let view = match history.read() {
            Ok(history) => HealthView::from_metrics(metrics, &history, &self.policy, Utc::now()),
            Err(_) => return,
        };
        self.show_health(view, metrics);
    }

    /// A sample of the run followed at `socket` (from its `metrics` events).
    pub(super) fn on_run_metrics(&mut self, socket: &std::path::Path, metrics: &Metrics) {
        let feed = match &mut self.run_feed {
            Some(feed) if feed.is_of(socket) => feed,
            other => other.insert(RunFeed::new(socket)),
        };
        let view = feed.view(metrics, &self.policy, Utc::now());
        self.show_health(view, metrics);
    }

    /// Shows `view` in the Health pane and logs the alerts raised and cleared since the
    /// last sample shown.
    fn show_health(&mut self, view: HealthView, metrics: &Metrics) {
        for change in alerts::changes(&self.seen_alerts, &metrics.alerts) {
            match change {
                alerts::AlertChange::Raised(alert) => {
                    let level = match alert.severity {
                        monitor::Severity::Warning => Level::Warning,
                        monitor::Severity::Critical => Level::Error,
                    };
                    self.log(level, format!("alert: {}", alert.message));
                }
                alerts::AlertChange::Cleared { subject, .. } => {
                    self.log(Level::Info, format!("alert cleared: {subject}"));
                }
            }
        }
        self.seen_alerts = metrics.alerts.clone();
        self.app.health = Some(view);
        // Samples arrive once per interval: the sampling interval paces the redraws.
        self.dirty = true;
    }
}
