//! What a migration file asks for exists, or the run says so (docs/engine.md): names zdm
//! derives are fitted to 63 bytes and stay distinct, and after each phase the engine checks
//! every constraint, index and trigger its plan promised; `zdm status` checks again.

mod plan_support;

use plan_support::{catalog, client, common, migration};
use zdm::engine::{Engine, EngineOptions, Error};
use zdm::plan::plan;

/// The reproduction: a 50-character table whose two columns each get a check. Before the
/// fix only the first check was created (both names truncated to the same 63 bytes), the
/// run succeeded, and the second column accepted -5.
#[tokio::test]
async fn long_derived_names_each_get_their_constraint() {
    let pg = common::primary();
    let pool = common::database(&pg, "long_names").await;
    let table = "t".repeat(50);
    let column = "d".repeat(40);
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} SELECT generate_series(1, 100)"
    ))
    .execute(&pool)
    .await
    .expect("setup");
    let file = format!(
        r#"
[[operations]]
op = "add_column"
table = "{table}"
column = {{ name = "{column}_one", type = "int", check = "{column}_one >= 0", unique = true }}

[[operations]]
op = "add_column"
table = "{table}"
column = {{ name = "{column}_two", type = "int", check = "{column}_two >= 0", unique = true }}
"#
    );
    let planned = plan(&migration("0001_long", &file), &catalog(&pool).await).expect("plans");
    let mut engine = Engine::connect_with(
        pg.primary().connect_options("long_names"),
        EngineOptions::default(),
    )
    .await
    .expect("engine");
    engine.start(&planned, "checksum").await.expect("start");
    engine.close().await.expect("close");
    let checks: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = '{table}'::regclass AND contype IN ('c', 'u')"
    ))
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(checks, 4, "two checks and two unique constraints");
    let old = client(&pg, "long_names", "public").await;
    for (col, id) in [("one", 1000), ("two", 1001)] {
        let refused = sqlx::raw_sql(&format!(
            "INSERT INTO {table} (id, {column}_{col}) VALUES ({id}, -5)"
        ))
        .execute(&old)
        .await;
        assert!(refused.is_err(), "the check on column {col} holds");
    }
    old.close().await;
}

/// An object the plan promised is gone (here the sync trigger, dropped by hand while the
/// run was stopped): the run that resumes says so instead of reporting success, and
/// `zdm status` names it too.
#[tokio::test]
async fn a_missing_promised_object_fails_the_phase_and_shows_in_status() {
    let pg = common::primary();
    let pool = common::database(&pg, "promised").await;
    sqlx::raw_sql(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT i, i FROM generate_series(1, 1000) i",
    )
    .execute(&pool)
    .await
    .expect("setup");
    let file = r#"
[[operations]]
op = "add_column"
table = "t"
column = { name = "w", type = "int" }
up = "v * 2"
"#;
    let planned = plan(&migration("0001_w", file), &catalog(&pool).await).expect("plans");
    let mut engine = Engine::connect_with(
        pg.primary().connect_options("promised"),
        EngineOptions::default(),
    )
    .await
    .expect("engine");
    engine.start(&planned, "checksum").await.expect("start");
    engine.close().await.expect("close");

    // Ready to contract, and everything promised is there.
    let dir = tempfile::tempdir().expect("tempdir");
    let status = |dir: &std::path::Path| {
        let output = std::process::Command::new(common::zdm_binary())
            .args(["status", "--dir"])
            .arg(dir)
            .args(["--database-url", &pg.primary().url("promised")])
            .env_remove("DATABASE_URL")
            .env("ZDM_LOG_FILE", dir.join("zdm.log"))
            .output()
            .expect("zdm status");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let before = status(dir.path());
    assert!(!before.contains("NOT AS PLANNED"), "{before}");

    sqlx::raw_sql("DROP TRIGGER _zdm_sync_t ON t")
        .execute(&pool)
        .await
        .expect("drop the trigger");
    let after = status(dir.path());
    assert!(
        after.contains("NOT AS PLANNED: trigger _zdm_sync_t on \"public\".\"t\" is missing"),
        "{after}"
    );

    // The engine checks after each phase: a plan whose later expand step undoes what an
    // earlier one promised fails at the end of expand, saying what is missing.
    let pool2 = common::database(&pg, "promised_engine").await;
    sqlx::raw_sql(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT i, i FROM generate_series(1, 1000) i",
    )
    .execute(&pool2)
    .await
    .expect("setup");
    let planned = plan(&migration("0001_w", file), &catalog(&pool2).await).expect("plans");
    let mut broken_plan = planned.clone();
    let last_expand = broken_plan
        .steps
        .iter()
        .rposition(|s| s.phase == zdm::plan::Phase::Expand)
        .expect("an expand step");
    broken_plan.steps.insert(
        last_expand + 1,
        zdm::plan::Step::sql(
            zdm::plan::Phase::Expand,
            "a step that undoes what an earlier one promised",
            "DROP TRIGGER IF EXISTS _zdm_sync_t ON t",
            zdm::plan::LockLevel::ShareRowExclusive,
            vec!["public.t".to_string()],
        ),
    );
    let mut engine = Engine::connect_with(
        pg.primary().connect_options("promised_engine"),
        EngineOptions::default(),
    )
    .await
    .expect("engine");
    let error = engine
        .start(&broken_plan, "checksum")
        .await
        .expect_err("the promise is broken");
    assert!(
        matches!(&error, Error::PromiseBroken { phase, broken } if *phase == "expand"
            && broken.iter().any(|b| b.contains("trigger _zdm_sync_t"))),
        "{error}"
    );
    engine.close().await.expect("close");
    pool.close().await;
    pool2.close().await;
}
