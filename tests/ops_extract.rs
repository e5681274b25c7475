//! Extract a relation into a new table (create_table with `up`, with drop_column's `down`
//! from the new table) through the engine's commands on a real PostgreSQL: start →
//! rollback leaves `pg_dump --schema-only` exactly as before; start again, an old-version
//! and a new-version client write at the same time, each sees the other's writes in its
//! own shape (several rows of one user: the old version sees the first by key), complete
//! leaves no zdm machinery. A NOT NULL column filled from the new table is relaxed while
//! live, kept for the old version's writes, and given back at rollback.

mod versions_support;

use versions_support::{exec, fails, one, write_concurrently, Scenario};

const ACCOUNTS_AND_USERS: &str = "
CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, account_id integer REFERENCES accounts);
INSERT INTO accounts SELECT i, 'account ' || i FROM generate_series(1, 20) i;
INSERT INTO users SELECT i, 'user ' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE i % 20 + 1 END
  FROM generate_series(1, 3000) i;
";

/// users.account_id (one account per user, or none) into user_accounts (several per user).
const EXTRACT: &str = r#"
[[operations]]
op = "create_table"
table = "user_accounts"
primary_key = ["user_id", "account_id"]
columns = [
  { name = "user_id", type = "integer", references = { table = "users", columns = ["id"], on_delete = "cascade" } },
  { name = "account_id", type = "integer", references = { table = "accounts", columns = ["id"] } },
  { name = "role", type = "text", nullable = false, default = "'member'" },
]
up = { table = "users", values = { user_id = "users.id", account_id = "users.account_id" }, where = "user_accounts.user_id = users.id", filter = "users.account_id IS NOT NULL" }

[[operations]]
op = "drop_column"
table = "users"
column = "account_id"
down = "user_accounts.account_id"
from = { table = "user_accounts", where = "user_accounts.user_id = users.id" }
"#;

