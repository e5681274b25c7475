//! Finding running migrations: every live control socket in the runtime directory, and
//! the one a command means (named, or the only one running).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::address::{RunInfo, Target, SOCKET_SUFFIX};
use super::client::Client;
use super::error::Error;

/// A live socket answers `info` within this long; a hung one is left out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One running migration, reachable at `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub path: PathBuf,
    pub info: RunInfo,
}

/// Every run whose socket in `dir` answers, sorted by migration. Stale sockets (of dead
/// processes) and other files are skipped; a missing directory means none runs.
pub async fn discover(dir: &Path) -> Vec<Running> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_socket()))
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(SOCKET_SUFFIX))
        .collect();
    let probes = sockets
        .into_iter()
        .map(|path| async move { probe(&path).await.map(|info| Running { path, info }) });
    let mut running: Vec<Running> = futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect();
    running.sort_by(|a, b| {
        (a.info.migration.as_str(), a.info.target.to_string())
            .cmp(&(b.info.migration.as_str(), b.info.target.to_string()))
    });
    running
}

/// Who serves the socket at `path`, if it answers within a short timeout (2 s).
pub async fn probe(path: &Path) -> Option<RunInfo> {
    let info = async { Client::connect(path).await?.info().await };
    tokio::time::timeout(PROBE_TIMEOUT, info).await.ok()?.ok()
}

/// The run a command means, among the runs of `target` only (a command aimed at one
/// database never reaches another's run): the one named `migration`, or the only one. No
/// target is refused: on a shared account a bare `zdm ctl pause` must not pause whatever
/// run exists. Runs of other databases are counted in the errors, never named.
pub async fn find(
    dir: &Path,
    target: Option<&Target>,
    migration: Option<&str>,
) -> Result<Running, Error> {
    let running = discover(dir).await;
    let Some(target) = target else {
        return Err(Error::NoDatabase {
            others: others(running.len(), ""),
        });
    };
    let (mine, theirs): (Vec<Running>, Vec<Running>) = running
        .into_iter()
        .partition(|run| &run.info.target == target);
    let mut matching: Vec<Running> = match migration {
        Some(name) => mine
            .into_iter()
            .filter(|run| run.info.migration == name)
            .collect(),
        None => mine,
    };
    match matching.len() {
        0 => Err(Error::NotRunning {
            named: migration.map_or_else(String::new, |name| format!(" named {name}")),
            target: target.to_string(),
            others: others(theirs.len(), " other"),
        }),
        1 => Ok(matching.remove(0)),
        count => Err(Error::Ambiguous {
            count,
            target: target.to_string(),
            names: matching
                .iter()
                .map(|run| run.info.migration.clone())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// "; 2 runs of other databases are not shown", or nothing.
fn others(count: usize, other: &str) -> String {
    match count {
        0 => String::new(),
        1 => format!(" (1 run of an{other} database is not shown)"),
        n => format!(" ({n} runs of{other} databases are not shown)"),
    }
}
