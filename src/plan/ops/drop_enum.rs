//! drop_enum: the type is dropped at contract, after every table's final shape and every
//! dropped table (so a column that stops using it in the same migration is gone first).
//! Refused while a column of the new shape uses it; at contract the step checks again and
//! names any column that uses it by then, and `DROP TYPE` without CASCADE refuses while a
//! function or domain does: nothing that depends on the type is dropped with it.

use crate::db::catalog::QualifiedName;
use crate::migration::operation::DropEnum;
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal};
use crate::plan::ops::create_enum::to_regtype;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for DropEnum {
    fn tables(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        let users = ws.columns_of_type(&name);
        if !users.is_empty() {
            return Err(Problem::Refused(format!(
                "enum type {name} is still used by column {}: drop those columns or change their type first (in this migration or an earlier one)",
                users.join(", ")
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        ws.contract_types.push(Step::sql(
            Phase::Contract,
            format!("drop enum type {name} (refused while a column, function or domain uses it)"),
            drop_unused_sql(&name),
            LockLevel::None,
            Vec::new(),
        ));
        ws.catalog.enums.retain(|e| e.name != name);
        Ok(())
    }
}

/// Drops the type unless a column uses it (then raises, naming them); a re-run after the
/// drop does nothing.
fn drop_unused_sql(name: &QualifiedName) -> String {
    do_block(&format!(
        "  IF {regtype} IS NULL THEN\n    RETURN;\n  END IF;\n  IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.atttypid = {regtype} AND a.attnum > 0 AND NOT a.attisdropped) THEN\n    RAISE EXCEPTION 'enum type % is still used by column %', {label}, (SELECT string_agg(a.attrelid::regclass::text || '.' || quote_ident(a.attname), ', ') FROM pg_attribute a WHERE a.atttypid = {regtype} AND a.attnum > 0 AND NOT a.attisdropped);\n  END IF;\n  DROP TYPE {quoted};\n",
        regtype = to_regtype(name),
        label = literal(&name.to_string()),
        quoted = name.quoted(),
    ))
}
