//! How commands end, through the real binary on a real server: a closed stdout ends a
//! read quietly and never kills a run (`| head -1`), Ctrl-C of a foreground start says
//! once where it stopped with the command that resumes it (exit 3, recorded in the audit),
//! a second Ctrl-C while a batch waits stops at once with exit 130 (the batch rolled back,
//! the checkpoint holding, the same command resuming), `zdm gates` exits 4 when a gate did not pass, and a missing migrations directory is
//! an immediate error naming it and `--dir`, never a gate to override.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::PgPool;
use zdm::localpg::LocalPg;

const NAME: &str = "0001_items_add_size";
const ROWS: i64 = 20_000;
const FILE: &str = r#"
description = "items get a size"

[[operations]]
op = "add_column"
table = "items"
column = { name = "size", type = "int", nullable = false, default = "0" }
up = "qty * 2"
"#;

/// The database with `items`, the migration's directory, and a config that paces the
/// backfill at `rows_per_second` with the host-CPU inputs off (a busy machine must not
/// hold it) and a short gate window.
async fn scene(pg: &LocalPg, database: &str) -> (PgPool, tempfile::TempDir) {
    let pool = common::database(pg, database).await;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL);
         INSERT INTO items SELECT g, g % 7 FROM generate_series(1, {ROWS}) AS g;
         ANALYZE items;"
    ))
    .execute(&pool)
    .await
    .expect("schema");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("migrations")).expect("migrations dir");
    std::fs::write(dir.path().join(format!("migrations/{NAME}.toml")), FILE).expect("file");
    (pool, dir)
}

fn config(dir: &Path, rows_per_second: u32) -> std::path::PathBuf {
    let path = dir.join(format!("zdm-{rows_per_second}.toml"));
    std::fs::write(
        &path,
        format!(
            "[backfill]\nmax_rows_per_second = {rows_per_second}\nbatch_target = \"50ms\"\n\
             {}[gates]\nwindow_s = 0.2\n",
            common::THROTTLE_OFF
        ),
    )
    .expect("config");
    path
}

