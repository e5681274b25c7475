//! What the commands that run the engine share (`zdm init`, `start`, `complete`,
//! `rollback`): their errors, the engine's and reading connections, the run's front-ends
//! (the terminal printer, the signal handler and the control socket), the monitor that
//! feeds the throttle, the audit, and the end of a run.

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use super::start as source;
use crate::audit::{self, Action, Entry};
use crate::config::{self, Config};

use crate::engine::event::Events;
use crate::engine::headless::{self, Output};
use crate::engine::identity;
use crate::engine::throttle::Throttle;
use crate::engine::{Engine, Error, Outcome};
use crate::gates::decision;
use crate::monitor::Monitor;
use crate::plan::{Plan, StepAction};
use crate::runner::Served;

/// Why a command could not run: the settings or the engine.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Engine(#[from] Error),
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error("could not write the status as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Gates(#[from] crate::gates::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    UnknownGate(#[from] decision::UnknownGate),
    #[error(
        "contract of {name} refused: gate(s) {} did not pass (see above). Fix what they found \
         and run the command again, or, having checked it yourself, override each by name: {}",
        blocking.join(", "),
        blocking.iter().map(|g| format!("--override-gate {g}")).collect::<Vec<_>>().join(" ")
    )]
    GatesBlocked { name: String, blocking: Vec<String> },
    #[error("cannot read the schema of the target database: {0}")]
    Introspect(#[source] sqlx::Error),
    #[error("there is no schema {schema} on this database: give the schema the application uses with --schema")]
    NoSuchSchema { schema: String },
    #[error(transparent)]
    MissingDir(#[from] MissingDir),
    #[error("{migration}: stopped after batch {batch} ({rows} rows, checkpointed; {why})")]
    Stopped {
        migration: String,
        batch: String,
        rows: String,
        why: String,
    },
    #[error(
        "contract of {name} refused before its first step: its SQL does not parse, nothing \
         was changed:\n{}",
        .steps.iter().map(|(step, why)| format!("  {step}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    ContractSql {
        name: String,
        steps: Vec<(String, String)>,
    },
    #[error(
        "{name}: cannot wait for the confirmation of contract: this run's control socket \
         could not be opened (see above), so nothing could reach it; nothing was evaluated \
         or contracted. Fix the socket directory, or confirm on the command line: zdm \
         complete {name} --confirm-contract {name}"
    )]
    NoSocketToConfirm { name: String },
}

/// The migrations directory is missing or unreadable: said at once, naming it and how to
/// give another, before anything connects or waits (never a gate to override).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the migrations directory {}: {reason}; give the directory of the \
     migration files with --dir DIR or migrations_dir in zdm.toml",
    dir.display()
)]
pub struct MissingDir {
    pub dir: std::path::PathBuf,
    pub reason: String,
}

/// Refuses a missing or unreadable migrations directory (see [`MissingDir`]).
pub fn require_migrations_dir(config: &Config) -> Result<(), MissingDir> {
    let dir = &config.migrations_dir;
    match std::fs::read_dir(dir) {
        Ok(_) => Ok(()),
        Err(error) => Err(MissingDir {
            dir: dir.clone(),
            reason: dir_reason(&error),
        }),
    }
}

/// Why a directory cannot be read, in words (not `os error 2`).
fn dir_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::NotADirectory => "it is not a directory".to_string(),
        _ => error.to_string(),
    }
}

/// Appends to `zdm.audit` on a connection of its own (the engine's is busy with the run).
pub(super) async fn record(
    config: &Config,
    migration: &str,
    action: Action,
    detail: Option<String>,
) -> Result<(), CommandError> {
    let mut conn = connect_plain(config).await?;
    let recorded = audit::record(
        &mut conn,
        Entry {
            migration,
            action,
            detail,
            gates: None,
        },
    )
    .await;
    let _ = conn.close().await;
    Ok(recorded?)
}

pub(super) async fn connect(config: &Config) -> Result<Engine, CommandError> {
    let url = config.database_url()?;
    Ok(Engine::connect(url, config.engine_options()).await?)
}

/// A connection without the run lock, for reading.
pub(super) async fn connect_plain(config: &Config) -> Result<PgConnection, CommandError> {
    let url = config.database_url()?;
    let connect_error = |source| Error::Connect {
        url: url.to_string(),
        source,
    };
    Ok(identity::connect(url).await.map_err(connect_error)?)
}

/// Everything that shows and steers a run besides the engine: the headless output
/// (step lines and a progress bar on a terminal, JSON lines on stdout otherwise), the
/// SIGINT/SIGTERM handler (stop after the current batch), and the control socket.
pub(super) struct RunFrontends {
    printer: JoinHandle<()>,
    signals: JoinHandle<()>,
    pub(super) served: Served,
}

