//! Values from another table (add_column's `up` and drop_column's `down` with `from`) and a
//! column moved between tables, through the engine's commands on a real PostgreSQL: start
//! → rollback leaves `pg_dump --schema-only` exactly as before; start again, an old-version
//! and a new-version client write both tables at the same time, each version sees the
//! other's writes in its own shape, then complete leaves no zdm machinery.

mod versions_support;

use versions_support::{exec, fails, one, write_concurrently, Scenario};
use zdm::plan::LockLevel;

const USERS_AND_PROFILES: &str = "
CREATE TABLE users (id integer PRIMARY KEY, email text);
CREATE TABLE profiles (id integer PRIMARY KEY, user_id integer NOT NULL);
INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 300) i;
INSERT INTO profiles SELECT i, i FROM generate_series(1, 300) i;
";

const ADD_EMAIL: &str = r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text", nullable = false }
up = "users.email"
from = { table = "users", where = "users.id = profiles.user_id" }
"#;

#[tokio::test]
async fn add_column_up_from_another_table() {
    let s = Scenario::new("add_from", USERS_AND_PROFILES).await;
    let name = "0001_profiles_email";
    s.start_after_exact_rollback(name, ADD_EMAIL).await;
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;

    // Backfilled by joining.
    assert_eq!(
        one(
            &new,
            "SELECT count(*)::text FROM profiles WHERE email = 'user' || user_id || '@example.com'"
        )
        .await,
        "300"
    );
    write_concurrently(
        &old,
        &[
            "INSERT INTO users VALUES (1001, 'a@old')",
            "INSERT INTO profiles VALUES (1001, 1001)",
            "UPDATE users SET email = 'changed@old' WHERE id = 5",
            "INSERT INTO profiles VALUES (1002, 6)",
            "UPDATE profiles SET user_id = 7 WHERE id = 8",
        ],
        &new,
        &[
            "INSERT INTO users VALUES (2001, 'b@new')",
            "INSERT INTO profiles VALUES (2001, 2001, 'own@new')",
            "UPDATE profiles SET email = 'set@new' WHERE id = 10",
        ],
    )
    .await;
    // An old-version write to either table keeps the new column in step.
    for (sql, expected) in [
        ("SELECT email FROM profiles WHERE id = 1001", "a@old"),
        ("SELECT email FROM profiles WHERE id = 5", "changed@old"),
        (
            "SELECT email FROM profiles WHERE id = 1002",
            "user6@example.com",
        ),
        (
            "SELECT email FROM profiles WHERE id = 8",
            "user7@example.com",
        ),
        ("SELECT email FROM profiles WHERE id = 2001", "own@new"),
        ("SELECT email FROM profiles WHERE id = 10", "set@new"),
    ] {
        assert_eq!(one(&new, sql).await, expected, "{sql}");
    }
    // The new version's own writes to users leave the new column to it.
    exec(&new, "UPDATE users SET email = 'new-only' WHERE id = 2001").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 2001").await,
        "own@new"
    );
    // The old version sees the new version's rows in its shape.
    assert_eq!(
        one(&old, "SELECT user_id::text FROM profiles WHERE id = 2001").await,
        "2001"
    );
    // NOT NULL holds for both versions (an old-version profile of no user has no email).
    assert!(fails(&new, "INSERT INTO profiles VALUES (2002, 2002, NULL)").await);
    assert!(fails(&old, "INSERT INTO profiles VALUES (1003, 1003)").await);
    old.close().await;
    new.close().await;

    s.complete(name).await;
    assert_eq!(
        one(&s.pool, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'email'").await,
        "NO"
    );
    assert_eq!(s.leftovers().await, "");
    // After contract, users is an ordinary table again: its writes no longer touch profiles.
    exec(&s.pool, "UPDATE users SET email = 'after' WHERE id = 1").await;
    assert_eq!(
        one(&s.pool, "SELECT email FROM profiles WHERE id = 1").await,
        "user1@example.com"
    );
}

