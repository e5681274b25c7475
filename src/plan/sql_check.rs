//! A plan's own SQL parsed with PostgreSQL's grammar before it runs: what `zdm start`
//! refuses before expand and `zdm complete` before the first contract step.

use super::{Step, StepAction};
use crate::migration::sql::{parse, Grammar, SqlError};

/// The SQL of a plan's step (or a backfill's expression) that does not parse, as
/// (step description, error): what `zdm start` refuses before expand and `zdm complete`
/// before the first contract step.
pub fn unparsable<'p>(steps: impl IntoIterator<Item = &'p Step>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for step in steps {
        let mut failed = |what: &str, error: SqlError| {
            found.push((
                step.description.clone(),
                format!("{what}: {}", error.describe(what)),
            ))
        };
        match &step.action {
            StepAction::Sql { sql, .. } => {
                if let Err(error) = parse(sql, Grammar::Statements) {
                    failed("its SQL", error);
                }
            }
            StepAction::Backfill(backfill) => {
                for (column, expression) in &backfill.assignments {
                    if let Err(error) = parse(expression, Grammar::Expression) {
                        failed(&format!("the expression for {column}"), error);
                    }
                }
                if let Some(predicate) = &backfill.predicate {
                    if let Err(error) = parse(predicate, Grammar::Expression) {
                        failed("its predicate", error);
                    }
                }
            }
        }
    }
    found
}
