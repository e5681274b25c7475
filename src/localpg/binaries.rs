//! Finding the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Error;

/// The programs every local server needs; a directory is usable only with all of them.
const REQUIRED: [&str; 4] = ["initdb", "pg_ctl", "postgres", "pg_basebackup"];

/// Where to look for the server binaries, in order of preference.
#[derive(Debug, Clone)]
pub struct SearchPaths {
    /// An explicit directory (`ZDM_PG_BINDIR`): when set, nothing else is tried.
    pub explicit: Option<PathBuf>,
    /// The `pg_config` program to ask for `--bindir`.
    pub pg_config: Option<PathBuf>,
    /// The directories of `PATH`.
    pub path: Vec<PathBuf>,
    /// Debian's layout: `<root>/<major>/bin`, newest major first.
    pub versioned_root: PathBuf,
}

impl SearchPaths {
    /// The search a user expects: `ZDM_PG_BINDIR`, `pg_config --bindir`, `PATH`,
    /// then the newest `/usr/lib/postgresql/*/bin`.
    pub fn from_env() -> Self {
        let path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let pg_config = path
            .iter()
            .map(|dir| dir.join("pg_config"))
            .find(|candidate| candidate.is_file());
        SearchPaths {
            explicit: std::env::var_os("ZDM_PG_BINDIR").map(PathBuf::from),
            pg_config,
            path,
            versioned_root: PathBuf::from("/usr/lib/postgresql"),
        }
    }
}

/// A directory holding a complete set of server binaries, and their major version.
#[derive(Debug, Clone)]
pub struct Binaries {
    bindir: PathBuf,
    major_version: u32,
}

impl Binaries {
    /// Finds the binaries the way [`SearchPaths::from_env`] describes.
    pub fn locate() -> Result<Self, Error> {
        Self::locate_in(&SearchPaths::from_env())
    }

    /// Finds the binaries in the given places, or says which package provides them.
    pub fn locate_in(search: &SearchPaths) -> Result<Self, Error> {
        if let Some(dir) = &search.explicit {
            return if is_complete(dir) {
                Self::at(dir)
            } else {
                Err(Error::BinariesNotFound {
                    searched: format!("ZDM_PG_BINDIR={}", dir.display()),
                })
            };
        }
        let mut searched = Vec::new();
        if let Some(pg_config) = &search.pg_config {
            if let Some(dir) = pg_config_bindir(pg_config) {
                if is_complete(&dir) {
                    return Self::at(&dir);
                }
                searched.push(dir.display().to_string());
            }
        }
        if let Some(dir) = search.path.iter().find(|dir| is_complete(dir)) {
            return Self::at(dir);
        }
        searched.push("PATH".to_string());
        if let Some(dir) = newest_versioned_bindir(&search.versioned_root) {
            return Self::at(&dir);
        }
        searched.push(format!("{}/*/bin", search.versioned_root.display()));
        Err(Error::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    fn at(dir: &Path) -> Result<Self, Error> {
        let postgres = dir.join("postgres");
        let output = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|source| Error::Spawn {
                program: postgres.display().to_string(),
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let major_version = parse_major_version(&text).ok_or_else(|| Error::Version {
            output: text.trim().to_string(),
        })?;
        Ok(Binaries {
            bindir: dir.to_path_buf(),
            major_version,
        })
    }

    /// The full path of one of the server programs.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// The directory the programs are in.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server's major version (e.g. 15).
    pub fn major_version(&self) -> u32 {
        self.major_version
    }
}

fn is_complete(dir: &Path) -> bool {
    REQUIRED.iter().all(|tool| dir.join(tool).is_file())
}

fn pg_config_bindir(pg_config: &Path) -> Option<PathBuf> {
    let output = Command::new(pg_config).arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn newest_versioned_bindir(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            is_complete(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// Reads the major version from `postgres (PostgreSQL) 15.18 (Debian ...)`.
fn parse_major_version(text: &str) -> Option<u32> {
    let version = text.split_whitespace().find(|word| {
        word.chars()
            .next()
            .is_some_and(|first| first.is_ascii_digit())
    })?;
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_major_versions() {
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17beta2"),
            Some(17)
        );
        assert_eq!(parse_major_version("postgres (PostgreSQL)"), None);
    }

    #[test]
    fn missing_binaries_name_the_package_to_install() {
        let empty = std::env::temp_dir().join("zdm-no-binaries-here");
        let search = SearchPaths {
            explicit: None,
            pg_config: None,
            path: vec![empty.clone()],
            versioned_root: empty,
        };
        let message = Binaries::locate_in(&search)
            .expect_err("nothing to find")
            .to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("ZDM_PG_BINDIR"), "{message}");
    }

    #[test]
    fn an_explicit_directory_without_binaries_is_refused() {
        let search = SearchPaths {
            explicit: Some(PathBuf::from("/nonexistent/pg/bin")),
            pg_config: None,
            path: Vec::new(),
            versioned_root: PathBuf::from("/usr/lib/postgresql"),
        };
        let message = Binaries::locate_in(&search)
            .expect_err("explicit dir is empty")
            .to_string();
        assert!(message.contains("/nonexistent/pg/bin"), "{message}");
    }
}
