//! README.md's commands, run as printed against `zdm demo --no-console`, in order: every
//! block of shell commands outside the Quick start (indented or fenced, its first line a
//! command). Each command must exit as [`EXPECTED`] says and print its key phrase; a
//! README command without an entry there, or an entry the README no longer has, fails
//! the test, so the README and this list change together.
//!
//! Substitution rules (the only changes made to a printed line):
//! * `<port>` is the port of the primary the demo printed;
//! * `zdm ctl pause | resume | throttle` (words after ` | ` that are single words, so not
//!   a pipe into another command) is one command per alternative, in order, each with the
//!   words before the first alternative;
//! * a synopsis line (it has `[--flag …]`) is not run: each `--flag` it names must be in
//!   `zdm SUBCOMMAND --help`;
//! * a trailing comment (two spaces or more, then `#`) and comment-only lines are dropped.
//!
//! The environment is what a DBA's shell would have after the README's `export`, plus
//! `ZDM_CONFIG` naming a config that holds the backfill to 500 rows/s (so that the `zdm
//! ctl` commands find the run still going), turns the host-CPU and workload throttle
//! inputs off (a busy test machine must not hold the run) and shortens the gates'
//! window to 2 s.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::demo_process::DemoProcess;

/// Every command of the README's blocks (after substitution), with its exit code and a
/// phrase its output (stdout and stderr) must hold; `None`: it prints nothing to check.
const EXPECTED: &[(&str, i32, Option<&str>)] = &[
    ("zdm validate --dir sample-migrations", 0, Some("21 valid, 0 errors")),
    ("zdm plan --dir sample-migrations", 0, Some("Migration 0001_orders_add_status")),
    (
        "zdm start 0001_orders_add_status --dir sample-migrations --detach",
        0,
        Some("start of 0001_orders_add_status runs in the background"),
    ),
    ("zdm ctl status", 0, Some("0001_orders_add_status on 127.0.0.1")),
    ("zdm ctl pause", 0, Some("pausing after the current batch")),
    ("zdm ctl resume", 0, Some("resumed")),
    ("zdm ctl throttle", 0, Some("manual throttle on")),
    ("zdm ctl no-throttle", 0, Some("manual throttle off")),
    ("zdm ctl set batch_target=500ms", 0, Some("batch_target=500ms")),
    ("zdm attach", 0, Some("0001_orders_add_status: now ready to contract")),
    ("zdm status --dir sample-migrations", 0, Some("0001_orders_add_status  ready to contract")),
    ("zdm gates 0001_orders_add_status --dir sample-migrations", 0, Some("[   pass] explain")),
    (
        "zdm complete 0001_orders_add_status --confirm-contract 0001_orders_add_status --dir sample-migrations",
        0,
        Some("0001_orders_add_status: now complete"),
    ),
    ("zdm start --dir sample-migrations", 0, Some("0002_customers_phone_not_null: now ready to contract")),
    ("zdm rollback 0002_customers_phone_not_null", 0, Some("0002_customers_phone_not_null: now rolled back")),
    ("zdm audit", 0, Some("gates: backfill pass")),
    ("zdm top --count 3", 0, Some("sessions")),
    ("source <(zdm completions bash)", 0, None),
    ("zdm man > zdm.1", 0, None),
    ("zdm lint --dir sample-migrations", 0, Some("21 file(s) linted: 0 error(s), 0 warning(s)")),
    ("zdm check --dir sample-migrations --dry-run", 0, Some("check passed")),
];

/// What a README block line asks the test to do.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// `export NAME=VALUE`.
    Export { name: String, value: String },
    /// A synopsis: the subcommand and the flags it lists.
    Synopsis {
        command: Vec<String>,
        flags: Vec<String>,
    },
    /// A command to run as printed (after substitution).
    Run(String),
}