#[tokio::test]
async fn extract_a_relation_with_both_versions_writing() {
    let s = Scenario::new("extract", ACCOUNTS_AND_USERS).await;
    let name = "0001_user_accounts";
    s.start_after_exact_rollback(name, EXTRACT).await;
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;

    // Backfilled: one row per user with an account, none for the others, in batches by
    // users' key, each with its checkpoint.
    assert_eq!(
        one(&new, "SELECT count(*)::text FROM user_accounts").await,
        "2700"
    );
    assert_eq!(
        one(
            &new,
            "SELECT count(*)::text FROM user_accounts a JOIN users u ON u.id = a.user_id
             WHERE a.account_id = u.id % 20 + 1 AND a.role = 'member'"
        )
        .await,
        "2700"
    );
    assert_eq!(
        one(
            &s.pool,
            "SELECT sum(rows_updated)::text || ' ' || (sum(batches) > 0)::text
             FROM zdm.backfill_progress WHERE migration = '0001_user_accounts'"
        )
        .await,
        "2700 true"
    );
    assert!(fails(&new, "SELECT account_id FROM users").await);

    write_concurrently(
        &old,
        &[
            "INSERT INTO users VALUES (5001, 'old with account', 3)",
            "INSERT INTO users VALUES (5002, 'old without account', NULL)",
            "UPDATE users SET account_id = 7 WHERE id = 1",
            "UPDATE users SET account_id = NULL WHERE id = 2",
            "UPDATE users SET account_id = 9 WHERE id = 10",
            "UPDATE users SET name = 'renamed' WHERE id = 3",
            "DELETE FROM users WHERE id = 4",
        ],
        &new,
        &[
            "INSERT INTO users VALUES (6001, 'new with two accounts')",
            "INSERT INTO user_accounts VALUES (6001, 12, 'owner'), (6001, 5, 'member')",
            "INSERT INTO users VALUES (6002, 'new without account')",
            "UPDATE user_accounts SET account_id = 15 WHERE user_id = 21",
            "DELETE FROM user_accounts WHERE user_id = 31",
            "INSERT INTO user_accounts VALUES (40, 1, 'admin')",
        ],
    )
    .await;

    // The new version sees the old version's writes as rows of user_accounts.
    for (sql, expected) in [
        (
            "SELECT string_agg(account_id::text, ',') FROM user_accounts WHERE user_id = 5001",
            "3",
        ),
        (
            "SELECT count(*)::text FROM user_accounts WHERE user_id = 5002",
            "0",
        ),
        (
            "SELECT string_agg(account_id::text, ',') FROM user_accounts WHERE user_id = 1",
            "7",
        ),
        (
            "SELECT count(*)::text FROM user_accounts WHERE user_id = 2",
            "0",
        ),
        (
            "SELECT string_agg(account_id::text || ':' || role, ',') FROM user_accounts WHERE user_id = 10",
            "9:member",
        ),
        (
            "SELECT string_agg(account_id::text, ',') FROM user_accounts WHERE user_id = 3",
            "4",
        ),
        (
            "SELECT count(*)::text FROM user_accounts WHERE user_id = 4",
            "0",
        ),
    ] {
        assert_eq!(one(&new, sql).await, expected, "new version: {sql}");
    }
    // The old version sees the new version's rows as users.account_id: of several, the
    // first by user_accounts' key (user_id, account_id).
    for (sql, expected) in [
        ("SELECT account_id::text FROM users WHERE id = 6001", "5"),
        ("SELECT account_id::text FROM users WHERE id = 6002", "NULL"),
        ("SELECT account_id::text FROM users WHERE id = 21", "15"),
        ("SELECT account_id::text FROM users WHERE id = 31", "NULL"),
        ("SELECT account_id::text FROM users WHERE id = 40", "1"),
        ("SELECT account_id::text FROM users WHERE id = 1", "7"),
    ] {
        assert_eq!(one(&old, sql).await, expected, "old version: {sql}");
    }
    // The old version's change of such a user's account changes the row it sees, only.
    exec(&old, "UPDATE users SET account_id = 6 WHERE id = 6001").await;
    assert_eq!(
        one(
            &new,
            "SELECT string_agg(account_id::text || ':' || role, ',' ORDER BY account_id) FROM user_accounts WHERE user_id = 6001"
        )
        .await,
        "6:member,12:owner"
    );
    assert_eq!(
        one(&old, "SELECT account_id::text FROM users WHERE id = 6001").await,
        "6"
    );
    // An update of another column leaves the new version's rows alone.
    exec(
        &new,
        "UPDATE user_accounts SET role = 'owner' WHERE user_id = 5",
    )
    .await;
    exec(&old, "UPDATE users SET name = 'touched' WHERE id = 5").await;
    assert_eq!(
        one(&new, "SELECT role FROM user_accounts WHERE user_id = 5").await,
        "owner"
    );
    old.close().await;
    new.close().await;

    s.complete(name).await;
    assert_eq!(s.leftovers().await, "");
    assert_eq!(
        one(&s.pool, "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'account_id'").await,
        "0"
    );
    assert_eq!(
        one(&s.pool, "SELECT count(*)::text FROM user_accounts").await,
        "2702"
    );
    // After contract, users is an ordinary table again.
    exec(&s.pool, "INSERT INTO users VALUES (7001, 'after')").await;
    assert_eq!(
        one(
            &s.pool,
            "SELECT count(*)::text FROM user_accounts WHERE user_id = 7001"
        )
        .await,
        "0"
    );
}

const NOT_NULL_ACCOUNTS: &str = "
CREATE TABLE accounts (id integer PRIMARY KEY);
CREATE TABLE users (id integer PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts);
INSERT INTO accounts SELECT generate_series(1, 5);
INSERT INTO users SELECT i, i % 5 + 1 FROM generate_series(1, 500) i;
";

