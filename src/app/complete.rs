//! `zdm complete NAME --confirm-contract NAME [--override-gate GATE]...`: the recorded
//! plan's contract SQL checked, the contract safety gates evaluated (and sent to every
//! front-end), then contract, irreversible, only when every gate passed or was overridden.

use std::time::Duration;

use sqlx::Connection;

use super::run::{
    attach_throttle, connect, connect_plain, finish, require_migrations_dir, stopped_is_not_failed,
    CommandError, RunFrontends,
};
use crate::audit::{self, Action, Entry};
use crate::config::Config;
use crate::engine::Error;
use crate::gates::decision::{self, Decision};
use crate::plan;
use crate::runner::Served;

/// What `zdm complete` needs beyond the name: the confirmation and the gate overrides.
#[derive(Debug, Clone, Default)]
pub struct CompleteOptions {
    /// Must equal the migration's name.
    pub confirmation: String,
    /// Gates that did not pass and that the operator accepts anyway (recorded).
    pub overrides: Vec<String>,
    /// The gates' observation window (default: `[gates] window_s`).
    pub window: Option<Duration>,
}

/// `zdm complete NAME --confirm-contract NAME [--override-gate GATE]...`: the contract
/// safety gates are evaluated and shown (stderr), then contract runs, irreversible, only
/// when every gate passed or was overridden by name. All of it goes to `zdm.audit`.
pub async fn run(
    config: &Config,
    name: &str,
    options: &CompleteOptions,
) -> Result<String, CommandError> {
    let confirmation = options.confirmation.as_str();
    if confirmation != name {
        // Refused before connecting: nothing about the database is needed to say no.
        return Err(Error::ConfirmationMismatch {
            name: name.to_string(),
            given: confirmation.to_string(),
        }
        .into());
    }
    // The gates read the migration's file (its [[verify]] queries): without it they
    // could only report an unknown gate after their whole window.
    require_migrations_dir(config)?;
    let mut engine = connect(config).await?;
    // Contract is irreversible: its SQL is parsed again (the recorded plan's) before the
    // gates and the first step, so a statement that cannot run never strands it half way.
    if let Some(plan) = engine.recorded_plan(name).await? {
        let steps = plan::sql_check::unparsable(plan.phase(crate::plan::Phase::Contract));
        if !steps.is_empty() {
            engine.close().await?;
            return Err(CommandError::ContractSql {
                name: name.to_string(),
                steps,
            });
        }
    }
    // Served from here: the gates take their observation window, and a console or
    // `zdm attach` should see the run meanwhile.
    let mut frontends = RunFrontends::start(
        config,
        &mut engine,
        "complete",
        name,
        Some(crate::protocol::Status::ReadyToContract),
    )
    .await;
    frontends.served.log(
        crate::protocol::Level::Info,
        "evaluating the contract safety gates (they observe the database for their window)",
    );
    // Gates run while this zdm holds the run lock: nothing else starts meanwhile.
    if let Err(error) = contract_gates(config, name, options, &frontends.served).await {
        let closed = engine.close().await;
        frontends.end(Err(error.to_string())).await;
        closed?;
        return Err(error);
    }
    // Contract may backfill too: it is throttled like start.
    let monitor = match engine.recorded_plan(name).await? {
        Some(plan) => {
            let mut catalog = connect_plain(config).await?;
            let monitor = attach_throttle(config, &mut engine, &mut catalog, &plan).await;
            let _ = catalog.close().await;
            monitor
        }
        None => None,
    };
    frontends.stream_metrics(monitor.as_ref());
    let outcome = engine.complete(name, confirmation).await;
    let finished = finish(engine, frontends, monitor, outcome).await;
    stopped_is_not_failed(config, name, finished).await
}

/// Evaluates and prints the gates of a migration ready to contract, records the decision,
/// and refuses when a gate blocks. A contract already begun (resumed after a crash) is not
/// gated: part of what the gates look at is gone, and stopping half way helps nobody.
async fn contract_gates(
    config: &Config,
    name: &str,
    options: &CompleteOptions,
    served: &Served,
) -> Result<(), CommandError> {
    let mut conn = connect_plain(config).await?;
    let status = crate::engine::state::get(&mut conn, name)
        .await?
        .map(|record| record.activity());
    if status != Some(crate::engine::Status::ReadyToContract) {
        let resumed = if status == Some(crate::engine::Status::Contracting) {
            audit::record(
                &mut conn,
                Entry {
                    migration: name,
                    action: Action::ConfirmContract,
                    detail: Some(
                        "resuming a contract begun earlier; gates not evaluated again".to_string(),
                    ),
                    gates: None,
                },
            )
            .await
        } else {
            Ok(())
        };
        let _ = conn.close().await;
        return Ok(resumed?);
    }
    let inputs = config.gate_inputs(options.window)?;
    let decided = decision::before_contract(&inputs, name, &options.overrides, &mut conn).await;
    let _ = conn.close().await;
    // Shown by every front-end (this command's printer too) from the run's event.
    match decided?? {
        Decision::Proceed(report) => {
            served.gates_evaluated(&report);
            Ok(())
        }
        Decision::Blocked { report, blocking } => {
            served.gates_evaluated(&report);
            Err(CommandError::GatesBlocked {
                name: name.to_string(),
                blocking,
            })
        }
    }
}
