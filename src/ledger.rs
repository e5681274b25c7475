//! The ledger: the migration files joined with what the database recorded about them. It
//! is the one place that says whether a migration is pending, running, stopped, rolled
//! back or changed since it ran, which one may start next (the ordering rule), which plan
//! each runs and which step is current. `zdm start`, `plan`, `validate`, `status` and the
//! console all read it, so they agree.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::PgConnection;

use crate::db::catalog::Catalog;
use crate::engine::admission::{self, Admission};
use crate::engine::state::{self, MigrationRecord, Status};
use crate::migration::Migration;
use crate::plan::{self, Phase, Plan, PlanError};
use crate::suggest::did_you_mean;

/// One migration: its file, its record, or both.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// `None`: recorded, but its file is not in the directory (or it is `zdm init`'s
    /// baseline, which has none).
    pub file: Option<Migration>,
    /// `None`: never started on this database.
    pub record: Option<MigrationRecord>,
    /// Without zdm's state (schema `zdm`, e.g. a restore without it), a version schema's
    /// comment is all that says the migration started: that schema.
    pub version_schema_found: Option<String>,
}

/// Where a migration stands, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Its file is there; it never started on this database.
    Pending,
    /// It ran once and was rolled back: it starts again from its file.
    RolledBack,
    /// A zdm works on it now (holds the run lock).
    Running {
        status: Status,
    },
    /// Recorded in progress, but no zdm runs it (killed, interrupted, connection lost):
    /// it resumes where it stopped.
    Stopped {
        during: Status,
        why: String,
    },
    /// Stopped by an error while `during`.
    Failed {
        during: Status,
    },
    ReadyToContract,
    Complete,
}

impl Standing {
    /// Where the migration recorded as `record` stands.
    pub fn of(record: &MigrationRecord) -> Standing {
        match record.status {
            Status::Pending => Standing::Pending,
            Status::RolledBack => Standing::RolledBack,
            Status::ReadyToContract => Standing::ReadyToContract,
            Status::Complete => Standing::Complete,
            Status::Failed => Standing::Failed {
                during: record.activity(),
            },
            status => match &record.stopped {
                Some(why) => Standing::Stopped {
                    during: status,
                    why: why.clone(),
                },
                None => Standing::Running { status },
            },
        }
    }

    /// The word for a badge or a status line: "stopped while backfilling".
    pub fn label(&self) -> String {
        match self {
            Standing::Pending => "pending".into(),
            Standing::RolledBack => "rolled back".into(),
            Standing::Running { status } => status.to_string(),
            Standing::Stopped { during, .. } => format!("stopped while {during}"),
            Standing::Failed { during } => format!("failed while {during}"),
            Standing::ReadyToContract => Status::ReadyToContract.to_string(),
            Standing::Complete => Status::Complete.to_string(),
        }
    }
}

/// Why a migration may not start now; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no migration named {name} in {dir}{hint}")]
    UnknownMigration {
        name: String,
        dir: String,
        hint: String,
    },
    #[error("every migration in {dir} is complete: nothing to start")]
    NothingPending { dir: String },
    #[error(
        "{name} cannot start before {earlier}, which comes first in {dir} and is {status}: \
         migrations run in file-name order"
    )]
    OutOfOrder {
        name: String,
        earlier: String,
        status: String,
        dir: String,
    },
    #[error("{name} has no migration file in {dir}: only a file can be started")]
    NoFile { name: String, dir: String },
    #[error("{name} is running: one migration at a time")]
    Running { name: String },
    #[error("{0}")]
    Engine(String),
    #[error("{name} is {standing}: {why}")]
    Admission {
        name: String,
        standing: String,
        why: String,
    },
}

/// The migration files of one directory joined with one database's records.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub dir: PathBuf,
    /// The files in the order they run, then recorded migrations without a file, in the
    /// order they started.
    pub entries: Vec<Entry>,
}