const EXTRACT_NOT_NULL: &str = r#"
[[operations]]
op = "create_table"
table = "user_accounts"
primary_key = ["user_id", "account_id"]
columns = [{ name = "user_id", type = "integer" }, { name = "account_id", type = "integer" }]
up = { table = "users", values = { user_id = "users.id", account_id = "users.account_id" }, where = "user_accounts.user_id = users.id" }

[[operations]]
op = "drop_column"
table = "users"
column = "account_id"
down = "user_accounts.account_id"
from = { table = "user_accounts", where = "user_accounts.user_id = users.id" }
"#;

#[tokio::test]
async fn a_not_null_column_is_relaxed_while_live_and_given_back_at_rollback() {
    let s = Scenario::new("extract_not_null", NOT_NULL_ACCOUNTS).await;
    let name = "0001_user_accounts";
    s.write(name, EXTRACT_NOT_NULL);
    let before = s.dump();
    let started = s.start(name).await.expect("start");
    assert!(started.contains("ready to contract"), "{started}");
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;
    write_concurrently(
        &old,
        &[
            "INSERT INTO users VALUES (1001, 2)",
            "UPDATE users SET account_id = 3 WHERE id = 1",
        ],
        &new,
        &[
            // A user first, then its account: the column is NULL in between.
            "INSERT INTO users VALUES (2001)",
            "INSERT INTO user_accounts VALUES (2001, 4)",
            "INSERT INTO users VALUES (2002)",
        ],
    )
    .await;
    // The old version's own writes still may not leave it NULL.
    let refused = sqlx::raw_sql("INSERT INTO users VALUES (1002, NULL)")
        .execute(&old)
        .await
        .expect_err("NULL from the old version");
    let refused = refused.as_database_error().expect("a database error");
    assert_eq!(refused.code().as_deref(), Some("23502"), "{refused}");
    assert_eq!(
        refused.message(),
        "null value in column \"account_id\" of relation \"users\" violates not-null constraint"
    );
    assert!(fails(&old, "INSERT INTO users (id) VALUES (1003)").await);
    assert!(fails(&old, "UPDATE users SET account_id = NULL WHERE id = 1").await);
    assert_eq!(
        one(&old, "SELECT account_id::text FROM users WHERE id = 2001").await,
        "4"
    );
    assert_eq!(
        one(
            &new,
            "SELECT account_id::text FROM user_accounts WHERE user_id = 1"
        )
        .await,
        "3"
    );
    old.close().await;
    new.close().await;

    // User 2002 has no account: the old shape cannot hold it, so rollback stops before the
    // NOT NULL comes back (nothing irreversible done), naming what to fix.
    let stopped = s.try_rollback(name).await.expect_err("rollback must stop");
    assert!(stopped.contains("_zdm_nn_users_account_id"), "{stopped}");
    exec(
        &s.pool,
        "UPDATE users SET account_id = 1 WHERE account_id IS NULL",
    )
    .await;
    s.rollback(name).await;
    assert_eq!(before, s.dump(), "rollback restores the schema dump");
    assert_eq!(s.leftovers().await, "");
    assert_eq!(
        one(&s.pool, "SELECT count(*)::text FROM users").await,
        "503"
    );
}

#[tokio::test]
async fn up_is_refused_where_it_cannot_work() {
    let s = Scenario::new("extract_refused", NOT_NULL_ACCOUNTS).await;
    let mut conn = s.pool.acquire().await.expect("connection");
    let catalog = zdm::db::catalog::Catalog::load(&mut conn)
        .await
        .expect("introspect");
    for (file, expected) in [
        (
            EXTRACT_NOT_NULL.replace("table = \"users\", values", "table = \"nobody\", values"),
            "nobody",
        ),
        (
            EXTRACT_NOT_NULL.replace("user_id = \"users.id\", ", ""),
            "user_id of public.user_accounts is NOT NULL without a default",
        ),
        (
            EXTRACT_NOT_NULL
                .replace(
                    "[[operations]]\nop = \"create_table\"",
                    "[[operations]]\nop = \"rename_table\"\ntable = \"users\"\nto = \"members\"\n\n[[operations]]\nop = \"create_table\"",
                )
                .replace("table = \"users\", values", "table = \"members\", values"),
            "renamed",
        ),
    ] {
        let migration = versions_support::plan_support::migration("0001_x", &file);
        let error = zdm::plan::plan(&migration, &catalog).expect_err("refused");
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }
}

