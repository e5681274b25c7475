//! What is wrong with a migration file, and exactly where: `file:line:col: message`.

use std::fmt;
use std::path::PathBuf;

/// How bad a finding is: errors stop the migration from loading, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about one file (or the directory, for directory-level problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line and column (in characters); `None` for problems of a whole file.
    pub position: Option<(usize, usize)>,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, "{line}:{column}:")?;
        }
        if self.severity == Severity::Warning {
            f.write_str(" warning:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Why migrations could not be loaded: every error found, one `file:line:col: message`
/// line each, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.diagnostics))]
pub struct LoadErrors {
    pub diagnostics: Vec<Diagnostic>,
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_read_like_compiler_messages() {
        let error = Diagnostic {
            path: PathBuf::from("migrations/0001_a.toml"),
            position: Some((3, 7)),
            severity: Severity::Error,
            message: "unknown key `tabel`".to_string(),
        };
        assert_eq!(
            error.to_string(),
            "migrations/0001_a.toml:3:7: unknown key `tabel`"
        );
        let warning = Diagnostic {
            position: None,
            severity: Severity::Warning,
            ..error.clone()
        };
        assert_eq!(
            warning.to_string(),
            "migrations/0001_a.toml: warning: unknown key `tabel`"
        );
        let errors = LoadErrors {
            diagnostics: vec![error, warning],
        };
        assert_eq!(errors.to_string().lines().count(), 2);
    }
}
