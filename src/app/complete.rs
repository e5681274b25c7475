//! `zdm complete NAME --confirm-contract NAME [--override-gate GATE]...`: the recorded
//! plan's contract SQL checked, the contract safety gates evaluated (their countdown and
//! verdicts sent to every front-end), then contract, irreversible, only when every gate
//! passed or was overridden. With `--await-confirmation` the run evaluates the gates, then
//! waits for the typed confirmation over its control socket (the console's contract
//! dialog, `zdm ctl confirm-contract`) and contracts at once: one gate window, not two.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::run::{
    attach_throttle, connect, connect_plain, finish, require_migrations_dir, stopped_is_not_failed,
    CommandError, RunFrontends,
};
use crate::audit::{self, Action, Entry};
use crate::config::Config;
use crate::engine::BackfillControl;
use crate::engine::Error;
use crate::gates::decision::{self, Decision};
use crate::gates::Report;
use crate::plan;
use crate::protocol::Reply;
use crate::runner::{Confirmation, Served};

/// How long a run started with `--await-confirmation` waits for it once the gates have
/// judged: their evidence ages, so a confirmation much later would confirm stale gates.
pub const CONFIRMATION_WAIT: Duration = Duration::from_secs(15 * 60);

/// How often the waiting run says again that it waits (for front-ends that attach late).
const WAITING_REMINDER: Duration = Duration::from_secs(5);

