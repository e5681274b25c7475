//! `zdm gates NAME [--json] [--window SECONDS]`: every contract safety gate of a migration,
//! evaluated over its observation window, as text or JSON.

use std::time::Duration;

use crate::config::{self, Config};
use crate::gates::{self, decision};

/// Why `zdm gates` could not evaluate the gates.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Gates(#[from] gates::Error),
    #[error("could not write the gates as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The text (or JSON) `zdm gates` prints; `window` overrides `[gates] window_s`.
pub async fn run(
    config: &Config,
    name: &str,
    json: bool,
    window: Option<Duration>,
) -> Result<String, CommandError> {
    let report = decision::report(&config.gate_inputs(window)?, name).await?;
    if json {
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    } else {
        Ok(report.render())
    }
}
