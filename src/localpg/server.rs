//! One local server: its data directory, port, configuration, log and connection URL.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use super::{Error, Settings, SUPERUSER};

/// A server of a local cluster (the primary or its replica).
#[derive(Debug, Clone)]
pub struct Server {
    name: &'static str,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
}

impl Server {
    /// A server that will listen on a port free right now.
    pub(super) fn new(name: &'static str, data_dir: &Path, log_file: PathBuf) -> Self {
        Server {
            name,
            data_dir: data_dir.to_path_buf(),
            log_file,
            port: free_port(),
        }
    }

    /// "primary" or "replica".
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (which also holds the unix socket).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// A connection URL for `database` (trust authentication: there is no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Connection options for `database`, for sqlx pools and connections.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
    }

    /// One connection to `database`.
    pub async fn connect(&self, database: &str) -> Result<PgConnection, Error> {
        PgConnection::connect_with(&self.connect_options(database))
            .await
            .map_err(|source| Error::Connect {
                server: self.name.to_string(),
                source,
            })
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<i32> {
        super::janitor::postmaster_pid(&self.data_dir)
    }

    /// Appends zdm's settings to `postgresql.conf` (later lines win, so a replica's
    /// copy of the primary's file is simply overridden).
    pub(super) fn write_config(
        &self,
        settings: &Settings,
        pg_stat_statements: bool,
    ) -> Result<(), Error> {
        let mut conf = String::from("\n# written by zdm\n");
        let socket_dir = self.data_dir.display().to_string().replace('\'', "''");
        let mut set = |name: &str, value: &str| {
            let _ = writeln!(conf, "{name} = {value}");
        };
        set("listen_addresses", "'127.0.0.1'");
        set("port", &self.port.to_string());
        set("unix_socket_directories", &format!("'{socket_dir}'"));
        set("max_connections", "100");
        set("shared_buffers", &format!("'{}'", settings.shared_buffers));
        set("wal_level", "replica");
        set("max_wal_senders", "10");
        set("max_wal_size", "'1GB'");
        set("hot_standby", "on");
        set("hot_standby_feedback", "on");
        set("track_io_timing", "on");
        set("fsync", if settings.fsync { "on" } else { "off" });
        set(
            "full_page_writes",
            if settings.fsync { "on" } else { "off" },
        );
        set("logging_collector", "off");
        set("log_line_prefix", "'%m [%p] %q%u@%d '");
        if pg_stat_statements {
            set("shared_preload_libraries", "'pg_stat_statements'");
            set("pg_stat_statements.track", "all");
        }
        for (name, value) in &settings.extra {
            set(name, value);
        }
        let path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io {
                action: format!("open {}", path.display()),
                source,
            })?;
        std::io::Write::write_all(&mut file, conf.as_bytes()).map_err(|source| Error::Io {
            action: format!("write {}", path.display()),
            source,
        })
    }

    /// The last `lines` lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A port nobody listens on right now; a race with another process is retried by the caller.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(55432)
}
