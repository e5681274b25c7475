//! Runs a plan's phases: `start` = expand then backfill, `complete` = contract,
//! `rollback` = the rollback steps (only before contract). Every command is idempotent
//! and resumable: steps already recorded as done are skipped, so running a command again
//! after a crash continues from the last completed step, and running a finished one
//! again changes nothing and says so.

use std::fmt;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use super::admission::{self, Admission};
use super::backfill::{self, FixedBatches, Pacing, Steering};
use super::backfill_control::BackfillControl;
use super::ddl::{self, LockRetry};
use super::event::{Event, Events};
use super::identity::Identity;
use super::lock::{Held, RunLock};
use super::pacing::AdaptiveBatches;
use super::reconnect::{self, Outage};
use super::state::{self, MigrationRecord, StepKey};
use super::throttle::Throttle;
use super::{phase_name, Context, EngineOptions, Error, Status};
use crate::db::{redact_url, DatabaseUrl};
use crate::plan::{self, LockLevel, Phase, Plan, Step, StepAction};

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran (or resumed) and left the migration in `status`.
    Ran {
        migration: String,
        status: Status,
        steps_run: usize,
    },
    /// There was nothing to do; `reason` says why.
    NothingToDo {
        migration: String,
        status: Status,
        reason: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ran {
                migration,
                status,
                steps_run,
            } => write!(f, "{migration}: {status} ({steps_run} steps run)"),
            Outcome::NothingToDo {
                migration, reason, ..
            } => write!(f, "{migration}: nothing to do, {reason}"),
        }
    }
}

/// A connection to the target database holding zdm's run lock: the only way zdm
/// changes a database.
#[derive(Debug)]
pub struct Engine {
    conn: PgConnection,
    lock: RunLock,
    /// Where `conn` can be opened (identity and session settings applied): the main
    /// server first, then the failover servers; `target` is the one in use.
    servers: Vec<PgConnectOptions>,
    target: usize,
    options: EngineOptions,
    who: Identity,
    events: Events,
    steering: Steering,
}

impl Engine {
    /// Connects to the target, takes the run lock and creates schema `zdm` if needed.
    pub async fn connect(url: &DatabaseUrl, options: EngineOptions) -> Result<Self, Error> {
        let connect_options = url.connect_options().map_err(|source| Error::Connect {
            url: redact_url(url.expose()),
            source,
        })?;
        Self::connect_with(connect_options, options).await
    }

