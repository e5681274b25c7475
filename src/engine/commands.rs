//! The headless front-end of the engine: `zdm start`, `zdm complete`, `zdm rollback` and
//! `zdm status`, each returning the text to print.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use super::event::{Event, Events};
use super::identity::Identity;
use super::phase_name;
use super::source::{self, Planned};
use super::status;
use super::{Engine, EngineOptions, Error};
use crate::config::{self, Config};
use crate::format::thousands;

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
    // Planned before the engine connects (which creates schema `zdm`): a file naming a
    // table or column the database lacks is refused with nothing changed. Planning
    // outside the run lock is safe: `Engine::start` runs the recorded plan of a
    // migration that started meanwhile, and refuses one out of order.
    let planned = {
        let mut catalog = connect_plain(config).await?;
        let planned = source::load_and_plan(config, &mut catalog, name).await;
        let _ = catalog.close().await;
        planned.map_err(Error::from)?
    };
    let mut engine = connect(config).await?;
    let Planned { plan, checksum } = planned;
    let printer = print_events(&mut engine);
    let outcome = engine.start(&plan, &checksum).await;
    finish(engine, printer, outcome).await
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
    let printer = print_events(&mut engine);
    let outcome = engine.complete(name, confirmation).await;
    finish(engine, printer, outcome).await
}

/// `zdm rollback NAME`: undo expand and backfill.
pub async fn rollback(config: &Config, name: &str) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let printer = print_events(&mut engine);
    let outcome = engine.rollback(name).await;
    finish(engine, printer, outcome).await
}

/// `zdm status [--json]`.
pub async fn status(config: &Config, json: bool) -> Result<String, CommandError> {
    let url = config.database_url()?;
    let mut conn = connect_plain(config).await?;
    let report = status::report(&mut conn, url.to_string()).await?;
    let _ = conn.close().await;
    let report = report.with_files(crate::migration::load_dir(&config.migrations_dir));
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

/// Prints the engine's progress on stderr (stdout keeps the outcome, for scripts):
/// every step, every lock wait, and the backfill at most once a second.
fn print_events(engine: &mut Engine) -> JoinHandle<()> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    tokio::spawn(async move {
        let mut last_batch_line: Option<Instant> = None;
        while let Some(event) = receiver.recv().await {
            match event {
                Event::StepStarted {
                    phase,
                    position,
                    total,
                    description,
                    ..
                } => eprintln!(
                    "{} {}/{total}: {description}",
                    phase_name(phase),
                    position + 1
                ),
                Event::StepDone { .. } => {}
                Event::LockWait {
                    attempt,
                    max_attempts,
                    retry_in,
                    blocked_by,
                    ..
                } => eprintln!(
                    "  lock not granted within lock_timeout (try {attempt} of {max_attempts}), \
                     gave up so the application is not queued; retrying in {:.1} s; {blocked_by}",
                    retry_in.as_secs_f64()
                ),
                Event::BatchCommitted {
                    batches,
                    rows_updated,
                    ..
                } => {
                    if last_batch_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        last_batch_line = Some(Instant::now());
                        eprintln!(
                            "  backfill: {} rows updated in {} batches",
                            thousands(u64::try_from(rows_updated).unwrap_or(0)),
                            thousands(u64::try_from(batches).unwrap_or(0))
                        );
                    }
                }
            }
        }
    })
}

/// Closes the engine (releasing the run lock), lets the printer drain, and returns the
/// outcome as text.
async fn finish(
    engine: Engine,
    printer: JoinHandle<()>,
    outcome: Result<super::Outcome, Error>,
) -> Result<String, CommandError> {
    let closed = engine.close().await;
    let _ = printer.await;
    let outcome = outcome?;
    closed?;
    Ok(outcome.to_string())
}