impl Ledger {
    /// Reads the records of the database `conn` is connected to ([`state::list_live`]:
    /// a run without a holder of the run lock is stopped) and joins them with `files`
    /// (the migrations of `dir`, in file-name order). Without zdm's state, `catalog`'s
    /// version schemas say which migrations started, when a catalog is given.
    pub async fn load(
        conn: &mut PgConnection,
        dir: &Path,
        files: Vec<Migration>,
        catalog: Option<&Catalog>,
    ) -> Result<Ledger, crate::engine::Error> {
        if !state::exists(conn).await? {
            let mut ledger = Ledger::join(dir, files, Vec::new());
            if let Some(catalog) = catalog {
                ledger.started_from_catalog(catalog);
            }
            return Ok(ledger);
        }
        Ok(Ledger::join(dir, files, state::list_live(conn).await?))
    }

    /// The join itself: every file in order, then the records whose file is gone.
    pub fn join(dir: &Path, files: Vec<Migration>, mut records: Vec<MigrationRecord>) -> Ledger {
        let mut entries: Vec<Entry> = files
            .into_iter()
            .map(|file| {
                let record = records
                    .iter()
                    .position(|r| r.name == file.name)
                    .map(|index| records.swap_remove(index));
                Entry {
                    name: file.name.clone(),
                    file: Some(file),
                    record,
                    version_schema_found: None,
                }
            })
            .collect();
        records.sort_by(|a, b| (a.started_at, &a.name).cmp(&(b.started_at, &b.name)));
        entries.extend(records.into_iter().map(|record| Entry {
            name: record.name.clone(),
            file: None,
            record: Some(record),
            version_schema_found: None,
        }));
        Ledger {
            dir: dir.to_path_buf(),
            entries,
        }
    }

