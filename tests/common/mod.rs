//! Shared test harness: real local PostgreSQL servers (never mocks) and the zdm binary.
#![allow(dead_code)] // each test binary uses only part of the harness

pub mod console_fixture;
pub mod demo_process;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::mpsc::UnboundedReceiver;
use zdm::localpg::{LocalPg, Options};
use zdm::protocol::Event;

/// A primary of its own for one test (a second or less: the initdb template is reused).
pub fn primary() -> LocalPg {
    LocalPg::start(&Options::default()).expect("start a local PostgreSQL")
}

/// A primary with a streaming replica, for tests where lag matters.
pub async fn primary_and_replica() -> LocalPg {
    let pg = tokio::task::spawn_blocking(|| {
        LocalPg::start(&Options {
            replica: true,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("start a local primary and replica");
    pg.wait_for_replica(Duration::from_secs(30))
        .await
        .expect("replica streams");
    pg
}

/// A pool on a fresh, empty database `name` of the primary.
pub async fn database(pg: &LocalPg, name: &str) -> PgPool {
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {}", zdm::db::quote_ident(name)))
        .execute(&mut admin)
        .await
        .expect("create database");
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("connect to the test database")
}

/// Every variable through which zdm may find a database (its own, and libpq's as `psql`
/// reads them): a test expecting "no database" removes them all, not only DATABASE_URL,
/// so that a machine with PGHOST or PGSERVICE set does not reach one.
pub const DATABASE_ENV: [&str; 18] = [
    "DATABASE_URL",
    "ZDM_CONFIG",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
];

/// The zdm binary built for these tests.
pub fn zdm_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zdm"))
}

/// The `[throttle]` table of a test's `zdm.toml` with the inputs a busy test machine trips
/// turned off (the host's CPU, the canary's latency, active sessions against their
/// baseline: five engineers' builds share two cores), so a backfill is held only by what
/// the test itself sets. Keys written after it belong to `[throttle]` until the next table.
pub const THROTTLE_OFF: &str = "[throttle]\nmax_host_cpu_percent = \"none\"\n\
                                max_canary_slowdown = \"none\"\n\
                                max_active_sessions_factor = \"none\"\n";

/// The zdm binary on `url` with `dir` as its migrations directory and [`THROTTLE_OFF`] as
/// its config (written to the cluster's directory), its log in the cluster's directory
/// and no `DATABASE_URL` from the environment; `args` first. The caller adds its own
/// stdio and runs it.
pub fn zdm_command(pg: &LocalPg, url: &str, dir: &Path, args: &[&str]) -> Command {
    let config = pg.root().join("zdm-test.toml");
    std::fs::write(&config, THROTTLE_OFF).expect("write the test config");
    let mut command = Command::new(zdm_binary());
    command
        .args(args)
        .args(["--database-url", url, "--dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join("zdm-test.log"));
    command
}

/// [`zdm_command`] run to its end.
pub fn zdm(pg: &LocalPg, url: &str, dir: &Path, args: &[&str]) -> Output {
    zdm_command(pg, url, dir, args).output().expect("run zdm")
}

/// A command's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A run's events up to and including the first that matches `wanted`; panics with the
/// last ones seen when none does within `timeout` or the stream ends first (`what` says
/// what was awaited).
pub async fn until(
    events: &mut UnboundedReceiver<Event>,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                let done = wanted(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!(
                "the run ended before {what}; last events: {:#?}",
                tail(&seen)
            ),
            Err(_) => panic!(
                "no {what} within {timeout:?}; last events: {:#?}",
                tail(&seen)
            ),
        }
    }
}

/// The last few of `events`, for a failure's message.
pub fn tail(events: &[Event]) -> &[Event] {
    &events[events.len().saturating_sub(8)..]
}

/// A run's broadcast of stamped events (`Served::subscribe`) as a channel of its events,
/// for [`until`].
pub fn events_of(
    mut published: tokio::sync::broadcast::Receiver<zdm::protocol::Stamped>,
) -> UnboundedReceiver<Event> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match published.recv().await {
                Ok(stamped) => {
                    if sender.send(stamped.event).is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    receiver
}

/// `pg_ctl ARGS` on the cluster's primary as its service user, waiting (`stop
/// --mode=fast`, `start`: a server that goes away and comes back on the same port).
pub fn pg_ctl(pg: &LocalPg, args: &[&str]) {
    let status = pg
        .service_user()
        .command(&pg.binaries().tool("pg_ctl"), pg.root())
        .args(args)
        .arg("--pgdata")
        .arg(pg.primary().data_dir())
        .arg("--log")
        .arg(pg.primary().log_file())
        .args(["--wait", "--silent"])
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

/// Civil time in Zurich (the zone the low-traffic window tests use) as an instant.
pub fn zurich(civil: &str) -> jiff::Timestamp {
    let dt: jiff::civil::DateTime = civil.parse().expect("datetime");
    let tz = jiff::tz::TimeZone::get("Europe/Zurich").expect("bundled zone");
    dt.to_zoned_datetime(tz).expect("zoned").timestamp()
}

/// Rows the running backfill step has checkpointed, over all its key ranges.
pub async fn rows_checkpointed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(rows_updated), 0)::bigint FROM zdm.backfill_ranges")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}
