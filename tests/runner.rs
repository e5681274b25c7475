//! A real run serving its control socket: `zdm start` (in the foreground and detached)
//! on a real PostgreSQL, steered through the socket by `zdm::control::Client` and the
//! `zdm ctl` / `zdm attach` binaries: pause, set and throttle take effect within one batch,
//! every change is audited, abort stops resumably, and no row is lost or done twice.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{tail, until};
use tokio::process::{Child, Command as Process};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use zdm::control::{discover, Client, Command, Event, Reply, RunState, Running, Setting};
use zdm::localpg::LocalPg;
use zdm::protocol::Status;

const ROWS: i64 = 150_000;
const MIGRATION: &str = "0001_items_qty2";

/// A database with `ROWS` items, a migration adding `qty2 = qty * 2` by backfill, a
/// config that keeps batches small and paced (so the backfill takes many batches), and
/// private runtime/state directories for the sockets and logs.
struct Scene {
    /// The server: stopped and removed when the scene is dropped.
    _pg: LocalPg,
    pool: sqlx::PgPool,
    root: tempfile::TempDir,
    url: String,
}

impl Scene {
    async fn new(database: &str) -> Scene {
        let pg = common::primary();
        let pool = common::database(&pg, database).await;
        sqlx::raw_sql(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL); \
             INSERT INTO items SELECT g, g % 97 FROM generate_series(1, {ROWS}) g; \
             ANALYZE items;"
        ))
        .execute(&pool)
        .await
        .expect("load items");
        let root = tempfile::tempdir().expect("tempdir");
        let migrations = root.path().join("migrations");
        std::fs::create_dir_all(&migrations).expect("migrations dir");
        std::fs::write(
            migrations.join(format!("{MIGRATION}.toml")),
            "description = \"items get qty2\"\n\n[[operations]]\nop = \"add_column\"\n\
             table = \"items\"\ncolumn = { name = \"qty2\", type = \"integer\" }\n\
             up = \"qty * 2\"\n",
        )
        .expect("write migration");
        std::fs::write(
            root.path().join("zdm.toml"),
            format!(
                "[backfill]\nbatch_target = \"40ms\"\nstart_batch_rows = 500\n\
                 max_batch_rows = 1500\nnice_ratio = 1.0\n\n{}",
                common::THROTTLE_OFF
            ),
        )
        .expect("write zdm.toml");
        // Trust authentication ignores the password: it is here to show it never leaks.
        let url = format!(
            "postgres://postgres:s3cr3t-pw@127.0.0.1:{}/{database}",
            pg.primary().port()
        );
        Scene {
            _pg: pg,
            pool,
            root,
            url,
        }
    }

    fn runtime(&self) -> PathBuf {
        self.root.path().join("run").join("zdm")
    }

    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn zdm(&self, args: &[&str]) -> Process {
        let mut process = Process::new(common::zdm_binary());
        process
            .args(args)
            .current_dir(self.root.path())
            .env("DATABASE_URL", &self.url)
            .env("XDG_RUNTIME_DIR", self.root.path().join("run"))
            .env("XDG_STATE_HOME", self.state())
            .env("ZDM_LOG_FILE", self.root.path().join("zdm.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        process
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.zdm(args).output().await.expect("run zdm");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The run's socket, once it answers.
    async fn running(&self) -> Running {
        for _ in 0..300 {
            if let Some(run) = discover(&self.runtime()).await.into_iter().next() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no run served its control socket within 30 s");
    }

    async fn filled(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM items WHERE qty2 IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .expect("count filled rows")
    }

    /// Every row has the right value, exactly once (a second application would show as
    /// a wrong value only if `up` were not idempotent, so the batches are counted too).
    async fn assert_every_row_right(&self) {
        let (right, wrong): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE qty2 = qty * 2), \
                    count(*) FILTER (WHERE qty2 IS DISTINCT FROM qty * 2) FROM items",
        )
        .fetch_one(&self.pool)
        .await
        .expect("check rows");
        assert_eq!((right, wrong), (ROWS, 0));
    }

    async fn audit_actions(&self) -> Vec<(String, Option<String>)> {
        sqlx::query_as("SELECT action, detail FROM zdm.audit ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("read zdm.audit")
    }
}

/// Follows the run's events in the background.
async fn follow(run: &Running) -> UnboundedReceiver<Event> {
    let (_, mut stream) = Client::connect(&run.path)
        .await
        .expect("connect")
        .attach()
        .await
        .expect("attach");
    let (sender, receiver) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(stamped)) = stream.next().await {
            if sender.send(stamped.event).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Everything that arrives within `window`.
async fn during(events: &mut UnboundedReceiver<Event>, window: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        seen.push(event);
    }
    seen
}

fn batches(events: &[Event]) -> Vec<&zdm::control::BatchDone> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::BatchDone(batch) => Some(batch),
            _ => None,
        })
        .collect()
}

