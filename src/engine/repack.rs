//! Giving a rewritten table its size back: an online rebuild with pg_repack's client, or
//! plain VACUUM (never FULL: it would hold an ACCESS EXCLUSIVE lock for the whole rewrite)
//! when pg_repack is not there.
//!
//! pg_repack copies the table into a new one while a trigger logs the application's
//! changes, builds the indexes, replays the log and swaps the files. It takes an ACCESS
//! EXCLUSIVE lock twice, briefly (to add its trigger, and for the swap); each attempt waits
//! at most 100 ms growing to 1 s (pg_repack's own `lock_timeout`), and zdm passes
//! `--no-kill-backend` so it never cancels or ends an application's session: when its
//! lock cannot be had within `--wait-timeout` (zdm's lock retry budget) it gives up and
//! nothing changes. The client is run with bound arguments (no shell), the password only in
//! its environment (`PGPASSWORD`), and in a process group of its own so that a terminal's
//! Ctrl-C reaches zdm, which asks pg_repack to stop (SIGINT: it cancels its query and
//! removes its trigger and tables) and checks that nothing was left behind. A client that
//! does not stop (hung, or not pg_repack at all) is sent SIGTERM after a grace period
//! ([`stop_grace`]: its lock wait again, for the clean-up, and some), then SIGKILL; its
//! sessions zdm saw on the server are ended, and what it left is said with the clean-up.
//!
//! It is steered like a backfill: it does not start while the throttle holds, and a
//! critical level or a stop request aborts it cleanly (a rebuild cannot be paused half
//! way: the server is copying inside one statement). Progress comes from the database:
//! pg_repack's session in `pg_stat_activity` says which phase it is in, its log table how
//! many of the application's changes wait to be replayed, and the WAL written since it
//! began how far the copy is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::PgConnection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use super::event::{Event, Events};
use super::table_size::{self, bytes, Comparison};
use super::throttle::{Throttle, Verdict};
use crate::db::{quote_ident, split_password, DatabaseUrl};
use crate::format::{duration, thousands};
use crate::protocol::Level;

/// Why a rebuild did not happen or did not finish. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the database failed while {action}: {source}")]
    Database { action: String, source: sqlx::Error },
    #[error("there is no table {0} on this database")]
    NoTable(String),
    #[error(
        "pg_repack is not installed on the database server: install the package \
         postgresql-{major}-repack there (it holds the extension and the pg_repack client), \
         then run `CREATE EXTENSION pg_repack;` as a superuser in database {database}. \
         Without it, `zdm repack {table} --vacuum` runs plain VACUUM instead (never FULL): \
         the file keeps its size, but new rows reuse the dead space"
    )]
    NotAvailable {
        major: u32,
        database: String,
        table: String,
    },
    #[error(
        "the pg_repack extension is available but not created in database {database}: run \
         `CREATE EXTENSION pg_repack;` there as a superuser (pg_repack's functions need \
         superuser), then run this command again; or `zdm repack {table} --vacuum` for plain \
         VACUUM"
    )]
    NotCreated { database: String, table: String },
    #[error(
        "the pg_repack client was not found (looked for {}): install postgresql-{major}-repack \
         on this machine, give its path with --pg-repack PATH, or use `zdm repack {table} \
         --vacuum` for plain VACUUM",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoClient {
        major: u32,
        searched: Vec<PathBuf>,
        table: String,
    },
    #[error(
        "pg_repack cannot rebuild {table}: it needs a primary key or a unique index on NOT \
         NULL columns to replay the application's changes; `zdm repack {table} --vacuum` \
         runs plain VACUUM instead"
    )]
    NoKey { table: String },
    #[error("could not run {client}: {source}")]
    Spawn {
        client: String,
        source: std::io::Error,
    },
    #[error("pg_repack failed ({status}); {table} is unchanged{leftovers}. What it said:\n{said}")]
    Failed {
        table: String,
        status: String,
        said: String,
        leftovers: String,
    },
    #[error(
        "pg_repack gave up on {table}: it could not take its brief ACCESS EXCLUSIVE lock \
         within {} without cancelling anyone's query (--no-kill-backend), so nothing changed; \
         run it again when the table is quieter, or raise the wait with --wait-timeout. What \
         it said:\n{said}",
        duration(*wait)
    )]
    GaveUp {
        table: String,
        wait: Duration,
        said: String,
    },
    #[error("repack of {table} stopped before it began: {why}; nothing changed")]
    NotStarted { table: String, why: String },
    #[error("repack of {table} aborted: {why}; {cleanup}")]
    Aborted {
        table: String,
        why: String,
        cleanup: String,
    },
}

