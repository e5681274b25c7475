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

#[test]
fn help_lists_every_exit_code() {
    let output = zdm(&["--help"]);
    let help = text(&output.stdout);
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "130 "] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code} missing from:\n{help}"
        );
    }
    assert!(help.contains("stopped by the operator"), "{help}");
}

#[test]
fn completions_are_valid_shell_scripts() {
    let bash = zdm(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    for subcommand in ["start", "complete", "gates", "ctl", "completions", "man"] {
        assert!(script.contains(subcommand), "{subcommand}: {script}");
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("zdm.bash");
    std::fs::write(&file, &script).expect("write");
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash -n");
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    // Loaded into a shell, it registers zdm's completion.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p zdm", file.display()))
        .output()
        .expect("bash");
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert!(text(&loaded.stdout).contains("zdm"));

    let zsh = zdm(&["completions", "zsh"]);
    assert!(text(&zsh.stdout).starts_with("#compdef zdm"));
    let fish = zdm(&["completions", "fish"]);
    assert!(text(&fish.stdout).contains("complete -c zdm"));
    let other = zdm(&["completions", "tcsh"]);
    assert_eq!(other.status.code(), Some(2));
}

#[test]
fn the_man_page_comes_from_the_command_line() {
    let output = zdm(&["man"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let page = text(&output.stdout);
    for heading in [
        ".TH zdm 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(heading), "{heading} missing:\n{page}");
    }
    for subcommand in ["zdm\\-start", "zdm\\-gates", "zdm\\-ctl"] {
        assert!(page.contains(subcommand), "{subcommand} missing:\n{page}");
    }
    assert!(page.contains("Exit codes"), "{page}");
    // Rendered by man itself when it is there.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("zdm.1");
    std::fs::write(&file, &page).expect("write");
    if let Ok(rendered) = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
    {
        if rendered.status.success() {
            let shown = text(&rendered.stdout);
            assert!(shown.contains("SYNOPSIS"), "{shown}");
            assert!(shown.contains("zdm-start"), "{shown}");
        }
    }
}

#[test]
fn validate_prints_json_for_machines() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations");
    let output = command
        .args(["validate", "--json", "--dir"])
        .arg(&samples)
        .current_dir(dir.path())
        .env("ZDM_LOG_FILE", dir.path().join("zdm.log"))
        .output()
        .expect("run zdm");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["errors"], 0, "{json:#}");
    assert_eq!(json["valid"].as_array().map(Vec::len), Some(21), "{json:#}");
    assert_eq!(json["valid"][0]["name"], "0001_orders_add_status");
    assert_eq!(json["database_checked"], false);

    // A broken file: its error with line and column, and exit 1.
    std::fs::write(
        dir.path().join("0001_bad.toml"),
        "[[operations]]\nop = \"add_colum\"\n",
    )
    .expect("file");
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    let output = command
        .args(["validate", "--json", "--dir", "."])
        .current_dir(dir.path())
        .env("ZDM_LOG_FILE", dir.path().join("zdm.log"))
        .output()
        .expect("run zdm");
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let first = &json["diagnostics"][0];
    assert_eq!(first["severity"], "error", "{json:#}");
    assert_eq!(first["line"], 2, "{json:#}");
    assert!(first["column"].is_number(), "{json:#}");
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("add_colum")),
        "{json:#}"
    );
}
