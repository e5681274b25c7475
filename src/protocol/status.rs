//! Where a migration stands ([`Status`]): stored in `zdm.migrations.status` by the engine
//! (`engine::state` reads and writes it), reported by `zdm status`, and carried by a run's
//! `status_changed` event, always as the same snake_case key.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::Phase;

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the migrations directory, not started on this database.
    Pending,
    Expanding,
    Backfilling,
    /// Expand and backfill are done; old and new versions both work. Contract needs
    /// `zdm complete NAME --confirm-contract NAME`.
    ReadyToContract,
    Contracting,
    Complete,
    RollingBack,
    RolledBack,
    /// Stopped by an error (see the record's `error` and `failed_during`).
    Failed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Expanding,
        Status::Backfilling,
        Status::ReadyToContract,
        Status::Contracting,
        Status::Complete,
        Status::RollingBack,
        Status::RolledBack,
        Status::Failed,
    ];

    /// The value stored in `zdm.migrations.status`.
    pub fn key(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Expanding => "expanding",
            Status::Backfilling => "backfilling",
            Status::ReadyToContract => "ready_to_contract",
            Status::Contracting => "contracting",
            Status::Complete => "complete",
            Status::RollingBack => "rolling_back",
            Status::RolledBack => "rolled_back",
            Status::Failed => "failed",
        }
    }

    /// The status stored (and reported by a run's `status_changed` event) as `key`.
    pub fn from_key(key: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.key() == key)
    }

    /// A migration's status while steps of `phase` run.
    pub fn during(phase: Phase) -> Status {
        match phase {
            Phase::Expand => Status::Expanding,
            Phase::Backfill => Status::Backfilling,
            Phase::Contract => Status::Contracting,
            Phase::Rollback => Status::RollingBack,
        }
    }

    /// The phase whose steps run in this status (None when none runs).
    pub fn running_phase(self) -> Option<Phase> {
        match self {
            Status::Expanding => Some(Phase::Expand),
            Status::Backfilling => Some(Phase::Backfill),
            Status::Contracting => Some(Phase::Contract),
            Status::RollingBack => Some(Phase::Rollback),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key().replace('_', " "))
    }
}
