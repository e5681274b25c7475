//! `zdm start [NAME]`: expand and backfill (or resume) a migration. It runs the one the
//! ledger picks (the one named, or the first not complete, in file-name order), planned
//! against the live catalog, or with the plan recorded when it first started (the catalog
//! has changed since, and resume must run the same steps). A new plan's SQL is checked before anything runs: every step
//! parses, and the file's expressions fit the live catalog (`crate::plan::typecheck`).

use sqlx::{Connection, PgConnection};

use super::run::{
    attach_throttle, connect, connect_plain, finish, record, require_migrations_dir,
    stopped_is_not_failed, CommandError, RunFrontends,
};
use crate::audit::Action;
use crate::config::Config;
use crate::db::catalog::Catalog;
use crate::ledger::{Ledger, Refusal};
use crate::migration::{self, LoadErrors};
use crate::plan::{self, typecheck, Plan, PlanError};

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
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot read zdm's state or the schema of the target database: {0}")]
    Introspect(#[from] sqlx::Error),
    #[error(transparent)]
    State(Box<crate::engine::Error>),
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
    let files = migration::load_checked(&config.migrations_dir)?;
    let migrations = files.iter().filter_map(|f| f.migration.clone()).collect();
    let ledger = Ledger::load(conn, &config.migrations_dir, migrations, None)
        .await
        .map_err(boxed)?;
    let entry = ledger.choose(name)?;
    let (Some(migration), Some(file)) = (
        entry.file.as_ref(),
        files
            .iter()
            .find(|f| f.migration.as_ref().is_some_and(|m| m.name == entry.name)),
    ) else {
        // Ledger::choose only picks entries with a file.
        return Err(Refusal::NothingPending {
            dir: config.migrations_dir.display().to_string(),
        }
        .into());
    };
    let recorded = entry.recorded_plan().cloned();
    let plan = match recorded {
        Some(plan) => plan,
        None => {
            let plan = plan::plan(migration, &Catalog::load(conn).await?)?;
            // Before expand, nothing changed yet: every step's SQL must parse (contract's
            // and rollback's too, which run when going back is no longer free) and the
            // file's expressions must fit the live catalog.
            let steps = plan::sql_check::unparsable(&plan.steps);
            if !steps.is_empty() {
                return Err(Error::PlanSql {
                    name: migration.name.clone(),
                    steps,
                });
            }
            let found = typecheck::check_files(conn, &[file], config.lock_timeout).await?;
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

fn boxed(error: crate::engine::Error) -> Error {
    Error::State(Box::new(error))
}

/// `zdm start [NAME]`: expand and backfill (or resume) a migration.
pub async fn run(config: &Config, name: Option<&str>) -> Result<String, CommandError> {
    // Planned before the engine connects (which creates schema `zdm`): a file naming a
    // table or column the database lacks is refused with nothing changed. Planning
    // outside the run lock is safe: `Engine::start` runs the recorded plan of a
    // migration that started meanwhile, and refuses one out of order.
    require_migrations_dir(config)?;
    let planned = {
        let mut catalog = connect_plain(config).await?;
        let planned = load_and_plan(config, &mut catalog, name).await;
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
    let finished = finish(engine, frontends, monitor, outcome).await;
    stopped_is_not_failed(config, &plan.migration, finished).await
}
