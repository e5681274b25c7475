//! `zdm plan [NAME] [--json]`: reads the migration files, introspects the target database
//! and prints what each pending migration will do, phase by phase; a migration that has
//! started shows the plan recorded when it started (the one resume, complete and rollback
//! run).

use std::path::PathBuf;

use sqlx::Connection;

use crate::config::{self, Config};
use crate::db::catalog::Catalog;
use crate::engine::state::{self, Status};
use crate::migration::{self, LoadErrors, Migration};
use crate::plan::{plan_and_simulate, render, Plan, PlanError};
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
    #[error(
        "migration {name} has already started (its version schema {schema} exists): \
         `zdm status` shows where it is"
    )]
    AlreadyStarted { name: String, schema: String },
    #[error("cannot read zdm's state (schema zdm) on {url}: {reason}")]
    State {
        url: String,
        reason: Box<crate::engine::Error>,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
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
    let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(connect)?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(|reason| CommandError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let state_error = |reason| CommandError::State {
        url: url.to_string(),
        reason: Box::new(reason),
    };
    let recorded = if state::exists(&mut conn).await.map_err(state_error)? {
        Some(state::list(&mut conn).await.map_err(state_error)?)
    } else {
        None
    };
    let _ = conn.close().await;
    let started = Started::find(recorded.as_deref(), &catalog);
    let planned = plan_pending(&migrations, &catalog, &started, name)?;
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

/// A migration that has started on the database (and was not rolled back).
#[derive(Debug, Clone)]
pub struct Started {
    pub name: String,
    pub version_schema: String,
    /// The plan recorded in schema `zdm` when it started; `None` when only its version
    /// schema tells (a database without zdm's state, e.g. restored without schema `zdm`).
    pub plan: Option<Plan>,
}

impl Started {
    /// From zdm's state (`recorded`: `None` when schema `zdm` does not exist), otherwise
    /// from the version schemas' comments.
    pub fn find(recorded: Option<&[state::MigrationRecord]>, catalog: &Catalog) -> Vec<Started> {
        if let Some(recorded) = recorded {
            return recorded
                .iter()
                .filter(|record| record.status != Status::RolledBack)
                .map(|record| Started {
                    name: record.name.clone(),
                    version_schema: record.version_schema.clone(),
                    plan: Some(record.plan.clone()),
                })
                .collect();
        }
        catalog
            .version_schemas()
            .into_iter()
            .map(|(schema, _, migration)| Started {
                name: migration,
                version_schema: schema,
                plan: None,
            })
            .collect()
    }
}

/// Plans the migrations that have not started, in order, each against the catalog the
/// previous ones leave; with `only`, returns just that one's plan (the recorded one when it
/// has started).
pub fn plan_pending(
    migrations: &[Migration],
    catalog: &Catalog,
    started: &[Started],
    only: Option<&str>,
) -> Result<Vec<(Plan, Option<String>)>, CommandError> {
    let last_started = migrations
        .iter()
        .rposition(|m| started.iter().any(|s| s.name == m.name));
    let first_pending = last_started.map_or(0, |index| index + 1);
    if let Some(name) = only {
        if let Some(position) = migrations.iter().position(|m| m.name == name) {
            if position < first_pending {
                let this = started.iter().find(|s| s.name == name);
                if let Some(plan) = this.and_then(|s| s.plan.clone()) {
                    return Ok(vec![(plan, migrations[position].description.clone())]);
                }
                let schema = this
                    .map(|s| s.version_schema.clone())
                    .unwrap_or_else(|| format!("of a later migration than {name}"));
                return Err(CommandError::AlreadyStarted {
                    name: name.to_string(),
                    schema,
                });
            }
        }
    }
    let mut current = catalog.clone();
    let mut plans = Vec::new();
    for migration in &migrations[first_pending.min(migrations.len())..] {
        let (plan, after) = plan_and_simulate(migration, &current)?;
        current = after;
        let wanted = only.is_none_or(|name| name == migration.name);
        if wanted {
            plans.push((plan, migration.description.clone()));
        }
        if only == Some(migration.name.as_str()) {
            break;
        }
    }
    Ok(plans)
}
