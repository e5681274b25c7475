//! `zdm import --from TOOL DIR [--into DIR]`: another tool's migrations written as zdm
//! files (`crate::import`) into the migrations directory, with the report of what became
//! typed and what stayed raw. Reads and writes files only.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::import::{self, Imported, Tool};

/// Imports `from` into `into` (the configured migrations directory by default); the
/// report, and whether every file written validates.
pub fn run(
    config: &Config,
    tool: Tool,
    from: &Path,
    into: Option<&PathBuf>,
) -> Result<(String, bool), import::Error> {
    let into = into.unwrap_or(&config.migrations_dir);
    let imported: Vec<Imported> = import::import(tool, from, into)?;
    let valid = imported.iter().all(|file| file.problems.is_empty());
    let mut report = import::render_report(&imported, into);
    if !valid {
        report.push_str(
            "some files do not validate (PROBLEM above): fix them by hand, then `zdm validate`\n",
        );
    }
    Ok((report, valid))
}
