//! Migration files: parsing, the position and wording of every kind of error, ordering,
//! checksums, JSON/TOML equivalence, the sample migrations, and `zdm validate`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use zdm::migration::operation::{AddColumn, ColumnDef, RawSqlPhase, ReplicaIdentityKind};
use zdm::migration::{self, check, check_dir, load_dir, parse, Operation, Severity};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-migrations")
}

/// The error lines of one file's text (`name` decides the format).
fn errors_in(name: &str, text: &str) -> Vec<String> {
    match parse(Path::new(name), text) {
        Ok(migration) => panic!("{name} should not parse, got {migration:?}"),
        Err(errors) => errors.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(name: &str, text: &str) -> Vec<String> {
    check(Path::new(name), text.as_bytes())
        .warnings()
        .map(ToString::to_string)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

const DROP_TABLE: &str = "[[operations]]\nop = \"drop_table\"\ntable = \"t\"\n";

#[test]
fn the_issue_example_parses() {
    let text = r#"description = "Orders get an explicit status"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'" }
up = "CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END"
"#;
    let migration = parse(Path::new("migrations/0003_orders_add_status.toml"), text)
        .expect("the example is valid");
    assert_eq!(migration.name, "0003_orders_add_status");
    assert_eq!(
        migration.description.as_deref(),
        Some("Orders get an explicit status")
    );
    assert_eq!(
        migration.operations,
        vec![Operation::AddColumn(AddColumn {
            table: "orders".to_string(),
            column: ColumnDef {
                name: "status".to_string(),
                data_type: "text".to_string(),
                nullable: false,
                default: Some("'new'".to_string()),
                unique: false,
                primary_key: false,
                check: None,
                references: None,
                identity: None,
                sequence: None,
                generated: None,
                comment: None,
            },
            up: Some("CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END".to_string()),
            from: None,
        })]
    );
    assert_eq!(migration.checksum, migration::checksum(text.as_bytes()));
}

#[test]
fn malformed_toml_points_at_the_error() {
    let text = "[[operations]]\nop = \"drop_table\"\ntable = \"orders\n";
    let errors = errors_in("m/0001_x.toml", text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("m/0001_x.toml:3:16: "), "{errors:?}");
    assert!(errors[0].contains("expected `\"`"), "{errors:?}");

    let errors = errors_of_missing_equals();
    assert!(errors[0].starts_with("m/0002_y.toml:2:4: "), "{errors:?}");
}

fn errors_of_missing_equals() -> Vec<String> {
    errors_in("m/0002_y.toml", "[[operations]]\nop \"drop_table\"\n")
}

#[test]
fn malformed_json_points_at_the_error() {
    let text = "{\n  \"operations\": [\n    {\"op\": \"drop_table\", \"table\": \"t\",}\n  ]\n}\n";
    let errors = errors_in("m/0001_x.json", text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("m/0001_x.json:3:39: "), "{errors:?}");
    assert!(
        !errors[0].contains("at line"),
        "no second position: {errors:?}"
    );
}

#[test]
fn json_duplicate_keys_are_errors() {
    let text = r#"{"operations": [{"op": "drop_table", "table": "a", "table": "b"}]}"#;
    assert_eq!(
        errors_in("m/0001_x.json", text),
        ["m/0001_x.json:1:52: duplicate key `table`"]
    );
}

#[test]
fn unknown_keys_point_at_the_key_with_a_suggestion() {
    let text = "[[operations]]\nop = \"drop_table\"\ntable = \"t\"\ncascade = true\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:4:1: drop_table: unknown key `cascade`; expected `table`"]
    );

    let text = "[[operations]]\nop = \"rename_table\"\ntabel = \"t\"\nto = \"u\"\n";
    // The rest is still checked: `table` is then missing (reported at the table's start,
    // so first in file order).
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        [
            "m/0001_x.toml:1:1: rename_table: missing required key `table`",
            "m/0001_x.toml:3:1: rename_table: unknown key `tabel`; did you mean `table`? \
             Expected `table` or `to`"
        ]
    );
}

#[test]
fn unknown_keys_inside_a_column_point_at_the_key() {
    let text = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
                column = { name = \"c\", type = \"text\", nulable = true }\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        [
            "m/0001_x.toml:4:39: add_column: unknown key `nulable`; did you mean `nullable`? \
          Expected `name`, `type`, `nullable`, `default`, `unique`, `primary_key`, `check`, \
          `references`, `identity`, `sequence`, `generated` or `comment`"
        ]
    );
}

#[test]
fn unknown_keys_in_json_point_at_the_key() {
    let text = "{\"operations\": [\n  {\"op\": \"drop_table\", \"tables\": \"t\"}\n]}\n";
    assert_eq!(
        errors_in("m/0001_x.json", text),
        [
            "m/0001_x.json:2:3: drop_table: missing required key `table`",
            "m/0001_x.json:2:24: drop_table: unknown key `tables`; did you mean `table`? \
             Expected `table`"
        ]
    );
}

#[test]
fn unknown_top_level_keys_are_errors() {
    let text = format!("descripton = \"x\"\n{DROP_TABLE}");
    assert_eq!(
        errors_in("m/0001_x.toml", &text),
        [
            "m/0001_x.toml:1:1: unknown top-level key `descripton`; did you mean `description`? \
          Expected `description`, `operations` or `verify` (each operation goes in its own \
          [[operations]] table)"
        ]
    );
}

