//! The detached runner: `zdm start|complete|rollback` started in its own session (no
//! terminal, stdin closed, output to a log file) so that it outlives the terminal, the SSH
//! connection or the console that started it. It serves its control socket like any run;
//! [`spawn`] returns once that socket answers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::control::address::{prepare_dir, socket_path, RUN_LOG_ENV};
use crate::control::discover::probe;
use crate::control::{runtime_dir, Target};

/// How long a runner may take to open its socket (it plans and takes the run lock first).
const SOCKET_WAIT: Duration = Duration::from_secs(60);
/// How often the socket is looked for meanwhile.
const POLL: Duration = Duration::from_millis(100);
/// Lines of a failed runner's log shown with the error.
const TAIL_LINES: usize = 15;

/// What a runner is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Expand and backfill (or resume).
    Start {
        migration: String,
    },
    /// Contract, confirmed by the migration's name (typed by the operator), with the gates
    /// the operator overrode by name.
    Complete {
        migration: String,
        overrides: Vec<String>,
        /// The gates' observation window (None: `[gates] window_s`).
        window: Option<Duration>,
    },
    /// Contract once confirmed over the run's socket: the run evaluates the gates, then
    /// waits for the typed name (the console's dialog, `zdm ctl confirm-contract`).
    CompleteOnConfirmation {
        migration: String,
        /// The gates' observation window (None: `[gates] window_s`).
        window: Option<Duration>,
    },
    Rollback {
        migration: String,
    },
}

impl Job {
    pub fn migration(&self) -> &str {
        match self {
            Job::Start { migration }
            | Job::Complete { migration, .. }
            | Job::CompleteOnConfirmation { migration, .. }
            | Job::Rollback { migration } => migration,
        }
    }

    /// The subcommand the runner runs.
    pub fn command(&self) -> &'static str {
        match self {
            Job::Start { .. } => "start",
            Job::Complete { .. } | Job::CompleteOnConfirmation { .. } => "complete",
            Job::Rollback { .. } => "rollback",
        }
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.command().into(), self.migration().into()];
        let window = match self {
            Job::Complete {
                overrides, window, ..
            } => {
                args.push("--confirm-contract".into());
                args.push(self.migration().into());
                for gate in overrides {
                    args.push("--override-gate".into());
                    args.push(gate.into());
                }
                window
            }
            Job::CompleteOnConfirmation { window, .. } => {
                args.push("--await-confirmation".into());
                window
            }
            Job::Start { .. } | Job::Rollback { .. } => &None,
        };
        if let Some(window) = window {
            args.push("--window".into());
            args.push(window.as_secs_f64().to_string().into());
        }
        args
    }
}

/// A runner that serves its control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Detached {
    pub pid: u32,
    pub migration: String,
    /// The database it works on: `zdm ctl` and `zdm attach` reach it only when given it.
    pub target: Target,
    pub socket: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Detached {
    /// What the operator is told: where it runs and how to follow and steer it.
    pub fn describe(&self, command: &str) -> String {
        format!(
            "{command} of {m} runs in the background (pid {pid})\n  \
             follow: zdm attach {m} --database-url {url}\n  \
             steer:  zdm ctl --database-url {url} --migration {m} status|pause|resume|set KEY=VALUE|abort\n  \
             log:    {log}\n\
             (with DATABASE_URL, database_url in zdm.toml or libpq's PGHOST, PGPORT \
             and PGDATABASE naming that database, --database-url can be left out)",
            url = self.target.url(),
            m = self.migration,
            pid = self.pid,
            log = self.log.display()
        )
    }
}

/// Why a runner could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("the database URL {url} is not valid: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot find zdm's own executable to start the runner: {0}")]
    Executable(std::io::Error),
    #[error("cannot create the runner's log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the runner: {0}")]
    Spawn(std::io::Error),
    #[error(
        "a detached run needs its control socket, and it cannot be served: {0}. Nothing \
         was started"
    )]
    ControlDir(crate::control::Error),
    #[error(
        "the runner for {command} of {migration} ended ({status}) before it served its \
         control socket; the end of its log {log}:\n{tail}"
    )]
    Exited {
        command: &'static str,
        migration: String,
        status: String,
        /// The exit code (`None`: killed by a signal); 0 is success, as for every command.
        code: Option<i32>,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the runner for {command} of {migration} (pid {pid}) did not open its control socket \
         within {seconds} s; it may still be waiting (see its log {log}); `zdm attach \
         {migration}` reaches it once it does"
    )]
    NoSocket {
        command: &'static str,
        migration: String,
        pid: u32,
        seconds: u64,
        log: PathBuf,
    },
}

