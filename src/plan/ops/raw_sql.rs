//! raw_sql: SQL zdm cannot reason about, run as written in the phase the file names, marked
//! unsafe in the plan and assumed to take the strongest lock. Its `down` is its rollback;
//! without one, rolling back stops at it with an error instead of silently leaving it done.

use crate::migration::operation::{RawSql, RawSqlPhase};
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal};
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for RawSql {
    fn tables(&self) -> Vec<&str> {
        Vec::new()
    }

    fn validate(&self, _ws: &Workspace) -> Result<(), Problem> {
        if self.up.trim().is_empty() {
            return Err(Problem::Refused("raw_sql has an empty `up`".to_string()));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let unchecked = |phase: Phase, description: &str, sql: &str| Step {
            unchecked: true,
            creates: Vec::new(),
            ..Step::sql(
                phase,
                description,
                sql,
                LockLevel::AccessExclusive,
                vec!["(unknown: raw SQL)".to_string()],
            )
        };
        match self.phase {
            RawSqlPhase::Expand => {
                ws.push_expand(unchecked(
                    Phase::Expand,
                    "raw SQL (not checked by zdm)",
                    &self.up,
                ));
                let down = match &self.down {
                    Some(down) => down.clone(),
                    None => do_block(&format!(
                        "  RAISE EXCEPTION {};\n",
                        literal(&format!(
                            "migration {}: a raw_sql operation has no down, so zdm cannot undo it",
                            ws.migration
                        ))
                    )),
                };
                ws.push_rollback(unchecked(
                    Phase::Rollback,
                    "raw SQL undo (not checked by zdm)",
                    &down,
                ));
            }
            RawSqlPhase::Contract => {
                ws.push_contract(unchecked(
                    Phase::Contract,
                    "raw SQL (not checked by zdm)",
                    &self.up,
                ));
            }
        }
        Ok(())
    }
}