#[test]
fn verify_queries_are_read_and_their_errors_point_at_the_key() {
    let good = format!(
        "{DROP_TABLE}\n[[verify]]\nsql = \"SELECT 1 FROM t WHERE id = 1\"\nuses_index = \"t_pkey\"\n"
    );
    let migration =
        zdm::migration::parse(std::path::Path::new("m/0001_x.toml"), &good).expect("a valid file");
    assert_eq!(migration.verify.len(), 1);
    assert_eq!(migration.verify[0].uses_index.as_deref(), Some("t_pkey"));

    let bad = format!("{DROP_TABLE}\n[[verify]]\nsql = \"SELECT 1\"\nuses_idx = \"t_pkey\"\n");
    let errors = errors_in("m/0001_x.toml", &bad);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("unknown key `uses_idx`"), "{errors:?}");
    let line = bad
        .lines()
        .position(|l| l.starts_with("uses_idx"))
        .expect("line")
        + 1;
    assert!(
        errors[0].starts_with(&format!("m/0001_x.toml:{line}:1:")),
        "{errors:?}"
    );

    let empty = format!("{DROP_TABLE}\n[[verify]]\nsql = \"  \"\n");
    let errors = errors_in("m/0001_x.toml", &empty);
    assert!(
        errors[0].contains("`sql` of a [[verify]] entry is empty"),
        "{errors:?}"
    );
    let not_array = format!("verify = \"SELECT 1\"\n{DROP_TABLE}");
    let errors = errors_in("m/0001_x.toml", &not_array);
    assert!(
        errors[0].starts_with("m/0001_x.toml:1:10: `verify` must be an array"),
        "{errors:?}"
    );
}

#[test]
fn unknown_ops_list_the_valid_ones_with_a_suggestion() {
    let text = "[[operations]]\nop = \"add_colum\"\ntable = \"t\"\n";
    let errors = errors_in("m/0001_x.toml", text);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "m/0001_x.toml:2:6: unknown op \"add_colum\"; did you mean `add_column`? \
             Expected one of: create_table, drop_table,"
        ),
        "{errors:?}"
    );
    for name in Operation::NAMES {
        assert!(errors[0].contains(name), "{name} missing from {errors:?}");
    }

    let errors = errors_for_op("truncate");
    assert!(
        errors[0].contains("unknown op \"truncate\"; expected one of: create_table"),
        "no suggestion when nothing is close: {errors:?}"
    );
}

fn errors_for_op(op: &str) -> Vec<String> {
    errors_in(
        "m/0001_x.toml",
        &format!("[[operations]]\nop = \"{op}\"\ntable = \"t\"\n"),
    )
}

#[test]
fn an_operation_without_op_says_so() {
    let errors = errors_in("m/0001_x.toml", "[[operations]]\ntable = \"t\"\n");
    assert!(
        errors[0].starts_with("m/0001_x.toml:1:1: this operation has no `op` key"),
        "{errors:?}"
    );
}

#[test]
fn missing_fields_name_the_field_and_the_op() {
    let text = "[[operations]]\nop = \"change_type\"\ntable = \"products\"\n\
                column = \"price_cents\"\ntype = \"numeric\"\nup = \"price_cents\"\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:1:1: change_type: missing required key `down`"]
    );
    let text = r#"{"operations": [{"op": "drop_table"}, {"op": "add_column", "table": "t", "column": {"name": "c"}}]}"#;
    assert_eq!(
        errors_in("m/0001_x.json", text),
        [
            "m/0001_x.json:1:17: drop_table: missing required key `table`",
            "m/0001_x.json:1:84: add_column: missing required key `type`",
        ]
    );
}

#[test]
fn wrong_types_name_the_expected_type() {
    let text = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
                column = { name = \"c\", type = \"text\", nullable = \"no\" }\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:4:50: add_column: expected a boolean, found the string \"no\""]
    );
    let text =
        "[[operations]]\nop = \"create_index\"\ntable = \"t\"\nname = \"i\"\ncolumns = \"a\"\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:5:11: create_index: expected an array, found the string \"a\""]
    );
    let text = "[[operations]]\nop = \"drop_table\"\ntable = 42\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:3:9: drop_table: expected a string, found the integer 42"]
    );
    let text = "[[operations]]\nop = \"raw_sql\"\nup = \"SELECT 1\"\nphase = \"expnd\"\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        [
            "m/0001_x.toml:4:9: raw_sql: unknown value \"expnd\"; did you mean `expand`? \
          Expected `expand` or `contract`"
        ]
    );
    let text = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\ncolumn = [\"c\", \"text\"]\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:4:10: add_column: expected a table, found an array"]
    );
    let text = "operations = 5\n";
    assert!(errors_in("m/0001_x.toml", text)[0]
        .starts_with("m/0001_x.toml:1:14: `operations` must be an array of tables"));
}

#[test]
fn every_error_of_a_file_is_reported() {
    let text = r#"description = "many problems"

[[operations]]
op = "drop_tabel"

[[operations]]
op = "drop_table"
table = 1

[[operations]]
op = "rename_column"
table = "t"
column = "c"
too = "d"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false }
"#;
    let errors = errors_in("m/0001_x.toml", text);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("m/0001_x.toml:4:6: unknown op \"drop_tabel\""));
    assert!(errors[1].starts_with("m/0001_x.toml:8:9: drop_table: expected a string"));
    assert!(errors[2].starts_with("m/0001_x.toml:10:1: rename_column: missing required key `to`"));
    assert!(errors[3].starts_with("m/0001_x.toml:14:1: rename_column: unknown key `too`"));
    assert!(errors[4].starts_with("m/0001_x.toml:19:55: add_column: column `status` is NOT NULL"));
}

