//! `zdm synth` on real PostgreSQL: a source with known distributions (a skewed foreign key,
//! 30 % NULLs, five common values covering 80 %, a skewed date histogram, a correlated serial
//! key, a check between two columns, a composite key, a foreign key of two columns) →
//! `zdm synth --scale 1 --into` → the scratch database's own statistics after ANALYZE are
//! close to the source's, every constraint holds, and no text value of the source appears
//! unless --keep-values. A type zdm cannot generate is named; the binary's peak memory
//! does not grow with the rows.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::{PgPool, Row};
use zdm::localpg::LocalPg;

const SCHEMA: &str = "
CREATE TYPE channel AS ENUM ('retail', 'wholesale', 'online');
CREATE TABLE customers (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    region text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    status varchar(20) NOT NULL,
    note text,
    placed date NOT NULL,
    shipped date,
    amount numeric(10, 2) NOT NULL CHECK (amount >= 0),
    channel channel NOT NULL,
    paid boolean,
    ref uuid NOT NULL,
    payload jsonb,
    tags text[],
    CONSTRAINT shipped_after_placed CHECK (shipped >= placed)
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE order_lines (
    order_id bigint NOT NULL REFERENCES orders (id),
    line int NOT NULL,
    qty int NOT NULL CHECK (qty > 0),
    PRIMARY KEY (order_id, line)
);
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 400;
INSERT INTO customers (email, name, region, created_at)
SELECT 'user' || g || '@example.com', 'Customer ' || md5(g::text),
       'region_' || (g % 12), '2024-01-01'::timestamptz + g * interval '7 minutes'
FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, status, note, placed, shipped, amount, channel, paid, ref,
                    payload, tags)
SELECT least(2000, 1 + floor(2000 * power(r1, 3)))::int,
       CASE WHEN r2 < 0.35 THEN 'pending' WHEN r2 < 0.55 THEN 'paid'
            WHEN r2 < 0.67 THEN 'shipped' WHEN r2 < 0.75 THEN 'delivered'
            WHEN r2 < 0.80 THEN 'cancelled' ELSE 'other_' || floor(r3 * 40) END,
       CASE WHEN r4 < 0.3 THEN NULL ELSE 'note ' || md5(g::text) END,
       placed,
       CASE WHEN r5 < 0.4 THEN NULL ELSE placed + floor(r3 * 10)::int END,
       round((r5 * 500)::numeric, 2),
       (ARRAY['retail', 'wholesale', 'online'])[1 + floor(r6 * 3)]::channel,
       CASE WHEN r6 < 0.1 THEN NULL ELSE r1 < 0.7 END,
       md5(g::text)::uuid,
       jsonb_build_object('g', g, 'x', md5(g::text)),
       ARRAY['t' || (g % 7), 't' || (g % 3)]
FROM (SELECT g, random() r1, random() r2, random() r3, random() r4, random() r5,
             random() r6,
             '2023-01-01'::date + floor(730 * sqrt(random()))::int AS placed
      FROM generate_series(1, 20000) g) s;
INSERT INTO order_lines SELECT 1 + (g * 7) % 20000, g % 5, 1 + g % 9
FROM generate_series(1, 6000) g ON CONFLICT DO NOTHING;
ANALYZE;
";

/// A server with the source database `source` and an empty `scratch`.
async fn source_and_scratch() -> (LocalPg, PgPool, PgPool) {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(SCHEMA)
        .execute(&source)
        .await
        .expect("source data");
    let scratch = common::database(&pg, "scratch").await;
    (pg, source, scratch)
}

