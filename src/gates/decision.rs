//! The gates' evaluation of one migration (`zdm gates`, `zdm complete`) and the decision
//! `zdm complete` takes before contract: overrides validated, the decision and every
//! verdict recorded in `zdm.audit`.

use sqlx::PgConnection;

use super::context::Inputs;
use super::{evaluate_watched, Context, Error, Report, Verdict};
use crate::audit::{self, Action, Entry};
use crate::protocol::Observing;

/// Evaluates every gate of migration `name` over `inputs.window`.
pub async fn report(inputs: &Inputs, name: &str) -> Result<Report, Error> {
    report_watched(inputs, name, |_| {}).await
}

/// Evaluates every gate of migration `name` over `inputs.window`, telling `watch` the
/// countdown and each verdict as it settles.
pub async fn report_watched(
    inputs: &Inputs,
    name: &str,
    watch: impl FnMut(Observing) + Send,
) -> Result<Report, Error> {
    let mut ctx = Context::load(inputs, name).await?;
    let report = evaluate_watched(&mut ctx, watch).await;
    ctx.close().await;
    Ok(report)
}

/// What the contract check decided.
#[derive(Debug)]
pub enum Decision {
    /// Every gate passed or was overridden: contract may run.
    Proceed(Report),
    /// These gates did not pass and were not overridden.
    Blocked {
        report: Report,
        blocking: Vec<String>,
    },
}

/// Why `--override-gate` was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "no gate is named {}: the gates are {}",
    unknown.join(", "),
    super::registry::names().join(", ")
)]
pub struct UnknownGate {
    pub unknown: Vec<String>,
}

/// Refuses overrides that name no gate (before the window, so a typo costs nothing).
pub fn check_overrides(overrides: &[String]) -> Result<(), UnknownGate> {
    let known = super::registry::names();
    let unknown: Vec<String> = overrides
        .iter()
        .filter(|o| !known.contains(&o.as_str()))
        .cloned()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(UnknownGate { unknown })
    }
}

/// Decides on the gates' `report` before contract with the operator's `overrides`, and
/// records the outcome through `audit_conn` (each override, then the confirmation or the
/// refusal, with every gate's result).
pub async fn decide(
    report: Report,
    name: &str,
    overrides: &[String],
    audit_conn: &mut PgConnection,
) -> Result<Decision, Error> {
    let gates_json = serde_json::to_value(&report)?;
    let blocking: Vec<String> = report
        .blocking(overrides)
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let record = |action, detail: String| Entry {
        migration: name,
        action,
        detail: Some(detail),
        gates: Some(gates_json.clone()),
    };
    if !blocking.is_empty() {
        audit::record(
            audit_conn,
            record(
                Action::ContractRefused,
                format!(
                    "gate(s) {} did not pass and were not overridden",
                    blocking.join(", ")
                ),
            ),
        )
        .await?;
        return Ok(Decision::Blocked { report, blocking });
    }
    for gate in report.gates.iter().filter(|g| overrides.contains(&g.name)) {
        let detail = if gate.verdict == Verdict::Pass {
            format!("gate {} overridden (it passed anyway)", gate.name)
        } else {
            format!(
                "gate {} overridden while it said {}: {}",
                gate.name,
                gate.verdict,
                gate.evidence.first().cloned().unwrap_or_default()
            )
        };
        audit::record(audit_conn, record(Action::OverrideGate, detail)).await?;
    }
    audit::record(
        audit_conn,
        record(
            Action::ConfirmContract,
            format!("contract of {name} confirmed"),
        ),
    )
    .await?;
    Ok(Decision::Proceed(report))
}