#[test]
fn every_wrong_key_of_one_operation_is_reported() {
    let text = r#"[[operations]]
op = "create_index"
table = 7
name = ["i"]
columns = "a"
unique = "yes"
"#;
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        [
            "m/0001_x.toml:3:9: create_index: expected a string, found the integer 7",
            "m/0001_x.toml:4:8: create_index: expected a string, found an array",
            "m/0001_x.toml:5:11: create_index: expected an array, found the string \"a\"",
            "m/0001_x.toml:6:10: create_index: expected a boolean, found the string \"yes\"",
        ]
    );
    // A wrong value inside the column and one in `up` are both reported, and neither key
    // is then also reported missing.
    let text = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
                column = { name = \"c\", type = 1 }\nup = 2\n";
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        [
            "m/0001_x.toml:4:31: add_column: expected a string, found the integer 1",
            "m/0001_x.toml:5:6: add_column: expected a string, found the integer 2",
        ]
    );
}

#[test]
fn empty_and_missing_operations_are_errors() {
    assert_eq!(
        errors_in("m/0001_x.toml", "description = \"nothing\"\n"),
        ["m/0001_x.toml:1:1: no operations: a migration needs at least one [[operations]] table"]
    );
    assert_eq!(
        errors_in("m/0001_x.json", r#"{"operations": []}"#),
        ["m/0001_x.json:1:1: no operations: a migration needs at least one [[operations]] table"]
    );
}

#[test]
fn a_byte_order_mark_is_invisible() {
    let text = format!("\u{feff}{DROP_TABLE}cascade = true\n");
    assert_eq!(
        errors_in("m/0001_x.toml", &text),
        ["m/0001_x.toml:4:1: drop_table: unknown key `cascade`; expected `table`"]
    );
    let json = "\u{feff}{\"operations\": [{\"op\": \"drop_table\", \"table\": \"t\"}]}";
    let migration = parse(Path::new("m/0001_x.json"), json).expect("parses");
    assert_eq!(migration.checksum, migration::checksum(json.as_bytes()));
}

#[test]
fn files_that_are_not_utf8_are_errors() {
    let checked = check(Path::new("m/0001_x.toml"), b"description = \"caf\xe9\"\n");
    let messages: Vec<String> = checked.errors().map(ToString::to_string).collect();
    assert_eq!(messages, ["m/0001_x.toml:1:19: the file is not UTF-8 text"]);
}

#[test]
fn names_postgres_would_refuse_or_truncate_are_errors() {
    let long = "x".repeat(64);
    let text = format!("[[operations]]\nop = \"drop_table\"\ntable = \"{long}\"\n");
    let errors = errors_in("m/0001_x.toml", &text);
    assert!(
        errors[0].starts_with(&format!(
            "m/0001_x.toml:3:9: drop_table: name `{long}` is 64 bytes long"
        )),
        "{errors:?}"
    );
    // 63 bytes is the limit, counted in bytes, not characters.
    let fits = "x".repeat(63);
    parse(
        Path::new("m/0001_x.toml"),
        &format!("[[operations]]\nop = \"drop_table\"\ntable = \"{fits}\"\n"),
    )
    .expect("63 bytes fit");
    let accented = "é".repeat(32);
    assert!(errors_in(
        "m/0001_x.toml",
        &format!("[[operations]]\nop = \"drop_table\"\ntable = \"{accented}\"\n")
    )[0]
    .contains("is 64 bytes long"));

    for bad in ["", "a.b.c", "public.", ".orders"] {
        let text = format!("[[operations]]\nop = \"drop_table\"\ntable = \"{bad}\"\n");
        assert_eq!(errors_in("m/0001_x.toml", &text).len(), 1, "{bad:?}");
    }
    parse(
        Path::new("m/0001_x.toml"),
        "[[operations]]\nop = \"drop_table\"\ntable = \"sales.orders\"\n",
    )
    .expect("schema-qualified tables are fine");

    let text =
        "[[operations]]\nop = \"rename_column\"\ntable = \"t\"\ncolumn = \"t.c\"\nto = \"d\"\n";
    assert!(errors_in("m/0001_x.toml", text)[0].contains("contains a dot"));
}

#[test]
fn create_table_is_reviewed_like_a_dba_would() {
    let text = r#"[[operations]]
op = "create_table"
table = "t"
columns = [
  { name = "id", type = "bigint", primary_key = true },
  { name = "a", type = "text" },
  { name = "a", type = "int" },
]
"#;
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:7:12: create_table: column `a` is declared twice"]
    );
    let text = r#"[[operations]]
op = "create_table"
table = "t"
primary_key = ["id", "nope"]
columns = [{ name = "id", type = "bigint" }]
"#;
    assert_eq!(
        errors_in("m/0001_x.toml", text),
        ["m/0001_x.toml:4:22: create_table: primary key column `nope` is not a column of this table"]
    );
    let text = "[[operations]]\nop = \"create_table\"\ntable = \"t\"\ncolumns = [{ name = \"a\", type = \"text\" }]\n";
    let found = warnings("m/0001_x.toml", text);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("m/0001_x.toml:3:9: warning: create_table: no primary key"),
        "{found:?}"
    );
}