fn database(action: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |source| Error::Database {
        action: action.to_string(),
        source,
    }
}

/// What was found about the table and pg_repack before anything runs.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// `schema.name`, as people read it.
    pub table: String,
    /// `"schema"."name"`, as pg_repack's `--table` takes it.
    pub quoted: String,
    /// The server's major version (15), which names the packages.
    pub major: u32,
    pub database: String,
    /// The extension's version in this database, if created.
    pub extension: Option<String>,
    /// Whether the server could create it (its files are installed).
    pub extension_available: bool,
    pub superuser: bool,
    /// A primary key or a unique index on NOT NULL columns (pg_repack needs one).
    pub has_key: bool,
}

impl Preflight {
    /// Reads it through `conn`.
    pub async fn read(conn: &mut PgConnection, table: &str) -> Result<Preflight, Error> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'm')",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(database("looking for the table"))?;
        let (schema, name) = row.ok_or_else(|| Error::NoTable(table.to_string()))?;
        let quoted = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        let (version, database_name, superuser): (i32, String, bool) = sqlx::query_as(
            "SELECT current_setting('server_version_num')::int, current_database()::text, \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(database("reading the server's version"))?;
        let (extension, available): (Option<String>, bool) = sqlx::query_as(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_repack'), \
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_repack')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(database("looking for the pg_repack extension"))?;
        // pg_repack's rule: a primary key, or a unique, valid, non-partial index whose
        // columns are all NOT NULL.
        let has_key: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) \
                AND i.indisunique AND i.indisvalid AND i.indpred IS NULL \
                AND i.indexprs IS NULL \
                AND (i.indisprimary OR NOT EXISTS (SELECT 1 FROM pg_attribute a \
                     WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                       AND NOT a.attnotnull)))",
        )
        .bind(&quoted)
        .fetch_one(&mut *conn)
        .await
        .map_err(database("looking for the table's key"))?;
        Ok(Preflight {
            table: format!("{schema}.{name}"),
            quoted,
            major: u32::try_from(version / 10000).unwrap_or(0),
            database: database_name,
            extension,
            extension_available: available,
            superuser,
            has_key,
        })
    }

    /// Refuses what pg_repack cannot do here, with what is needed.
    pub fn check(&self) -> Result<(), Error> {
        if self.extension.is_none() {
            return Err(if self.extension_available {
                Error::NotCreated {
                    database: self.database.clone(),
                    table: self.table.clone(),
                }
            } else {
                Error::NotAvailable {
                    major: self.major,
                    database: self.database.clone(),
                    table: self.table.clone(),
                }
            });
        }
        if !self.has_key {
            return Err(Error::NoKey {
                table: self.table.clone(),
            });
        }
        Ok(())
    }
}

/// The places the pg_repack client of server major `major` is looked for: the
/// version's own directory first (Debian's packages install it there, not on PATH), then
/// `ZDM_PG_BINDIR`, then every PATH entry.
pub fn client_candidates(major: u32) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(format!(
        "/usr/lib/postgresql/{major}/bin/pg_repack"
    ))];
    if let Some(dir) = std::env::var_os("ZDM_PG_BINDIR") {
        out.push(Path::new(&dir).join("pg_repack"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|dir| dir.join("pg_repack")));
    }
    out
}

/// The pg_repack client to run: `given`, or the first candidate that is a file.
pub fn find_client(given: Option<&Path>, pre: &Preflight) -> Result<PathBuf, Error> {
    let searched = match given {
        Some(path) => vec![path.to_path_buf()],
        None => client_candidates(pre.major),
    };
    searched
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| Error::NoClient {
            major: pre.major,
            searched,
            table: pre.table.clone(),
        })
}

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub client: PathBuf,
    /// How long pg_repack may try for its brief locks before giving up (`--wait-timeout`).
    pub wait_timeout: Duration,
    /// How often progress is read and said.
    pub every: Duration,
}

