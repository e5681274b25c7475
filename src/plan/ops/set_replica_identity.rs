//! set_replica_identity: what logical decoding (replication, change data capture) writes of
//! a row's old version on UPDATE and DELETE. It is the table's, not a version's: both
//! versions write the same rows, so it is set at expand (catalog only, brief) and the
//! rollback restores the identity the table had before. Contract has nothing left to do.

use crate::db::catalog::{QualifiedName, ReplicaIdentity};
use crate::db::quote_ident;
use crate::migration::operation::{ReplicaIdentityKind, SetReplicaIdentity};
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;
use crate::suggest::did_you_mean;

impl PlanOperation for SetReplicaIdentity {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let Some(index) = self.index.as_deref() else {
            return match self.identity {
                ReplicaIdentityKind::Index => Err(Problem::Refused(
                    "identity = \"index\" needs `index`: the unique index whose columns identify a row"
                        .to_string(),
                )),
                _ => Ok(()),
            };
        };
        let found = ws.table(&table)?;
        let Some(definition) = found.indexes.iter().find(|i| i.name == index) else {
            return Err(Problem::NoIndex {
                schema: table.schema.clone(),
                name: index.to_string(),
                hint: did_you_mean(index, found.indexes.iter().map(|i| i.name.as_str())),
            });
        };
        // PostgreSQL's own conditions, said before anything runs.
        // NOT NULL as it will be, and as it is physically at expand (a set_not_null of this
        // migration makes it so only at contract).
        let original = ws.original.table(&ws.physical_table(&table));
        let nullable: Vec<&str> = definition
            .columns
            .iter()
            .flatten()
            .filter(|c| {
                found.column(c).is_some_and(|c| c.nullable)
                    || original
                        .and_then(|t| t.column(&ws.physical_column(&table, c)))
                        .is_some_and(|c| c.nullable)
            })
            .map(String::as_str)
            .collect();
        if !definition.unique
            || definition.columns.iter().any(Option::is_none)
            || definition.definition.contains(" WHERE ")
            || !nullable.is_empty()
        {
            return Err(Problem::Refused(format!(
                "index {index} cannot be the replica identity of {table}: it must be unique, over plain NOT NULL columns, not partial{}",
                if nullable.is_empty() {
                    String::new()
                } else {
                    format!(" ({} may be NULL)", nullable.join(", "))
                }
            )));
        }
        // Its physical name must be the one it keeps: an index renamed at contract (rebuilt
        // on a shadow column, or behind a renamed constraint) would leave the identity on
        // the index contract drops or renames.
        if ws.state_of(&table).is_some_and(|state| {
            state
                .rename_indexes
                .iter()
                .chain(&state.rename_constraints)
                .any(|(from, to)| from == index || to == index)
        }) {
            return Err(Problem::Refused(format!(
                "index {index} of {table} is rebuilt or renamed by this migration: set the replica identity in a later migration"
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical = ws.physical_table(&table);
        let before = ws
            .catalog
            .replica_identities
            .iter()
            .find(|r| r.table == table)
            .cloned();
        ws.push_expand(set_step(
            Phase::Expand,
            &physical,
            &identity_sql(self.identity, self.index.as_deref()),
        ));
        let restore = match &before {
            None => "DEFAULT".to_string(),
            Some(r) => match (r.identity.as_str(), &r.index) {
                ("full", _) => "FULL".to_string(),
                ("index", Some(index)) => format!("USING INDEX {}", quote_ident(index)),
                // An index identity whose index is gone behaves as nothing; so does `nothing`.
                _ => "NOTHING".to_string(),
            },
        };
        ws.push_rollback(set_step(Phase::Rollback, &physical, &restore));

        ws.catalog.replica_identities.retain(|r| r.table != table);
        let identity = match self.identity {
            ReplicaIdentityKind::Default => None,
            ReplicaIdentityKind::Full => Some("full"),
            ReplicaIdentityKind::Nothing => Some("nothing"),
            ReplicaIdentityKind::Index => Some("index"),
        };
        if let Some(identity) = identity {
            ws.catalog.replica_identities.push(ReplicaIdentity {
                table: table.clone(),
                identity: identity.to_string(),
                index: self.index.clone(),
            });
        }
        ws.catalog.normalize();
        Ok(())
    }
}

/// `FULL`, `DEFAULT`, `NOTHING` or `USING INDEX "name"`.
fn identity_sql(identity: ReplicaIdentityKind, index: Option<&str>) -> String {
    match (identity, index) {
        (ReplicaIdentityKind::Default, _) => "DEFAULT".to_string(),
        (ReplicaIdentityKind::Full, _) => "FULL".to_string(),
        (ReplicaIdentityKind::Nothing, _) => "NOTHING".to_string(),
        (ReplicaIdentityKind::Index, Some(index)) => format!("USING INDEX {}", quote_ident(index)),
        (ReplicaIdentityKind::Index, None) => "DEFAULT".to_string(),
    }
}

/// ALTER TABLE ... REPLICA IDENTITY: a catalog change (no scan, no rewrite) under ACCESS
/// EXCLUSIVE, held only for the change; setting the same identity again does nothing.
fn set_step(phase: Phase, table: &QualifiedName, identity: &str) -> Step {
    Step::sql(
        phase,
        format!("set the replica identity of {table} to {identity} (catalog only)"),
        format!(
            "ALTER TABLE IF EXISTS {} REPLICA IDENTITY {identity}",
            table.quoted()
        ),
        LockLevel::AccessExclusive,
        vec![table.to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_has_its_sql() {
        assert_eq!(identity_sql(ReplicaIdentityKind::Full, None), "FULL");
        assert_eq!(identity_sql(ReplicaIdentityKind::Nothing, None), "NOTHING");
        assert_eq!(identity_sql(ReplicaIdentityKind::Default, None), "DEFAULT");
        assert_eq!(
            identity_sql(ReplicaIdentityKind::Index, Some("Orders_Key")),
            "USING INDEX \"Orders_Key\""
        );
    }
}
