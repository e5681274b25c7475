//! `zdm plan [NAME] [--json]`: reads the migration files, introspects the target database
//! and prints what each pending migration will do, phase by phase; a migration that has
//! started shows the plan recorded when it started (the one resume, complete and rollback
//! run).

use std::path::PathBuf;

use sqlx::Connection;

use crate::config::{self, Config};
use crate::db::catalog::Catalog;
use crate::ledger::{Ledger, PlanOrRefusal};
use crate::migration::{self, LoadErrors};
use crate::plan::render;
use crate::suggest::did_you_mean;

/// Why `zdm plan` could not print a plan.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: sqlx::Error },
    #[error("cannot read the schema of {url}: {reason}")]
    Introspect { url: String, reason: sqlx::Error },
    #[error("the migration files have errors:\n{0}")]
    Load(#[from] LoadErrors),
    #[error("no migration named {name} in {dir}{hint}")]
    UnknownMigration {
        name: String,
        dir: PathBuf,
        hint: String,
    },
    #[error("cannot read zdm's state (schema zdm) on {url}: {reason}")]
    State {
        url: String,
        reason: Box<crate::engine::Error>,
    },
    #[error(transparent)]
    Plan(#[from] PlanOrRefusal),
    #[error("cannot write the plan as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `zdm plan` and returns what to print.
pub async fn run(config: &Config, name: Option<&str>, json: bool) -> Result<String, CommandError> {
    let migrations = migration::load_dir(&config.migrations_dir)?;
    if let Some(name) = name {
        if !migrations.iter().any(|m| m.name == name) {
            return Err(CommandError::UnknownMigration {
                name: name.to_string(),
                dir: config.migrations_dir.clone(),
                hint: did_you_mean(name, migrations.iter().map(|m| m.name.as_str())),
            });
        }
    }
    let url = config.database_url()?;
    let connect = |reason| CommandError::Connect {
        url: url.to_string(),
        reason,
    };
    let options = url.connect_options().map_err(connect)?;
    let mut conn = url.connect_with(&options).await.map_err(connect)?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(|reason| CommandError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let ledger = Ledger::load(
        &mut conn,
        &config.migrations_dir,
        migrations,
        Some(&catalog),
    )
    .await
    .map_err(|reason| CommandError::State {
        url: url.to_string(),
        reason: Box::new(reason),
    })?;
    let _ = conn.close().await;
    let planned = ledger.plans(&catalog, name)?;
    if json {
        return Ok(match name {
            Some(_) => serde_json::to_string_pretty(&planned.first().map(|(plan, _)| plan))?,
            None => serde_json::to_string_pretty(
                &planned.iter().map(|(plan, _)| plan).collect::<Vec<_>>(),
            )?,
        } + "\n");
    }
    if planned.is_empty() {
        return Ok(format!(
            "Nothing to plan: every migration in {} has started.\n",
            config.migrations_dir.display()
        ));
    }
    Ok(planned
        .iter()
        .map(|(plan, description)| render::render(plan, description.as_deref()))
        .collect::<Vec<_>>()
        .join("\n"))
}
