//! The console's event loop: one `select!` over terminal input, engine events, background
//! updates, the monitor's snapshots, signals and a tick. It updates [`App`], hands
//! [`Action`]s to the [`Backend`], and redraws only when something changed (little
//! traffic over SSH). It never awaits the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::EventStream;
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::app::{
    Action, App, BackfillView, Connection, Level, LogLine, MigrationRow, MigrationState,
};
use super::backend::{self, Backend, Update};
use super::health::HealthView;
use super::theme::Theme;
use super::view;
use crate::config::{self, Config};
use crate::engine::progress::RunState;
use crate::engine::{self, phase_name};
use crate::format;
use crate::monitor::{self, alerts, Alert, AlertPolicy, Metrics, Monitor, MonitorOptions};
use crate::plan::{Phase, Plan, StepAction};

/// How often the loop wakes up without input, to age the watchdog's clock.
const TICK: Duration = Duration::from_millis(250);

/// A status read unanswered for this long makes the status bar say so.
const NOT_RESPONDING_AFTER: Duration = Duration::from_secs(2);

/// What the operator is told when a live-control key has nothing to drive.
const NO_LIVE_CONTROL: &str = "live control (pause/resume, manual throttle, batch time target) \
     is not available in this build: the engine's backfill runs fixed-size batches without a \
     control handle";

/// Why the console could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Monitor(#[from] monitor::Error),
    #[error("the terminal cannot be used as a console: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    Demo(#[from] crate::demo::Error),
}

/// Opens the console on `config`'s database and migrations until the operator quits or a
/// signal (SIGTERM, SIGHUP, SIGINT) arrives; the terminal is restored in every case.
pub async fn run(config: Config, theme: Theme) -> Result<(), Error> {
    let target = config.database_url()?.to_string();
    let monitor_options = MonitorOptions::from_config(&config)?;
    let interval = monitor_options.interval;
    let policy = monitor_options.alert_policy.clone();
    let monitor = Monitor::start(monitor_options);
    let (update_tx, updates) = unbounded_channel();
    let (event_tx, events) = unbounded_channel();
    let backend = Backend::start(config, interval, update_tx, event_tx);
    let mut console = Console::new(App::new(target), backend, monitor, policy);
    let mut terminal = ratatui::try_init()?;
    let result = console.run(&mut terminal, &theme, updates, events).await;
    ratatui::restore();
    // Dropping the monitor aborts its sampler: a frozen database must not hold up quitting.
    drop(console);
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
        Ok(config) => run(config, theme).await,
        Err(error) => Err(error.into()),
    };
    println!("Stopping the demo's workload and servers…");
    let root = demo.pg().root().to_path_buf();
    demo.stop().await?;
    println!("Stopped; {} was removed.", root.display());
    result
}

/// The backfill of the running migration as the engine's events tell it.
#[derive(Debug)]
struct BackfillTracker {
    migration: String,
    /// The backfill step's position among its phase's steps.
    position: usize,
    table: String,
    started: Instant,
    rows_at_start: u64,
    /// (when, cumulative rows) of recent batches, for the current rate.
    recent: Vec<(Instant, u64)>,
    estimate: Option<u64>,
    last_log: Option<Instant>,
}

/// Everything the loop keeps besides the app.
struct Console {
    app: App,
    backend: Backend,
    monitor: Monitor,
    policy: AlertPolicy,
    /// Plans known so far: recorded ones (from status reads) and planned files.
    plans: HashMap<String, (Plan, Option<usize>)>,
    plan_problems: HashMap<String, String>,
    /// The plans asked for and not answered yet.
    planning: Vec<String>,
    backfill: Option<BackfillTracker>,
    /// Since when a status read has gone unanswered.
    waiting_since: Option<Instant>,
    seen_alerts: Vec<Alert>,
    /// Whether the next screen differs from the last one drawn.
    dirty: bool,
    quit: bool,
}

