//! `zdm init`, `zdm start`, `zdm complete`, `zdm rollback` and `zdm status` run headless:
//! each wires the configuration, the engine, its monitor and throttle, the run's control
//! socket and the terminal printer, and returns the text to print.

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use super::start::{self as source, Planned};
use super::status;
use crate::audit::{self, Action, Entry};
use crate::config::{self, Config};

use crate::db::catalog::Catalog;
use crate::db::quote_ident;
use crate::engine::event::Events;
use crate::engine::headless::{self, Output};
use crate::engine::identity;
use crate::engine::throttle::Throttle;
use crate::engine::{Engine, Error, Outcome};
use crate::gates::decision::{self, Decision};
use crate::monitor::Monitor;
use crate::plan::{self, Plan, StepAction};
use crate::runner::Served;
use std::time::Duration;

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
    #[error(
        "contract of {name} refused before its first step: its SQL does not parse, nothing \
         was changed:\n{}",
        .steps.iter().map(|(step, why)| format!("  {step}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    ContractSql {
        name: String,
        steps: Vec<(String, String)>,
    },
}

/// What `zdm complete` needs beyond the name: the confirmation and the gate overrides.
#[derive(Debug, Clone, Default)]
pub struct CompleteOptions {
    /// Must equal the migration's name.
    pub confirmation: String,
    /// Gates that did not pass and that the operator accepts anyway (recorded).
    pub overrides: Vec<String>,
    /// The gates' observation window (default: `[gates] window_s`).
    pub window: Option<Duration>,
}

/// `zdm init [--schema S]`: the baseline version, so that the first migration's old
/// version is a schema of views like every later one (docs/migrations.md, "Before the
/// first migration"). Idempotent; not needed (and said so) once a migration has run.
pub async fn init(config: &Config, schema: &str) -> Result<String, CommandError> {
    let mut conn = connect_plain(config).await?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(CommandError::Introspect)?;
    let _ = conn.close().await;
    if catalog.schema(schema).is_none() {
        return Err(CommandError::NoSuchSchema {
            schema: schema.to_string(),
        });
    }
    let versions: Vec<&str> = catalog
        .schemas
        .iter()
        .filter(|s| {
            s.comment
                .as_deref()
                .and_then(plan::names::parse_version_schema_comment)
                .is_some_and(|(base, migration)| base == schema && migration != plan::BASELINE)
        })
        .map(|s| s.name.as_str())
        .collect();
    if !versions.is_empty() {
        return Ok(format!(
            "not needed: migrations have already given {schema} version schemas ({}); \
             applications use the newest usable one (`zdm status` lists them)",
            versions.join(", ")
        ));
    }
    let baseline = plan::baseline(schema, &catalog);
    let mut engine = connect(config).await?;
    let outcome = engine.init(&baseline).await;
    let closed = engine.close().await;
    let outcome = outcome?;
    closed?;
    let search_path = quote_ident(&baseline.version_schema);
    let done = match outcome {
        Outcome::NothingToDo { .. } => "already there".to_string(),
        Outcome::Ran { .. } => "created".to_string(),
    };
    Ok(format!(
        "baseline version of {schema}: {} ({done}).\n\
         Point the application at it before the first migration, in every session:\n\
         \n    SET search_path TO {search_path}\n\n\
         (or `options=-csearch_path={}` in its connection string). It shows the tables as \
         they are now, so a migration's expand and rollback never change what the \
         application sees (prepared `SELECT *` keep working). The first migration's \
         contract drops it, once the application uses that migration's version.",
        baseline.version_schema, baseline.version_schema
    ))
}

/// `zdm start [NAME]`: expand and backfill (or resume) a migration.
pub async fn start(config: &Config, name: Option<&str>) -> Result<String, CommandError> {
    // Planned before the engine connects (which creates schema `zdm`): a file naming a
    // table or column the database lacks is refused with nothing changed. Planning
    // outside the run lock is safe: `Engine::start` runs the recorded plan of a
    // migration that started meanwhile, and refuses one out of order.
    let planned = {
        let mut catalog = connect_plain(config).await?;
        let planned = source::load_and_plan(config, &mut catalog, name).await;
        let _ = catalog.close().await;
        planned?
    };
    let mut engine = connect(config).await?;
    let Planned { plan, checksum } = planned;
    let mut frontends =
        RunFrontends::start(config, &mut engine, "start", &plan.migration, None).await;
    if plan.drops.schemas.is_empty() {
        frontends.served.log(
            crate::protocol::Level::Warning,
            crate::plan::render::first_migration_warning(&plan),
        );
    }
    record(config, &plan.migration, Action::Start, None).await?;
    let mut catalog = connect_plain(config).await?;
    let monitor = attach_throttle(config, &mut engine, &mut catalog, &plan).await;
    let _ = catalog.close().await;
    frontends.stream_metrics(monitor.as_ref());
    let outcome = engine.start(&plan, &checksum).await;
    finish(engine, frontends, monitor, outcome).await
}

