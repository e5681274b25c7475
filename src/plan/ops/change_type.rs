//! change_type: never ALTER COLUMN TYPE (a rewrite under ACCESS EXCLUSIVE). A shadow column
//! of the new type is added, kept in step by the sync trigger (`up` when the old version
//! writes, `down` when the new one does), backfilled in batches, and renamed into place at
//! contract, where the old column is dropped. The mechanism is `plan::shadow`, shared with
//! drop_not_null.

use crate::migration::operation::ChangeType;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::shadow::{self, Shadow};
use crate::plan::workspace::Workspace;

impl PlanOperation for ChangeType {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        shadow::validate(ws, &self.table, &self.column, None)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        shadow::plan(
            ws,
            &self.table,
            &self.column,
            &Shadow {
                data_type: &self.data_type,
                up: &self.up,
                down: &self.down,
                nullable: None,
            },
        )
    }
}
