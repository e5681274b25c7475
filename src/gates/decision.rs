//! The gates' evaluation of one migration (`zdm gates`, the console's contract dialog) and
//! the check `zdm complete` runs before contract: overrides validated, the decision and
//! every verdict recorded in `zdm.audit`.

use sqlx::PgConnection;

use super::context::Inputs;
use super::{evaluate, Context, Error, Report, Verdict};
use crate::audit::{self, Action, Entry};

/// Evaluates every gate of migration `name` over `inputs.window`.
pub async fn report(inputs: &Inputs, name: &str) -> Result<Report, Error> {
    let mut ctx = Context::load(inputs, name).await?;
    let report = evaluate(&mut ctx).await;
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

/// Evaluates the gates before contract, records the outcome (overrides, the confirmation or
/// the refusal, with every gate's result) through `audit`, and decides.
pub async fn before_contract(
    inputs: &Inputs,
    name: &str,
    overrides: &[String],
    audit_conn: &mut PgConnection,
) -> Result<Result<Decision, UnknownGate>, Error> {
    let known = super::registry::names();
    let unknown: Vec<String> = overrides
        .iter()
        .filter(|o| !known.contains(&o.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Ok(Err(UnknownGate { unknown }));
    }
    let report = report(inputs, name).await?;
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
        return Ok(Ok(Decision::Blocked { report, blocking }));
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
    Ok(Ok(Decision::Proceed(report)))
}
