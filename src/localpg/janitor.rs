//! Ownership marks on cluster directories, and reaping the servers of clusters whose owner died.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Error, ROOT_PREFIX};

const OWNER_FILE: &str = "owner.pid";

/// Records this process as the owner of a cluster directory.
pub(super) fn write_owner(root: &Path) -> Result<(), Error> {
    let path = root.join(OWNER_FILE);
    std::fs::write(&path, std::process::id().to_string()).map_err(|source| Error::Io {
        action: format!("write {}", path.display()),
        source,
    })
}

/// Stops the servers of every cluster directory whose owning process is gone and removes
/// the directory; returns the directories reaped.
pub fn reap_orphans() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(ROOT_PREFIX));
        let root = entry.path();
        if !is_cluster || !is_orphan(&root) {
            continue;
        }
        kill_servers_in(&root);
        if std::fs::remove_dir_all(&root).is_ok() {
            reaped.push(root);
        }
    }
    reaped
}

/// A cluster directory whose owner is dead. One without an owner file yet may be
/// in the middle of being created, so it counts only once it is a minute old.
fn is_orphan(root: &Path) -> bool {
    match std::fs::read_to_string(root.join(OWNER_FILE)) {
        Ok(text) => text.trim().parse::<i32>().is_ok_and(|pid| !is_alive(pid)),
        Err(_) => std::fs::metadata(root)
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().unwrap_or_default() > Duration::from_secs(60)),
    }
}

/// Whether `pid` is a live process. A zombie (exited, not yet reaped by its parent) is dead.
pub fn is_alive(pid: i32) -> bool {
    // EPERM means it exists but belongs to someone else.
    if matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH)) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

/// Immediately stops every server whose data directory is directly inside `root`.
pub(super) fn kill_servers_in(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            kill_server(&entry.path());
        }
    }
}

/// Stops the postmaster of `data_dir` with an immediate shutdown, and SIGKILL if it lingers.
pub(super) fn kill_server(data_dir: &Path) {
    let Some(pid) = postmaster_pid(data_dir) else {
        return;
    };
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGQUIT).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_alive(pid.as_raw()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// The pid in `postmaster.pid`, if the file exists and that process is alive.
pub(super) fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid = text.lines().next()?.trim().parse::<i32>().ok()?;
    is_alive(pid).then_some(pid)
}
