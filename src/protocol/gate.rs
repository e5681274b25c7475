//! A contract safety gate's outcome, the one type for it: the gates produce it, `zdm gates`
//! and `zdm complete` print it, `zdm.audit` stores it, a run's `gates_evaluated` event
//! carries it and the console's contract dialog lists it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The gate could not find out (missing extension, unreachable replica, query error):
    /// blocks contract like a failure, because nothing was proved.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        })
    }
}

/// One gate's outcome: what it checked, the verdict, and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The gate's name, as given to `--override-gate`.
    pub name: String,
    /// What the gate checks, in a sentence.
    pub title: String,
    pub verdict: Verdict,
    /// One line per finding; for a pass, what was checked.
    pub evidence: Vec<String>,
}

/// Every gate of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub migration: String,
    /// Seconds the window lasted.
    pub window_seconds: f64,
    pub gates: Vec<GateReport>,
}

impl Report {
    /// Gates that did not pass and are not overridden: what still blocks contract.
    pub fn blocking<'a>(&'a self, overrides: &'a [String]) -> Vec<&'a GateReport> {
        self.gates
            .iter()
            .filter(|g| g.verdict != Verdict::Pass && !overrides.contains(&g.name))
            .collect()
    }

    /// The text `zdm gates` prints.
    pub fn render(&self) -> String {
        let mut out = format!(
            "contract gates of {} (observed for {:.1} s)\n",
            self.migration, self.window_seconds
        );
        for gate in &self.gates {
            out.push_str(&format!(
                "\n[{:>7}] {}: {}\n",
                gate.verdict.to_string(),
                gate.name,
                gate.title
            ));
            for line in &gate.evidence {
                for (i, part) in line.lines().enumerate() {
                    out.push_str(if i == 0 {
                        "          - "
                    } else {
                        "            "
                    });
                    out.push_str(part);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The gates while their window runs: those that judged already and those still watching,
/// with the time left. Sent every second, so a front-end that joins late shows it at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observing {
    pub migration: String,
    #[serde(rename = "window_ms", with = "super::millis")]
    pub window: std::time::Duration,
    #[serde(rename = "remaining_ms", with = "super::millis")]
    pub remaining: std::time::Duration,
    /// Gates that have judged, in display order.
    pub settled: Vec<GateReport>,
    /// Names of the gates still watching the database, in display order.
    pub watching: Vec<String>,
}

impl Observing {
    /// `contract gates of m: 42 s left; 4 settled (1 FAIL), watching old-version-unused, indexes-unused`
    pub fn describe(&self) -> String {
        let failed = self
            .settled
            .iter()
            .filter(|gate| gate.verdict != Verdict::Pass)
            .count();
        let mut line = format!(
            "contract gates of {}: {} s left; {} settled",
            self.migration,
            self.remaining.as_secs_f64().ceil() as u64,
            self.settled.len()
        );
        if failed > 0 {
            line.push_str(&format!(" ({failed} not passed)"));
        }
        if !self.watching.is_empty() {
            line.push_str(&format!(", watching {}", self.watching.join(", ")));
        }
        line
    }
}
