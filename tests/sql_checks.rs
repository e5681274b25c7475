//! SQL checked before anything runs (issue #13), through the real binary: `zdm validate`
//! rejects a syntax error in every kind of SQL snippet at its `file:line:col`, offline;
//! with a database it type-checks expressions against the live catalog (an unknown
//! column, a type mismatch) and says when it skipped that because a file did not parse;
//! `zdm start` refuses, before expand and with nothing changed, a migration whose
//! contract or rollback SQL does not parse or whose expressions do not fit; `zdm complete`
//! parses the recorded contract SQL again before its first step.

mod plan_support;

use std::path::Path;
use std::process::{Command, Output};

use plan_support::{catalog, common, demo_database, fetch_one};
use zdm::localpg::LocalPg;

fn zdm(pg: Option<&LocalPg>, url: Option<&str>, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(common::zdm_binary());
    command
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("DATABASE_URL");
    if let Some(pg) = pg {
        command.env("ZDM_LOG_FILE", pg.root().join("zdm-sql.log"));
    }
    if let Some(url) = url {
        command.args(["--database-url", url]);
    }
    command.output().expect("run zdm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `line:col` of the string value that `marker` (`key = "start of value`) shows: its
/// first `"`.
fn position_of(file: &str, marker: &str) -> String {
    let (number, line) = file
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker}"));
    let start = line.find(marker).expect("marker");
    let quote = line[start..].find('"').expect("a string value") + start;
    format!("{}:{}", number + 1, line[..quote].chars().count() + 1)
}

/// One broken snippet of each kind, each on its own line (markers are unique).
const BROKEN: &str = r#"[[operations]]
op = "create_table"
table = "t_new"
columns = [
  { name = "id", type = "bigint", primary_key = true },
  { name = "a", type = "text", default = "'x' ||" },
  { name = "b", type = "int", check = "b >" },
  { name = "c", type = "varchar(" },
]

[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", default = "lower('NEW'" }
up = "INVALID $$$ SYNTAX"

[[operations]]
op = "drop_column"
table = "orders"
column = "notes"
down = "'dropped' 'twice'"

[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,"
up = "price_cents::numeric / / 100"
down = "(price_cents * 100)::int)"

[[operations]]
op = "set_not_null"
table = "customers"
column = "phone"
up = "coalesce(phone,, '')"

[[operations]]
op = "drop_not_null"
table = "customers"
column = "email"
down = "CASE WHEN email IS NULL THEN '' END END"

[[operations]]
op = "set_default"
table = "customers"
column = "country"
default = "'GB' 'FR'"

[[operations]]
op = "add_check"
table = "order_items"
name = "quantity_positive"
check = "quantity >> > 0"

[[operations]]
op = "create_index"
table = "orders"
name = "orders_lower_currency_idx"
columns = ["lower(currency"]
predicate = "shipped_at IS NOT"

[[operations]]
op = "raw_sql"
up = "UPDATE orders SET notes = '' WHER id = 1"
down = "SELEC 1"

[[operations]]
op = "raw_sql"
phase = "contract"
up = "DELEET FROM orders"

[[verify]]
sql = "SELECT id FROM orders WHERE customer_id = = 1"
"#;

#[test]
fn validate_rejects_a_syntax_error_in_every_kind_of_sql_snippet_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0001_broken.toml");
    std::fs::write(&path, BROKEN).expect("write");
    let output = zdm(None, None, dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expect = [
        ("default = \"'x'", "create_table: `columns[1].default` does not parse as a SQL expression: syntax error at the end of the snippet"),
        ("check = \"b >", "create_table: `columns[2].check` does not parse as a SQL expression"),
        ("type = \"varchar(", "create_table: `columns[3].type` does not parse as a type"),
        ("default = \"lower", "add_column: `column.default` does not parse as a SQL expression"),
        ("up = \"INVALID", "add_column: `up` does not parse as a SQL expression: unterminated dollar-quoted string at or near \"$$$ SYNTAX\" (line 1, column 9 of `up`)"),
        ("down = \"'dropped'", "drop_column: `down` does not parse as a SQL expression: syntax error at or near \"'twice'\" (line 1, column 11 of `down`)"),
        ("type = \"numeric(12,", "change_type: `type` does not parse as a type"),
        ("up = \"price_cents", "change_type: `up` does not parse as a SQL expression: syntax error at or near \"/\" (line 1, column 24 of `up`)"),
        ("down = \"(price_cents", "change_type: `down` does not parse as a SQL expression"),
        ("up = \"coalesce", "set_not_null: `up` does not parse as a SQL expression: syntax error at or near \",\" (line 1, column 16 of `up`)"),
        ("down = \"CASE", "drop_not_null: `down` does not parse as a SQL expression"),
        ("default = \"'GB'", "set_default: `default` does not parse as a SQL expression"),
        ("check = \"quantity", "add_check: `check` does not parse as a SQL expression"),
        ("columns = [\"lower", "create_index: `columns[0]` does not parse as an index column or expression"),
        ("predicate = \"shipped_at", "create_index: `predicate` does not parse as a SQL expression"),
        ("up = \"UPDATE orders", "raw_sql: `up` does not parse as SQL: syntax error at or near \"WHER\" (line 1, column 30 of `up`)"),
        ("down = \"SELEC", "raw_sql: `down` does not parse as SQL: syntax error at or near \"SELEC\" (line 1, column 1 of `down`)"),
        ("up = \"DELEET", "raw_sql: `up` does not parse as SQL: syntax error at or near \"DELEET\""),
        ("sql = \"SELECT id", "[[verify]] #1: `sql` does not parse as a query EXPLAIN accepts: syntax error at or near \"=\" (line 1, column 43 of `sql`)"),
    ];
    for (marker, message) in expect {
        let line = format!(
            "{}:{}: {message}",
            path.display(),
            position_of(BROKEN, marker)
        );
        assert!(stderr.contains(&line), "expected\n{line}\nin\n{stderr}");
    }
    let errors = stderr
        .lines()
        .filter(|l| l.contains("does not parse"))
        .count();
    assert_eq!(errors, expect.len(), "{stderr}");
}

/// Two tables none of the file's earlier operations reshape, so the live catalog is the
/// one each expression runs against.
const DOES_NOT_FIT: &str = r#"[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text" }
up = "CASE WHEN shiped_at IS NULL THEN 'open' ELSE 'shipped' END"

[[operations]]
op = "add_column"
table = "products"
column = { name = "discontinued_year", type = "int" }
up = "discontinued_at"
"#;

#[tokio::test]
async fn validate_with_a_database_rejects_an_unknown_column_and_a_type_mismatch() {
    let pg = common::primary();
    let pool = demo_database(&pg, "typecheck").await;
    let url = pg.primary().url("typecheck");
    let before = catalog(&pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0001_does_not_fit.toml");
    std::fs::write(&path, DOES_NOT_FIT).expect("write");

    // Offline it parses.
    let output = zdm(Some(&pg), None, dir.path(), &["validate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let output = zdm(Some(&pg), Some(&url), dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let unknown = format!(
        "{}:{}: add_column: `up` does not fit the database: column \"shiped_at\" does not exist \
         (line 1, column 11 of `up`)",
        path.display(),
        position_of(DOES_NOT_FIT, "up = \"CASE")
    );
    assert!(
        stderr.contains(&unknown),
        "expected\n{unknown}\nin\n{stderr}"
    );
    let mismatch = format!(
        "{}:{}: add_column: `up` does not fit the database: cannot cast type timestamp with \
         time zone to integer",
        path.display(),
        position_of(DOES_NOT_FIT, "up = \"discontinued_at")
    );
    assert!(
        stderr.contains(&mismatch),
        "expected\n{mismatch}\nin\n{stderr}"
    );
    assert_eq!(before, catalog(&pool).await, "validate changes nothing");

    // The same file fixed passes; a second file that does not parse makes validate say
    // that the database checks were skipped.
    std::fs::write(
        &path,
        DOES_NOT_FIT.replace("shiped_at", "shipped_at").replace(
            "up = \"discontinued_at\"",
            "up = \"extract(year FROM discontinued_at)\"",
        ),
    )
    .expect("write");
    let output = zdm(Some(&pg), Some(&url), dir.path(), &["validate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    std::fs::write(
        dir.path().join("0002_broken.toml"),
        "[[operations]]\nop = \"raw_sql\"\nup = \"SELEC 1\"\ndown = \"SELECT 1\"\n",
    )
    .expect("write");
    let output = zdm(Some(&pg), Some(&url), dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("database checks skipped:") && stdout.contains("0002_broken.toml"),
        "{stdout}"
    );
}

async fn zdm_schema_exists(pool: &sqlx::PgPool) -> bool {
    fetch_one(pool, "SELECT (to_regnamespace('zdm') IS NOT NULL)::text").await == "true"
}

#[tokio::test]
async fn start_refuses_before_expand_sql_that_does_not_parse_or_fit() {
    let pg = common::primary();
    let pool = demo_database(&pg, "start_sql").await;
    let url = pg.primary().url("start_sql");
    let before = catalog(&pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "0001_contract_sql",
            "[[operations]]\nop = \"raw_sql\"\nphase = \"contract\"\nup = \"DELETE FROM orders WHERE WHERE\"\n",
            "raw_sql: `up` does not parse as SQL: syntax error at or near \"WHERE\" (line 1, column 26 of `up`)",
        ),
        (
            "0001_rollback_sql",
            "[[operations]]\nop = \"raw_sql\"\nup = \"CREATE INDEX orders_notes_idx ON orders (notes)\"\ndown = \"DROP INDEXX orders_notes_idx\"\n",
            "raw_sql: `down` does not parse as SQL: syntax error at or near \"INDEXX\"",
        ),
        (
            "0001_up_does_not_fit",
            "[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"total\", type = \"numeric\" }\nup = \"total_cent / 100.0\"\n",
            "add_column: `up` does not fit the database: column \"total_cent\" does not exist",
        ),
    ];
    for (name, file, message) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, file).expect("write");
        let output = zdm(Some(&pg), Some(&url), dir.path(), &["start", name]);
        assert!(!output.status.success(), "{name} must be refused");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("nothing was changed"), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:", path.display())) && stderr.contains(message),
            "{name}: expected {message} in\n{stderr}"
        );
        assert_eq!(before, catalog(&pool).await, "{name}: nothing changed");
        assert!(
            !zdm_schema_exists(&pool).await,
            "{name}: not even schema zdm"
        );
        std::fs::remove_file(&path).expect("remove");
    }
}

/// A plan recorded with contract SQL that does not parse (recorded by an older zdm, or
/// edited in schema zdm) is refused by `zdm complete` before its first contract step.
#[tokio::test]
async fn complete_parses_the_recorded_contract_sql_before_its_first_step() {
    let pg = common::primary();
    let pool = demo_database(&pg, "complete_sql").await;
    let url = pg.primary().url("complete_sql");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "0001_tidy_notes";
    std::fs::write(
        dir.path().join(format!("{name}.toml")),
        "[[operations]]\nop = \"raw_sql\"\nphase = \"contract\"\nup = \"UPDATE orders SET notes = NULL WHERE false\"\n",
    )
    .expect("write");
    let output = zdm(Some(&pg), Some(&url), dir.path(), &["start", name]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    sqlx::query(
        "UPDATE zdm.migrations SET plan = replace(plan::text, 'WHERE false', 'WHERE WHERE false')::jsonb",
    )
    .execute(&pool)
    .await
    .expect("edit the recorded plan");
    let output = zdm(
        Some(&pg),
        Some(&url),
        dir.path(),
        &[
            "complete",
            name,
            "--confirm-contract",
            name,
            "--window",
            "0",
        ],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("contract of 0001_tidy_notes refused before its first step")
            && stderr.contains("syntax error at or near \"WHERE\""),
        "{stderr}"
    );
    assert_eq!(
        fetch_one(&pool, "SELECT status FROM zdm.migrations").await,
        "ready_to_contract"
    );
}
