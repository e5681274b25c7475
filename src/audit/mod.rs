//! The audit trail: `zdm.audit` in the target database, append-only. Every start, pause,
//! resume, throttle change, gate override, contract confirmation and rollback is one row
//! (when, OS user, database user, client host, migration, action, detail, gate results as
//! JSON). [`record`] is the one way to write it; `zdm audit` (`app::audit`) reads it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::engine::identity::Identity;

/// Creates the table, refuses UPDATE, DELETE and TRUNCATE with a trigger, and takes those
/// privileges from PUBLIC. Idempotent.
const CREATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS zdm;
CREATE TABLE IF NOT EXISTS zdm.audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    os_user text NOT NULL,
    db_user text NOT NULL DEFAULT current_user,
    client_host text NOT NULL,
    client_addr text DEFAULT inet_client_addr()::text,
    migration text NOT NULL,
    action text NOT NULL,
    detail text,
    gates jsonb
);
CREATE OR REPLACE FUNCTION zdm.audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'zdm.audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON zdm.audit
    FOR EACH ROW EXECUTE FUNCTION zdm.audit_is_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON zdm.audit
    FOR EACH STATEMENT EXECUTE FUNCTION zdm.audit_is_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON zdm.audit FROM PUBLIC;
"#;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    /// A setting changed from the next batch on (`zdm ctl set`, the console's `+`/`-`).
    Set,
    /// The manual throttle turned on (`zdm ctl throttle`, the console's `t`).
    Throttle,
    /// The manual throttle cleared (`zdm ctl no-throttle`).
    NoThrottle,
    /// `zdm ctl abort`: the operator asked the backfill to stop, resumably.
    Abort,
    /// The run stopped after its last committed batch on request (Ctrl-C, SIGTERM, an
    /// abort): where it stopped, resumable.
    Stop,
    /// A gate that did not pass was overridden by name.
    OverrideGate,
    /// Contract confirmed (gates shown, name typed) and about to run.
    ConfirmContract,
    /// Contract refused by a gate that did not pass.
    ContractRefused,
    Rollback,
    /// A table rebuilt online (`zdm repack`, `zdm complete --repack`) or vacuumed in its
    /// place (`--vacuum`): what ran and how it ended.
    Repack,
}

impl Action {
    pub fn key(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Set => "set",
            Action::Throttle => "throttle",
            Action::NoThrottle => "no_throttle",
            Action::Abort => "abort",
            Action::Stop => "stop",
            Action::OverrideGate => "override_gate",
            Action::ConfirmContract => "confirm_contract",
            Action::ContractRefused => "contract_refused",
            Action::Rollback => "rollback",
            Action::Repack => "repack",
        }
    }
}

/// One thing to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub migration: &'a str,
    pub action: Action,
    /// A sentence: the setting changed, the gate overridden, the outcome.
    pub detail: Option<String>,
    /// The gate results shown when this was done (`gates::Report` as JSON).
    pub gates: Option<serde_json::Value>,
}

/// A row of `zdm.audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub os_user: String,
    pub db_user: String,
    pub client_host: String,
    pub client_addr: Option<String>,
    pub migration: String,
    pub action: String,
    pub detail: Option<String>,
    pub gates: Option<serde_json::Value>,
}

/// Why the audit trail could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not {doing} zdm.audit: {source}")]
    Database {
        doing: &'static str,
        source: sqlx::Error,
    },
}

/// Creates `zdm.audit` when missing (and its protection). An existing trail is left as it
/// is: another database role than its owner may record in it, but not recreate it.
pub async fn ensure(conn: &mut PgConnection) -> Result<(), Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('zdm.audit') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(|source| Error::Database {
            doing: "look for",
            source,
        })?;
    if exists {
        return Ok(());
    }
    sqlx::raw_sql(CREATE)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|source| Error::Database {
            doing: "create",
            source,
        })
}

