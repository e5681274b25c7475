//! The console's background work on the database: every call runs in a tokio task here and
//! reports through a channel, so the event loop never waits for the database. It polls the
//! migration files and the recorded state (also the connection watchdog), plans the
//! selected migration and evaluates contract gates. Engine commands run in runner
//! processes of their own, never here (see [`super::runs`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::app::{Level, MigrationRow, MigrationState};
use super::runs::RunUpdate;
use crate::config::Config;
use crate::db::catalog::Catalog;
use crate::engine::identity;
use crate::engine::state::{self, MigrationRecord};
use crate::engine::Status;
pub use crate::ledger::step_index;
use crate::ledger::{Ledger, Standing};
use crate::migration::{self, Migration};
use crate::plan::Plan;

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
    /// or definitely not, but it did answer. With the names of the valid files found, whose
    /// state is unknown without the database.
    StatusFailed(String, Vec<String>),
    /// The status read got no answer in [`POLL_GIVE_UP`]; the connection is remade. With
    /// the names of the files found.
    StatusNoAnswer(Vec<String>),
    /// The plan of a migration not started yet, or why there is none.
    Plan {
        migration: String,
        plan: Result<Plan, String>,
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

    /// The last rehearsal of `migration`: a small file beside the migrations, read here and
    /// now (never the database).
    pub fn last_rehearsal(&self, migration: &str) -> super::app::LastRehearsal {
        super::app::LastRehearsal::of(&self.config.migrations_dir, migration)
    }

    /// Plans `migration` (a file not started yet) in the background.
    pub fn plan(&self, migration: String) {
        let config = self.config.clone();
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let plan = plan_file(&config, &migration).await;
            let _ = updates.send(Update::Plan { migration, plan });
        });
    }
}

/// The plan of migration `name` as `zdm plan NAME` shows it: a file not started, planned
/// against the live catalog after the files before it.
async fn plan_file(config: &Config, name: &str) -> Result<Plan, String> {
    let mut conn = connect_plain(config).await?;
    let planned = async {
        let files = migration::load_dir(&config.migrations_dir).map_err(|e| e.to_string())?;
        let catalog = Catalog::load(&mut conn)
            .await
            .map_err(|e| format!("cannot read the schema of the database: {e}"))?;
        let ledger = Ledger::load(&mut conn, &config.migrations_dir, files, Some(&catalog))
            .await
            .map_err(|e| e.to_string())?;
        let mut plans = ledger
            .plans(&catalog, Some(name))
            .map_err(|e| e.to_string())?;
        plans
            .pop()
            .map(|(plan, _)| plan)
            .ok_or_else(|| format!("no migration file named {name}"))
    }
    .await;
    let _ = conn.close().await;
    planned
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
        let names = || files.iter().map(|file| file.name.clone()).collect();
        let update = match read {
            Ok(Ok(records)) => Update::Status(Box::new(merge(&files, &records))),
            Ok(Err(error)) => Update::StatusFailed(error, names()),
            Err(_) => {
                conn = None;
                Update::StatusNoAnswer(names())
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

/// The list the console shows, from the [`Ledger`]: every file in order, then recorded
/// migrations whose file is gone. A recorded checksum that differs from the file's is
/// flagged, a migration that [`state::list_live`] found stopped shows so, and each row
/// says why `s` would not start it, in the words `zdm start` would use.
pub fn merge(files: &[Migration], records: &[MigrationRecord]) -> StatusSnapshot {
    let ledger = Ledger::join(Path::new(""), files.to_vec(), records.to_vec());
    let rows = ledger
        .entries
        .iter()
        .map(|entry| MigrationRow {
            name: entry.name.clone(),
            description: match (&entry.file, entry.is_baseline()) {
                (Some(file), _) => file.description.clone(),
                // `zdm init`'s baseline has no file: it is the application's version
                // before the first migration (recorded with the checksum `baseline`).
                (None, true) => Some(
                    "the baseline version (zdm init): the application's version before the \
                     first migration"
                        .into(),
                ),
                (None, false) => Some("(its file is not in the migrations directory)".into()),
            },
            state: state_of(entry.status()),
            checksum_mismatch: entry.checksum_changed().is_some(),
            stopped: matches!(entry.standing(), Standing::Stopped { .. }),
            start_refusal: ledger.may_start(&entry.name).err().map(|r| r.to_string()),
        })
        .collect();
    let plans = ledger
        .entries
        .iter()
        .filter_map(|e| {
            let record = e.record.as_ref()?;
            Some((e.name.clone(), record.plan.clone(), e.current_step()))
        })
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
