//! Every gate, in the order they are shown, and running them: all take their first look,
//! the observation window passes once, then each one judges.

use super::backfill::BackfillComplete;
use super::dependencies::NothingDepends;
use super::explain::ExplainVerified;
use super::indexes::IndexesUnused;
use super::old_transactions::NothingOldRunning;
use super::old_version::OldVersionUnused;
use std::time::{Duration, Instant};

use super::{Context, Gate, GateReport, Observation, Report};
use crate::protocol::Observing;

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
    evaluate_watched(ctx, |_| {}).await
}

/// How often [`evaluate_watched`] reports the window's countdown.
const TICK: Duration = Duration::from_secs(1);

/// Runs every gate over `ctx.window`, telling `watch` where they are: at once (the gates
/// that need no window have judged), every second of the window, and when all judged.
pub async fn evaluate_watched(
    ctx: &mut Context,
    mut watch: impl FnMut(Observing) + Send,
) -> Report {
    let gates = registry();
    let started = Instant::now();
    let mut first: Vec<Option<Observation>> = Vec::with_capacity(gates.len());
    for gate in &gates {
        first.push(if gate.watches() {
            Some(gate.observe(ctx).await)
        } else {
            None
        });
    }
    let mut settled: Vec<Option<GateReport>> = vec![None; gates.len()];
    for (index, gate) in gates.iter().enumerate() {
        // Observations are Send but not Sync: none is borrowed across an await.
        if !gate.watches() {
            settled[index] = Some(gate.judge(ctx, Box::new(())).await);
        }
    }
    let migration = ctx.record.name.clone();
    let window = ctx.window;
    let observing = |settled: &[Option<GateReport>], remaining| Observing {
        migration: migration.clone(),
        window,
        remaining,
        settled: settled.iter().flatten().cloned().collect(),
        watching: gates
            .iter()
            .zip(settled)
            .filter(|(_, report)| report.is_none())
            .map(|(gate, _)| gate.name().to_string())
            .collect(),
    };
    let deadline = started + window;
    loop {
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        watch(observing(&settled, remaining));
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(remaining.min(TICK)).await;
    }
    let window_seconds = started.elapsed().as_secs_f64();
    for (index, observation) in first.into_iter().enumerate() {
        if let Some(observation) = observation {
            settled[index] = Some(gates[index].judge(ctx, observation).await);
            watch(observing(&settled, Duration::ZERO));
        }
    }
    Report {
        migration,
        window_seconds,
        gates: settled.into_iter().flatten().collect(),
    }
}
