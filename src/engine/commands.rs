//! The headless front-end of the engine: `zdm start`, `zdm complete`, `zdm rollback` and
//! `zdm status`, each returning the text to print.

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use super::event::Events;
use super::headless::{self, Output};
use super::identity::Identity;
use super::source::{self, Planned};
use super::status;
use super::throttle::Throttle;
use super::{Engine, EngineOptions, Error};
use crate::config::{self, Config};
use crate::monitor::{Monitor, MonitorOptions};
use crate::plan::{Plan, StepAction};

/// Why a command could not run: the settings or the engine.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Engine(#[from] Error),
    #[error("could not write the status as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `zdm start [NAME]`: expand and backfill (or resume) a migration.
pub async fn start(config: &Config, name: Option<&str>) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let mut catalog = connect_plain(config).await?;
    let planned = source::load_and_plan(config, &mut catalog, name).await;
    let Planned { plan, checksum } = match planned {
        Ok(planned) => planned,
        Err(error) => {
            let _ = catalog.close().await;
            return Err(Error::from(error).into());
        }
    };
    let monitor = attach_throttle(config, &mut engine, &mut catalog, &plan).await;
    let _ = catalog.close().await;
    let printer = print_events(&mut engine);
    let outcome = engine.start(&plan, &checksum).await;
    finish(engine, printer, monitor, outcome).await
}

/// `zdm complete NAME --confirm-contract NAME`: contract, irreversible.
pub async fn complete(
    config: &Config,
    name: &str,
    confirmation: &str,
) -> Result<String, CommandError> {
    if confirmation != name {
        // Refused before connecting: nothing about the database is needed to say no.
        return Err(Error::ConfirmationMismatch {
            name: name.to_string(),
            given: confirmation.to_string(),
        }
        .into());
    }
    let mut engine = connect(config).await?;
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
    let printer = print_events(&mut engine);
    let outcome = engine.complete(name, confirmation).await;
    finish(engine, printer, monitor, outcome).await
}

/// `zdm rollback NAME`: undo expand and backfill.
pub async fn rollback(config: &Config, name: &str) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let printer = print_events(&mut engine);
    let outcome = engine.rollback(name).await;
    finish(engine, printer, None, outcome).await
}

/// `zdm status [--json]`.
pub async fn status(config: &Config, json: bool) -> Result<String, CommandError> {
    let url = config.database_url()?;
    let mut conn = connect_plain(config).await?;
    let report = status::report(&mut conn, url.to_string()).await?;
    let _ = conn.close().await;
    if json {
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    } else {
        Ok(report.render())
    }
}

async fn connect(config: &Config) -> Result<Engine, CommandError> {
    let url = config.database_url()?;
    Ok(Engine::connect(url, EngineOptions::from(config)).await?)
}

/// A connection without the run lock, for reading.
async fn connect_plain(config: &Config) -> Result<PgConnection, CommandError> {
    let url = config.database_url()?;
    let connect_error = |source| Error::Connect {
        url: url.to_string(),
        source,
    };
    let options = url.connect_options().map_err(connect_error)?;
    let options = Identity::current().apply(options);
    Ok(PgConnection::connect_with(&options)
        .await
        .map_err(connect_error)?)
}

/// Sends the engine's events to the headless output (step lines and a progress bar on
/// a terminal, JSON lines on stdout otherwise), and stops cleanly on SIGINT/SIGTERM.
fn print_events(engine: &mut Engine) -> JoinHandle<()> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    let signals = headless::stop_on_signals(engine.control());
    let printer = headless::print_events(Output::detect(), receiver);
    tokio::spawn(async move {
        let _ = printer.await;
        signals.abort();
    })
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
    let mut options = match MonitorOptions::from_config(config) {
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

/// Closes the engine (releasing the run lock), lets the printer drain, and returns the
/// outcome as text.
async fn finish(
    engine: Engine,
    printer: JoinHandle<()>,
    monitor: Option<Monitor>,
    outcome: Result<super::Outcome, Error>,
) -> Result<String, CommandError> {
    let closed = engine.close().await;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    let _ = printer.await;
    let outcome = outcome?;
    closed?;
    Ok(Output::detect().outcome(&outcome.to_string()))
}
