//! create_enum: `CREATE TYPE ... AS ENUM` at expand. A new type blocks nobody (no table
//! lock; nothing uses it yet), both versions can use it at once, rollback drops it. Also
//! the SQL the other enum operations share: the type's name and a label as literals.

use crate::db::catalog::{EnumType, QualifiedName};
use crate::migration::operation::CreateEnum;
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal};
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for CreateEnum {
    fn tables(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let name = ws.qualify(&self.name);
        if ws.catalog.enum_type(&name).is_some() || ws.original.enum_type(&name).is_some() {
            return Err(Problem::Refused(format!("enum type {name} already exists")));
        }
        // Every table and view has a row type of its name: the names share one namespace.
        if ws.catalog.relation_exists(&name) || ws.original.relation_exists(&name) {
            return Err(Problem::Refused(format!(
                "{name} is a table or view, whose row type already takes that name"
            )));
        }
        if self.values.is_empty() {
            return Err(Problem::Refused(format!("enum type {name} has no values")));
        }
        for (i, value) in self.values.iter().enumerate() {
            if self.values[..i].contains(value) {
                return Err(Problem::Refused(format!(
                    "value {value:?} is listed twice in enum type {name}"
                )));
            }
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = ws.qualify(&self.name);
        let labels: Vec<String> = self.values.iter().map(|v| literal(v)).collect();
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!("create enum type {name} (no table lock)"),
            do_block(&format!(
                "  IF {} IS NULL THEN\n    CREATE TYPE {} AS ENUM ({});\n  END IF;\n",
                to_regtype(&name),
                name.quoted(),
                labels.join(", ")
            )),
            LockLevel::None,
            Vec::new(),
        ));
        ws.push_rollback(drop_type_step(Phase::Rollback, &name));
        ws.catalog.enums.push(EnumType {
            name,
            values: self.values.clone(),
        });
        Ok(())
    }
}

/// `to_regtype('"schema"."name"')`: NULL when the type does not exist.
pub(super) fn to_regtype(name: &QualifiedName) -> String {
    format!("to_regtype({})", literal(&name.quoted()))
}

/// `DROP TYPE IF EXISTS` without CASCADE: PostgreSQL refuses while a column, function or
/// domain still uses the type, so nothing that depends on it is ever dropped with it.
pub(super) fn drop_type_step(phase: Phase, name: &QualifiedName) -> Step {
    Step::sql(
        phase,
        format!("drop enum type {name} (refused while anything uses it)"),
        format!("DROP TYPE IF EXISTS {}", name.quoted()),
        LockLevel::None,
        Vec::new(),
    )
}