fn synth(pg: &LocalPg, source: &str, into: &str, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(common::zdm_binary())
        .arg("synth")
        .args(["--database-url", &pg.primary().url(source)])
        .args(["--into", &pg.primary().url(into)])
        .args(extra)
        .env_remove("ZDM_CONFIG")
        .env("ZDM_LOG_FILE", pg.root().join("zdm.log"))
        .output()
        .expect("run zdm synth");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One column's statistics: (null_frac, distinct values, top-5 frequency, histogram, corr).
async fn stats(pool: &PgPool, table: &str, column: &str) -> (f64, f64, f64, Vec<String>, f64) {
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count");
    let row = sqlx::query(
        "SELECT null_frac::float8 AS nf, n_distinct::float8 AS nd, \
         coalesce((SELECT sum(f) FROM (SELECT unnest(most_common_freqs) f ORDER BY 1 DESC \
                   LIMIT 5) top), 0)::float8 AS top5, \
         coalesce(histogram_bounds::text::text[], '{}') AS hist, \
         coalesce(correlation, 0)::float8 AS corr \
         FROM pg_stats WHERE schemaname = 'public' AND tablename = $1 AND attname = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("stats of {table}.{column}: {e}"));
    let nd: f64 = row.get("nd");
    let distinct = if nd < 0.0 { -nd * rows as f64 } else { nd };
    (
        row.get("nf"),
        distinct,
        row.get("top5"),
        row.get("hist"),
        row.get("corr"),
    )
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn days(date: &str) -> f64 {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("a date");
    (date - chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("epoch")).num_days() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scratch_database_has_the_sources_distributions_and_none_of_its_text() {
    let (pg, source, scratch) = source_and_scratch().await;
    let (ok, out, err) = synth(&pg, "source", "scratch", &["--scale", "1"]);
    assert!(ok, "zdm synth failed:\n{out}\n{err}");
    assert!(err.contains("public.orders: 20000 rows loaded"), "{err}");

    for table in ["customers", "orders", "order_lines"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let (want, got) = (count(&source, &sql).await, count(&scratch, &sql).await);
        assert!(
            (got - want).abs() as f64 <= 0.02 * want as f64,
            "{table}: {got} rows, the source has {want}"
        );
    }
    // The source's analyzed statistics, then the scratch's (synth ANALYZEs it).
    for (table, column) in [
        ("orders", "customer_id"),
        ("orders", "status"),
        ("orders", "note"),
        ("orders", "placed"),
        ("orders", "channel"),
        ("customers", "region"),
    ] {
        let (nf, nd, top5, _, _) = stats(&source, table, column).await;
        let (nf2, nd2, top52, _, _) = stats(&scratch, table, column).await;
        assert!(
            (nf - nf2).abs() <= 0.03,
            "{table}.{column} null_frac {nf2} vs {nf}"
        );
        assert!(
            (nd - nd2).abs() <= 0.25 * nd,
            "{table}.{column} n_distinct {nd2} vs {nd}"
        );
        assert!(
            (top5 - top52).abs() <= 0.05,
            "{table}.{column} top-5 frequency {top52} vs {top5}"
        );
    }
    let (nf, ..) = stats(&scratch, "orders", "note").await;
    assert!((nf - 0.3).abs() <= 0.03, "note null_frac {nf}");
    let (_, _, top5, _, _) = stats(&scratch, "orders", "status").await;
    assert!((top5 - 0.8).abs() <= 0.05, "status top-5 {top5}");

    // The date histogram: its quartiles within 10 % of the range.
    let (_, _, _, hist, _) = stats(&source, "orders", "placed").await;
    let (_, _, _, hist2, _) = stats(&scratch, "orders", "placed").await;
    let range = days(&hist[hist.len() - 1]) - days(&hist[0]);
    for quarter in 1..4 {
        let (a, b) = (
            days(&hist[hist.len() * quarter / 4]),
            days(&hist2[hist2.len() * quarter / 4]),
        );
        assert!(
            (a - b).abs() <= 0.1 * range,
            "quartile {quarter}: {b} vs {a} (range {range})"
        );
    }
    // The serial key is in physical order; the skewed foreign key keeps its skew.
    let (.., corr) = stats(&scratch, "orders", "id").await;
    assert!(corr > 0.9, "orders.id correlation {corr}");
    let top = "SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM \
               orders GROUP BY 1 ORDER BY count(*) DESC LIMIT 200)";
    let (want, got) = (count(&source, top).await, count(&scratch, top).await);
    assert!(
        (got - want).abs() as f64 <= 0.1 * want as f64,
        "rows of the 200 busiest customers: {got} vs {want}"
    );

    // Every constraint is there and valid (keys, checks, the composite primary key).
    let constraints = "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = \
                       c.connamespace WHERE n.nspname = 'public'";
    assert_eq!(
        count(&scratch, constraints).await,
        count(&source, constraints).await
    );
    assert_eq!(
        count(
            &scratch,
            "SELECT count(*) FROM pg_constraint WHERE NOT convalidated"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &scratch,
            "SELECT count(*) FROM orders WHERE shipped < placed"
        )
        .await,
        0
    );
    assert!(count(&scratch, "SELECT count(*) FROM big_orders").await > 0);
    // Sequences are past the generated keys: the application's next insert works.
    sqlx::query("INSERT INTO customers (email, region, created_at) VALUES ('new@x', 'r', now())")
        .execute(&scratch)
        .await
        .expect("an insert after synth");

    // No text value of the source is in the scratch database.
    for (table, column) in [
        ("customers", "email"),
        ("customers", "name"),
        ("customers", "region"),
        ("orders", "status"),
        ("orders", "note"),
    ] {
        let values: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT {column}::text FROM {table} WHERE {column} IS NOT NULL"
        ))
        .fetch_all(&source)
        .await
        .expect("source values");
        let found: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE {column}::text = ANY ($1)"
        ))
        .bind(&values)
        .fetch_one(&scratch)
        .await
        .expect("scratch values");
        assert_eq!(
            found, 0,
            "{table}.{column}: source values in the scratch db"
        );
    }
    assert!(
        out.contains("real values of the target's statistics appear in:")
            && out.contains("public.orders.placed")
            && !out.contains("public.orders.status"),
        "{out}"
    );
}