#[test]
fn operations_that_cannot_fill_or_undo_are_flagged() {
    let text = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
                column = { name = \"c\", type = \"text\", nullable = false }\n";
    let errors = errors_in("m/0001_x.toml", text);
    assert!(
        errors[0].contains("existing rows cannot be filled"),
        "{errors:?}"
    );

    let with_up = "[[operations]]\nop = \"add_column\"\ntable = \"t\"\nup = \"'x'\"\n\
                   column = { name = \"c\", type = \"text\", nullable = false }\n";
    parse(Path::new("m/0001_x.toml"), with_up).expect("`up` fills the rows");

    let raw = "[[operations]]\nop = \"raw_sql\"\nup = \"CREATE EXTENSION pg_trgm\"\n";
    assert_eq!(
        warnings("m/0001_x.toml", raw),
        [
            "m/0001_x.toml:3:6: warning: raw_sql: irreversible: this raw_sql has no `down`, so a \
          rollback cannot undo it; give `down` with the SQL that reverses `up`"
        ]
    );
    let set_not_null = "[[operations]]\nop = \"set_not_null\"\ntable = \"t\"\ncolumn = \"c\"\n";
    assert!(warnings("m/0001_x.toml", set_not_null)[0].contains("no `up`"));
    let drop_column = "[[operations]]\nop = \"drop_column\"\ntable = \"t\"\ncolumn = \"c\"\n";
    assert!(warnings("m/0001_x.toml", drop_column)[0].contains("no `down`"));

    let change_type = "[[operations]]\nop = \"change_type\"\ntable = \"t\"\ncolumn = \"c\"\n\
                       type = \"bigint\"\nup = \"c::bigint\"\ndown = \" \"\n";
    assert!(errors_in("m/0001_x.toml", change_type)[0].contains("`down` is empty"));
}

#[test]
fn indexes_and_constraints_are_reviewed() {
    let text = r#"[[operations]]
op = "create_index"
table = "t"
name = "t_tags_idx"
columns = ["tags"]
unique = true
method = "gin"
"#;
    assert!(errors_in("m/0001_x.toml", text)[0].contains("only btree indexes can be unique"));

    let text = r#"[[operations]]
op = "add_foreign_key"
table = "order_items"
name = "fk"
columns = ["order_id", "line"]
references = { table = "orders", columns = ["id"], on_delete = "cascde" }
"#;
    let errors = errors_in("m/0001_x.toml", text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("2 referencing column(s) but references 1"));
    assert!(errors[1].contains("unknown on_delete action `cascde`; did you mean `cascade`?"));

    let twice = r#"[[operations]]
op = "add_check"
table = "t"
name = "c"
check = "a > 0"

[[operations]]
op = "add_check"
table = "public.t"
name = "c"
check = "a < 9"
"#;
    assert!(errors_of(twice)[0].contains("constraint `c` on `public.t` is added twice"));
}

/// split_table's columns: the names of files written before (still meaning the same, and
/// written back as names), tables with a new name, type and up/down, and their mistakes.
#[test]
fn split_table_columns_are_names_or_tables() {
    let head = "[[operations]]\nop = \"split_table\"\ntable = \"customers\"\nnew_table = \"customer_marketing\"\n";
    let old_form = format!("{head}columns = [\"marketing_opt_in\", \"phone\"]\n");
    let parsed = parse(Path::new("m/0001_x.toml"), &old_form).expect("the old form parses");
    let Operation::SplitTable(op) = &parsed.operations[0] else {
        panic!("split_table: {:?}", parsed.operations)
    };
    assert_eq!(op.column_names(), ["marketing_opt_in", "phone"]);
    assert!(op.columns.iter().all(|c| c.is_plain()) && op.key.is_empty());
    assert_eq!(
        serde_json::to_value(&parsed.operations[0]).expect("serializes"),
        serde_json::json!({"op": "split_table", "table": "customers", "new_table": "customer_marketing", "columns": ["marketing_opt_in", "phone"]})
    );

    let new_form = format!(
        "{head}key = {{ id = \"customer_id\" }}\ncolumns = [\"phone\", {{ column = \"marketing_opt_in\", to = \"opt_in\", type = \"text\", up = \"marketing_opt_in::text\", down = \"opt_in::boolean\" }}]\n"
    );
    let parsed = parse(Path::new("m/0001_x.toml"), &new_form).expect("the new form parses");
    let Operation::SplitTable(op) = &parsed.operations[0] else {
        panic!("split_table: {:?}", parsed.operations)
    };
    assert_eq!(op.key.get("id").map(String::as_str), Some("customer_id"));
    assert_eq!(op.columns[1].new_name(), "opt_in");
    assert_eq!(op.columns[1].down.as_deref(), Some("opt_in::boolean"));

    let typo = format!("{head}columns = [{{ column = \"phone\", too = \"tel\" }}]\n");
    let errors = errors_of(&typo);
    assert!(
        errors[0]
            .starts_with("m/0001_x.toml:5:32: split_table: unknown key `too`; did you mean `to`?"),
        "{errors:?}"
    );
    let errors = errors_of(&format!(
        "{head}columns = [{{ column = \"phone\", up = \"phone\" }}, {{ column = \"email\", type = \"citext\" }}, {{ column = \"country\", to = \"phone\" }}]\n"
    ));
    assert!(
        errors.iter().any(|e| e.contains("`up` without `down`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("column `email` changes type: give `up`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`customer_marketing` would have two columns named `phone`")),
        "{errors:?}"
    );
    let errors = errors_of(&format!(
        "{head}columns = [{{ column = \"phone\", up = \"phone ||\", down = \"phone\" }}]\n"
    ));
    assert!(
        errors.len() == 1 && errors[0].contains("`columns[0].up` does not parse"),
        "{errors:?}"
    );
    let errors = errors_of(&format!("{head}columns = [42]\n"));
    assert!(
        errors[0].contains("expected a column name or a table"),
        "{errors:?}"
    );
}

fn errors_of(text: &str) -> Vec<String> {
    errors_in("m/0001_x.toml", text)
}

#[test]
fn json_and_toml_spell_the_same_migration() {
    // Every sample, rewritten as JSON, parses to the same operations.
    for path in sorted_files(&samples_dir()) {
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read sample");
        let value: toml::Value = toml::from_str(&text).expect("sample is TOML");
        let json = serde_json::to_string_pretty(&value).expect("as JSON");
        let from_toml = parse(&path, &text).expect("sample parses");
        let from_json = parse(&path.with_extension("json"), &json).expect("JSON parses");
        assert_eq!(
            from_toml.operations,
            from_json.operations,
            "{}",
            path.display()
        );
        assert_eq!(from_toml.description, from_json.description);
        assert_eq!(from_toml.name, from_json.name);
        assert_ne!(from_toml.checksum, from_json.checksum, "different bytes");
    }
}

/// The parser agrees with serde's own reading of [`Operation`] (the tagged enum the planner
/// and `--json` output use): the format is exactly the serde contract.
#[test]
fn the_parser_agrees_with_the_serde_types() {
    #[derive(serde::Deserialize)]
    struct File {
        operations: Vec<Operation>,
    }
    for path in sorted_files(&samples_dir()) {
        let text = std::fs::read_to_string(&path).expect("read sample");
        let by_serde = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str::<File>(&text).expect("serde reads TOML"),
            Some("json") => serde_json::from_str::<File>(&text).expect("serde reads JSON"),
            _ => continue,
        };
        let parsed = parse(&path, &text).expect("sample parses");
        assert_eq!(parsed.operations, by_serde.operations, "{}", path.display());
    }
}

#[test]
fn the_samples_use_every_operation_and_pass_review() {
    let checked = check_dir(&samples_dir());
    let problems: Vec<String> = checked.all().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let migrations = load_dir(&samples_dir()).expect("samples load");
    assert!(migrations.len() >= 10);
    let used: BTreeSet<&str> = migrations
        .iter()
        .flat_map(|migration| migration.operations.iter().map(Operation::name))
        .collect();
    let all: BTreeSet<&str> = Operation::NAMES.into_iter().collect();
    let unused: Vec<_> = all.difference(&used).collect();
    assert!(unused.is_empty(), "operations no sample uses: {unused:?}");
    for migration in &migrations {
        let description = migration.description.as_deref().unwrap_or_default();
        assert!(
            description.len() > 20,
            "{} needs a meaningful description",
            migration.name
        );
    }
    assert!(migrations
        .iter()
        .any(|m| m.operations.iter().any(|op| matches!(op, Operation::RawSql(raw) if raw.phase == RawSqlPhase::Expand && raw.down.is_some()))));
}

#[test]
fn directories_are_read_in_name_order_and_skip_other_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "0010_c.toml", DROP_TABLE);
    write(
        dir.path(),
        "0002_b.json",
        r#"{"operations": [{"op": "drop_table", "table": "t"}]}"#,
    );
    write(dir.path(), "0001_a.toml", DROP_TABLE);
    for ignored in [
        "README.md",
        ".gitkeep",
        ".0001_a.toml.swp",
        "0001_a.toml~",
        "0001_a.toml.bak",
        "notes.txt",
    ] {
        write(dir.path(), ignored, "not a migration = [");
    }
    std::fs::create_dir(dir.path().join("archive.toml")).expect("a directory named like a file");
    write(dir.path(), "0003_meant.yaml", "operations: []");
    let warnings: Vec<String> = check_dir(dir.path())
        .all()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(
            "0003_meant.yaml: warning: skipped: only files ending in .toml or .json (lower \
             case) are migrations; rename it if it is one"
        ),
        "{warnings:?}"
    );
    let names: Vec<String> = load_dir(dir.path())
        .expect("loads")
        .into_iter()
        .map(|migration| migration.name)
        .collect();
    assert_eq!(names, ["0001_a", "0002_b", "0010_c"]);
}