/// The lines of every command block outside the Quick start, in order.
fn readme_commands(readme: &str, port: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut section = String::new();
    let mut fenced = false;
    let mut block: Vec<String> = Vec::new();
    let flush = |block: &mut Vec<String>, section: &str, lines: &mut Vec<Line>| {
        // A block of commands starts with one at its first column (a screen's ` zdm │`
        // does not).
        let is_commands = block.first().is_some_and(|first| {
            ["zdm ", "export ", "source "]
                .iter()
                .any(|start| first.starts_with(start))
        });
        if is_commands && section != "Quick start" {
            for line in block.iter() {
                for parsed in parse_line(line, port) {
                    // A synopsis continued on the next line is the same subcommand's.
                    let parsed = match (parsed, lines.last()) {
                        (
                            Line::Synopsis { command, flags },
                            Some(Line::Synopsis {
                                command: previous, ..
                            }),
                        ) if command.is_empty() => Line::Synopsis {
                            command: previous.clone(),
                            flags,
                        },
                        (parsed, _) => parsed,
                    };
                    lines.push(parsed);
                }
            }
        }
        block.clear();
    };
    for raw in readme.lines() {
        if raw.starts_with("```") {
            if fenced {
                flush(&mut block, &section, &mut lines);
            }
            fenced = !fenced;
            continue;
        }
        if fenced {
            block.push(raw.to_string());
            continue;
        }
        if let Some(title) = raw.strip_prefix("## ").or_else(|| raw.strip_prefix("### ")) {
            section = title.trim().to_string();
        }
        if let Some(code) = raw.strip_prefix("    ") {
            block.push(code.to_string());
        } else if !raw.trim().is_empty() || block.is_empty() {
            flush(&mut block, &section, &mut lines);
        }
    }
    flush(&mut block, &section, &mut lines);
    lines
}

/// One block line, substituted (see the module's rules).
fn parse_line(line: &str, port: &str) -> Vec<Line> {
    let command = match line.find("  #") {
        Some(at) => &line[..at],
        None => line,
    };
    let command = command.trim().replace("<port>", port);
    if command.is_empty() || command.starts_with('#') {
        return Vec::new();
    }
    if let Some(assignment) = command.strip_prefix("export ") {
        let (name, value) = assignment.split_once('=').expect("export NAME=VALUE");
        return vec![Line::Export {
            name: name.to_string(),
            value: value.to_string(),
        }];
    }
    if command.contains(" [--") || command.starts_with("[--") {
        let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        let subcommand = words
            .iter()
            .take_while(|w| !w.starts_with('['))
            .cloned()
            .collect();
        let flags = words
            .iter()
            .filter_map(|w| {
                let flag = w.trim_start_matches('[');
                flag.starts_with("--")
                    .then(|| flag.trim_end_matches(']').to_string())
            })
            .collect();
        return vec![Line::Synopsis {
            command: subcommand,
            flags,
        }];
    }
    let parts: Vec<&str> = command.split(" | ").collect();
    let alternatives = parts.len() > 1 && parts[1..].iter().all(|p| !p.contains(' '));
    if alternatives {
        let (prefix, first) = parts[0].rsplit_once(' ').expect("words before the first");
        return std::iter::once(first)
            .chain(parts[1..].iter().copied())
            .map(|alternative| Line::Run(format!("{prefix} {alternative}")))
            .collect();
    }
    vec![Line::Run(command)]
}

