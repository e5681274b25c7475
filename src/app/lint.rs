//! `zdm lint [PATH]...`: the static safety rules (`crate::lint`) over `.sql` files, zdm
//! migration files and directories of them (the migrations directory by default), in the
//! format asked for. Reads files only. The caller turns the outcome into the exit code.

use std::path::PathBuf;

use crate::config::Config;
use crate::lint::report::{self, Format};
use crate::lint::Linted;

/// Lints `paths` (the configured migrations directory when none is given) and renders the
/// findings in `format`.
pub fn run(config: &Config, paths: &[PathBuf], format: Format) -> (Linted, String) {
    let paths = if paths.is_empty() {
        vec![config.migrations_dir.clone()]
    } else {
        paths.to_vec()
    };
    let linted = crate::lint::lint_paths(&paths);
    let text = report::render(&linted, format);
    (linted, text)
}
