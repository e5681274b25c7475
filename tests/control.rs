//! The control socket end to end: a real server in this process, answered by a small
//! test-side run loop (a protocol test: no database is involved or mocked), driven by
//! the real `zdm ctl` and `zdm attach` binaries and by raw socket clients.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command as Process;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zdm::control::{
    Command, CommandRequest, Error, Event, EventSender, Reply, RunInfo, RunStatus, Server, Target,
};
use zdm::protocol::Status;

/// A scratch runtime directory: children get it as `$XDG_RUNTIME_DIR`, so they look in
/// `<root>/zdm` exactly where the in-process server listens.
struct Scratch {
    root: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("zdm")
    }

    fn zdm(&self, args: &[&str]) -> Process {
        let mut process = Process::new(common::zdm_binary());
        process
            .args(args)
            .env("XDG_RUNTIME_DIR", self.root.path())
            .env("ZDM_LOG_FILE", self.root.path().join("zdm.log"))
            // The database of the test runs' targets (`info`): ctl reaches only its runs.
            .env("DATABASE_URL", "postgres://db.test:5432/shop")
            .env_remove("ZDM_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        process
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.zdm(args).output().await.expect("run zdm")
    }

    /// Serves `migration` with the test run loop answering its commands.
    async fn serve(&self, migration: &str) -> (Server, JoinHandle<()>) {
        self.serve_with(migration, EventSender::default()).await
    }

    async fn serve_with(&self, migration: &str, events: EventSender) -> (Server, JoinHandle<()>) {
        let (server, commands) = Server::start_with(&self.dir(), info(migration), events)
            .await
            .expect("start the control socket");
        let run = tokio::spawn(test_run(migration.to_string(), commands, server.events()));
        (server, run)
    }
}

fn info(migration: &str) -> RunInfo {
    RunInfo::new(
        migration,
        Target {
            host: "db.test".to_string(),
            port: 5432,
            database: "shop".to_string(),
        },
    )
}

