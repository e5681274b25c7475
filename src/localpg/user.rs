//! The OS account the servers run as: PostgreSQL refuses root, so root hands them to an unprivileged one.

use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use super::Error;

/// Accounts tried, in order, when zdm runs as root; the last is created if none exists.
const CANDIDATES: [&str; 2] = ["postgres", "zdm-pg"];

/// Who runs `initdb`, `pg_ctl` and the servers.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    name: String,
    uid: Uid,
    gid: Gid,
    /// True when this process is root and every server command must switch to `uid`.
    switch: bool,
}

impl ServiceUser {
    /// The current user, or an unprivileged account (created if needed) when running as root.
    pub fn for_this_process() -> Result<Self, Error> {
        let me = Uid::effective();
        if !me.is_root() {
            let name = User::from_uid(me)
                .ok()
                .flatten()
                .map(|user| user.name)
                .unwrap_or_else(|| me.to_string());
            return Ok(ServiceUser {
                name,
                uid: me,
                gid: Gid::effective(),
                switch: false,
            });
        }
        for name in CANDIDATES {
            if let Some(user) = lookup(name)? {
                return Ok(Self::switching_to(user));
            }
        }
        let name = CANDIDATES[CANDIDATES.len() - 1];
        create_system_user(name)?;
        let user = lookup(name)?.ok_or_else(|| Error::ServiceUser {
            detail: format!("user {name} was created but cannot be found"),
        })?;
        Ok(Self::switching_to(user))
    }

    fn switching_to(user: User) -> Self {
        ServiceUser {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            switch: true,
        }
    }

    /// The account's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's numeric id.
    pub fn uid(&self) -> u32 {
        self.uid.as_raw()
    }

    /// A command that runs `program` as this user, from `cwd` (which it can read).
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command.current_dir(cwd);
        if self.switch {
            command.uid(self.uid.as_raw()).gid(self.gid.as_raw());
            command.env("USER", &self.name).env("LOGNAME", &self.name);
            command.env_remove("HOME");
        }
        command
    }

    /// Hands `path` to this user (a no-op when not switching users).
    pub fn take_ownership(&self, path: &Path) -> Result<(), Error> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid.as_raw()), Some(self.gid.as_raw())).map_err(
            |source| Error::Io {
                action: format!("hand {} to user {}", path.display(), self.name),
                source,
            },
        )
    }
}

fn lookup(name: &str) -> Result<Option<User>, Error> {
    User::from_name(name).map_err(|errno| Error::ServiceUser {
        detail: format!("looking up user {name}: {errno}"),
    })
}

fn create_system_user(name: &str) -> Result<(), Error> {
    let output = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--shell", "/usr/sbin/nologin", name])
        .output()
        .map_err(|source| Error::Spawn {
            program: "useradd".to_string(),
            source,
        })?;
    // Another process may have created it at the same moment (exit code 9).
    if output.status.success() || output.status.code() == Some(9) {
        return Ok(());
    }
    Err(Error::ServiceUser {
        detail: format!(
            "PostgreSQL refuses to run as root and `useradd {name}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}
