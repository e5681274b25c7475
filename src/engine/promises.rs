//! The objects a plan promised (`Step::creates`): checked against the database after each
//! phase of a run and by `zdm status`, so a constraint, index or trigger that the run says
//! it made but PostgreSQL does not have (a truncated name, an `IF NOT EXISTS` that matched
//! something else, a concurrent build left invalid) is said, never passed over.

use sqlx::PgConnection;

use crate::plan::{Phase, Plan, Promise, PromiseKind};

/// The promises that must hold once `phase` of `plan` is done: after expand, those of
/// expand; after backfill, those of expand and backfill; after contract, those still kept
/// then and the contract's own. Rollback promises nothing.
pub fn due_after(plan: &Plan, phase: Phase) -> Vec<&Promise> {
    let of = |phases: &[Phase]| -> Vec<&Promise> {
        plan.steps
            .iter()
            .filter(|step| phases.contains(&step.phase))
            .flat_map(|step| step.creates.iter())
            .collect()
    };
    match phase {
        Phase::Expand => of(&[Phase::Expand]),
        Phase::Backfill => of(&[Phase::Expand, Phase::Backfill]),
        Phase::Contract => of(&[Phase::Expand, Phase::Backfill])
            .into_iter()
            .filter(|promise| promise.kept)
            .chain(of(&[Phase::Contract]))
            .collect(),
        Phase::Rollback => Vec::new(),
    }
}

/// Each promise that does not hold, as a person reads it ("constraint t_a_check on
/// "public"."t" is missing", "index t_b_key on "public"."t" is invalid").
pub async fn broken(
    conn: &mut PgConnection,
    promises: &[&Promise],
) -> Result<Vec<String>, sqlx::Error> {
    let mut broken = Vec::new();
    for promise in promises {
        // A table renamed at contract is looked for by the object's name in its schema.
        let sql = match promise.kind {
            PromiseKind::Constraint => {
                "SELECT true FROM pg_constraint c \
                  WHERE c.conname = $2 AND (c.conrelid = to_regclass($1) \
                     OR (to_regclass($1) IS NULL AND c.connamespace = \
                         (SELECT oid FROM pg_namespace WHERE nspname = $3))) LIMIT 1"
            }
            PromiseKind::Index => {
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                  WHERE c.relname = $2 AND (i.indrelid = to_regclass($1) \
                     OR (to_regclass($1) IS NULL AND c.relnamespace = \
                         (SELECT oid FROM pg_namespace WHERE nspname = $3))) LIMIT 1"
            }
            PromiseKind::Trigger => {
                "SELECT true FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                  WHERE t.tgname = $2 AND NOT t.tgisinternal AND (t.tgrelid = to_regclass($1) \
                     OR (to_regclass($1) IS NULL AND c.relnamespace = \
                         (SELECT oid FROM pg_namespace WHERE nspname = $3))) LIMIT 1"
            }
        };
        let found: Option<bool> = sqlx::query_scalar(sql)
            .bind(&promise.table)
            .bind(&promise.name)
            .bind(&promise.schema)
            .fetch_optional(&mut *conn)
            .await?;
        match found {
            None => broken.push(format!("{promise} is missing")),
            Some(false) => broken.push(format!("{promise} is invalid")),
            Some(true) => {}
        }
    }
    Ok(broken)
}
