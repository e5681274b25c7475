//! The engine's state and its refusals on a real PostgreSQL: what is recorded, resuming
//! after a failure, idempotent reruns, changed checksums, rollback after contract.

mod common;
mod engine_support;

use engine_support::{backfill, concurrent, engine, plan, quick_options, sql};
use sqlx::PgPool;
use zdm::engine::{Error, Outcome, Status};
use zdm::plan::{LockLevel, Phase, Plan};

async fn items_table(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL);
         INSERT INTO items SELECT g, g % 100 FROM generate_series(1, 2500) AS g;",
    )
    .execute(pool)
    .await
    .expect("items");
}

/// Every kind of step once: CREATE TABLE, ADD COLUMN, CREATE INDEX CONCURRENTLY, backfill.
fn add_discount_plan() -> Plan {
    use LockLevel::AccessExclusive;
    use Phase::*;
    plan(
        "0001_items_discount",
        vec![
            sql(
                Expand,
                "create table coupons",
                "CREATE TABLE coupons (code text PRIMARY KEY)",
                LockLevel::None,
                "public.coupons",
            ),
            sql(
                Expand,
                "add column items.discount",
                "ALTER TABLE items ADD COLUMN discount integer",
                AccessExclusive,
                "public.items",
            ),
            concurrent(
                Expand,
                "index items.discount",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_discount ON items (discount)",
                "public.items",
                "items_discount",
            ),
            backfill(
                "\"public\".\"items\"",
                &["id"],
                &[("discount", "price / 10")],
                Some("discount IS NULL"),
            ),
            sql(
                Contract,
                "discount is required",
                "ALTER TABLE items ALTER COLUMN discount SET NOT NULL",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop index items.discount",
                "DROP INDEX IF EXISTS items_discount",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop column items.discount",
                "ALTER TABLE items DROP COLUMN IF EXISTS discount",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop table coupons",
                "DROP TABLE IF EXISTS coupons",
                AccessExclusive,
                "public.coupons",
            ),
        ],
    )
}

