//! A failover in the middle of a backfill run by the real binary (`zdm start`, with its
//! monitor and throttle): the primary stops for good, its streaming replica is promoted,
//! and the run, given the replica in `failover_urls`, continues by itself to the end on the
//! new primary: its connections and its monitor follow it (a monitor left on the old
//! server would hold the throttle on "unknown" forever). Every row is checked there.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: i64 = 200_000;
const NAME: &str = "0001_accounts_cents";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_follows_a_promoted_standby_to_the_end() {
    let pg = common::primary_and_replica().await;
    let database = "failover";
    let pool = common::database(&pg, database).await;
    sqlx::raw_sql(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance integer NOT NULL);
         INSERT INTO accounts SELECT g, g % 1000 FROM generate_series(1, {ROWS}) g;
         ANALYZE accounts;"
    ))
    .execute(&pool)
    .await
    .expect("accounts");
    let replica = pg.replica().expect("a replica");
    pg.wait_for_replica(Duration::from_secs(30))
        .await
        .expect("the replica has the table");

    let root = tempfile::tempdir().expect("tempdir");
    let migrations = root.path().join("migrations");
    std::fs::create_dir_all(&migrations).expect("dir");
    std::fs::write(
        migrations.join(format!("{NAME}.toml")),
        "[[operations]]\nop = \"add_column\"\ntable = \"accounts\"\n\
         column = { name = \"cents\", type = \"bigint\" }\nup = \"balance * 100\"\n",
    )
    .expect("migration");
    std::fs::write(
        root.path().join("zdm.toml"),
        format!(
            "reconnect_budget_s = 120\nfailover_urls = [{:?}]\n\n\
             [backfill]\nmax_rows_per_second = 25000\n\n{}",
            replica.url(database),
            common::THROTTLE_OFF
        ),
    )
    .expect("zdm.toml");
    let mut start = Command::new(common::zdm_binary())
        .args(["start", NAME, "--dir"])
        .arg(&migrations)
        .arg("--config")
        .arg(root.path().join("zdm.toml"))
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", root.path().join("zdm.log"))
        .env("XDG_RUNTIME_DIR", root.path().join("run"))
        .env("XDG_STATE_HOME", root.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zdm start");

    // Mid-backfill (and replicated that far), the primary goes away for good.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: Option<i64> = sqlx::query_scalar(
            "SELECT rows_updated FROM zdm.backfill_progress WHERE migration = $1",
        )
        .bind(NAME)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten();
        if done.unwrap_or(0) >= 40_000 {
            break;
        }
        assert!(
            start.try_wait().expect("wait").is_none(),
            "zdm start ended early"
        );
        assert!(Instant::now() < deadline, "the backfill starts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    tokio::task::block_in_place(|| {
        let stop = pg
            .service_user()
            .command(&pg.binaries().tool("pg_ctl"), pg.root())
            .args(["stop", "--mode=immediate", "--pgdata"])
            .arg(pg.primary().data_dir())
            .stdin(Stdio::null())
            .status()
            .expect("pg_ctl stop");
        assert!(stop.success(), "stop: {stop}");
        let promote = pg
            .service_user()
            .command(&pg.binaries().tool("pg_ctl"), pg.root())
            .args(["promote", "--wait", "--silent", "--pgdata"])
            .arg(replica.data_dir())
            .stdin(Stdio::null())
            .status()
            .expect("pg_ctl promote");
        assert!(promote.success(), "promote: {promote}");
    });

    let output = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            if let Some(_status) = start.try_wait().expect("wait") {
                return start.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = start.kill();
                panic!("the run did not finish after the failover");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "zdm start after the failover: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let promoted = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(replica.connect_options(database))
        .await
        .expect("connect to the promoted server");
    let status: String = sqlx::query_scalar("SELECT status FROM zdm.migrations WHERE name = $1")
        .bind(NAME)
        .fetch_one(&promoted)
        .await
        .expect("status");
    assert_eq!(status, "ready_to_contract");
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts WHERE cents IS DISTINCT FROM balance * 100",
    )
    .fetch_one(&promoted)
    .await
    .expect("rows");
    assert_eq!(wrong, 0, "every row right on the new primary");
    promoted.close().await;
}