/// What steers a rebuild: the throttle, and a stop asked for (Ctrl-C, SIGTERM), with why.
pub struct Steering<'a> {
    pub throttle: &'a mut Throttle,
    pub stop: watch::Receiver<Option<String>>,
}

impl Steering<'_> {
    fn stop_requested(&self) -> Option<String> {
        self.stop.borrow().clone()
    }
}

/// Where pg_repack connects: the server as zdm resolved it (URL, `PG*` variables, libpq's
/// defaults). Its password is not here: it goes in the child's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A host name, an address, or a Unix socket directory.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    /// libpq's `sslmode` word (`PGSSLMODE` for the child).
    pub sslmode: &'static str,
}

impl Target {
    pub fn of(options: &sqlx::postgres::PgConnectOptions, database: &str) -> Target {
        use sqlx::postgres::PgSslMode;
        Target {
            host: options.get_socket().map_or_else(
                || options.get_host().to_string(),
                |dir| dir.display().to_string(),
            ),
            port: options.get_port(),
            user: options.get_username().to_string(),
            database: options.get_database().unwrap_or(database).to_string(),
            sslmode: match options.get_ssl_mode() {
                PgSslMode::Disable => "disable",
                PgSslMode::Allow => "allow",
                PgSslMode::Prefer => "prefer",
                PgSslMode::Require => "require",
                PgSslMode::VerifyCa => "verify-ca",
                PgSslMode::VerifyFull => "verify-full",
            },
        }
    }
}

/// The command line given to pg_repack (no password: it goes in the environment).
pub fn arguments(pre: &Preflight, target: &Target, wait: Duration) -> Vec<String> {
    let mut args = vec![
        format!("--host={}", target.host),
        format!("--port={}", target.port),
        format!("--username={}", target.user),
        format!("--dbname={}", target.database),
        format!("--table={}", pre.quoted),
        // Compact only: without a clustered index pg_repack would otherwise skip the table.
        "--no-order".to_string(),
        "--no-kill-backend".to_string(),
        format!("--wait-timeout={}", wait.as_secs().max(1)),
        // Never prompt: the password comes from PGPASSWORD or the password file.
        "--no-password".to_string(),
        "--elevel=INFO".to_string(),
    ];
    if !pre.superuser {
        // The client's own check would refuse at once; the extension's functions decide.
        args.push("--no-superuser-check".to_string());
    }
    args
}

/// Waits until the throttle lets a rebuild begin (a heavy copy must not start while the
/// database is already struggling), saying why it waits. A stop meanwhile ends it.
async fn wait_for_throttle(
    steering: &mut Steering<'_>,
    events: &Events,
    table: &str,
) -> Result<(), Error> {
    let mut held: Option<(String, Instant)> = None;
    loop {
        if let Some(why) = steering.stop_requested() {
            return Err(Error::NotStarted {
                table: table.to_string(),
                why,
            });
        }
        match steering.throttle.check().await {
            Verdict::Run => {
                if let Some((_, since)) = held {
                    events.emit(Event::ThrottleOff {
                        reason: "the throttle released: the rebuild begins".to_string(),
                        throttled_for: since.elapsed(),
                    });
                }
                return Ok(());
            }
            Verdict::Throttle { reason } | Verdict::Critical { reason } => {
                let changed = held.as_ref().is_none_or(|(said, _)| *said != reason);
                if changed {
                    events.emit(Event::ThrottleOn {
                        reason: format!("the rebuild waits to begin: {reason}"),
                    });
                    let since = held.map_or_else(Instant::now, |(_, since)| since);
                    held = Some((reason, since));
                }
            }
        }
        let mut stop = steering.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            Ok(()) = stop.changed() => {}
        }
    }
}

/// Where pg_repack is, as its session shows it.
async fn phase(conn: &mut PgConnection) -> Option<String> {
    let query: Option<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE application_name = 'pg_repack' \
            AND datname = current_database() AND state = 'active' \
          ORDER BY query_start LIMIT 1",
    )
    .fetch_optional(conn)
    .await
    .ok()
    .flatten();
    let query = query?;
    let text = query.trim_start().to_ascii_uppercase();
    Some(
        if text.starts_with("INSERT INTO REPACK.TABLE_") {
            "copying the rows into the new table"
        } else if text.starts_with("CREATE UNIQUE INDEX") || text.starts_with("CREATE INDEX") {
            "building the new table's indexes"
        } else if text.contains("REPACK_APPLY") {
            "replaying the application's changes"
        } else if text.contains("REPACK_SWAP") || text.starts_with("LOCK TABLE") {
            "swapping the tables (brief ACCESS EXCLUSIVE lock)"
        } else if text.contains("REPACK_DROP") {
            "dropping the old table"
        } else if text.starts_with("ANALYZE") {
            "analyzing the new table"
        } else {
            "working"
        }
        .to_string(),
    )
}

