//! The console's background work on the database: every call runs in a tokio task here and
//! reports through a channel, so the event loop never waits for the database. It polls the
//! migration files and the recorded state (also the connection watchdog), plans the
//! selected migration and evaluates contract gates. Engine commands run in runner
//! processes of their own, never here (see [`super::runs`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::app::{GateRow, Level, MigrationRow, MigrationState, Verdict};
use super::runs::RunUpdate;
use crate::config::Config;
use crate::engine::identity;
use crate::engine::state::{self, MigrationRecord};
use crate::engine::{source, Status};
use crate::gates;
use crate::migration::{self, Migration};
use crate::plan::{Phase, Plan};

/// How long a status read may take before the connection is dropped and made again.
/// (The watchdog reports "not responding" long before: it measures from the outside.)
const POLL_GIVE_UP: Duration = Duration::from_secs(30);

/// What a background task reports to the event loop.
#[derive(Debug)]
pub enum Update {
    /// A status read is about to be sent to the database.
    Polling,
    /// The files and the recorded state, merged.
    Status(Box<StatusSnapshot>),
    /// The status read failed with an answer (refused, error): the database is reachable
    /// or definitely not, but it did answer.
    StatusFailed(String),
    /// The status read got no answer in [`POLL_GIVE_UP`]; the connection is remade.
    StatusNoAnswer,
    /// The plan of a migration not started yet, or why there is none.
    Plan {
        migration: String,
        plan: Result<Plan, String>,
    },
    /// The contract gates of a migration.
    Gates {
        migration: String,
        gates: Vec<GateRow>,
    },
    /// Something about a run: spawned, found, attached, an event, a reply.
    Run(RunUpdate),
    /// A line for the log.
    Log(Level, String),
}

/// The migrations list and what is recorded about each.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    pub rows: Vec<MigrationRow>,
    /// Recorded migrations: the plan they run and the index of their current step.
    pub plans: Vec<(String, Plan, Option<usize>)>,
}

/// The console's handle on its background database tasks.
#[derive(Debug)]
pub struct Backend {
    config: Arc<Config>,
    updates: UnboundedSender<Update>,
    poll_now: Arc<Notify>,
    poller: JoinHandle<()>,
}

impl Backend {
    /// Starts the status poller; its updates go to the given channel.
    pub fn start(
        config: Arc<Config>,
        interval: Duration,
        updates: UnboundedSender<Update>,
    ) -> Backend {
        let poll_now = Arc::new(Notify::new());
        let poller = tokio::spawn(poll_loop(
            config.clone(),
            interval,
            updates.clone(),
            poll_now.clone(),
        ));
        Backend {
            config,
            updates,
            poll_now,
            poller,
        }
    }

    /// Asks for a status read now rather than at the next interval.
    pub fn refresh(&self) {
        self.poll_now.notify_one();
    }

    /// Plans `migration` (a file not started yet) in the background.
    pub fn plan(&self, migration: String) {
        let config = self.config.clone();
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let plan = plan_file(&config, &migration).await.map(|p| p.plan);
            let _ = updates.send(Update::Plan { migration, plan });
        });
    }

    /// Evaluates the contract gates of `migration` from its recorded state.
    pub fn gates(&self, migration: String) {
        let config = self.config.clone();
        let updates = self.updates.clone();
        tokio::spawn(async move {
            // The gates watch the database for their observation window ([gates] window_s)
            // before they judge; the dialog says so meanwhile and refuses to contract.
            let gates = match gates::command::report(&config, &migration, None).await {
                Ok(report) => report.gates.iter().map(GateRow::from).collect(),
                Err(error) => vec![GateRow {
                    name: "gates".into(),
                    result: Verdict::Unknown,
                    evidence: format!("the safety gates could not be evaluated: {error}"),
                }],
            };
            let _ = updates.send(Update::Gates { migration, gates });
        });
    }
}