/// What a run does with commands, reduced to its state: enough to show each command
/// reaches the run and its reply reaches the client.
async fn test_run(
    migration: String,
    mut commands: mpsc::Receiver<CommandRequest>,
    events: EventSender,
) {
    let mut settings = zdm::engine::BackfillSettings::default();
    let mut paused = false;
    let mut manual_throttle = false;
    let mut aborted = false;
    while let Some((command, reply)) = commands.recv().await {
        let answer = match command {
            Command::Status => Reply::Status(Box::new(RunStatus {
                migration: migration.clone(),
                // A typed status (the stand-in says failed once aborted, to tell them apart).
                status: Some(if aborted {
                    Status::Failed
                } else {
                    Status::Backfilling
                }),
                step: Some("backfill public.orders.status".to_string()),
                progress: None,
                paused,
                manual_throttle,
                throttle_reasons: if manual_throttle {
                    vec!["manual throttle".to_string()]
                } else {
                    vec![]
                },
                settings: settings.all(),
            })),
            Command::Pause if paused => Reply::error("the backfill is already paused"),
            Command::Pause => {
                paused = true;
                events.send(Event::Paused {
                    reason: "operator".to_string(),
                });
                Reply::done("paused after the current batch")
            }
            Command::Resume if !paused => Reply::error("the backfill is not paused"),
            Command::Resume => {
                paused = false;
                events.send(Event::Resumed {
                    paused_for: Duration::from_secs(1),
                });
                Reply::done("resumed")
            }
            Command::Set(setting) => {
                let key = setting.key();
                match settings.apply(setting) {
                    Ok(()) => {
                        let now = settings.get(key).expect("a live setting reads back");
                        events.send(Event::SettingChanged(now.clone()));
                        Reply::Value(now)
                    }
                    Err(error) => Reply::error(error.to_string()),
                }
            }
            Command::Get { key } => match settings.get(key) {
                Some(value) => Reply::Value(value),
                None => Reply::error(format!("{key} is not live")),
            },
            Command::Throttle => {
                manual_throttle = true;
                Reply::done("manual throttle on")
            }
            Command::NoThrottle => {
                manual_throttle = false;
                Reply::done("manual throttle off")
            }
            Command::Abort => {
                aborted = true;
                Reply::done("the backfill stops after the current batch; `zdm start` resumes it")
            }
            Command::ConfirmContract { .. } => Reply::error("no contract waits here"),
        };
        let _ = reply.send(answer);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

#[track_caller]
fn assert_failure(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stderr(output)
}

/// A raw client speaking the line protocol by hand.
struct Raw {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &Path) -> Raw {
        let (read, write) = UnixStream::connect(path)
            .await
            .expect("connect")
            .into_split();
        Raw {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("write");
    }

    async fn reply(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("a reply in time")
            .expect("read")
            .expect("a line before the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    async fn ask(&mut self, line: &str) -> serde_json::Value {
        self.send(format!("{line}\n").as_bytes()).await;
        self.reply().await
    }
}

async fn wait_for_attached(server: &Server, count: usize) {
    for _ in 0..400 {
        if server.attached() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} clients attached, expected {count}", server.attached());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_round_trips_through_zdm_ctl() {
    let scratch = Scratch::new();
    let (_server, _run) = scratch.serve("0003_orders_status").await;

    let status = assert_success(&scratch.run(&["ctl", "status"]).await);
    assert!(
        status.contains("0003_orders_status on db.test:5432/shop"),
        "{status}"
    );
    assert!(status.contains("backfilling"), "{status}");
    assert!(status.contains("batch_target=200ms"), "{status}");
    assert!(status.contains("max_replica_lag=1s"), "{status}");
    // Every live setting is listed by its one name, and only by it.
    for key in zdm::settings::SettingKey::live() {
        assert!(status.contains(&format!("{key}=")), "{key}: {status}");
    }
    for old in zdm::settings::OLD_NAMES {
        assert!(
            !status.contains(&format!(" {}=", old.name)),
            "{}: {status}",
            old.name
        );
    }

    let pause = assert_success(&scratch.run(&["ctl", "pause"]).await);
    assert_eq!(pause.trim(), "paused after the current batch");
    let again = assert_failure(&scratch.run(&["ctl", "pause"]).await);
    assert!(
        again.contains("zdm ctl pause: the backfill is already paused"),
        "{again}"
    );
    let status = assert_success(&scratch.run(&["ctl", "status"]).await);
    assert!(status.contains("paused"), "{status}");
    assert_success(&scratch.run(&["ctl", "resume"]).await);

    let set = assert_success(&scratch.run(&["ctl", "set", "batch_target=1.5s"]).await);
    assert_eq!(set.trim(), "batch_target=1.5s");
    let get = assert_success(&scratch.run(&["ctl", "get", "batch_target"]).await);
    assert_eq!(get.trim(), "batch_target=1.5s");
    let set = assert_success(
        &scratch
            .run(&["ctl", "set", "max_rows_per_second=5000/s"])
            .await,
    );
    assert_eq!(set.trim(), "max_rows_per_second=5000/s");
    // An old name is applied for one more release, and the reply says the new one.
    let old = scratch.run(&["ctl", "set", "max_cpu=75%"]).await;
    assert_eq!(assert_success(&old).trim(), "max_host_cpu_percent=75%");
    assert!(
        stderr(&old).contains(
            "zdm ctl set: warning: `max_cpu` is an old name, accepted until the next release: \
             write `max_host_cpu_percent` instead"
        ),
        "{}",
        stderr(&old)
    );
    let old = scratch.run(&["ctl", "get", "max_rate"]).await;
    assert_eq!(assert_success(&old).trim(), "max_rows_per_second=5000/s");
    assert!(
        stderr(&old).contains("zdm ctl get: warning: `max_rate` is an old name"),
        "{}",
        stderr(&old)
    );
    // A setting read only when a run starts is refused before reaching the run.
    let refused = assert_failure(&scratch.run(&["ctl", "set", "start_batch_rows=10"]).await);
    assert!(
        refused.contains("start_batch_rows is read from zdm.toml ([backfill]) when a run starts"),
        "{refused}"
    );
    // The run's own refusal (a contradiction between settings) comes back as an error.
    let refused = assert_failure(&scratch.run(&["ctl", "set", "min_batch_rows=999999"]).await);
    assert!(
        refused.contains("min_batch_rows: must not exceed max_batch_rows (100000)"),
        "{refused}"
    );

    assert_eq!(
        assert_success(&scratch.run(&["ctl", "throttle"]).await).trim(),
        "manual throttle on"
    );
    let status = assert_success(&scratch.run(&["ctl", "status"]).await);
    assert!(status.contains("throttled: manual throttle"), "{status}");
    assert!(status.contains("manual throttle on"), "{status}");
    assert_eq!(
        assert_success(&scratch.run(&["ctl", "no-throttle"]).await).trim(),
        "manual throttle off"
    );
    let abort = assert_success(&scratch.run(&["ctl", "abort"]).await);
    assert!(abort.contains("stops after the current batch"), "{abort}");

    let json = assert_success(&scratch.run(&["ctl", "--json", "status"]).await);
    let reply: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["status"]["status"], "failed");
    assert_eq!(reply["status"]["settings"]["batch_target"], "1.5s");
    assert_eq!(reply["status"]["settings"]["max_rows_per_second"], "5000/s");
    assert_eq!(reply["status"]["settings"]["max_host_cpu_percent"], "75%");
    let json = scratch.run(&["ctl", "--json", "resume"]).await;
    assert_failure(&json);
    let reply: serde_json::Value = serde_json::from_str(stdout(&json).trim()).expect("JSON");
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"], "the backfill is not paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve("0001_bad_input").await;

    let mut raw = Raw::connect(server.path()).await;
    let reply = raw.ask("pause please").await;
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not valid JSON"),
        "{reply}"
    );
    let reply = raw.ask(r#"{"command":"pasue"}"#).await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("unknown command `pasue`; did you mean `pause`?"),
        "{reply}"
    );
    let reply = raw
        .ask(r#"{"command":"set","key":"batch_traget","value":"1s"}"#)
        .await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown setting `batch_traget`; did you mean `batch_target`?"),
        "{reply}"
    );
    let reply = raw
        .ask(r#"{"command":"set","key":"nice_ratio","value":"lots"}"#)
        .await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nice_ratio: `lots` is not a number (0–100)"),
        "{reply}"
    );
    // A line far over the cap: one error, the rest of the line skipped, then served again.
    let mut huge = vec![b'x'; 1024 * 1024];
    huge.push(b'\n');
    raw.send(&huge).await;
    let reply = raw.reply().await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("request longer than 65536 bytes"),
        "{reply}"
    );
    let reply = raw.ask(r#"{"command":"get","key":"nice_ratio"}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["setting"]["value"], "0", "{reply}");

    // The same mistakes through the binary: refused before any run is asked, exit 1.
    let typo = assert_failure(&scratch.run(&["ctl", "set", "batch_traget=1s"]).await);
    assert!(
        typo.contains("unknown setting `batch_traget`; did you mean `batch_target`?"),
        "{typo}"
    );
    assert!(typo.contains("`max_replica_lag`"), "{typo}");
    let unitless = assert_failure(&scratch.run(&["ctl", "set", "batch_target=200"]).await);
    assert!(
        unitless.contains("batch_target: `200` is not a duration (10ms–1m)"),
        "{unitless}"
    );
    let not_assignment = assert_failure(&scratch.run(&["ctl", "set", "faster"]).await);
    assert!(
        not_assignment.contains("is not KEY=VALUE"),
        "{not_assignment}"
    );
    let get = assert_failure(&scratch.run(&["ctl", "get", "lag"]).await);
    assert!(get.contains("unknown setting `lag`"), "{get}");
    let unknown = scratch.run(&["ctl", "pasue"]).await;
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("pause"), "{}", stderr(&unknown));

    let status = assert_success(&scratch.run(&["ctl", "status"]).await);
    assert!(status.contains("0001_bad_input"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_its_name_reveals_no_secret() {
    let scratch = Scratch::new();
    let url = zdm::db::DatabaseUrl::new(
        "postgres://app:s3cr3t@db.internal.example:6543/shop".to_string(),
    );
    let target = Target::from_url(&url).expect("target");
    let (server, _commands) = Server::start(&scratch.dir(), RunInfo::new("0002_users", target))
        .await
        .expect("start");
    let dir_mode = std::fs::metadata(scratch.dir())
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let socket_mode = std::fs::metadata(server.path())
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(socket_mode, 0o600);
    let name = server
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("0002_users."), "{name}");
    for secret in ["s3cr3t", "app", "db.internal", "6543"] {
        assert!(!name.contains(secret), "{secret} in {name}");
    }
    let mut raw = Raw::connect(server.path()).await;
    let reply = raw.ask(r#"{"command":"info"}"#).await;
    assert_eq!(reply["info"]["migration"], "0002_users");
    assert_eq!(reply["info"]["target"]["host"], "db.internal.example");
    assert!(!reply.to_string().contains("s3cr3t"), "{reply}");

    // The socket goes away with the run.
    let path = server.path().to_path_buf();
    server.shutdown().await;
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let scratch = Scratch::new();
    let info = info("0004_stale");
    zdm::control::address::prepare_dir(&scratch.dir()).expect("dir");
    let path = zdm::control::address::socket_path(&scratch.dir(), &info.target, &info.migration);
    // What a killed process leaves: the file, with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());

    let (server, _commands) = Server::start(&scratch.dir(), info.clone())
        .await
        .expect("the stale socket is replaced");
    assert_eq!(server.path(), path);
    let mut raw = Raw::connect(&path).await;
    assert_eq!(raw.ask(r#"{"command":"info"}"#).await["ok"], true);

    match Server::start(&scratch.dir(), info.clone()).await {
        Err(Error::AlreadyRunning { migration, .. }) => assert_eq!(migration, "0004_stale"),
        Err(other) => panic!("expected AlreadyRunning, got {other}"),
        Ok(_) => panic!("a second server took over a live socket"),
    }
    // Refusing did not disturb the live one.
    assert_eq!(raw.ask(r#"{"command":"info"}"#).await["ok"], true);

    // A file that is not a socket is never removed.
    drop(raw);
    server.shutdown().await;
    std::fs::write(&path, "not a socket").expect("write");
    assert!(matches!(
        Server::start(&scratch.dir(), info).await,
        Err(Error::NotASocket { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_socket_directory_is_made_again_and_the_run_is_reachable() {
    // What systemd-logind does to $XDG_RUNTIME_DIR when the last session ends: the run
    // (detached, still going) must be reachable again once the directory can be made.
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve("0007_removed").await;
    let path = server.path().to_path_buf();
    std::fs::remove_dir_all(scratch.dir()).expect("remove the runtime directory");
    assert!(!path.exists());
    let mut reachable = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(mut client) = zdm::control::Client::connect(&path).await {
            reachable = client
                .info()
                .await
                .is_ok_and(|i| i.migration == "0007_removed");
            if reachable {
                break;
            }
        }
    }
    assert!(reachable, "the socket was not bound again within 10 s");
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "bound again, still private");
    let dir_mode = std::fs::metadata(scratch.dir())
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    server.shutdown().await;
    assert!(
        !path.exists(),
        "the socket bound again is removed at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attach_clients_both_get_every_event_until_the_run_ends() {
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve("0005_attach").await;
    let json = scratch
        .zdm(&["attach", "--json"])
        .spawn()
        .expect("attach --json");
    let readable = scratch.zdm(&["attach"]).spawn().expect("attach");
    wait_for_attached(&server, 2).await;

    server.send(Event::ThrottleOn {
        reason: "replica lag 2.3 s > 1 s".to_string(),
    });
    server.send(Event::StepStarted {
        migration: "0005_attach".to_string(),
        phase: zdm::plan::Phase::Backfill,
        index: 0,
        total: 1,
        description: "backfill public.orders.status".to_string(),
    });
    // A command's event reaches attached clients too.
    assert_success(&scratch.run(&["ctl", "set", "nice_ratio=0.5"]).await);
    server.send(Event::Log {
        level: zdm::control::Level::Warning,
        text: "the last event".to_string(),
    });
    server.shutdown().await;

    let json = tokio::time::timeout(Duration::from_secs(20), json.wait_with_output())
        .await
        .expect("attach --json ends with the run")
        .expect("output");
    let lines = assert_success(&json);
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["throttle_on", "step_started", "setting_changed", "log"],
        "{lines}"
    );
    assert_eq!(events[0]["reason"], "replica lag 2.3 s > 1 s");
    assert_eq!(events[2]["key"], "nice_ratio");
    assert!(chrono::DateTime::parse_from_rfc3339(events[0]["at"].as_str().unwrap_or("")).is_ok());
    assert!(
        stderr(&json).contains("the run of 0005_attach ended"),
        "{}",
        stderr(&json)
    );

    let readable = tokio::time::timeout(Duration::from_secs(20), readable.wait_with_output())
        .await
        .expect("attach ends with the run")
        .expect("output");
    let text = assert_success(&readable);
    assert!(
        text.contains("throttled: replica lag 2.3 s > 1 s"),
        "{text}"
    );
    assert!(
        text.contains("backfill step 1/1 started: backfill public.orders.status"),
        "{text}"
    );
    assert!(text.contains("setting changed: nice_ratio=0.5"), "{text}");
    assert!(text.contains("warning: the last event"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_detaches_and_the_run_goes_on() {
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve("0006_detach").await;
    let attach = scratch.zdm(&["attach"]).spawn().expect("attach");
    wait_for_attached(&server, 1).await;
    let pid = Pid::from_raw(attach.id().expect("pid") as i32);
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let output = tokio::time::timeout(Duration::from_secs(20), attach.wait_with_output())
        .await
        .expect("attach exits on Ctrl-C")
        .expect("output");
    assert_success(&output);
    assert!(stderr(&output).contains("detached"), "{}", stderr(&output));
    wait_for_attached(&server, 0).await;
    assert_success(&scratch.run(&["ctl", "status"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_client_is_told_how_many_events_it_missed() {
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve_with("0007_lag", EventSender::new(64)).await;
    let mut slow = Raw::connect(server.path()).await;
    assert_eq!(slow.ask(r#"{"command":"attach"}"#).await["attached"], true);
    wait_for_attached(&server, 1).await;

    // Far more than the buffer plus what the socket holds, sent while nobody reads.
    let sent = 50_000u64;
    for i in 0..sent {
        server.send(Event::Log {
            level: zdm::control::Level::Info,
            text: format!("event {i} padded to make lines longer than a few bytes"),
        });
    }
    // The run is not held back: a command is answered while the client still lags.
    let mut other = Raw::connect(server.path()).await;
    assert_eq!(other.ask(r#"{"command":"status"}"#).await["ok"], true);

    server.send(Event::Log {
        level: zdm::control::Level::Info,
        text: "last".to_string(),
    });
    let mut received = 0u64;
    let mut missed = 0u64;
    loop {
        let event = slow.reply().await;
        match event["event"].as_str() {
            Some("missed") => missed += event["count"].as_u64().expect("count"),
            Some("log") if event["text"] == "last" => break,
            Some("log") => received += 1,
            other => panic!("unexpected {other:?}: {event}"),
        }
    }
    assert!(
        missed > 0,
        "the slow client was never told it missed events"
    );
    assert_eq!(
        received + missed,
        sent,
        "every event is either delivered or counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnects_do_not_hurt_the_server() {
    let scratch = Scratch::new();
    let (server, _run) = scratch.serve("0008_disconnect").await;

    // Half a request, then gone.
    let mut half = Raw::connect(server.path()).await;
    half.send(br#"{"command":"sta"#).await;
    drop(half);
    // A command sent, the connection dropped before the reply: the run still applies it.
    let mut gone = Raw::connect(server.path()).await;
    gone.send(b"{\"command\":\"pause\"}\n").await;
    drop(gone);
    // An attached client that vanishes while events flow.
    let mut attached = Raw::connect(server.path()).await;
    assert_eq!(attached.ask(r#"{"command":"attach"}"#).await["ok"], true);
    wait_for_attached(&server, 1).await;
    drop(attached);
    for _ in 0..100 {
        server.send(Event::Error {
            message: "nobody listens".to_string(),
        });
    }
    wait_for_attached(&server, 0).await;

    let mut fresh = Raw::connect(server.path()).await;
    let reply = fresh.ask(r#"{"command":"status"}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    // The dropped client's pause reached the run.
    for _ in 0..100 {
        if fresh.ask(r#"{"command":"status"}"#).await["status"]["paused"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fresh.ask(r#"{"command":"status"}"#).await["status"]["paused"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_finds_the_run_or_says_what_it_looked_for() {
    let scratch = Scratch::new();
    let none = assert_failure(&scratch.run(&["ctl", "status"]).await);
    assert!(
        none.contains("no running migration on db.test:5432/shop"),
        "{none}"
    );
    let attach = assert_failure(&scratch.run(&["attach", "--migration", "0009_a"]).await);
    assert!(
        attach.contains("no running migration named 0009_a on db.test:5432/shop"),
        "{attach}"
    );

    let (_a, _run_a) = scratch.serve("0009_a").await;
    let (_b, _run_b) = scratch.serve("0009_b").await;
    let ambiguous = assert_failure(&scratch.run(&["ctl", "status"]).await);
    assert!(
        ambiguous.contains("2 migrations are running on db.test:5432/shop (0009_a, 0009_b)"),
        "{ambiguous}"
    );
    assert!(ambiguous.contains("--migration NAME"), "{ambiguous}");
    let status = assert_success(
        &scratch
            .run(&["ctl", "--migration", "0009_b", "status"])
            .await,
    );
    assert!(
        status.starts_with("0009_b on db.test:5432/shop"),
        "{status}"
    );

    let found = zdm::control::discover(&scratch.dir()).await;
    let names: Vec<&str> = found
        .iter()
        .map(|run| run.info.migration.as_str())
        .collect();
    assert_eq!(names, ["0009_a", "0009_b"]);
}

/// A command aimed at one database never reaches another's run: two databases each run a
/// migration of the same name; `zdm ctl --database-url A pause` pauses A's only; without a
/// database zdm ctl refuses and names no run; a database with no run says so and names
/// nothing of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_and_attach_reach_only_the_runs_of_their_database() {
    let scratch = Scratch::new();
    let serve_on = |database: &str| {
        let info = RunInfo::new(
            "0001_same_name",
            Target {
                host: "db.test".to_string(),
                port: 5432,
                database: database.to_string(),
            },
        );
        let dir = scratch.dir();
        async move {
            let (server, commands) = Server::start_with(&dir, info, EventSender::default())
                .await
                .expect("start the control socket");
            let run = tokio::spawn(test_run(
                "0001_same_name".to_string(),
                commands,
                server.events(),
            ));
            (server, run)
        }
    };
    let (_a, _run_a) = serve_on("a").await;
    let (_b, _run_b) = serve_on("b").await;
    fn on<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["ctl", "--database-url", url];
        all.extend_from_slice(args);
        all
    }
    let (url_a, url_b, url_c) = (
        "postgres://db.test:5432/a",
        "postgres://db.test:5432/b",
        "postgres://db.test:5432/c",
    );
    let paused = assert_success(&scratch.run(&on(url_a, &["pause"])).await);
    assert!(paused.contains("paused"), "{paused}");
    let a = assert_success(&scratch.run(&on(url_a, &["--json", "status"])).await);
    let b = assert_success(&scratch.run(&on(url_b, &["--json", "status"])).await);
    let a: serde_json::Value = serde_json::from_str(a.trim()).expect("json");
    let b: serde_json::Value = serde_json::from_str(b.trim()).expect("json");
    assert_eq!(a["status"]["paused"], true, "{a}");
    assert_eq!(b["status"]["paused"], false, "B's run goes on: {b}");

    // No database given: refused, and no run is named (not even one of two).
    let mut bare = scratch.zdm(&["ctl", "pause"]);
    for name in common::DATABASE_ENV {
        bare.env_remove(name);
    }
    let bare = bare.output().await.expect("run zdm");
    assert!(!bare.status.success());
    let said = String::from_utf8_lossy(&bare.stderr);
    assert!(said.contains("which database?"), "{said}");
    assert!(!said.contains("0001_same_name"), "{said}");
    let b = assert_success(&scratch.run(&on(url_b, &["--json", "status"])).await);
    assert!(
        b.contains("\"paused\":false"),
        "the bare pause reached nothing: {b}"
    );

    // A database with no run: said, and nothing of the others is listed.
    let none = assert_failure(&scratch.run(&on(url_c, &["status"])).await);
    assert!(
        none.contains("no running migration on db.test:5432/c"),
        "{none}"
    );
    assert!(
        !none.contains("0001_same_name") && !none.contains("db.test:5432/a"),
        "{none}"
    );
    let attach = scratch
        .zdm(&["attach", "--database-url", "postgres://db.test:5432/c"])
        .output()
        .await
        .expect("run zdm");
    assert!(!attach.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_ctl_command_and_attach() {
    let scratch = Scratch::new();
    let help = assert_success(&scratch.run(&["ctl", "--help"]).await);
    for command in [
        "status",
        "pause",
        "resume",
        "set",
        "get",
        "throttle",
        "no-throttle",
        "abort",
        "--migration",
        "--json",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let help = assert_success(&scratch.run(&["--help"]).await);
    assert!(help.contains("ctl") && help.contains("attach"), "{help}");
}