/// The application's changes logged and not yet replayed (pg_repack's log table).
async fn pending_changes(conn: &mut PgConnection, oid: u32) -> Option<i64> {
    let log = format!("repack.log_{oid}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&log)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
    if !exists {
        return None;
    }
    sqlx::query_scalar(&format!("SELECT count(*) FROM {log}"))
        .fetch_one(conn)
        .await
        .ok()
}

async fn wal_lsn(conn: &mut PgConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(conn)
        .await
        .ok()
}

async fn oid_and_file(conn: &mut PgConnection, quoted: &str) -> Result<(u32, u32), Error> {
    let (oid, file): (i64, i64) = sqlx::query_as(
        "SELECT c.oid::bigint, c.relfilenode::bigint FROM pg_class c \
          WHERE c.oid = to_regclass($1)",
    )
    .bind(quoted)
    .fetch_one(conn)
    .await
    .map_err(database("reading the table's file"))?;
    Ok((
        u32::try_from(oid).unwrap_or(0),
        u32::try_from(file).unwrap_or(0),
    ))
}

/// What pg_repack left on the table after it stopped (its trigger, its log table), in words;
/// empty when nothing.
async fn leftovers(conn: &mut PgConnection, quoted: &str, oid: u32) -> String {
    let found: Result<(bool, bool), sqlx::Error> = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) \
                         AND tgname LIKE '%repack%'), \
                to_regclass($2) IS NOT NULL",
    )
    .bind(quoted)
    .bind(format!("repack.log_{oid}"))
    .fetch_one(conn)
    .await;
    match found {
        Ok((false, false)) => String::new(),
        Ok(_) => " but pg_repack left its trigger or log table behind: run `DROP EXTENSION \
                   pg_repack CASCADE; CREATE EXTENSION pg_repack;` (pg_repack's documented \
                   clean-up) when no other pg_repack runs"
            .to_string(),
        Err(error) => format!("; whether pg_repack left objects behind is unknown ({error})"),
    }
}

