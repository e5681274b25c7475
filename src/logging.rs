//! Where zdm's logs go: a file (never the terminal, which the console owns), at a chosen level.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The filter used when neither `--log` nor `ZDM_LOG` says otherwise.
const DEFAULT_FILTER: &str = "zdm=info,warn";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid log level or filter {filter:?} (expected error, warn, info, debug, trace or a filter such as zdm=debug): {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot write the log file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The default log file: `$XDG_STATE_HOME/zdm/zdm.log`, else `~/.local/state/zdm/zdm.log`.
pub fn default_log_file() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("zdm").join("zdm.log")
}

/// Opens the log for appending, readable by its owner only (0600): a log names databases,
/// users and hosts. Directories it creates are 0700; zdm's own default directory is made
/// 0700 even when it exists (a directory given with `--log-file` is the user's business).
pub(crate) fn open_private(path: &Path, own_directory: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if own_directory {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // A log created by an older zdm (0644) is tightened too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Sends `tracing` events matching `filter` to `file` (appending); returns the file used.
pub fn init(filter: Option<&str>, file: Option<&Path>) -> Result<PathBuf, Error> {
    let filter_text = filter.unwrap_or(DEFAULT_FILTER);
    let env_filter = EnvFilter::try_new(filter_text).map_err(|source| Error::Filter {
        filter: filter_text.to_string(),
        source,
    })?;
    let path = file.map_or_else(default_log_file, Path::to_path_buf);
    let writer = open_private(&path, file.is_none()).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(Mutex::new(writer))
        .with_ansi(false)
        .try_init();
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_log_is_private_in_a_private_directory() {
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("state/zdm");
        let path = dir.join("zdm.log");
        open_private(&path, true).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // An existing, too open log and directory are tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        open_private(&path, true).expect("open again");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
}
