//! `zdm audit [--migration NAME] [--json]`: the audit trail, as text or JSON.

use sqlx::Connection;

use crate::config::{self, Config};
use crate::engine::identity;

/// Why `zdm audit` could not print the trail.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("could not connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error("could not write the audit trail as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The gate results an entry was made with, one word each (`old_version pass, explain
/// UNKNOWN`); None when they are not a gate report.
fn gate_line(gates: &serde_json::Value) -> Option<String> {
    let report: crate::protocol::Report = serde_json::from_value(gates.clone()).ok()?;
    let verdicts: Vec<String> = report
        .gates
        .iter()
        .map(|gate| format!("{} {}", gate.name, gate.verdict))
        .collect();
    Some(format!(
        "{} (window {:.0} s)",
        verdicts.join(", "),
        report.window_seconds
    ))
}

/// The text (or JSON) `zdm audit` prints.
pub async fn run(
    config: &Config,
    migration: Option<&str>,
    json: bool,
) -> Result<String, CommandError> {
    let url = config.database_url()?;
    let connect_error = |source| CommandError::Connect {
        url: url.to_string(),
        source,
    };
    let mut conn = identity::connect(url).await.map_err(connect_error)?;
    let rows = crate::audit::list(&mut conn, migration).await;
    let _ = conn.close().await;
    let rows = rows?;
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    if rows.is_empty() {
        return Ok("the audit trail is empty\n".to_string());
    }
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!(
            "{}  {:<16} {:<28} {}@{} (database user {}{})",
            row.at.format("%Y-%m-%d %H:%M:%S UTC"),
            row.action,
            row.migration,
            row.os_user,
            row.client_host,
            row.db_user,
            row.client_addr
                .map(|a| format!(", from {a}"))
                .unwrap_or_default()
        ));
        if let Some(detail) = row.detail {
            out.push_str(&format!(": {detail}"));
        }
        out.push('\n');
        if let Some(gates) = row.gates.as_ref().and_then(gate_line) {
            out.push_str(&format!("    gates: {gates}\n"));
        }
    }
    Ok(out)
}
