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
