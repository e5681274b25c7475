//! The new version during a backfill (docs/engine.md): it is published only once its
//! backfill is done, so no client can read an unfilled row through it or derive old columns
//! from unfilled new ones. For every operation with a backfill, `zdm start` (the real
//! binary) is held mid-backfill by its throttle flag file; meanwhile a client naming the
//! new version is refused, a client whose path names the version schema and falls back to
//! the physical tables counts as the old version, `zdm status` says "not yet", and rows on
//! both sides of the backfill's cursor are updated. At the end every row of both versions
//! equals what an oracle computes from the original data and those updates.

mod plan_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plan_support::{client, common, fetch_one};
use sqlx::PgPool;
use zdm::localpg::LocalPg;

const ROWS: i64 = 200_000;

struct Case {
    name: &'static str,
    /// Creates and fills `t` (ROWS rows, key `id`).
    setup: &'static str,
    file: &'static str,
    /// Updates by the application while the backfill is held, `{id}` a row id: run once
    /// for a row the backfill has passed and once for one it has not reached.
    updates: &'static [&'static str],
    /// Rows (as text, ordered by id) where the old version differs from its oracle.
    old_wrong: &'static str,
    /// Rows where the new version (search_path = the version schema) differs from its
    /// oracle; run once the new version is published.
    new_wrong: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "0001_t_price_cents",
        setup: "CREATE TABLE t (id bigint PRIMARY KEY, title text, price numeric NOT NULL);
                INSERT INTO t SELECT i, 'row ' || i, (i % 10000) / 100.0 + 0.7 FROM generate_series(1, 200000) i;",
        file: r#"
[[operations]]
op = "change_type"
table = "t"
column = "price"
type = "bigint"
up = "(price * 100)::bigint"
down = "price / 100.0"
"#,
        updates: &["UPDATE t SET title = 'renamed' WHERE id = {id}"],
        old_wrong: "SELECT count(*)::text FROM t WHERE price <> (id % 10000) / 100.0 + 0.7 \
                    OR title <> CASE WHEN id IN (7, 123457) THEN 'renamed' ELSE 'row ' || id END",
        new_wrong: "SELECT count(*)::text FROM t WHERE price <> (((id % 10000) / 100.0 + 0.7) * 100)::bigint",
    },
    Case {
        name: "0002_t_add_with_up",
        setup: "CREATE TABLE t (id bigint PRIMARY KEY, title text, qty int NOT NULL);
                INSERT INTO t SELECT i, 'row ' || i, i % 97 FROM generate_series(1, 200000) i;",
        file: r#"
[[operations]]
op = "add_column"
table = "t"
column = { name = "double_qty", type = "int", nullable = false }
up = "qty * 2"
"#,
        updates: &["UPDATE t SET qty = qty + 1000 WHERE id = {id}"],
        old_wrong: "SELECT count(*)::text FROM t WHERE qty <> (id % 97) + CASE WHEN id IN (7, 123457) THEN 1000 ELSE 0 END",
        new_wrong: "SELECT count(*)::text FROM t WHERE double_qty IS DISTINCT FROM qty * 2 \
                    OR qty <> (id % 97) + CASE WHEN id IN (7, 123457) THEN 1000 ELSE 0 END",
    },
    Case {
        name: "0003_t_set_not_null",
        setup: "CREATE TABLE t (id bigint PRIMARY KEY, title text, phone text);
                INSERT INTO t SELECT i, 'row ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE '+' || i END FROM generate_series(1, 200000) i;",
        file: r#"
[[operations]]
op = "set_not_null"
table = "t"
column = "phone"
up = "coalesce(phone, 'unknown')"
"#,
        updates: &["UPDATE t SET phone = NULL WHERE id = {id}"],
        old_wrong: "SELECT count(*)::text FROM t WHERE phone IS DISTINCT FROM CASE WHEN id % 3 = 0 OR id IN (7, 123457) THEN 'unknown' ELSE '+' || id END",
        new_wrong: "SELECT count(*)::text FROM t WHERE phone IS DISTINCT FROM CASE WHEN id % 3 = 0 OR id IN (7, 123457) THEN 'unknown' ELSE '+' || id END",
    },
    Case {
        name: "0004_t_split",
        setup: "CREATE TABLE t (id bigint PRIMARY KEY, title text, notes text);
                INSERT INTO t SELECT i, 'row ' || i, 'note ' || i FROM generate_series(1, 200000) i;",
        file: r#"
[[operations]]
op = "split_table"
table = "t"
columns = ["notes"]
new_table = "t_notes"
"#,
        updates: &["UPDATE t SET notes = 'changed ' || id WHERE id = {id}"],
        old_wrong: "SELECT count(*)::text FROM t WHERE notes <> CASE WHEN id IN (7, 123457) THEN 'changed ' ELSE 'note ' END || id",
        new_wrong: "SELECT count(*)::text FROM t LEFT JOIN t_notes n USING (id) \
                    WHERE n.notes IS DISTINCT FROM CASE WHEN t.id IN (7, 123457) THEN 'changed ' ELSE 'note ' END || t.id",
    },
];

