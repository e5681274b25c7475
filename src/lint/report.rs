//! What `zdm lint` prints: text for people, JSON for scripts, and the formats CI systems
//! annotate pull requests with (GitHub workflow commands, GitLab code quality, SARIF).

use std::str::FromStr;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::rules::{self, Severity};
use super::{Linted, Located};

/// An output format of `zdm lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
    /// GitLab code quality report (a JSON array).
    Gitlab,
    /// SARIF 2.1.0 (GitHub code scanning and most CI systems).
    Sarif,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "github" => Ok(Format::Github),
            "gitlab" => Ok(Format::Gitlab),
            "sarif" => Ok(Format::Sarif),
            other => Err(format!(
                "unknown format {other:?}: text, json, github, gitlab or sarif"
            )),
        }
    }
}

/// `linted` in `format`.
pub fn render(linted: &Linted, format: Format) -> String {
    match format {
        Format::Text => text(linted),
        Format::Json => pretty(&json_report(linted)),
        Format::Github => github(linted),
        Format::Gitlab => pretty(&gitlab(linted)),
        Format::Sarif => pretty(&sarif(linted)),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    text.push('\n');
    text
}

fn position(found: &Located) -> String {
    let mut at = format!("{}:{}:{}", found.path.display(), found.line, found.column);
    if let Some(within) = &found.within {
        at.push_str(&format!(" ({within})"));
    }
    at
}

/// One line a person reads: the rule, what it found and what to do.
fn message(found: &Located) -> String {
    let rule = found.finding.rule;
    format!(
        "{}: {}. Instead: {}",
        found.finding.detail, rule.why, rule.instead
    )
}

fn text(linted: &Linted) -> String {
    let mut out = String::new();
    for problem in &linted.problems {
        let at = match problem.position {
            Some((line, column)) => format!("{}:{line}:{column}", problem.path.display()),
            None => problem.path.display().to_string(),
        };
        out.push_str(&format!("{at}: error: {}\n", problem.message));
    }
    for found in &linted.findings {
        let rule = found.finding.rule;
        out.push_str(&format!(
            "{}: {}[{}]: {}\n",
            position(found),
            rule.severity.word(),
            rule.id,
            found.finding.detail
        ));
        if let Some(lock) = &found.finding.lock {
            out.push_str(&format!("    lock:    {lock}\n"));
        }
        out.push_str(&format!("    why:     {}\n", rule.why));
        out.push_str(&format!("    instead: {}\n", rule.instead));
    }
    let errors = linted.count(Severity::Error) + linted.problems.len();
    let warnings = linted.count(Severity::Warning);
    out.push_str(&format!(
        "{} file(s) linted: {errors} error(s), {warnings} warning(s)\n",
        linted.files
    ));
    if errors + warnings > 0 {
        out.push_str(
            "(a rule is turned off for one statement by `-- zdm-lint: ignore RULE` before \
             it, for a file by `-- zdm-lint: ignore-file RULE`)\n",
        );
    }
    out
}

fn json_report(linted: &Linted) -> Value {
    let findings: Vec<Value> = linted
        .findings
        .iter()
        .map(|found| {
            let rule = found.finding.rule;
            json!({
                "rule": rule.id,
                "severity": rule.severity,
                "path": found.path.display().to_string(),
                "line": found.line,
                "column": found.column,
                "within": found.within,
                "lock": found.finding.lock,
                "detail": found.finding.detail,
                "title": rule.title,
                "why": rule.why,
                "instead": rule.instead,
            })
        })
        .collect();
    let problems: Vec<Value> = linted
        .problems
        .iter()
        .map(|problem| {
            json!({
                "path": problem.path.display().to_string(),
                "line": problem.position.map(|p| p.0),
                "column": problem.position.map(|p| p.1),
                "message": problem.message,
            })
        })
        .collect();
    json!({
        "files": linted.files,
        "errors": linted.count(Severity::Error),
        "warnings": linted.count(Severity::Warning),
        "findings": findings,
        "problems": problems,
    })
}

/// A workflow command's data and properties are escaped as GitHub's runner reads them.
fn github_escape(text: &str, property: bool) -> String {
    let mut escaped = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        escaped = escaped.replace(':', "%3A").replace(',', "%2C");
    }
    escaped
}