/// Runs `command` with bash in `cwd`, at most `limit`; its exit code and output.
fn run(command: &str, cwd: &Path, env: &[(String, String)], limit: Duration) -> (i32, String) {
    let out = cwd.join(".readme-out");
    let file = |path: &Path| std::fs::File::create(path).expect("output file");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&out.with_extension("err")))
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{command}` did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default()
        + &std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    (status.code().unwrap_or(-1), text)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_substitution_rules() {
    assert_eq!(
        parse_line("zdm ctl pause | resume | no-throttle", "1"),
        ["pause", "resume", "no-throttle"]
            .map(|w| Line::Run(format!("zdm ctl {w}")))
            .to_vec()
    );
    assert_eq!(
        parse_line("zdm plan | head -1   # a pipe", "1"),
        vec![Line::Run("zdm plan | head -1".to_string())]
    );
    assert_eq!(
        parse_line(
            "export DATABASE_URL=postgres://h:<port>/db   # printed",
            "5432"
        ),
        vec![Line::Export {
            name: "DATABASE_URL".to_string(),
            value: "postgres://h:5432/db".to_string()
        }]
    );
    assert_eq!(
        parse_line("zdm demo [--scale FACTOR] [--no-console]", "1"),
        vec![Line::Synopsis {
            command: vec!["zdm".to_string(), "demo".to_string()],
            flags: vec!["--scale".to_string(), "--no-console".to_string()],
        }]
    );
    assert!(parse_line("                    # a comment line", "1").is_empty());
}

#[test]
fn every_readme_command_does_what_the_readme_says() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let demo = DemoProcess::start(&["--scale", "0.01"]);
    let port = demo
        .primary_url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the primary's port")
        .to_string();
    let lines = readme_commands(&readme, &port);
    assert!(
        lines.iter().any(|l| matches!(l, Line::Run(_))),
        "no command found in README.md"
    );

    let cwd = tempfile::tempdir().expect("dir");
    std::os::unix::fs::symlink(
        repo().join("sample-migrations"),
        cwd.path().join("sample-migrations"),
    )
    .expect("link sample-migrations");
    let config = cwd.path().join("readme-test.toml");
    std::fs::write(
        &config,
        format!(
            "[backfill]\nmax_rows_per_second = 500\n{}[gates]\nwindow_s = 2\n",
            common::THROTTLE_OFF
        ),
    )
    .expect("config");
    let binary_dir = common::zdm_binary()
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env: Vec<(String, String)> = vec![
        ("PATH".to_string(), path),
        ("ZDM_CONFIG".to_string(), config.display().to_string()),
        (
            "ZDM_LOG_FILE".to_string(),
            cwd.path().join("zdm.log").display().to_string(),
        ),
    ];

    let mut ran: Vec<String> = Vec::new();
    for line in lines {
        match line {
            Line::Export { name, value } => env.push((name, value)),
            Line::Synopsis { command, flags } => {
                let mut words = command.clone();
                words[0] = common::zdm_binary().display().to_string();
                words.push("--help".to_string());
                let (code, help) = run(&words.join(" "), cwd.path(), &env, Duration::from_secs(30));
                assert_eq!(code, 0, "{}: {help}", command.join(" "));
                for flag in flags {
                    assert!(
                        help.contains(&flag),
                        "README's `{}` lists {flag}, which its --help does not:\n{help}",
                        command.join(" ")
                    );
                }
            }
            Line::Run(command) => {
                let Some((_, code, phrase)) = EXPECTED.iter().find(|(c, ..)| *c == command) else {
                    panic!(
                        "README.md runs `{command}`, which tests/readme.rs does not know: add \
                         what it must print to EXPECTED"
                    );
                };
                let (got, output) = run(&command, cwd.path(), &env, Duration::from_secs(300));
                assert_eq!(
                    got, *code,
                    "`{command}` exited {got}, the README expects {code}:\n{output}"
                );
                if let Some(phrase) = phrase {
                    assert!(
                        output.contains(phrase),
                        "`{command}` did not print {phrase:?}:\n{output}"
                    );
                }
                ran.push(command);
            }
        }
    }
    for (command, ..) in EXPECTED {
        assert!(
            ran.iter().any(|r| r == command),
            "tests/readme.rs expects `{command}`, which README.md no longer runs"
        );
    }
    // The man page the README's last command wrote is a man page.
    let man = std::fs::read_to_string(cwd.path().join("zdm.1")).expect("zdm.1");
    assert!(man.contains(".TH zdm 1"), "{man}");
    drop(demo);
}
