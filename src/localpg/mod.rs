//! Throwaway local PostgreSQL servers for the demo and the tests: a primary and,
//! optionally, a streaming replica in a temporary directory, stopped and removed on drop.
//!
//! Every server command runs as an unprivileged user when this process is root
//! ([`ServiceUser`]). A cluster killed with its owner (kill -9) is reaped by the
//! next [`LocalPg::start`] on the machine ([`reap_orphans`]).

mod binaries;
mod janitor;
mod server;
mod user;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use binaries::{Binaries, SearchPaths};
pub use janitor::{is_alive, reap_orphans};
pub use server::Server;
pub use user::ServiceUser;

/// Prefix of every cluster directory under the temporary directory; the janitor looks for it.
const ROOT_PREFIX: &str = "zdm-pg-";
/// The superuser every local cluster is created with.
pub const SUPERUSER: &str = "postgres";

/// What can go wrong while starting or stopping local servers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found \
         (looked in {searched}). On Debian or Ubuntu run `apt-get install postgresql`; \
         elsewhere install the PostgreSQL server and set ZDM_PG_BINDIR to its bin directory"
    )]
    BinariesNotFound { searched: String },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "could not read the PostgreSQL version from `postgres --version` (it printed {output:?})"
    )]
    Version { output: String },
    #[error("cannot choose a user to run PostgreSQL as: {detail}")]
    ServiceUser { detail: String },
    #[error("could not {action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("{step} failed ({status}):\n{output}")]
    Command {
        step: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("the {server} server did not start; the end of its log says:\n{log_tail}")]
    Start { server: String, log_tail: String },
    #[error("could not connect to the local {server} server: {source}")]
    Connect { server: String, source: sqlx::Error },
    #[error("the replica did not start streaming within {seconds} s")]
    ReplicaNotStreaming { seconds: u64 },
}

/// Server settings written into each cluster's `postgresql.conf`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `shared_buffers`: small, so that a demo's data does not all fit in cache.
    pub shared_buffers: String,
    /// Whether the server syncs to disk; a throwaway cluster is faster without.
    pub fsync: bool,
    /// Any further `name = value` lines (values written as given, quote strings yourself).
    pub extra: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shared_buffers: "64MB".to_string(),
            fsync: false,
            extra: Vec::new(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also start a streaming replica of the primary (`pg_basebackup -R`).
    pub replica: bool,
    pub settings: Settings,
}

/// A running local primary (and maybe replica); dropping it stops them and removes their files.
#[derive(Debug)]
pub struct LocalPg {
    cluster: Cluster,
}

impl LocalPg {
    /// Starts a primary (and a replica when asked) on free ports. Blocks for a second or two.
    pub fn start(options: &Options) -> Result<Self, Error> {
        let binaries = Binaries::locate()?;
        let user = ServiceUser::for_this_process()?;
        for reaped in reap_orphans() {
            tracing::warn!(dir = %reaped.display(), "stopped servers left by a killed zdm process");
        }
        let mut cluster = Cluster::create(binaries, user)?;
        let template = cluster.template()?;
        let primary = cluster.start_server("primary", &options.settings, |data_dir| {
            cluster.run("copy the initdb template", "cp", |c| {
                c.arg("-a").arg(&template).arg(data_dir);
            })
        })?;
        cluster.servers.push(primary);
        if options.replica {
            let source = cluster.servers[0].clone();
            let replica = cluster.start_server("replica", &options.settings, |data_dir| {
                cluster.run_tool("pg_basebackup", |c| {
                    c.arg("--pgdata")
                        .arg(data_dir)
                        .args(["--host", "127.0.0.1", "--username", SUPERUSER])
                        .args(["--port", &source.port().to_string()])
                        .args(["--write-recovery-conf", "--wal-method=stream"])
                        .args(["--checkpoint=fast", "--no-sync"]);
                })
            })?;
            cluster.servers.push(replica);
        }
        Ok(LocalPg { cluster })
    }

    /// The primary server.
    pub fn primary(&self) -> &Server {
        &self.cluster.servers[0]
    }

    /// The streaming replica, when one was asked for.
    pub fn replica(&self) -> Option<&Server> {
        self.cluster.servers.get(1)
    }

    /// The directory holding every file of this cluster (removed on stop).
    pub fn root(&self) -> &Path {
        &self.cluster.root
    }

    /// The OS user the servers run as.
    pub fn service_user(&self) -> &ServiceUser {
        &self.cluster.user
    }

    /// The server binaries in use.
    pub fn binaries(&self) -> &Binaries {
        &self.cluster.binaries
    }