#[test]
fn two_files_with_the_same_stem_are_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "0001_a.toml", DROP_TABLE);
    write(
        dir.path(),
        "0001_a.json",
        r#"{"operations": [{"op": "drop_table", "table": "t"}]}"#,
    );
    let errors = load_dir(dir.path()).expect_err("duplicate").to_string();
    assert!(
        errors.contains("migration `0001_a` is defined twice"),
        "{errors}"
    );
    assert!(errors.contains("0001_a.json") && errors.contains("0001_a.toml"));
}

#[test]
fn a_missing_directory_is_an_error() {
    let errors = load_dir(Path::new("/nonexistent/zdm-migrations"))
        .expect_err("missing")
        .to_string();
    assert!(
        errors.starts_with("/nonexistent/zdm-migrations: cannot read the migrations directory"),
        "{errors}"
    );
}

#[test]
fn checksums_are_stable_and_see_every_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "0001_a.toml", DROP_TABLE);
    let first = load_dir(dir.path()).expect("loads")[0].checksum.clone();
    let again = load_dir(dir.path()).expect("loads")[0].checksum.clone();
    assert_eq!(first, again);
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(first, migration::checksum(DROP_TABLE.as_bytes()));

    // A comment is a change too: the file that ran is the record of what ran.
    write(
        dir.path(),
        "0001_a.toml",
        &format!("# edited\n{DROP_TABLE}"),
    );
    let edited = load_dir(dir.path()).expect("loads")[0].checksum.clone();
    assert_ne!(first, edited);
    let mismatch = migration::verify_checksum("0001_a", &first, &edited)
        .expect_err("changed")
        .to_string();
    assert!(
        mismatch.contains(&first) && mismatch.contains(&edited),
        "{mismatch}"
    );
    assert!(mismatch.contains("0001_a"), "{mismatch}");
    let loaded = &load_dir(dir.path()).expect("loads")[0];
    assert!(loaded.verify_checksum(&edited).is_ok());
    assert_eq!(
        loaded
            .verify_checksum(&first)
            .expect_err("changed")
            .to_string(),
        mismatch
    );
}