/// `zdm complete NAME --confirm-contract NAME [--override-gate GATE]...`: the contract
/// safety gates are evaluated and shown (stderr), then contract runs, irreversible, only
/// when every gate passed or was overridden by name. All of it goes to `zdm.audit`.
pub async fn complete(
    config: &Config,
    name: &str,
    options: &CompleteOptions,
) -> Result<String, CommandError> {
    let confirmation = options.confirmation.as_str();
    if confirmation != name {
        // Refused before connecting: nothing about the database is needed to say no.
        return Err(Error::ConfirmationMismatch {
            name: name.to_string(),
            given: confirmation.to_string(),
        }
        .into());
    }
    let mut engine = connect(config).await?;
    // Contract is irreversible: its SQL is parsed again (the recorded plan's) before the
    // gates and the first step, so a statement that cannot run never strands it half way.
    if let Some(plan) = engine.recorded_plan(name).await? {
        let steps = plan::sql_check::unparsable(plan.phase(crate::plan::Phase::Contract));
        if !steps.is_empty() {
            engine.close().await?;
            return Err(CommandError::ContractSql {
                name: name.to_string(),
                steps,
            });
        }
    }
    // Served from here: the gates take their observation window, and a console or
    // `zdm attach` should see the run meanwhile.
    let mut frontends = RunFrontends::start(
        config,
        &mut engine,
        "complete",
        name,
        Some(crate::protocol::Status::ReadyToContract),
    )
    .await;
    frontends.served.log(
        crate::protocol::Level::Info,
        "evaluating the contract safety gates (they observe the database for their window)",
    );
    // Gates run while this zdm holds the run lock: nothing else starts meanwhile.
    if let Err(error) = contract_gates(config, name, options, &frontends.served).await {
        let closed = engine.close().await;
        frontends.end(Err(error.to_string())).await;
        closed?;
        return Err(error);
    }
    // Contract may backfill too: it is throttled like start.
    let monitor = match engine.recorded_plan(name).await? {
        Some(plan) => {
            let mut catalog = connect_plain(config).await?;
            let monitor = attach_throttle(config, &mut engine, &mut catalog, &plan).await;
            let _ = catalog.close().await;
            monitor
        }
        None => None,
    };
    frontends.stream_metrics(monitor.as_ref());
    let outcome = engine.complete(name, confirmation).await;
    finish(engine, frontends, monitor, outcome).await
}

/// `zdm rollback NAME`: undo expand and backfill.
pub async fn rollback(config: &Config, name: &str) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let frontends = RunFrontends::start(
        config,
        &mut engine,
        "rollback",
        name,
        Some(crate::protocol::Status::RollingBack),
    )
    .await;
    record(config, name, Action::Rollback, None).await?;
    let outcome = engine.rollback(name).await;
    finish(engine, frontends, None, outcome).await
}

/// `zdm status [--json]`.
pub async fn status(config: &Config, json: bool) -> Result<String, CommandError> {
    let url = config.database_url()?;
    let mut conn = connect_plain(config).await?;
    let report = status::report(&mut conn, url.to_string()).await?;
    let _ = conn.close().await;
    let report = report.with_files(
        &config.migrations_dir,
        crate::migration::load_dir(&config.migrations_dir),
    );
    if json {
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    } else {
        Ok(report.render())
    }
}

/// Evaluates and prints the gates of a migration ready to contract, records the decision,
/// and refuses when a gate blocks. A contract already begun (resumed after a crash) is not
/// gated: part of what the gates look at is gone, and stopping half way helps nobody.
async fn contract_gates(
    config: &Config,
    name: &str,
    options: &CompleteOptions,
    served: &Served,
) -> Result<(), CommandError> {
    let mut conn = connect_plain(config).await?;
    let status = crate::engine::state::get(&mut conn, name)
        .await?
        .map(|record| record.activity());
    if status != Some(crate::engine::Status::ReadyToContract) {
        let resumed = if status == Some(crate::engine::Status::Contracting) {
            audit::record(
                &mut conn,
                Entry {
                    migration: name,
                    action: Action::ConfirmContract,
                    detail: Some(
                        "resuming a contract begun earlier; gates not evaluated again".to_string(),
                    ),
                    gates: None,
                },
            )
            .await
        } else {
            Ok(())
        };
        let _ = conn.close().await;
        return Ok(resumed?);
    }
    let inputs = config.gate_inputs(options.window)?;
    let decided = decision::before_contract(&inputs, name, &options.overrides, &mut conn).await;
    let _ = conn.close().await;
    // Shown by every front-end (this command's printer too) from the run's event.
    match decided?? {
        Decision::Proceed(report) => {
            served.gates_evaluated(&report);
            Ok(())
        }
        Decision::Blocked { report, blocking } => {
            served.gates_evaluated(&report);
            Err(CommandError::GatesBlocked {
                name: name.to_string(),
                blocking,
            })
        }
    }
}

/// Appends to `zdm.audit` on a connection of its own (the engine's is busy with the run).
async fn record(
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

async fn connect(config: &Config) -> Result<Engine, CommandError> {
    let url = config.database_url()?;
    Ok(Engine::connect(url, config.engine_options()).await?)
}

/// A connection without the run lock, for reading.
async fn connect_plain(config: &Config) -> Result<PgConnection, CommandError> {
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
struct RunFrontends {
    printer: JoinHandle<()>,
    signals: JoinHandle<()>,
    served: Served,
}

impl RunFrontends {
    /// Serves `command` of `migration` (whose status is `status` now) and sends the
    /// engine's events to every watcher.
    async fn start(
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
    fn stream_metrics(&mut self, monitor: Option<&Monitor>) {
        if let Some(monitor) = monitor {
            self.served.stream_metrics(monitor);
        }
    }

    /// Ends them once the engine is closed (its events are all sent): the socket's last
    /// events say how the command ended.
    async fn end(self, outcome: Result<&Outcome, String>) {
        self.served.finish(outcome).await;
        let _ = self.printer.await;
        self.signals.abort();
    }
}

/// Starts a monitor of the target for the throttle and hands the throttle to the engine.
/// If the monitor cannot even be set up, the throttle holds every metric input and says
/// why (it never lets a backfill run blind, and never stops the command).
async fn attach_throttle(
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
async fn finish(
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
