//! The engine: the only part of zdm that changes a database. It runs a [`Plan`]'s steps
//! with lock-safe DDL, batched backfills with checkpoints, and keeps all of its state in
//! the target database (schema `zdm`) so that a killed run resumes where it stopped.
//!
//! [`Plan`]: crate::plan::Plan

pub mod admission;
pub mod backfill;
pub mod backfill_control;
pub mod backfill_ranges;
pub mod ddl;
pub mod event;
pub mod executor;
pub mod headless;
pub mod identity;
pub mod lock;
pub mod pacing;
pub mod progress;
pub mod promises;
pub mod reconnect;
pub mod repack;
pub mod settings;
pub mod state;
pub mod table_size;
pub mod throttle;
pub mod workers;

use std::time::Duration;

pub use backfill_control::BackfillControl;
pub use event::{Event, Events};
pub use executor::{Engine, Outcome};
pub use settings::BackfillSettings;
pub use state::Status;

/// What can stop the engine. Every message is meant for the DBA at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// Already redacted: never holds a password.
        url: String,
        source: sqlx::Error,
    },
    #[error("the database failed while {action}: {source}")]
    Database { action: String, source: sqlx::Error },
    #[error(
        "another zdm is already running migrations on this database: {holder}; \
         wait for it to finish or stop it, then run this command again"
    )]
    Locked { holder: Box<lock::Holder> },
    #[error(
        "zdm's run lock on this database was lost ({why}) and could not be taken again; \
         stopped before changing anything more so that no other zdm runs at the same \
         time. Run the command again to resume"
    )]
    LockLost { why: String },
    #[error(
        "zdm's run lock on this database was lost and {holder} took it meanwhile; \
         stopped before changing anything more, and recorded nothing over that run's \
         state. See `zdm status`"
    )]
    LockTaken { holder: Box<lock::Holder> },
    #[error(
        "migration {name} is now recorded as {found}, not {expected} as this run left it: \
         another zdm command changed it while this run did not hold the run lock. \
         Stopped, and recorded nothing over it; see `zdm status`"
    )]
    StatusChanged {
        name: String,
        expected: String,
        found: String,
    },
    #[error(
        "migration {name} already ran with checksum {recorded}, but its file now has \
         checksum {file}: a migration that ran must not change. Restore the file, or write \
         a new migration for the further change"
    )]
    ChecksumChanged {
        name: String,
        recorded: String,
        file: String,
    },
    #[error(
        "migration {name} has not been started on this database; run `zdm start {name}` first"
    )]
    NotStarted { name: String },
    #[error(
        "migration {name} cannot be rolled back: its contract phase started at {since} and \
         contract is irreversible; finish it with `zdm complete {name} --confirm-contract {name}`"
    )]
    ContractStarted { name: String, since: String },
    #[error(
        "migration {name} is not ready to contract (it is {status}); run `zdm start {name}` \
         until it is ready to contract"
    )]
    NotReadyToContract { name: String, status: String },
    #[error("migration {name} was rolled back; start it again with `zdm start {name}` first")]
    WasRolledBack { name: String },
    #[error(
        "migration {name} is being rolled back; finish that with `zdm rollback {name}` \
         before starting it again"
    )]
    RollbackInProgress { name: String },
    #[error(
        "contract of {name} refused: the confirmation must be the migration's name exactly \
         (got {given:?})"
    )]
    ConfirmationMismatch { name: String, given: String },
    #[error(
        "migration {other} is still in flight ({status}); complete it or roll it back before \
         starting {name}"
    )]
    AnotherInFlight {
        name: String,
        other: String,
        status: String,
    },
    #[error(
        "{step}: could not get its {lock} lock after {attempts} tries over {waited:.1?}, \
         {blocked_by}; nothing was changed by this step, run the command again later"
    )]
    LockRetriesExhausted {
        step: String,
        lock: String,
        attempts: u32,
        waited: Duration,
        /// The sessions that held conflicting locks at the last try.
        blocked_by: String,
    },
    #[error("{step} failed: {source}")]
    StepFailed { step: String, source: sqlx::Error },
    #[error("{step}: {problem}")]
    BadStep { step: String, problem: String },
    #[error(
        "the plan recorded for migration {name} in schema zdm cannot be read ({source}); \
         it was written by an incompatible zdm version"
    )]
    StoredPlanUnreadable {
        name: String,
        source: serde_json::Error,
    },
    #[error("the plan of migration {name} cannot be stored: {source}")]
    PlanNotStorable {
        name: String,
        source: serde_json::Error,
    },
    #[error(
        "{step}: stopped after its last committed batch ({why}); {rows} rows are \
         backfilled and checkpointed. Run the same command again to resume from there"
    )]
    Stopped {
        step: String,
        why: String,
        rows: String,
    },
    #[error(
        "stopped before {before} ({why}); every step before it is done and recorded. \
         Run the same command again to resume from there"
    )]
    StoppedBetweenSteps { before: String, why: String },
    #[error(
        "after {phase} the database lacks what the plan promised: {}. Nothing more was run; \
         find out what took the name or dropped it (`zdm status` checks again)",
        broken.join("; ")
    )]
    PromiseBroken {
        phase: &'static str,
        broken: Vec<String>,
    },
    #[error(
        "the database was unreachable for {down_for}, longer than this run waits for it \
         ({budget}, `reconnect_budget_s`): {why}. Stopped, not failed: every committed \
         batch and step is recorded, and the same command resumes once the database is back"
    )]
    Unreachable {
        down_for: String,
        budget: String,
        why: String,
    },
}