#[tokio::test]
async fn start_records_everything_and_reruns_change_nothing() {
    let pg = common::primary();
    let pool = common::database(&pg, "state_recorded").await;
    items_table(&pool).await;
    let plan = add_discount_plan();
    let mut engine = engine(&pg, "state_recorded", quick_options()).await;

    let outcome = engine.start(&plan, "sum-1").await.expect("start");
    assert_eq!(
        outcome,
        Outcome::Ran {
            migration: plan.migration.clone(),
            status: Status::ReadyToContract,
            steps_run: 4
        }
    );
    let (status, checksum, os_user, db_user, host, ready): (
        String,
        String,
        String,
        String,
        String,
        bool,
    ) = sqlx::query_as(
        "SELECT status, checksum, started_by_os_user, started_by_db_user, started_from_host, \
                    ready_at IS NOT NULL AND ready_at >= started_at \
             FROM zdm.migrations WHERE name = '0001_items_discount'",
    )
    .fetch_one(&pool)
    .await
    .expect("recorded");
    assert_eq!(
        (status.as_str(), checksum.as_str()),
        ("ready_to_contract", "sum-1")
    );
    assert!(!os_user.is_empty() && !host.is_empty());
    assert_eq!(db_user, "postgres");
    assert!(ready, "ready_at is stamped");
    let steps: Vec<(String, i32)> =
        sqlx::query_as("SELECT phase, position FROM zdm.steps ORDER BY phase, position")
            .fetch_all(&pool)
            .await
            .expect("steps");
    assert_eq!(
        steps,
        vec![
            ("backfill".to_string(), 0),
            ("expand".to_string(), 0),
            ("expand".to_string(), 1),
            ("expand".to_string(), 2)
        ]
    );
    let (rows, wrong): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT rows_updated FROM zdm.backfill_progress), \
                (SELECT count(*) FROM items WHERE discount IS DISTINCT FROM price / 10)",
    )
    .fetch_one(&pool)
    .await
    .expect("backfilled");
    assert_eq!((rows, wrong), (2500, 0));
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_discount'::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("index");
    assert!(valid);

    // Running start again is a no-op that says why.
    let again = engine.start(&plan, "sum-1").await.expect("second start");
    assert!(
        matches!(&again, Outcome::NothingToDo { reason, .. } if reason.contains("zdm complete 0001_items_discount")),
        "{again:?}"
    );

    // A changed file is refused, naming both checksums.
    let changed = engine
        .start(&plan, "sum-2")
        .await
        .expect_err("changed file");
    let message = changed.to_string();
    assert!(matches!(changed, Error::ChecksumChanged { .. }));
    assert!(
        message.contains("sum-1") && message.contains("sum-2"),
        "{message}"
    );

    // Contract needs the exact name.
    let refused = engine
        .complete(&plan.migration, "0001_items")
        .await
        .expect_err("wrong confirmation");
    assert!(
        matches!(refused, Error::ConfirmationMismatch { .. }),
        "{refused}"
    );
    let outcome = engine
        .complete(&plan.migration, &plan.migration)
        .await
        .expect("complete");
    assert!(matches!(
        outcome,
        Outcome::Ran {
            status: Status::Complete,
            steps_run: 1,
            ..
        }
    ));
    let nullable: String = sqlx::query_scalar(
        "SELECT is_nullable FROM information_schema.columns \
         WHERE table_name = 'items' AND column_name = 'discount'",
    )
    .fetch_one(&pool)
    .await
    .expect("column");
    assert_eq!(nullable, "NO");
    let again = engine
        .complete(&plan.migration, &plan.migration)
        .await
        .expect("complete again");
    assert!(matches!(
        again,
        Outcome::NothingToDo {
            status: Status::Complete,
            ..
        }
    ));

    // Contract is irreversible.
    let refused = engine
        .rollback(&plan.migration)
        .await
        .expect_err("rollback after contract");
    assert!(
        matches!(refused, Error::ContractStarted { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("irreversible"));

    // Every command is in the history, the contract with its confirmation.
    let runs: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT command, confirmation, outcome FROM zdm.runs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("runs");
    assert_eq!(
        runs,
        vec![
            (
                "start".to_string(),
                None,
                Some("ready_to_contract".to_string())
            ),
            (
                "complete".to_string(),
                Some(plan.migration.clone()),
                Some("complete".to_string())
            ),
        ]
    );
    engine.close().await.expect("close");
}

#[tokio::test]
async fn a_failed_step_resumes_after_the_last_step_done_and_rollback_undoes_it() {
    let pg = common::primary();
    let pool = common::database(&pg, "state_resume").await;
    items_table(&pool).await;
    sqlx::query("UPDATE items SET price = -1 WHERE id = 7")
        .execute(&pool)
        .await
        .expect("bad row");
    use LockLevel::AccessExclusive;
    use Phase::*;
    let plan = plan(
        "0002_items_checked",
        vec![
            sql(
                Expand,
                "create table audit",
                "CREATE TABLE audit (id bigint)",
                LockLevel::None,
                "public.audit",
            ),
            sql(
                Expand,
                "prices are positive",
                "ALTER TABLE items ADD CONSTRAINT price_positive CHECK (price >= 0)",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop the check",
                "ALTER TABLE items DROP CONSTRAINT IF EXISTS price_positive",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop table audit",
                "DROP TABLE IF EXISTS audit",
                AccessExclusive,
                "public.audit",
            ),
        ],
    );
    let mut engine = engine(&pg, "state_resume", quick_options()).await;
    let error = engine.start(&plan, "c").await.expect_err("the check fails");
    assert!(matches!(error, Error::StepFailed { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("expand step 2 of 2 (prices are positive)"),
        "{error}"
    );
    let (status, during, text): (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, failed_during, error FROM zdm.migrations")
            .fetch_one(&pool)
            .await
            .expect("recorded");
    assert_eq!(
        (status.as_str(), during.as_deref()),
        ("failed", Some("expanding"))
    );
    assert!(text.unwrap_or_default().contains("price_positive"));

    // Not ready to contract while failed in expand.
    let refused = engine
        .complete(&plan.migration, &plan.migration)
        .await
        .expect_err("not ready");
    assert!(
        refused.to_string().contains("failed while expanding"),
        "{refused}"
    );

    // The DBA fixes the data; start resumes at step 2 (CREATE TABLE audit would fail if rerun).
    sqlx::query("UPDATE items SET price = 0 WHERE id = 7")
        .execute(&pool)
        .await
        .expect("fix");
    let outcome = engine.start(&plan, "c").await.expect("resumed");
    assert!(
        matches!(
            outcome,
            Outcome::Ran {
                status: Status::ReadyToContract,
                steps_run: 1,
                ..
            }
        ),
        "{outcome:?}"
    );

    let outcome = engine.rollback(&plan.migration).await.expect("rollback");
    assert!(matches!(
        outcome,
        Outcome::Ran {
            status: Status::RolledBack,
            steps_run: 2,
            ..
        }
    ));
    let left: (Option<String>, i64) = sqlx::query_as(
        "SELECT to_regclass('audit')::text, \
                (SELECT count(*) FROM pg_constraint WHERE conname = 'price_positive')",
    )
    .fetch_one(&pool)
    .await
    .expect("catalog");
    assert_eq!(left, (None, 0));
    let again = engine
        .rollback(&plan.migration)
        .await
        .expect("rollback again");
    assert!(matches!(
        again,
        Outcome::NothingToDo {
            status: Status::RolledBack,
            ..
        }
    ));
    let refused = engine
        .complete(&plan.migration, &plan.migration)
        .await
        .expect_err("rolled back");
    assert!(matches!(refused, Error::WasRolledBack { .. }));

    // A rolled-back migration may be fixed and started again, from scratch.
    let outcome = engine.start(&plan, "c2").await.expect("start over");
    assert!(
        matches!(
            outcome,
            Outcome::Ran {
                status: Status::ReadyToContract,
                steps_run: 2,
                ..
            }
        ),
        "{outcome:?}"
    );

    // While it is in flight, no other migration starts.
    let other = engine_support::plan("0003_other", vec![]);
    let refused = engine.start(&other, "o").await.expect_err("one at a time");
    assert!(
        matches!(refused, Error::AnotherInFlight { .. }),
        "{refused}"
    );
    engine.close().await.expect("close");
}

#[tokio::test]
async fn rollback_is_refused_once_contract_started_even_if_it_failed() {
    let pg = common::primary();
    let pool = common::database(&pg, "state_contract_failed").await;
    items_table(&pool).await;
    use LockLevel::AccessExclusive;
    use Phase::*;
    let plan = plan(
        "0004_contract_fails",
        vec![
            sql(
                Expand,
                "add column note",
                "ALTER TABLE items ADD COLUMN note text",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Contract,
                "note is required",
                "ALTER TABLE items ALTER COLUMN note SET NOT NULL",
                AccessExclusive,
                "public.items",
            ),
            sql(
                Rollback,
                "drop column note",
                "ALTER TABLE items DROP COLUMN IF EXISTS note",
                AccessExclusive,
                "public.items",
            ),
        ],
    );
    let mut engine = engine(&pg, "state_contract_failed", quick_options()).await;
    engine.start(&plan, "x").await.expect("start");
    let failed = engine
        .complete(&plan.migration, &plan.migration)
        .await
        .expect_err("NULLs in note");
    assert!(
        failed.to_string().contains("contract step 1 of 1"),
        "{failed}"
    );
    let refused = engine
        .rollback(&plan.migration)
        .await
        .expect_err("contract started");
    assert!(
        matches!(refused, Error::ContractStarted { .. }),
        "{refused}"
    );
    let column: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = 'items' AND column_name = 'note'",
    )
    .fetch_optional(&pool)
    .await
    .expect("catalog");
    assert_eq!(column.as_deref(), Some("note"), "rollback changed nothing");
    engine.close().await.expect("close");
}

#[tokio::test]
async fn a_second_engine_is_refused_and_told_who_holds_the_lock() {
    let pg = common::primary();
    let _pool = common::database(&pg, "state_lock").await;
    let first = engine(&pg, "state_lock", quick_options()).await;
    let second = zdm::engine::Engine::connect_with(
        pg.primary().connect_options("state_lock"),
        quick_options(),
    )
    .await
    .expect_err("the lock is held");
    let message = second.to_string();
    let Error::Locked { holder } = second else {
        panic!("expected Locked, got {message}");
    };
    assert_eq!(holder.zdm_pid, Some(std::process::id()));
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .into_string()
        .expect("utf-8");
    assert_eq!(holder.host.as_deref(), Some(host.as_str()));
    assert!(
        message.contains(&format!("zdm pid {} on host {host}", std::process::id())),
        "{message}"
    );

    // Another process (the zdm binary) is refused the same way.
    let output = std::process::Command::new(common::zdm_binary())
        .args([
            "rollback",
            "0001_any",
            "--database-url",
            &pg.primary().url("state_lock"),
        ])
        .env("ZDM_LOG_FILE", pg.root().join("zdm-cli.log"))
        .output()
        .expect("run zdm");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("zdm pid {} on host {host}", std::process::id())),
        "{stderr}"
    );

    // Released on close: the next one gets it.
    first.close().await.expect("close");
    engine(&pg, "state_lock", quick_options())
        .await
        .close()
        .await
        .expect("close");
}
