//! Reshape's own test suite (github.com/fabianlindfors/reshape, `tests/*.rs`), one zdm test
//! per Reshape `#[test]`, named after it and asserting what it asserts. Reshape's harness
//! runs a first migration to completion, its `after_first` writes, then starts the second
//! migration and runs `intermediate` with a client on the old version and one on the new,
//! then either completes (`after_completion` on the new version) or aborts (`after_abort`
//! on the old version), and checks that nothing of its machinery is left. [`Reshape::run`]
//! does the same through zdm's commands (start, complete, rollback), with the old version
//! being the first migration's version schema and the new one the second's. Reshape's
//! `assert_invalid_sql` is zdm's file check finding an error. Reshape's TOML is written
//! here in zdm's format (`[[operations]] op = ...`; mapping in docs/migrations.md, "Coming
//! from Reshape / pgroll").

mod versions_support;

use std::path::Path;

use sqlx::PgPool;
use versions_support::{all, exec, fails, Scenario};

/// One step of a check list.
enum Do {
    /// Run on the old version; must succeed.
    Old(&'static str),
    /// Run on the new version; must succeed.
    New(&'static str),
    /// A query on the old version and the values of its first column, row by row.
    OldSees(&'static str, &'static [&'static str]),
    /// A query on the new version and the values of its first column, row by row.
    NewSees(&'static str, &'static [&'static str]),
    /// Must fail on the old version.
    OldFails(&'static str),
    /// Must fail on the new version.
    NewFails(&'static str),
}

/// A Reshape test: two migrations and what each phase must show.
#[derive(Default)]
struct Reshape {
    /// Names the test databases.
    db: &'static str,
    /// The first migration (zdm TOML), run to completion.
    first: &'static str,
    /// Run on the first migration's version after it completes (Reshape's `after_first`).
    after_first: &'static [Do],
    /// The second migration (zdm TOML); `None` for a one-migration test.
    second: Option<&'static str>,
    intermediate: &'static [Do],
    /// Checked after complete (`Old`/`New` both run on the new version, as Reshape's
    /// `after_completion` has only it).
    after_completion: &'static [Do],
    /// Checked after rollback (on the old version).
    after_abort: &'static [Do],
    /// Reshape's `expect_failure`: starting the second migration fails (then it is rolled
    /// back, and nothing of it may be left).
    start_fails: bool,
}

const FIRST: &str = "0001_first";
const SECOND: &str = "0002_second";

impl Reshape {
    /// Reshape's `Test::run`: with a second migration, once to completion and once
    /// aborted, each on a fresh database.
    async fn run(self) {
        if self.second.is_some() {
            self.run_once(true).await;
            self.run_once(false).await;
        } else {
            self.run_once(true).await;
        }
    }

    async fn run_once(&self, complete: bool) {
        let db = format!("{}_{}", self.db, if complete { "c" } else { "a" });
        let s = Scenario::new(&db, "").await;
        s.migrate(FIRST, self.first).await;
        let old = s.client(Some(FIRST)).await;
        checks(self.after_first, &old, &old).await;
        if let Some(second) = self.second {
            s.write(SECOND, second);
            let before = s.dump();
            let started = s.start(SECOND).await;
            if self.start_fails {
                assert!(
                    !started
                        .as_deref()
                        .is_ok_and(|out| out.contains("ready to contract")),
                    "{db}: starting the second migration must fail: {started:?}"
                );
                // Refused before anything ran, or rolled back: the schema as before.
                let _ = s.try_rollback(SECOND).await;
                assert_eq!(
                    before,
                    s.dump(),
                    "{db}: nothing of the failed migration is left"
                );
                assert_eq!(s.leftovers().await, "", "{db}: zdm's machinery is gone");
                return;
            }
            let started = started.unwrap_or_else(|e| panic!("{e}"));
            assert!(started.contains("ready to contract"), "{started}");
            let new = s.client(Some(SECOND)).await;
            checks(self.intermediate, &old, &new).await;
            if complete {
                old.close().await;
                s.complete(SECOND).await;
                checks(self.after_completion, &new, &new).await;
            } else {
                new.close().await;
                s.rollback(SECOND).await;
                checks(self.after_abort, &old, &old).await;
            }
        }
        assert_eq!(s.leftovers().await, "", "{db}: zdm's machinery is gone");
        s.pool.close().await;
    }
}

async fn checks(list: &[Do], old: &PgPool, new: &PgPool) {
    for step in list {
        match step {
            Do::Old(sql) => exec(old, sql).await,
            Do::New(sql) => exec(new, sql).await,
            Do::OldSees(sql, rows) => assert_eq!(all(old, sql).await, *rows, "old: {sql}"),
            Do::NewSees(sql, rows) => assert_eq!(all(new, sql).await, *rows, "new: {sql}"),
            Do::OldFails(sql) => assert!(fails(old, sql).await, "old must fail: {sql}"),
            Do::NewFails(sql) => assert!(fails(new, sql).await, "new must fail: {sql}"),
        }
    }
}

/// Reshape's `assert_invalid_sql`: the file check finds an error in it.
fn assert_invalid_sql(file: &str) {
    let checked = zdm::migration::check(Path::new("0001_test.toml"), file.as_bytes());
    assert!(
        checked.errors().next().is_some(),
        "expected SQL validation to fail: {:#?}",
        checked.diagnostics
    );
}

use Do::*;

// ---- tests/add_column.rs ----

#[test]
fn add_column_invalid_up_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "add_column"
table = "users"
up = "INVALID $$$ SYNTAX"
column = { name = "test", type = "TEXT" }
"#,
    );
}

#[test]
fn add_column_invalid_default_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "add_column"
table = "users"
column = { name = "test", type = "TEXT", default = "INVALID $$$ SYNTAX" }
"#,
    );
}

#[test]
fn add_column_invalid_complex_up_value_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "add_column"
table = "users"
column = { name = "test", type = "TEXT" }
up = "INVALID $$$ SYNTAX"
from = { table = "other", where = "users.id = other.id" }
"#,
    );
}

#[test]
fn add_column_invalid_complex_up_where_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "add_column"
table = "users"
column = { name = "test", type = "TEXT" }
up = "other.value"
from = { table = "other", where = "INVALID $$$ SYNTAX" }
"#,
    );
}