    /// Waits until the replica reports `streaming` in the primary's `pg_stat_replication`.
    pub async fn wait_for_replica(&self, timeout: Duration) -> Result<(), Error> {
        if self.replica().is_none() {
            return Ok(());
        }
        let primary = self.primary();
        let mut conn = primary.connect("postgres").await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let streaming: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(|source| Error::Connect {
                server: primary.name().to_string(),
                source,
            })?;
            if streaming > 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::ReplicaNotStreaming {
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the servers (fast shutdown) and removes the directory, reporting the first failure.
    pub fn stop(mut self) -> Result<(), Error> {
        self.cluster.shut_down()
    }
}

/// The directory of one local cluster and the servers started in it; its drop is the cleanup.
#[derive(Debug)]
struct Cluster {
    binaries: Binaries,
    user: ServiceUser,
    root: PathBuf,
    servers: Vec<Server>,
    removed: bool,
}

impl Cluster {
    fn create(binaries: Binaries, user: ServiceUser) -> Result<Self, Error> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let root = loop {
            let candidate = std::env::temp_dir().join(format!(
                "{ROOT_PREFIX}{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(Error::Io {
                        action: format!("create {}", candidate.display()),
                        source,
                    })
                }
            }
        };
        let cluster = Cluster {
            binaries,
            user,
            root,
            servers: Vec::new(),
            removed: false,
        };
        janitor::write_owner(&cluster.root)?;
        cluster.user.take_ownership(&cluster.root)?;
        Ok(cluster)
    }

    /// An initdb'd data directory to copy: made once per major version and user, then reused.
    fn template(&self) -> Result<PathBuf, Error> {
        let template = std::env::temp_dir().join(format!(
            "zdm-initdb-template-{}-{}",
            self.binaries.major_version(),
            self.user.uid()
        ));
        if template.join("PG_VERSION").is_file() {
            return Ok(template);
        }
        let staging = self.root.join("template");
        self.run_tool("initdb", |c| {
            c.arg("--pgdata")
                .arg(&staging)
                .args(["--username", SUPERUSER, "--auth=trust"])
                .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        })?;
        // Another process may have published one meanwhile: either copy is as good.
        if std::fs::rename(&staging, &template).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Ok(template)
    }

    /// Creates a data directory with `make_data_dir`, configures it and starts it on a free port.
    fn start_server(
        &self,
        name: &'static str,
        settings: &Settings,
        make_data_dir: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<Server, Error> {
        let data_dir = self.root.join(name);
        make_data_dir(&data_dir)?;
        let pg_stat_statements = self
            .binaries
            .bindir()
            .join("../lib/pg_stat_statements.so")
            .is_file();
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let server = Server::new(name, &data_dir, self.root.join(format!("{name}.log")));
            server.write_config(settings, pg_stat_statements)?;
            let started = self.run_tool("pg_ctl", |c| {
                c.arg("start")
                    .arg("--pgdata")
                    .arg(&data_dir)
                    .arg("--log")
                    .arg(server.log_file())
                    .args(["--wait", "--timeout=60", "--silent"]);
            });
            match started {
                Ok(()) => return Ok(server),
                Err(error) => {
                    let log_tail = server.log_tail(20);
                    // Another process took the port between our probe and the bind: try another.
                    let port_taken =
                        log_tail.contains("could not bind") || log_tail.contains("already in use");
                    if !port_taken || attempt == ATTEMPTS {
                        tracing::error!(%error, "server {name} failed to start");
                        return Err(Error::Start {
                            server: name.to_string(),
                            log_tail,
                        });
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn run_tool(
        &self,
        tool: &str,
        args: impl FnOnce(&mut std::process::Command),
    ) -> Result<(), Error> {
        self.run(tool, self.binaries.tool(tool), args)
    }

    /// Runs a program as the service user and turns a failure into an error with its output.
    fn run(
        &self,
        step: &str,
        program: impl AsRef<Path>,
        args: impl FnOnce(&mut std::process::Command),
    ) -> Result<(), Error> {
        let program = program.as_ref();
        let mut command = self.user.command(program, &self.root);
        args(&mut command);
        // Detach from the terminal's stdin so a server never reads from it.
        command.stdin(std::process::Stdio::null());
        let output = command.output().map_err(|source| Error::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::Command {
            step: step.to_string(),
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .trim()
            .to_string(),
        })
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        let mut first_error = None;
        // The replica first, so that it does not log the primary's disappearance.
        while let Some(server) = self.servers.pop() {
            let stopped = self.run_tool("pg_ctl", |c| {
                c.arg("stop").arg("--pgdata").arg(server.data_dir()).args([
                    "--mode=fast",
                    "--wait",
                    "--timeout=30",
                    "--silent",
                ]);
            });
            if let Err(error) = stopped {
                tracing::warn!(%error, "fast shutdown of {} failed; killing it", server.name());
                janitor::kill_server(server.data_dir());
                first_error.get_or_insert(error);
            }
        }
        // A server whose start timed out half-way is not in the list but may be running.
        janitor::kill_servers_in(&self.root);
        if !self.removed {
            self.removed = true;
            if let Err(source) = std::fs::remove_dir_all(&self.root) {
                first_error.get_or_insert(Error::Io {
                    action: format!("remove {}", self.root.display()),
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "cleaning up a local PostgreSQL cluster");
        }
    }
}
