//! The one seam between migration files and the engine: pick the migration to start,
//! load it, and plan it against the live catalog (or reuse the plan recorded when it
//! first started: the catalog has changed since, and resume must run the same steps). A
//! new plan's SQL is checked before anything runs: every step parses, and the file's
//! expressions fit the live catalog (`crate::plan::typecheck`).

use sqlx::PgConnection;

use super::state::{self, Status};
use crate::config::Config;
use crate::db::catalog::Catalog;
use crate::migration::{self, sql, LoadErrors, Migration};
use crate::plan::{self, typecheck, Plan, PlanError};
use crate::suggest::did_you_mean;

/// A migration file turned into a plan, with the checksum of the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub plan: Plan,
    /// SHA-256 of the file's bytes, hex (`crate::migration::Migration::checksum`).
    pub checksum: String,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the migration files have errors; nothing was changed:\n{0}")]
    Load(#[from] LoadErrors),
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
    #[error("cannot read zdm's state or the schema of the target database: {0}")]
    Introspect(#[from] sqlx::Error),
    #[error(transparent)]
    State(Box<super::Error>),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the SQL of {name} does not fit the database; nothing was changed:\n{errors}")]
    Sql { name: String, errors: LoadErrors },
    #[error(
        "the plan of {name} has SQL that does not parse; nothing was changed:\n{}",
        .steps.iter().map(|(step, why)| format!("  {step}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    PlanSql {
        name: String,
        steps: Vec<(String, String)>,
    },
}

/// Loads the migration `name` (or, without a name, the first one in file-name order that
/// is not complete) from `config.migrations_dir` and plans it; a migration that already
/// started (and was not rolled back) gets the plan recorded then.
pub async fn load_and_plan(
    config: &Config,
    conn: &mut PgConnection,
    name: Option<&str>,
) -> Result<Planned, Error> {
    let mut files = migration::load_checked(&config.migrations_dir)?;
    let records = if state::exists(conn).await.map_err(boxed)? {
        state::list(conn).await.map_err(boxed)?
    } else {
        Vec::new()
    };
    let dir = config.migrations_dir.display().to_string();
    let position = choose(&files, &records, name, dir)?;
    let file = files.swap_remove(position);
    let Some(migration) = file.migration.clone() else {
        // load_checked keeps only files that decoded.
        return Err(Error::NothingPending {
            dir: config.migrations_dir.display().to_string(),
        });
    };
    let recorded = records
        .into_iter()
        .find(|r| r.name == migration.name && r.status != Status::RolledBack)
        .map(|record| record.plan);
    let plan = match recorded {
        Some(plan) => plan,
        None => {
            let plan = plan::plan(&migration, &Catalog::load(conn).await?)?;
            // Before expand, nothing changed yet: every step's SQL must parse (contract's
            // and rollback's too, which run when going back is no longer free) and the
            // file's expressions must fit the live catalog.
            let steps = sql::check_plan_sql(&plan.steps);
            if !steps.is_empty() {
                return Err(Error::PlanSql {
                    name: migration.name.clone(),
                    steps,
                });
            }
            let found = typecheck::check_files(conn, &[&file], config.lock_timeout).await?;
            let errors: Vec<_> = found.into_iter().filter(|d| d.is_error()).collect();
            if !errors.is_empty() {
                return Err(Error::Sql {
                    name: migration.name.clone(),
                    errors: LoadErrors {
                        diagnostics: errors,
                    },
                });
            }
            plan
        }
    };
    Ok(Planned {
        plan,
        checksum: migration.checksum.clone(),
    })
}

/// The position among `files` of the migration to start: `name`, or the first one not
/// complete; refused when one before it is not complete.
fn choose(
    files: &[migration::Checked],
    records: &[state::MigrationRecord],
    name: Option<&str>,
    dir: String,
) -> Result<usize, Error> {
    let migrations: Vec<&Migration> = files.iter().filter_map(|f| f.migration.as_ref()).collect();
    let status_of = |m: &Migration| records.iter().find(|r| r.name == m.name).map(|r| r.status);
    let position = match name {
        Some(name) => migrations
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::UnknownMigration {
                name: name.to_string(),
                dir: dir.clone(),
                hint: did_you_mean(name, migrations.iter().map(|m| m.name.as_str())),
            })?,
        None => migrations
            .iter()
            .position(|m| status_of(m) != Some(Status::Complete))
            .ok_or_else(|| Error::NothingPending { dir: dir.clone() })?,
    };
    let migration = migrations[position];
    // Each plan is made against the catalog its predecessors leave: they must be done.
    if let Some(earlier) = migrations[..position]
        .iter()
        .find(|m| status_of(m) != Some(Status::Complete))
    {
        return Err(Error::OutOfOrder {
            name: migration.name.clone(),
            earlier: earlier.name.clone(),
            status: status_of(earlier).map_or("not started".to_string(), |s| s.to_string()),
            dir,
        });
    }
    Ok(position)
}

fn boxed(error: super::Error) -> Error {
    Error::State(Box::new(error))
}
