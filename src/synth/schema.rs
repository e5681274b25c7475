//! A target's schema copied into a scratch database with PostgreSQL's own tools: `pg_dump`
//! of the target (the password through the environment, never on a command line) restored
//! with `psql`. `zdm check --dry-run` copies the whole schema at once; `zdm synth` copies
//! it in pg_dump's sections (pre-data, then its generated rows, then post-data) so that
//! indexes and constraints are built and validated once, over the loaded rows.

use std::io::Write;
use std::process::Command;

use sqlx::Connection;

use crate::db::DatabaseUrl;
use crate::localpg::Binaries;

/// `pg_dump` of `url` with `args` (owners and privileges left out: the copy belongs to
/// whoever restores it), the password passed through the environment.
pub fn pg_dump(binaries: &Binaries, url: &str, args: &[&str]) -> Result<String, String> {
    let (url, password) = crate::db::split_password(url)
        .ok_or_else(|| "its URL is not one pg_dump can be given safely".to_string())?;
    let mut command = Command::new(binaries.tool("pg_dump"));
    command
        .args(["--no-owner", "--no-privileges", "--dbname", &url])
        .args(args);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run pg_dump: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `sql` (a dump) in database `url` with `psql`, stopping at the first error.
pub fn restore(binaries: &Binaries, url: &str, sql: &str) -> Result<(), String> {
    let (url, password) = crate::db::split_password(url)
        .ok_or_else(|| "its URL is not one psql can be given safely".to_string())?;
    let mut command = Command::new(binaries.tool("psql"));
    command
        .args([
            "--quiet",
            "--no-psqlrc",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            &url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let restored = command
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(sql.as_bytes())?;
            }
            child.wait_with_output()
        })
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !restored.status.success() {
        return Err(format!(
            "restoring it failed: {}",
            String::from_utf8_lossy(&restored.stderr).trim()
        ));
    }
    Ok(())
}

/// Whether the target has zdm's state (schema `zdm`): pg_dump refuses a schema that is not.
pub async fn has_state(target: &DatabaseUrl) -> Result<bool, String> {
    let options = target
        .connect_options()
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut conn = target
        .connect_with(&options)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let found = sqlx::query_scalar("SELECT to_regnamespace('zdm') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("cannot read its schemas: {e}"));
    let _ = conn.close().await;
    found
}

/// zdm's own state (schema `zdm`, its rows: what ran, what is in progress) as a data-only
/// dump, or nothing when the target has none.
pub async fn state_rows(binaries: &Binaries, target: &DatabaseUrl) -> Result<String, String> {
    if !has_state(target).await? {
        return Ok(String::new());
    }
    pg_dump(
        binaries,
        target.expose(),
        &["--data-only", "--schema=zdm", "--disable-triggers"],
    )
}
