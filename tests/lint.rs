//! `zdm lint` as CI runs it, on a corpus of one unsafe statement per rule
//! (`tests/fixtures/lint/unsafe/RULE.sql`, the statement after `-- finds: RULE`) and
//! their safe rewrites (`tests/fixtures/lint/safe/`): each rule at its line, nothing on
//! the rewrites, every output format well-formed, and side by side with squawk on the
//! same corpus: zdm finds every issue squawk finds that is in zdm's rule list.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lint")
        .join(kind)
}

fn zdm_lint(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(common::zdm_binary())
        .arg("lint")
        .args(args)
        .env_remove("ZDM_CONFIG")
        .output()
        .expect("run zdm lint");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// (file name, line) of every finding of `rule` in a `zdm lint --json` report.
fn lines_of(report: &Value, rule: &str) -> Vec<(String, u64)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == rule)
        .map(|f| {
            let path = f["path"].as_str().expect("path");
            let name = Path::new(path).file_name().expect("name").to_string_lossy();
            (name.into_owned(), f["line"].as_u64().expect("line"))
        })
        .collect()
}

/// The line after each `-- finds: RULE` of a corpus file, with the rule.
fn expected(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).expect("read corpus file");
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let rule = line.strip_prefix("-- finds: ")?;
            Some((rule.trim().to_string(), index as u64 + 2))
        })
        .collect()
}

#[test]
fn every_rule_is_found_at_its_statement_and_nothing_on_the_safe_rewrites() {
    let unsafe_dir = corpus("unsafe");
    let (code, out) = zdm_lint(&[unsafe_dir.to_str().expect("path"), "--json"]);
    assert_eq!(code, Some(1), "errors fail the command: {out}");
    let report = json(&out);
    let mut covered = Vec::new();
    for entry in std::fs::read_dir(&unsafe_dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for (rule, line) in expected(&path) {
            assert!(
                lines_of(&report, &rule).contains(&(name.clone(), line)),
                "{rule} not found at {name}:{line}: {out}"
            );
            covered.push(rule);
        }
    }
    for rule in zdm::lint::rules::ALL {
        assert!(
            covered.contains(&rule.id.to_string()),
            "no corpus case for {}",
            rule.id
        );
    }

    let (code, out) = zdm_lint(&[corpus("safe").to_str().expect("path")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
}

#[test]
fn every_output_format_is_well_formed() {
    let file = corpus("unsafe").join("require-concurrent-index-creation.sql");
    let file = file.to_str().expect("path");
    let (_, text) = zdm_lint(&[file]);
    assert!(
        text.contains(
            "require-concurrent-index-creation.sql:3:1: error[require-concurrent-index-creation]"
        ),
        "{text}"
    );
    assert!(text.contains("lock:    SHARE on orders"), "{text}");
    assert!(
        text.contains("instead: the `create_index` operation"),
        "{text}"
    );

    let (_, github) = zdm_lint(&[file, "--format", "github"]);
    assert!(
        github.starts_with("::error file=") && github.contains(",line=3,col=1,"),
        "{github}"
    );
    let (_, gitlab) = zdm_lint(&[file, "--format", "gitlab"]);
    let gitlab = json(&gitlab);
    assert_eq!(gitlab[0]["check_name"], "require-concurrent-index-creation");
    assert_eq!(gitlab[0]["location"]["lines"]["begin"], 3);
    assert_eq!(gitlab[0]["fingerprint"].as_str().map(str::len), Some(64));
    let (_, sarif) = zdm_lint(&[file, "--format", "sarif"]);
    let sarif = json(&sarif);
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "require-concurrent-index-creation");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        3
    );
    let (code, out) = zdm_lint(&[file, "--format", "yaml"]);
    assert_eq!(code, Some(2), "a usage error: {out}");
}