/// The last lines of what pg_repack said, for an error.
fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(12);
    lines[from..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rebuilds the table with pg_repack, watching it through `conn` and steered by
/// `steering`; returns its size against before. `url` connects the client (the password
/// goes to its environment only).
pub async fn pg_repack(
    conn: &mut PgConnection,
    url: &DatabaseUrl,
    pre: &Preflight,
    options: &Options,
    steering: &mut Steering<'_>,
    events: &Events,
) -> Result<Comparison, Error> {
    pre.check()?;
    wait_for_throttle(steering, events, &pre.table).await?;
    let (oid, file_before) = oid_and_file(conn, &pre.quoted).await?;
    let (_, before) = table_size::measure(conn, &pre.quoted)
        .await
        .map_err(database("measuring the table"))?
        .ok_or_else(|| Error::NoTable(pre.table.clone()))?;
    let connect = url
        .connect_options()
        .map_err(database("reading the database URL"))?;
    let target = Target::of(&connect, &pre.database);
    let password = split_password(url.expose()).and_then(|(_, password)| password);
    let args = arguments(pre, &target, options.wait_timeout);
    let mut command = tokio::process::Command::new(&options.client);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the terminal's Ctrl-C comes to zdm, which stops it cleanly.
        .process_group(0);
    command.env("PGSSLMODE", target.sslmode);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let client = options.client.display().to_string();
    // The server's clock when the client starts: its sessions are the pg_repack ones
    // that began after (see `sessions`).
    let spawned_at = server_now(conn).await;
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        client: client.clone(),
        source,
    })?;
    let pid = child.id();
    events.emit(Event::Log {
        level: Level::Info,
        text: format!(
            "repack {}: pg_repack started (pid {}), rebuilding it online; it is {}",
            pre.table,
            pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
            before.describe()
        ),
    });
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        let tx = line_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let tx = line_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(line_tx);
    let started = Instant::now();
    let wal_start = wal_lsn(conn).await;
    let mut said: Vec<String> = Vec::new();
    let mut aborted: Option<String> = None;
    let mut throttled: Option<(String, Instant)> = None;
    let mut tick = tokio::time::interval(options.every);
    tick.tick().await;
    let mut stop = steering.stop.clone();
    let mut lines_open = true;
    let mut stop_open = true;
    // After the stop was asked: when to send the next, harder signal, and which.
    let mut escalation: Option<(tokio::time::Instant, Signal)> = None;
    let mut escalated: Option<Signal> = None;
    let mut seen_sessions: Vec<i32> = Vec::new();
    let grace = stop_grace(options.wait_timeout);
    let status = loop {
        let next_signal = escalation.map(|(at, _)| at);
        tokio::select! {
            status = child.wait() => break status,
            _ = tokio::time::sleep_until(next_signal.unwrap_or_else(tokio::time::Instant::now)), if next_signal.is_some() => {
                if let Some((_, signal)) = escalation.take() {
                    escalate(pid, signal, &pre.table, grace, events);
                    escalated = Some(signal);
                    if signal == Signal::SIGTERM {
                        escalation = Some((tokio::time::Instant::now() + KILL_GRACE, Signal::SIGKILL));
                    }
                }
            }
            line = line_rx.recv(), if lines_open => match line {
                Some(line) => {
                    events.emit(Event::Log { level: Level::Info, text: format!("pg_repack: {line}") });
                    said.push(line);
                }
                None => lines_open = false,
            },
            changed = stop.changed(), if aborted.is_none() && stop_open => {
                stop_open = changed.is_ok();
                if let Some(why) = steering.stop_requested() {
                    interrupt(pid, &pre.table, &why, events);
                    aborted = Some(why);
                    escalation = Some((tokio::time::Instant::now() + grace, Signal::SIGTERM));
                }
            }
            _ = tick.tick() => {
                match steering.throttle.check().await {
                    Verdict::Critical { reason } if aborted.is_none() => {
                        let why = format!("critical level reached: {reason}");
                        events.emit(Event::CriticalLevel { step: format!("repack {}", pre.table), reason: reason.clone() });
                        interrupt(pid, &pre.table, &why, events);
                        aborted = Some(why);
                        escalation = Some((tokio::time::Instant::now() + grace, Signal::SIGTERM));
                    }
                    Verdict::Throttle { reason } if throttled.as_ref().is_none_or(|(said, _)| *said != reason) => {
                        events.emit(Event::ThrottleOn { reason: format!(
                            "{reason} (a rebuild cannot be slowed: it goes on; a critical level aborts it)"
                        )});
                        let since = throttled.map_or_else(Instant::now, |(_, since)| since);
                        throttled = Some((reason, since));
                    }
                    Verdict::Run => {
                        if let Some((_, since)) = throttled.take() {
                            events.emit(Event::ThrottleOff {
                                reason: "the throttle released".to_string(),
                                throttled_for: since.elapsed(),
                            });
                        }
                    }
                    _ => {}
                }
                if let Some(since) = spawned_at {
                    for pid in sessions(conn, since).await {
                        if !seen_sessions.contains(&pid) {
                            seen_sessions.push(pid);
                        }
                    }
                }
                if aborted.is_none() {
                    let mut line = format!("repack {}: ", pre.table);
                    line.push_str(&phase(conn).await.unwrap_or_else(|| "preparing".to_string()));
                    line.push_str(&format!(" · {}", duration(started.elapsed())));
                    if let (Some(start), Some(now)) = (wal_start, wal_lsn(conn).await) {
                        line.push_str(&format!(
                            " · {} of WAL written (the table holds {})",
                            bytes(now - start),
                            bytes(before.total_bytes())
                        ));
                    }
                    if let Some(pending) = pending_changes(conn, oid).await {
                        line.push_str(&format!(" · {} application change(s) to replay", thousands(pending.max(0).unsigned_abs())));
                    }
                    events.emit(Event::Log { level: Level::Info, text: line });
                }
            }
        }
    };
    // What it said last may still be in the pipe.
    while let Ok(line) = line_rx.try_recv() {
        said.push(line);
    }
    let status = status.map_err(|source| Error::Spawn { client, source })?;
    // A client ended by force cannot end its server sessions: zdm does, so that no
    // statement of its goes on copying (and holding its locks) on its own.
    let ended = match escalated {
        Some(_) => end_sessions(conn, &seen_sessions).await,
        None => 0,
    };
    let (_, file_after) = oid_and_file(conn, &pre.quoted).await?;
    if let Some(why) = aborted {
        let left = leftovers(conn, &pre.quoted, oid).await;
        let forced = match escalated {
            None => String::new(),
            Some(signal) => format!(
                "pg_repack did not stop within {} of SIGINT{}; {}",
                duration(grace),
                if signal == Signal::SIGKILL {
                    format!(
                        " nor within {} of SIGTERM and was killed (SIGKILL)",
                        duration(KILL_GRACE)
                    )
                } else {
                    " and was ended with SIGTERM".to_string()
                },
                if ended > 0 {
                    format!("zdm ended its {ended} server session(s); ")
                } else {
                    String::new()
                }
            ),
        };
        let cleanup = if file_after != file_before {
            "pg_repack had already swapped the tables: the table is rebuilt".to_string()
        } else if left.is_empty() && escalated.is_none() {
            "pg_repack stopped and removed its trigger and tables; the table is unchanged"
                .to_string()
        } else if left.is_empty() {
            "it left no trigger or log table on it; the table is unchanged".to_string()
        } else {
            format!("the table is unchanged{left}")
        };
        let cleanup = format!("{forced}{cleanup}");
        return Err(Error::Aborted {
            table: pre.table.clone(),
            why,
            cleanup,
        });
    }
    if !status.success() {
        return Err(Error::Failed {
            table: pre.table.clone(),
            status: status.to_string(),
            said: tail(&said),
            leftovers: leftovers(conn, &pre.quoted, oid).await,
        });
    }
    if file_after == file_before {
        // pg_repack exits 0 when it skips a table whose lock it could not take in time.
        return Err(Error::GaveUp {
            table: pre.table.clone(),
            wait: options.wait_timeout,
            said: tail(&said),
        });
    }
    let (_, after) = table_size::measure(conn, &pre.quoted)
        .await
        .map_err(database("measuring the rebuilt table"))?
        .ok_or_else(|| Error::NoTable(pre.table.clone()))?;
    Ok(Comparison {
        table: pre.table.clone(),
        before,
        after,
    })
}

