//! drop_table: the new version stops seeing the table at once (no view in its schema); the
//! old version keeps it until contract, which drops it.

use crate::db::catalog::ConstraintKind;
use crate::migration::operation::DropTable;
use crate::plan::error::Problem;
use crate::plan::ops::{refuse_created, PlanOperation};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for DropTable {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let referencing: Vec<String> = ws
            .catalog
            .tables
            .iter()
            .filter(|t| t.name != table)
            .flat_map(|t| t.constraints.iter().map(move |c| (t, c)))
            .filter(|(_, c)| c.kind == ConstraintKind::ForeignKey)
            .filter(|(_, c)| c.references.as_ref().is_some_and(|r| r.table == table))
            .map(|(t, c)| format!("{} ({})", c.name, t.name))
            .collect();
        if !referencing.is_empty() {
            return Err(Problem::Refused(format!(
                "table {table} is referenced by foreign key {}: drop that first",
                referencing.join(", ")
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical = ws.physical_table(&table);
        // Dropping its foreign keys locks the tables they reference.
        let mut locked = vec![physical.to_string()];
        let referenced: Vec<String> = ws
            .table(&table)?
            .constraints
            .iter()
            .filter_map(|c| c.references.as_ref())
            .map(|r| ws.physical_table(&r.table).to_string())
            .collect();
        for other in referenced {
            if !locked.contains(&other) {
                locked.push(other);
            }
        }
        ws.state(&table)?.dropped = true;
        ws.catalog.tables.retain(|t| t.name != table);
        ws.catalog.replica_identities.retain(|r| r.table != table);
        ws.push_contract(Step::sql(
            Phase::Contract,
            format!("drop table {physical}"),
            format!("DROP TABLE IF EXISTS {}", physical.quoted()),
            LockLevel::AccessExclusive,
            locked,
        ));
        Ok(())
    }
}
