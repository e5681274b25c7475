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
    #[error(transparent)]
    MissingDir(#[from] super::run::MissingDir),
    #[error("could not write the gates as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What `zdm gates` prints, and whether every gate passed (it exits non-zero otherwise).
#[derive(Debug)]
pub struct GatesOutput {
    pub text: String,
    pub passed: bool,
}

/// The text (or JSON) `zdm gates` prints; `window` overrides `[gates] window_s`. A missing
/// migrations directory is refused at once: the explain gate reads the file's queries.
pub async fn run(
    config: &Config,
    name: &str,
    json: bool,
    window: Option<Duration>,
) -> Result<GatesOutput, CommandError> {
    super::run::require_migrations_dir(config)?;
    let report = decision::report(&config.gate_inputs(window)?, name).await?;
    let passed = report.blocking(&[]).is_empty();
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    Ok(GatesOutput { text, passed })
}
