//! The console end to end: the real binary in tmux against a real PostgreSQL holding the
//! demo's shop schema, read back with capture-pane as a person would see it. Migrations
//! run in runner processes the console starts detached; each test has a sandbox of its
//! own for their sockets and logs, and kills whatever zdm process is left in it.

mod common;
mod engine_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zdm::demo::{schema, Scale};
use zdm::localpg::LocalPg;
use zdm::plan::{LockLevel, Phase};

use common::tmux::Tmux;

/// A primary holding a small shop database; its URL.
async fn shop() -> (LocalPg, String) {
    shop_of(0.001).await
}

/// A primary holding a shop database of `scale`; its URL.
async fn shop_of(scale: f64) -> (LocalPg, String) {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let pool = common::database(&pg, "shop").await;
    schema::load(&pool, Scale::from_factor(scale), |_| {})
        .await
        .expect("load the shop schema");
    pool.close().await;
    let url = pg.primary().url("shop");
    (pg, url)
}

/// The runtime and state directories of one test's zdm processes: the console, the
/// runners it starts (their control sockets and logs), `zdm attach` and `zdm ctl`. Runs of
/// one test are invisible to the others. Dropping it kills every zdm process still
/// running with it (a failed test leaves no runner behind).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        // Short: a control socket's path must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("zdm-e2e")
            .tempdir_in("/tmp")
            .expect("a sandbox directory");
        Sandbox { dir }
    }

    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The environment assignments for a shell command line.
    fn env(&self) -> String {
        format!(
            "XDG_RUNTIME_DIR='{}' XDG_STATE_HOME='{}'",
            self.runtime_dir().display(),
            self.state_dir().display()
        )
    }

    /// The zdm binary with this sandbox's environment.
    fn zdm(&self) -> std::process::Command {
        let mut command = std::process::Command::new(common::zdm_binary());
        command
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_STATE_HOME", self.state_dir());
        command
    }

    /// The runs whose control sockets answer, as `zdm ctl` finds them.
    async fn runs(&self) -> Vec<zdm::control::Running> {
        zdm::control::discover(&self.runtime_dir().join("zdm")).await
    }

    /// The one run there is, waiting for it to serve its socket.
    async fn the_run(&self) -> zdm::control::Running {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut runs = self.runs().await;
            if runs.len() == 1 {
                return runs.remove(0);
            }
            assert!(Instant::now() < deadline, "one run serving: {runs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every zdm process started with this sandbox's environment.
    fn processes(&self) -> Vec<i32> {
        let needle = format!("XDG_RUNTIME_DIR={}", self.runtime_dir().display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() != "zdm" {
                continue;
            }
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if environ
                .split(|byte| *byte == 0)
                .any(|variable| variable == needle.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Whether process `pid` exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(state) if state != "Z" && state != "X")
}

/// Waits until process `pid` has exited.
async fn wait_for_exit(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `zdm console` on `url` with the sample migrations, then (after it exits) its exit code
/// and the terminal's mode, so a test can see the terminal was restored.
fn console_command(sandbox: &Sandbox, url: &str, log: &Path) -> String {
    console_command_in(
        sandbox,
        url,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations")),
        log,
    )
}

/// [`console_command`] with another migrations directory.
fn console_command_in(sandbox: &Sandbox, url: &str, dir: &Path, log: &Path) -> String {
    let dir = dir.display();
    // The test's own config file (beside its log; empty unless the test wrote one): a
    // zdm.toml in the working directory must not change the test.
    let config = log.with_extension("toml");
    if !config.exists() {
        std::fs::write(&config, "").expect("write the config file");
    }
    // The gates' observation window is a production safeguard (60 s by default); these
    // tests judge the gates on what is visible at once.
    let mut text = std::fs::read_to_string(&config).expect("read the config file");
    if !text.contains("[gates]") {
        text.push_str("\n[gates]\nwindow_s = 0\n");
    }
    // Runs are throttled like in production, except by this machine's CPU and the
    // canary's latency: a busy test host would hold every backfill back.
    if !text.contains("[throttle]") {
        text.push_str(
            "\n[throttle]\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n",
        );
    }
    std::fs::write(&config, text).expect("write the config file");
    let config = config.display();
    format!(
        "{} {} console --config '{config}' --database-url '{url}' --dir '{dir}' --log-file '{}'; \
         echo \"zdm exited with $?\"; stty -a; sleep 600",
        sandbox.env(),
        common::zdm_binary().display(),
        log.display()
    )
}

fn log_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zdm-console-e2e-{}-{name}.log", std::process::id()))
}

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_opens_lists_the_migrations_and_quits_restoring_the_terminal() {
    let (_pg, url) = shop().await;
    let sandbox = Sandbox::new();
    let tmux = Tmux::start(&console_command(&sandbox, &url, &log_file("open")), 100, 30);

    let screen = tmux.wait_for("the migrations, connected", PATIENCE, |s| {
        s.contains("0001_orders_add_status") && s.contains("connected")
    });
    assert!(screen.contains("[pending]"), "{screen}");
    assert!(
        screen.contains("0013_shipments_drop_carrier_fk"),
        "{screen}"
    );
    // Planning the selected migration finishes in the background: the pane stops saying so.
    tmux.wait_for("the plan pane's answer", PATIENCE, |s| {
        !s.contains("planning 0001")
    });
    // The password never shows; the target does.
    assert!(screen.contains("/shop"), "{screen}");
    let health = tmux.wait_for("a health sample", PATIENCE, |s| {
        s.contains("Tab") && !s.contains("connecting")
    });
    assert!(!health.contains("database not responding"), "{health}");

    // Tab to the Health pane: on 100x30 it replaces the plan beside the list.
    tmux.keys(&["Tab", "Tab", "Tab"]);
    let screen = tmux.wait_for_text("canary", PATIENCE);
    assert!(screen.contains("Health"), "{screen}");
    assert!(screen.contains("lock waiters"), "{screen}");

    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the exit and the terminal's modes", PATIENCE, |s| {
        s.contains("zdm exited with 0") && s.contains("icanon") && s.contains("echoe")
    });
    let modes: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "the terminal is back in cooked mode with echo: {screen}"
    );
    assert!(
        !screen.contains("0001_orders_add_status"),
        "the alternate screen was left: {screen}"
    );
}