/// Loads and plans the file of migration `name` against the live catalog.
async fn plan_file(config: &Config, name: &str) -> Result<source::Planned, String> {
    let mut catalog = connect_plain(config).await?;
    let planned = source::load_and_plan(config, &mut catalog, Some(name)).await;
    let _ = catalog.close().await;
    planned.map_err(|e| e.to_string())
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// A reading connection (no run lock), named like every zdm connection.
async fn connect_plain(config: &Config) -> Result<PgConnection, String> {
    let url = config.database_url().map_err(|e| e.to_string())?;
    identity::connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// Reads the files and the recorded state every `interval` (or when asked), on one
/// connection that is made again after a failure.
async fn poll_loop(
    config: Arc<Config>,
    interval: Duration,
    updates: UnboundedSender<Update>,
    poll_now: Arc<Notify>,
) {
    let mut conn: Option<PgConnection> = None;
    let mut reported_file_errors = BTreeSet::new();
    loop {
        let (files, file_errors) = read_files(&config);
        if file_errors != reported_file_errors {
            for error in file_errors.difference(&reported_file_errors) {
                let _ = updates.send(Update::Log(Level::Error, error.clone()));
            }
            reported_file_errors = file_errors;
        }
        if updates.send(Update::Polling).is_err() {
            return;
        }
        let read = tokio::time::timeout(POLL_GIVE_UP, async {
            let mut connection = match conn.take() {
                Some(connection) => connection,
                None => connect_plain(&config).await?,
            };
            let records = state::list_live(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
            conn = Some(connection);
            Ok::<_, String>(records)
        })
        .await;
        let update = match read {
            Ok(Ok(records)) => Update::Status(Box::new(merge(&files, &records))),
            Ok(Err(error)) => Update::StatusFailed(error),
            Err(_) => {
                conn = None;
                Update::StatusNoAnswer
            }
        };
        if updates.send(update).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = poll_now.notified() => {}
        }
    }
}

/// The valid migration files, and every error of the others (as log lines).
fn read_files(config: &Config) -> (Vec<Migration>, BTreeSet<String>) {
    let checked = migration::check_dir(&config.migrations_dir);
    let errors = checked
        .all()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    let files = checked
        .files
        .into_iter()
        .filter_map(|file| file.migration)
        .collect();
    (files, errors)
}

/// The list the console shows: every file in order, then recorded migrations whose file
/// is gone; a recorded checksum that differs from the file's is flagged, and a migration
/// that [`state::list_live`] found stopped shows so.
pub fn merge(files: &[Migration], records: &[MigrationRecord]) -> StatusSnapshot {
    let stopped = |record: &MigrationRecord| record.stopped.is_some();
    let mut rows = Vec::new();
    for file in files {
        let record = records.iter().find(|r| r.name == file.name);
        rows.push(MigrationRow {
            name: file.name.clone(),
            description: file.description.clone(),
            state: record.map_or(MigrationState::Pending, |r| state_of(r.status)),
            checksum_mismatch: record
                .is_some_and(|r| r.status != Status::RolledBack && r.checksum != file.checksum),
            stopped: record.is_some_and(stopped),
        });
    }
    for record in records {
        if !files.iter().any(|f| f.name == record.name) {
            // `zdm init`'s baseline has no file: it is the application's version before
            // the first migration (recorded with the checksum `baseline`).
            let description = if record.checksum == crate::plan::BASELINE {
                "the baseline version (zdm init): the application's version before the first migration"
            } else {
                "(its file is not in the migrations directory)"
            };
            rows.push(MigrationRow {
                name: record.name.clone(),
                description: Some(description.into()),
                state: state_of(record.status),
                checksum_mismatch: false,
                stopped: stopped(record),
            });
        }
    }
    let plans = records
        .iter()
        .map(|r| (r.name.clone(), r.plan.clone(), current_step(r)))
        .collect();
    StatusSnapshot { rows, plans }
}

/// The console's word for a recorded status.
pub fn state_of(status: Status) -> MigrationState {
    match status {
        Status::Pending => MigrationState::Pending,
        Status::Expanding => MigrationState::Expanding,
        Status::Backfilling => MigrationState::Backfilling,
        Status::ReadyToContract => MigrationState::ReadyToContract,
        Status::Contracting => MigrationState::Contracting,
        Status::Complete => MigrationState::Complete,
        Status::RollingBack => MigrationState::RollingBack,
        Status::RolledBack => MigrationState::RolledBack,
        Status::Failed => MigrationState::Failed,
    }
}

/// The index in `plan.steps` of the step running (or next) for a recorded migration.
fn current_step(record: &MigrationRecord) -> Option<usize> {
    let status = record.activity();
    let phase = match status {
        // Ready: contract's first step is the next one.
        Status::ReadyToContract => Phase::Contract,
        Status::Complete => {
            // Everything before rollback is done.
            return Some(
                record
                    .plan
                    .steps
                    .iter()
                    .position(|s| s.phase == Phase::Rollback)
                    .unwrap_or(record.plan.steps.len()),
            );
        }
        _ => status.running_phase()?,
    };
    let done = record
        .phases
        .iter()
        .find(|p| p.phase == phase)
        .map_or(0, |p| p.done as usize);
    step_index(&record.plan, phase, done)
}

/// The index in `plan.steps` of the `position`-th step of `phase`.
pub fn step_index(plan: &Plan, phase: Phase, position: usize) -> Option<usize> {
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.phase == phase)
        .nth(position)
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::PhaseProgress;
    use crate::plan::{LockLevel, Step, StepAction};

    fn step(phase: Phase) -> Step {
        Step {
            phase,
            description: format!("{phase:?}"),
            action: StepAction::Sql {
                sql: "SELECT 1".into(),
                transactional: true,
            },
            lock: LockLevel::None,
            locked: Vec::new(),
            rewrites: false,
            scans: false,
            unchecked: false,
            creates: Vec::new(),
        }
    }

    fn file(name: &str, checksum: &str) -> Migration {
        Migration {
            name: name.into(),
            description: None,
            operations: Vec::new(),
            checksum: checksum.into(),
            verify: Vec::new(),
        }
    }

    fn record(
        name: &str,
        checksum: &str,
        status: Status,
        done: &[(Phase, u32)],
    ) -> MigrationRecord {
        let now = chrono::Utc::now();
        MigrationRecord {
            name: name.into(),
            checksum: checksum.into(),
            version_schema: format!("public_{name}"),
            status,
            failed_during: None,
            error: None,
            started_at: now,
            ready_at: None,
            contract_started_at: None,
            finished_at: None,
            updated_at: now,
            started_by_os_user: "dba".into(),
            started_by_db_user: "postgres".into(),
            started_from_host: "bastion".into(),
            stopped: None,
            phases: done
                .iter()
                .map(|&(phase, done)| PhaseProgress {
                    phase,
                    done,
                    total: 2,
                })
                .collect(),
            plan: Plan {
                migration: name.into(),
                version_schema: format!("public_{name}"),
                steps: [
                    Phase::Expand,
                    Phase::Expand,
                    Phase::Backfill,
                    Phase::Contract,
                    Phase::Rollback,
                ]
                .into_iter()
                .map(step)
                .collect(),
                drops: Default::default(),
            },
        }
    }

    #[test]
    fn files_and_records_merge_with_changed_stopped_and_missing_files_flagged() {
        let files = [
            file("0001_a", "aaa"),
            file("0002_b", "bbb"),
            file("0003_c", "ccc"),
        ];
        let mut stopped = record("0002_b", "bbb", Status::Backfilling, &[(Phase::Expand, 2)]);
        stopped.stopped = Some("its last run ended without recording why".into());
        let mut records = [
            record("0001_a", "old", Status::Complete, &[]),
            stopped,
            record("0000_gone", "x", Status::RolledBack, &[]),
        ];
        let snapshot = merge(&files, &records);
        let rows: Vec<(&str, MigrationState, bool, bool)> = snapshot
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.state, r.checksum_mismatch, r.stopped))
            .collect();
        assert_eq!(
            rows,
            [
                ("0001_a", MigrationState::Complete, true, false),
                ("0002_b", MigrationState::Backfilling, false, true),
                ("0003_c", MigrationState::Pending, false, false),
                ("0000_gone", MigrationState::RolledBack, false, false),
            ]
        );
        records[1].stopped = None;
        let held = merge(&files, &records);
        assert!(!held.rows[1].stopped, "a zdm holds the run lock: it runs");
        let rolled_back = [record("0001_a", "old", Status::RolledBack, &[])];
        assert!(
            !merge(&files, &rolled_back).rows[0].checksum_mismatch,
            "a rolled-back migration may change before it starts again"
        );
    }

    #[test]
    fn the_current_step_follows_the_recorded_progress() {
        let expanding = record("m", "c", Status::Expanding, &[(Phase::Expand, 1)]);
        assert_eq!(current_step(&expanding), Some(1));
        let backfilling = record("m", "c", Status::Backfilling, &[(Phase::Expand, 2)]);
        assert_eq!(current_step(&backfilling), Some(2));
        let ready = record("m", "c", Status::ReadyToContract, &[]);
        assert_eq!(current_step(&ready), Some(3));
        let complete = record("m", "c", Status::Complete, &[]);
        assert_eq!(
            current_step(&complete),
            Some(4),
            "everything but rollback done"
        );
        let rolled_back = record("m", "c", Status::RolledBack, &[]);
        assert_eq!(current_step(&rolled_back), None);
        assert_eq!(step_index(&expanding.plan, Phase::Rollback, 0), Some(4));
        assert_eq!(step_index(&expanding.plan, Phase::Backfill, 1), None);
    }
}