/// How long pg_repack may take to stop after SIGINT before it is sent SIGTERM: its
/// clean-up takes its ACCESS EXCLUSIVE lock again to drop its trigger, which may wait as
/// long as its lock wait (`--wait-timeout`), and 5 s more for the rest.
pub fn stop_grace(wait_timeout: Duration) -> Duration {
    wait_timeout + Duration::from_secs(5)
}

/// How long after SIGTERM a client still running is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Sends `signal` to the client's process group (it runs in one of its own, so anything
/// it started gets it too).
fn signal_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Asks pg_repack to stop: SIGINT, on which it cancels its query and removes its objects.
fn interrupt(pid: Option<u32>, table: &str, why: &str, events: &Events) {
    events.emit(Event::Log {
        level: Level::Warning,
        text: format!("repack {table}: stopping pg_repack ({why}); it removes what it made"),
    });
    signal_group(pid, Signal::SIGINT);
}

/// A client that did not stop in time gets `signal` (SIGTERM, then SIGKILL), said.
fn escalate(pid: Option<u32>, signal: Signal, table: &str, grace: Duration, events: &Events) {
    let text = if signal == Signal::SIGKILL {
        format!(
            "repack {table}: pg_repack is still running {} after SIGTERM: killing it (SIGKILL)",
            duration(KILL_GRACE)
        )
    } else {
        format!(
            "repack {table}: pg_repack did not stop within {} of SIGINT: sending SIGTERM",
            duration(grace)
        )
    };
    events.emit(Event::Log {
        level: Level::Warning,
        text,
    });
    signal_group(pid, signal);
}

/// The server's clock now; `None` when it cannot be read.
async fn server_now(conn: &mut PgConnection) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(conn)
        .await
        .ok()
}

