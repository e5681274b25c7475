//! What `zdm start` does with a migration as recorded: start it, start it over after a
//! rollback, resume it, nothing (it is further along), or refuse. The engine applies the
//! rule under the run lock; the ledger shows it in advance, so the console offers `s`
//! exactly when `zdm start` would act.

use super::state::{MigrationRecord, Status};

/// The answer of [`start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Never started: start it.
    Start,
    /// Rolled back: start it over with the file's plan.
    Restart,
    /// Started and not done with expand and backfill: go on from `Status`.
    Resume(Status),
    /// Already past expand and backfill (recorded as `status`); `reason` says what to run
    /// instead.
    NothingToDo { status: Status, reason: String },
    /// It ran with another checksum than its file has now.
    ChecksumChanged { recorded: String, file: String },
    /// Its rollback began: only `zdm rollback` may go on.
    RollbackInProgress,
}

/// What `zdm start` does with the migration recorded as `record` (`None`: never started)
/// whose file has `checksum`.
pub fn start(record: Option<&MigrationRecord>, checksum: &str) -> Admission {
    let Some(record) = record else {
        return Admission::Start;
    };
    if record.status == Status::RolledBack {
        return Admission::Restart;
    }
    if record.checksum != checksum {
        return Admission::ChecksumChanged {
            recorded: record.checksum.clone(),
            file: checksum.to_string(),
        };
    }
    let name = &record.name;
    let nothing = |reason| Admission::NothingToDo {
        status: record.status,
        reason,
    };
    match record.activity() {
        Status::ReadyToContract => nothing(format!(
            "it is already expanded and backfilled; contract it with \
             `zdm complete {name} --confirm-contract {name}`"
        )),
        Status::Contracting => nothing(format!(
            "its contract phase has started; finish it with \
             `zdm complete {name} --confirm-contract {name}`"
        )),
        Status::Complete => nothing("it is already complete".to_string()),
        Status::RollingBack => Admission::RollbackInProgress,
        _ => Admission::Resume(record.status),
    }
}
