//! The command line as a user meets it: help text, and clear refusals of bad input.

mod common;

use std::process::{Command, Output};

fn zdm(args: &[&str]) -> Output {
    Command::new(common::zdm_binary())
        .args(args)
        .env(
            "ZDM_LOG_FILE",
            std::env::temp_dir().join("zdm-test-cli.log"),
        )
        .output()
        .expect("run zdm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_says_what_zdm_is_and_lists_the_commands() {
    let output = zdm(&["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    assert!(
        help.contains("Zero-downtime PostgreSQL schema migrations"),
        "{help}"
    );
    assert!(help.contains("demo"), "{help}");
    assert!(help.contains("--log"), "{help}");
}

#[test]
fn every_subcommand_has_help() {
    let output = zdm(&["demo", "--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    for flag in [
        "--scale",
        "--no-console",
        "--no-replica",
        "--workload-sessions",
        "--workload-rate",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn no_command_shows_help_and_fails() {
    let output = zdm(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("Usage: zdm"));
}

#[test]
fn an_unknown_flag_is_refused_clearly() {
    let output = zdm(&["demo", "--sclae", "0.1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("unexpected argument '--sclae'"), "{stderr}");
    assert!(
        stderr.contains("--scale"),
        "suggests the right flag: {stderr}"
    );
}

#[test]
fn an_unknown_command_is_refused_clearly() {
    let output = zdm(&["demoo"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("unrecognized subcommand 'demoo'"));
}

#[test]
fn bad_values_are_refused_with_what_was_expected() {
    for (args, expected) in [
        (vec!["demo", "--scale", "lots"], "expected a number"),
        (vec!["demo", "--scale", "0"], "must be from"),
        (vec!["demo", "--scale", "-2"], "must be from"),
        (
            vec!["demo", "--workload-sessions", "500"],
            "500 is not in 0..=64",
        ),
        (vec!["demo", "--workload-rate", "fast"], "expected a number"),
    ] {
        let output = zdm(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_log_filter_is_refused_clearly() {
    let output = zdm(&["--log", "zdm=loud", "demo", "--scale", "0.001"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("invalid log level or filter"));
}

/// `zdm status` with `DATABASE_URL` set to `url`, from an empty directory.
fn status_with_url(url: &str) -> Output {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    command
        .arg("status")
        .current_dir(dir.path())
        .env("DATABASE_URL", url)
        .env("ZDM_LOG_FILE", dir.path().join("zdm.log"))
        .output()
        .expect("run zdm")
}

#[test]
fn an_unreadable_database_url_never_shows_its_password() {
    // One slash short, and a password holding a '/': closed port, nothing listens.
    for url in [
        "postgresql:/secretuser:PW@127.0.0.1:9/e7",
        "postgres://secretuser:P/W@127.0.0.1:9/e7",
    ] {
        let output = status_with_url(url);
        assert!(!output.status.success());
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            !said.contains("PW") && !said.contains("P/W") && !said.contains("secretuser"),
            "{url}: {said}"
        );
        assert!(said.contains("postgres"), "the scheme is named: {said}");
    }
}

#[test]
fn an_empty_database_url_is_no_url() {
    let output = status_with_url("");
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(said.contains("no database to work on"), "{said}");
}
