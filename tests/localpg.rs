//! The local PostgreSQL manager on real servers: start, replica lag, users, ports, cleanup.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Uid;
use zdm::localpg::{is_alive, reap_orphans, LocalPg, Options};

use common::demo_process::DemoProcess;

/// The real uid a process runs as, from /proc.
fn process_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .expect("Uid line");
    line.split_whitespace()
        .nth(1)
        .expect("uid")
        .parse()
        .expect("number")
}

fn assert_gone(pids: &[i32], root: &Path) {
    for pid in pids {
        assert!(!is_alive(*pid), "server process {pid} is still running");
    }
    assert!(!root.exists(), "{} was not removed", root.display());
}

async fn port_setting(pg: &LocalPg) -> String {
    let mut conn = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query_scalar("SELECT current_setting('port')")
        .fetch_one(&mut conn)
        .await
        .expect("query")
}

#[tokio::test]
async fn starts_answers_and_leaves_nothing_after_drop() {
    let pg = common::primary();
    assert_eq!(port_setting(&pg).await, pg.primary().port().to_string());
    let pid = pg.primary().pid().expect("postmaster runs");
    // PostgreSQL refuses root: the server must run as the unprivileged service user.
    assert_ne!(process_uid(pid), 0);
    assert_eq!(process_uid(pid), pg.service_user().uid());
    if Uid::effective().is_root() {
        assert_ne!(pg.service_user().uid(), 0);
    } else {
        assert_eq!(pg.service_user().uid(), Uid::effective().as_raw());
    }
    let root = pg.root().to_path_buf();
    assert!(root.join("primary/PG_VERSION").is_file());
    drop(pg);
    assert_gone(&[pid], &root);
}

#[test]
fn stop_reports_success_and_cleans_up() {
    let pg = common::primary();
    let (pid, root) = (pg.primary().pid().expect("runs"), pg.root().to_path_buf());
    pg.stop().expect("clean stop");
    assert_gone(&[pid], &root);
}

#[tokio::test]
async fn two_managers_at_once_get_different_ports() {
    let first = std::thread::spawn(common::primary);
    let second = std::thread::spawn(common::primary);
    let (first, second) = (first.join().expect("first"), second.join().expect("second"));
    assert_ne!(first.primary().port(), second.primary().port());
    assert_ne!(first.root(), second.root());
    assert_eq!(
        port_setting(&first).await,
        first.primary().port().to_string()
    );
    assert_eq!(
        port_setting(&second).await,
        second.primary().port().to_string()
    );
}

#[test]
fn a_panic_leaves_nothing_running() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let pg = LocalPg::start(&Options {
            replica: true,
            ..Default::default()
        })
        .expect("start");
        let pids = vec![
            pg.primary().pid().expect("primary runs"),
            pg.replica().and_then(|r| r.pid()).expect("replica runs"),
        ];
        sender.send((pids, pg.root().to_path_buf())).expect("send");
        panic!("a test failing while it holds a cluster");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pids, root) = receiver.recv().expect("facts were sent before the panic");
    assert_gone(&pids, &root);
}

