//! Every gate, in the order they are shown, and running them: all take their first look,
//! the observation window passes once, then each one judges.

use super::backfill::BackfillComplete;
use super::dependencies::NothingDepends;
use super::explain::ExplainVerified;
use super::indexes::IndexesUnused;
use super::old_transactions::NothingOldRunning;
use super::old_version::OldVersionUnused;
use super::{Context, Gate, Report};

/// The gates, in display order. Adding one is a new file and a line here.
pub fn registry() -> Vec<Box<dyn Gate>> {
    vec![
        Box::new(BackfillComplete),
        Box::new(OldVersionUnused),
        Box::new(IndexesUnused),
        Box::new(NothingDepends),
        Box::new(NothingOldRunning),
        Box::new(ExplainVerified),
    ]
}

/// The names `--override-gate` accepts.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|g| g.name()).collect()
}

/// Runs every gate over `ctx.window`.
pub async fn evaluate(ctx: &mut Context) -> Report {
    let gates = registry();
    let started = std::time::Instant::now();
    let mut first = Vec::with_capacity(gates.len());
    for gate in &gates {
        first.push(gate.observe(ctx).await);
    }
    tokio::time::sleep(ctx.window).await;
    let window_seconds = started.elapsed().as_secs_f64();
    let mut reports = Vec::with_capacity(gates.len());
    for (gate, observation) in gates.iter().zip(first) {
        reports.push(gate.judge(ctx, observation).await);
    }
    Report {
        migration: ctx.record.name.clone(),
        window_seconds,
        gates: reports,
    }
}
