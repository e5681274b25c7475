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
    }
    Ok(out)
}