    fn started_from_catalog(&mut self, catalog: &Catalog) {
        let started = plan::names::version_schemas(catalog);
        for entry in &mut self.entries {
            entry.version_schema_found = started
                .iter()
                .find(|(_, _, migration)| *migration == entry.name)
                .map(|(schema, _, _)| schema.clone());
        }
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn dir_name(&self) -> String {
        self.dir.display().to_string()
    }

    /// The files, in the order they run.
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.file.is_some())
    }

    /// The migration `zdm start [NAME]` works on: `name`, or the first file not complete;
    /// refused when a file before it is not complete (each plan is made against the
    /// catalog its predecessors leave).
    pub fn choose(&self, name: Option<&str>) -> Result<&Entry, Refusal> {
        let files: Vec<&Entry> = self.files().collect();
        let position = match name {
            Some(name) => files.iter().position(|e| e.name == name).ok_or_else(|| {
                Refusal::UnknownMigration {
                    name: name.to_string(),
                    dir: self.dir_name(),
                    hint: did_you_mean(name, files.iter().map(|e| e.name.as_str())),
                }
            })?,
            None => files
                .iter()
                .position(|e| e.status() != Status::Complete)
                .ok_or_else(|| Refusal::NothingPending {
                    dir: self.dir_name(),
                })?,
        };
        if let Some(earlier) = files[..position]
            .iter()
            .find(|e| e.status() != Status::Complete)
        {
            return Err(Refusal::OutOfOrder {
                name: files[position].name.clone(),
                earlier: earlier.name.clone(),
                status: match &earlier.record {
                    Some(_) => earlier.standing().label(),
                    None => "not started".to_string(),
                },
                dir: self.dir_name(),
            });
        }
        Ok(files[position])
    }

    /// Whether `zdm start NAME` would start, restart or resume `name` now: what the
    /// console's `s` offers. `Ok` says which, and refusals say why not and what to do.
    pub fn may_start(&self, name: &str) -> Result<Admission, Refusal> {
        if let Some(running) = self.entries.iter().find(|e| e.is_running()) {
            return Err(Refusal::Running {
                name: running.name.clone(),
            });
        }
        let entry = match self.get(name) {
            Some(entry) if entry.file.is_none() => {
                return Err(Refusal::NoFile {
                    name: name.to_string(),
                    dir: self.dir_name(),
                })
            }
            _ => self.choose(Some(name))?,
        };
        let checksum = entry.file.as_ref().map_or("", |f| f.checksum.as_str());
        let refused = |why| Refusal::Admission {
            name: name.to_string(),
            standing: entry.standing().label(),
            why,
        };
        match admission::start(entry.record.as_ref(), checksum) {
            Admission::NothingToDo { reason, .. } => Err(refused(reason)),
            // The engine's own words for what it would refuse.
            Admission::ChecksumChanged { recorded, file } => Err(Refusal::Engine(
                crate::engine::Error::ChecksumChanged {
                    name: name.to_string(),
                    recorded,
                    file,
                }
                .to_string(),
            )),
            Admission::RollbackInProgress => Err(Refusal::Engine(
                crate::engine::Error::RollbackInProgress {
                    name: name.to_string(),
                }
                .to_string(),
            )),
            admitted => Ok(admitted),
        }
    }

    /// The files that have not started, in order: the ones after the last that started.
    /// (A rolled-back migration followed by a started one is not pending: it can only run
    /// again once the later one is undone too.)
    pub fn not_started(&self) -> &[Entry] {
        // Files come first in `entries`; recorded migrations without a file (the baseline
        // of `zdm init`) say nothing about the order of files.
        let files_end = self
            .entries
            .iter()
            .position(|e| e.file.is_none())
            .unwrap_or(self.entries.len());
        let files = &self.entries[..files_end];
        let first = files
            .iter()
            .rposition(Entry::has_started)
            .map_or(0, |index| index + 1);
        &files[first..]
    }

    /// What `zdm plan` shows: the plan of each file not started, each against the catalog
    /// the previous ones leave; with `only`, just that one's (its recorded plan when it has
    /// started).
    pub fn plans(
        &self,
        catalog: &Catalog,
        only: Option<&str>,
    ) -> Result<Vec<(Plan, Option<String>)>, PlanOrRefusal> {
        if let Some(name) = only {
            if let Some(entry) = self.files().find(|e| e.name == name) {
                if !self.not_started().iter().any(|e| e.name == name) {
                    if let Some(plan) = entry.recorded_plan() {
                        let description = entry.file.as_ref().and_then(|f| f.description.clone());
                        return Ok(vec![(plan.clone(), description)]);
                    }
                    return Err(PlanOrRefusal::AlreadyStarted {
                        name: name.to_string(),
                        schema: entry
                            .record
                            .as_ref()
                            .map(|r| r.version_schema.clone())
                            .or_else(|| entry.version_schema_found.clone())
                            .unwrap_or_else(|| format!("of a later migration than {name}")),
                    });
                }
            }
        }
        let mut current = catalog.clone();
        let mut plans = Vec::new();
        for entry in self.not_started() {
            let Some(migration) = &entry.file else {
                continue;
            };
            let (plan, after) = plan::plan_and_simulate(migration, &current)?;
            current = after;
            if only.is_none_or(|name| name == migration.name) {
                plans.push((plan, migration.description.clone()));
            }
            if only == Some(migration.name.as_str()) {
                break;
            }
        }
        Ok(plans)
    }
}