async fn send(run: &Running, command: Command) -> Reply {
    let mut client = Client::connect(&run.path).await.expect("connect");
    client.send(&command).await.expect("reply")
}

async fn exits(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("zdm start ends")
        .expect("wait for zdm start")
}

#[tokio::test]
async fn pause_set_and_throttle_through_the_socket_take_effect_within_one_batch() {
    let scene = Scene::new("steered").await;
    let mut start = scene.zdm(&["start", MIGRATION]).spawn().expect("zdm start");
    let run = scene.running().await;
    assert_eq!(run.info.migration, MIGRATION);
    assert_eq!(run.info.target.database, "steered");
    let mut events = follow(&run).await;
    until(
        &mut events,
        Duration::from_secs(30),
        "three batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    // Pause: at most the batch in flight commits, then nothing moves.
    let reply = send(&run, Command::Pause).await;
    assert!(reply.is_ok(), "{reply:?}");
    let before_pause = until(&mut events, Duration::from_secs(10), "the pause", |e| {
        matches!(e, Event::Paused { .. })
    })
    .await;
    assert!(
        batches(&before_pause).len() <= 1,
        "more than the batch in flight ran after pause: {before_pause:?}"
    );
    let filled = scene.filled().await;
    let paused = during(&mut events, Duration::from_millis(1500)).await;
    assert!(
        batches(&paused).is_empty(),
        "batches while paused: {paused:?}"
    );
    assert_eq!(scene.filled().await, filled, "rows changed while paused");
    assert!(filled < ROWS, "the backfill finished before the pause");

    // The run streams every sample of its monitor (the figures its throttle acts on) to
    // its clients, paused or not.
    let sampled = until(
        &mut events,
        Duration::from_secs(15),
        "a monitor sample",
        |e| matches!(e, Event::Metrics(_)),
    )
    .await;
    let Some(Event::Metrics(metrics)) = sampled.last() else {
        unreachable!()
    };
    assert!(metrics.sequence >= 1, "{metrics:?}");
    assert!(metrics.sampler.connected, "{:?}", metrics.sampler);
    let Reply::Error(again) = send(&run, Command::Pause).await else {
        panic!("a second pause was accepted");
    };
    assert!(again.contains("already paused"), "{again}");

    // Status while paused, and a smaller batch ceiling set meanwhile.
    let Reply::Status(status) = send(&run, Command::Status).await else {
        panic!("status refused");
    };
    assert!(status.paused, "{status:?}");
    assert_eq!(status.status, Some(Status::Backfilling));
    assert_eq!(
        status.progress.as_ref().map(|p| p.state),
        Some(RunState::Paused)
    );
    let reply = send(&run, Command::Set(Setting::MaxBatchRows(200))).await;
    assert_eq!(reply, Reply::Value(Setting::MaxBatchRows(200)));
    let refused = send(&run, Command::Set(Setting::MinBatchRows(5000))).await;
    assert!(
        matches!(&refused, Reply::Error(e) if e.contains("must not exceed max_batch_rows (200)")),
        "{refused:?}"
    );
    // `zdm ctl` with an old setting name: applied to the run, with a warning naming the
    // new one; `get` and `status` answer with the one name.
    let (ok, out, err) = scene.run(&["ctl", "set", "max_rate=1000000/s"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "max_rows_per_second=1000000/s");
    assert!(
        err.contains("warning: `max_rate` is an old name, accepted until the next release: write `max_rows_per_second` instead"),
        "{err}"
    );
    let (ok, out, err) = scene.run(&["ctl", "get", "max_cpu"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "max_host_cpu_percent=none", "from zdm.toml");
    assert!(
        err.contains("write `max_host_cpu_percent` instead"),
        "{err}"
    );
    let (ok, out, err) = scene.run(&["ctl", "status"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("max_rows_per_second=1000000/s"), "{out}");
    assert!(out.contains("batch_target=40ms"), "zdm.toml's value: {out}");
    assert!(
        !out.contains("max_rate") && !out.contains("max_cpu"),
        "{out}"
    );

    // Resume: the very next batch is within the new ceiling.
    assert!(send(&run, Command::Resume).await.is_ok());
    let resumed = until(&mut events, Duration::from_secs(10), "a batch", |e| {
        matches!(e, Event::BatchDone(_))
    })
    .await;
    assert!(
        resumed.iter().any(|e| matches!(e, Event::Resumed { .. })),
        "{resumed:?}"
    );
    assert!(
        resumed
            .iter()
            .any(|e| matches!(e, Event::SettingChanged(Setting::MaxBatchRows(200)))),
        "{resumed:?}"
    );
    let first = batches(&resumed)[0];
    assert!(first.size <= 200, "first batch after set: {first:?}");

    // A manual throttle holds the backfill, with its reason shown, until cleared.
    assert!(send(&run, Command::Throttle).await.is_ok());
    let throttled = until(&mut events, Duration::from_secs(10), "the throttle", |e| {
        matches!(e, Event::ThrottleOn { .. })
    })
    .await;
    assert!(batches(&throttled).len() <= 1, "{throttled:?}");
    let held = during(&mut events, Duration::from_millis(1500)).await;
    assert!(
        batches(&held).is_empty(),
        "batches while throttled: {held:?}"
    );
    assert!(
        held.iter().any(|e| matches!(e, Event::Progress(p)
            if p.state == RunState::Throttled
                && p.reason.as_deref().is_some_and(|r| r.contains("by hand")))),
        "{held:?}"
    );
    assert!(send(&run, Command::NoThrottle).await.is_ok());
    until(&mut events, Duration::from_secs(10), "the release", |e| {
        matches!(e, Event::ThrottleOff { .. })
    })
    .await;

    // Faster to the end, then the last words.
    let reply = send(&run, Command::Set(Setting::MaxBatchRows(20_000))).await;
    assert!(reply.is_ok(), "{reply:?}");
    assert!(send(&run, Command::Set(Setting::NiceRatio(0.0)))
        .await
        .is_ok());
    let end = until(
        &mut events,
        Duration::from_secs(60),
        "the end of the run",
        |e| matches!(e, Event::Finished { .. }),
    )
    .await;
    let Some(Event::Finished { ok, message, .. }) = end.last() else {
        unreachable!()
    };
    assert!(ok, "{message}");
    assert!(
        end.iter().any(|e| matches!(
            e,
            Event::StatusChanged {
                status: Status::ReadyToContract,
                ..
            }
        )),
        "{end:?}"
    );
    assert!(exits(&mut start).await.success());
    scene.assert_every_row_right().await;

    let audit = scene.audit_actions().await;
    let actions: Vec<&str> = audit.iter().map(|(action, _)| action.as_str()).collect();
    for expected in ["start", "pause", "resume", "throttle"] {
        assert!(actions.contains(&expected), "{expected} missing: {audit:?}");
    }
    let details: Vec<&str> = audit.iter().filter_map(|(_, d)| d.as_deref()).collect();
    for expected in [
        "set max_batch_rows=200",
        "set max_rows_per_second=1000000/s",
        "manual throttle on",
        "manual throttle off",
    ] {
        assert!(details.contains(&expected), "{expected} missing: {audit:?}");
    }
    assert!(
        !details.iter().any(|d| d.contains("min_batch_rows")),
        "a refused set was audited: {audit:?}"
    );
    assert!(
        discover(&scene.runtime()).await.is_empty(),
        "the socket outlived the run"
    );
}

#[tokio::test]
async fn an_attached_client_gets_every_gates_verdict_before_contract_runs() {
    let scene = Scene::new("gated").await;
    // A fast backfill: this test is about what `zdm complete` says before contract.
    std::fs::write(
        scene.root.path().join("zdm.toml"),
        format!(
            "[backfill]\nmax_batch_rows = 100000\n\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("write zdm.toml");
    let (ok, _, stderr) = scene.run(&["start", MIGRATION]).await;
    assert!(ok, "{stderr}");
    let mut args = vec![
        "complete",
        MIGRATION,
        "--confirm-contract",
        MIGRATION,
        // Long enough for this client to attach while the gates observe.
        "--window",
        "3",
    ];
    let gates = zdm::gates::registry::names();
    for gate in &gates {
        args.extend(["--override-gate", gate]);
    }
    let complete = scene.zdm(&args).spawn().expect("zdm complete");
    let run = scene.running().await;
    let mut events = follow(&run).await;
    let seen = until(
        &mut events,
        Duration::from_secs(60),
        "the end of the run",
        |e| matches!(e, Event::Finished { .. }),
    )
    .await;
    let evaluated = seen
        .iter()
        .position(|e| matches!(e, Event::GatesEvaluated(_)))
        .unwrap_or_else(|| panic!("no gates_evaluated: {seen:?}"));
    let contract = seen
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::StepStarted {
                    phase: zdm::plan::Phase::Contract,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("no contract step: {seen:?}"));
    assert!(evaluated < contract, "{seen:?}");
    let Event::GatesEvaluated(report) = &seen[evaluated] else {
        unreachable!()
    };
    assert_eq!(report.migration, MIGRATION);
    let names: Vec<&str> = report.gates.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, gates, "every gate, with its verdict");
    assert!(report.window_seconds >= 3.0, "{report:?}");
    // The backfill gate judges what the run did: it passed.
    assert!(report
        .gates
        .iter()
        .any(|g| g.name == "backfill" && g.verdict == zdm::protocol::Verdict::Pass));
    let Some(Event::Finished { ok, message, .. }) = seen.last() else {
        unreachable!()
    };
    assert!(ok, "{message}");
    let output = tokio::time::timeout(Duration::from_secs(60), complete.wait_with_output())
        .await
        .expect("zdm complete ends")
        .expect("wait for zdm complete");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The command's own printer shows the same verdicts, from the same event.
    assert!(
        stderr.contains(&format!("contract gates of {MIGRATION}")),
        "{stderr}"
    );
}

/// A scene whose migration is backfilled and ready to contract (a fast backfill: these
/// tests are about what happens before contract).
async fn ready_to_contract(database: &str) -> Scene {
    let scene = Scene::new(database).await;
    std::fs::write(
        scene.root.path().join("zdm.toml"),
        format!(
            "[backfill]\nmax_batch_rows = 100000\n\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("write zdm.toml");
    let (ok, _, stderr) = scene.run(&["start", MIGRATION]).await;
    assert!(ok, "{stderr}");
    scene
}

async fn status_of(scene: &Scene) -> String {
    sqlx::query_scalar("SELECT status FROM zdm.migrations WHERE name = $1")
        .bind(MIGRATION)
        .fetch_one(&scene.pool)
        .await
        .expect("read the migration's status")
}

/// `--await-confirmation` needs the run's socket: when it cannot be opened, the run says so
/// before the gates' window and contracts nothing (it would otherwise wait its whole 15 min
/// for a confirmation nothing could send).
#[tokio::test]
async fn awaiting_confirmation_without_a_control_socket_is_refused_before_the_gates() {
    let scene = ready_to_contract("no_socket").await;
    // The socket directory cannot be made: a file stands where it would be (the start run
    // made the directory; it is gone with that run).
    let sockets = scene.root.path().join("run/zdm");
    let _ = std::fs::remove_dir_all(&sockets);
    std::fs::create_dir_all(scene.root.path().join("run")).expect("mkdir");
    std::fs::write(&sockets, "not a directory").expect("file");
    let complete = scene
        .zdm(&[
            "complete",
            MIGRATION,
            "--await-confirmation",
            "--window",
            "600",
        ])
        .output();
    // A guard against a hang, not a timing: the refusal comes before the 600 s window.
    let output = tokio::time::timeout(Duration::from_secs(300), complete)
        .await
        .expect("refused before the gates' window")
        .expect("run zdm complete");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot wait for the confirmation of contract")
            && stderr.contains(&format!("--confirm-contract {MIGRATION}")),
        "{stderr}"
    );
    assert_eq!(status_of(&scene).await, "ready_to_contract");
}

#[tokio::test]
async fn a_contract_awaiting_confirmation_counts_down_once_then_contracts_on_the_typed_name() {
    let scene = ready_to_contract("confirmed").await;
    let complete = scene
        .zdm(&[
            "complete",
            MIGRATION,
            "--await-confirmation",
            "--window",
            "3",
        ])
        .spawn()
        .expect("zdm complete --await-confirmation");
    let run = scene.running().await;
    let mut events = follow(&run).await;
    let seen = until(
        &mut events,
        Duration::from_secs(60),
        "the wait for a confirmation",
        |e| matches!(e, Event::AwaitingConfirmation { .. }),
    )
    .await;
    // The countdown: every second of the window, never going up, each verdict settling.
    let countdown: Vec<&zdm::protocol::Observing> = seen
        .iter()
        .filter_map(|e| match e {
            Event::GatesObserving(observing) => Some(observing),
            _ => None,
        })
        .collect();
    assert!(countdown.len() >= 2, "a countdown, not one event: {seen:?}");
    assert!(
        countdown
            .windows(2)
            .all(|pair| pair[1].remaining <= pair[0].remaining
                && pair[1].settled.len() >= pair[0].settled.len()),
        "{countdown:?}"
    );
    assert!(countdown[0].remaining > Duration::ZERO);
    let last = countdown.last().expect("a last countdown");
    assert!(last.watching.is_empty(), "every gate judged: {last:?}");
    assert_eq!(last.settled.len(), zdm::gates::registry::names().len());
    let Some(Event::AwaitingConfirmation {
        blocking,
        remaining,
        ..
    }) = seen.last()
    else {
        unreachable!()
    };
    assert!(*remaining > Duration::from_secs(60), "{remaining:?}");
    let blocking = blocking.clone();

    // A wrong name is refused to its sender; the run goes on waiting.
    let wrong = send(
        &run,
        Command::ConfirmContract {
            confirmation: "0001_items".to_string(),
            overrides: vec![],
        },
    )
    .await;
    let Reply::Error(why) = wrong else {
        panic!("a wrong name was accepted: {wrong:?}")
    };
    assert!(
        why.contains(&format!("must be the migration's name, {MIGRATION}")),
        "{why}"
    );
    if let Some(gate) = blocking.first() {
        // A gate that did not pass blocks until overridden by name.
        let blocked = send(
            &run,
            Command::ConfirmContract {
                confirmation: MIGRATION.to_string(),
                overrides: vec![],
            },
        )
        .await;
        let Reply::Error(why) = blocked else {
            panic!("a blocking gate was not overridden, yet: {blocked:?}")
        };
        assert!(why.contains(gate.as_str()), "{why}");
    }
    assert_eq!(status_of(&scene).await, "ready_to_contract");

    // `zdm ctl confirm-contract NAME --override-gate …` reaches the run of that migration.
    let mut args = vec!["ctl", "confirm-contract", MIGRATION];
    for gate in &blocking {
        args.extend(["--override-gate", gate.as_str()]);
    }
    let (ok, stdout, stderr) = scene.run(&args).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("confirmed: it runs now"), "{stdout}");
    let rest = until(
        &mut events,
        Duration::from_secs(60),
        "the end of the run",
        |e| matches!(e, Event::Finished { .. }),
    )
    .await;
    let Some(Event::Finished { ok, message, .. }) = rest.last() else {
        unreachable!()
    };
    assert!(ok, "{message}");
    // One window: the gates were not evaluated again before contract.
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, Event::GatesObserving(_) | Event::GatesEvaluated(_))),
        "{rest:?}"
    );
    let output = tokio::time::timeout(Duration::from_secs(60), complete.wait_with_output())
        .await
        .expect("zdm complete ends")
        .expect("wait for zdm complete");
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{printed}");
    // Its own terminal says what to type, once, and the countdown calmly.
    assert_eq!(
        printed.matches("waits for its confirmation (").count(),
        1,
        "{printed}"
    );
    assert!(
        printed.contains(&format!("zdm ctl confirm-contract {MIGRATION}")),
        "{printed}"
    );
    eprintln!("{printed}");
    assert_eq!(status_of(&scene).await, "complete");
    let audit = scene.audit_actions().await;
    let confirmations = audit
        .iter()
        .filter(|(action, _)| action == "confirm_contract")
        .count();
    assert_eq!(confirmations, 1, "{audit:?}");
    let overridden = audit
        .iter()
        .filter(|(action, _)| action == "override_gate")
        .count();
    assert_eq!(overridden, blocking.len(), "{audit:?}");
    assert!(
        !audit.iter().any(|(action, _)| action == "contract_refused"),
        "wrong confirmations are refused to their sender, not recorded as refusals: {audit:?}"
    );
}

#[tokio::test]
async fn a_contract_awaiting_confirmation_is_cancelled_by_abort_with_nothing_contracted() {
    let scene = ready_to_contract("cancelled").await;
    let complete = scene
        .zdm(&[
            "complete",
            MIGRATION,
            "--await-confirmation",
            "--window",
            "2",
        ])
        .spawn()
        .expect("zdm complete --await-confirmation");
    let run = scene.running().await;
    let mut events = follow(&run).await;
    until(
        &mut events,
        Duration::from_secs(60),
        "the gates observing",
        |e| matches!(e, Event::GatesObserving(_)),
    )
    .await;
    // While the gates still watch, nothing is awaited yet: a confirmation is refused.
    let early = send(
        &run,
        Command::ConfirmContract {
            confirmation: MIGRATION.to_string(),
            overrides: zdm::gates::registry::names()
                .into_iter()
                .map(str::to_string)
                .collect(),
        },
    )
    .await;
    let Reply::Error(why) = early else {
        panic!("confirmed before the gates judged: {early:?}")
    };
    assert!(
        why.contains("not waiting for a contract confirmation"),
        "{why}"
    );
    until(
        &mut events,
        Duration::from_secs(60),
        "the wait for a confirmation",
        |e| matches!(e, Event::AwaitingConfirmation { .. }),
    )
    .await;
    let (ok, stdout, stderr) = scene.run(&["ctl", "abort"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("contract cancelled: nothing was contracted"),
        "{stdout}"
    );
    let output = tokio::time::timeout(Duration::from_secs(60), complete.wait_with_output())
        .await
        .expect("zdm complete ends")
        .expect("wait for zdm complete");
    assert_eq!(
        output.status.code(),
        Some(3),
        "stopped by the operator, not failed"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stopped before contract"), "{stderr}");
    assert_eq!(status_of(&scene).await, "ready_to_contract");
    let audit = scene.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(action, detail)| action == "contract_refused"
                && detail
                    .as_deref()
                    .is_some_and(|d| d.contains("contract cancelled by the operator"))),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_detached_run_outlives_its_starter_is_followed_aborted_and_resumed() {
    let scene = Scene::new("detached").await;
    let (ok, stdout, stderr) = scene.run(&["start", MIGRATION, "--detach"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("runs in the background (pid "), "{stdout}");
    assert!(
        stdout.contains(&format!("zdm attach {MIGRATION}")),
        "{stdout}"
    );
    let log = log_of(&stdout);
    let run = scene.running().await;
    assert!(process_alive(run.info.pid), "the runner is gone");
    let mut events = follow(&run).await;
    until(&mut events, Duration::from_secs(30), "a batch", |e| {
        matches!(e, Event::BatchDone(_))
    })
    .await;

    // `zdm ctl` and `zdm attach` reach it from "another terminal".
    let (ok, status, stderr) = scene.run(&["ctl", "status"]).await;
    assert!(ok, "{stderr}");
    assert!(status.contains(MIGRATION), "{status}");
    assert!(
        status.contains(&log.display().to_string()),
        "the status names the runner's log: {status}"
    );
    let attach = scene
        .zdm(&["attach", "--json"])
        .spawn()
        .expect("zdm attach");
    // Attached once it has said so (its first line) or shortly after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, stdout, stderr) = scene.run(&["ctl", "abort"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("stopping"), "{stdout}");
    let attached = tokio::time::timeout(Duration::from_secs(60), attach.wait_with_output())
        .await
        .expect("zdm attach ends with the run")
        .expect("attach output");
    let lines = String::from_utf8_lossy(&attached.stdout).into_owned();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {lines}"));
    assert_eq!(last["event"], "finished", "{lines}");
    assert_eq!(last["ok"], false, "{lines}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("aborted by the operator")),
        "{lines}"
    );
    wait_gone(run.info.pid).await;
    let filled = scene.filled().await;
    assert!(filled > 0 && filled < ROWS, "{filled} rows after abort");

    // Started again, detached: it resumes from the checkpoint and finishes.
    let (ok, _, stderr) = scene.run(&["start", MIGRATION, "--detach"]).await;
    assert!(ok, "{stderr}");
    let run = scene.running().await;
    let mut events = follow(&run).await;
    let _ = send(&run, Command::Set(Setting::MaxBatchRows(50_000))).await;
    let _ = send(&run, Command::Set(Setting::NiceRatio(0.0))).await;
    let end = until(
        &mut events,
        Duration::from_secs(120),
        "the end of the run",
        |e| matches!(e, Event::Finished { .. }),
    )
    .await;
    assert!(
        matches!(end.last(), Some(Event::Finished { ok: true, .. })),
        "{:?}",
        tail(&end)
    );
    wait_gone(run.info.pid).await;
    scene.assert_every_row_right().await;

    // Its log is private, readable, and never shows the password.
    let text = std::fs::read_to_string(&log).expect("read the runner's log");
    assert!(text.contains("backfill"), "{text}");
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).expect("log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_runner_that_cannot_start_says_why_with_its_log() {
    let scene = Scene::new("refused").await;
    let (ok, stdout, stderr) = scene.run(&["start", "0009_missing", "--detach"]).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("ended"), "{stderr}");
    assert!(stderr.contains("0009_missing"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-pw"), "{stderr}");
    let (ok, _, stderr) = scene.run(&["start", "--detach"]).await;
    assert!(!ok);
    assert!(stderr.contains("<NAME>"), "{stderr}");
}

fn log_of(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("log:"))
        .unwrap_or_else(|| panic!("no log line: {stdout}"));
    Path::new(line.trim()).to_path_buf()
}

fn process_alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}

async fn wait_gone(pid: u32) {
    for _ in 0..300 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the runner (pid {pid}) is still running");
}

#[tokio::test]
async fn the_backfill_writes_as_the_old_version_even_when_the_roles_path_names_the_new_one() {
    let scene = Scene::new("pathed").await;
    // A lossy type change (tenths): the sync trigger fills the new column from the old
    // one for the old version, and the old column from the new one for the new version.
    // A backfill taken for the new version would write `down(up(qty))` into the old
    // column, changing what the old application sees.
    let migrations = scene.root.path().join("migrations");
    std::fs::remove_file(migrations.join(format!("{MIGRATION}.toml"))).expect("remove");
    let name = "0001_items_qty_bigint";
    std::fs::write(
        migrations.join(format!("{name}.toml")),
        "[[operations]]\nop = \"change_type\"\ntable = \"items\"\ncolumn = \"qty\"\n\
         type = \"bigint\"\nup = \"(qty / 10)::bigint\"\ndown = \"(qty * 10)::integer\"\n",
    )
    .expect("write migration");
    // As if the application's role (which zdm shares here) had been switched to the new
    // version ahead of time: every new session of this database starts in it.
    sqlx::raw_sql(&format!(
        "ALTER DATABASE pathed SET search_path = public_{name}, public"
    ))
    .execute(&scene.pool)
    .await
    .expect("set the database's search_path");
    std::fs::write(
        scene.root.path().join("zdm.toml"),
        format!(
            "[backfill]\nmax_batch_rows = 50000\n\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("write zdm.toml");
    let (ok, stdout, stderr) = scene.run(&["start", name]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let (old_right, new_right): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE p.qty = p.id % 97), \
                count(*) FILTER (WHERE v.qty = (p.id % 97) / 10) \
         FROM public.items p JOIN public_{name}.items v USING (id)"
    ))
    .fetch_one(&scene.pool)
    .await
    .expect("compare the versions");
    assert_eq!((old_right, new_right), (ROWS, ROWS));
}

#[tokio::test]
async fn detach_fails_at_once_when_its_control_directory_is_refused() {
    let scene = Scene::new("no_socket").await;
    // The control directory is a symlink (someone else's trap): zdm refuses to serve a
    // socket there, so a detached run could never be reached.
    let elsewhere = scene.root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::create_dir_all(scene.root.path().join("run")).expect("run dir");
    std::os::unix::fs::symlink(&elsewhere, scene.runtime()).expect("symlink");
    let (ok, stdout, stderr) = scene.run(&["start", MIGRATION, "--detach"]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("control socket") && stderr.contains("Nothing was started"),
        "{stderr}"
    );
    assert!(stderr.contains("not a directory"), "the reason: {stderr}");
    // Nothing runs: no migration was recorded.
    let started: bool = sqlx::query_scalar("SELECT to_regclass('zdm.migrations') IS NOT NULL")
        .fetch_one(&scene.pool)
        .await
        .expect("state");
    assert!(!started, "no runner started the migration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_for_good_stops_the_run_as_stopped_with_a_bounded_log() {
    let scene = Scene::new("gone").await;
    let config = scene.root.path().join("zdm.toml");
    let text = std::fs::read_to_string(&config).expect("zdm.toml");
    std::fs::write(&config, format!("reconnect_budget_s = 3\n{text}")).expect("zdm.toml");
    let mut start = scene.zdm(&["start", MIGRATION]).spawn().expect("zdm start");
    let run = scene.running().await;
    let mut events = follow(&run).await;
    until(
        &mut events,
        Duration::from_secs(30),
        "three batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;
    let log = scene.root.path().join("zdm.log");
    let lines_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    tokio::task::block_in_place(|| common::pg_ctl(&scene._pg, &["stop", "--mode=immediate"]));
    let status = tokio::time::timeout(Duration::from_secs(90), start.wait())
        .await
        .expect("the run gives up within its budget")
        .expect("wait");
    let mut stderr = String::new();
    if let Some(mut pipe) = start.stderr.take() {
        use tokio::io::AsyncReadExt;
        pipe.read_to_string(&mut stderr).await.expect("stderr");
    }
    assert_eq!(status.code(), Some(3), "stopped, not failed: {stderr}");
    assert!(
        stderr.contains("unreachable") && stderr.contains("Stopped, not failed"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&log).expect("zdm.log");
    let after: Vec<&str> = text.lines().skip(lines_before).collect();
    let unreachable = after.iter().filter(|l| l.contains("unreachable")).count();
    assert!(
        (1..=8).contains(&unreachable) && after.len() <= 60,
        "{unreachable} 'unreachable' lines, {} lines in all:\n{}",
        after.len(),
        after.join("\n")
    );
    // Back up, the migration reads as stopped (not failed) and resumes.
    tokio::task::block_in_place(|| common::pg_ctl(&scene._pg, &["start"]));
    let (_, stdout, _) = scene.run(&["status"]).await;
    assert!(stdout.contains("STOPPED:"), "{stdout}");
    let (ok, _, stderr) = scene.run(&["start", MIGRATION]).await;
    assert!(ok, "{stderr}");
    scene.assert_every_row_right().await;
}
