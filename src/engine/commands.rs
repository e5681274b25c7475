//! The headless front-end of the engine: `zdm start`, `zdm complete`, `zdm rollback` and
//! `zdm status`, each returning the text to print.

use sqlx::{Connection, PgConnection};

use super::identity::Identity;
use super::source::{self, Planned};
use super::status;
use super::{Engine, EngineOptions, Error};
use crate::config::{self, Config};

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
    let planned = {
        let mut catalog = connect_plain(config).await?;
        let planned = source::load_and_plan(config, &mut catalog, name).await;
        let _ = catalog.close().await;
        planned.map_err(Error::from)?
    };
    let Planned { plan, checksum } = planned;
    let outcome = engine.start(&plan, &checksum).await?;
    engine.close().await?;
    Ok(outcome.to_string())
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
    let outcome = engine.complete(name, confirmation).await?;
    engine.close().await?;
    Ok(outcome.to_string())
}

/// `zdm rollback NAME`: undo expand and backfill.
pub async fn rollback(config: &Config, name: &str) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let outcome = engine.rollback(name).await?;
    engine.close().await?;
    Ok(outcome.to_string())
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