#[tokio::test]
async fn old_version_inserts_and_deletes_in_the_other_table_recompute_the_value() {
    let s = Scenario::new("add_from_nullable", USERS_AND_PROFILES).await;
    let name = "0001_profiles_email";
    s.write(
        name,
        &ADD_EMAIL.replace("nullable = false", "nullable = true"),
    );
    let started = s.start(name).await.expect("start");
    assert!(started.contains("ready to contract"), "{started}");
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;
    // A profile written before its user has no email until the user comes.
    exec(&old, "INSERT INTO profiles VALUES (1003, 1003)").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 1003").await,
        "NULL"
    );
    exec(&old, "INSERT INTO users VALUES (1003, 'late@old')").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 1003").await,
        "late@old"
    );
    // A user whose id changes, or who goes, takes its email from the profiles it left.
    exec(&old, "UPDATE users SET id = 1004 WHERE id = 1003").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 1003").await,
        "NULL"
    );
    exec(&old, "UPDATE users SET id = 1003 WHERE id = 1004").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 1003").await,
        "late@old"
    );
    exec(&old, "DELETE FROM users WHERE id = 1003").await;
    assert_eq!(
        one(&new, "SELECT email FROM profiles WHERE id = 1003").await,
        "NULL"
    );
    old.close().await;
    new.close().await;
    s.complete(name).await;
    assert_eq!(s.leftovers().await, "");
}

#[tokio::test]
async fn the_trigger_on_the_other_table_is_locked_like_the_first() {
    let s = Scenario::new("add_from_plan", USERS_AND_PROFILES).await;
    let mut conn = s.pool.acquire().await.expect("connection");
    let catalog = zdm::db::catalog::Catalog::load(&mut conn)
        .await
        .expect("introspect");
    let migration = versions_support::plan_support::migration("0001_profiles_email", ADD_EMAIL);
    let plan = zdm::plan::plan(&migration, &catalog).expect("plans");
    let installs: Vec<_> = plan
        .steps
        .iter()
        .filter(|step| step.description.starts_with("install the"))
        .collect();
    assert_eq!(installs.len(), 2, "{installs:#?}");
    for step in installs {
        assert_eq!(
            step.lock,
            LockLevel::ShareRowExclusive,
            "{}",
            step.description
        );
    }
    // Rollback drops both triggers.
    let rollback: String = plan
        .phase(zdm::plan::Phase::Rollback)
        .map(|step| format!("{:?}", step.action))
        .collect();
    assert!(rollback.contains("_zdm_sync_profiles"), "{rollback}");
    assert!(rollback.contains("_zdm_from_profiles_email"), "{rollback}");
}

#[tokio::test]
async fn drop_column_down_from_another_table() {
    let s = Scenario::new(
        "drop_from",
        "
CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL);
CREATE TABLE profiles (id integer PRIMARY KEY, user_id integer NOT NULL, email text);
INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 100) i;
INSERT INTO profiles SELECT i, i, 'user' || i || '@example.com' FROM generate_series(1, 100) i;
",
    )
    .await;
    let name = "0001_drop_users_email";
    s.start_after_exact_rollback(
        name,
        r#"
[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = "profiles.user_id = users.id" }
"#,
    )
    .await;
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;
    write_concurrently(
        &old,
        &[
            "INSERT INTO users VALUES (1001, 'a@old')",
            "UPDATE users SET email = 'changed@old' WHERE id = 3",
        ],
        &new,
        &[
            "INSERT INTO profiles VALUES (2001, 2001, 'b@new')",
            "INSERT INTO users VALUES (2001)",
            "UPDATE profiles SET email = 'moved@new' WHERE id = 4",
        ],
    )
    .await;
    // The old version's NOT NULL column is filled from the new version's other table.
    assert_eq!(
        one(&old, "SELECT email FROM users WHERE id = 2001").await,
        "b@new"
    );
    assert_eq!(
        one(&old, "SELECT email FROM users WHERE id = 4").await,
        "moved@new"
    );
    assert_eq!(
        one(&old, "SELECT email FROM users WHERE id = 3").await,
        "changed@old"
    );
    assert_eq!(
        one(&old, "SELECT email FROM users WHERE id = 1001").await,
        "a@old"
    );
    // The new version does not see the column.
    assert!(fails(&new, "SELECT email FROM users").await);
    old.close().await;
    new.close().await;
    s.complete(name).await;
    assert_eq!(
        one(&s.pool, "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'").await,
        "0"
    );
    assert_eq!(s.leftovers().await, "");
}