    /// [`Engine::connect`] with already parsed connection options.
    pub async fn connect_with(
        connect_options: PgConnectOptions,
        options: EngineOptions,
    ) -> Result<Self, Error> {
        let who = Identity::current();
        let connect_options =
            crate::db::run_session(who.apply(connect_options), options.ddl.statement_timeout);
        let lock = RunLock::acquire(&connect_options).await?;
        // A silent server must not hang the command: the engine's connections give up
        // after libpq's default connect timeout too.
        let mut conn = crate::db::connect_within(
            &connect_options,
            Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT),
        )
        .await
        .map_err(|source| Error::Connect {
            url: super::lock::target(&connect_options),
            source,
        })?;
        prepare_session(&mut conn).await;
        state::ensure(&mut conn).await?;
        let mut servers = vec![connect_options];
        for url in &options.failover {
            let failover = url.connect_options().map_err(|source| Error::Connect {
                url: redact_url(url.expose()),
                source,
            })?;
            servers.push(crate::db::run_session(
                who.apply(failover),
                options.ddl.statement_timeout,
            ));
        }
        Ok(Engine {
            conn,
            lock,
            servers,
            target: 0,
            steering: Steering {
                control: BackfillControl::new(options.backfill.clone()),
                throttle: None,
                batch_timeout: options.batch_timeout,
                connect: None,
            },
            options,
            who,
            events: Events::none(),
        })
    }

    /// Sends what happens from now on to `events`.
    pub fn set_events(&mut self, events: Events) {
        self.events = events;
    }

    /// The handle that steers this engine's backfills (pause, resume, settings, stop).
    /// A stop request also stops the command before its next step.
    pub fn control(&self) -> BackfillControl {
        self.steering.control.clone()
    }

    /// Backfills wait for `throttle` between batches from now on. Its settings become
    /// the control handle's throttle settings (the handle is where they change later).
    pub fn set_throttle(&mut self, throttle: Throttle) {
        let settings = throttle.settings().clone();
        self.steering.control.update(|s| s.throttle = settings);
        self.steering.throttle = Some(throttle);
    }

    /// Releases the run lock and closes the connections.
    pub async fn close(self) -> Result<(), Error> {
        let _ = self.conn.close().await;
        self.lock.release().await
    }

    /// `zdm start`: expand, then backfill. A migration already started resumes with the
    /// plan it was started with; a rolled-back one starts over with `plan`.
    pub async fn start(&mut self, plan: &Plan, checksum: &str) -> Result<Outcome, Error> {
        let name = plan.migration.as_str();
        let record = state::get(&mut self.conn, name).await?;
        let (plan, from) = match (admission::start(record.as_ref(), checksum), record) {
            (Admission::Start, _) => {
                self.refuse_if_another_in_flight(name).await?;
                state::insert(&mut self.conn, plan, checksum, &self.who).await?;
                (plan.clone(), Status::Expanding)
            }
            (Admission::Restart, _) => {
                self.refuse_if_another_in_flight(name).await?;
                state::restart(&mut self.conn, plan, checksum, &self.who).await?;
                (plan.clone(), Status::Expanding)
            }
            (Admission::NothingToDo { status, reason }, _) => {
                return Ok(Outcome::NothingToDo {
                    migration: name.to_string(),
                    status,
                    reason,
                })
            }
            (Admission::ChecksumChanged { recorded, file }, _) => {
                return Err(Error::ChecksumChanged {
                    name: name.to_string(),
                    recorded,
                    file,
                })
            }
            (Admission::RollbackInProgress, _) => {
                return Err(Error::RollbackInProgress {
                    name: name.to_string(),
                })
            }
            (Admission::Resume(status), record) => {
                tracing::info!(migration = name, %status, "resuming start");
                // Resume runs the plan recorded at the start (there is a record: a
                // migration never recorded is admitted as Start).
                (record.map_or_else(|| plan.clone(), |r| r.plan), status)
            }
        };
        let phases = [Phase::Expand, Phase::Backfill];
        self.run_command(&plan, from, "start", None, &phases, Status::ReadyToContract)
            .await
    }

    /// `zdm init`: runs a baseline plan (`plan::baseline`) and records it complete; again,
    /// it does nothing. Refused while a migration is in flight.
    pub async fn init(&mut self, plan: &Plan) -> Result<Outcome, Error> {
        let name = plan.migration.as_str();
        let from = match state::get(&mut self.conn, name).await? {
            Some(record) if record.status == Status::Complete => {
                return Ok(nothing(
                    &record,
                    "the baseline is already there".to_string(),
                ))
            }
            Some(record) => record.status,
            None => {
                self.refuse_if_another_in_flight(name).await?;
                state::insert(&mut self.conn, plan, plan::BASELINE, &self.who).await?;
                Status::Expanding
            }
        };
        let phases = [Phase::Expand, Phase::Backfill];
        self.run_command(plan, from, "init", None, &phases, Status::Complete)
            .await
    }

    /// `zdm import --adopt`: records a migration another tool already applied as complete,
    /// with the checksum of its imported file and a plan of no steps (nothing runs), so
    /// that zdm takes over from the next one. A migration zdm already knows is left as it is.
    pub async fn adopt(&mut self, plan: &Plan, checksum: &str) -> Result<Outcome, Error> {
        let name = plan.migration.as_str();
        if let Some(record) = state::get(&mut self.conn, name).await? {
            return Ok(nothing(&record, "zdm already records it".to_string()));
        }
        self.refuse_if_another_in_flight(name).await?;
        state::insert(&mut self.conn, plan, checksum, &self.who).await?;
        self.run_command(
            plan,
            Status::Expanding,
            "adopt",
            None,
            &[Phase::Expand],
            Status::Complete,
        )
        .await
    }

    /// `zdm complete`: contract, irreversible; only with the migration's name typed
    /// as confirmation, and only once start has finished.
    pub async fn complete(&mut self, name: &str, confirmation: &str) -> Result<Outcome, Error> {
        if confirmation != name {
            return Err(Error::ConfirmationMismatch {
                name: name.to_string(),
                given: confirmation.to_string(),
            });
        }
        let record = self.recorded(name).await?;
        match record.activity() {
            Status::ReadyToContract | Status::Contracting => {}
            Status::Complete => {
                return Ok(nothing(&record, "it is already complete".to_string()));
            }
            Status::RolledBack => {
                return Err(Error::WasRolledBack {
                    name: name.to_string(),
                })
            }
            _ => {
                return Err(Error::NotReadyToContract {
                    name: name.to_string(),
                    status: describe(&record),
                })
            }
        }
        let phases = [Phase::Contract];
        self.run_command(
            &record.plan,
            record.status,
            "complete",
            Some(confirmation),
            &phases,
            Status::Complete,
        )
        .await
    }

    /// `zdm rollback`: undo expand and backfill; refused once contract has started.
    pub async fn rollback(&mut self, name: &str) -> Result<Outcome, Error> {
        let record = self.recorded(name).await?;
        match record.activity() {
            Status::Contracting | Status::Complete => {
                let since = record
                    .contract_started_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "an unknown time".to_string());
                return Err(Error::ContractStarted {
                    name: name.to_string(),
                    since,
                });
            }
            Status::RolledBack => {
                return Ok(nothing(&record, "it is already rolled back".to_string()));
            }
            _ => {}
        }
        let phases = [Phase::Rollback];
        self.run_command(
            &record.plan,
            record.status,
            "rollback",
            None,
            &phases,
            Status::RolledBack,
        )
        .await
    }

    /// The plan stored for migration `name` when it started (None: not started).
    pub async fn recorded_plan(&mut self, name: &str) -> Result<Option<Plan>, Error> {
        Ok(state::get(&mut self.conn, name)
            .await?
            .map(|record| record.plan))
    }

    async fn recorded(&mut self, name: &str) -> Result<MigrationRecord, Error> {
        state::get(&mut self.conn, name)
            .await?
            .ok_or_else(|| Error::NotStarted {
                name: name.to_string(),
            })
    }

    /// Only one migration is in flight (between start and complete/rollback) at a time:
    /// each version's views are built on the one before.
    async fn refuse_if_another_in_flight(&mut self, name: &str) -> Result<(), Error> {
        let records = state::list(&mut self.conn).await?;
        let in_flight = records.into_iter().find(|record| {
            record.name != name && !matches!(record.status, Status::Complete | Status::RolledBack)
        });
        match in_flight {
            Some(other) => Err(Error::AnotherInFlight {
                name: name.to_string(),
                status: describe(&other),
                other: other.name,
            }),
            None => Ok(()),
        }
    }

    /// Runs `phases` in order (each under its status), records the command in
    /// `zdm.runs`, and on error marks the migration failed with the error's text. Every
    /// status written is compare-and-set on the one this run last read or wrote (`from`
    /// first), and nothing is written once the run lost its lock to another session.
    #[allow(clippy::too_many_arguments)]
    async fn run_command(
        &mut self,
        plan: &Plan,
        from: Status,
        command: &str,
        confirmation: Option<&str>,
        phases: &[Phase],
        final_status: Status,
    ) -> Result<Outcome, Error> {
        let name = plan.migration.as_str();
        let run = state::begin_run(&mut self.conn, name, command, confirmation, &self.who).await?;
        let mut steps_run = 0;
        let mut current = from;
        for &phase in phases {
            // A lost connection is waited out (within the budget) and the phase resumed:
            // its steps done are skipped and a backfill goes on from its checkpoint.
            let failed = loop {
                let error = match self
                    .run_phase(plan, phase, &mut current, &mut steps_run)
                    .await
                {
                    Ok(()) => break None,
                    Err(error) if error.connection_lost() => error,
                    Err(error) => break Some(error),
                };
                if let Err(stop) = self.recover(&error).await {
                    break Some(stop);
                }
                if let Err(stop) = self.expect_status(name, current).await {
                    break Some(stop);
                }
            };
            if let Some(error) = failed {
                let text = error.to_string();
                if error.lost_the_run() {
                    // Another session may be running this migration now, or a command
                    // changed it: its record is theirs, not this run's to overwrite.
                    tracing::error!(migration = name, phase = phase_name(phase), "{text}");
                    if let Err(other) =
                        state::finish_run(&mut self.conn, run, &format!("stopped: {text}")).await
                    {
                        tracing::warn!(error = %other, "could not record the stop");
                    }
                    return Err(error);
                }
                if matches!(
                    error,
                    Error::Stopped { .. }
                        | Error::StoppedBetweenSteps { .. }
                        | Error::Unreachable { .. }
                ) {
                    // Asked to stop: not a failure. The status stays, a rerun resumes.
                    tracing::warn!(migration = name, phase = phase_name(phase), "{text}");
                    if let Err(other) =
                        state::finish_run(&mut self.conn, run, &format!("stopped: {text}")).await
                    {
                        tracing::warn!(error = %other, "could not record the stop");
                    }
                    return Err(error);
                }
                tracing::error!(migration = name, phase = phase_name(phase), error = %text, "stopped");
                let recorded = match state::set_failed(
                    &mut self.conn,
                    name,
                    current,
                    Status::during(phase),
                    &text,
                )
                .await
                {
                    Ok(()) => {
                        state::finish_run(&mut self.conn, run, &format!("failed: {text}")).await
                    }
                    Err(other) => Err(other),
                };
                if let Err(other) = recorded {
                    tracing::warn!(error = %other, "could not record the failure");
                }
                return Err(error);
            }
        }
        loop {
            let error = match state::set_status(&mut self.conn, name, current, final_status).await {
                Ok(()) => break,
                Err(error) if error.connection_lost() => error,
                Err(error) => return Err(error),
            };
            self.recover(&error).await?;
            // The write may have committed before its answer was lost.
            if self.expect_status(name, final_status).await.is_ok() {
                break;
            }
            self.expect_status(name, current).await?;
        }
        if current != final_status {
            self.events.emit(Event::StatusChanged {
                migration: name.to_string(),
                status: final_status,
            });
        }
        if let Err(error) = state::finish_run(&mut self.conn, run, final_status.key()).await {
            tracing::warn!(%error, "could not record the command's outcome in zdm.runs");
        }
        tracing::info!(migration = name, status = %final_status, steps_run, "{command} finished");
        Ok(Outcome::Ran {
            migration: name.to_string(),
            status: final_status,
            steps_run,
        })
    }

    async fn run_phase(
        &mut self,
        plan: &Plan,
        phase: Phase,
        current: &mut Status,
        steps_run: &mut usize,
    ) -> Result<(), Error> {
        let name = plan.migration.as_str();
        let done = state::done_positions(&mut self.conn, name, phase).await?;
        let steps: Vec<&Step> = plan.phase(phase).collect();
        self.hold_lock(name, *current).await?;
        state::set_status(&mut self.conn, name, *current, Status::during(phase)).await?;
        *current = Status::during(phase);
        // Said before the phase's first step to run (a phase resumed with every step done
        // has nothing to announce).
        let mut announced = false;
        for (index, step) in steps.iter().enumerate() {
            let position = i32::try_from(index).unwrap_or(i32::MAX);
            if done.contains(&position) {
                continue;
            }
            // Never change the database without holding the run lock.
            self.hold_lock(name, *current).await?;
            // A stop asked for between steps (a signal, an abort) ends the command here.
            if let Some(why) = self.steering.control.stop_requested() {
                return Err(Error::StoppedBetweenSteps {
                    before: label_of(phase, index, steps.len(), &step.description),
                    why,
                });
            }
            let label = label_of(phase, index, steps.len(), &step.description);
            tracing::info!(migration = name, step = %label, "running");
            let key = StepKey {
                migration: name,
                phase,
                position,
                description: &step.description,
            };
            if !announced {
                announced = true;
                self.events.emit(Event::StatusChanged {
                    migration: name.to_string(),
                    status: *current,
                });
                if phase == Phase::Backfill {
                    super::table_size::before_backfill(&mut self.conn, plan).await;
                }
            }
            self.events.emit(Event::StepStarted {
                migration: name.to_string(),
                phase,
                index,
                total: steps.len(),
                description: step.description.clone(),
            });
            let started = std::time::Instant::now();
            self.run_step(&key, &label, step).await?;
            self.events.emit(Event::StepFinished {
                migration: name.to_string(),
                phase,
                index,
                total: steps.len(),
                took: started.elapsed(),
            });
            *steps_run += 1;
        }
        // What the phase promised exists (and is valid), or the run says so.
        let due = super::promises::due_after(plan, phase);
        let broken = super::promises::broken(&mut self.conn, &due)
            .await
            .context("checking what the plan promised")?;
        if !broken.is_empty() {
            return Err(Error::PromiseBroken {
                phase: phase_name(phase),
                broken,
            });
        }
        if announced && matches!(phase, Phase::Backfill | Phase::Contract) {
            super::table_size::report(&mut self.conn, &self.events, plan, phase).await;
        }
        Ok(())
    }

    /// Makes sure the run lock is held; when it had to be taken again, the record must
    /// still say `expected` (no other command ran while the lock was free).
    async fn hold_lock(&mut self, name: &str, expected: Status) -> Result<(), Error> {
        if self.lock.hold().await? == Held::Retaken {
            self.expect_status(name, expected).await?;
        }
        Ok(())
    }

    /// [`Error::StatusChanged`] unless the migration's record says `expected`.
    async fn expect_status(&mut self, name: &str, expected: Status) -> Result<(), Error> {
        let found = match state::get(&mut self.conn, name).await? {
            Some(record) if record.status == expected => return Ok(()),
            Some(record) => record.status.to_string(),
            None => "not recorded".to_string(),
        };
        Err(Error::StatusChanged {
            name: name.to_string(),
            expected: expected.to_string(),
            found,
        })
    }

    /// Waits for the database after `lost` (the engine's or the run lock's connection
    /// went away): opens the engine's connection again on a primary and makes sure the
    /// run lock is held, trying with backoff until the reconnect budget is spent
    /// ([`Error::Unreachable`]). Fails at once when another session took the lock.
    async fn recover(&mut self, lost: &Error) -> Result<(), Error> {
        tracing::warn!(error = %lost, "lost the connection to the database; reconnecting");
        let mut outage = Outage::new(self.options.reconnect_budget);
        loop {
            let why = match self.connect_to_a_primary().await {
                Ok(mut conn) => {
                    prepare_session(&mut conn).await;
                    self.conn = conn;
                    match self.lock.hold().await {
                        Ok(_) => {
                            tracing::info!(
                                down_ms = outage.down_for().as_millis() as u64,
                                "reconnected to the database; the run lock is held"
                            );
                            return Ok(());
                        }
                        Err(error @ Error::LockTaken { .. }) => return Err(error),
                        Err(error) => error.to_string(),
                    }
                }
                Err(why) => why,
            };
            outage.failed(&why, &self.events).await?;
        }
    }

    /// A new connection to the first server that answers as a primary, the one in use
    /// first; the run lock follows it there.
    async fn connect_to_a_primary(&mut self) -> Result<PgConnection, String> {
        let mut reasons = Vec::new();
        let count = self.servers.len();
        for index in (0..count).map(|i| (self.target + i) % count) {
            let server = &self.servers[index];
            match reconnect::connect_primary(server).await {
                Ok(conn) => {
                    if index != self.target {
                        tracing::warn!(
                            server = %super::lock::target(server),
                            "failing over: this server answers as the primary now"
                        );
                        self.target = index;
                        self.lock.retarget(server.clone());
                    }
                    return Ok(conn);
                }
                Err(why) if count > 1 => {
                    reasons.push(format!("{}: {why}", super::lock::target(server)))
                }
                Err(why) => reasons.push(why),
            }
        }
        Err(reasons.join("; "))
    }

    async fn run_step(&mut self, key: &StepKey<'_>, label: &str, step: &Step) -> Result<(), Error> {
        let policy = &self.options.ddl.clone();
        match &step.action {
            StepAction::Backfill(spec) => {
                let mut pacing: Box<dyn Pacing + Send> = match self.options.batch_size {
                    Some(size) => Box::new(FixedBatches { size }),
                    None => Box::new(AdaptiveBatches::new(
                        self.steering.control.settings().pacing,
                    )),
                };
                // The workers connect where the engine's connection is now (after a
                // failover too), as the same session (name, settings).
                self.steering.connect = Some(self.servers[self.target].clone());
                backfill::run(
                    &mut self.conn,
                    Some(&mut self.lock),
                    key,
                    label,
                    spec,
                    policy,
                    pacing.as_mut(),
                    &self.events,
                    &mut self.steering,
                )
                .await?;
                Ok(())
            }
            StepAction::Sql {
                sql,
                transactional: true,
            } => {
                let mut retry =
                    LockRetry::new(policy, label.to_string(), step.lock).with_events(&self.events);
                loop {
                    let attempts = retry.begin_attempt();
                    let result =
                        ddl::try_in_transaction(&mut self.conn, policy, sql, key, attempts).await;
                    match result {
                        Ok(()) => return Ok(()),
                        Err(error) if ddl::is_lock_timeout(&error) => {
                            let blockers = blockers_of(&mut self.conn, step, step.lock).await;
                            retry.back_off(&error, blockers).await?
                        }
                        Err(source) => {
                            return Err(Error::StepFailed {
                                step: label.to_string(),
                                source,
                            })
                        }
                    }
                }
            }
            StepAction::Sql {
                sql,
                transactional: false,
            } => self.run_outside_transaction(key, label, step, sql).await,
        }
    }

    /// A statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY), tried
    /// until it gets its locks. An invalid index left by an interrupted earlier build of
    /// the same index (a killed run, a failed try) is dropped first, so that `IF NOT
    /// EXISTS` cannot mistake it for a finished one.
    async fn run_outside_transaction(
        &mut self,
        key: &StepKey<'_>,
        label: &str,
        step: &Step,
        sql: &str,
    ) -> Result<(), Error> {
        let policy = &self.options.ddl.clone();
        // The index the step builds concurrently, as the plan says (never read from its SQL).
        let index = step.concurrent_index();
        // An index build waits for every transaction that could write the table: the
        // ones holding locks that conflict with SHARE.
        let waits_for = if index.is_some() {
            LockLevel::Share
        } else {
            step.lock
        };
        let mut retry =
            LockRetry::new(policy, label.to_string(), step.lock).with_events(&self.events);
        loop {
            let attempts = retry.begin_attempt();
            if let Some(build) = index {
                let leftover = ddl::leftover_index(&mut self.conn, &build.name, &step.locked)
                    .await
                    .context("looking for an invalid index left by an earlier build")?;
                match leftover {
                    Some((index, Some(pid))) => {
                        let reason = format!(
                            "an earlier build of index {index} is still running in server \
                             process {pid}"
                        );
                        retry.back_off(&reason, Vec::new()).await?;
                        continue;
                    }
                    Some((index, None)) => {
                        tracing::warn!(step = label, index = %index, "dropping the invalid index an interrupted build left");
                        ddl::drop_invalid_index(&mut self.conn, policy, &index).await?;
                    }
                    None => {}
                }
            }
            let before = ddl::invalid_indexes(&mut self.conn, &step.locked)
                .await
                .context("listing invalid indexes")?;
            let result = ddl::try_outside_transaction(&mut self.conn, policy, sql).await;
            let error = match result {
                Ok(()) => {
                    return state::mark_step_done(&mut self.conn, key, attempts)
                        .await
                        .context("recording the step as done");
                }
                Err(error) => error,
            };
            // A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind; drop the
            // ones this try left so the next try starts clean.
            let after = ddl::invalid_indexes(&mut self.conn, &step.locked)
                .await
                .context("listing invalid indexes")?;
            for (oid, index) in after {
                if !before.iter().any(|(old, _)| *old == oid) {
                    tracing::warn!(step = label, index = %index, "dropping the invalid index a failed try left");
                    ddl::drop_invalid_index(&mut self.conn, policy, &index).await?;
                }
            }
            if ddl::is_lock_timeout(&error) {
                let blockers = blockers_of(&mut self.conn, step, waits_for).await;
                retry.back_off(&error, blockers).await?;
            } else {
                return Err(Error::StepFailed {
                    step: label.to_string(),
                    source: error,
                });
            }
        }
    }
}