/// zdm in `cwd` on `url` (DATABASE_URL, as a DBA's shell has it), stdout piped.
fn zdm(pg: &LocalPg, url: &str, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    command
        .args(args)
        .current_dir(cwd)
        .env("DATABASE_URL", url)
        .env("ZDM_LOG_FILE", pg.root().join("zdm-exits.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` with its stdout closed before zdm writes a byte (as `| head -0` would,
/// but certain: a reader that read one line may still be reading).
fn with_stdout_closed(mut command: Command) -> Output {
    let mut child = command.spawn().expect("spawn zdm");
    drop(child.stdout.take());
    wait(child, Duration::from_secs(120))
}

fn wait(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    loop {
        if let Ok(output) = receiver.recv_timeout(Duration::from_millis(100)) {
            return output.expect("output");
        }
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("zdm (pid {pid}) did not end within {limit:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_quiet(what: &str, output: &Output) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{what}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
}

/// The migration's recorded status; empty before a run recorded it (a detached run
/// serves its socket first).
async fn status_of(pool: &PgPool) -> String {
    let status: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT status FROM zdm.migrations WHERE name = $1")
            .bind(NAME)
            .fetch_optional(pool)
            .await;
    status.ok().flatten().unwrap_or_default()
}

/// Waits (two minutes at most) until the backfill has checkpointed a batch.
async fn a_batch_checkpointed(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let batches: Option<i64> =
            sqlx::query_scalar("SELECT max(batches) FROM zdm.backfill_progress")
                .fetch_one(pool)
                .await
                .unwrap_or(None);
        if batches.unwrap_or(0) > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no batch was checkpointed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn unfilled(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items WHERE size IS DISTINCT FROM qty * 2")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[test]
fn the_demo_serves_on_with_its_stdout_closed_and_stops_cleanly_on_ctrl_c() {
    let mut command = Command::new(common::zdm_binary());
    command
        .args(["demo", "--no-console", "--scale", "0.01", "--no-replica"])
        .args(["--workload-sessions", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn zdm demo");
    drop(child.stdout.take());
    // Long enough to start its server and print what it prints (into the closed pipe).
    std::thread::sleep(Duration::from_secs(8));
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let output = wait(child, Duration::from_secs(60));
    assert_quiet("zdm demo --no-console | head -1", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_reads_quietly_and_never_a_run() {
    let pg = common::primary();
    let (pool, dir) = scene(&pg, "pipes").await;
    let url = pg.primary().url("pipes");
    let cwd = dir.path();

    let plan = with_stdout_closed(zdm(&pg, &url, cwd, &["plan"]));
    assert_quiet("zdm plan | head -1", &plan);
    let completions = with_stdout_closed(zdm(&pg, &url, cwd, &["completions", "bash"]));
    assert_quiet("zdm completions bash | head -1", &completions);
    let validate = with_stdout_closed(zdm(&pg, &url, cwd, &["validate", "--json"]));
    assert_quiet("zdm validate --json | head -1", &validate);

    // Detached: the runner has its own log; the command that started it ends quietly.
    let fast = config(cwd, 1_000_000);
    let fast = fast.to_str().expect("utf-8");
    let detach = with_stdout_closed(zdm(
        &pg,
        &url,
        cwd,
        &["start", NAME, "--detach", "--config", fast],
    ));
    assert_quiet("zdm start --detach | head -1", &detach);
    let deadline = Instant::now() + Duration::from_secs(120);
    while status_of(&pool).await != "ready_to_contract" {
        assert!(Instant::now() < deadline, "{}", status_of(&pool).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(unfilled(&pool).await, 0);
    let status = with_stdout_closed(zdm(&pg, &url, cwd, &["status"]));
    assert_quiet("zdm status | head -1", &status);

    // In the foreground the run goes on to its end with nobody reading its stdout.
    let rollback = with_stdout_closed(zdm(&pg, &url, cwd, &["rollback", NAME]));
    assert_quiet("zdm rollback | head -1", &rollback);
    assert_eq!(status_of(&pool).await, "rolled_back");
    let start = with_stdout_closed(zdm(&pg, &url, cwd, &["start", NAME, "--config", fast]));
    assert_quiet("zdm start | head -1", &start);
    assert_eq!(status_of(&pool).await, "ready_to_contract");
    assert!(
        text(&start.stderr).contains("now ready to contract"),
        "the run still says how it ended on stderr: {}",
        text(&start.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_once_with_the_resume_command_and_exit_3() {
    let pg = common::primary();
    let (pool, dir) = scene(&pg, "sigint").await;
    let url = pg.primary().url("sigint");
    let cwd = dir.path();
    let slow = config(cwd, 2_000);
    let migrations = cwd.join("migrations");
    let start = zdm(
        &pg,
        &url,
        // Started from elsewhere, with --dir: the resume command must carry it.
        pg.root(),
        &[
            "start",
            "--dir",
            migrations.to_str().expect("utf-8"),
            "--config",
            slow.to_str().expect("utf-8"),
        ],
    )
    .spawn()
    .expect("spawn zdm start");
    // Once a batch is checkpointed, Ctrl-C.
    a_batch_checkpointed(&pool).await;
    kill(Pid::from_raw(start.id() as i32), Signal::SIGINT).expect("SIGINT");
    let output = tokio::task::block_in_place(|| wait(start, Duration::from_secs(120)));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr.matches("stopped after").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        !stderr.contains("FAILED"),
        "a stop is not a failure: {stderr}"
    );
    let (batches, rows): (i64, i64) =
        sqlx::query_as("SELECT batches, rows_updated FROM zdm.backfill_progress")
            .fetch_one(&pool)
            .await
            .expect("checkpoint");
    assert!(rows > 0 && rows < ROWS, "{rows}");
    let said = format!(
        "{NAME}: stopped after batch {batches} ({} rows, checkpointed; SIGINT received); \
         resume with `zdm start {NAME} --dir {}",
        zdm::format::thousands(rows as u64),
        migrations.display()
    );
    assert!(stderr.contains(&said), "{said:?} missing from:\n{stderr}");
    let stops: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM zdm.audit WHERE action = 'stop'")
            .fetch_all(&pool)
            .await
            .expect("audit");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(stops[0].contains("SIGINT received"), "{stops:?}");

    // The gates of a migration stopped mid-backfill do not pass: exit 4.
    let gates = zdm(
        &pg,
        &url,
        cwd,
        &["gates", NAME, "--config", slow.to_str().expect("utf-8")],
    )
    .output()
    .expect("zdm gates");
    assert_eq!(gates.status.code(), Some(4), "{}", text(&gates.stderr));
    assert!(text(&gates.stdout).contains("[   FAIL] backfill"));

    // The resume command, as printed (with the --dir and --config given), resumes it.
    let resume = stderr
        .split("resume with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the resume command");
    let words: Vec<&str> = resume.split_whitespace().collect();
    assert_eq!(words[0], "zdm");
    assert!(
        resume.ends_with(&format!("--config {}", slow.display())),
        "{resume}"
    );
    let resumed = tokio::task::block_in_place(|| {
        zdm(&pg, &url, pg.root(), &words[1..])
            .output()
            .expect("resume")
    });
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(status_of(&pool).await, "ready_to_contract");
    assert_eq!(unfilled(&pool).await, 0);
    let audit = zdm(&pg, &url, cwd, &["audit"]).output().expect("zdm audit");
    let trail = text(&audit.stdout);
    assert!(
        trail.contains("stop ") && trail.contains("SIGINT received: stopped after batch"),
        "{trail}"
    );
}

/// The second Ctrl-C of `zdm --help` and docs/engine.md: while the batch in flight waits
/// (here for a row an application holds), the first asks for a stop after it, the second
/// stops at once with exit 130; the server rolls the batch back, the checkpoint holds, and
/// the same command resumes to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once_with_exit_130_and_the_checkpoint_holds() {
    use sqlx::Connection;
    let pg = common::primary();
    let (pool, dir) = scene(&pg, "twice").await;
    let url = pg.primary().url("twice");
    let cwd = dir.path();
    // A batch may wait a minute for its row lock (and its statement as long): the waiting
    // batch is certainly still in flight when the signals come.
    let slow = cwd.join("zdm-twice.toml");
    std::fs::write(
        &slow,
        format!(
            "lock_timeout_ms = 60000\n[backfill]\nmax_rows_per_second = 2000\n\
             batch_target = \"50ms\"\nbatch_timeout = \"120s\"\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("config");
    let slow = slow.to_str().expect("utf-8");
    let mut start = zdm(&pg, &url, cwd, &["start", NAME, "--config", slow])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn zdm start");
    a_batch_checkpointed(&pool).await;
    // The application holds the last row; the batch that reaches it waits.
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(&format!(
        "BEGIN; SELECT 1 FROM items WHERE id = {ROWS} FOR UPDATE"
    ))
    .execute(&mut holder)
    .await
    .expect("hold the row");
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                    WHERE NOT l.granted AND a.datname = current_database()";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count: i64 = sqlx::query_scalar(waiting)
            .fetch_one(&pool)
            .await
            .expect("locks");
        if count > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no batch came to the held row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = Pid::from_raw(i32::try_from(start.id()).expect("pid"));
    kill(pid, Signal::SIGINT).expect("SIGINT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        start.try_wait().expect("try_wait").is_none(),
        "the first Ctrl-C waits for the batch in flight"
    );
    kill(pid, Signal::SIGINT).expect("the second SIGINT");
    let output = tokio::task::block_in_place(|| wait(start, Duration::from_secs(60)));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGINT received: stopping after the current batch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SIGINT again: stopped at once")
            && stderr.contains("Run the same command again to resume"),
        "{stderr}"
    );

    // The application lets go: the orphaned batch's session finds its client gone and
    // rolls back; the held row was never written.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
                   AND application_name LIKE 'zdm%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count: i64 = sqlx::query_scalar(others)
            .fetch_one(&pool)
            .await
            .expect("sessions");
        if count == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "zdm's sessions outlived it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_row: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM items WHERE id = {ROWS} AND size IS DISTINCT FROM qty * 2"
    ))
    .fetch_one(&pool)
    .await
    .expect("the held row");
    assert_eq!(held_row, 1, "the batch in flight was rolled back");
    assert_eq!(status_of(&pool).await, "backfilling");
    let (rows,): (i64,) = sqlx::query_as("SELECT rows_updated FROM zdm.backfill_progress")
        .fetch_one(&pool)
        .await
        .expect("checkpoint");
    assert!(rows > 0 && rows < ROWS, "{rows}");
    holder.close().await.expect("close");

    // The same command resumes to the end.
    let resumed = tokio::task::block_in_place(|| {
        zdm(&pg, &url, cwd, &["start", NAME, "--config", slow])
            .output()
            .expect("resume")
    });
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(status_of(&pool).await, "ready_to_contract");
    assert_eq!(unfilled(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_migrations_directory_is_an_immediate_error_not_a_gate() {
    let pg = common::primary();
    let (_pool, dir) = scene(&pg, "nodir").await;
    let url = pg.primary().url("nodir");
    let fast = config(dir.path(), 1_000_000);
    let started = zdm(
        &pg,
        &url,
        dir.path(),
        &["start", NAME, "--config", fast.to_str().expect("utf-8")],
    )
    .output()
    .expect("start");
    assert!(started.status.success(), "{}", text(&started.stderr));

    // From a directory without ./migrations, and with one that does not exist.
    let elsewhere = tempfile::tempdir().expect("dir");
    for args in [
        vec!["gates", NAME],
        vec!["complete", NAME, "--confirm-contract", NAME],
        vec!["gates", NAME, "--dir", "no-such-dir"],
        vec!["status", "--dir", "no-such-dir"],
    ] {
        let output = zdm(&pg, &url, elsewhere.path(), &args)
            .output()
            .expect("zdm");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        let dir = args
            .iter()
            .position(|a| *a == "--dir")
            .map_or("migrations", |at| args[at + 1]);
        assert!(
            stderr.contains(&format!(
                "cannot read the migrations directory {dir}: it does not exist"
            )) && stderr.contains("--dir DIR")
                && stderr.contains("migrations_dir"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("override"), "{args:?}: {stderr}");
        // Refused before the gates' window (60 s here): they were never evaluated.
        assert!(
            !text(&output.stdout).contains("contract gates of"),
            "{args:?}"
        );
        if args[0] == "status" {
            // The database's state is still shown.
            assert!(text(&output.stdout).contains(&format!("{NAME}  ready to contract")));
        }
    }
}
