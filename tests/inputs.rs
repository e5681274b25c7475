//! No input crashes zdm (issue #13): nesting is capped in every input format with a
//! `file:line:col` error (migration JSON and TOML, zdm.toml, control-socket request lines),
//! `zdm validate` shows a bounded number of findings per file and counts the rest, and
//! a property test feeds the migration file decoder and the control-socket request parser
//! random and structured garbage: every input gives an answer, never a panic or an abort.

mod common;

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;

fn validate(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(common::zdm_binary())
        .args(["validate", "--dir"])
        .arg(dir)
        .args(extra)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run zdm");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn deeply_nested_files_are_refused_at_a_position_not_by_a_stack_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("0001_deep.json");
    // The issue's reproduction: 40 KB of `[` then `]`.
    std::fs::write(
        &json,
        format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
    )
    .expect("write");
    let (code, _, stderr) = validate(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:1:65: arrays and tables nested more than 64 deep",
            json.display()
        )),
        "{stderr}"
    );
    std::fs::remove_file(&json).expect("remove");

    let toml = dir.path().join("0001_deep.toml");
    std::fs::write(
        &toml,
        format!("a = {}{}\n", "[".repeat(20_000), "]".repeat(20_000)),
    )
    .expect("write");
    let (code, _, stderr) = validate(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1:", toml.display())),
        "{stderr}"
    );

    // zdm.toml too: refused with its position, not an abort.
    let config = dir.path().join("zdm.toml");
    std::fs::write(
        &config,
        format!("x = {}{}\n", "{a=".repeat(20_000), "}".repeat(20_000)),
    )
    .expect("write");
    let (code, _, stderr) = validate(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    assert!(
        code.is_some_and(|c| c != 0 && c != 134),
        "{code:?} {stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:1:", config.display())),
        "{stderr}"
    );
}

#[test]
fn deeply_nested_sql_gets_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!(
        "[[operations]]\nop = \"raw_sql\"\nup = \"SELECT {}1{}\"\ndown = \"SELECT {}1{}\"\n\n\
         [[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
         column = {{ name = \"c\", type = \"int\" }}\nup = \"{}1{}\"\n",
        "(".repeat(20_000),
        ")".repeat(20_000),
        "ARRAY[".repeat(300),
        "]".repeat(300),
        "ARRAY[".repeat(300),
        "]".repeat(300),
    );
    std::fs::write(dir.path().join("0001_deep_sql.toml"), file).expect("write");
    let (code, _, stderr) = validate(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(":3:6: raw_sql: `up` does not parse as SQL"),
        "{stderr}"
    );
    assert!(!stderr.contains("`down`"), "deep but valid: {stderr}");
    assert!(
        stderr.contains("nested too deeply for zdm to check"),
        "{stderr}"
    );
}

#[test]
fn validate_shows_the_first_findings_of_a_file_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operations = "[[operations]]\nop = \"drop_tabel\"\ntable = \"t\"\n\n".repeat(2_500);
    std::fs::write(dir.path().join("0001_many.toml"), operations).expect("write");
    let (code, stdout, stderr) = validate(dir.path(), &[]);
    assert_eq!(code, Some(1));
    let shown = stderr.lines().filter(|l| l.contains("unknown op")).count();
    assert_eq!(shown, zdm::app::validate::MAX_SHOWN_PER_FILE, "{stderr}");
    assert!(
        stderr.contains("0001_many.toml: 2450 more findings not shown"),
        "{stderr}"
    );
    assert!(stdout.contains("0 valid, 2500 errors"), "{stdout}");
}

#[test]
fn duplicate_keys_are_named_in_both_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_a.toml"),
        "[[operations]]\nop = \"drop_table\"\ntable = \"t\"\ntable = \"u\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("0002_b.json"),
        r#"{"operations": [{"op": "drop_table", "table": "t", "table": "u"}]}"#,
    )
    .expect("write");
    let (_, _, stderr) = validate(dir.path(), &[]);
    assert!(
        stderr.contains("0001_a.toml:4:1: duplicate key `table`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("0002_b.json:1:52: duplicate key `table`"),
        "{stderr}"
    );
}