#[test]
fn the_file_check_names_what_up_lacks() {
    for (file, expected) in [
        (
            EXTRACT_NOT_NULL.replace("primary_key = [\"user_id\", \"account_id\"]\n", ""),
            "needs a primary key",
        ),
        (
            EXTRACT_NOT_NULL.replace(
                "account_id = \"users.account_id\"",
                "acount_id = \"users.account_id\"",
            ),
            "`acount_id` is not a column of `user_accounts` (did you mean account_id?)",
        ),
        (
            EXTRACT_NOT_NULL.replace(
                "where = \"user_accounts.user_id = users.id\" }",
                "where = \" \" }",
            ),
            "`where` is empty",
        ),
        (
            EXTRACT_NOT_NULL.replace(
                "where = \"user_accounts.user_id = users.id\" }",
                "on = \"true\" }",
            ),
            "unknown key `on`",
        ),
        (
            EXTRACT_NOT_NULL.replace(
                "table = \"users\", values",
                "table = \"user_accounts\", values",
            ),
            "the table being created",
        ),
    ] {
        let checked = zdm::migration::check(std::path::Path::new("0001_x.toml"), file.as_bytes());
        let errors: Vec<String> = checked.errors().map(|e| e.to_string()).collect();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
}

#[tokio::test]
async fn the_database_check_types_values_and_filter_over_the_existing_row() {
    let s = Scenario::new("extract_typecheck", NOT_NULL_ACCOUNTS).await;
    let mut conn = s.pool.acquire().await.expect("connection");
    let check = |file: String| async move {
        let checked = zdm::migration::check(std::path::Path::new("0001_x.toml"), file.as_bytes());
        let errors: Vec<String> = checked.errors().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "parses offline: {errors:?}");
        checked
    };
    let good = check(EXTRACT_NOT_NULL.to_string()).await;
    let found =
        zdm::plan::typecheck::check_files(&mut conn, &[&good], std::time::Duration::from_secs(2))
            .await
            .expect("the database answers");
    assert!(found.is_empty(), "{found:#?}");
    let bad = check(
        EXTRACT_NOT_NULL
            .replace(
                "account_id = \"users.account_id\"",
                "account_id = \"users.acount_id\"",
            )
            .replacen(
                "where = \"user_accounts.user_id = users.id\" }",
                "where = \"user_accounts.user_id = users.id\", filter = \"users.nope IS NOT NULL\" }",
                1,
            ),
    )
    .await;
    let found =
        zdm::plan::typecheck::check_files(&mut conn, &[&bad], std::time::Duration::from_secs(2))
            .await
            .expect("the database answers");
    let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`up.values.account_id`") && m.contains("acount_id")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`up.filter`") && m.contains("nope")),
        "{messages:#?}"
    );
}