#[tokio::test]
async fn the_replica_streams_and_its_lag_is_measurable() {
    let pg = common::primary_and_replica().await;
    let replica_server = pg.replica().expect("replica");
    let mut primary = pg.primary().connect("postgres").await.expect("primary");
    let mut replica = replica_server.connect("postgres").await.expect("replica");

    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut replica)
        .await
        .expect("query");
    assert!(in_recovery, "the replica is a standby");

    sqlx::query("CREATE TABLE ticks (n int)")
        .execute(&mut primary)
        .await
        .expect("ddl");
    sqlx::query("INSERT INTO ticks VALUES (1)")
        .execute(&mut primary)
        .await
        .expect("insert");
    wait_for_rows(&mut replica, 1).await;

    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut replica)
        .await
        .expect("pause");
    sqlx::query("INSERT INTO ticks SELECT generate_series(1, 10000)")
        .execute(&mut primary)
        .await
        .expect("insert");
    let first = wait_for_lag(&mut primary, 0.0).await;
    sqlx::query("INSERT INTO ticks SELECT generate_series(1, 10000)")
        .execute(&mut primary)
        .await
        .expect("insert");
    let second = wait_for_lag(&mut primary, first).await;
    assert!(
        second > first,
        "lag grows while replay is paused: {first} then {second}"
    );
    let replayed: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks")
        .fetch_one(&mut replica)
        .await
        .expect("count");
    assert_eq!(
        replayed, 1,
        "the paused replica has not replayed the new rows"
    );
    let lag_seconds: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
    )
    .fetch_one(&mut replica)
    .await
    .expect("replay age");
    assert!(
        lag_seconds > 0.0,
        "replay time lag is measurable: {lag_seconds}"
    );

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .expect("resume");
    wait_for_rows(&mut replica, 20_001).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag_bytes(&mut primary).await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the replica catches up after resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_rows(replica: &mut sqlx::PgConnection, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM ticks")
            .fetch_one(&mut *replica)
            .await
            .ok();
        if rows == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica shows {rows:?} rows, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bytes of WAL the replica has received but not replayed, as the primary sees it.
async fn lag_bytes(primary: &mut sqlx::PgConnection) -> f64 {
    sqlx::query_scalar::<_, Option<f64>>(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 FROM pg_stat_replication",
    )
    .fetch_one(primary)
    .await
    .expect("lag")
    .unwrap_or(0.0)
}

/// Waits until the primary reports replay lag above `above` bytes (the walsender reports it
/// asynchronously), and returns it.
async fn wait_for_lag(primary: &mut sqlx::PgConnection, above: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bytes = lag_bytes(&mut *primary).await;
        if bytes > above {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "replay lag never rose above {above}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run by `works_as_a_non_root_user` under an unprivileged uid; does nothing useful alone.
#[test]
#[ignore = "run by works_as_a_non_root_user as an unprivileged user"]
fn non_root_child() {
    assert!(!Uid::effective().is_root(), "this child runs unprivileged");
    let pg = LocalPg::start(&Options {
        replica: true,
        ..Default::default()
    })
    .expect("start without root");
    assert_eq!(pg.service_user().uid(), Uid::effective().as_raw());
    let pids = vec![
        pg.primary().pid().expect("runs"),
        pg.replica().and_then(|r| r.pid()).expect("runs"),
    ];
    let root = pg.root().to_path_buf();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        assert_eq!(port_setting(&pg).await, pg.primary().port().to_string());
        pg.wait_for_replica(Duration::from_secs(30))
            .await
            .expect("streams");
    });
    drop(pg);
    assert_gone(&pids, &root);
}

#[test]
fn works_as_a_non_root_user() {
    if !Uid::effective().is_root() {
        // Already unprivileged: the manager's every test here runs this way.
        non_root_child();
        return;
    }
    // As root, run the child test as the unprivileged service user, from a copy of this
    // test binary that the user can certainly read.
    let pg = common::primary();
    let user = pg.service_user().clone();
    drop(pg);
    let dir = tempfile::Builder::new()
        .prefix("zdm-nonroot-")
        .tempdir()
        .expect("tempdir");
    let binary = dir.path().join("localpg-test");
    std::fs::copy(std::env::current_exe().expect("exe"), &binary).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let status = user
        .command(&binary, std::path::Path::new("/"))
        .args(["--exact", "non_root_child", "--ignored", "--test-threads=1"])
        .env("TMPDIR", std::env::temp_dir())
        .env("HOME", std::env::temp_dir())
        .status()
        .expect("run the child test");
    assert!(status.success(), "the non-root child test failed: {status}");
}

#[test]
fn missing_server_binaries_get_a_clear_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(common::zdm_binary())
        .args(["demo", "--scale", "0.01"])
        .env("ZDM_PG_BINDIR", empty.path())
        .env("ZDM_LOG_FILE", empty.path().join("zdm.log"))
        .output()
        .expect("run zdm");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(
        stderr.contains(&empty.path().display().to_string()),
        "{stderr}"
    );
}

#[test]
fn servers_of_a_killed_zdm_are_reaped_by_the_next_one() {
    let mut demo = DemoProcess::start(&[
        "--scale",
        "0.001",
        "--no-replica",
        "--workload-sessions",
        "0",
    ]);
    demo.signal(Signal::SIGKILL);
    demo.wait(Duration::from_secs(30));
    // kill -9 gives zdm no chance to clean up: the server outlives it...
    assert!(
        demo.pids.iter().all(|pid| is_alive(*pid)),
        "{:?}",
        demo.output
    );
    assert!(demo.root.exists());
    // ...until the janitor, which every LocalPg::start runs, finds it orphaned.
    let reaped = reap_orphans();
    assert!(
        reaped.contains(&demo.root),
        "{reaped:?} lacks {}",
        demo.root.display()
    );
    assert_gone(&demo.pids, &demo.root);
}