#[tokio::test]
async fn move_column_between_tables() {
    let s = Scenario::new(
        "move_column",
        "
CREATE TABLE users (id integer PRIMARY KEY, email text);
CREATE TABLE profiles (id integer PRIMARY KEY, user_id integer NOT NULL);
INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 200) i;
INSERT INTO profiles SELECT i, i FROM generate_series(1, 200) i;
",
    )
    .await;
    let name = "0001_move_email";
    s.start_after_exact_rollback(
        name,
        r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text", nullable = false }
up = "users.email"
from = { table = "users", where = "profiles.user_id = users.id" }

[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = "users.id = profiles.user_id" }
"#,
    )
    .await;
    let old = s.client(None).await;
    let new = s.client(Some(name)).await;
    write_concurrently(
        &old,
        &[
            "INSERT INTO users VALUES (1001, 'a@old')",
            "INSERT INTO profiles VALUES (1001, 1001)",
            "UPDATE users SET email = 'a+updated@old' WHERE id = 1001",
            "UPDATE users SET email = 'changed@old' WHERE id = 2",
        ],
        &new,
        &[
            "INSERT INTO profiles VALUES (2001, 2001, 'b@new')",
            "INSERT INTO users VALUES (2001)",
            "UPDATE profiles SET email = 'b+updated@new' WHERE id = 2001",
            "UPDATE profiles SET email = 'changed@new' WHERE id = 3",
        ],
    )
    .await;
    for (sql, expected) in [
        (
            "SELECT email FROM profiles WHERE id = 1001",
            "a+updated@old",
        ),
        ("SELECT email FROM profiles WHERE id = 2", "changed@old"),
        (
            "SELECT email FROM profiles WHERE id = 1",
            "user1@example.com",
        ),
    ] {
        assert_eq!(one(&new, sql).await, expected, "new version: {sql}");
    }
    for (sql, expected) in [
        ("SELECT email FROM users WHERE id = 2001", "b+updated@new"),
        ("SELECT email FROM users WHERE id = 3", "changed@new"),
        ("SELECT email FROM users WHERE id = 1", "user1@example.com"),
    ] {
        assert_eq!(one(&old, sql).await, expected, "old version: {sql}");
    }
    // (The old version here is the physical tables, where the added column is visible.)
    assert!(fails(&new, "SELECT email FROM users").await);
    old.close().await;
    new.close().await;
    s.complete(name).await;
    assert_eq!(s.leftovers().await, "");
    assert_eq!(
        one(&s.pool, "SELECT string_agg(table_name, ',') FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'email'").await,
        "profiles"
    );
}

#[tokio::test]
async fn from_is_refused_where_it_cannot_work() {
    let s = Scenario::new("from_refused", USERS_AND_PROFILES).await;
    let mut conn = s.pool.acquire().await.expect("connection");
    let catalog = zdm::db::catalog::Catalog::load(&mut conn)
        .await
        .expect("introspect");
    for (file, expected) in [
        (
            r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text" }
up = "users.email"
from = { table = "nobody", where = "true" }
"#,
            "nobody",
        ),
        (
            r#"
[[operations]]
op = "rename_table"
table = "users"
to = "accounts"

[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text" }
up = "accounts.email"
from = { table = "accounts", where = "accounts.id = profiles.user_id" }
"#,
            "renamed",
        ),
    ] {
        let migration = versions_support::plan_support::migration("0001_x", file);
        let error = zdm::plan::plan(&migration, &catalog).expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[test]
fn the_file_check_names_what_from_lacks() {
    for (file, expected) in [
        (
            r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text" }
from = { table = "users", where = "users.id = profiles.user_id" }
"#,
            "there is no `up`",
        ),
        (
            r#"
[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = " " }
"#,
            "`where` is empty",
        ),
        (
            r#"
[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text" }
up = "users.email"
from = { table = "users", on = "users.id = profiles.user_id" }
"#,
            "unknown key `on`",
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