/// With the database unreachable (a closed port on 127.0.0.1), the list says so and names
/// the migration files it found, never "No migration files found".
#[test]
fn an_unreachable_database_is_said_with_the_files_found() {
    let sandbox = Sandbox::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{closed}/shop?connect_timeout=2");
    let tmux = Tmux::start(
        &console_command(&sandbox, &url, &log_file("unreachable")),
        100,
        30,
    );
    let screen = tmux.wait_for("the unreachable database and the files", PATIENCE, |s| {
        s.contains("The database is unreachable") && s.contains("0001_orders_add_status")
    });
    assert!(!screen.contains("No migration files found"), "{screen}");
    assert!(screen.contains("database error"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
}

/// The postmaster and every process it started.
fn server_processes(postmaster: i32) -> Vec<Pid> {
    let mut pids = vec![Pid::from_raw(postmaster)];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if parent == Some(postmaster) {
            pids.push(Pid::from_raw(pid));
        }
    }
    pids
}

/// A server stopped with SIGSTOP; SIGCONT when dropped, even when the test fails.
struct Frozen(Vec<Pid>);

impl Frozen {
    fn freeze(postmaster: i32) -> Self {
        let pids = server_processes(postmaster);
        for pid in &pids {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(*pid, Signal::SIGCONT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_is_reported_while_the_console_keeps_answering_keys() {
    let (pg, url) = shop().await;
    let sandbox = Sandbox::new();
    let tmux = Tmux::start(
        &console_command(&sandbox, &url, &log_file("stall")),
        100,
        30,
    );
    tmux.wait_for("connected", PATIENCE, |s| {
        s.contains("connected") && s.contains("0001_orders_add_status")
    });

    let frozen = Frozen::freeze(pg.primary().pid().expect("postmaster pid"));
    tmux.wait_for_text("database not responding for", PATIENCE);

    // The database still hangs; the console answers: help opens over the stalled screen.
    tmux.keys(&["?"]);
    let screen = tmux.wait_for_text("Keys (? or Esc closes)", PATIENCE);
    assert!(
        screen.contains("database not responding for"),
        "the stall is still reported while help is open: {screen}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("help closed", PATIENCE, |s| !s.contains("Keys (? or Esc"));
    // The seconds keep counting while it hangs.
    let first = not_responding_seconds(&tmux.screen());
    let later = tmux.wait_for("the stall's duration to grow", PATIENCE, |s| {
        not_responding_seconds(s) > first
    });
    assert!(later.contains("database not responding for"), "{later}");

    drop(frozen);
    tmux.wait_for("recovery", Duration::from_secs(60), |s| {
        s.contains("connected") && !s.contains("not responding")
    });
    tmux.keys(&["l"]);
    let screen = tmux.wait_for_text("the database answers again", PATIENCE);
    assert!(screen.contains("not responding (no answer for"), "{screen}");

    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
}

/// The whole seconds in "database not responding for 12.0 s", or 0.
fn not_responding_seconds(screen: &str) -> u64 {
    screen
        .split("database not responding for ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|digits| digits.trim().parse().ok())
        .unwrap_or(0)
}

/// The pid of the process whose parent is `parent`, named `name`.
fn child_named(parent: i32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent && comm == name).then_some(pid)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_restores_the_terminal_even_while_the_database_hangs() {
    let (pg, url) = shop().await;
    let sandbox = Sandbox::new();
    let tmux = Tmux::start(&console_command(&sandbox, &url, &log_file("hup")), 100, 30);
    tmux.wait_for("connected", PATIENCE, |s| {
        s.contains("connected") && s.contains("0001_orders_add_status")
    });
    let shell = tmux.pane_pid();
    let zdm = child_named(shell, "zdm").expect("the zdm process under the pane's shell");

    let _frozen = Frozen::freeze(pg.primary().pid().expect("postmaster pid"));
    tmux.wait_for_text("database not responding for", PATIENCE);
    // An SSH drop sends SIGHUP: the console must give the terminal back and exit.
    kill(Pid::from_raw(zdm), Signal::SIGHUP).expect("signal zdm");
    let screen = tmux.wait_for("the exit and the terminal's modes", PATIENCE, |s| {
        s.contains("zdm exited with 0") && s.contains("icanon") && s.contains("echoe")
    });
    let modes: Vec<&str> = screen.split_whitespace().collect();
    assert!(modes.contains(&"icanon"), "cooked mode again: {screen}");
    assert!(
        !screen.contains("Migrations"),
        "alternate screen left: {screen}"
    );
}

/// Column `zdm_e2e_status` of orders: added, backfilled, made NOT NULL at contract.
fn status_column_plan(name: &str) -> zdm::plan::Plan {
    use engine_support::{backfill, plan, sql};
    plan(
        name,
        vec![
            sql(
                Phase::Expand,
                "add orders.zdm_e2e_status",
                "ALTER TABLE public.orders ADD COLUMN IF NOT EXISTS zdm_e2e_status text",
                LockLevel::AccessExclusive,
                "public.orders",
            ),
            backfill(
                "public.orders",
                &["id"],
                &[("zdm_e2e_status", "'new'")],
                Some("zdm_e2e_status IS NULL"),
            ),
            sql(
                Phase::Contract,
                "orders.zdm_e2e_status NOT NULL",
                "ALTER TABLE public.orders ALTER COLUMN zdm_e2e_status SET NOT NULL",
                LockLevel::AccessExclusive,
                "public.orders",
            ),
            sql(
                Phase::Rollback,
                "drop orders.zdm_e2e_status",
                "ALTER TABLE public.orders DROP COLUMN IF EXISTS zdm_e2e_status",
                LockLevel::AccessExclusive,
                "public.orders",
            ),
        ],
    )
}

/// A scratch table, dropped by rollback.
fn scratch_table_plan(name: &str) -> zdm::plan::Plan {
    use engine_support::{plan, sql};
    plan(
        name,
        vec![
            sql(
                Phase::Expand,
                "create zdm_e2e_scratch",
                "CREATE TABLE IF NOT EXISTS public.zdm_e2e_scratch (id int)",
                LockLevel::AccessExclusive,
                "public.orders",
            ),
            sql(
                Phase::Rollback,
                "drop zdm_e2e_scratch",
                "DROP TABLE IF EXISTS public.zdm_e2e_scratch",
                LockLevel::AccessExclusive,
                "public.orders",
            ),
        ],
    )
}

/// What the contract dialog asks once the gates have judged and the run waits.
const CONFIRM_PROMPT: &str = "Type the migration's name to confirm";

/// Everything the runner processes under `state` wrote to their logs.
fn runner_logs(state: &Path) -> String {
    let mut text = String::new();
    let mut dirs = vec![state.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

/// Types the migration's name in the contract dialog; when a gate on `gates_screen` did not
/// pass, the dialog asks for `override` as well.
fn confirm_contract(tmux: &Tmux, name: &str, gates_screen: &str) {
    tmux.type_text(name);
    tmux.keys(&["Enter"]);
    if gates_screen.contains("FAIL") || gates_screen.contains("UNKNOWN") {
        tmux.wait_for_text("Type override", PATIENCE);
        tmux.type_text("override");
        tmux.keys(&["Enter"]);
    }
}

async fn scalar_bool(pg: &LocalPg, sql: &str) -> bool {
    let mut conn = pg.primary().connect("shop").await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect(sql)
}

/// Contract by typing the name (and `override` when a gate did not pass), then roll back
/// another migration with `y`; a recorded checksum that differs from the file is flagged.
/// The migrations are started with hand-made plans through the engine; the console then
/// reads their recorded state and runs contract and rollback itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_by_typed_name_and_rollback_with_confirmation() {
    let (pg, url) = shop().await;
    let sandbox = Sandbox::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    for file in [
        "0001_orders_add_status.toml",
        "0002_customers_phone_not_null.toml",
    ] {
        std::fs::copy(samples.join(file), dir.path().join(file)).expect("copy");
    }
    let files = zdm::migration::load_dir(dir.path()).expect("valid files");
    let first = &files[0];
    let mut engine = engine_support::engine(&pg, "shop", engine_support::quick_options()).await;
    engine
        .start(&status_column_plan(&first.name), &first.checksum)
        .await
        .expect("start 0001");
    engine.close().await.expect("close");

    // A gates window long enough to watch its countdown.
    std::fs::write(
        log_file("contract").with_extension("toml"),
        "[gates]\nwindow_s = 4\n",
    )
    .expect("config");
    let tmux = Tmux::start(
        &console_command_in(&sandbox, &url, dir.path(), &log_file("contract")),
        100,
        30,
    );
    tmux.wait_for_text("[ready to contract]", PATIENCE);
    // A later migration's plan is shown as `zdm plan` shows it, with why `s` cannot start
    // it yet.
    tmux.keys(&["j"]);
    let screen = tmux.wait_for_text("cannot start now", PATIENCE);
    assert!(screen.contains("EXPAND"), "the plan is shown: {screen}");
    tmux.keys(&["k"]);

    tmux.keys(&["c"]);
    // The run that will contract counts its gates' window down, visibly, in the dialog.
    let countdown = tmux.wait_for_text("s left of 4 s", PATIENCE);
    assert!(
        countdown.contains("watching the database over the window"),
        "the watching gates are listed while they watch: {countdown}"
    );
    let screen = tmux.wait_for_text(CONFIRM_PROMPT, PATIENCE);
    assert!(
        screen.contains("PASS") && screen.contains("backfill"),
        "the gates are listed: {screen}"
    );
    tmux.type_text("0001_orders_add_stat");
    tmux.keys(&["Enter"]);
    tmux.wait_for_text("the name does not match", PATIENCE);
    confirm_contract(&tmux, "0001_orders_add_status", &screen);
    tmux.wait_for_text("[complete]", PATIENCE);
    // One window: the run that contracted evaluated the gates once, before the name was
    // typed, and contracted on the confirmation without a second window.
    let evaluations = runner_logs(&sandbox.state_dir())
        .matches("contract gates of 0001_orders_add_status (observed for")
        .count();
    assert_eq!(
        evaluations, 1,
        "the gates were evaluated {evaluations} times"
    );
    assert!(
        scalar_bool(
            &pg,
            "SELECT attnotnull FROM pg_attribute \
              WHERE attrelid = 'public.orders'::regclass AND attname = 'zdm_e2e_status'"
        )
        .await,
        "contract ran: the column is NOT NULL"
    );

    // A second migration starts elsewhere with a checksum that is not its file's.
    let second = &files[1];
    let mut engine = engine_support::engine(&pg, "shop", engine_support::quick_options()).await;
    engine
        .start(&scratch_table_plan(&second.name), "not-the-file-checksum")
        .await
        .expect("start 0002");
    engine.close().await.expect("close");
    tmux.wait_for_text("CHANGED", PATIENCE);

    tmux.keys(&["j", "r"]);
    tmux.wait_for_text("Roll back 0002_customers_phone_not_null?", PATIENCE);
    tmux.keys(&["y"]);
    let screen = tmux.wait_for_text("[rolled back]", PATIENCE);
    // A rollback this short may end before the console attaches to its runner: it is
    // judged by how it ended (its runner's exit status), never reported as failed.
    assert!(!screen.contains("failed"), "{screen}");
    let written = std::fs::read_to_string(log_file("contract")).expect("zdm's log file");
    assert!(
        !written.contains("rollback of 0002_customers_phone_not_null failed")
            && !written.contains("before it served its control socket"),
        "{written}"
    );
    assert!(
        written.contains("rollback: 0002_customers_phone_not_null")
            || written.contains("rollback of 0002_customers_phone_not_null finished before"),
        "the rollback's success is in the log:\n{written}"
    );
    assert!(
        !scalar_bool(
            &pg,
            "SELECT to_regclass('public.zdm_e2e_scratch') IS NOT NULL"
        )
        .await,
        "rollback ran: the scratch table is gone"
    );
    let screen = tmux.screen();
    assert!(
        !screen.contains("CHANGED"),
        "a rolled-back migration may change: {screen}"
    );
    // A rolled-back migration starts over from the console, as `zdm start` starts it.
    tmux.keys(&["s"]);
    tmux.wait_for_text("start over of 0002_customers_phone_not_null", PATIENCE);
    tmux.wait_for("0002 started over", Duration::from_secs(60), |s| {
        s.contains("[ready to contract]") && !s.contains("[rolled back]")
    });

    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
}

/// A migration stopped mid-backfill (its run killed) shows as stopped; `s` resumes it with
/// the plan recorded at its start, and the Backfill pane follows it to 100 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backfill_is_resumed_and_followed_to_100_percent() {
    let (pg, url) = shop_of(0.05).await;
    let sandbox = Sandbox::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = "0001_orders_add_status.toml";
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    std::fs::copy(samples.join(file), dir.path().join(file)).expect("copy");
    // Small batches, so the backfill of 50,000 orders takes hundreds of them.
    let log = log_file("resume");
    std::fs::write(
        log.with_extension("toml"),
        "[backfill]\nfixed_batch_rows = 100\n",
    )
    .expect("config");
    let files = zdm::migration::load_dir(dir.path()).expect("valid file");
    let migration = files[0].clone();

    // Start it and kill the run after its first committed batch.
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut options = engine_support::quick_options();
    options.batch_size = Some(100);
    let mut engine = engine_support::engine(&pg, "shop", options).await;
    engine.set_events(zdm::engine::Events::to(sender));
    let plan = status_column_plan(&migration.name);
    let run = tokio::spawn(async move {
        let _ = engine.start(&plan, &migration.checksum).await;
    });
    loop {
        match events.recv().await.expect("events until the first batch") {
            zdm::engine::Event::BatchDone(_) => break,
            _ => continue,
        }
    }
    run.abort();
    let _ = run.await;

    let tmux = Tmux::start(
        &console_command_in(&sandbox, &url, dir.path(), &log),
        100,
        30,
    );
    let screen = tmux.wait_for_text("[stopped: ", PATIENCE);
    assert!(screen.contains("[stopped: backfilling]"), "{screen}");
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for_text("No backfill running.", PATIENCE);
    tmux.keys(&["s"]);
    let screen = tmux.wait_for_text("rows", PATIENCE);
    assert!(
        screen.contains("table  \"public\".\"orders\"") || screen.contains("public.orders"),
        "{screen}"
    );
    let done = tmux.wait_for("the backfill at 100 %", Duration::from_secs(120), |s| {
        s.contains("100.0%") && s.contains("[ready to contract]")
    });
    assert!(done.contains("50,000 (all of them)"), "{done}");
    assert!(done.contains("state  finished"), "{done}");
    assert!(!done.contains("[stopped: "), "{done}");
    tmux.keys(&["l"]);
    tmux.wait_for_text("start: 0001_orders_add_status: ready to contract", PATIENCE);
    assert!(
        !scalar_bool(
            &pg,
            "SELECT EXISTS (SELECT 1 FROM public.orders WHERE zdm_e2e_status IS NULL)"
        )
        .await,
        "every row was backfilled"
    );
    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
    let written = std::fs::read_to_string(&log).expect("zdm's log file");
    assert!(
        written.contains("finished: 50,000 rows updated"),
        "the resumed backfill counts the rows of both runs: {written}"
    );
}

/// `zdm demo` opens the console on its own servers, which stop when the console quits.
#[test]
fn the_demo_opens_the_console_and_stops_its_servers_when_it_quits() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations");
    let command = format!(
        "{} demo --scale 0.001 --no-replica --workload-sessions 1 --dir '{dir}' \
         --log-file '{}'; echo \"zdm exited with $?\"; sleep 600",
        common::zdm_binary().display(),
        log_file("demo").display()
    );
    let tmux = Tmux::start(&command, 100, 30);
    let screen = tmux.wait_for("the console on the demo", Duration::from_secs(120), |s| {
        s.contains("0001_orders_add_status") && s.contains("connected") && s.contains("/shop")
    });
    assert!(screen.contains("[pending]"), "{screen}");
    // The simulated application's commits show in the health pane.
    tmux.keys(&["Tab", "Tab", "Tab"]);
    tmux.wait_for_text("TPS", PATIENCE);

    tmux.keys(&["q"]);
    let screen = tmux.wait_for_text("zdm exited with 0", Duration::from_secs(60));
    let root = screen
        .split("Stopped; ")
        .nth(1)
        .and_then(|rest| rest.split(" was removed").next())
        .unwrap_or_else(|| panic!("the demo says what it removed: {screen}"));
    assert!(
        !Path::new(root.trim()).exists(),
        "{root} is gone after the demo stopped"
    );
}

/// In `zdm demo`, whose servers stop with the console, quitting while a migration runs
/// offers to stop it instead of detaching: `s` aborts it after its current batch and the
/// console quits once its runner has ended, and suggests nothing the removed servers
/// could not do.
#[test]
fn the_demo_stops_a_running_migration_before_it_quits() {
    let sandbox = Sandbox::new();
    // The demo reads ./zdm.toml: a capped rate keeps the backfill going while we look.
    let cwd = tempfile::tempdir().expect("a working directory");
    std::fs::write(
        cwd.path().join("zdm.toml"),
        format!("{SLOW_BACKFILL}\n[throttle]\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n"),
    )
    .expect("zdm.toml");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations");
    let command = format!(
        "cd '{}' && {} {} demo --scale {BIG} --no-replica --workload-sessions 1 --dir '{dir}' \
         --log-file '{}'; echo \"zdm exited with $?\"; sleep 600",
        cwd.path().display(),
        sandbox.env(),
        common::zdm_binary().display(),
        log_file("demo-stop").display()
    );
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("the console on the demo", Duration::from_secs(180), |s| {
        s.contains("0001_orders_add_status") && s.contains("connected") && s.contains("EXPAND")
    });
    start_0001(&tmux);

    tmux.keys(&["q"]);
    let screen = tmux.wait_for_text("cannot go on", PATIENCE);
    assert!(
        screen.contains("s stop it after its current batch"),
        "{screen}"
    );
    assert!(!screen.contains("detach"), "{screen}");
    tmux.keys(&["s"]);
    let screen = tmux.wait_for_text("zdm exited with 0", Duration::from_secs(90));
    assert!(
        screen.contains("0001_orders_add_status stopped after its last committed batch"),
        "{screen}"
    );
    assert!(
        !screen.contains("zdm start"),
        "nothing left to resume: {screen}"
    );
    assert!(screen.contains("was removed"), "the demo stopped: {screen}");
    assert!(
        sandbox.processes().is_empty(),
        "no zdm process is left: {:?}",
        sandbox.processes()
    );
}

/// A sample migration from start to finish through the console: planned from its file,
/// started with `s` (expand, then the backfill followed to 100 %), contracted by typing its
/// name (and `override` for the gates this build cannot evaluate yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_migration_is_started_backfilled_and_contracted_from_the_console() {
    let (pg, url) = shop_of(0.02).await;
    let sandbox = Sandbox::new();
    let log = log_file("sample");
    std::fs::write(
        log.with_extension("toml"),
        "[backfill]\nfixed_batch_rows = 500\n",
    )
    .expect("config");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let tmux = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);

    // The plan of the selected (first) migration, from the planner.
    let screen = tmux.wait_for("the plan of 0001", PATIENCE, |s| {
        s.contains("EXPAND") && s.contains("0001_orders_add_status")
    });
    assert!(screen.contains("new version:"), "{screen}");
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for_text("No backfill running.", PATIENCE);
    tmux.keys(&["s"]);
    tmux.wait_for_text("start of 0001_orders_add_status requested", PATIENCE);
    let done = tmux.wait_for("the backfill at 100 %", Duration::from_secs(120), |s| {
        s.contains("100.0%") && s.contains("[ready to contract]")
    });
    assert!(done.contains("state  finished"), "{done}");
    assert!(done.contains("orders"), "{done}");

    tmux.keys(&["c"]);
    let gates = tmux.wait_for_text(CONFIRM_PROMPT, PATIENCE);
    confirm_contract(&tmux, "0001_orders_add_status", &gates);
    tmux.wait_for_text("[complete]", Duration::from_secs(60));
    assert!(
        scalar_bool(
            &pg,
            "SELECT attnotnull FROM pg_attribute \
              WHERE attrelid = 'public.orders'::regclass AND attname = 'status' \
                AND NOT attisdropped"
        )
        .await,
        "orders.status is in place and NOT NULL after contract"
    );
    assert!(
        !scalar_bool(
            &pg,
            "SELECT EXISTS (SELECT 1 FROM public.orders \
              WHERE status <> CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END)"
        )
        .await,
        "every existing order got its status from shipped_at"
    );
    tmux.keys(&["l"]);
    tmux.wait_for_text("contract: 0001_orders_add_status: complete", PATIENCE);
    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
    let written = std::fs::read_to_string(&log).expect("zdm's log file");
    assert!(
        written.contains("contract: 0001_orders_add_status: complete"),
        "the contract is in zdm's log: {written}"
    );
    assert_eq!(
        written.matches("finished: 20,000 rows updated").count(),
        1,
        "the one backfill step updated all 20,000 orders and is reported once: {written}"
    );
}

/// Orders the backfill of 0001_orders_add_status has filled so far.
async fn backfilled(pg: &LocalPg) -> i64 {
    let mut conn = pg.primary().connect("shop").await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM public.orders WHERE status IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .expect("count the backfilled orders")
}

/// Waits until the backfill has filled more than `than` orders; the count.
async fn backfill_moves_past(pg: &LocalPg, than: i64) -> i64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = backfilled(pg).await;
        if now > than {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill stays at {now} rows"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that the backfill does not move for two seconds; the count.
async fn backfill_holds(pg: &LocalPg) -> i64 {
    let before = backfilled(pg).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = backfilled(pg).await;
    assert_eq!(before, after, "a paused backfill updated rows");
    after
}

async fn recorded_status(pg: &LocalPg, name: &str) -> String {
    let mut conn = pg.primary().connect("shop").await.expect("connect");
    sqlx::query_scalar("SELECT status FROM zdm.migrations WHERE name = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("recorded")
}

/// The Backfill pane's bar and percentage (`█████░░░░░  12.3%`), if on screen.
fn gauge(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|line| line.contains('%') && (line.contains('░') || line.contains("█ ")))
        .map(|line| line.trim().to_string())
}

const BIG: f64 = 0.05; // 50,000 orders
/// Small batches at a capped rate: 50,000 orders take hundreds of batches and some 25
/// seconds, time to pause, hang up, attach and look.
const SLOW_BACKFILL: &str =
    "[backfill]\nstart_batch_rows = 20\nmax_batch_rows = 200\nmax_rows_per_second = 2000\n";

/// The console starts 0001 and shows its backfill running (focus on the Backfill pane).
fn start_0001(tmux: &Tmux) {
    tmux.wait_for("the plan of 0001", PATIENCE, |s| s.contains("EXPAND"));
    tmux.keys(&["Tab", "Tab", "s"]);
    tmux.wait_for("backfill batches", PATIENCE, |s| s.contains("rows/s now"));
}

/// `p` pauses the backfill in its runner (no row changes while paused), `p` again resumes
/// it; `+` / `-` change its batch time target and `t` throttles it by hand; it goes on to
/// 100 % and is contracted by typing the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_the_console_hold_and_release_the_backfill() {
    let (pg, url) = shop_of(BIG).await;
    let sandbox = Sandbox::new();
    let log = log_file("pause");
    std::fs::write(log.with_extension("toml"), SLOW_BACKFILL).expect("config");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let tmux = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);
    start_0001(&tmux);
    let run = sandbox.the_run().await;
    assert_eq!(run.info.migration, "0001_orders_add_status");
    backfill_moves_past(&pg, 0).await;

    tmux.keys(&["p"]);
    tmux.wait_for("the pause", PATIENCE, |s| {
        s.contains("state  PAUSED") && s.contains("[paused]")
    });
    // The run's answer replaces the key's own feedback.
    tmux.wait_for("the run's answer", PATIENCE, |s| {
        !s.contains("pause of 0001_orders_add_status requested")
    });
    let held = backfill_holds(&pg).await;
    assert!(held < 50_000, "paused before the end: {held}");

    tmux.keys(&["p"]);
    tmux.wait_for("the resume", PATIENCE, |s| {
        !s.contains("PAUSED") && s.contains("[backfilling]")
    });
    let moved = backfill_moves_past(&pg, held).await;

    // + / - scale the batch time target in the run (200 ms by default) by 1.5.
    tmux.keys(&["+"]);
    tmux.wait_for_text("(target 300 ms)", PATIENCE);
    tmux.keys(&["-"]);
    tmux.wait_for_text("(target 200 ms)", PATIENCE);
    // t holds the backfill back by hand until t again.
    tmux.keys(&["t"]);
    tmux.wait_for("the manual throttle", PATIENCE, |s| {
        s.contains("state  THROTTLED") && s.contains("[throttled]")
    });
    let throttled = backfill_holds(&pg).await;
    assert!(throttled >= moved);
    tmux.keys(&["t"]);
    tmux.wait_for("the throttle released", PATIENCE, |s| {
        s.contains("state  running") && s.contains("[backfilling]")
    });
    backfill_moves_past(&pg, throttled).await;

    let done = tmux.wait_for("the backfill at 100 %", Duration::from_secs(180), |s| {
        s.contains("100.0%") && s.contains("[ready to contract]")
    });
    assert!(done.contains("state  finished"), "{done}");
    wait_for_exit(run.info.pid, PATIENCE).await;

    tmux.keys(&["c"]);
    let gates = tmux.wait_for_text(CONFIRM_PROMPT, PATIENCE);
    confirm_contract(&tmux, "0001_orders_add_status", &gates);
    tmux.wait_for_text("[complete]", Duration::from_secs(60));
    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
    assert!(sandbox.runs().await.is_empty(), "no run is left serving");
    assert_eq!(
        recorded_status(&pg, "0001_orders_add_status").await,
        "complete"
    );
    // The run's answers and events are in the console's log.
    let written = std::fs::read_to_string(&log).expect("zdm's log file");
    for words in [
        "0001_orders_add_status: paused: ",
        "0001_orders_add_status: resumed after",
        "setting changed: batch_target=300ms",
        "setting changed: batch_target=200ms",
        "throttle (0001_orders_add_status): ",
        "contract: 0001_orders_add_status: complete",
    ] {
        assert!(
            written.contains(words),
            "{words:?} is not in the log:\n{written}"
        );
    }
}

/// A duration as the console writes it (`850 ms`, `12.4 s`, `3m 05s`, `2h 07m`).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix(" ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(seconds) = text.strip_suffix(" s") {
        return seconds.parse().ok().map(Duration::from_secs_f64);
    }
    let (big, small) = text.split_once(' ')?;
    if let (Some(m), Some(s)) = (big.strip_suffix('m'), small.strip_suffix('s')) {
        return Some(Duration::from_secs(
            m.parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?,
        ));
    }
    let (h, m) = (big.strip_suffix('h')?, small.strip_suffix('m')?);
    Some(Duration::from_secs(
        h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60,
    ))
}

/// The ETA the Backfill pane shows, when it shows one.
fn eta(screen: &str) -> Option<Duration> {
    let line = screen.lines().find(|line| line.contains("ETA    "))?;
    let after = line.split("ETA    ").nth(1)?;
    let words: String = after
        .chars()
        .take_while(|c| *c != '│' && *c != '┃')
        .collect();
    parse_duration(&words)
}

/// At 80x24, with no key but `s`, the backfill (bar, rate, ETA, state) and the health
/// essentials (replica lag, lock waiters, CPU, canary) are on screen together. A pause
/// shows no ETA; after the resume the ETA is within 2x of the time the backfill really
/// takes to end (paused time counts for nothing in its rate). The backfill is made slow
/// and even by its rows/s ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_80x24_the_backfill_and_health_share_the_screen_and_the_eta_holds_after_a_pause() {
    let (pg, url) = shop_of(BIG).await;
    let sandbox = Sandbox::new();
    let log = log_file("eta");
    std::fs::write(
        log.with_extension("toml"),
        "[backfill]\nstart_batch_rows = 100\nmax_batch_rows = 200\nmax_rows_per_second = 2000\n",
    )
    .expect("config");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let tmux = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 80, 24);
    tmux.wait_for("the plan of 0001", PATIENCE, |s| s.contains("EXPAND"));
    tmux.keys(&["s"]);
    let screen = tmux.wait_for("the backfill beside the health", PATIENCE, |s| {
        s.contains("rows/s now")
            && s.contains('%')
            && s.contains("state  running")
            && ["replica lag", "lock waiters", "CPU", "canary"]
                .iter()
                .all(|words| s.contains(words))
    });
    assert!(gauge(&screen).is_some(), "the bar: {screen}");
    let run = sandbox.the_run().await;
    backfill_moves_past(&pg, 4_000).await;

    tmux.keys(&["p"]);
    let paused = tmux.wait_for("the pause", PATIENCE, |s| {
        s.contains("state  PAUSED") && s.contains("[paused]")
    });
    assert!(
        paused.contains("ETA    none while paused"),
        "a paused run has no ETA: {paused}"
    );
    let held = backfill_holds(&pg).await;
    // Paused long enough that an average counting it would be far off.
    tokio::time::sleep(Duration::from_secs(6)).await;
    tmux.keys(&["p"]);
    tmux.wait_for("the resume", PATIENCE, |s| {
        !s.contains("PAUSED") && s.contains("[backfilling]")
    });
    backfill_moves_past(&pg, held).await;
    // A few seconds of running for the recent rate, then the ETA against the real end.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let shown = tmux.wait_for("an ETA", PATIENCE, |s| eta(s).is_some());
    let read_at = Instant::now();
    let promised = eta(&shown).expect("an ETA");
    assert!(
        backfilled(&pg).await < 45_000,
        "time left to measure: {shown}"
    );
    let done = tmux.wait_for("the backfill at 100 %", Duration::from_secs(180), |s| {
        s.contains("100.0%") && s.contains("ETA    done")
    });
    let took = read_at.elapsed();
    assert!(
        promised <= took * 2 && took <= promised * 2,
        "ETA {promised:?} for a backfill that took {took:?} more:\n{shown}"
    );
    eprintln!("ETA {promised:?}, took {took:?}");
    assert!(
        done.contains("50,000 (all of them)"),
        "the exact total: {done}"
    );
    tmux.wait_for_text("[ready to contract]", PATIENCE);
    wait_for_exit(run.info.pid, PATIENCE).await;
    tmux.keys(&["q"]);
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
}

