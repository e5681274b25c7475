//! A migration's steps put in running order, phase by phase: the one place that keeps the
//! ordering invariants of docs/planner.md (expand constraints after the sync triggers, the
//! publish step last in backfill, each table's final shape before the trigger functions are
//! dropped, rollback dropping the expand constraints first).

use crate::db::catalog::Catalog;
use crate::db::quote_ident;
use crate::plan::final_shape;
use crate::plan::names::{do_block, regclass};
use crate::plan::step::{LockLevel, Phase, Promise, PromiseKind, Step};
use crate::plan::sync_trigger;
use crate::plan::version_view::{self, Over, VersionView};
use crate::plan::workspace::{TableState, Workspace};

/// The plan's steps in running order, and the simulated catalog once contract is done.
pub(crate) fn finish(mut ws: Workspace) -> (Vec<Step>, Catalog) {
    let synced = sync_trigger::synced_tables(&ws);
    let functions = sync_trigger::functions(&ws, &synced);
    let published = version_view::views(&ws, Over::Physical);
    let final_views = version_view::views(&ws, Over::Final);
    // Taken before expand moves the steps into the plan: rollback undoes them first.
    let expand_constraints = ExpandConstraints::of(&ws.expand_constraints);

    let mut steps = expand(&mut ws, &synced);
    steps.extend(backfill(&mut ws, &published));
    steps.extend(contract(&mut ws, &functions, &final_views));
    steps.extend(rollback(
        &mut ws,
        &expand_constraints,
        &published,
        &functions,
    ));
    (steps, version_view::catalog_after_contract(ws, final_views))
}

/// Expand: the version schema first (sync functions live in it), then the operations'
/// additive DDL, then the sync triggers (in their old-version-only form), then the
/// defaults of the columns they fill, then the constraints that rely on the triggers'
/// values. After each committed step both versions can read and write (the expand
/// invariant), and every row the old version wrote is either filled by a trigger or NULL
/// for the backfill.
fn expand(ws: &mut Workspace, synced: &[TableState]) -> Vec<Step> {
    let mut steps = vec![version_view::create_schema_step(ws)];
    steps.append(&mut ws.expand);
    for state in synced {
        steps.extend(sync_trigger::install_steps(&ws.version_schema, state));
    }
    steps.append(&mut ws.expand_defaults);
    steps.append(&mut ws.expand_constraints);
    steps
}

/// Backfill: data first, then the validations that need the data in place, then the new
/// version is published: only now is every row filled, so only now can a client of the new
/// version read and write without seeing (or deriving old columns from) columns the
/// backfill has not reached (docs/engine.md). Each table's sync function treats writers as
/// the new version only once its view exists, so creating a view is what switches its
/// table's `down` rules on, in one commit.
fn backfill(ws: &mut Workspace, published: &[VersionView]) -> Vec<Step> {
    let mut steps = std::mem::take(&mut ws.backfill);
    steps.append(&mut ws.validate);
    steps.extend(version_view::publish_step(ws, published));
    steps
}

/// Contract: the previous version schema goes (the old version), each table gets its final
/// shape in one step (its triggers dropped first), then the operations' own contract steps,
/// the trigger functions nothing calls any more, and the views re-pointed at the final
/// columns.
fn contract(ws: &mut Workspace, functions: &[String], final_views: &[VersionView]) -> Vec<Step> {
    let mut steps = version_view::drop_previous_steps(ws);
    steps.extend(crate::plan::app_views::contract_drop_step(ws));
    steps.extend(ws.tables.iter().filter_map(final_shape::step));
    steps.append(&mut ws.contract);
    steps.append(&mut ws.contract_types);
    steps.extend(sync_trigger::contract_drop_functions_step(functions));
    steps.extend(version_view::repoint_steps(final_views));
    steps.extend(crate::plan::app_views::contract_create_step(ws));
    steps
}

/// Rollback: the constraints expand added after the triggers, then the triggers, then the
/// version schema, then each operation last first. Constraints go before the triggers that
/// fill their columns, or every old-version write between the two steps would fail them
/// (the expand invariant, in reverse).
fn rollback(
    ws: &mut Workspace,
    expand_constraints: &ExpandConstraints,
    published: &[VersionView],
    functions: &[String],
) -> Vec<Step> {
    let mut steps: Vec<Step> = expand_constraints.rollback_step().into_iter().collect();
    steps.extend(ws.tables.iter().filter_map(sync_trigger::rollback_step));
    steps.push(version_view::rollback_drop_step(ws, published, functions));
    for group in ws.rollback.drain(..).rev() {
        steps.extend(group);
    }
    steps
}

/// The constraints expand adds after the sync triggers (`Workspace::push_expand_constraint`),
/// as their steps promise them, and the tables those steps lock.
struct ExpandConstraints {
    promises: Vec<Promise>,
    locked: Vec<String>,
}

impl ExpandConstraints {
    fn of(steps: &[Step]) -> Self {
        let promises = steps
            .iter()
            .flat_map(|step| step.creates.iter().cloned())
            .filter(|promise| promise.kind == PromiseKind::Constraint)
            .collect();
        let mut locked: Vec<String> = steps
            .iter()
            .flat_map(|step| step.locked.iter().cloned())
            .collect();
        locked.sort();
        locked.dedup();
        ExpandConstraints { promises, locked }
    }

    /// One rollback step dropping them all (each guarded: its table may be gone).
    fn rollback_step(&self) -> Option<Step> {
        if self.promises.is_empty() {
            return None;
        }
        let drops: String = self
            .promises
            .iter()
            .map(|promise| {
                format!(
                    "  IF {} IS NOT NULL THEN\n    ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};\n  END IF;\n",
                    regclass(&promise.table),
                    promise.table,
                    quote_ident(&promise.name)
                )
            })
            .collect();
        Some(Step::sql(
            Phase::Rollback,
            format!(
                "drop the constraints expand added ({}), before the triggers filling their columns",
                self.promises
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            do_block(&drops),
            LockLevel::AccessExclusive,
            self.locked.clone(),
        ))
    }
}
