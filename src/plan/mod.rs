//! The planner's output: a migration turned into phased, lock-annotated steps that the
//! engine runs. Planning is pure: migration + catalog in, [`Plan`] out.
//!
//! How old and new versions coexist between expand and contract: each migration gets a
//! version schema (`<schema>_<migration>`, `version_view`) holding one auto-updatable view
//! per table in the new shape; the previous version keeps using the physical tables (or the
//! previous migration's version schema). Columns whose shape changes live in shadow columns
//! until contract (`shadow`), and a sync trigger per table fills the other version's columns
//! on every write (`sync_trigger`). Each operation's whole story is its file under `ops/`;
//! `workspace` is the simulated catalog they change, `assemble` the running order.

mod app_views;
mod assemble;
mod cross_table;
pub mod drops;
pub mod error;
mod final_shape;
mod grants;
mod identity;
pub mod names;
mod ops;
pub mod render;
mod shadow;
pub mod sql_check;
pub mod step;
mod sync_trigger;
pub mod typecheck;
mod version_view;
pub mod workspace;

pub use drops::ContractDrops;
pub use error::{PlanError, Problem};
pub(crate) use ops::drop_enum::sql_uses_type;
pub use step::{Backfill, LockLevel, Phase, Promise, PromiseKind, Step, StepAction};
pub use sync_trigger::{backfill_flag, BACKFILL_FLAG};

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::db::catalog::Catalog;
use crate::migration::Migration;
use workspace::{qualify, Workspace, DEFAULT_SCHEMA};

/// Everything the engine will do for one migration, phase by phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The migration's name (its file stem).
    pub migration: String,
    /// The schema of views that shows the new version (`public_0003_orders_add_status`).
    pub version_schema: String,
    /// Steps in the order they run; each carries its phase.
    pub steps: Vec<Step>,
    /// What contract removes, for the safety gates (absent from plans stored before it
    /// existed: those read as dropping nothing).
    #[serde(default, skip_serializing_if = "ContractDrops::is_empty")]
    pub drops: ContractDrops,
}

impl Plan {
    /// The steps of one phase, in order.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |step| step.phase == phase)
    }
}

/// Plans a migration against the database as `catalog` describes it.
pub fn plan(migration: &Migration, catalog: &Catalog) -> Result<Plan, PlanError> {
    plan_and_simulate(migration, catalog).map(|(plan, _)| plan)
}

/// Plans a migration and returns, beside the plan, the catalog as it will be once the
/// migration is complete (contract done): the input for planning the next one.
pub fn plan_and_simulate(
    migration: &Migration,
    catalog: &Catalog,
) -> Result<(Plan, Catalog), PlanError> {
    let schema = migration_schema(migration)?;
    let mut ws = Workspace::new(&migration.name, &schema, catalog);
    for (index, operation) in migration.operations.iter().enumerate() {
        let planner = ops::planner(operation);
        let fail = |problem| PlanError::Operation {
            migration: migration.name.clone(),
            number: index + 1,
            op: operation.name(),
            problem: Box::new(problem),
        };
        planner.validate(&ws).map_err(fail)?;
        ws.begin_operation();
        planner.plan(&mut ws).map_err(fail)?;
    }
    let version_schema = ws.version_schema.clone();
    let drops = ws.contract_drops();
    let (steps, after) = assemble::finish(ws);
    Ok((
        Plan {
            migration: migration.name.clone(),
            version_schema,
            steps,
            drops,
        },
        after,
    ))
}

/// The name of the baseline version (`zdm init`): the version of the application before
/// its first migration, as a version schema of views over the current shape.
pub const BASELINE: &str = "baseline";

/// The plan of `zdm init` for `schema`: its version schema `<schema>_baseline` with one
/// view per table of the current shape, published and granted like every version. Its
/// record is complete once it ran; the first migration's contract drops it (it is that
/// migration's old version).
pub fn baseline(schema: &str, catalog: &Catalog) -> Plan {
    let ws = Workspace::new(BASELINE, schema, catalog);
    let version_schema = ws.version_schema.clone();
    let (steps, _) = assemble::finish(ws);
    Plan {
        migration: baseline_record(schema),
        version_schema,
        // Contract and rollback never run for a baseline: it is recorded complete.
        steps: steps
            .into_iter()
            .filter(|step| matches!(step.phase, Phase::Expand | Phase::Backfill))
            .collect(),
        drops: ContractDrops::default(),
    }
}

/// The name a baseline is recorded under: `baseline`, or `baseline_<schema>` for a schema
/// other than `public`.
pub fn baseline_record(schema: &str) -> String {
    if schema == DEFAULT_SCHEMA {
        BASELINE.to_string()
    } else {
        format!("{BASELINE}_{schema}")
    }
}

/// Plans migrations in order, each against the catalog the previous ones leave behind.
pub fn plan_all(migrations: &[Migration], catalog: &Catalog) -> Result<Vec<Plan>, PlanError> {
    let mut current = catalog.clone();
    let mut plans = Vec::new();
    for migration in migrations {
        let (plan, after) = plan_and_simulate(migration, &current)?;
        plans.push(plan);
        current = after;
    }
    Ok(plans)
}

/// The one schema a migration versions: that of the tables it changes (`public` if none).
fn migration_schema(migration: &Migration) -> Result<String, PlanError> {
    let schemas: BTreeSet<String> = migration
        .operations
        .iter()
        .flat_map(|operation| ops::planner(operation).tables())
        .map(|table| qualify(table).schema)
        .collect();
    match schemas.len() {
        0 => Ok(DEFAULT_SCHEMA.to_string()),
        1 => Ok(schemas.into_iter().next().unwrap_or_default()),
        _ => Err(PlanError::MixedSchemas {
            migration: migration.name.clone(),
            schemas: schemas.into_iter().collect::<Vec<_>>().join(", "),
        }),
    }
}
