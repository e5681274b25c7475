//! `zdm validate`: parse and check every migration file of the directory and list every
//! finding; the caller turns the outcome into the exit code.

use std::io::Write;

use crate::cli::ValidateArgs;
use crate::config::Config;

use super::diagnostic::Diagnostic;
use super::directory::{check_dir, DirCheck};

/// How many findings `zdm validate` prints per file before it only counts the rest.
pub const MAX_SHOWN_PER_FILE: usize = 50;

/// What `zdm validate` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub migrations: usize,
    pub errors: usize,
    pub warnings: usize,
}

impl Outcome {
    /// Whether the command succeeded under the given flags.
    pub fn passed(&self, deny_warnings: bool) -> bool {
        self.errors == 0 && !(deny_warnings && self.warnings > 0)
    }
}

/// Runs `zdm validate` offline: the list of migrations and a summary on `out`, every
/// diagnostic on `err` (`file:line:col: message`). With a database, `zdm validate` runs
/// `crate::plan::validate::run`, which adds the planner's findings.
pub fn run(
    args: &ValidateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, crate::config::Error> {
    let config = Config::load(&args.target.overrides())?;
    let checked = check_dir(&config.migrations_dir);
    Ok(report(&config, &checked, &[], out, err))
}

/// Prints what the files' check found plus `extra` findings (from planning against a
/// database): migrations without an error listed on `out`, every diagnostic on `err`.
pub fn report(
    config: &Config,
    checked: &DirCheck,
    extra: &[Diagnostic],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let io = |result: std::io::Result<()>| result.unwrap_or(());
    // Each file's first findings are shown, then a count: a file with thousands of errors
    // is broken as a whole, and its first ones say how.
    let mut shown: std::collections::HashMap<&std::path::Path, usize> = Default::default();
    let mut order: Vec<&std::path::Path> = Vec::new();
    for diagnostic in checked.all().chain(extra) {
        let count = shown.entry(&diagnostic.path).or_insert_with(|| {
            order.push(&diagnostic.path);
            0
        });
        *count += 1;
        if *count <= MAX_SHOWN_PER_FILE {
            io(writeln!(err, "{diagnostic}"));
        }
    }
    for path in order {
        let count = shown.get(path).copied().unwrap_or(0);
        if count > MAX_SHOWN_PER_FILE {
            let hidden = count - MAX_SHOWN_PER_FILE;
            io(writeln!(
                err,
                "{}: {hidden} more finding{} not shown (the first {MAX_SHOWN_PER_FILE} are above)",
                path.display(),
                if hidden == 1 { "" } else { "s" }
            ));
        }
    }
    let mut migrations = 0;
    for file in &checked.files {
        // A file the database check flagged (an error, or not checked) is not listed valid.
        let flagged = extra.iter().any(|d| d.path == file.path);
        if let (Some(migration), None, false) = (&file.migration, file.errors().next(), flagged) {
            migrations += 1;
            let operations = migration.operations.len();
            io(writeln!(
                out,
                "{:<40} {operations:>2} operation{}  {}",
                migration.name,
                if operations == 1 { "" } else { "s" },
                migration.description.as_deref().unwrap_or("")
            ));
        }
    }
    let outcome = Outcome {
        migrations,
        errors: checked.error_count() + extra.iter().filter(|d| d.is_error()).count(),
        warnings: checked.warning_count() + extra.iter().filter(|d| !d.is_error()).count(),
    };
    io(writeln!(
        out,
        "{}: {} migration file{}, {} valid, {} error{}, {} warning{}",
        config.migrations_dir.display(),
        checked.files.len(),
        if checked.files.len() == 1 { "" } else { "s" },
        outcome.migrations,
        outcome.errors,
        if outcome.errors == 1 { "" } else { "s" },
        outcome.warnings,
        if outcome.warnings == 1 { "" } else { "s" },
    ));
    outcome
}