/// An SSH drop (SIGHUP) kills the console, never the run: the runner goes on, `zdm attach`
/// follows it, and a new console attaches to it; `d` detaches and says how to get back;
/// `zdm ctl abort` stops it after its batch, resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_killed_by_sighup_leaves_its_run_going_and_reattachable() {
    let (pg, url) = shop_of(BIG).await;
    let sandbox = Sandbox::new();
    let log = log_file("sighup-run");
    std::fs::write(log.with_extension("toml"), SLOW_BACKFILL).expect("config");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let tmux = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);
    start_0001(&tmux);
    let run = sandbox.the_run().await;
    let runner = run.info.pid;
    let console = child_named(tmux.pane_pid(), "zdm").expect("the console under the shell");
    assert_ne!(
        console, runner as i32,
        "the run is not the console's process"
    );

    kill(Pid::from_raw(console), Signal::SIGHUP).expect("hang up the console");
    tmux.wait_for_text("zdm exited with 0", PATIENCE);
    assert!(alive(runner), "the runner outlives the console");
    let before = backfilled(&pg).await;
    backfill_moves_past(&pg, before).await;

    // `zdm attach` (another front-end of the same socket) prints its events.
    let mut attach = sandbox
        .zdm()
        .args(["attach", "0001_orders_add_status"])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("zdm attach");
    let stdout = attach.stdout.take().expect("stdout");
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // Its progress line comes within the first few (the run's health line may come first).
    let mut first = Vec::new();
    while !first
        .last()
        .is_some_and(|line: &String| line.contains("rows"))
    {
        assert!(
            first.len() < 5,
            "a progress line among the first: {first:?}"
        );
        first.push(
            printed
                .recv_timeout(PATIENCE)
                .expect("zdm attach prints the run's events"),
        );
    }
    kill(Pid::from_raw(attach.id() as i32), Signal::SIGINT).expect("Ctrl-C zdm attach");
    let attached = attach.wait_with_output().expect("zdm attach ends");
    let said = String::from_utf8_lossy(&attached.stderr);
    assert!(
        said.contains("detached; 0001_orders_add_status goes on"),
        "{said}"
    );
    assert!(alive(runner), "detaching zdm attach leaves the run going");

    // A new console finds the run and follows it.
    let again = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);
    again.wait_for("the run attached", PATIENCE, |s| {
        s.contains("[backfilling]") && !s.contains("[stopped: ")
    });
    again.keys(&["Tab", "Tab"]);
    let first = again.wait_for("its progress", PATIENCE, |s| s.contains("rows/s now"));
    let first = gauge(&first).expect("the gauge");
    again.wait_for("the progress moving", PATIENCE, |s| {
        gauge(s).is_some_and(|now| now != first)
    });
    assert!(!again.screen().contains("[stopped: "));

    again.keys(&["q"]);
    again.wait_for_text("in its runner process.", PATIENCE);
    again.keys(&["d"]);
    let screen = again.wait_for_text("zdm exited with 0", PATIENCE);
    assert!(
        screen.contains("zdm attach 0001_orders_add_status"),
        "{screen}"
    );
    assert!(screen.contains("zdm ctl"), "{screen}");
    assert!(alive(runner), "detach leaves the run going");
    backfill_moves_past(&pg, backfilled(&pg).await).await;

    let aborted = sandbox
        .zdm()
        .args(["ctl", "abort"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("zdm ctl abort");
    assert!(aborted.status.success(), "{aborted:?}");
    wait_for_exit(runner, Duration::from_secs(60)).await;
    assert_eq!(
        recorded_status(&pg, "0001_orders_add_status").await,
        "backfilling",
        "aborted mid-backfill, resumable"
    );
    let left = backfill_holds(&pg).await;
    assert!(left < 50_000, "stopped before the end: {left}");
}

/// Quitting while a backfill runs asks first; `p` pauses it in its runner (it holds its
/// place) and quits; the next console follows it paused, and `p` there resumes it; a
/// runner killed with SIGKILL is reported as dead and its migration as STOPPED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_during_a_backfill_asks_then_pauses_it_in_its_runner() {
    let (pg, url) = shop_of(BIG).await;
    let sandbox = Sandbox::new();
    let log = log_file("quit");
    std::fs::write(log.with_extension("toml"), SLOW_BACKFILL).expect("config");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let tmux = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);
    start_0001(&tmux);
    let runner = sandbox.the_run().await.info.pid;

    tmux.keys(&["q"]);
    let screen = tmux.wait_for_text("in its runner process.", PATIENCE);
    assert!(screen.contains("pause it (it holds its place)"), "{screen}");
    tmux.keys(&["p"]);
    let screen = tmux.wait_for_text("zdm exited with 0", PATIENCE);
    assert!(screen.contains("is paused, holding its place"), "{screen}");
    assert!(screen.contains("zdm ctl resume"), "{screen}");
    assert!(alive(runner), "the paused run waits in its runner");
    let held = backfill_holds(&pg).await;
    assert!(held < 50_000, "paused before the end: {held}");
    assert_eq!(
        recorded_status(&pg, "0001_orders_add_status").await,
        "backfilling"
    );

    let again = Tmux::start(&console_command_in(&sandbox, &url, &samples, &log), 100, 30);
    let screen = again.wait_for_text("[paused]", PATIENCE);
    assert!(!screen.contains("[stopped: "), "it runs, paused: {screen}");
    again.keys(&["p"]);
    again.wait_for_text("[backfilling]", PATIENCE);
    backfill_moves_past(&pg, held).await;

    // A runner that dies (kill -9) is reported as such; the migration waits, stopped.
    kill(Pid::from_raw(runner as i32), Signal::SIGKILL).expect("kill the runner");
    wait_for_exit(runner, PATIENCE).await;
    let screen = again.wait_for("the death reported", PATIENCE, |s| {
        s.contains("the run of 0001_orders_add_status died") && s.contains("[stopped: ")
    });
    assert!(screen.contains("[stopped: backfilling]"), "{screen}");
    again.keys(&["l"]);
    again.wait_for_text("ERROR the runner of 0001_orders_add_status (pid", PATIENCE);
    again.keys(&["q"]);
    again.wait_for_text("zdm exited with 0", PATIENCE);
    let written = std::fs::read_to_string(&log).expect("zdm's log file");
    assert!(
        written.contains(&format!(
            "the runner of 0001_orders_add_status (pid {runner}) ended without finishing"
        )),
        "{written}"
    );
}