fn github(linted: &Linted) -> String {
    let mut out = String::new();
    for problem in &linted.problems {
        let (line, column) = problem.position.unwrap_or((1, 1));
        out.push_str(&format!(
            "::error file={},line={line},col={column},title=zdm lint::{}\n",
            github_escape(&problem.path.display().to_string(), true),
            github_escape(&problem.message, false)
        ));
    }
    for found in &linted.findings {
        let rule = found.finding.rule;
        let level = match rule.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "::{level} file={},line={},col={},title={}::{}\n",
            github_escape(&found.path.display().to_string(), true),
            found.line,
            found.column,
            github_escape(&format!("zdm lint {}", rule.id), true),
            github_escape(&message(found), false)
        ));
    }
    out
}

/// A stable id of a finding across runs (GitLab compares reports by it).
fn fingerprint(found: &Located) -> String {
    let mut hash = Sha256::new();
    hash.update(found.finding.rule.id.as_bytes());
    hash.update(found.path.display().to_string().as_bytes());
    hash.update(found.finding.detail.as_bytes());
    hash.update(found.line.to_string().as_bytes());
    format!("{:x}", hash.finalize())
}

fn gitlab(linted: &Linted) -> Value {
    let mut issues: Vec<Value> = linted
        .findings
        .iter()
        .map(|found| {
            let rule = found.finding.rule;
            json!({
                "description": format!("{}: {}", rule.id, message(found)),
                "check_name": rule.id,
                "fingerprint": fingerprint(found),
                "severity": match rule.severity {
                    Severity::Error => "major",
                    Severity::Warning => "minor",
                },
                "location": {
                    "path": found.path.display().to_string(),
                    "lines": { "begin": found.line },
                },
            })
        })
        .collect();
    issues.extend(linted.problems.iter().map(|problem| {
        json!({
            "description": problem.message,
            "check_name": "unreadable",
            "fingerprint": format!("{:x}", Sha256::digest(format!("{}{}", problem.path.display(), problem.message))),
            "severity": "blocker",
            "location": {
                "path": problem.path.display().to_string(),
                "lines": { "begin": problem.position.map_or(1, |p| p.0) },
            },
        })
    }));
    Value::Array(issues)
}

fn sarif(linted: &Linted) -> Value {
    let rules: Vec<Value> = rules::ALL
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "shortDescription": { "text": rule.title },
                "fullDescription": { "text": rule.why },
                "help": { "text": format!("Instead: {}", rule.instead) },
                "defaultConfiguration": { "level": rule.severity.word() },
            })
        })
        .collect();
    let location = |path: &std::path::Path, line: usize, column: usize| {
        json!([{
            "physicalLocation": {
                "artifactLocation": { "uri": path.display().to_string() },
                "region": { "startLine": line, "startColumn": column },
            }
        }])
    };
    let mut results: Vec<Value> = linted
        .findings
        .iter()
        .map(|found| {
            let rule = found.finding.rule;
            json!({
                "ruleId": rule.id,
                "level": rule.severity.word(),
                "message": { "text": message(found) },
                "locations": location(&found.path, found.line, found.column),
            })
        })
        .collect();
    results.extend(linted.problems.iter().map(|problem| {
        let (line, column) = problem.position.unwrap_or((1, 1));
        json!({
            "level": "error",
            "message": { "text": problem.message },
            "locations": location(&problem.path, line, column),
        })
    }));
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": { "name": "zdm", "version": env!("CARGO_PKG_VERSION"), "rules": rules } },
            "results": results,
        }],
    })
}