/// What `zdm complete` needs beyond the name: the confirmation and the gate overrides.
#[derive(Debug, Clone, Default)]
pub struct CompleteOptions {
    /// Must equal the migration's name (unused with `await_confirmation`).
    pub confirmation: String,
    /// Evaluate the gates, then wait for the confirmation over the control socket.
    pub await_confirmation: bool,
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
    if !options.await_confirmation && confirmation != name {
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
    // A confirmation comes only over the socket: without one, waiting would last the whole
    // wait for nothing. Said before the gates' window, not after it.
    if options.await_confirmation && !frontends.served.has_socket() {
        let error = CommandError::NoSocketToConfirm {
            name: name.to_string(),
        };
        let closed = engine.close().await;
        frontends.end(Err(error.to_string())).await;
        closed?;
        return Err(error);
    }
    frontends.served.log(
        crate::protocol::Level::Info,
        "evaluating the contract safety gates (they observe the database for their window)",
    );
    // Gates run while this zdm holds the run lock: nothing else starts meanwhile.
    let gated = contract_gates(config, name, options, &frontends.served, engine.control()).await;
    if let Err(error) = gated {
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
    // Confirmed by name (on the command line, or over the socket to this very run).
    let outcome = engine.complete(name, name).await;
    let finished = finish(engine, frontends, monitor, outcome).await;
    stopped_is_not_failed(config, name, finished).await
}

/// Evaluates and shows the gates of a migration ready to contract, waits for the
/// confirmation when asked to, records the decision, and refuses when a gate blocks. A
/// contract already begun (resumed after a crash) is not gated: part of what the gates
/// look at is gone, and stopping half way helps nobody.
async fn contract_gates(
    config: &Config,
    name: &str,
    options: &CompleteOptions,
    served: &Served,
    control: BackfillControl,
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
    let decided = async {
        // A misspelt override is refused before the window, not after it.
        decision::check_overrides(&options.overrides)?;
        let inputs = config.gate_inputs(options.window)?;
        let report =
            decision::report_watched(&inputs, name, |observing| served.gates_observing(observing))
                .await?;
        // Shown by every front-end (this command's printer too) from the run's event.
        served.gates_evaluated(&report);
        if options.await_confirmation {
            confirmed(served, control, name, report, &mut conn).await
        } else {
            decide(report, name, &options.overrides, &mut conn).await
        }
    }
    .await;
    let _ = conn.close().await;
    decided
}

/// The decision on the gates with the operator's overrides, recorded.
async fn decide(
    report: Report,
    name: &str,
    overrides: &[String],
    conn: &mut PgConnection,
) -> Result<(), CommandError> {
    match decision::decide(report, name, overrides, conn).await? {
        Decision::Proceed(_) => Ok(()),
        Decision::Blocked { blocking, .. } => Err(CommandError::GatesBlocked {
            name: name.to_string(),
            blocking,
        }),
    }
}

/// Waits for a confirmation of contract over the control socket: the typed name and an
/// override for every gate that did not pass. A wrong one is refused to its sender and the
/// run goes on waiting; a stop (`zdm ctl abort`, the console's Esc, a signal) or
/// [`CONFIRMATION_WAIT`] without one ends the run with nothing contracted.
async fn confirmed(
    served: &Served,
    control: BackfillControl,
    name: &str,
    report: Report,
    conn: &mut PgConnection,
) -> Result<(), CommandError> {
    let mut requests = served.await_confirmations();
    let mut watcher = control.watcher();
    let blocking: Vec<String> = report
        .blocking(&[])
        .iter()
        .map(|gate| gate.name.clone())
        .collect();
    let deadline = Instant::now() + CONFIRMATION_WAIT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let ended = match watcher.stop_requested() {
            Some(why) => Some(why),
            None if remaining.is_zero() => Some(format!(
                "no confirmation came within {}",
                crate::format::duration(CONFIRMATION_WAIT)
            )),
            None => None,
        };
        if let Some(why) = ended {
            refuse(conn, name, &report, format!("not confirmed: {why}")).await?;
            return Err(Error::StoppedBetweenSteps {
                before: "contract".to_string(),
                why,
            }
            .into());
        }
        served.awaiting_confirmation(blocking.clone(), remaining);
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { continue };
                let overrides = match accept(&request, name, &report) {
                    Ok(overrides) => overrides,
                    Err(why) => {
                        // The client may have gone meanwhile: nothing to do about it.
                        let _ = request.reply.send(Reply::error(why));
                        continue;
                    }
                };
                let decided = decision::decide(report.clone(), name, &overrides, conn).await;
                let reply = match &decided {
                    Ok(Decision::Proceed(_)) => {
                        Reply::done(format!("contract of {name} confirmed: it runs now"))
                    }
                    Ok(Decision::Blocked { blocking, .. }) => {
                        Reply::error(format!("gate(s) {} did not pass", blocking.join(", ")))
                    }
                    Err(error) => Reply::error(format!(
                        "the confirmation could not be recorded in zdm.audit, so contract \
                         does not run: {error}"
                    )),
                };
                let _ = request.reply.send(reply);
                return match decided? {
                    Decision::Proceed(_) => Ok(()),
                    // `accept` checked every blocking gate: not reached, but never
                    // contract on it.
                    Decision::Blocked { blocking, .. } => Err(CommandError::GatesBlocked {
                        name: name.to_string(),
                        blocking,
                    }),
                };
            }
            _ = watcher.sleep(WAITING_REMINDER.min(remaining)) => {}
        }
    }
}

/// The overrides of a confirmation that may contract, or why it may not (said to its
/// sender; the run goes on waiting).
fn accept(request: &Confirmation, name: &str, report: &Report) -> Result<Vec<String>, String> {
    if request.confirmation != name {
        return Err(format!(
            "the confirmation must be the migration's name, {name} (got {:?}); nothing was \
             contracted",
            request.confirmation
        ));
    }
    decision::check_overrides(&request.overrides).map_err(|unknown| unknown.to_string())?;
    let blocking: Vec<String> = report
        .blocking(&request.overrides)
        .iter()
        .map(|gate| gate.name.clone())
        .collect();
    if !blocking.is_empty() {
        return Err(format!(
            "gate(s) {} did not pass: contract needs each overridden by name ({}), having \
             checked what it found; nothing was contracted",
            blocking.join(", "),
            blocking
                .iter()
                .map(|g| format!("--override-gate {g}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(request.overrides.clone())
}

/// Records that contract did not run, with the gates it would have confirmed.
async fn refuse(
    conn: &mut PgConnection,
    name: &str,
    report: &Report,
    detail: String,
) -> Result<(), CommandError> {
    audit::record(
        conn,
        Entry {
            migration: name,
            action: Action::ContractRefused,
            detail: Some(detail),
            gates: Some(serde_json::to_value(report)?),
        },
    )
    .await?;
    Ok(())
}
