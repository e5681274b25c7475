//! Every file in sample-migrations/ through the real binary, in order, on the demo's shop
//! schema while the demo's application keeps writing: start, roll back to the identical
//! catalog, start again, contract. The application must never see an error.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;

use zdm::db::catalog::Catalog;
use zdm::demo::{schema, Scale, Workload, WorkloadOptions};
use zdm::migration::load_dir;

/// Runs zdm without blocking the runtime: the application's sessions share it and must
/// keep running (a blocked runtime would leave them idle in transaction, holding locks).
async fn zdm(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(common::zdm_binary())
        .args(args)
        .args([
            "--dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations"),
        ])
        .env("DATABASE_URL", url)
        .env("ZDM_CONFIG", throttle_off())
        .env(
            "ZDM_LOG_FILE",
            std::env::temp_dir().join(format!("zdm-test-samples-{}.log", std::process::id())),
        )
        .output()
        .await
        .expect("run zdm")
}

/// A config with the host-CPU and canary inputs off: on a busy test machine they would
/// hold the backfills for minutes (the throttle has tests of its own). The application's
/// lock waits still throttle, as they would in production.
fn throttle_off() -> &'static Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("zdm-test-samples-{}.toml", std::process::id()));
        std::fs::write(&path, common::THROTTLE_OFF).expect("config");
        path
    })
}

async fn succeed(url: &str, args: &[&str]) -> String {
    let output = zdm(url, args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "zdm {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_migration_rolls_back_cleanly_and_completes_under_load() {
    let pg = common::primary();
    let pool = common::database(&pg, "shop").await;
    let scale = Scale::from_factor(0.002);
    schema::load(&pool, scale, |_| {}).await.expect("demo data");
    let url = pg.primary().url("shop");
    let workload = Workload::start(
        pg.primary().connect_options("shop"),
        scale,
        WorkloadOptions {
            connections: 2,
            ops_per_second: 40.0,
        },
    );

    let samples = load_dir(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sample-migrations"
    )))
    .expect("samples parse");
    assert_eq!(samples.len(), 21);
    for sample in &samples {
        let name = sample.name.as_str();
        let mut conn = pool.acquire().await.expect("connection");
        let before = Catalog::load(&mut conn).await.expect("catalog");

        let started = succeed(&url, &["start", name]).await;
        assert!(started.contains("ready to contract"), "{name}: {started}");
        let rolled_back = succeed(&url, &["rollback", name]).await;
        assert!(rolled_back.contains("rolled back"), "{name}: {rolled_back}");
        let after_rollback = Catalog::load(&mut conn).await.expect("catalog");
        assert_eq!(
            before, after_rollback,
            "{name}: rollback must restore the catalog exactly"
        );

        succeed(&url, &["start", name]).await;
        let status = succeed(&url, &["status", "--json"]).await;
        assert!(status.contains(&format!("\"{name}\"")), "{status}");
        // Every gate evaluates on every sample without a query of its own failing; under
        // the demo's live old-version workload some rightly fail, so contract overrides them.
        // `zdm gates` exits 4 when one did not pass.
        let output = zdm(&url, &["gates", name, "--json", "--window", "0.1"]).await;
        let gates = String::from_utf8_lossy(&output.stdout).into_owned();
        let passed =
            !gates.contains("\"verdict\": \"fail\"") && !gates.contains("\"verdict\": \"unknown\"");
        assert_eq!(
            output.status.code(),
            Some(if passed { 0 } else { 4 }),
            "{name}: {gates}"
        );
        assert!(!gates.contains("could not check"), "{name}: {gates}");
        let mut complete = vec![
            "complete",
            name,
            "--confirm-contract",
            name,
            "--window",
            "0",
        ];
        for gate in zdm::gates::registry::names() {
            complete.extend(["--override-gate", gate]);
        }
        let completed = succeed(&url, &complete).await;
        assert!(completed.contains("complete"), "{name}: {completed}");
    }

    // The final shape is what the files say.
    let status_not_null: bool = sqlx::query_scalar(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'",
    )
    .fetch_one(&pool)
    .await
    .expect("orders.status");
    assert!(status_not_null);
    let unfilled: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(unfilled, 0);
    let nothing_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'public\\_00%' AND nspname <> 'public_0021_shipment_events'",
    )
    .fetch_one(&pool)
    .await
    .expect("version schemas");
    assert_eq!(
        nothing_left, 0,
        "each contract drops the previous version's schema"
    );

    let stats = workload.stats();
    let (ops, errors) = (
        stats.operations.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
    workload.stop().await;
    assert!(ops > 0, "the application ran during the migrations");
    assert_eq!(
        errors, 0,
        "the application never saw an error ({ops} operations)"
    );
}