#[test]
fn raw_sql_of_zdm_files_is_linted_and_the_sample_migrations_are_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_index.toml"),
        "description = \"an index the hard way\"\n\n[[operations]]\nop = \"raw_sql\"\n\
         up = \"\"\"\nCREATE INDEX CONCURRENTLY orders_placed ON orders (placed_at);\n\"\"\"\n\
         down = \"DROP INDEX CONCURRENTLY orders_placed;\"\n",
    )
    .expect("write");
    let (code, out) = zdm_lint(&[dir.path().to_str().expect("path"), "--json"]);
    assert_eq!(code, Some(1), "{out}");
    let report = json(&out);
    assert_eq!(
        lines_of(&report, "concurrently-in-transaction"),
        vec![
            ("0001_index.toml".to_string(), 6),
            ("0001_index.toml".to_string(), 8)
        ],
        "zdm runs raw_sql in a transaction: CONCURRENTLY fails there; {out}"
    );
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let (code, out) = zdm_lint(&["--dir", samples.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{out}");
}

/// squawk's rules that are in zdm's rule list, and the zdm rules that cover each.
const SQUAWK_TO_ZDM: &[(&str, &[&str])] = &[
    (
        "require-concurrent-index-creation",
        &["require-concurrent-index-creation"],
    ),
    (
        "require-concurrent-index-deletion",
        &["require-concurrent-index-deletion"],
    ),
    // squawk also says it of a VALIDATE in the transaction of the ADD … NOT VALID.
    (
        "constraint-missing-not-valid",
        &[
            "constraint-missing-not-valid",
            "disallowed-unique-constraint",
            "validate-in-same-transaction",
        ],
    ),
    (
        "adding-foreign-key-constraint",
        &["constraint-missing-not-valid"],
    ),
    (
        "adding-not-nullable-field",
        &["set-not-null-without-check", "adding-not-nullable-field"],
    ),
    ("adding-required-field", &["adding-not-nullable-field"]),
    (
        "adding-field-with-default",
        &["adding-field-with-volatile-default"],
    ),
    ("changing-column-type", &["changing-column-type"]),
    (
        "disallowed-unique-constraint",
        &["disallowed-unique-constraint"],
    ),
    (
        "adding-primary-key-constraint",
        &["disallowed-unique-constraint"],
    ),
    ("renaming-column", &["renaming-column"]),
    ("renaming-table", &["renaming-table"]),
    ("ban-drop-column", &["ban-drop-column"]),
    ("ban-drop-table", &["ban-drop-table"]),
    ("require-lock-timeout", &["require-lock-timeout"]),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["concurrently-in-transaction"],
    ),
    ("prefer-bigint-over-int", &["prefer-bigint-over-int"]),
    ("prefer-bigint-over-smallint", &["prefer-bigint-over-int"]),
    ("prefer-text-field", &["prefer-text-field"]),
    ("prefer-timestamp-tz", &["prefer-timestamptz"]),
    ("prefer-identity", &["prefer-identity"]),
];

#[test]
fn zdm_finds_every_issue_squawk_finds_on_the_same_corpus() {
    let Ok(version) = Command::new("squawk").arg("--version").output() else {
        panic!(
            "squawk is not installed: `pip install squawk-cli` (.ci/run installs it); this \
             test compares zdm lint with it"
        );
    };
    assert!(version.status.success());
    let mut compared = 0;
    // The safe rewrites are not compared: there squawk also flags what zdm knows is safe
    // (a column or table dropped right after this file created it), see docs/lint.md.
    for kind in ["unsafe"] {
        let dir = corpus(kind);
        let (_, out) = zdm_lint(&[dir.to_str().expect("path"), "--json"]);
        let report = json(&out);
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let output = Command::new("squawk")
                .args(["--reporter", "json"])
                .arg(&path)
                .output()
                .expect("run squawk");
            let found = json(&String::from_utf8_lossy(&output.stdout));
            for finding in found.as_array().expect("squawk findings") {
                let rule = finding["rule_name"].as_str().expect("rule_name");
                let Some((_, ours)) = SQUAWK_TO_ZDM.iter().find(|(theirs, _)| *theirs == rule)
                else {
                    continue;
                };
                compared += 1;
                let in_file = ours
                    .iter()
                    .flat_map(|ours| lines_of(&report, ours))
                    .any(|(file, _)| file == name);
                // squawk's lines are 0-based; require-lock-timeout is said once per file.
                let line = finding["line"].as_u64().expect("line") + 1;
                let at_line =
                    ours.iter()
                        .flat_map(|ours| lines_of(&report, ours))
                        .any(|(file, at)| {
                            file == name && (at == line || *ours == ["require-lock-timeout"])
                        });
                assert!(
                    in_file && at_line,
                    "squawk finds {rule} at {name}:{line}, zdm does not ({ours:?}): {out}"
                );
            }
        }
    }
    assert!(compared >= 15, "the corpus compares too little: {compared}");
}

#[test]
fn docs_lint_md_lists_every_rule_with_its_severity() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lint.md"))
        .expect("docs/lint.md");
    for rule in zdm::lint::rules::ALL {
        let row = format!("| `{}` | {} |", rule.id, rule.severity.word());
        assert!(docs.contains(&row), "docs/lint.md lacks the row {row}");
    }
    let rows = docs.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        rows,
        zdm::lint::rules::ALL.len(),
        "docs/lint.md lists a rule zdm lacks"
    );
}
