//! The headless commands through the real binary: status (text and JSON, never the
//! password), complete's confirmation, rollback, and start's honest "planning is not
//! available yet".

mod common;
mod engine_support;

use std::process::{Command, Output};

use engine_support::{engine, plan, quick_options, sql};
use zdm::localpg::LocalPg;
use zdm::plan::{LockLevel, Phase};

fn zdm(pg: &LocalPg, url: &str, args: &[&str]) -> Output {
    Command::new(common::zdm_binary())
        .args(args)
        .args(["--database-url", url])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join("zdm-cli.log"))
        .output()
        .expect("run zdm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn status_complete_rollback_and_start_from_the_command_line() {
    let pg = common::primary();
    let pool = common::database(&pg, "cli").await;
    // Trust authentication ignores the password; it is here to prove it is never shown.
    let url = format!(
        "postgres://postgres:s3cr3t-pw@127.0.0.1:{}/cli",
        pg.primary().port()
    );

    let output = zdm(&pg, &url, &["status"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("No migration has been started"), "{stdout}");
    assert!(stdout.contains("postgres:***@127.0.0.1"), "{stdout}");
    assert!(
        stdout.contains("physical tables: SET search_path TO public"),
        "{stdout}"
    );

    let name = "0001_notes";
    let plan = plan(
        name,
        vec![
            sql(Phase::Expand, "create table notes", "CREATE TABLE notes (id bigint PRIMARY KEY, body text)", LockLevel::None, "public.notes"),
            sql(Phase::Expand, "version schema", "CREATE SCHEMA public_0001_notes; CREATE VIEW public_0001_notes.notes AS SELECT * FROM public.notes", LockLevel::None, "public.notes"),
            sql(Phase::Rollback, "drop version schema", "DROP SCHEMA IF EXISTS public_0001_notes CASCADE", LockLevel::AccessExclusive, "public.notes"),
            sql(Phase::Rollback, "drop table notes", "DROP TABLE IF EXISTS notes", LockLevel::AccessExclusive, "public.notes"),
        ],
    );
    let mut engine = engine(&pg, "cli", quick_options()).await;
    engine.start(&plan, "checksum-1").await.expect("start");
    engine.close().await.expect("close");

    let output = zdm(&pg, &url, &["status"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("0001_notes  ready to contract"), "{stdout}");
    assert!(
        stdout.contains("steps:          expand 2/2, rollback 0/2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0001_notes: SET search_path TO \"public_0001_notes\""),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t-pw"), "{stdout}");

    let output = zdm(&pg, &url, &["status", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["migrations"][0]["name"], name);
    assert_eq!(json["migrations"][0]["status"], "ready_to_contract");
    assert_eq!(json["migrations"][0]["checksum"], "checksum-1");
    assert_eq!(json["migrations"][0]["version_schema_exists"], true);
    assert_eq!(json["versions"][0]["search_path"], "public");
    assert_eq!(json["versions"][1]["search_path"], "\"public_0001_notes\"");
    assert!(!text(&output.stdout).contains("s3cr3t-pw"));

    // Contract without the exact name is refused and changes nothing.
    let output = zdm(&pg, &url, &["complete", name, "--confirm-contract", "0001"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("confirmation must be the migration's name"),
        "{stderr}"
    );
    let output = zdm(&pg, &url, &["complete", name]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--confirm-contract"));
    let status: String = sqlx::query_scalar("SELECT status FROM zdm.migrations")
        .fetch_one(&pool)
        .await
        .expect("status");
    assert_eq!(status, "ready_to_contract");

    // Start reads the migration files first: without them it says what is missing.
    let output = zdm(
        &pg,
        &url,
        &["start", name, "--dir", "/nonexistent/migrations"],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nonexistent/migrations"), "{stderr}");

    // Rollback runs the recorded plan; a second one has nothing to do.
    let output = zdm(&pg, &url, &["rollback", name]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("rolled back"),
        "{}",
        text(&output.stdout)
    );
    let progress = text(&output.stderr);
    assert!(
        progress.contains("rollback step 1/2 started: drop version schema"),
        "{progress}"
    );
    assert!(
        progress.contains("rollback step 2/2 started: drop table notes"),
        "{progress}"
    );
    let gone: (Option<String>, bool) = sqlx::query_as(
        "SELECT to_regclass('public.notes')::text, \
                EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public_0001_notes')",
    )
    .fetch_one(&pool)
    .await
    .expect("catalog");
    assert_eq!(gone, (None, false));
    let output = zdm(&pg, &url, &["rollback", name]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("nothing to do, it is already rolled back"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn commands_without_a_database_say_how_to_give_one() {
    let empty = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    let output = command
        .args(["status"])
        .env("ZDM_LOG_FILE", empty.path().join("zdm.log"))
        .current_dir(empty.path())
        .output()
        .expect("run zdm");
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--database-url"),
        "{}",
        text(&output.stderr)
    );
}