impl RunFrontends {
    /// Serves `command` of `migration` (whose status is `status` now) and sends the
    /// engine's events to every watcher.
    pub(super) async fn start(
        config: &Config,
        engine: &mut Engine,
        command: &'static str,
        migration: &str,
        status: Option<crate::protocol::Status>,
    ) -> RunFrontends {
        let (served, events) =
            Served::start(config, command, migration, status, engine.control()).await;
        engine.set_events(Events::to(events));
        RunFrontends {
            printer: headless::print_events(Output::detect(), served.subscribe()),
            signals: headless::stop_on_signals(engine.control()),
            served,
        }
    }

    /// Streams the samples of the run's monitor (when the throttle has one) to every
    /// front-end.
    pub(super) fn stream_metrics(&mut self, monitor: Option<&Monitor>) {
        if let Some(monitor) = monitor {
            self.served.stream_metrics(monitor);
        }
    }

    /// Ends them once the engine is closed (its events are all sent): the socket's last
    /// events say how the command ended.
    pub(super) async fn end(self, outcome: Result<&Outcome, String>) {
        self.served.finish(outcome).await;
        let _ = self.printer.await;
        self.signals.abort();
    }
}

/// Starts a monitor of the target for the throttle and hands the throttle to the engine.
/// If the monitor cannot even be set up, the throttle holds every metric input and says
/// why (it never lets a backfill run blind, and never stops the command).
pub(super) async fn attach_throttle(
    config: &Config,
    engine: &mut Engine,
    catalog: &mut PgConnection,
    plan: &Plan,
) -> Option<Monitor> {
    let settings = config.backfill.throttle.clone();
    let mut options = match config.monitor_options() {
        Ok(options) => options,
        Err(error) => {
            let why = format!("the monitor could not start: {error}");
            engine.set_throttle(Throttle::without_monitor(settings, why));
            return None;
        }
    };
    options.target_tables = backfill_tables(catalog, plan).await;
    let local = crate::monitor::host::is_local(&options.connect);
    let connect = options.connect.clone();
    let monitor = Monitor::start(options);
    monitor.set_baseline_end(Some(chrono::Utc::now()));
    engine.set_throttle(Throttle::new(
        settings,
        monitor.subscribe(),
        Some(connect),
        local,
    ));
    Some(monitor)
}

/// The tables the plan backfills, as `schema.name` (those that exist yet).
async fn backfill_tables(catalog: &mut PgConnection, plan: &Plan) -> Vec<String> {
    let mut tables = Vec::new();
    for step in &plan.steps {
        if let StepAction::Backfill(spec) = &step.action {
            let name: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "SELECT n.nspname::text || '.' || c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            )
            .bind(&spec.table)
            .fetch_one(&mut *catalog)
            .await;
            if let Ok(Some(name)) = name {
                if !tables.contains(&name) {
                    tables.push(name);
                }
            }
        }
    }
    tables
}

/// Closes the engine (releasing the run lock), lets the frontends finish, and returns the
/// outcome as text.
pub(super) async fn finish(
    engine: Engine,
    frontends: RunFrontends,
    monitor: Option<Monitor>,
    outcome: Result<Outcome, Error>,
) -> Result<String, CommandError> {
    let closed = engine.close().await;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    frontends
        .end(outcome.as_ref().map_err(|error| error.to_string()))
        .await;
    let outcome = outcome?;
    closed?;
    Ok(Output::detect().outcome(&outcome.to_string()))
}

/// A backfill stopped on request (a signal, `zdm ctl abort`) is not a failure: it
/// becomes [`CommandError::Stopped`], which says after which batch and how many rows, as
/// its checkpoint records them.
pub(super) async fn stopped_is_not_failed(
    config: &Config,
    migration: &str,
    result: Result<String, CommandError>,
) -> Result<String, CommandError> {
    let Err(CommandError::Engine(Error::Stopped { why, rows, .. })) = &result else {
        return result;
    };
    let checkpoint = last_checkpoint(config, migration).await;
    let (batch, rows) = match checkpoint {
        Some((batches, updated)) => (
            crate::format::thousands(batches),
            crate::format::thousands(updated),
        ),
        None => ("?".to_string(), rows.clone()),
    };
    // The operator's stop is part of the trail, like their pause or abort.
    let detail = format!("{why}: stopped after batch {batch} ({rows} rows), resumable");
    if let Err(error) = record(config, migration, Action::Stop, Some(detail)).await {
        tracing::warn!(%error, "the stop could not be recorded in zdm.audit");
    }
    Err(CommandError::Stopped {
        migration: migration.to_string(),
        batch,
        rows,
        why: why.clone(),
    })
}

/// The batches and rows of the backfill checkpoint of `migration` written last.
async fn last_checkpoint(config: &Config, migration: &str) -> Option<(u64, u64)> {
    let mut conn = connect_plain(config).await.ok()?;
    let row: Result<Option<(i64, i64)>, sqlx::Error> = sqlx::query_as(
        "SELECT batches, rows_updated FROM zdm.backfill_progress WHERE migration = $1 \
         ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(migration)
    .fetch_optional(&mut conn)
    .await;
    let _ = conn.close().await;
    let (batches, rows) = row.ok()??;
    Some((u64::try_from(batches).ok()?, u64::try_from(rows).ok()?))
}