/// Session settings of the engine's connection that only a statement can set.
pub(super) async fn prepare_session(conn: &mut PgConnection) {
    // When zdm dies mid-statement (kill -9, SSH drop), let the server notice the closed
    // connection and cancel the statement instead of finishing an orphaned index build.
    // PostgreSQL 14 and later only; older servers keep their default.
    if let Err(error) = conn
        .execute("SET client_connection_check_interval = '1s'")
        .await
    {
        tracing::debug!(%error, "client_connection_check_interval is not available");
    }
    crate::db::keep_session_open(conn).await;
}

/// Who holds locks that `step` waits for; for logs and errors only, so a failure to
/// find out is logged and ignored.
async fn blockers_of(conn: &mut PgConnection, step: &Step, wanted: LockLevel) -> Vec<ddl::Blocker> {
    match ddl::blockers(conn, &step.locked, wanted).await {
        Ok(blockers) => blockers,
        Err(error) => {
            tracing::debug!(%error, "could not list the sessions holding conflicting locks");
            Vec::new()
        }
    }
}

/// "backfill step 2 of 3 (backfill orders)": how a step is named in logs and errors.
fn label_of(phase: Phase, index: usize, total: usize, description: &str) -> String {
    format!(
        "{} step {} of {total} ({description})",
        phase_name(phase),
        index + 1
    )
}

fn nothing(record: &MigrationRecord, reason: String) -> Outcome {
    Outcome::NothingToDo {
        migration: record.name.clone(),
        status: record.status,
        reason,
    }
}

/// "ready to contract", or "failed while expanding: <error>".
fn describe(record: &MigrationRecord) -> String {
    match (record.status, record.failed_during) {
        (Status::Failed, Some(during)) => format!("failed while {during}"),
        (status, _) => status.to_string(),
    }
}