#[test]
fn source_maps_locate_operations_for_later_checks() {
    let text = format!("description = \"d\"\n\n{DROP_TABLE}\n{DROP_TABLE}");
    let checked = check(Path::new("m/0001_x.toml"), text.as_bytes());
    let source = checked.source.expect("parsed");
    assert_eq!(source.operation(0), Some((3, 1)));
    assert_eq!(source.operation(1), Some((7, 1)));
    assert_eq!(source.value(1, &["table"]), Some((9, 9)));
    let diagnostic = source.diagnostic(1, &["table"], Severity::Error, "table `t` does not exist");
    assert_eq!(
        diagnostic.to_string(),
        "m/0001_x.toml:9:9: table `t` does not exist"
    );
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

// `zdm validate`, the built binary.

fn validate(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let output = Command::new(common::zdm_binary())
        .arg("validate")
        .args(args)
        .current_dir(cwd)
        .env_remove("ZDM_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run zdm validate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_samples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = samples_dir();
    let (code, stdout, stderr) = validate(&["--dir", samples.to_str().expect("utf-8")], dir.path());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("0001_orders_add_status"), "{stdout}");
    assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}");
}

#[test]
fn validate_lists_every_error_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("mkdir");
    write(&migrations, "0001_ok.toml", DROP_TABLE);
    write(
        &migrations,
        "0002_typo.toml",
        "[[operations]]\nop = \"dorp_table\"\ntable = \"t\"\n",
    );
    write(&migrations, "0003_broken.json", "{\"operations\": [");
    write(
        &migrations,
        "0004_unfillable.toml",
        "[[operations]]\nop = \"add_column\"\ntable = \"t\"\n\
         column = { name = \"c\", type = \"text\", nullable = false }\n",
    );
    // Default directory: ./migrations.
    let (code, stdout, stderr) = validate(&[], dir.path());
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(
            "migrations/0002_typo.toml:2:6: unknown op \"dorp_table\"; did you mean `drop_table`?"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("migrations/0003_broken.json:1:16: EOF while parsing a list"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(
            "migrations/0004_unfillable.toml:4:50: add_column: column `c` is NOT NULL"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("4 migration files, 1 valid, 3 errors"),
        "{stdout}"
    );
    assert!(
        stdout.starts_with("0001_ok "),
        "only valid files are listed: {stdout}"
    );
}

#[test]
fn validate_reads_the_directory_from_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("db")).expect("mkdir");
    write(&dir.path().join("db"), "0001_a.toml", DROP_TABLE);
    write(dir.path(), "custom.toml", "migrations_dir = \"db\"\n");
    let (code, stdout, stderr) = validate(&["--config", "custom.toml"], dir.path());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("db: 1 migration file, 1 valid"), "{stdout}");

    let (code, _, stderr) = validate(&[], dir.path());
    assert_eq!(code, 1, "no ./migrations here");
    assert!(
        stderr.contains("migrations: cannot read the migrations directory"),
        "{stderr}"
    );
}

#[test]
fn validate_passes_warnings_unless_told_to_deny_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "0001_raw.toml",
        "[[operations]]\nop = \"raw_sql\"\nup = \"SELECT 1\"\n",
    );
    let path = dir.path().to_str().expect("utf-8");
    let (code, stdout, stderr) = validate(&["--dir", path], dir.path());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning: raw_sql: irreversible"),
        "{stderr}"
    );
    let (code, _, _) = validate(&["--dir", path, "--deny-warnings"], dir.path());
    assert_eq!(code, 1);
}

// The samples against a real database: each operation applied in its plain (locking)
// form, to prove that every name, type, expression and constraint in the sequence fits
// the demo schema and its data. This is a test oracle, not the planner: the planner's
// safe plans are tested by its own suite.

