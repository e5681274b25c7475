//! A directory of migration files: which files are migrations, their order, and loading
//! them all with every error reported at once.
//!
//! The rule: a migration is a regular file (or a link to one) directly in the directory
//! whose name ends in `.toml` or `.json` and does not start with `.`. Everything else
//! (README.md, .gitkeep, sub-directories, editor files such as `.0001_a.toml.swp`,
//! `0001_a.toml~` or `0001_a.toml.bak`) is skipped; a skipped file that looks meant as a
//! migration (`.TOML`, `.yaml`, `.yml`, `.sql`) gets a warning. Migrations run in byte order of their
//! names, so number them with leading zeros (`0001_`, `0002_`, ...). Two files with the same
//! stem (`0003_x.toml` and `0003_x.json`) are an error: a name must mean one migration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{check, Checked, Diagnostic, LoadErrors, Migration, Severity};

/// Every file of a directory, checked, in migration order.
#[derive(Debug, Clone)]
pub struct DirCheck {
    pub dir: PathBuf,
    /// One per migration file, ordered by name.
    pub files: Vec<Checked>,
    /// Problems of the directory itself (unreadable, duplicate names).
    pub diagnostics: Vec<Diagnostic>,
}

impl DirCheck {
    /// Every diagnostic: the directory's first, then each file's in order.
    pub fn all(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .chain(self.files.iter().flat_map(|file| file.diagnostics.iter()))
    }

    pub fn error_count(&self) -> usize {
        self.all().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.all().filter(|d| !d.is_error()).count()
    }
}

/// Whether a directory entry's name makes it a migration file (see the module doc).
pub fn is_migration_file_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".toml") || name.ends_with(".json"))
}

/// A skipped file that someone may have meant as a migration (`0004_x.TOML`, `0004_x.yaml`,
/// `0004_x.sql`): skipping it silently could leave a change out of a release.
fn looks_like_a_migration(name: &str) -> bool {
    let Some((_, extension)) = name.rsplit_once('.') else {
        return false;
    };
    !name.starts_with('.')
        && ["toml", "json", "yaml", "yml", "sql"].contains(&extension.to_ascii_lowercase().as_str())
}

/// Reads, parses and checks every migration file of `dir`. Never fails: a missing
/// directory or an unreadable file is a diagnostic like any other.
pub fn check_dir(dir: &Path) -> DirCheck {
    let mut result = DirCheck {
        dir: dir.to_path_buf(),
        files: Vec::new(),
        diagnostics: Vec::new(),
    };
    let whole = |path: &Path, message: String| Diagnostic {
        path: path.to_path_buf(),
        position: None,
        severity: Severity::Error,
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            result.diagnostics.push(whole(
                dir,
                format!("cannot read the migrations directory: {error}"),
            ));
            return result;
        }
    };

    // stem → every file with that stem, so duplicates can name each other.
    let mut by_stem: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                result.diagnostics.push(whole(
                    dir,
                    format!("cannot list the migrations directory: {error}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            let lossy = entry.file_name().to_string_lossy().into_owned();
            if is_migration_file_name(&lossy) {
                result.diagnostics.push(whole(
                    &path,
                    "the file name is not UTF-8; a migration's name is its file stem".to_string(),
                ));
            }
            continue;
        };
        // Follows links: a link to a migration file is a migration file.
        if !is_migration_file_name(&name) || !path.is_file() {
            if looks_like_a_migration(&name) && path.is_file() {
                result.diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    ..whole(
                        &path,
                        "skipped: only files ending in .toml or .json (lower case) are migrations; \
                         rename it if it is one"
                            .to_string(),
                    )
                });
            }
            continue;
        }
        let stem = Path::new(&name)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default()
            .to_string();
        by_stem.entry(stem).or_default().push(path);
    }

    for (stem, mut paths) in by_stem {
        paths.sort();
        if let [first, others @ ..] = paths.as_slice() {
            for other in others {
                result.diagnostics.push(whole(
                    other,
                    format!(
                        "migration `{stem}` is defined twice: by {} and by {}; \
                         a name must mean one migration, remove or rename one of them",
                        first.display(),
                        other.display()
                    ),
                ));
            }
        }
        // Duplicates are still checked: every error of every file is worth knowing.
        for path in &paths {
            let mut checked = match std::fs::read(path) {
                Ok(bytes) => check(path, &bytes),
                Err(error) => Checked {
                    path: path.clone(),
                    migration: None,
                    source: None,
                    diagnostics: vec![whole(path, format!("cannot read: {error}"))],
                },
            };
            if paths.len() > 1 {
                // Neither file can be the migration of that name.
                checked.migration = None;
            }
            result.files.push(checked);
        }
    }
    result
}

/// Every migration of `dir` in order, or every error found in any of them (warnings do not
/// stop loading; `zdm validate` shows them).
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, LoadErrors> {
    Ok(load_checked(dir)?
        .into_iter()
        .filter_map(|file| file.migration)
        .collect())
}

/// Like [`load_dir`], keeping each file's positions (for later checks' `file:line:col`).
pub fn load_checked(dir: &Path) -> Result<Vec<Checked>, LoadErrors> {
    let checked = check_dir(dir);
    let errors: Vec<Diagnostic> = checked.all().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(LoadErrors {
            diagnostics: errors,
        });
    }
    Ok(checked
        .files
        .into_iter()
        .filter(|file| file.migration.is_some())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_toml_and_json_files_are_migrations() {
        for name in ["0001_a.toml", "0002_b.json", "x.toml"] {
            assert!(is_migration_file_name(name), "{name}");
        }
        for name in [
            "README.md",
            ".gitkeep",
            ".0001_a.toml.swp",
            ".#0001_a.toml",
            "0001_a.toml~",
            "0001_a.toml.bak",
            "#0001_a.toml#",
            "0001_a.TOML",
            "0001_a.yaml",
        ] {
            assert!(!is_migration_file_name(name), "{name}");
        }
        assert!(looks_like_a_migration("0001_a.TOML"));
        assert!(looks_like_a_migration("0001_a.sql"));
        assert!(!looks_like_a_migration("README.md"));
        assert!(!looks_like_a_migration(".0001_a.yaml"));
        assert!(!looks_like_a_migration("0001_a.toml~"));
    }
}