impl Console {
    fn new(app: App, backend: Backend, monitor: Monitor, policy: AlertPolicy) -> Self {
        Console {
            app,
            backend,
            monitor,
            policy,
            plans: HashMap::new(),
            plan_problems: HashMap::new(),
            planning: Vec::new(),
            backfill: None,
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
        mut events: UnboundedReceiver<engine::Event>,
    ) -> Result<(), Error> {
        let mut input = EventStream::new();
        let mut samples = self.monitor.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                Some(event) = events.recv() => self.on_engine(event),
                changed = samples.changed() => {
                    if changed.is_ok() {
                        let metrics = samples.borrow_and_update().clone();
                        self.on_metrics(&metrics);
                    }
                }
                _ = tick.tick() => self.on_tick(),
                signal = &mut shutdown => {
                    tracing::info!(signal, "console closed by a signal");
                    if let Some(name) = self.backend.stop_command() {
                        tracing::warn!(migration = %name, "stopped by {signal}; `zdm start` resumes it");
                    }
                    self.quit = true;
                }
            }
        }
        Ok(())
    }

    fn log(&mut self, level: Level, text: String) {
        match level {
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
        if let Some(action) = self.app.handle_event(event) {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::ShowPlan(name) => self.show_plan(&name),
            Action::EvaluateGates(name) => self.backend.gates(name),
            Action::Start(name) => {
                self.monitor.set_baseline_end(Some(Utc::now()));
                match self.backend.start_migration(name.clone()) {
                    Ok(()) => self.log(Level::Info, format!("start of {name} requested")),
                    Err(why) => self.refuse(why),
                }
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
                match self.backend.complete(migration.clone(), overrides.clone()) {
                    Ok(()) => self.log(Level::Info, format!("contract of {migration} started")),
                    Err(why) => self.refuse(why),
                }
            }
            Action::Rollback(name) => match self.backend.rollback(name.clone()) {
                Ok(()) => self.log(Level::Info, format!("rollback of {name} started")),
                Err(why) => self.refuse(why),
            },
            Action::Pause
            | Action::Resume
            | Action::ScaleBatchTarget(_)
            | Action::ThrottleOn
            | Action::ThrottleOff => {
                // No live-control handle exists yet: say so, and undo the optimistic toggle.
                self.app.manual_throttle = false;
                self.app.notice = Some("not available in this build: see the log".into());
                self.log(Level::Warning, NO_LIVE_CONTROL.to_string());
            }
            Action::Detach => {
                self.app.notice = Some(
                    "detach needs the background runner (zdm attach), not in this build: \
                     press q then p to stop and quit"
                        .into(),
                );
                self.log(
                    Level::Warning,
                    "detach is not available in this build: the migration runs inside this \
                     console, so quitting stops it (resumable with s or zdm start)"
                        .to_string(),
                );
            }
            Action::PauseAndQuit => {
                if let Some(name) = self.backend.stop_command() {
                    tracing::warn!(migration = %name, "stopped on quit; `zdm start {name}` resumes it");
                }
                self.quit = true;
            }
        }
    }

    fn refuse(&mut self, why: String) {
        self.app.notice = Some(why.clone());
        self.log(Level::Warning, why);
    }

    /// Shows the plan of `name`: a known one at once, else asks the planner.
    fn show_plan(&mut self, name: &str) {
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

    fn selected_name(&self) -> Option<String> {
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
            Update::StatusFailed(why) => {
                self.waiting_since = None;
                self.set_connection(Connection::Failed(why));
            }
            Update::StatusNoAnswer => {}
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
            Update::Gates { migration, gates } => {
                self.app.set_gates_of(&migration, gates);
                self.dirty = true;
            }
            Update::Estimate { table, rows } => {
                if let Some(tracker) = &mut self.backfill {
                    if tracker.table == table {
                        tracker.estimate = Some(rows);
                        self.refresh_backfill_view(None, None);
                    }
                }
            }
            Update::Finished {
                command,
                migration,
                result,
            } => {
                match result {
                    Ok(outcome) => self.log(Level::Info, format!("{command}: {outcome}")),
                    Err(error) => {
                        self.log(Level::Error, format!("{command} of {migration}: {error}"));
                        self.app.notice =
                            Some(format!("{command} of {migration} failed: see the log"));
                    }
                }
                self.backend.refresh();
            }
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
        // This console's own command holds the run lock, whatever a racing read saw.
        if let Some(own) = self.backend.running() {
            for row in rows.iter_mut().filter(|r| r.name == own) {
                row.stopped = false;
            }
        }
        // While this console's backfill is held back, the badge says so.
        if let (Some(tracker), Some(view)) = (&self.backfill, &self.app.backfill) {
            if view.throttle_reason.is_some() {
                for row in rows.iter_mut().filter(|r| r.name == tracker.migration) {
                    if row.state == MigrationState::Backfilling {
                        row.state = MigrationState::Throttled;
                    }
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

    fn on_metrics(&mut self, metrics: &Arc<Metrics>) {
        let history = self.monitor.history();
        let view = match history.read() {
            Ok(history) => HealthView::from_metrics(metrics, &history, &self.policy, Utc::now()),
            Err(_) => return,
        };
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

    fn on_engine(&mut self, event: engine::Event) {
        match event {
            engine::Event::StepStarted {
                migration,
                phase,
                position,
                total,
                description,
            } => {
                self.log(
                    Level::Info,
                    format!(
                        "{migration}: {} {}/{total}: {description}",
                        phase_name(phase),
                        position + 1
                    ),
                );
                let state = match phase {
                    Phase::Expand => MigrationState::Expanding,
                    Phase::Backfill => MigrationState::Backfilling,
                    Phase::Contract => MigrationState::Contracting,
                    Phase::Rollback => MigrationState::RollingBack,
                };
                if let Some(row) = self.app.migrations.iter_mut().find(|m| m.name == migration) {
                    row.state = state;
                    row.stopped = false;
                }
                if let Some((plan, current)) = self.plans.get_mut(&migration) {
                    *current = backend::step_index(plan, phase, position);
                    if phase == Phase::Backfill {
                        if let Some(StepAction::Backfill(spec)) = current
                            .and_then(|index| plan.steps.get(index))
                            .map(|step| &step.action)
                        {
                            self.backfill = Some(BackfillTracker {
                                migration: migration.clone(),
                                position,
                                table: spec.table.clone(),
                                started: Instant::now(),
                                rows_at_start: 0,
                                recent: Vec::new(),
                                estimate: None,
                                last_log: None,
                            });
                            self.backend.estimate(spec.table.clone());
                            self.refresh_backfill_view(None, None);
                        }
                    }
                }
                if self.selected_name().as_deref() == Some(migration.as_str()) {
                    self.app.plan = self.plans.get(&migration).cloned();
                }
                self.dirty = true;
            }
            engine::Event::StepDone {
                migration,
                phase,
                position,
            } => {
                let tracked = self.backfill.as_ref().is_some_and(|tracker| {
                    tracker.migration == migration && tracker.position == position
                });
                if phase == Phase::Backfill && tracked {
                    self.finish_backfill_view();
                }
            }
            engine::Event::BackfillProgress(progress) => {
                // The engine's own figures are authoritative: they include throttle and pause.
                if let Some(view) = &mut self.app.backfill {
                    view.rows_done = progress.rows_done;
                    if let Some(total) = progress.rows_total_estimate {
                        view.rows_total = total.max(progress.rows_done);
                    }
                    view.rows_per_second_now = progress.rows_per_second_now;
                    view.rows_per_second_average = progress.rows_per_second_average;
                    view.eta = progress.eta_seconds.map(Duration::from_secs);
                    view.batch_size = progress.batch_size;
                    if let Some(ms) = progress.last_batch_ms {
                        view.last_batch = Duration::from_millis(ms);
                    }
                    view.throttle_reason = match &progress.state {
                        RunState::Throttled { reason } => Some(reason.clone()),
                        _ => None,
                    };
                    view.paused = matches!(progress.state, RunState::Paused { .. });
                    self.dirty = true;
                }
            }
            engine::Event::Throttled { step, reason } => {
                self.set_backfill_state(MigrationState::Throttled);
                self.log(Level::Warning, format!("{step}: throttled: {reason}"));
            }
            engine::Event::ThrottleReleased { step, after } => {
                self.set_backfill_state(MigrationState::Backfilling);
                self.log(
                    Level::Info,
                    format!(
                        "{step}: throttle released after {}",
                        format::duration(after)
                    ),
                );
            }
            engine::Event::Paused { step, by } => {
                self.set_backfill_state(MigrationState::Paused);
                self.log(Level::Warning, format!("{step}: paused by {by}"));
            }
            engine::Event::Resumed { step } => {
                self.set_backfill_state(MigrationState::Backfilling);
                self.log(Level::Info, format!("{step}: resumed"));
            }
            engine::Event::CriticalLevel { step, reason } => {
                self.set_backfill_state(MigrationState::Paused);
                self.log(
                    Level::Error,
                    format!("{step}: CRITICAL: {reason}; paused until an operator resumes"),
                );
            }
            engine::Event::BackfillStopped {
                step,
                why,
                rows_updated,
            } => self.log(
                Level::Warning,
                format!(
                    "{step}: stopped ({why}) after {} rows; start it again to resume",
                    format::thousands(u64::try_from(rows_updated).unwrap_or(0))
                ),
            ),
            engine::Event::LockWait {
                step,
                attempt,
                max_attempts,
                retry_in,
                blocked_by,
            } => self.log(
                Level::Warning,
                format!(
                    "{step}: lock not granted (try {attempt} of {max_attempts}), retrying in \
                     {:.1} s; {blocked_by}",
                    retry_in.as_secs_f64()
                ),
            ),
            engine::Event::BatchCommitted {
                rows_updated,
                took,
                batches,
                ..
            } => {
                let rows = u64::try_from(rows_updated).unwrap_or(0);
                if let Some(tracker) = &mut self.backfill {
                    let now = Instant::now();
                    let previous = tracker.recent.last().map(|(_, r)| *r);
                    if tracker.recent.is_empty() && tracker.last_log.is_none() {
                        // The count includes earlier runs of a resumed backfill: measure
                        // the rate from this first batch on.
                        tracker.rows_at_start = rows;
                        tracker.started = now;
                    }
                    tracker.recent.push((now, rows));
                    tracker
                        .recent
                        .retain(|(at, _)| now.duration_since(*at) <= Duration::from_secs(5));
                    let batch = previous.map(|p| rows.saturating_sub(p));
                    let log_now = tracker
                        .last_log
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
                    if log_now {
                        tracker.last_log = Some(now);
                    }
                    self.refresh_backfill_view(batch, Some(took));
                    if log_now {
                        self.log(
                            Level::Info,
                            format!(
                                "backfill: {} rows updated in {} batches",
                                crate::format::thousands(rows),
                                crate::format::thousands(u64::try_from(batches).unwrap_or(0))
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Recomputes the Backfill pane from the tracker.
    fn refresh_backfill_view(&mut self, batch: Option<u64>, took: Option<Duration>) {
        let Some(tracker) = &self.backfill else {
            return;
        };
        let rows_done = tracker.recent.last().map_or(0, |(_, rows)| *rows);
        let elapsed = tracker.started.elapsed().as_secs_f64();
        let average = if elapsed > 0.0 {
            rows_done.saturating_sub(tracker.rows_at_start) as f64 / elapsed
        } else {
            0.0
        };
        let now_rate = match (tracker.recent.first(), tracker.recent.last()) {
            (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => {
                r1.saturating_sub(*r0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => average,
        };
        let total = tracker.estimate.unwrap_or(0).max(rows_done);
        // An ETA from the first seconds would only mislead.
        let eta = (elapsed >= 10.0 && average > 0.0 && total > rows_done)
            .then(|| Duration::from_secs_f64((total - rows_done) as f64 / average));
        let previous = self.app.backfill.take();
        self.app.backfill = Some(BackfillView {
            table: tracker.table.clone(),
            rows_done,
            rows_total: total,
            rows_per_second_now: now_rate,
            rows_per_second_average: average,
            eta,
            batch_size: batch.unwrap_or_else(|| previous.as_ref().map_or(0, |v| v.batch_size)),
            last_batch: took
                .unwrap_or_else(|| previous.as_ref().map_or(Duration::ZERO, |v| v.last_batch)),
            batch_target: None,
            throttle_reason: None,
            paused: false,
            finished: false,
        });
        self.dirty = true;
    }

    /// Shows the running backfill's migration as throttled, paused or running again.
    fn set_backfill_state(&mut self, state: MigrationState) {
        let Some(migration) = self.backfill.as_ref().map(|t| t.migration.clone()) else {
            return;
        };
        if let Some(row) = self.app.migrations.iter_mut().find(|m| m.name == migration) {
            row.state = state;
        }
        self.dirty = true;
    }

    /// The backfill finished: every row that needed it is done.
    fn finish_backfill_view(&mut self) {
        let Some(view) = &mut self.app.backfill else {
            return;
        };
        view.rows_total = view.rows_done;
        view.eta = None;
        view.rows_per_second_now = 0.0;
        view.finished = true;
        let text = format!(
            "backfill of {} finished: {} rows updated",
            view.table,
            crate::format::thousands(view.rows_done)
        );
        self.log(Level::Info, text);
    }
}
