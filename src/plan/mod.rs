//! The planner's output: a migration turned into phased, lock-annotated steps that the
//! engine (`crate::engine`) runs. Planning is pure: migration + catalog in, [`Plan`] out.

pub mod step;

pub use step::{Backfill, LockLevel, Phase, Step, StepAction};

use serde::{Deserialize, Serialize};

/// Everything the engine will do for one migration, phase by phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The migration's name (its file stem).
    pub migration: String,
    /// The schema of views that shows the new version (`public_0003_orders_add_status`).
    pub version_schema: String,
    /// Steps in the order they run; each carries its phase.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The steps of one phase, in order.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |step| step.phase == phase)
    }
}
