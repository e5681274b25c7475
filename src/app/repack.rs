//! `zdm repack TABLE [--vacuum] [--json]`: gives a table rewritten by a backfill its size
//! back, online, with pg_repack (`engine::repack`), under the run's throttle (a monitor of
//! the target feeds it, as for a backfill) and the lock retry budget; Ctrl-C or SIGTERM
//! stops pg_repack cleanly. Without pg_repack it says what to install and, with
//! `--vacuum`, runs plain VACUUM instead. Its events are printed like a run's: lines or a
//! bar on stderr, JSON lines on stdout (`--json`, or when stdout is not a terminal).
//!
//! `zdm complete NAME --repack` runs the same after contract for every table the
//! migration's backfill rewrote ([`after_contract`]).

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{self, Config};
use crate::engine::event::Events;
use crate::engine::headless::{self, Output};
use crate::engine::repack::{self, Options, Preflight, Steering};
use crate::engine::table_size::{self, Comparison};
use crate::engine::throttle::Throttle;
use crate::engine::{identity, Error as EngineError};
use crate::monitor::Monitor;
use crate::protocol::{Event, Stamped};

/// Why `zdm repack` did not rebuild the table.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Repack(#[from] repack::Error),
}

/// What `zdm repack` was asked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub table: String,
    /// Plain VACUUM instead of pg_repack.
    pub vacuum: bool,
    /// The pg_repack client to run (else looked for: `engine::repack::client_candidates`).
    pub client: Option<PathBuf>,
    /// pg_repack's `--wait-timeout` (else zdm's lock retry budget).
    pub wait_timeout: Option<Duration>,
    /// JSON lines on stdout, whatever stdout is.
    pub json: bool,
    /// The migration whose contract asked for it (`zdm complete --repack`), for the audit
    /// trail; none for `zdm repack`.
    pub migration: Option<String>,
}

/// How long pg_repack may try for its brief locks: what zdm's DDL would spend in its
/// retries (each try's `lock_timeout` plus the longest backoff, per attempt), at least 1 s.
pub fn lock_budget(config: &Config) -> Duration {
    let per_try = config.lock_timeout + config.lock_retry_max;
    (per_try * config.lock_retry_attempts.max(1)).max(Duration::from_secs(1))
}

/// Runs `zdm repack` and returns the outcome line.
pub async fn run(config: &Config, request: &Request) -> Result<String, CommandError> {
    let mut output = Output::detect();
    output.json |= request.json;
    let (events, printer) = printing(output);
    let result = rebuild(config, request, &events).await;
    drop(events);
    let _ = printer.await;
    let comparison = result?;
    let text = format!(
        "{}\n",
        output.outcome(&comparison.describe(if request.vacuum {
            "after VACUUM"
        } else {
            "after pg_repack"
        }))
    );
    Ok(text)
}

/// Events to the terminal printer: the engine's channel, stamped and broadcast to it.
fn printing(output: Output) -> (Events, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (out, printed) = broadcast::channel::<Stamped>(1024);
    let printer = headless::print_events(output, printed);
    let forward = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let _ = out.send(Stamped::now(event));
        }
    });
    let done = tokio::spawn(async move {
        let _ = forward.await;
        let _ = printer.await;
    });
    (Events::to(tx), done)
}

async fn connect(config: &Config) -> Result<PgConnection, CommandError> {
    let url = config.database_url()?;
    identity::connect(url).await.map_err(|source| {
        CommandError::Engine(EngineError::Connect {
            url: url.to_string(),
            source,
        })
    })
}

/// The rebuild itself, its events to `events`.
async fn rebuild(
    config: &Config,
    request: &Request,
    events: &Events,
) -> Result<Comparison, CommandError> {
    let mut conn = connect(config).await?;
    let result = if request.vacuum {
        repack::vacuum(&mut conn, &request.table, config.lock_timeout, events)
            .await
            .map_err(CommandError::from)
    } else {
        with_pg_repack(config, request, &mut conn, events).await
    };
    if let Ok(comparison) = &result {
        if let Err(error) = table_size::record_rebuilt(&mut conn, comparison).await {
            tracing::warn!(%error, "the table's size after the rebuild was not recorded");
        }
    }
    // A rebuild rewrites the table on disk: the audit trail says who did it and how it
    // ended, like every other action (a stopped or failed one included).
    let how = if request.vacuum {
        "VACUUM"
    } else {
        "pg_repack"
    };
    let detail = match &result {
        Ok(comparison) => format!(
            "{how} of {}: {}",
            request.table,
            comparison.describe("after")
        ),
        Err(error) => format!("{how} of {} did not complete: {error}", request.table),
    };
    let entry = crate::audit::Entry {
        migration: request.migration.as_deref().unwrap_or(""),
        action: crate::audit::Action::Repack,
        detail: Some(detail),
        gates: None,
    };
    if let Err(error) = crate::audit::record(&mut conn, entry).await {
        tracing::warn!(%error, "the rebuild was not recorded in zdm.audit");
    }
    let _ = conn.close().await;
    result
}

