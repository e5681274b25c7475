//! The one seam between migration files and the engine: load a migration file and plan
//! it. The parser (`crate::migration`) and planner (`crate::plan`) are built on their own
//! branches; until they are wired in here, this says so instead of guessing a plan.

use sqlx::PgConnection;

use crate::config::Config;
use crate::plan::Plan;

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
    #[error(
        "planning migration files is not available in this build yet: the migration file \
         parser and the planner are not wired into the engine, so `zdm start` cannot read \
         {dir}. `zdm status`, `zdm complete` and `zdm rollback` work on migrations already \
         started (they run the plan recorded in schema zdm)"
    )]
    PlanningUnavailable { dir: String },
}

/// Loads the migration `name` (or, without a name, the first one in file-name order that
/// has not completed) from `config.migrations_dir`, introspects the catalog through
/// `catalog`, and plans it.
///
/// This is the only function that needs the parser and the planner; wire them in here.
pub async fn load_and_plan(
    config: &Config,
    catalog: &mut PgConnection,
    name: Option<&str>,
) -> Result<Planned, Error> {
    let _ = (catalog, name);
    Err(Error::PlanningUnavailable {
        dir: config.migrations_dir.display().to_string(),
    })
}