const USERS_ID_NAME: &str = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT" }]
"#;

const USERS_ID: &str = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }]
"#;

#[tokio::test]
async fn add_column() {
    Reshape {
        db: "add_column",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "users"
up = "(STRING_TO_ARRAY(name, ' '))[1]"
column = { name = "first", type = "TEXT", nullable = false }

[[operations]]
op = "add_column"
table = "users"
up = "(STRING_TO_ARRAY(name, ' '))[2]"
column = { name = "last", type = "TEXT", nullable = false }
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, name) VALUES (1, 'John Doe'), (2, 'Jane Doe');",
        )],
        intermediate: &[
            NewSees(
                "SELECT first || ' ' || last FROM users ORDER BY id",
                &["John Doe", "Jane Doe"],
            ),
            Old("INSERT INTO users (id, name) VALUES (3, 'Test Testsson')"),
            NewSees(
                "SELECT first || '/' || last FROM users WHERE id = 3",
                &["Test/Testsson"],
            ),
        ],
        after_completion: &[NewSees(
            "SELECT first || '/' || last FROM users ORDER BY id",
            &["John/Doe", "Jane/Doe", "Test/Testsson"],
        )],
        after_abort: &[OldSees(
            "SELECT name FROM users ORDER BY id",
            &["John Doe", "Jane Doe", "Test Testsson"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn add_column_nullable() {
    Reshape {
        db: "add_column_nullable",
        first: USERS_ID,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "users"
column = { name = "name", type = "TEXT" }
"#,
        ),
        after_first: &[Old("INSERT INTO users (id) VALUES (1), (2);")],
        intermediate: &[
            NewSees("SELECT name FROM users ORDER BY id", &["NULL", "NULL"]),
            Old("INSERT INTO users (id) VALUES (3)"),
            NewSees("SELECT name FROM users WHERE id = 3", &["NULL"]),
            New("INSERT INTO users (id, name) VALUES (4, 'Test Testsson'), (5, NULL)"),
        ],
        after_completion: &[NewSees(
            "SELECT name FROM users ORDER BY id",
            &["NULL", "NULL", "NULL", "Test Testsson", "NULL"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn add_column_with_default() {
    Reshape {
        db: "add_column_with_default",
        first: USERS_ID,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "users"
column = { name = "name", type = "TEXT", nullable = false, default = "'DEFAULT'" }
"#,
        ),
        after_first: &[Old("INSERT INTO users (id) VALUES (1), (2)")],
        intermediate: &[
            NewSees(
                "SELECT name FROM users ORDER BY id",
                &["DEFAULT", "DEFAULT"],
            ),
            Old("INSERT INTO users (id) VALUES (3)"),
            NewSees("SELECT name FROM users WHERE id = 3", &["DEFAULT"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

const USERS_AND_PROFILES: &str = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "email", type = "TEXT" }]

[[operations]]
op = "create_table"
table = "profiles"
primary_key = ["user_id"]
columns = [{ name = "user_id", type = "INTEGER" }]
"#;

#[tokio::test]
async fn add_column_with_complex_up() {
    Reshape {
        db: "add_column_with_complex_up",
        first: USERS_AND_PROFILES,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "TEXT", nullable = false }
up = "users.email"
from = { table = "users", where = "profiles.user_id = users.id" }
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, email) VALUES (1, 'test@example.com');
                      INSERT INTO profiles (user_id) VALUES (1);",
        )],
        intermediate: &[
            NewSees(
                "SELECT email FROM profiles WHERE user_id = 1",
                &["test@example.com"],
            ),
            Old("UPDATE users SET email = 'test2@example.com' WHERE id = 1"),
            NewSees(
                "SELECT email FROM profiles WHERE user_id = 1",
                &["test2@example.com"],
            ),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/complex.rs ----

#[tokio::test]
async fn move_column_between_tables() {
    Reshape {
        db: "move_column_between_tables",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "email", type = "TEXT" }]

[[operations]]
op = "create_table"
table = "profiles"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "user_id", type = "INTEGER", nullable = false }]
"#,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "TEXT", nullable = false }
up = "users.email"
from = { table = "users", where = "profiles.user_id = users.id" }

[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = "users.id = profiles.user_id" }
"#,
        ),
        after_first: &[Old("INSERT INTO users (id, email) VALUES (1, 'test1@test.com');
                      INSERT INTO users (id, email) VALUES (2, 'test2@test.com');
                      INSERT INTO profiles (id, user_id) VALUES (1, 1);
                      INSERT INTO profiles (id, user_id) VALUES (2, 2);")],
        intermediate: &[
            NewSees(
                "SELECT email FROM profiles ORDER BY id",
                &["test1@test.com", "test2@test.com"],
            ),
            Old("INSERT INTO users (id, email) VALUES (3, 'test3@test.com')"),
            Old("INSERT INTO profiles (id, user_id) VALUES (3, 3)"),
            NewSees("SELECT email FROM profiles WHERE id = 3", &["test3@test.com"]),
            Old("UPDATE users SET email = 'test3+updated@test.com' WHERE id = 3"),
            NewSees("SELECT email FROM profiles WHERE id = 3", &["test3+updated@test.com"]),
            New("INSERT INTO profiles (id, user_id, email) VALUES (4, 4, 'test4@test.com')"),
            New("INSERT INTO users (id) VALUES (4)"),
            OldSees("SELECT email FROM users WHERE id = 4", &["test4@test.com"]),
            New("UPDATE profiles SET email = 'test4+updated@test.com' WHERE id = 4"),
            OldSees("SELECT email FROM users WHERE id = 4", &["test4+updated@test.com"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

/// Reshape's `up = { table, values, where }` is zdm's create_table `up` (same keys); its
/// `remove_column` with a `down` from another table is drop_column with `from`. The old
/// column is NOT NULL: it is relaxed while the migration is live (the new version inserts
/// a user before its connection), and kept for the old version's own writes.
#[tokio::test]
async fn extract_relation_into_new_table() {
    Reshape {
        db: "extract_relation_into_new_table",
        first: r#"
[[operations]]
op = "create_table"
table = "accounts"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }]

[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [
  { name = "id", type = "INTEGER" },
  { name = "account_id", type = "INTEGER", nullable = false },
  { name = "account_role", type = "TEXT", nullable = false },
]
"#,
        after_first: &[
            Old("INSERT INTO accounts (id) VALUES (1)"),
            Old("INSERT INTO users (id, account_id, account_role) VALUES (1, 1, 'admin')"),
        ],
        second: Some(
            r#"
[[operations]]
op = "create_table"
table = "user_account_connections"
primary_key = ["account_id", "user_id"]
columns = [
  { name = "account_id", type = "INTEGER" },
  { name = "user_id", type = "INTEGER" },
  { name = "role", type = "TEXT", nullable = false },
]
up = { table = "users", values = { user_id = "id", account_id = "account_id", role = "UPPER(account_role)" }, where = "user_account_connections.user_id = users.id" }

[[operations]]
op = "drop_column"
table = "users"
column = "account_id"
down = "user_account_connections.account_id"
from = { table = "user_account_connections", where = "users.id = user_account_connections.user_id" }

[[operations]]
op = "drop_column"
table = "users"
column = "account_role"
down = "LOWER(user_account_connections.role)"
from = { table = "user_account_connections", where = "users.id = user_account_connections.user_id" }
"#,
        ),
        intermediate: &[
            // The connections were backfilled.
            NewSees(
                "SELECT account_id || ',' || user_id || ',' || role FROM user_account_connections",
                &["1,1,ADMIN"],
            ),
            // A user inserted by the old version creates a connection.
            Old("INSERT INTO users (id, account_id, account_role) VALUES (2, 1, 'developer')"),
            NewSees(
                "SELECT count(*)::text FROM user_account_connections
                 WHERE account_id = 1 AND user_id = 2 AND role = 'DEVELOPER'",
                &["1"],
            ),
            // NOT NULL still applies to the old version (Reshape reuses id 2, which fails
            // on the primary key anyway: a fresh id shows the NOT NULL itself).
            OldFails("INSERT INTO users (id, account_id, account_role) VALUES (2, NULL, 'developer')"),
            OldFails("INSERT INTO users (id, account_id, account_role) VALUES (20, NULL, 'developer')"),
            OldFails("UPDATE users SET account_id = NULL WHERE id = 2"),
            // The old version's update of the role updates the connection.
            Old("UPDATE users SET account_role = 'admin' WHERE id = 2"),
            NewSees(
                "SELECT count(*)::text FROM user_account_connections
                 WHERE account_id = 1 AND user_id = 2 AND role = 'ADMIN'",
                &["1"],
            ),
            // The new version's update of the connection updates the old version's user.
            New("UPDATE user_account_connections SET role = 'DEVELOPER' WHERE account_id = 1 AND user_id = 2"),
            OldSees(
                "SELECT id::text FROM users WHERE id = 2 AND account_id = 1 AND account_role = 'developer'",
                &["2"],
            ),
            // A user and its connection inserted by the new version reach the old version.
            New("BEGIN;
                 INSERT INTO users (id) VALUES (3);
                 INSERT INTO user_account_connections (user_id, account_id, role) VALUES (3, 1, 'DEVELOPER');
                 COMMIT;"),
            OldSees(
                "SELECT id::text FROM users WHERE id = 3 AND account_id = 1 AND account_role = 'developer'",
                &["3"],
            ),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/remove_column.rs ----

#[test]
fn remove_column_invalid_down_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "drop_column"
table = "users"
column = "name"
down = "INVALID $$$ SYNTAX"
"#,
    );
}

#[test]
fn remove_column_invalid_complex_down_value_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "drop_column"
table = "users"
column = "name"
down = "INVALID $$$ SYNTAX"
from = { table = "other", where = "users.id = other.id" }
"#,
    );
}

#[test]
fn remove_column_invalid_complex_down_where_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "drop_column"
table = "users"
column = "name"
down = "other.value"
from = { table = "other", where = "INVALID $$$ SYNTAX" }
"#,
    );
}

#[tokio::test]
async fn remove_column() {
    Reshape {
        db: "remove_column",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "drop_column"
table = "users"
column = "name"
down = "'TEST_DOWN_VALUE'"
"#,
        ),
        intermediate: &[
            Old("INSERT INTO users(id, name) VALUES (1, 'John Doe')"),
            NewSees("SELECT id::text FROM users WHERE id = 1", &["1"]),
            NewFails("SELECT id, name FROM users"),
            New("INSERT INTO users(id) VALUES (2)"),
            OldSees("SELECT name FROM users WHERE id = 2", &["TEST_DOWN_VALUE"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn remove_column_with_index() {
    Reshape {
        db: "remove_column_with_index",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT" }]

[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
"#,
        second: Some(
            r#"
[[operations]]
op = "drop_column"
table = "users"
column = "name"
down = "'TEST_DOWN_VALUE'"
"#,
        ),
        after_completion: &[NewSees(
            "SELECT count(*)::text FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             WHERE pg_class.relname = 'name_idx'",
            &["0"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn remove_column_with_complex_down() {
    Reshape {
        db: "remove_column_with_complex_down",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "email", type = "TEXT" }]

[[operations]]
op = "create_table"
table = "profiles"
primary_key = ["user_id"]
columns = [{ name = "user_id", type = "INTEGER" }, { name = "email", type = "TEXT" }]
"#,
        second: Some(
            r#"
[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = "users.id = profiles.user_id" }
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, email) VALUES (1, 'test@example.com');
                      INSERT INTO profiles (user_id, email) VALUES (1, 'test@example.com');",
        )],
        intermediate: &[
            New("UPDATE profiles SET email = 'test2@example.com' WHERE user_id = 1"),
            OldSees(
                "SELECT email FROM users WHERE id = 1",
                &["test2@example.com"],
            ),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/alter_column.rs ----

#[test]
fn alter_column_invalid_up_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "change_type"
table = "users"
column = "name"
type = "TEXT"
up = "INVALID $$$ SYNTAX"
down = "name"
"#,
    );
}

#[test]
fn alter_column_invalid_down_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "change_type"
table = "users"
column = "name"
type = "TEXT"
up = "name"
down = "INVALID $$$ SYNTAX"
"#,
    );
}

#[test]
fn alter_column_invalid_default_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "set_default"
table = "users"
column = "name"
default = "INVALID $$$ SYNTAX"
"#,
    );
}

#[tokio::test]
async fn alter_column_data() {
    Reshape {
        db: "alter_column_data",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "change_type"
table = "users"
column = "name"
type = "TEXT"
up = "UPPER(name)"
down = "LOWER(name)"
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, name) VALUES (1, 'john Doe'), (2, 'jane Doe');",
        )],
        intermediate: &[
            NewSees(
                "SELECT name FROM users ORDER BY id",
                &["JOHN DOE", "JANE DOE"],
            ),
            Old("INSERT INTO users (id, name) VALUES (3, 'test testsson')"),
            NewSees("SELECT name FROM users WHERE id = 3", &["TEST TESTSSON"]),
            New("INSERT INTO users (id, name) VALUES (4, 'TEST TESTSSON')"),
            OldSees("SELECT name FROM users WHERE id = 4", &["test testsson"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_set_not_null() {
    Reshape {
        db: "alter_column_set_not_null",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "set_not_null"
table = "users"
column = "name"
up = "COALESCE(name, 'TEST_DEFAULT_VALUE')"
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, name) VALUES (1, 'John Doe'), (2, NULL);",
        )],
        intermediate: &[
            NewSees(
                "SELECT name FROM users ORDER BY id",
                &["John Doe", "TEST_DEFAULT_VALUE"],
            ),
            Old("INSERT INTO users (id, name) VALUES (3, NULL)"),
            NewSees(
                "SELECT name FROM users WHERE id = 3",
                &["TEST_DEFAULT_VALUE"],
            ),
            New("INSERT INTO users (id, name) VALUES (4, 'Jane Doe')"),
            OldSees("SELECT name FROM users WHERE id = 4", &["Jane Doe"]),
            NewFails("INSERT INTO users (id, name) VALUES (5, NULL)"),
        ],
        after_completion: &[NewFails("INSERT INTO users (id, name) VALUES (5, NULL)")],
        after_abort: &[Old("INSERT INTO users (id, name) VALUES (5, NULL)")],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_set_nullable() {
    Reshape {
        db: "alter_column_set_nullable",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT", nullable = false }]
"#,
        second: Some(
            r#"
[[operations]]
op = "drop_not_null"
table = "users"
column = "name"
down = "COALESCE(name, 'TEST_DEFAULT_VALUE')"
"#,
        ),
        after_first: &[Old("INSERT INTO users (id, name) VALUES (1, 'John Doe')")],
        intermediate: &[
            New("INSERT INTO users (id, name) VALUES (2, NULL)"),
            OldSees(
                "SELECT name FROM users WHERE id = 2",
                &["TEST_DEFAULT_VALUE"],
            ),
            OldFails("INSERT INTO users (id, name) VALUES (3, NULL)"),
            New("INSERT INTO users (id, name) VALUES (4, NULL)"),
        ],
        after_completion: &[New("INSERT INTO users (id, name) VALUES (5, NULL)")],
        after_abort: &[OldFails("INSERT INTO users (id, name) VALUES (5, NULL)")],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_rename() {
    Reshape {
        db: "alter_column_rename",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "rename_column"
table = "users"
column = "name"
to = "full_name"
"#,
        ),
        after_first: &[Old(
            "INSERT INTO users (id, name) VALUES (1, 'John Doe'), (2, 'Jane Doe');",
        )],
        intermediate: &[NewSees(
            "SELECT full_name FROM users ORDER BY id",
            &["John Doe", "Jane Doe"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_multiple() {
    Reshape {
        db: "alter_column_multiple",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "counter", type = "INTEGER", nullable = false }]
"#,
        second: Some(
            r#"
[[operations]]
op = "change_type"
table = "users"
column = "counter"
type = "INTEGER"
up = "counter + 1"
down = "counter - 1"

[[operations]]
op = "change_type"
table = "users"
column = "counter"
type = "INTEGER"
up = "counter + 1"
down = "counter - 1"
"#,
        ),
        after_first: &[Old("INSERT INTO users (id, counter) VALUES (1, 0), (2, 100);")],
        intermediate: &[
            NewSees("SELECT counter::text FROM users ORDER BY id", &["2", "102"]),
            Old("UPDATE users SET counter = 50 WHERE id = 1"),
            NewSees("SELECT counter::text FROM users WHERE id = 1", &["52"]),
            New("UPDATE users SET counter = 50 WHERE id = 1"),
            OldSees("SELECT counter::text FROM users WHERE id = 1", &["48"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_default() {
    Reshape {
        db: "alter_column_default",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT", nullable = false, default = "'DEFAULT'" }]
"#,
        second: Some(
            r#"
[[operations]]
op = "set_default"
table = "users"
column = "name"
default = "'NEW DEFAULT'"
"#,
        ),
        after_first: &[Old("INSERT INTO users (id) VALUES (1)")],
        intermediate: &[
            NewSees("SELECT name FROM users", &["DEFAULT"]),
            Old("INSERT INTO users (id) VALUES (2)"),
            NewSees("SELECT name FROM users WHERE id = 2", &["DEFAULT"]),
            New("INSERT INTO users (id) VALUES (3)"),
            OldSees("SELECT name FROM users WHERE id = 3", &["NEW DEFAULT"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_with_index() {
    Reshape {
        db: "alter_column_with_index",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "first_name", type = "TEXT" }, { name = "last_name", type = "TEXT" }]

[[operations]]
op = "create_index"
table = "users"
name = "users_name_idx"
columns = ["first_name", "last_name"]
"#,
        second: Some(
            r#"
[[operations]]
op = "change_type"
table = "users"
column = "last_name"
type = "TEXT"
up = "UPPER(last_name)"
down = "LOWER(last_name)"
"#,
        ),
        after_completion: &[NewSees(
            "SELECT count(*)::text FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             WHERE pg_class.relname = 'users_name_idx'",
            &["1"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_with_unique_index() {
    Reshape {
        db: "alter_column_with_unique_index",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT" }]

[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
unique = true
"#,
        second: Some(
            r#"
[[operations]]
op = "change_type"
table = "users"
column = "name"
type = "TEXT"
up = "UPPER(name)"
down = "LOWER(name)"
"#,
        ),
        after_first: &[Old("INSERT INTO users (id, name) VALUES (1, 'Test')")],
        intermediate: &[
            NewFails("INSERT INTO users (id, name) VALUES (2, 'TEST')"),
            New("INSERT INTO users (id, name) VALUES (2, 'JOHN')"),
            OldFails("INSERT INTO users (id, name) VALUES (3, 'john')"),
        ],
        after_completion: &[NewSees(
            "SELECT pg_index.indisunique::text FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             WHERE pg_class.relname = 'name_idx'",
            &["true"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn alter_column_with_hash_index() {
    Reshape {
        db: "alter_column_with_hash_index",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT" }]

[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
method = "hash"
"#,
        second: Some(
            r#"
[[operations]]
op = "change_type"
table = "users"
column = "name"
type = "TEXT"
up = "UPPER(name)"
down = "LOWER(name)"
"#,
        ),
        after_completion: &[NewSees(
            "SELECT pg_am.amname::text FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             JOIN pg_catalog.pg_am ON pg_class.relam = pg_am.oid
             WHERE pg_class.relname = 'name_idx'",
            &["hash"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/add_foreign_key.rs ----

const USERS_AND_ITEMS: &str = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }]

[[operations]]
op = "create_table"
table = "items"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "user_id", type = "INTEGER" }]
"#;

/// Reshape names the key `<table>_<column>_fkey`; zdm's add_foreign_key takes the name.
const ADD_ITEMS_FKEY: &str = r#"
[[operations]]
op = "add_foreign_key"
table = "items"
name = "items_user_id_fkey"
columns = ["user_id"]
references = { table = "users", columns = ["id"] }
"#;

const ITEMS_FKEYS: &str =
    "SELECT tc.constraint_name::text FROM information_schema.table_constraints AS tc
     WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name = 'items'";

#[tokio::test]
async fn add_foreign_key() {
    Reshape {
        db: "add_foreign_key",
        first: USERS_AND_ITEMS,
        second: Some(ADD_ITEMS_FKEY),
        after_first: &[Old("INSERT INTO users (id) VALUES (1), (2)")],
        intermediate: &[
            Old("INSERT INTO items (id, user_id) VALUES (1, 1), (2, 2)"),
            OldFails("INSERT INTO items (id, user_id) VALUES (3, 3)"),
        ],
        after_completion: &[
            New("INSERT INTO items (id, user_id) VALUES (3, 1), (4, 2)"),
            NewFails("INSERT INTO items (id, user_id) VALUES (5, 3)"),
            NewSees(ITEMS_FKEYS, &["items_user_id_fkey"]),
        ],
        after_abort: &[OldSees(ITEMS_FKEYS, &[])],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn add_invalid_foreign_key() {
    Reshape {
        db: "add_invalid_foreign_key",
        first: USERS_AND_ITEMS,
        second: Some(ADD_ITEMS_FKEY),
        after_first: &[Old("INSERT INTO items (id, user_id) VALUES (1, 1), (2, 2)")],
        start_fails: true,
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/add_index.rs ----

/// `ready,valid,unique,method` of index `$name`.
macro_rules! index_state {
    ($name:literal) => {
        concat!(
            "SELECT concat_ws(',', pg_index.indisready, pg_index.indisvalid, pg_index.indisunique, pg_am.amname)
             FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             JOIN pg_catalog.pg_am ON pg_class.relam = pg_am.oid
             WHERE pg_class.relname = '",
            $name,
            "'"
        )
    };
}

#[tokio::test]
async fn add_index() {
    Reshape {
        db: "add_index",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
"#,
        ),
        intermediate: &[OldSees(index_state!("name_idx"), &["t,t,f,btree"])],
        after_completion: &[NewSees(index_state!("name_idx"), &["t,t,f,btree"])],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn add_index_unique() {
    Reshape {
        db: "add_index_unique",
        first: USERS_ID_NAME,
        second: Some(
            r#"
[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
unique = true
"#,
        ),
        intermediate: &[OldSees(index_state!("name_idx"), &["t,t,t,btree"])],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn add_index_with_type() {
    Reshape {
        db: "add_index_with_type",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "data", type = "JSONB" }]
"#,
        second: Some(
            r#"
[[operations]]
op = "create_index"
table = "users"
name = "data_idx"
columns = ["data"]
method = "gin"
"#,
        ),
        intermediate: &[OldSees(index_state!("data_idx"), &["t,t,f,gin"])],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/create_enum.rs ----

#[tokio::test]
async fn create_enum() {
    Reshape {
        db: "create_enum",
        first: r#"
[[operations]]
op = "create_enum"
name = "mood"
values = ["happy", "ok", "sad"]

[[operations]]
op = "create_table"
table = "updates"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "status", type = "mood" }]
"#,
        after_first: &[Old(
            "INSERT INTO updates (id, status) VALUES (1, 'happy'), (2, 'ok'), (3, 'sad')",
        )],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/create_table.rs ----

#[test]
fn create_table_invalid_default_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT", default = "INVALID $$$ SYNTAX" }]
"#,
    );
}

/// Reshape's file has no `where` (it is optional there); zdm's needs one, given valid here so
/// that the error found is the value's SQL.
#[test]
fn create_table_invalid_up_values_sql() {
    let file = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }]
up = { table = "other", values = { id = "INVALID $$$ SYNTAX" }, where = "users.id = other.id" }
"#;
    assert_invalid_sql(file);
    let checked = zdm::migration::check(Path::new("0001_test.toml"), file.as_bytes());
    let errors: Vec<String> = checked.errors().map(|e| format!("{e:?}")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("up.values.id"),
        "one error, on up.values.id: {errors:#?}"
    );
}

const USERS_WITH_IDENTITY: &str = r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [
  { name = "id", type = "INTEGER", identity = "always" },
  { name = "name", type = "TEXT" },
  { name = "created_at", type = "TIMESTAMP", nullable = false, default = "NOW()" },
]
"#;

#[tokio::test]
async fn create_table() {
    Reshape {
        db: "create_table",
        first: USERS_WITH_IDENTITY,
        after_first: &[
            OldSees(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_name = 'users' AND table_schema = 'public'",
                &["users"],
            ),
            OldSees(
                "SELECT concat_ws(',', column_name, column_default IS NOT NULL, is_nullable, data_type)
                 FROM information_schema.columns
                 WHERE table_name = 'users' AND table_schema = 'public' ORDER BY ordinal_position",
                &[
                    "id,f,NO,integer",
                    "name,f,YES,text",
                    "created_at,t,NO,timestamp without time zone",
                ],
            ),
            OldSees(
                "SELECT a.attname::text FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 JOIN pg_class t ON t.oid = i.indrelid
                 WHERE t.relname = 'users' AND i.indisprimary",
                &["id"],
            ),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

#[tokio::test]
async fn create_table_with_foreign_keys() {
    Reshape {
        db: "create_table_with_foreign_keys",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [
  { name = "id", type = "INTEGER", identity = "always" },
  { name = "name", type = "TEXT" },
  { name = "created_at", type = "TIMESTAMP", nullable = false, default = "NOW()" },
]

[[operations]]
op = "create_table"
table = "items"
primary_key = ["id"]
columns = [
  { name = "id", type = "INTEGER" },
  { name = "user_id", type = "INTEGER", nullable = false, references = { table = "users", columns = ["id"] } },
]
"#,
        after_first: &[OldSees(
            "SELECT concat_ws(',', kcu.column_name, ccu.table_name, ccu.column_name)
             FROM information_schema.table_constraints AS tc
             JOIN information_schema.key_column_usage AS kcu
               ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema
             JOIN information_schema.constraint_column_usage AS ccu
               ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema
             WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name = 'items'",
            &["user_id,users,id"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/custom.rs ----

#[test]
fn custom_invalid_start_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "raw_sql"
up = "INVALID $$$ SYNTAX"
down = "SELECT 1"
"#,
    );
}

#[test]
fn custom_invalid_complete_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "raw_sql"
phase = "contract"
up = "INVALID $$$ SYNTAX"
"#,
    );
}

#[test]
fn custom_invalid_abort_sql() {
    assert_invalid_sql(
        r#"
[[operations]]
op = "raw_sql"
up = "SELECT 1"
down = "INVALID $$$ SYNTAX"
"#,
    );
}

const EXTENSIONS: &str = "SELECT string_agg(extname::text, ',' ORDER BY extname) FROM pg_extension
     WHERE extname IN ('bloom', 'btree_gin', 'btree_gist')";

#[tokio::test]
async fn custom_enable_extension() {
    Reshape {
        db: "custom_enable_extension",
        first: r#"
[[operations]]
op = "raw_sql"
up = "SELECT 1"
down = "SELECT 1"
"#,
        second: Some(
            r#"
[[operations]]
op = "raw_sql"
up = """
CREATE EXTENSION IF NOT EXISTS bloom;
CREATE EXTENSION IF NOT EXISTS btree_gin;
"""
down = """
DROP EXTENSION IF EXISTS bloom;
DROP EXTENSION IF EXISTS btree_gin;
"""

[[operations]]
op = "raw_sql"
phase = "contract"
up = "CREATE EXTENSION IF NOT EXISTS btree_gist"
"#,
        ),
        intermediate: &[OldSees(EXTENSIONS, &["bloom,btree_gin"])],
        after_completion: &[NewSees(EXTENSIONS, &["bloom,btree_gin,btree_gist"])],
        after_abort: &[OldSees(EXTENSIONS, &["NULL"])],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/failure.rs ----

#[tokio::test]
async fn invalid_migration() {
    Reshape {
        db: "invalid_migration",
        first: USERS_ID,
        second: Some(
            r#"
[[operations]]
op = "add_column"
table = "users"
up = "INVALID SQL"
column = { name = "first", type = "TEXT" }
"#,
        ),
        after_first: &[Old("INSERT INTO users (id) VALUES (1)")],
        start_fails: true,
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/remove_enum.rs ----

const MOOD: &str =
    "SELECT count(*)::text FROM pg_catalog.pg_type WHERE typcategory = 'E' AND typname = 'mood'";

#[tokio::test]
async fn remove_enum() {
    Reshape {
        db: "remove_enum",
        first: r#"
[[operations]]
op = "create_enum"
name = "mood"
values = ["happy", "ok", "sad"]
"#,
        after_first: &[OldSees(MOOD, &["1"])],
        second: Some(
            r#"
[[operations]]
op = "drop_enum"
name = "mood"
"#,
        ),
        after_completion: &[NewSees(MOOD, &["0"])],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/remove_foreign_key.rs ----

#[tokio::test]
async fn remove_foreign_key() {
    Reshape {
        db: "remove_foreign_key",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }]

[[operations]]
op = "create_table"
table = "items"
primary_key = ["id"]
columns = [
  { name = "id", type = "INTEGER" },
  { name = "user_id", type = "INTEGER", references = { table = "users", columns = ["id"] } },
]
"#,
        second: Some(
            r#"
[[operations]]
op = "drop_constraint"
table = "items"
name = "items_user_id_fkey"
"#,
        ),
        after_first: &[Old("INSERT INTO users (id) VALUES (1), (2)")],
        intermediate: &[
            OldFails("INSERT INTO items (id, user_id) VALUES (3, 3)"),
            NewFails("INSERT INTO items (id, user_id) VALUES (3, 3)"),
        ],
        after_completion: &[
            New("INSERT INTO items (id, user_id) VALUES (5, 3)"),
            NewSees(ITEMS_FKEYS, &[]),
        ],
        after_abort: &[
            OldFails("INSERT INTO items (id, user_id) VALUES (3, 3)"),
            OldSees(ITEMS_FKEYS, &["items_user_id_fkey"]),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/remove_index.rs ----

#[tokio::test]
async fn remove_index() {
    Reshape {
        db: "remove_index",
        first: r#"
[[operations]]
op = "create_table"
table = "users"
primary_key = ["id"]
columns = [{ name = "id", type = "INTEGER" }, { name = "name", type = "TEXT" }]

[[operations]]
op = "create_index"
table = "users"
name = "name_idx"
columns = ["name"]
"#,
        second: Some(
            r#"
[[operations]]
op = "drop_index"
name = "name_idx"
"#,
        ),
        intermediate: &[OldSees(index_state!("name_idx"), &["t,t,f,btree"])],
        after_completion: &[NewSees(
            "SELECT count(*)::text FROM pg_catalog.pg_index
             JOIN pg_catalog.pg_class ON pg_index.indexrelid = pg_class.oid
             WHERE pg_class.relname = 'name_idx'",
            &["0"],
        )],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/remove_table.rs ----

#[tokio::test]
async fn remove_table() {
    Reshape {
        db: "remove_table",
        first: USERS_ID,
        second: Some(
            r#"
[[operations]]
op = "drop_table"
table = "users"
"#,
        ),
        intermediate: &[
            Old("INSERT INTO users(id) VALUES (1)"),
            NewFails("SELECT id FROM users"),
        ],
        ..Default::default()
    }
    .run()
    .await;
}

// ---- tests/rename_table.rs ----

#[tokio::test]
async fn rename_table() {
    Reshape {
        db: "rename_table",
        first: USERS_ID,
        second: Some(
            r#"
[[operations]]
op = "rename_table"
table = "users"
to = "customers"
"#,
        ),
        intermediate: &[
            Old("INSERT INTO users(id) VALUES (1)"),
            New("INSERT INTO customers(id) VALUES (2)"),
            OldSees("SELECT id::text FROM users ORDER BY id", &["1", "2"]),
            NewSees("SELECT id::text FROM customers ORDER BY id", &["1", "2"]),
            OldFails("SELECT id FROM customers"),
            NewFails("SELECT id FROM users"),
        ],
        ..Default::default()
    }
    .run()
    .await;
}
