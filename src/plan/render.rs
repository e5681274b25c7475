//! A plan printed for a person: phases, each step's SQL, the lock it takes and on what,
//! and flags for scans, rewrites and raw SQL zdm did not check.

use std::fmt::Write;

use crate::db::quote_ident;
use crate::plan::step::{LockLevel, Phase, StepAction};
use crate::plan::Plan;

/// Why an application should not run on the physical tables during a first migration, and
/// what to do about it; `zdm plan` prints it, `zdm start` logs it.
pub fn first_migration_warning(plan: &Plan) -> String {
    format!(
        "applications still on the physical tables see {}'s expand \
         and rollback change them: a prepared `SELECT *` or `RETURNING *` then fails once \
         per connection (\"cached plan must not change result type\") and shows zdm's shadow \
         columns. Run `zdm init` first and point them at the baseline version it prints.",
        plan.migration
    )
}

/// The whole plan as text (no colours: it goes to pipes and runbooks as often as to a tty).
pub fn render(plan: &Plan, description: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Migration {}", plan.migration);
    if let Some(description) = description {
        let _ = writeln!(out, "  {description}");
    }
    let _ = writeln!(
        out,
        "  New version: SET search_path TO {} (usable once the backfill is done)",
        quote_ident(&plan.version_schema)
    );
    match plan.drops.schemas.as_slice() {
        [] => {
            let _ = writeln!(out, "  Old version: the physical tables");
            let _ = writeln!(out, "  WARNING: {}", first_migration_warning(plan));
        }
        previous => {
            let _ = writeln!(out, "  Old version: {}", previous.join(", "));
        }
    }
    let mut number = 0;
    for phase in [
        Phase::Expand,
        Phase::Backfill,
        Phase::Contract,
        Phase::Rollback,
    ] {
        let steps: Vec<_> = plan.phase(phase).collect();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} ({} steps){}",
            heading(phase),
            steps.len(),
            note(phase)
        );
        if steps.is_empty() {
            let _ = writeln!(out, "  (nothing to do)");
        }
        for step in steps {
            number += 1;
            let _ = writeln!(out, "  {number}. {}", step.description);
            let locked = if step.locked.is_empty() {
                String::new()
            } else {
                format!(" on {}", step.locked.join(", "))
            };
            let mut flags = Vec::new();
            if step.unchecked {
                flags.push("UNSAFE: raw SQL not checked by zdm");
            }
            if step.rewrites {
                flags.push("REWRITES the table");
            }
            if step.scans {
                flags.push("scans the table");
            }
            if step.lock.blocks_reads() {
                flags.push("blocks reads and writes while held (brief, under lock_timeout)");
            } else if step.lock.blocks_writes() {
                flags.push("blocks writes while held (brief, under lock_timeout)");
            }
            let lock = if step.lock == LockLevel::None {
                "no table lock".to_string()
            } else {
                format!("{}{locked}", step.lock.sql_name())
            };
            let _ = writeln!(out, "     lock: {lock}");
            if !flags.is_empty() {
                let _ = writeln!(out, "     {}", flags.join("; "));
            }
            match &step.action {
                StepAction::Sql { sql, transactional } => {
                    if !transactional {
                        let _ = writeln!(out, "     (runs outside a transaction)");
                    }
                    if step.concurrent_index().is_some() {
                        let _ = writeln!(
                            out,
                            "     (an INVALID index of this name, left by an interrupted \
                             build, is dropped before each try)"
                        );
                    }
                    indent(&mut out, sql);
                }
                StepAction::Backfill(backfill) => {
                    let assignments: Vec<String> = backfill
                        .assignments
                        .iter()
                        .map(|(column, expression)| {
                            format!("{} = {expression}", quote_ident(column))
                        })
                        .collect();
                    let mut text = format!(
                        "UPDATE {} SET {}\n  -- in batches by ({})",
                        backfill.table,
                        assignments.join(", "),
                        backfill.key_columns.join(", ")
                    );
                    if let Some(predicate) = &backfill.predicate {
                        let _ = write!(text, ", rows where {predicate}");
                    }
                    indent(&mut out, &text);
                }
            }
        }
    }
    out
}

fn heading(phase: Phase) -> &'static str {
    match phase {
        Phase::Expand => "EXPAND",
        Phase::Backfill => "BACKFILL",
        Phase::Contract => "CONTRACT",
        Phase::Rollback => "ROLLBACK",
    }
}

fn note(phase: Phase) -> &'static str {
    match phase {
        Phase::Expand => ": additive, both versions keep working",
        Phase::Backfill => ": batched, then validations",
        Phase::Contract => ": irreversible, after confirmation",
        Phase::Rollback => ": undo of expand and backfill, only before contract",
    }
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "       {line}");
    }
}
