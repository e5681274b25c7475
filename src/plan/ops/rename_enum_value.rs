//! rename_enum_value: `ALTER TYPE ... RENAME VALUE` (catalog only, no table lock). A label
//! is one object both versions share: renamed while a column uses the type, the old
//! version's writes of the old label would fail at once. So the rename runs at expand only
//! when no column uses the type (functions and defaults keep working: they hold the label's
//! identity, not its text), and rollback renames it back. A type that columns use is
//! refused with what to do instead (not yet: a new type through shadow columns).

use crate::db::catalog::QualifiedName;
use crate::migration::operation::RenameEnumValue;
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal};
use crate::plan::ops::create_enum::to_regtype;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for RenameEnumValue {
    fn tables(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let found = ws.existing_enum(&self.name)?;
        if !found.values.contains(&self.from) {
            return Err(Problem::Refused(format!(
                "enum type {} has no value {:?} (its values: {})",
                found.name,
                self.from,
                found.values.join(", ")
            )));
        }
        if found.values.contains(&self.to) {
            return Err(Problem::Refused(format!(
                "enum type {} already has the value {:?}",
                found.name, self.to
            )));
        }
        let users = ws.columns_of_type(&found.name);
        if !users.is_empty() {
            return Err(Problem::Refused(format!(
                "enum type {} is used by column {}: renaming a label both versions share would fail the old version's writes of {:?} at once; add the new label with add_enum_value, let both versions write it, and stop using the old one (renaming a used label through a new type is not yet supported)",
                found.name,
                users.join(", "),
                self.from
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        ws.push_expand(rename_step(Phase::Expand, &name, &self.from, &self.to));
        ws.push_rollback(rename_step(Phase::Rollback, &name, &self.to, &self.from));
        if let Some(found) = ws.catalog.enum_type_mut(&name) {
            for value in &mut found.values {
                if *value == self.from {
                    value.clone_from(&self.to);
                }
            }
        }
        Ok(())
    }
}

/// Renames the label `from` to `to` if the type still has `from` (a re-run does nothing).
fn rename_step(phase: Phase, name: &QualifiedName, from: &str, to: &str) -> Step {
    Step::sql(
        phase,
        format!("rename value {from:?} of enum type {name} to {to:?} (catalog only)"),
        do_block(&format!(
            "  IF EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = {} AND enumlabel = {}) THEN\n    ALTER TYPE {} RENAME VALUE {} TO {};\n  END IF;\n",
            to_regtype(name),
            literal(from),
            name.quoted(),
            literal(from),
            literal(to)
        )),
        LockLevel::None,
        Vec::new(),
    )
}