/// Starts `job` in a detached runner on `config`'s database and migrations, and returns
/// once its control socket answers (or with the end of its log when it stopped first).
pub async fn spawn(config: &Config, job: &Job) -> Result<Detached, Error> {
    let url = config.database_url()?;
    let target = Target::from_url(url).map_err(|source| Error::Url {
        url: url.to_string(),
        source,
    })?;
    // A runner that cannot serve its socket would migrate unseen and unsteerable, and
    // this process would wait for a socket that never comes: refuse now, with the reason.
    prepare_dir(&runtime_dir()).map_err(Error::ControlDir)?;
    let log = log_path(job.migration());
    let output = open_log(&log)?;
    let executable = std::env::current_exe().map_err(Error::Executable)?;
    let mut command = tokio::process::Command::new(executable);
    command
        .args(job.args())
        .arg("--dir")
        .arg(absolute(&config.migrations_dir))
        // In the environment, not on the command line: `ps` shows arguments to everyone.
        .env("DATABASE_URL", url.expose())
        .env(RUN_LOG_ENV, &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(output);
    if let Some(file) = &config.config_file {
        command.arg("--config").arg(absolute(file));
    }
    // `--metrics-listen` given to this process reaches the runner (its flag reads it).
    if let Some(address) = config.metrics_listen {
        command.env("ZDM_METRICS_LISTEN", address.to_string());
    }
    // A process group of its own: the hangup of the terminal (an SSH drop) reaches the
    // session leader and the foreground group, and a shell passes it on to its own jobs;
    // none of them is this group. It holds no descriptor of the terminal either.
    command.process_group(0);
    let mut child = command.spawn().map_err(Error::Spawn)?;
    let pid = child.id().unwrap_or_default();
    let socket = socket_path(&runtime_dir(), &target, job.migration());
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Exited {
                command: job.command(),
                migration: job.migration().to_string(),
                status: status.to_string(),
                code: status.code(),
                tail: tail(&log, TAIL_LINES),
                log,
            });
        }
        if serves(&socket, pid).await {
            // Tokio reaps the runner if it ends while this process lives; it is not ours
            // to stop.
            drop(child);
            return Ok(Detached {
                pid,
                migration: job.migration().to_string(),
                target: target.clone(),
                socket,
                log,
            });
        }
        if started.elapsed() >= SOCKET_WAIT {
            return Err(Error::NoSocket {
                command: job.command(),
                migration: job.migration().to_string(),
                pid,
                seconds: SOCKET_WAIT.as_secs(),
                log,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the socket at `path` answers as process `pid` (not a run that ended earlier).
async fn serves(path: &Path, pid: u32) -> bool {
    probe(path).await.is_some_and(|info| info.pid == pid)
}

/// `<state dir>/zdm/runs/<migration>.<UTC time>.log`, beside zdm's own log.
fn log_path(migration: &str) -> PathBuf {
    let dir = crate::logging::default_log_file()
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("runs");
    let safe: String = migration
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    dir.join(format!("{safe}.{now}.log"))
}

/// The log, private to its owner (it shows SQL and data values), in a private directory.
fn open_log(path: &Path) -> Result<std::fs::File, Error> {
    let error = |source| Error::Log {
        path: path.to_path_buf(),
        source,
    };
    crate::logging::open_private(path, false).map_err(error)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The last `lines` lines of a file (empty if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_runs_its_subcommand_with_the_confirmation_and_overrides() {
        let complete = Job::Complete {
            migration: "0003_x".to_string(),
            overrides: vec!["old_version_unused".to_string()],
            window: Some(Duration::from_millis(2500)),
        };
        assert_eq!(
            complete.args(),
            [
                "complete",
                "0003_x",
                "--confirm-contract",
                "0003_x",
                "--override-gate",
                "old_version_unused",
                "--window",
                "2.5"
            ]
            .map(OsString::from)
        );
        let start = Job::Start {
            migration: "0001".to_string(),
        };
        assert_eq!(start.args(), ["start", "0001"].map(OsString::from));
        assert_eq!(
            Job::Rollback {
                migration: "m".to_string()
            }
            .command(),
            "rollback"
        );
    }

    #[test]
    fn log_names_are_safe_file_names() {
        let path = log_path("../etc/passwd");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(name.starts_with("___etc_passwd."), "{name}");
        assert!(name.ends_with(".log"));
    }
}
