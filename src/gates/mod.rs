//! Contract safety gates: checks run against the live database before the irreversible
//! contract phase, each ending in pass, fail or unknown with the evidence it found (never a
//! silent pass). One gate per file, one [`Gate`] trait, one [`registry`].
//!
//! The gates observe over a window (statement counts, index scans): every watching gate
//! takes its first look, the window passes once for all of them, then each judges; the
//! others judge as the window opens, so a front-end shows them settled at once.

pub mod backfill;
pub mod context;
pub mod decision;
pub mod dependencies;
pub mod explain;
pub mod hypothetical;
pub mod indexes;
pub mod matching;
pub mod old_transactions;
pub mod old_version;
pub mod registry;

use futures::future::BoxFuture;
use std::any::Any;

pub use context::{Context, Inputs};
pub use registry::{evaluate, evaluate_watched, registry};

pub use crate::protocol::{GateReport, Report, Verdict};

/// The outcome of `gate`: its name and title with the verdict and what it saw.
pub fn judged(gate: &dyn Gate, verdict: Verdict, evidence: Vec<String>) -> GateReport {
    GateReport {
        name: gate.name().to_string(),
        title: gate.title().to_string(),
        verdict,
        evidence,
    }
}

/// What a gate saw when the window opened, handed back to it when the window closed.
pub type Observation = Box<dyn Any + Send>;

/// One contract safety check.
pub trait Gate: Send + Sync {
    /// Short name, used by `--override-gate` and in the audit trail.
    fn name(&self) -> &'static str;
    /// What it checks, in a sentence.
    fn title(&self) -> &'static str;
    /// Whether it watches the database over the window (takes a first look to compare
    /// with); a gate that does not judges as the window opens, so it settles at once.
    fn watches(&self) -> bool {
        false
    }
    /// First look, when the observation window opens (counters to compare later).
    fn observe<'a>(&'a self, _ctx: &'a mut Context) -> BoxFuture<'a, Observation> {
        Box::pin(async { Box::new(()) as Observation })
    }
    /// The verdict, when the window has passed.
    fn judge<'a>(&'a self, ctx: &'a mut Context, first: Observation) -> BoxFuture<'a, GateReport>;
}

/// Why the gates could not be evaluated at all (a gate's own trouble is its "unknown").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(
        "migration {name} has not been started on this database, so it has no contract to \
         check; run `zdm start {name}` first"
    )]
    NotStarted { name: String },
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error("could not write the gates as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A database error as evidence: the gate could not look, so it says unknown.
pub(crate) fn unknown_because(gate: &dyn Gate, doing: &str, error: &sqlx::Error) -> GateReport {
    judged(
        gate,
        Verdict::Unknown,
        vec![format!("could not check: {doing} failed: {error}")],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let gate = |name: &str, verdict, evidence: &str| GateReport {
            name: name.to_string(),
            title: format!("{name} title"),
            verdict,
            evidence: vec![evidence.to_string()],
        };
        Report {
            migration: "0001_x".to_string(),
            window_seconds: 2.0,
            gates: vec![
                gate("backfill", Verdict::Pass, "2 backfill step(s) done"),
                gate(
                    "old-version-unused",
                    Verdict::Fail,
                    "statement run 3 time(s)\nmore",
                ),
                gate("explain", Verdict::Unknown, "could not read"),
            ],
        }
    }

    #[test]
    fn fail_and_unknown_block_until_overridden_by_name() {
        let report = report();
        let blocking: Vec<&str> = report
            .blocking(&[])
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(blocking, vec!["old-version-unused", "explain"]);
        let overrides = vec!["explain".to_string()];
        let blocking: Vec<&str> = report
            .blocking(&overrides)
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(blocking, vec!["old-version-unused"]);
    }

    #[test]
    fn the_text_shows_every_verdict_and_its_evidence() {
        let text = report().render();
        assert!(
            text.starts_with("contract gates of 0001_x (observed for 2.0 s)"),
            "{text}"
        );
        assert!(
            text.contains("[   pass] backfill: backfill title"),
            "{text}"
        );
        assert!(text.contains("[   FAIL] old-version-unused"), "{text}");
        assert!(text.contains("[UNKNOWN] explain"), "{text}");
        assert!(
            text.contains("          - statement run 3 time(s)\n            more\n"),
            "{text}"
        );
    }

    #[test]
    fn every_gate_has_a_distinct_name() {
        let mut names = registry::names();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        assert_eq!(count, 6);
    }
}