/// A parent whose composite unique key repeats (its columns are drawn on their own) loses
/// the repeated rows; the rows referring to them move to the rows they repeated (a
/// self-reference too), or go with them when the reference is one-to-one; a one-to-one
/// foreign key draws each parent once. Every constraint is built over the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_rows_take_their_references_along_and_one_to_one_keys_stay_unique() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(
        "CREATE TABLE slots (id int PRIMARY KEY, day int NOT NULL, hour int NOT NULL, UNIQUE (day, hour));
         CREATE TABLE bookings (id int PRIMARY KEY, slot_id int NOT NULL REFERENCES slots);
         CREATE TABLE notes (id int PRIMARY KEY, slot_id int UNIQUE REFERENCES slots);
         CREATE TABLE staff (id int PRIMARY KEY, team int NOT NULL, seat int NOT NULL,
                             boss int REFERENCES staff, UNIQUE (team, seat));
         CREATE TABLE users (id int PRIMARY KEY, name text);
         CREATE TABLE profiles (id int PRIMARY KEY, user_id int NOT NULL UNIQUE REFERENCES users);
         INSERT INTO slots SELECT g, g % 50, g / 50 FROM generate_series(1, 5000) g;
         INSERT INTO bookings SELECT g, 1 + (g * 7) % 5000 FROM generate_series(1, 20000) g;
         INSERT INTO notes SELECT g, g FROM generate_series(1, 3000) g;
         INSERT INTO staff SELECT g, g % 30, g / 30, nullif(g / 2, 0) FROM generate_series(1, 3000) g;
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 5000) g;
         INSERT INTO profiles SELECT g, g FROM generate_series(1, 3000) g;
         ANALYZE;",
    )
    .execute(&source)
    .await
    .expect("source");
    let scratch = common::database(&pg, "scratch").await;
    let (ok, out, err) = synth(&pg, "source", "scratch", &[]);
    assert!(ok, "zdm synth failed:\n{out}\n{err}");
    for line in [
        "unique key public.slots (day, hour):",
        "foreign key bookings_slot_id_fkey:",
        "rows referring to removed repeated rows now refer to the rows they repeated",
        "foreign key notes_slot_id_fkey:",
        "removed with them (the key is one-to-one)",
        "foreign key staff_boss_fkey:",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    // No booking lost; every key built (the restore of post-data succeeded), and checked.
    assert_eq!(
        count(&scratch, "SELECT count(*) FROM bookings").await,
        20000
    );
    assert_eq!(count(&scratch, "SELECT count(*) FROM profiles").await, 3000);
    for sql in [
        "SELECT count(*) FROM bookings b LEFT JOIN slots s ON s.id = b.slot_id WHERE s.id IS NULL",
        "SELECT count(*) FROM (SELECT slot_id FROM notes GROUP BY 1 HAVING count(*) > 1) d",
        "SELECT count(*) FROM (SELECT user_id FROM profiles GROUP BY 1 HAVING count(*) > 1) d",
        "SELECT count(*) FROM staff s WHERE boss IS NOT NULL AND NOT EXISTS (SELECT 1 FROM staff b WHERE b.id = s.boss)",
        "SELECT count(*) FROM pg_constraint WHERE NOT convalidated",
    ] {
        assert_eq!(count(&scratch, sql).await, 0, "{sql}");
    }
}