/// Why [`Ledger::plans`] has no plan to show.
#[derive(Debug, thiserror::Error)]
pub enum PlanOrRefusal {
    #[error(
        "migration {name} has already started (its version schema {schema} exists): \
         `zdm status` shows where it is"
    )]
    AlreadyStarted { name: String, schema: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl Entry {
    /// The recorded status, `Pending` when it never started.
    pub fn status(&self) -> Status {
        self.record.as_ref().map_or(Status::Pending, |r| r.status)
    }

    pub fn standing(&self) -> Standing {
        self.record.as_ref().map_or(Standing::Pending, Standing::of)
    }

    /// Whether a zdm works on it right now.
    pub fn is_running(&self) -> bool {
        matches!(self.standing(), Standing::Running { .. })
    }

    /// Whether it started on this database and was not rolled back.
    pub fn has_started(&self) -> bool {
        self.version_schema_found.is_some()
            || self
                .record
                .as_ref()
                .is_some_and(|r| r.status != Status::RolledBack)
    }

    /// The checksum of its file now, when it differs from the one recorded when it ran (a
    /// rolled-back migration may change before it starts again).
    pub fn checksum_changed(&self) -> Option<&str> {
        let (file, record) = (self.file.as_ref()?, self.record.as_ref()?);
        (record.status != Status::RolledBack && record.checksum != file.checksum)
            .then_some(file.checksum.as_str())
    }

    /// `zdm init`'s baseline: recorded, with no file.
    pub fn is_baseline(&self) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| r.checksum == plan::BASELINE)
    }

    /// The plan it runs: the one recorded when it started (not rolled back since).
    pub fn recorded_plan(&self) -> Option<&Plan> {
        self.record
            .as_ref()
            .filter(|r| r.status != Status::RolledBack)
            .map(|r| &r.plan)
    }

    /// The index in its recorded plan's steps of the step running (or next).
    pub fn current_step(&self) -> Option<usize> {
        let record = self.record.as_ref()?;
        let status = record.activity();
        let phase = match status {
            // Ready: contract's first step is the next one.
            Status::ReadyToContract => Phase::Contract,
            // Everything before rollback is done.
            Status::Complete => {
                return Some(
                    record
                        .plan
                        .steps
                        .iter()
                        .position(|s| s.phase == Phase::Rollback)
                        .unwrap_or(record.plan.steps.len()),
                )
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
}

/// The command that goes on with the migration recorded as `record` after it stopped or
/// failed.
pub fn resume_command(record: &MigrationRecord) -> String {
    let name = &record.name;
    match record.activity() {
        Status::Contracting => format!("zdm complete {name} --confirm-contract {name}"),
        Status::RollingBack => format!("zdm rollback {name}"),
        _ => format!("zdm start {name}"),
    }
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
    use std::path::Path;

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

    fn ledger(files: &[Migration], records: &[MigrationRecord]) -> Ledger {
        Ledger::join(Path::new("migrations"), files.to_vec(), records.to_vec())
    }

    #[test]
    fn files_and_records_join_with_changed_stopped_and_missing_files_flagged() {
        let files = [
            file("0001_a", "aaa"),
            file("0002_b", "bbb"),
            file("0003_c", "ccc"),
        ];
        let mut stopped = record("0002_b", "bbb", Status::Backfilling, &[(Phase::Expand, 2)]);
        stopped.stopped = Some("its last run ended without recording why".into());
        let records = [
            record("0001_a", "old", Status::Complete, &[]),
            stopped,
            record("0000_gone", "x", Status::RolledBack, &[]),
        ];
        let joined = ledger(&files, &records);
        let rows: Vec<(&str, String, bool)> = joined
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.standing().label(),
                    e.checksum_changed().is_some(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("0001_a", "complete".to_string(), true),
                ("0002_b", "stopped while backfilling".to_string(), false),
                ("0003_c", "pending".to_string(), false),
                ("0000_gone", "rolled back".to_string(), false),
            ]
        );
        let rolled_back = ledger(&files, &[record("0001_a", "old", Status::RolledBack, &[])]);
        assert!(
            rolled_back.entries[0].checksum_changed().is_none(),
            "a rolled-back migration may change before it starts again"
        );
    }

    #[test]
    fn may_start_answers_as_zdm_start_does() {
        let files = [file("0001_a", "aaa"), file("0002_b", "bbb")];
        // Rolled back: starts over (the console refused it once; `zdm start` did not).
        let rolled_back = ledger(&files, &[record("0001_a", "aaa", Status::RolledBack, &[])]);
        assert_eq!(rolled_back.may_start("0001_a"), Ok(Admission::Restart));
        let fresh = ledger(&files, &[]);
        assert_eq!(fresh.may_start("0001_a"), Ok(Admission::Start));
        // The ordering rule: a later file waits for the earlier one to complete.
        let refusal = fresh.may_start("0002_b").expect_err("refused").to_string();
        assert!(
            refusal.contains("cannot start before 0001_a") && refusal.contains("not started"),
            "{refusal}"
        );
        // Stopped mid-backfill: resumes; running: one at a time; ready: contract instead.
        let mut stopped = record("0001_a", "aaa", Status::Backfilling, &[(Phase::Expand, 2)]);
        stopped.stopped = Some("killed".into());
        let ledger_stopped = ledger(&files, &[stopped.clone()]);
        assert_eq!(
            ledger_stopped.may_start("0001_a"),
            Ok(Admission::Resume(Status::Backfilling))
        );
        let refusal = ledger_stopped
            .may_start("0002_b")
            .expect_err("refused")
            .to_string();
        assert!(
            refusal.contains("is stopped while backfilling"),
            "{refusal}"
        );
        stopped.stopped = None;
        let running = ledger(&files, &[stopped]);
        assert!(matches!(
            running.may_start("0001_a"),
            Err(Refusal::Running { .. })
        ));
        let ready = ledger(
            &files,
            &[record("0001_a", "aaa", Status::ReadyToContract, &[])],
        );
        let refusal = ready.may_start("0001_a").expect_err("refused").to_string();
        assert!(refusal.contains("zdm complete 0001_a"), "{refusal}");
        let changed = ledger(&files, &[record("0001_a", "zzz", Status::Failed, &[])]);
        let refusal = changed
            .may_start("0001_a")
            .expect_err("refused")
            .to_string();
        assert!(refusal.contains("must not change"), "{refusal}");
        let gone = ledger(&[], &[record("0001_a", "aaa", Status::RolledBack, &[])]);
        assert!(matches!(
            gone.may_start("0001_a"),
            Err(Refusal::NoFile { .. })
        ));
    }

    #[test]
    fn not_started_is_what_follows_the_last_started_file() {
        let files = [
            file("0001_a", "aaa"),
            file("0002_b", "bbb"),
            file("0003_c", "ccc"),
        ];
        let names = |l: &Ledger| -> Vec<String> {
            l.not_started().iter().map(|e| e.name.clone()).collect()
        };
        assert_eq!(names(&ledger(&files, &[])), ["0001_a", "0002_b", "0003_c"]);
        let one = [record("0001_a", "aaa", Status::Backfilling, &[])];
        assert_eq!(names(&ledger(&files, &one)), ["0002_b", "0003_c"]);
        let back = [record("0001_a", "aaa", Status::RolledBack, &[])];
        assert_eq!(
            names(&ledger(&files, &back)),
            ["0001_a", "0002_b", "0003_c"]
        );
        // `zdm init`'s baseline is recorded without a file: every file is still to run.
        let baseline = record("baseline", plan::BASELINE, Status::Complete, &[]);
        assert_eq!(
            names(&ledger(&files, &[baseline])),
            ["0001_a", "0002_b", "0003_c"]
        );
    }

    #[test]
    fn the_current_step_follows_the_recorded_progress() {
        let entry = |status, done: &[(Phase, u32)]| Entry {
            name: "m".into(),
            file: None,
            record: Some(record("m", "c", status, done)),
            version_schema_found: None,
        };
        assert_eq!(
            entry(Status::Expanding, &[(Phase::Expand, 1)]).current_step(),
            Some(1)
        );
        assert_eq!(
            entry(Status::Backfilling, &[(Phase::Expand, 2)]).current_step(),
            Some(2)
        );
        assert_eq!(entry(Status::ReadyToContract, &[]).current_step(), Some(3));
        assert_eq!(
            entry(Status::Complete, &[]).current_step(),
            Some(4),
            "everything but rollback done"
        );
        assert_eq!(entry(Status::RolledBack, &[]).current_step(), None);
        let plan = &record("m", "c", Status::Expanding, &[]).plan;
        assert_eq!(step_index(plan, Phase::Rollback, 0), Some(4));
        assert_eq!(step_index(plan, Phase::Backfill, 1), None);
    }
}