/// The server processes of pg_repack sessions on this database that began at or after
/// `since` (when zdm started its client).
async fn sessions(conn: &mut PgConnection, since: chrono::DateTime<chrono::Utc>) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_repack' \
            AND datname = current_database() AND backend_start >= $1",
    )
    .bind(since)
    .fetch_all(conn)
    .await
    .unwrap_or_default()
}

/// Ends those of `pids` still connected (a killed client's sessions); how many were.
async fn end_sessions(conn: &mut PgConnection, pids: &[i32]) -> usize {
    if pids.is_empty() {
        return 0;
    }
    let ended: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1) \
            AND application_name = 'pg_repack' AND pg_terminate_backend(pid)",
    )
    .bind(pids)
    .fetch_one(conn)
    .await;
    usize::try_from(ended.unwrap_or(0)).unwrap_or(0)
}

/// Plain VACUUM (ANALYZE) of the table, never FULL: it takes SHARE UPDATE EXCLUSIVE, which
/// blocks neither reads nor writes, asked for under `lock_timeout`. The file keeps its
/// size; the dead tuples' space is reusable afterwards.
pub async fn vacuum(
    conn: &mut PgConnection,
    table: &str,
    lock_timeout: Duration,
    events: &Events,
) -> Result<Comparison, Error> {
    let (name, before) = table_size::measure(conn, table)
        .await
        .map_err(database("measuring the table"))?
        .ok_or_else(|| Error::NoTable(table.to_string()))?;
    let quoted = match name.split_once('.') {
        Some((schema, relation)) => format!("{}.{}", quote_ident(schema), quote_ident(relation)),
        None => quote_ident(&name),
    };
    events.emit(Event::Log {
        level: Level::Info,
        text: format!(
            "repack {name}: VACUUM (ANALYZE) without pg_repack; it is {}",
            before.describe()
        ),
    });
    sqlx::query(&format!(
        "SET lock_timeout = '{}ms'",
        lock_timeout.as_millis().max(1)
    ))
    .execute(&mut *conn)
    .await
    .map_err(database("setting lock_timeout"))?;
    let ran = sqlx::query(&format!("VACUUM (ANALYZE) {quoted}"))
        .execute(&mut *conn)
        .await;
    let _ = sqlx::query("RESET lock_timeout").execute(&mut *conn).await;
    ran.map_err(database("running VACUUM"))?;
    let (_, after) = table_size::measure(conn, &quoted)
        .await
        .map_err(database("measuring the table"))?
        .ok_or_else(|| Error::NoTable(name.clone()))?;
    Ok(Comparison {
        table: name,
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(superuser: bool) -> Preflight {
        Preflight {
            table: "public.orders".to_string(),
            quoted: "\"public\".\"orders\"".to_string(),
            major: 15,
            database: "shop".to_string(),
            extension: None,
            extension_available: false,
            superuser,
            has_key: true,
        }
    }

    #[test]
    fn the_command_line_binds_the_table_and_never_holds_a_password() {
        let target = Target {
            host: "db".to_string(),
            port: 5432,
            user: "app".to_string(),
            database: "shop".to_string(),
            sslmode: "prefer",
        };
        let args = arguments(&preflight(false), &target, Duration::from_millis(1500));
        assert!(args.contains(&"--host=db".to_string()));
        assert!(args.contains(&"--dbname=shop".to_string()));
        assert!(args.contains(&"--table=\"public\".\"orders\"".to_string()));
        assert!(args.contains(&"--no-kill-backend".to_string()));
        assert!(args.contains(&"--wait-timeout=1".to_string()));
        assert!(args.contains(&"--no-superuser-check".to_string()));
        assert!(args.iter().all(|a| !a.contains("secret")));
        assert!(
            !arguments(&preflight(true), &target, Duration::from_secs(9))
                .contains(&"--no-superuser-check".to_string())
        );
    }

    #[test]
    fn without_pg_repack_the_message_names_the_package_and_the_fallback() {
        let text = preflight(true).check().expect_err("refused").to_string();
        assert!(text.contains("postgresql-15-repack"), "{text}");
        assert!(text.contains("CREATE EXTENSION pg_repack"), "{text}");
        assert!(text.contains("--vacuum"), "{text}");
        assert!(text.contains("never FULL"), "{text}");
        let mut available = preflight(true);
        available.extension_available = true;
        let text = available.check().expect_err("refused").to_string();
        assert!(text.contains("not created in database shop"), "{text}");
    }
}