fn zdm(pg: &LocalPg, database: &str, root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(common::zdm_binary());
    command
        .args(args)
        .arg("--dir")
        .arg(root.join("migrations"))
        .args(["--config"])
        .arg(root.join("zdm.toml"))
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", root.join("zdm.log"))
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env("XDG_STATE_HOME", root.join("state"));
    command
}

async fn checkpoint_rows(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(rows_updated), 0)::bigint FROM zdm.backfill_progress WHERE migration = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap_or(0)
}

async fn run(case: &Case) {
    let pg = common::primary();
    let database = &case.name[5..];
    let pool = common::database(&pg, database).await;
    sqlx::raw_sql(case.setup)
        .execute(&pool)
        .await
        .expect("setup");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("migrations")).expect("dir");
    std::fs::create_dir_all(root.path().join("run")).expect("dir");
    std::fs::write(
        root.path()
            .join("migrations")
            .join(format!("{}.toml", case.name)),
        case.file,
    )
    .expect("file");
    let flag = root.path().join("hold");
    std::fs::write(
        root.path().join("zdm.toml"),
        format!(
            "[backfill]\nstart_batch_rows = 2000\nmax_batch_rows = 2000\nmax_rows_per_second = 40000\n\n\
             {}flag_file = {:?}\n",
            common::THROTTLE_OFF,
            flag.display().to_string()
        ),
    )
    .expect("zdm.toml");

    let mut start = zdm(&pg, database, root.path(), &["start", case.name])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zdm start");
    // Let the backfill pass the first rows, then hold it with the flag file.
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_rows(&pool, case.name).await < 20_000 {
        assert!(
            Instant::now() < deadline,
            "{}: the backfill starts",
            case.name
        );
        assert!(
            start.try_wait().expect("wait").is_none(),
            "zdm start ended early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&flag, "hold").expect("flag");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = checkpoint_rows(&pool, case.name).await;
    assert!(
        held < ROWS,
        "{}: held mid-backfill ({held} rows)",
        case.name
    );

    // `zdm status` does not offer the new version yet.
    let status = zdm(&pg, database, root.path(), &["status"])
        .output()
        .expect("zdm status");
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text.contains(&format!("{}: not yet: backfilling", case.name)),
        "{}: {status_text}",
        case.name
    );
    assert!(
        !status_text.contains(&format!("SET search_path TO \"public_{}\"", case.name)),
        "{status_text}"
    );
    let json = zdm(&pg, database, root.path(), &["status", "--json"])
        .output()
        .expect("zdm status --json");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let version = report["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["migration"] == case.name))
        .expect("the version is listed");
    assert_eq!(version["usable"], false, "{version}");

    // A client of the new version cannot reach it yet...
    let version_schema = format!("\"public_{}\"", case.name);
    let new_only = client(&pg, database, &version_schema).await;
    let refused = sqlx::raw_sql("SELECT count(*) FROM t")
        .execute(&new_only)
        .await
        .expect_err("the new version is not usable during the backfill");
    assert!(refused.to_string().contains("does not exist"), "{refused}");
    // ... and one whose path falls back to the physical tables writes as the old version,
    // on both sides of the backfill's cursor (id 7 is behind it, 123457 ahead).
    let fallback = client(&pg, database, &format!("{version_schema}, public")).await;
    for sql in case.updates {
        for id in [7, 123_457] {
            let sql = sql.replace("{id}", &id.to_string());
            sqlx::raw_sql(&sql)
                .execute(&fallback)
                .await
                .unwrap_or_else(|e| panic!("{}: {sql}: {e}", case.name));
        }
    }
    fallback.close().await;
    new_only.close().await;

    std::fs::remove_file(&flag).expect("release");
    let output = tokio::task::spawn_blocking(move || start.wait_with_output())
        .await
        .expect("join")
        .expect("zdm start ends");
    assert!(
        output.status.success(),
        "{}: {}",
        case.name,
        String::from_utf8_lossy(&output.stderr)
    );

    let old = client(&pg, database, "public").await;
    assert_eq!(
        fetch_one(&old, case.old_wrong).await,
        "0",
        "{}: old version",
        case.name
    );
    let new = client(&pg, database, &version_schema).await;
    assert_eq!(
        fetch_one(&new, case.new_wrong).await,
        "0",
        "{}: new version",
        case.name
    );
    old.close().await;
    new.close().await;
    let status = zdm(&pg, database, root.path(), &["status"])
        .output()
        .expect("zdm status");
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text.contains(&format!("SET search_path TO {version_schema}")),
        "{status_text}"
    );
    pool.close().await;
}

#[tokio::test]
async fn change_type_the_reported_reproduction() {
    run(&CASES[0]).await;
}

#[tokio::test]
async fn add_column_with_up() {
    run(&CASES[1]).await;
}

#[tokio::test]
async fn set_not_null_with_up() {
    run(&CASES[2]).await;
}

#[tokio::test]
async fn split_table() {
    run(&CASES[3]).await;
}
