//! `zdm check` as CI runs it, against a real database: the sample migrations rehearse
//! cleanly on a throwaway copy of the shop schema (exit 0) and leave the target untouched;
//! a migration whose rollback leaves something behind fails the dry run (exit 5); unsafe
//! SQL is exit 6 and a file that does not parse exit 7.

mod common;

use std::path::Path;
use std::process::Command;

use zdm::demo::schema::{self, Scale};
use zdm::localpg::LocalPg;

async fn shop() -> (LocalPg, String, sqlx::PgPool) {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let pool = common::database(&pg, "shop").await;
    schema::load(&pool, Scale::from_factor(0.001), |_| {})
        .await
        .expect("load the shop schema");
    let url = pg.primary().url("shop");
    (pg, url, pool)
}

fn check(url: &str, dir: &Path, dry_run: bool) -> (Option<i32>, String, String) {
    let mut command = Command::new(common::zdm_binary());
    command
        .arg("check")
        .args(["--dir", dir.to_str().expect("dir")])
        .args(["--database-url", url])
        .env_remove("ZDM_CONFIG")
        .env("ZDM_LOG_FILE", dir.join("zdm-check.log"));
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("run zdm check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn schema_of(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name || '.' || column_name FROM \
         information_schema.columns WHERE table_schema NOT IN ('pg_catalog', \
         'information_schema') ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("read the schema")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_migrations_rehearse_cleanly_and_the_target_is_untouched() {
    let (_pg, url, pool) = shop().await;
    let before = schema_of(&pool).await;
    let samples = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations"))
        .expect("samples")
    {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, samples.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let (code, out, err) = check(&url, samples.path(), true);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("== validate") && out.contains("== lint"),
        "{out}"
    );
    assert!(
        out.contains("0001_orders_add_status: start, rollback (clean), start, complete: ok"),
        "{out}"
    );
    assert!(out.contains("check passed"), "{out}");
    assert_eq!(schema_of(&pool).await, before, "the target was changed");
    let recorded: Option<String> = sqlx::query_scalar("SELECT to_regclass('zdm.migrations')::text")
        .fetch_one(&pool)
        .await
        .expect("read");
    assert!(recorded.is_none(), "zdm's state was created on the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_leaves_something_behind_fails_the_dry_run() {
    let (_pg, url, pool) = shop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_leftover.toml"),
        "description = \"its down forgets the table\"\n\n[[operations]]\nop = \"raw_sql\"\n\
         up = \"CREATE TABLE leftover (id bigint PRIMARY KEY);\"\n\
         down = \"SELECT 1;\"\n",
    )
    .expect("write");
    let (code, out, err) = check(&url, dir.path(), true);
    assert_eq!(code, Some(5), "{out}\n{err}");
    assert!(
        out.contains("0001_leftover: FAILED: rollback left the schema different"),
        "{out}"
    );
    assert!(out.contains("+ CREATE TABLE public.leftover"), "{out}");
    let leftover: Option<String> = sqlx::query_scalar("SELECT to_regclass('leftover')::text")
        .fetch_one(&pool)
        .await
        .expect("read");
    assert!(leftover.is_none(), "the rehearsal ran on the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_sql_and_invalid_files_have_their_own_exit_codes() {
    let (_pg, url, _pool) = shop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_index.toml"),
        "description = \"an index the hard way\"\n\n[[operations]]\nop = \"raw_sql\"\n\
         up = \"CREATE INDEX orders_placed ON orders (placed_at);\"\n\
         down = \"DROP INDEX orders_placed;\"\n",
    )
    .expect("write");
    let (code, out, err) = check(&url, dir.path(), false);
    assert_eq!(code, Some(6), "{out}\n{err}");
    assert!(
        out.contains("error[require-concurrent-index-creation]"),
        "{out}"
    );
    std::fs::write(dir.path().join("0002_broken.toml"), "description = \n").expect("write");
    let (code, out, err) = check(&url, dir.path(), true);
    assert_eq!(code, Some(7), "{out}\n{err}");
    assert!(
        out.contains("not rehearsed: the files do not validate"),
        "{out}"
    );
}