/// A table's rows as one value: their count and the md5 of them all, in order.
async fn digest(pool: &PgPool, table: &str) -> String {
    let sql = format!(
        "SELECT count(*)::text || ' ' || md5(string_agg(x::text, '|' ORDER BY x::text)) \
         FROM {table} x"
    );
    sqlx::query_scalar(&sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `--seed`'s promise: the same seed generates the same rows, the check repairs' random
/// draws and the composite-key removals included; another seed other rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_generates_the_same_rows() {
    let (pg, _source, first) = source_and_scratch().await;
    let second = common::database(&pg, "second").await;
    let other = common::database(&pg, "other").await;
    for (into, seed) in [("scratch", "7"), ("second", "7"), ("other", "8")] {
        let (ok, out, err) = synth(&pg, "source", into, &["--seed", seed]);
        assert!(ok, "zdm synth --seed {seed} failed:\n{out}\n{err}");
        assert!(
            out.contains("check shipped_after_placed:"),
            "a check repaired: {out}"
        );
    }
    for table in ["customers", "orders", "order_lines"] {
        assert_eq!(
            digest(&first, table).await,
            digest(&second, table).await,
            "{table}: the same seed, the same rows"
        );
    }
    assert_ne!(
        digest(&first, "orders").await,
        digest(&other, "orders").await,
        "another seed, other rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_values_keeps_the_common_values_and_says_so() {
    let (pg, _source, scratch) = source_and_scratch().await;
    let (ok, out, err) = synth(&pg, "source", "scratch", &["--keep-values", "--json"]);
    assert!(ok, "zdm synth failed:\n{out}\n{err}");
    let json_end = out.rfind('}').expect("json");
    let report: serde_json::Value =
        serde_json::from_str(&out[..=json_end]).expect("the report is JSON");
    let real: Vec<&str> = report["real_values"]
        .as_array()
        .expect("real_values")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(real.contains(&"public.orders.status"), "{real:?}");
    let pending = count(
        &scratch,
        "SELECT count(*) FROM orders WHERE status = 'pending'",
    )
    .await;
    assert!(pending > 5000, "{pending} pending orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_it_cannot_generate_is_named_and_the_database_must_be_empty() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(
        "CREATE TABLE hosts (id int PRIMARY KEY, addr inet NOT NULL, seen tsvector); \
         INSERT INTO hosts SELECT g, '10.0.0.1', NULL FROM generate_series(1, 50) g; ANALYZE",
    )
    .execute(&source)
    .await
    .expect("source");
    let _scratch = common::database(&pg, "scratch").await;
    let (ok, out, err) = synth(&pg, "source", "scratch", &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("public.hosts.addr") && err.contains("inet"),
        "the column and its type are named: {err}"
    );
    // Nullable: left NULL with a warning, never silently.
    sqlx::raw_sql("ALTER TABLE hosts ALTER addr DROP NOT NULL")
        .execute(&source)
        .await
        .expect("alter");
    let (ok, out, err) = synth(&pg, "source", "scratch", &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("warning: public.hosts.addr (inet)") && out.contains("left NULL"),
        "{out}"
    );
    // A second run into the now filled database is refused.
    let (ok, _, err) = synth(&pg, "source", "scratch", &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
}

/// Runs zdm synth and returns its peak resident memory (VmHWM, KiB).
fn peak_rss(pg: &LocalPg, into: &str, scale: &str) -> u64 {
    let mut child = Command::new(common::zdm_binary())
        .arg("synth")
        .args(["--database-url", &pg.primary().url("wide")])
        .args(["--into", &pg.primary().url(into)])
        .args(["--scale", scale])
        .env_remove("ZDM_CONFIG")
        .env("ZDM_LOG_FILE", pg.root().join("zdm.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zdm synth");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("poll") {
            assert!(status.success(), "zdm synth --scale {scale} failed");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_the_row_count() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "wide").await;
    sqlx::raw_sql(
        "CREATE TABLE events (id bigserial PRIMARY KEY, kind int, body text); \
         INSERT INTO events (kind, body) SELECT g % 10, repeat(md5(g::text), 8) \
         FROM generate_series(1, 5000) g; ANALYZE",
    )
    .execute(&source)
    .await
    .expect("source");
    let _small = common::database(&pg, "small").await;
    let _large = common::database(&pg, "large").await;
    // 5 000 rows, then 200 000 of ~260 bytes (50 MB of rows: held in memory, they would show).
    let small = peak_rss(&pg, "small", "1");
    let large = peak_rss(&pg, "large", "40");
    let mut conn = pg.primary().connect("large").await.expect("connect");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(rows, 200_000);
    assert!(
        large < small + 20 * 1024,
        "peak RSS {large} KiB at 200k rows vs {small} KiB at 5k"
    );
}

/// A foreign key of two columns (a tenant's projects): every task's (tenant, project)
/// is a generated project's, the tasks keep their skew over tenants and their NULLs, and
/// the key is built validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_of_two_columns_takes_its_parents_generated_tuples() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(
        "CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL); \
         CREATE TABLE projects (tenant_id int NOT NULL REFERENCES tenants (id), id int NOT NULL, \
             title text, PRIMARY KEY (tenant_id, id)); \
         CREATE TABLE tasks (id bigserial PRIMARY KEY, tenant_id int NOT NULL, project_id int, \
             done boolean NOT NULL, \
             CONSTRAINT tasks_project FOREIGN KEY (tenant_id, project_id) \
             REFERENCES projects (tenant_id, id)); \
         INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 50) g; \
         INSERT INTO projects SELECT t, p, 'project ' || t || '/' || p \
             FROM generate_series(1, 50) t, generate_series(1, 20) p; \
         INSERT INTO tasks (tenant_id, project_id, done) \
         SELECT 1 + floor(50 * power(random(), 3))::int, \
                CASE WHEN random() < 0.2 THEN NULL ELSE 1 + floor(20 * random())::int END, \
                random() < 0.5 \
         FROM generate_series(1, 8000); \
         ANALYZE",
    )
    .execute(&source)
    .await
    .expect("source");
    let scratch = common::database(&pg, "scratch").await;
    let (ok, out, err) = synth(&pg, "source", "scratch", &[]);
    assert!(ok, "zdm synth failed:\n{out}\n{err}");
    assert!(
        out.contains("foreign key tasks_project:"),
        "the repair is reported:\n{out}"
    );
    // The key was built by the schema's own post-data, validated.
    let valid = count(
        &scratch,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'tasks_project' AND convalidated",
    )
    .await;
    assert_eq!(valid, 1, "the two-column foreign key is there and valid");
    let orphans = count(
        &scratch,
        "SELECT count(*) FROM tasks t WHERE project_id IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM projects p WHERE p.tenant_id = t.tenant_id AND p.id = t.project_id)",
    )
    .await;
    assert_eq!(orphans, 0);
    let tasks = count(&scratch, "SELECT count(*) FROM tasks").await;
    assert!((tasks - 8000).abs() <= 160, "{tasks} tasks");
    // The skew over tenants and the NULLs are the tasks' own.
    let share = |pool: PgPool| async move {
        let top: f64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM tasks GROUP BY tenant_id ORDER BY 1 DESC LIMIT 1)::float8 \
             / (SELECT count(*) FROM tasks)",
        )
        .fetch_one(&pool)
        .await
        .expect("top tenant");
        let top5: f64 = sqlx::query_scalar(
            "SELECT sum(n)::float8 / (SELECT count(*) FROM tasks) FROM (SELECT count(*) AS n \
             FROM tasks GROUP BY tenant_id ORDER BY 1 DESC LIMIT 5) t",
        )
        .fetch_one(&pool)
        .await
        .expect("top five tenants");
        let nulls: f64 =
            sqlx::query_scalar("SELECT avg((project_id IS NULL)::int)::float8 FROM tasks")
                .fetch_one(&pool)
                .await
                .expect("nulls");
        (top, top5, nulls)
    };
    let (top, top5, nulls) = share(source.clone()).await;
    let (s_top, s_top5, s_nulls) = share(scratch.clone()).await;
    assert!(
        (top5 - s_top5).abs() < 0.05 && (top - s_top).abs() < 0.05,
        "the five busiest tenants have {top5:.3} of the tasks in the source, {s_top5:.3} in \
         the scratch (the busiest {top:.3} / {s_top:.3})"
    );
    assert!((nulls - s_nulls).abs() < 0.03, "{nulls} vs {s_nulls}");
}