async fn with_pg_repack(
    config: &Config,
    request: &Request,
    conn: &mut PgConnection,
    events: &Events,
) -> Result<Comparison, CommandError> {
    let pre = Preflight::read(conn, &request.table).await?;
    pre.check()?;
    let client = repack::find_client(request.client.as_deref(), &pre)?;
    let options = Options {
        client,
        wait_timeout: request.wait_timeout.unwrap_or_else(|| lock_budget(config)),
        every: Duration::from_secs(2),
    };
    let (mut throttle, monitor) = throttle_for(config, &pre.table);
    let (stop_tx, stop) = watch::channel(None::<String>);
    let signals = tokio::spawn(stop_on_signals(stop_tx));
    let mut steering = Steering {
        throttle: &mut throttle,
        stop,
    };
    let url = config.database_url()?;
    let result = repack::pg_repack(conn, url, &pre, &options, &mut steering, events).await;
    signals.abort();
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    Ok(result?)
}

/// A throttle fed by a monitor of the target (as a backfill's), watching `table`'s lock
/// waiters; without a monitor it holds, saying why.
fn throttle_for(config: &Config, table: &str) -> (Throttle, Option<Monitor>) {
    let settings = config.backfill.throttle.clone();
    let mut options = match config.monitor_options() {
        Ok(options) => options,
        Err(error) => {
            let why = format!("the monitor could not start: {error}");
            return (Throttle::without_monitor(settings, why), None);
        }
    };
    options.target_tables = vec![table.to_string()];
    let local = crate::monitor::host::is_local(&options.connect);
    let connect = options.connect.clone();
    let monitor = Monitor::start(options);
    monitor.set_baseline_end(Some(chrono::Utc::now()));
    let mut throttle = Throttle::new(settings, monitor.subscribe(), Some(connect), local);
    throttle.watch_table(table);
    (throttle, Some(monitor))
}

/// SIGINT or SIGTERM asks the rebuild to stop (pg_repack then removes what it made).
async fn stop_on_signals(stop: watch::Sender<Option<String>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for SIGINT/SIGTERM");
        return;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    let _ = stop.send(Some(format!("{name} received")));
    // Later signals change nothing: pg_repack is already stopping, and leaving it half way
    // would leave its trigger on the table.
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}

/// `zdm complete NAME --repack`: after contract, rebuilds every table the migration's
/// backfill rewrote and that grew past a fifth; each one's outcome is a line (a failure
/// is said, never turned into a failed contract: contract is done).
pub async fn after_contract(config: &Config, migration: &str) -> String {
    let tables = match connect(config).await {
        Ok(mut conn) => {
            let recorded = table_size::recorded(&mut conn, migration).await;
            let _ = conn.close().await;
            match recorded {
                Ok(recorded) => recorded,
                Err(error) => return format!("repack after contract: {error}\n"),
            }
        }
        Err(error) => return format!("repack after contract: {error}\n"),
    };
    let mut out = String::new();
    for size in tables {
        if !size.bloated() {
            out.push_str(&format!(
                "repack after contract: {} needs none: {}\n",
                size.table,
                size.describe("now")
            ));
            continue;
        }
        let request = Request {
            table: size.table.clone(),
            migration: Some(migration.to_string()),
            ..Request::default()
        };
        match run(config, &request).await {
            Ok(text) => out.push_str(&text),
            Err(error) => out.push_str(&format!(
                "repack after contract: {} not rebuilt: {error}\n",
                size.table
            )),
        }
    }
    if out.is_empty() {
        out.push_str("repack after contract: the migration rewrote no table in place\n");
    }
    out
}