/// `schema.table` or `table`, quoted.
fn quote_table(name: &str) -> String {
    name.split('.')
        .map(zdm::db::quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|name| zdm::db::quote_ident(name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn reference_sql(reference: &zdm::migration::operation::Reference) -> String {
    format!(
        "REFERENCES {} ({}) ON DELETE {}",
        quote_table(&reference.table),
        quote_list(&reference.columns),
        reference.on_delete.as_deref().unwrap_or("no action")
    )
}

fn column_sql(column: &ColumnDef) -> String {
    let mut sql = format!(
        "{} {}",
        zdm::db::quote_ident(&column.name),
        column.data_type
    );
    if !column.nullable {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if column.unique {
        sql.push_str(" UNIQUE");
    }
    if column.primary_key {
        sql.push_str(" PRIMARY KEY");
    }
    if let Some(check) = &column.check {
        sql.push_str(&format!(" CHECK ({check})"));
    }
    if let Some(reference) = &column.references {
        sql.push(' ');
        sql.push_str(&reference_sql(reference));
    }
    sql
}

/// An index entry: a plain column name is quoted, an expression is parenthesised.
fn index_entry(entry: &str) -> String {
    if entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        zdm::db::quote_ident(entry)
    } else {
        format!("({entry})")
    }
}

async fn primary_key(conn: &mut sqlx::PgConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY a.attnum",
    )
    .bind(quote_table(table))
    .fetch_all(conn)
    .await
    .expect("primary key")
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Applies one operation in its plain form, checking `up`/`down` expressions on real rows.
async fn apply_plainly(conn: &mut sqlx::PgConnection, operation: &Operation) {
    use zdm::db::quote_ident as q;
    let mut statements: Vec<String> = Vec::new();
    match operation {
        Operation::CreateTable(op) => {
            let mut parts: Vec<String> = op.columns.iter().map(column_sql).collect();
            if let Some(key) = &op.primary_key {
                parts.push(format!("PRIMARY KEY ({})", quote_list(key)));
            }
            statements.push(format!(
                "CREATE TABLE {} ({})",
                quote_table(&op.table),
                parts.join(", ")
            ));
        }
        Operation::DropTable(op) => {
            statements.push(format!("DROP TABLE {}", quote_table(&op.table)))
        }
        Operation::RenameTable(op) => {
            let to = op.to.rsplit('.').next().unwrap_or(&op.to);
            statements.push(format!(
                "ALTER TABLE {} RENAME TO {}",
                quote_table(&op.table),
                q(to)
            ));
        }
        Operation::AddColumn(op) => {
            let table = quote_table(&op.table);
            let nullable = ColumnDef {
                nullable: true,
                ..op.column.clone()
            };
            statements.push(format!(
                "ALTER TABLE {table} ADD COLUMN {}",
                column_sql(&nullable)
            ));
            if let Some(up) = &op.up {
                statements.push(format!(
                    "UPDATE {table} SET {} = ({up})",
                    q(&op.column.name)
                ));
            }
            if !op.column.nullable {
                statements.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                    q(&op.column.name)
                ));
            }
        }
        Operation::DropColumn(op) => {
            let table = quote_table(&op.table);
            if let Some(down) = &op.down {
                statements.push(format!("SELECT ({down}) FROM {table}"));
            }
            statements.push(format!("ALTER TABLE {table} DROP COLUMN {}", q(&op.column)));
        }
        Operation::RenameColumn(op) => statements.push(format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            quote_table(&op.table),
            q(&op.column),
            q(&op.to)
        )),
        Operation::ChangeType(op) => {
            let table = quote_table(&op.table);
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} TYPE {} USING ({})",
                q(&op.column),
                op.data_type,
                op.up
            ));
            statements.push(format!("SELECT ({}) FROM {table}", op.down));
        }
        Operation::SetNotNull(op) => {
            let table = quote_table(&op.table);
            if let Some(up) = &op.up {
                statements.push(format!(
                    "UPDATE {table} SET {col} = ({up}) WHERE {col} IS NULL",
                    col = q(&op.column)
                ));
            }
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                q(&op.column)
            ));
        }
        Operation::DropNotNull(op) => {
            let table = quote_table(&op.table);
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} DROP NOT NULL",
                q(&op.column)
            ));
            if let Some(down) = &op.down {
                statements.push(format!("SELECT ({down}) FROM {table}"));
            }
        }
        Operation::SetDefault(op) => statements.push(format!(
            "ALTER TABLE {} ALTER COLUMN {} {}",
            quote_table(&op.table),
            q(&op.column),
            op.default
                .as_ref()
                .map_or("DROP DEFAULT".to_string(), |d| format!("SET DEFAULT {d}"))
        )),
        Operation::AddCheck(op) => statements.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
            quote_table(&op.table),
            q(&op.name),
            op.check
        )),
        Operation::AddUnique(op) => statements.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE ({})",
            quote_table(&op.table),
            q(&op.name),
            quote_list(&op.columns)
        )),
        Operation::AddForeignKey(op) => statements.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) {}",
            quote_table(&op.table),
            q(&op.name),
            quote_list(&op.columns),
            reference_sql(&op.references)
        )),
        Operation::DropConstraint(op) => statements.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote_table(&op.table),
            q(&op.name)
        )),
        Operation::CreateIndex(op) => statements.push(format!(
            "CREATE {}INDEX {} ON {} USING {} ({}){}",
            if op.unique { "UNIQUE " } else { "" },
            q(&op.name),
            quote_table(&op.table),
            op.method.as_deref().unwrap_or("btree"),
            op.columns
                .iter()
                .map(|c| index_entry(c))
                .collect::<Vec<_>>()
                .join(", "),
            op.predicate
                .as_ref()
                .map_or(String::new(), |p| format!(" WHERE {p}"))
        )),
        Operation::DropIndex(op) => {
            statements.push(format!("DROP INDEX {}", quote_table(&op.name)))
        }
        Operation::SplitTable(op) => {
            let key = primary_key(conn, &op.table).await;
            assert!(!key.is_empty(), "{} has a primary key", op.table);
            let table = quote_table(&op.table);
            let new_table = quote_table(&op.new_table);
            statements.push(format!(
                "CREATE TABLE {new_table} AS SELECT {}, {} FROM {table}",
                quote_list(&key),
                quote_list(&op.column_names())
            ));
            statements.push(format!(
                "ALTER TABLE {new_table} ADD PRIMARY KEY ({key}), \
                 ADD FOREIGN KEY ({key}) REFERENCES {table} ({key}) ON DELETE CASCADE",
                key = quote_list(&key)
            ));
            for column in &op.column_names() {
                statements.push(format!("ALTER TABLE {table} DROP COLUMN {}", q(column)));
            }
        }
        Operation::CreateEnum(op) => {
            let labels: Vec<String> = op.values.iter().map(|v| literal(v)).collect();
            statements.push(format!(
                "CREATE TYPE {} AS ENUM ({})",
                quote_table(&op.name),
                labels.join(", ")
            ));
        }
        Operation::DropEnum(op) => statements.push(format!("DROP TYPE {}", quote_table(&op.name))),
        Operation::AddEnumValue(op) => {
            let position = match (&op.before, &op.after) {
                (Some(before), _) => format!(" BEFORE {}", literal(before)),
                (None, Some(after)) => format!(" AFTER {}", literal(after)),
                (None, None) => String::new(),
            };
            statements.push(format!(
                "ALTER TYPE {} ADD VALUE {}{position}",
                quote_table(&op.name),
                literal(&op.value)
            ));
        }
        Operation::RenameEnumValue(op) => statements.push(format!(
            "ALTER TYPE {} RENAME VALUE {} TO {}",
            quote_table(&op.name),
            literal(&op.from),
            literal(&op.to)
        )),
        Operation::RenameConstraint(op) => statements.push(format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            quote_table(&op.table),
            q(&op.from),
            q(&op.to)
        )),
        Operation::SetReplicaIdentity(op) => {
            let identity = match (op.identity, &op.index) {
                (ReplicaIdentityKind::Index, Some(index)) => format!("USING INDEX {}", q(index)),
                (ReplicaIdentityKind::Full, _) => "FULL".to_string(),
                (ReplicaIdentityKind::Nothing, _) => "NOTHING".to_string(),
                _ => "DEFAULT".to_string(),
            };
            statements.push(format!(
                "ALTER TABLE {} REPLICA IDENTITY {identity}",
                quote_table(&op.table)
            ));
        }
        Operation::AddPrimaryKey(op) => statements.push(format!(
            "ALTER TABLE {} ADD {}PRIMARY KEY ({})",
            quote_table(&op.table),
            op.name
                .as_ref()
                .map(|name| format!("CONSTRAINT {} ", q(name)))
                .unwrap_or_default(),
            op.columns
                .iter()
                .map(|c| q(c))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Operation::SetComment(op) => {
            let text = op.comment.as_deref().map_or("NULL".to_string(), literal);
            statements.push(match &op.column {
                Some(column) => format!(
                    "COMMENT ON COLUMN {}.{} IS {text}",
                    quote_table(&op.table),
                    q(column)
                ),
                None => format!("COMMENT ON TABLE {} IS {text}", quote_table(&op.table)),
            });
        }
        Operation::RawSql(op) => {
            statements.push(op.up.clone());
            if let Some(down) = &op.down {
                // Proves `down` undoes `up`: `up` must then succeed again.
                statements.push(down.clone());
                statements.push(op.up.clone());
            }
        }
    }
    for statement in statements {
        if let Err(error) = sqlx::raw_sql(&statement).execute(&mut *conn).await {
            panic!("{} failed: {statement}\n{error}", operation.name());
        }
    }
}