#[test]
fn a_deep_control_request_is_an_error_reply() {
    let line = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let error = zdm::control::request::parse(&line).expect_err("refused");
    assert!(error.contains("not valid JSON"), "{error}");
    let line = format!(
        r#"{{"command":"set","key":{}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    assert!(zdm::control::request::parse(&line).is_err());
}

/// Fragments a migration file is made of, to build inputs that get past the first byte.
fn json_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"operations\"".to_string()),
        Just("\"op\"".to_string()),
        Just("\"add_column\"".to_string()),
        Just("\"raw_sql\"".to_string()),
        Just("\"up\"".to_string()),
        Just("\"column\"".to_string()),
        Just("\"table\"".to_string()),
        Just("\"verify\"".to_string()),
        Just("\"sql\"".to_string()),
        Just("\"SELECT ($$\"".to_string()),
        Just("\"\\u00e9\\ud800\"".to_string()),
        Just("null".to_string()),
        Just("-1e999".to_string()),
        Just("18446744073709551616".to_string()),
        "[a-z_]{0,8}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn toml_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[[operations]]\n".to_string()),
        Just("[[verify]]\n".to_string()),
        Just("op = \"add_column\"\n".to_string()),
        Just("op = \"raw_sql\"\n".to_string()),
        Just("op = \"split_table\"\n".to_string()),
        Just("table = \"t\"\n".to_string()),
        Just("column = { name = \"c\", type = \"int\" }\n".to_string()),
        Just("columns = [\"a\", \"b\"]\n".to_string()),
        Just("up = \"\"\"\nSELECT 1;\n\"\"\"\n".to_string()),
        Just("up = 'x $$ y'\n".to_string()),
        Just("sql = \"SELECT\"\n".to_string()),
        Just("phase = \"contract\"\n".to_string()),
        Just("a = [[[[[".to_string()),
        Just("]]]]]\n".to_string()),
        Just("x = {".to_string()),
        Just("}\n".to_string()),
        Just("= = =\n".to_string()),
        Just("\u{feff}".to_string()),
        "[a-z_]{1,8} = \"[ -~]{0,12}\"\n",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_get_an_answer_from_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for name in ["0001_x.toml", "0001_x.json"] {
            let checked = zdm::migration::check(Path::new(name), &bytes);
            prop_assert!(checked.migration.is_some() || checked.errors().next().is_some());
        }
    }

    #[test]
    fn structured_json_gets_an_answer(parts in proptest::collection::vec(json_fragment(), 0..80)) {
        let text = parts.join("");
        let checked = zdm::migration::check(Path::new("0001_x.json"), text.as_bytes());
        prop_assert!(checked.migration.is_some() || checked.errors().next().is_some());
    }

    #[test]
    fn structured_toml_gets_an_answer(parts in proptest::collection::vec(toml_fragment(), 0..40)) {
        let text = parts.join("");
        let checked = zdm::migration::check(Path::new("0001_x.toml"), text.as_bytes());
        prop_assert!(checked.migration.is_some() || checked.errors().next().is_some());
    }

    #[test]
    fn deep_nesting_of_any_mix_is_refused_cleanly(opens in proptest::collection::vec(any::<bool>(), 60..400)) {
        let open: String = opens.iter().map(|&o| if o { "[" } else { "{\"a\":" }).collect();
        let close: String = opens.iter().rev().map(|&o| if o { "]" } else { "}" }).collect();
        let text = format!("{open}1{close}");
        let checked = zdm::migration::check(Path::new("0001_x.json"), text.as_bytes());
        prop_assert!(checked.errors().next().is_some());
        let _ = zdm::control::request::parse(&text);
    }

    #[test]
    fn any_request_line_gets_a_reply(line in "[ -~]{0,200}") {
        let _ = zdm::control::request::parse(&line);
    }

    #[test]
    fn structured_request_lines_get_a_reply(parts in proptest::collection::vec(json_fragment(), 0..40)) {
        let _ = zdm::control::request::parse(&parts.join(""));
        let _ = zdm::control::request::parse(&format!("{{\"command\":\"set\",{}}}", parts.join("")));
    }
}