/// Appends one entry, as the person running this process. The one writer of the trail:
/// the engine's commands, the control socket and the console all call it.
pub async fn record(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), Error> {
    ensure(conn).await?;
    let who = Identity::current();
    sqlx::query(
        "INSERT INTO zdm.audit (os_user, client_host, migration, action, detail, gates) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&who.os_user)
    .bind(&who.host)
    .bind(entry.migration)
    .bind(entry.action.key())
    .bind(entry.detail)
    .bind(entry.gates)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(|source| Error::Database {
        doing: "append to",
        source,
    })
}

/// The audit entry a control command calls for, if any: pause, resume, abort, `set` and
/// the manual throttle change how the run treats the database; `status` and `get` only
/// read. The runner that serves the control socket (and the console, which speaks the same
/// commands) calls this with each command it accepted, then [`record`]s the entry.
pub fn entry_for_command<'a>(
    migration: &'a str,
    command: &crate::protocol::Command,
) -> Option<Entry<'a>> {
    use crate::protocol::Command;
    let (action, detail) = match command {
        Command::Status | Command::Get { .. } => return None,
        // `zdm complete` records the confirmation itself, with the gates it confirmed.
        Command::ConfirmContract { .. } => return None,
        Command::Pause => (Action::Pause, None),
        Command::Resume => (Action::Resume, None),
        Command::Abort => (
            Action::Abort,
            Some("abort: backfill stopped, resumable".to_string()),
        ),
        Command::Set(setting) => (Action::Set, Some(format!("set {setting}"))),
        Command::Throttle => (Action::Throttle, Some("manual throttle on".to_string())),
        Command::NoThrottle => (Action::NoThrottle, Some("manual throttle off".to_string())),
    };
    Some(Entry {
        migration,
        action,
        detail,
        gates: None,
    })
}

/// The trail, oldest first; only one migration's when `migration` is given. Empty when zdm
/// never wrote one on this database.
pub async fn list(
    conn: &mut PgConnection,
    migration: Option<&str>,
) -> Result<Vec<AuditRow>, Error> {
    let read = |source| Error::Database {
        doing: "read",
        source,
    };
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('zdm.audit') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(read)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT id, at, os_user, db_user, client_host, client_addr, migration, action, detail, \
                gates FROM zdm.audit WHERE $1::text IS NULL OR migration = $1 ORDER BY id",
    )
    .bind(migration)
    .fetch_all(&mut *conn)
    .await
    .map_err(read)?;
    rows.iter()
        .map(|row| {
            Ok(AuditRow {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                os_user: row.try_get("os_user")?,
                db_user: row.try_get("db_user")?,
                client_host: row.try_get("client_host")?,
                client_addr: row.try_get("client_addr")?,
                migration: row.try_get("migration")?,
                action: row.try_get("action")?,
                detail: row.try_get("detail")?,
                gates: row.try_get("gates")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Command;

    #[test]
    fn commands_that_change_the_run_are_audited_and_reads_are_not() {
        assert!(entry_for_command("m", &Command::Status).is_none());
        let pause = entry_for_command("m", &Command::Pause).expect("pause is audited");
        assert_eq!(pause.action, Action::Pause);
        let throttle = entry_for_command("m", &Command::Throttle).expect("throttle");
        assert_eq!(throttle.action.key(), "throttle");
        assert_eq!(throttle.migration, "m");
        // Each entry is filed under what was done, not under one "throttle" for all.
        let setting = crate::settings::Setting::parse_named("batch_target=500ms")
            .expect("a setting")
            .0;
        let set = entry_for_command("m", &Command::Set(setting)).expect("set");
        assert_eq!(set.action.key(), "set");
        assert_eq!(set.detail.as_deref(), Some("set batch_target=500ms"));
        let off = entry_for_command("m", &Command::NoThrottle).expect("no-throttle");
        assert_eq!(off.action.key(), "no_throttle");
        let abort = entry_for_command("m", &Command::Abort).expect("abort");
        assert_eq!(abort.action.key(), "abort");
    }
}
