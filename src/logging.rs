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

/// Sends `tracing` events matching `filter` to `file` (appending); returns the file used.
pub fn init(filter: Option<&str>, file: Option<&Path>) -> Result<PathBuf, Error> {
    let filter_text = filter.unwrap_or(DEFAULT_FILTER);
    let env_filter = EnvFilter::try_new(filter_text).map_err(|source| Error::Filter {
        filter: filter_text.to_string(),
        source,
    })?;
    let path = file.map_or_else(default_log_file, Path::to_path_buf);
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
    }
    let writer = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| Error::File {
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
