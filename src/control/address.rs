//! Where a run's control socket lives and whose it is: the private runtime directory,
//! the socket's name (hashed from host/port/database and migration, never a password),
//! and the `RunInfo` a socket answers `info` with.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::Error;
use crate::db::DatabaseUrl;

/// A unix socket path is at most this many bytes (`sun_path` is 108 with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Socket files end with this.
pub const SOCKET_SUFFIX: &str = ".sock";
/// The readable part of a socket name keeps at most this many characters of the migration.
const NAME_CHARS: usize = 40;

/// The database a run works on, without user or password: `db.example:5432/shop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl Target {
    /// The host, port and database of a connection URL (the password is never read).
    pub fn from_url(url: &DatabaseUrl) -> Result<Target, sqlx::Error> {
        let options = url.connect_options()?;
        Ok(Target {
            host: options.get_host().to_string(),
            port: options.get_port(),
            // libpq's default database is the user's name.
            database: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_string(),
        })
    }
}

impl Target {
    /// A URL naming only this target (no user, no password), as `zdm ctl --database-url`
    /// takes it: `postgresql://db:5432/shop`, or with a socket directory as host,
    /// `postgresql:///shop?host=/run/postgresql&port=5432`.
    pub fn url(&self) -> String {
        if self.host.starts_with('/') {
            format!(
                "postgresql:///{}?host={}&port={}",
                self.database, self.host, self.port
            )
        } else if self.host.contains(':') {
            format!(
                "postgresql://[{}]:{}/{}",
                self.host, self.port, self.database
            )
        } else {
            format!("postgresql://{}:{}/{}", self.host, self.port, self.database)
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.port, self.database)
    }
}

/// What a control socket says about itself (the `info` request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub migration: String,
    pub target: Target,
    /// The process serving the socket.
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub zdm_version: String,
    /// Where its output goes, when it runs detached (`zdm start --detach`, the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

/// The environment variable through which a detached runner learns its log's path.
pub const RUN_LOG_ENV: &str = "ZDM_RUN_LOG";

impl RunInfo {
    /// This process running `migration` on `target`, from now.
    pub fn new(migration: &str, target: Target) -> Self {
        RunInfo {
            migration: migration.to_string(),
            target,
            pid: std::process::id(),
            started_at: Utc::now(),
            zdm_version: env!("CARGO_PKG_VERSION").to_string(),
            log: std::env::var_os(RUN_LOG_ENV)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
        }
    }

    /// `0003_orders_status on db:5432/shop (pid 4242)`.
    pub fn describe(&self) -> String {
        format!("{} on {} (pid {})", self.migration, self.target, self.pid)
    }
}

/// The directory that holds control sockets: `$XDG_RUNTIME_DIR/zdm`, else `/tmp/zdm-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("zdm"),
        _ => std::env::temp_dir().join(format!("zdm-{}", nix::unistd::getuid())),
    }
}

/// Creates `dir` with mode 0700, or checks an existing one: it must be ours (in a shared
/// /tmp another user could have made it first) and is made private if it was not.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    let io = |source| Error::RuntimeDir {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // The parent is missing ($XDG_RUNTIME_DIR not created yet): make it private too.
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)
                .map_err(io)?;
        }
        Err(error) => return Err(io(error)),
    }
    let metadata = std::fs::symlink_metadata(dir).map_err(io)?;
    if !metadata.is_dir() {
        return Err(io(std::io::Error::other(
            "it exists and is not a directory",
        )));
    }
    let uid = nix::unistd::getuid().as_raw();
    if metadata.uid() != uid {
        return Err(Error::ForeignRuntimeDir {
            dir: dir.to_path_buf(),
            owner: metadata.uid(),
        });
    }
    if metadata.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// The socket's file name: the migration (readable, filesystem-safe, shortened) and a
/// hash of target and migration, so runs on different databases never collide and the
/// name reveals no host: `0003_orders_status.1f3a9c0b7d2e4a65.sock`.
pub fn socket_name(target: &Target, migration: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        target.host.as_bytes(),
        target.port.to_string().as_bytes(),
        target.database.as_bytes(),
        migration.as_bytes(),
    ] {
        hasher.update(part);
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let readable: String = migration
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(NAME_CHARS)
        .collect();
    format!("{readable}.{hash}{SOCKET_SUFFIX}")
}

/// The socket path of `migration` on `target` in `dir`.
pub fn socket_path(dir: &Path, target: &Target, migration: &str) -> PathBuf {
    dir.join(socket_name(target, migration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, database: &str) -> Target {
        Target {
            host: host.to_string(),
            port: 5432,
            database: database.to_string(),
        }
    }

    #[test]
    fn targets_come_from_urls_without_their_password() {
        let url = DatabaseUrl::new("postgres://app:s3cr3t@db.example:6543/shop".to_string());
        let target = Target::from_url(&url).expect("parses");
        assert_eq!(target.to_string(), "db.example:6543/shop");
        let json = serde_json::to_string(&RunInfo::new("m", target)).expect("serialize");
        assert!(!json.contains("s3cr3t"), "{json}");
        let url = DatabaseUrl::new("postgres://app@db".to_string());
        assert_eq!(
            Target::from_url(&url).expect("parses").to_string(),
            "db:5432/app"
        );
    }

    #[test]
    fn names_differ_by_target_and_migration_and_stay_short_and_safe() {
        let a = socket_name(&target("db1", "shop"), "0003_orders");
        let b = socket_name(&target("db2", "shop"), "0003_orders");
        let c = socket_name(&target("db1", "shop"), "0004_orders");
        assert!(a.starts_with("0003_orders."), "{a}");
        assert!(a.ends_with(".sock"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(!a.contains("db1"));
        let odd = socket_name(&target("h", "d"), &format!("../{}", "x".repeat(200)));
        assert!(!odd.contains('/'), "{odd}");
        assert!(odd.len() < 70, "{odd}");
        assert_eq!(
            socket_name(&target("h", "d"), "a/b"),
            socket_name(&target("h", "d"), "a/b")
        );
        assert_ne!(
            socket_name(&target("h", "d"), "a/b"),
            socket_name(&target("h", "d"), "a_b")
        );
    }

    #[test]
    fn the_directory_is_made_private() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join("run").join("zdm");
        prepare_dir(&dir).expect("creates");
        let mode = std::fs::metadata(&dir).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare_dir(&dir).expect("fixes");
        let mode = std::fs::metadata(&dir).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
