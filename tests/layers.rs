//! The layer rule of docs/architecture.md, checked on the source: a top-level module of
//! `src/` refers (`crate::…` outside comments, `use super::…` stays inside) only to
//! modules of a lower layer, so no import points upward and no two modules depend on
//! each other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first; a module may refer to modules of lower layers only (and to itself).
const LAYERS: &[&[&str]] = &[
    // Foundations: no zdm concept above the database.
    &[
        "format", "suggest", "signals", "logging", "position", "db", "localpg",
    ],
    // Time: low-traffic windows in their time zone.
    &["schedule"],
    // Vocabulary: migration files, settings, live metrics.
    &["migration", "settings", "monitor"],
    // Scratch databases shaped like a target: its schema and generated rows.
    &["synth"],
    // Static rules over migration SQL.
    &["lint"],
    // Other tools' migrations as zdm files.
    &["import"],
    // The planner.
    &["plan"],
    // What runs say to front-ends and what front-ends ask of runs.
    &["protocol"],
    // The only part that changes a database.
    &["engine"],
    // Read models and judgements over the engine's state.
    &["ledger", "audit"],
    &["gates"],
    // Alerts sent to people (webhooks, command hooks) from a run's events.
    &["notify"],
    // zdm.toml + environment + flags.
    &["config"],
    // Runs' control sockets and their clients.
    &["control"],
    // Runs that outlive their terminal.
    &["runner"],
    // The demo's servers and workload.
    &["demo"],
    // The console.
    &["tui"],
    // Application commands: one per subcommand.
    &["app"],
    // The command line.
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::NAME` a file's code refers to, with its line number.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if after.starts_with('{') {
                // Grouped paths would hide their modules from this scan.
                found.push((
                    number + 1,
                    "{ (write one `use crate::module…` per module)".into(),
                ));
            }
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_refers_to_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(from) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer in tests/layers.rs",
                file.display()
            ));
            continue;
        };
        modules.insert(module.clone());
        let text = std::fs::read_to_string(file).expect("read");
        for (line, target) in references(&text) {
            if target == module {
                continue;
            }
            if target.starts_with('{') {
                wrong.push(format!(
                    "{}:{line}: `crate::{target}`",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
                continue;
            }
            match layer_of(&target) {
                Some(to) if to < from => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: `{module}` refers to `{target}`, which is not below it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                // Not a module of ours (e.g. a macro path): nothing to check.
                None => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the layer rule is broken:\n{}",
        wrong.join("\n")
    );
    assert!(
        modules.len() > 10,
        "the check found the modules: {modules:?}"
    );
}

#[test]
fn the_reference_scan_sees_code_not_comments() {
    let text = "use crate::engine::state;\n// crate::tui is only mentioned\nlet x = crate::db::quote_ident(a); // crate::app\n";
    let names: Vec<String> = references(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["engine", "db"]);
}