impl Error {
    /// Whether the run's connection (or its run lock's) was lost with the server, rather
    /// than a statement failing: the run waits for the database and goes on.
    pub fn connection_lost(&self) -> bool {
        match self {
            Error::Database { source, .. }
            | Error::StepFailed { source, .. }
            | Error::Connect { source, .. } => reconnect::is_connection_lost(source),
            Error::LockLost { .. } => true,
            _ => false,
        }
    }

    /// Whether this run may no longer write the migration's record: it lost the run lock
    /// to another session, or another command changed the record under it.
    pub fn lost_the_run(&self) -> bool {
        matches!(
            self,
            Error::LockLost { .. } | Error::LockTaken { .. } | Error::StatusChanged { .. }
        )
    }
}

/// Attaches "what zdm was doing" to a database error.
pub(crate) trait Context<T> {
    fn context(self, action: &str) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, action: &str) -> Result<T, Error> {
        self.map_err(|source| Error::Database {
            action: action.to_string(),
            source,
        })
    }
}

/// The engine's settings for one run (`zdm.toml` gives them: `crate::config::Config::engine_options`).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub ddl: ddl::LockPolicy,
    /// A fixed number of rows per backfill batch; None: adaptive batches aimed at
    /// `backfill.pacing.target`.
    pub batch_size: Option<u64>,
    /// A backfill batch's statements are cancelled after this long and the batch retried
    /// smaller; None: derived from the batch target ([`backfill::batch_timeout`]).
    pub batch_timeout: Option<Duration>,
    /// How long a run waits for a database that went away before it stops (resumable).
    pub reconnect_budget: Duration,
    /// Other servers of the target (standbys that may be promoted), tried in order after
    /// the main one when the run reconnects: the first that is a primary is used.
    pub failover: Vec<crate::db::DatabaseUrl>,
    /// Pacing and throttle settings a backfill starts with (changed live through
    /// [`BackfillControl`]).
    pub backfill: BackfillSettings,
}

impl Default for EngineOptions {
    /// The defaults `zdm.toml` documents: lock_timeout 500 ms, retries from 100 ms up to
    /// 5 s, 30 attempts, no statement_timeout, adaptive batches, 30 minutes to wait out a
    /// lost database.
    fn default() -> Self {
        EngineOptions {
            ddl: ddl::LockPolicy {
                lock_timeout: Duration::from_millis(500),
                statement_timeout: None,
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                max_attempts: 30,
            },
            batch_size: None,
            batch_timeout: None,
            reconnect_budget: Duration::from_secs(30 * 60),
            failover: Vec::new(),
            backfill: BackfillSettings::default(),
        }
    }
}

/// The name of a phase as stored in schema `zdm` and shown to people (one home: the
/// protocol's vocabulary).
pub use crate::protocol::phase_name;