/// `zdm <args>` on the scenario's database, its migrations in `dir`, `config` as its config
/// file.
fn zdm_on(
    s: &Scenario,
    dir: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let options = s.pool.connect_options();
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        options.get_username(),
        options.get_port(),
        s.db
    );
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"));
    command
        .args(args)
        .args(["--database-url", &url, "--dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", dir.join(".zdm.log"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

#[tokio::test]
async fn a_backfill_killed_mid_way_resumes_with_no_row_lost_or_copied_twice() {
    let s = Scenario::new(
        "extract_killed",
        "
CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, account_id integer REFERENCES accounts);
INSERT INTO accounts SELECT i, 'account ' || i FROM generate_series(1, 20) i;
INSERT INTO users SELECT i, 'user ' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE i % 20 + 1 END
  FROM generate_series(1, 20000) i;
",
    )
    .await;
    let name = "0001_user_accounts";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{name}.toml")), EXTRACT).expect("write");
    let config = dir.path().join(".zdm-test.toml");
    std::fs::write(
        &config,
        "[throttle]\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n\
         max_active_sessions_factor = \"none\"\n\n[backfill]\nfixed_batch_rows = 200\n",
    )
    .expect("write the config");

    // The old version writes all along: inserts, account changes, removals, deletes.
    let old = s.client(None).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (old, stop) = (old.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i: u64 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let user = (i * 7919) % 20000 + 1;
                let sql = match i % 4 {
                    0 => format!("INSERT INTO users VALUES ({}, 'w', {})", 100_000 + i, i % 20 + 1),
                    1 => format!("UPDATE users SET account_id = {} WHERE id = {user}", i % 20 + 1),
                    2 => format!(
                        "UPDATE users SET account_id = CASE WHEN account_id IS NULL THEN 3 END WHERE id = {user}"
                    ),
                    _ => format!("DELETE FROM users WHERE id = {user}"),
                };
                exec(&old, &sql).await;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            i
        })
    };

    // kill -9 of `zdm start` once the backfill committed a few batches, then start again.
    let mut child = zdm_on(&s, dir.path(), &config, &["start", name])
        .spawn()
        .expect("spawn zdm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if child.try_wait().expect("poll").is_some() {
            let output = child.wait_with_output().expect("output");
            panic!(
                "zdm start ended before the backfill was far enough along: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let state = one(
            &s.pool,
            "SELECT (to_regclass('zdm.backfill_progress') IS NOT NULL)::text",
        )
        .await;
        if state == "true"
            && one(
                &s.pool,
                "SELECT coalesce(sum(batches), 0)::text FROM zdm.backfill_progress",
            )
            .await
            .parse::<i64>()
            .unwrap_or(0)
                >= 5
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no batch committed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    child.wait().expect("wait");
    let copied_before = one(&s.pool, "SELECT count(*)::text FROM user_accounts").await;
    let mut finished = None;
    for _ in 0..100 {
        let output = zdm_on(&s, dir.path(), &config, &["start", name])
            .output()
            .expect("run zdm");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if output.status.success() {
            finished = Some(String::from_utf8_lossy(&output.stdout).to_string() + &stderr);
            break;
        }
        // The killed session's run lock goes once the server sees its connection closed.
        assert!(
            stderr.contains("another zdm is already running"),
            "zdm start failed on its own: {stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let finished = finished.expect("the second zdm start ran");
    assert!(finished.contains("ready to contract"), "{finished}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.expect("the old version's writer");
    assert!(writes > 0);
    assert_ne!(copied_before, "0", "the killed run had copied some rows");

    // Every user with an account has exactly its row; no other row is left.
    for (sql, what) in [
        (
            "SELECT count(*)::text FROM users u WHERE u.account_id IS NOT NULL AND NOT EXISTS (
               SELECT FROM user_accounts a WHERE a.user_id = u.id AND a.account_id = u.account_id)",
            "users whose row is missing",
        ),
        (
            "SELECT count(*)::text FROM user_accounts a WHERE NOT EXISTS (
               SELECT FROM users u WHERE u.id = a.user_id AND u.account_id = a.account_id)",
            "rows of no user's account",
        ),
        (
            "SELECT count(*)::text FROM (SELECT user_id FROM user_accounts GROUP BY 1 HAVING count(*) > 1) d",
            "users with two rows",
        ),
    ] {
        assert_eq!(one(&s.pool, sql).await, "0", "{what}");
    }
    old.close().await;
}
