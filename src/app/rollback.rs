//! `zdm rollback NAME`: undo expand and backfill with the recorded plan's rollback steps.

use super::run::{connect, finish, record, CommandError, RunFrontends};
use crate::audit::Action;
use crate::config::Config;

/// `zdm rollback NAME`: undo expand and backfill.
pub async fn run(config: &Config, name: &str) -> Result<String, CommandError> {
    let mut engine = connect(config).await?;
    let frontends = RunFrontends::start(
        config,
        &mut engine,
        "rollback",
        name,
        Some(crate::protocol::Status::RollingBack),
    )
    .await;
    record(config, name, Action::Rollback, None).await?;
    let outcome = engine.rollback(name).await;
    finish(engine, frontends, None, outcome).await
}