#[tokio::test]
async fn the_samples_apply_in_sequence_to_the_demo_schema() {
    let pg = common::primary();
    let pool = common::database(&pg, "samples").await;
    zdm::demo::schema::load(&pool, zdm::demo::Scale::from_factor(0.0001), |_| {})
        .await
        .expect("demo schema and data");
    let mut conn = pool.acquire().await.expect("connection");
    for migration in load_dir(&samples_dir()).expect("samples load") {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        for operation in &migration.operations {
            apply_plainly(&mut tx, operation).await;
        }
        tx.commit().await.expect("commit");
    }
    // The end state is the one the samples describe.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("columns");
    for expected in [
        "orders.status",
        "orders.delivery_notes",
        "products.status",
        "customer_marketing.marketing_opt_in",
        "shipments.tracking_number",
    ] {
        assert!(
            columns.iter().any(|c| c == expected),
            "{expected} in {columns:?}"
        );
    }
    for gone in [
        "products.discontinued_at",
        "customers.marketing_opt_in",
        "orders.notes",
    ] {
        assert!(
            !columns.iter().any(|c| c == gone),
            "{gone} still in {columns:?}"
        );
    }
    let phone_nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM customers WHERE phone IS NULL")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(phone_nulls, 0);
    drop(conn);
    pool.close().await;
}
