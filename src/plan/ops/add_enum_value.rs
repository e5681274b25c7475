//! add_enum_value: `ALTER TYPE ... ADD VALUE IF NOT EXISTS` at expand, as its own step
//! outside a transaction block: before PostgreSQL 12 it cannot run inside one, and a label
//! added in a transaction cannot be used until that transaction commits. It takes no table
//! lock (only the type's own, against concurrent additions) and rewrites nothing. The old
//! version never writes the new label, so both versions keep working.
//!
//! PostgreSQL cannot remove a label from an enum. A rollback therefore leaves the label in
//! place (unless the type itself was created by this migration, and dropped): the schema
//! differs from before by that one label, which nothing of the old version uses, and
//! starting again finds it there (`IF NOT EXISTS`).

use crate::migration::operation::AddEnumValue;
use crate::plan::error::Problem;
use crate::plan::names::literal;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for AddEnumValue {
    fn tables(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let found = ws.existing_enum(&self.name)?;
        if found.values.contains(&self.value) && !already_in_database(ws, &found.name, &self.value)
        {
            return Err(Problem::Refused(format!(
                "enum type {} already has the value {:?}",
                found.name, self.value
            )));
        }
        if self.before.is_some() && self.after.is_some() {
            return Err(Problem::Refused(
                "give `before` or `after`, not both".to_string(),
            ));
        }
        for neighbour in self.before.iter().chain(&self.after) {
            if !found.values.contains(neighbour) {
                return Err(Problem::Refused(format!(
                    "enum type {} has no value {neighbour:?} (its values: {})",
                    found.name,
                    found.values.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        let (position, place) = match (&self.before, &self.after) {
            (Some(before), _) => (format!(" BEFORE {}", literal(before)), Some((before, 0))),
            (None, Some(after)) => (format!(" AFTER {}", literal(after)), Some((after, 1))),
            (None, None) => (String::new(), None),
        };
        ws.push_expand(
            Step::sql(
                Phase::Expand,
                format!(
                    "add value {:?} to enum type {name} (own step, outside a transaction; no table lock)",
                    self.value
                ),
                format!(
                    "ALTER TYPE {} ADD VALUE IF NOT EXISTS {}{position}",
                    name.quoted(),
                    literal(&self.value)
                ),
                LockLevel::None,
                Vec::new(),
            )
            .outside_transaction(),
        );
        if let Some(found) = ws
            .catalog
            .enum_type_mut(&name)
            .filter(|found| !found.values.contains(&self.value))
        {
            let at = place
                .and_then(|(neighbour, offset)| {
                    found
                        .values
                        .iter()
                        .position(|v| v == neighbour)
                        .map(|i| i + offset)
                })
                .unwrap_or(found.values.len());
            found.values.insert(at, self.value.clone());
        }
        Ok(())
    }
}

/// Whether the type has the label in the database already (a rolled-back start of this
/// migration leaves it: PostgreSQL cannot remove it). Starting again is then a no-op for
/// it (`IF NOT EXISTS`), not a conflict; only a label an earlier operation of the same
/// migration adds is refused as given twice.
fn already_in_database(
    ws: &Workspace,
    name: &crate::db::catalog::QualifiedName,
    value: &str,
) -> bool {
    ws.original
        .enum_type(name)
        .is_some_and(|before| before.values.iter().any(|v| v == value))
}
