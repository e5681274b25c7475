//! drop_index: the old version may still need the index, so it is dropped at contract, with
//! DROP INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE, outside a transaction).

use crate::migration::operation::DropIndex;
use crate::plan::error::Problem;
use crate::plan::ops::{drop_index_concurrently_step, PlanOperation};
use crate::plan::step::Phase;
use crate::plan::workspace::{qualify, Workspace};
use crate::suggest::did_you_mean;

impl PlanOperation for DropIndex {
    fn tables(&self) -> Vec<&str> {
        Vec::new()
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let name = qualify(&self.name);
        let Some((table, index)) = ws.catalog.index_owner(&name.schema, &name.name) else {
            let candidates = ws
                .catalog
                .tables
                .iter()
                .filter(|t| t.name.schema == name.schema)
                .flat_map(|t| t.indexes.iter().map(|i| i.name.as_str()));
            return Err(Problem::NoIndex {
                schema: name.schema.clone(),
                hint: did_you_mean(&name.name, candidates),
                name: name.name,
            });
        };
        if let Some(constraint) = table
            .constraints
            .iter()
            .find(|c| c.index.as_deref() == Some(index.name.as_str()))
        {
            return Err(Problem::Refused(format!(
                "index {} backs constraint {} of {}: use drop_constraint",
                index.name, constraint.name, table.name
            )));
        }
        // PostgreSQL lets the index go and leaves the table's identity pointing at nothing:
        // from then on logical decoding writes no key for its updates and deletes, and a
        // publication that publishes them makes every UPDATE and DELETE of the table fail.
        if ws.catalog.replica_identities.iter().any(|r| {
            r.table == table.name
                && r.identity == "index"
                && r.index.as_deref() == Some(&index.name)
        }) {
            return Err(Problem::Refused(format!(
                "index {} is the replica identity of {}: without it logical replication gets no \
                 key for the table's updates and deletes (and a publication of them makes them \
                 fail); give the table another identity first (set_replica_identity, e.g. \
                 identity = \"default\" or \"full\", earlier in this migration)",
                index.name, table.name
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = qualify(&self.name);
        let table = ws
            .catalog
            .index_owner(&name.schema, &name.name)
            .map(|(table, _)| table.name.clone())
            .ok_or_else(|| Problem::NoIndex {
                schema: name.schema.clone(),
                name: name.name.clone(),
                hint: String::new(),
            })?;
        let physical_table = ws.physical_table(&table);
        ws.push_contract(drop_index_concurrently_step(
            Phase::Contract,
            &physical_table,
            &name.name,
        ));
        ws.table_mut(&table)?
            .indexes
            .retain(|i| i.name != name.name);
        Ok(())
    }
}
