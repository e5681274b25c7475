//! A real application through a first migration: two Python processes with psycopg 3
//! (server-side prepared statements, `prepare_threshold=0`, and a connection pool), one
//! on the baseline version (`zdm init`) and one on the new version, each writing at a
//! bounded rate with prepared `SELECT *` and `... RETURNING *`, while the real binary runs
//! `zdm init`, `zdm start`, `zdm rollback`, `zdm start` and `zdm complete` of a migration
//! with a backfill (change_type + add_column, set_not_null + drop_column, split_table,
//! create_enum + change_type to it + add_enum_value, a column moved between tables, a
//! relation extracted into a new table, an identity column added to a table with rows, an
//! application view over a renamed and retyped column).
//! Zero application errors, and at the end every row equals what an oracle computes. The new application rolls out once the
//! new version is published (`zdm start` done: it is not usable during the backfill, by
//! design, docs/engine.md) and the old one retires before contract, as in a real rollout.
//!
//! With the same applications: `zdm repack` (pg_repack's copy and file swap) between
//! start and complete while both versions write, and a backfill held by a low-traffic
//! window that closes (the time of day injected, never waited for) and released when the
//! next opens, the old application writing throughout; no error, no row lost, every row
//! right after complete.
//!
//! Needs python3 with psycopg and psycopg_pool (`.ci/run` installs them with pip).

mod plan_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use plan_support::{common, fetch_one};
use sqlx::PgPool;
use zdm::localpg::LocalPg;

const ROWS: i64 = 100_000;

/// One first migration and the two applications around it.
struct Case {
    database: &'static str,
    migration: &'static str,
    /// Creates and fills the table (ROWS rows with ids 1..=ROWS).
    setup: &'static str,
    file: &'static str,
    /// The old application's statements (on the baseline version); its fresh ids start at
    /// 1,000,000.
    old: &'static [&'static str],
    /// The new application's statements; its fresh ids start at 2,000,000.
    new: &'static [&'static str],
    /// Rows differing from the oracle after complete (one number, as text).
    wrong: &'static str,
}

const CHANGE_TYPE_AND_ADD_COLUMN: Case = Case {
    database: "client_change_type",
    migration: "0001_price_cents_and_label",
    setup: "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL);
            INSERT INTO items SELECT i, 'row ' || i, (i % 1000) / 10.0 FROM generate_series(1, 100000) i;",
    file: r#"
description = "prices in cents, and a label every row has"

[[operations]]
op = "change_type"
table = "items"
column = "price"
type = "bigint"
up = "(price * 100)::bigint"
down = "price / 100.0"

[[operations]]
op = "add_column"
table = "items"
column = { name = "label", type = "text", nullable = false }
up = "'item ' || id"
"#,
    old: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, title, price) VALUES (%(id)s, 'old', (%(id)s %% 1000) / 10.0) RETURNING *",
        "UPDATE items SET title = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, title, price, label) VALUES (%(id)s, 'new', (%(id)s %% 1000) * 10, 'new ' || %(id)s) RETURNING *",
        "UPDATE items SET title = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM items WHERE NOT CASE
              WHEN id <= 100000 THEN price = ((id % 1000) / 10.0 * 100)::bigint
                   AND label = 'item ' || id AND title IN ('row ' || id, 'old upd', 'new upd')
              WHEN id >= 2000000 THEN price = (id % 1000) * 10 AND label = 'new ' || id
                   AND title IN ('new', 'new upd')
              ELSE price = ((id % 1000) / 10.0 * 100)::bigint AND label = 'item ' || id
                   AND title IN ('old', 'old upd', 'new upd') END
            OR (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                  FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped)
               <> 'id bigint, title text, price bigint, label text'",
};

const SET_NOT_NULL_AND_DROP_COLUMN: Case = Case {
    database: "client_not_null",
    migration: "0001_phone_required_no_nickname",
    setup: "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, phone text, nickname text NOT NULL);
            INSERT INTO people SELECT i, 'row ' || i, CASE WHEN i % 2 = 0 THEN NULL ELSE '+' || i END, 'nick ' || i
              FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "set_not_null"
table = "people"
column = "phone"
up = "coalesce(phone, 'none')"

[[operations]]
op = "drop_column"
table = "people"
column = "nickname"
down = "'n/a'"
"#,
    old: &[
        "SELECT * FROM people WHERE id = %(rid)s",
        "INSERT INTO people (id, name, phone, nickname) VALUES (%(id)s, 'old', NULL, 'nick') RETURNING *",
        "UPDATE people SET phone = NULL WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM people WHERE id = %(rid)s",
        "INSERT INTO people (id, name, phone) VALUES (%(id)s, 'new', '+1') RETURNING *",
        "UPDATE people SET name = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM people WHERE NOT CASE
              WHEN id <= 100000 THEN phone = 'none' OR (id % 2 = 1 AND phone = '+' || id)
              WHEN id >= 2000000 THEN phone = '+1' AND name IN ('new', 'new upd')
              ELSE phone = 'none' AND name IN ('old', 'new upd') END
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'nickname' AND NOT attisdropped)
            OR NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'phone')",
};

const SPLIT_TABLE: Case = Case {
    database: "client_split",
    migration: "0001_orders_notes_apart",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total bigint NOT NULL, notes text);
            INSERT INTO orders SELECT i, i % 500, 'note ' || i FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "split_table"
table = "orders"
columns = ["notes"]
new_table = "order_notes"
"#,
    old: &[
        "SELECT * FROM orders WHERE id = %(rid)s",
        "INSERT INTO orders (id, total, notes) VALUES (%(id)s, 1, 'old') RETURNING *",
        "UPDATE orders SET notes = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM orders o JOIN order_notes n USING (id) WHERE o.id = %(rid)s",
        "INSERT INTO orders (id, total) VALUES (%(id)s, 2) RETURNING *",
        "UPDATE order_notes SET notes = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM orders o LEFT JOIN order_notes n USING (id) WHERE NOT CASE
              WHEN o.id <= 100000 THEN n.notes IN ('note ' || o.id, 'old upd', 'new upd')
              WHEN o.id >= 2000000 THEN n.notes IS NULL AND o.total = 2
              ELSE n.notes IN ('old', 'old upd', 'new upd') END
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'notes' AND NOT attisdropped)",
};

const ENUMS: Case = Case {
    database: "client_enums",
    migration: "0001_ticket_state_enum_urgent",
    setup: "CREATE TYPE ticket_priority AS ENUM ('low', 'high');
            CREATE TABLE tickets (id bigint PRIMARY KEY, title text NOT NULL, state text NOT NULL,
                                  priority ticket_priority NOT NULL);
            INSERT INTO tickets SELECT i, 'row ' || i, CASE WHEN i % 3 = 0 THEN 'closed' ELSE 'open' END,
                   (CASE WHEN i % 2 = 0 THEN 'high' ELSE 'low' END)::ticket_priority
              FROM generate_series(1, 100000) i;",
    file: r#"
description = "ticket states become an enum; priorities get an urgent level"

[[operations]]
op = "create_enum"
name = "ticket_state"
values = ["open", "closed"]

[[operations]]
op = "change_type"
table = "tickets"
column = "state"
type = "ticket_state"
up = "state::public.ticket_state"
down = "state::text"

[[operations]]
op = "add_enum_value"
name = "ticket_priority"
value = "urgent"
after = "high"
"#,
    old: &[
        "SELECT * FROM tickets WHERE id = %(rid)s",
        "INSERT INTO tickets (id, title, state, priority) VALUES (%(id)s, 'old', 'open', 'low') RETURNING *",
        "UPDATE tickets SET state = 'closed' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM tickets WHERE id = %(rid)s",
        "INSERT INTO tickets (id, title, state, priority) VALUES (%(id)s, 'new', 'open', 'urgent') RETURNING *",
        "UPDATE tickets SET state = 'closed', priority = 'urgent' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM tickets WHERE NOT CASE
              WHEN id <= 100000 THEN state::text IN (CASE WHEN id % 3 = 0 THEN 'closed' ELSE 'open' END, 'closed')
                   AND (priority::text = CASE WHEN id % 2 = 0 THEN 'high' ELSE 'low' END
                        OR (priority = 'urgent' AND state = 'closed'))
                   AND title = 'row ' || id
              WHEN id >= 2000000 THEN state = 'open' AND priority = 'urgent' AND title = 'new'
              ELSE state = 'open' AND priority = 'low' AND title = 'old' END
            OR (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'tickets'::regclass AND attname = 'state') <> 'ticket_state'
            OR (SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum
                 WHERE enumtypid = 'ticket_priority'::regtype) <> 'low,high,urgent'
            OR (SELECT count(*) FROM pg_attribute WHERE attrelid = 'tickets'::regclass
                 AND attnum > 0 AND NOT attisdropped) <> 4",
};

/// A column moved between tables (add_column with `from`, drop_column with `from`): the
/// old version writes `users.email`, the new one `profiles.email`, one profile per user.
/// `users.email` is nullable: the new version creates users without it (their profile, if
/// any, gives it).
const MOVE_COLUMN: Case = Case {
    database: "client_move_column",
    migration: "0001_email_to_profiles",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text);
            CREATE TABLE profiles (id bigint PRIMARY KEY, user_id bigint NOT NULL UNIQUE REFERENCES users, bio text);
            INSERT INTO users SELECT i, 'user ' || i, 'u' || i || '@x' FROM generate_series(1, 100000) i;
            INSERT INTO profiles SELECT i, i, 'bio ' || i FROM generate_series(1, 100000) i;",
    file: r#"
description = "a user's email moves to the profile"

[[operations]]
op = "add_column"
table = "profiles"
column = { name = "email", type = "text", nullable = false }
up = "users.email"
from = { table = "users", where = "users.id = profiles.user_id" }

[[operations]]
op = "drop_column"
table = "users"
column = "email"
down = "profiles.email"
from = { table = "profiles", where = "profiles.user_id = users.id" }
"#,
    old: &[
        "SELECT * FROM users WHERE id = %(rid)s",
        "INSERT INTO users (id, name, email) VALUES (%(id)s, 'old', 'old' || %(id)s) RETURNING *",
        "UPDATE users SET email = 'old upd ' || id WHERE id = %(rid)s RETURNING *",
        "SELECT * FROM profiles WHERE id = %(rid)s",
    ],
    new: &[
        "SELECT * FROM profiles p JOIN users u ON u.id = p.user_id WHERE p.id = %(rid)s",
        "INSERT INTO users (id, name) VALUES (%(id)s, 'new') RETURNING *",
        "UPDATE profiles SET email = 'new upd ' || user_id WHERE id = %(rid)s RETURNING *",
        "UPDATE users SET name = 'new name' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM profiles p WHERE NOT
              (p.email IN ('u' || p.user_id || '@x', 'old upd ' || p.user_id, 'new upd ' || p.user_id)
               AND p.id = p.user_id AND p.bio = 'bio ' || p.id)
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email' AND NOT attisdropped)
            OR (SELECT count(*) FROM profiles) <> 100000
            OR NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'profiles'::regclass AND attname = 'email')",
};

/// An identity column added to a table with rows: filled by zdm's sequence for both
/// versions while live (the new one reads it back through `RETURNING *`), attached as a
/// real identity at contract and restarted past every value given: the new version's
/// inserts after contract collide with none (the column is unique).
const ADD_IDENTITY: Case = Case {
    database: "client_identity",
    migration: "0001_tickets_number",
    setup: "CREATE TABLE tickets (id bigint PRIMARY KEY, title text NOT NULL);
            INSERT INTO tickets SELECT i, 'row ' || i FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "add_column"
table = "tickets"
column = { name = "number", type = "bigint", identity = "always", unique = true, sequence = { start = 1000 } }
"#,
    old: &[
        "SELECT * FROM tickets WHERE id = %(rid)s",
        "INSERT INTO tickets (id, title) VALUES (%(id)s, 'old') RETURNING *",
        "UPDATE tickets SET title = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM tickets WHERE id = %(rid)s",
        "INSERT INTO tickets (id, title) VALUES (%(id)s, 'new') RETURNING *",
        "UPDATE tickets SET title = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM tickets WHERE number IS NULL OR number < 1000 OR NOT CASE
              WHEN id <= 100000 THEN title IN ('row ' || id, 'old upd', 'new upd')
              WHEN id >= 2000000 THEN title IN ('new', 'new upd')
              ELSE title IN ('old', 'old upd', 'new upd') END
            OR (SELECT count(DISTINCT number) FROM tickets) <> (SELECT count(*) FROM tickets)
            OR (SELECT attidentity::text || attnotnull::text FROM pg_attribute
                 WHERE attrelid = 'tickets'::regclass AND attname = 'number') <> 'atrue'
            OR EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE '\\_zdm%' AND relkind = 'S')",
};

/// A one-to-many column extracted into a join table (create_table with `up`, drop_column
/// with `down` from it): the old version writes `users.account_id`, the new one
/// `user_accounts`; each user has one row there until the new version gives more.
const EXTRACT_RELATION: Case = Case {
    database: "client_extract",
    migration: "0001_user_accounts",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, account_id bigint NOT NULL);
            INSERT INTO users SELECT i, 'user ' || i, 1 + i % 100 FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "create_table"
table = "user_accounts"
primary_key = ["user_id", "account_id"]
columns = [
  { name = "user_id", type = "bigint", references = { table = "users", columns = ["id"], on_delete = "cascade" } },
  { name = "account_id", type = "bigint" },
  { name = "role", type = "text", nullable = false, default = "'member'" },
]
up = { table = "users", values = { user_id = "users.id", account_id = "users.account_id" }, where = "user_accounts.user_id = users.id" }

[[operations]]
op = "drop_column"
table = "users"
column = "account_id"
down = "user_accounts.account_id"
from = { table = "user_accounts", where = "user_accounts.user_id = users.id" }
"#,
    old: &[
        "SELECT * FROM users WHERE id = %(rid)s",
        "INSERT INTO users (id, name, account_id) VALUES (%(id)s, 'old', 1 + %(id)s %% 100) RETURNING *",
        "UPDATE users SET account_id = 200 + id %% 100 WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM users u JOIN user_accounts a ON a.user_id = u.id WHERE u.id = %(rid)s",
        "INSERT INTO users (id, name) VALUES (%(id)s, 'new') RETURNING *",
        "UPDATE user_accounts SET account_id = 300 + user_id %% 100 WHERE user_id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM users u LEFT JOIN user_accounts a ON a.user_id = u.id WHERE NOT CASE
              WHEN u.id <= 100000 THEN a.account_id IN (1 + u.id % 100, 200 + u.id % 100, 300 + u.id % 100)
                   AND a.role = 'member'
              WHEN u.id >= 2000000 THEN a.user_id IS NULL
              ELSE a.account_id IN (1 + u.id % 100, 200 + u.id % 100, 300 + u.id % 100) END
            OR (SELECT count(*) FROM user_accounts) <> (SELECT count(*) FROM users WHERE id < 2000000)
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'account_id' AND NOT attisdropped)",
};

/// An application view over a table whose column is renamed and retyped: the new version
/// reads its copy in the version schema by prepared `SELECT *` (the view's own column
/// names kept, the new type shown), the old one the original by its schema; after
/// contract the original reads the final shape.
const APP_VIEW: Case = Case {
    database: "client_app_view",
    migration: "0001_item_prices_in_cents",
    setup: "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL);
            INSERT INTO items SELECT i, 'row ' || i, (i % 1000) / 10.0 FROM generate_series(1, 100000) i;
            CREATE VIEW item_prices AS SELECT id, title, price FROM items;",
    file: r#"
[[operations]]
op = "rename_column"
table = "items"
column = "title"
to = "name"

[[operations]]
op = "change_type"
table = "items"
column = "price"
type = "bigint"
up = "(price * 100)::bigint"
down = "price / 100.0"
"#,
    old: &[
        "SELECT * FROM public.item_prices WHERE id = %(rid)s",
        "INSERT INTO items (id, title, price) VALUES (%(id)s, 'old', (%(id)s %% 1000) / 10.0) RETURNING *",
        "UPDATE items SET title = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT id, title, price + 0 AS cents FROM item_prices WHERE id = %(rid)s",
        "INSERT INTO items (id, name, price) VALUES (%(id)s, 'new', (%(id)s %% 1000) * 10) RETURNING *",
        "SELECT * FROM item_prices WHERE id = %(rid)s",
    ],
    wrong: "SELECT count(*)::text FROM items WHERE NOT CASE
              WHEN id <= 100000 THEN price = ((id % 1000) / 10.0 * 100)::bigint
                   AND name IN ('row ' || id, 'old upd')
              WHEN id >= 2000000 THEN price = (id % 1000) * 10 AND name = 'new'
              ELSE price = ((id % 1000) / 10.0 * 100)::bigint AND name IN ('old', 'old upd') END
            OR (SELECT count(*) FROM public.item_prices) <> (SELECT count(*) FROM items)
            OR (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                  FROM pg_attribute WHERE attrelid = 'public.item_prices'::regclass AND attnum > 0)
               <> 'id bigint, title text, price bigint'",
};

/// The repack case: `grade`, computed for existing rows, rewrites the table in place.
/// Without a default: with `default = "0"` an old-version insert between the column's
/// step and the sync trigger's keeps the default and the backfill (`IS NULL` only) never
/// fills it (seen under load, reported; src/plan/ops/add_column.rs).
const REPACK: Case = Case {
    database: "client_repack",
    migration: "0001_items_add_grade",
    setup: "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, n int NOT NULL);
            INSERT INTO items SELECT i, 'item ' || i, i % 1000 FROM generate_series(1, 100000) i;
            ANALYZE items;
            CREATE EXTENSION pg_repack;",
    file: r#"
[[operations]]
op = "add_column"
table = "items"
column = { name = "grade", type = "int", nullable = false }
up = "n % 5"
"#,
    old: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, name, n) VALUES (%(id)s, 'old', %(id)s %% 1000) RETURNING *",
        "UPDATE items SET name = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, name, n, grade) VALUES (%(id)s, 'new', %(id)s %% 1000, (%(id)s %% 1000) %% 5) RETURNING *",
        "UPDATE items SET name = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM items WHERE grade IS DISTINCT FROM n % 5 OR NOT CASE
              WHEN id <= 100000 THEN n = id % 1000 AND name IN ('item ' || id, 'old upd', 'new upd')
              WHEN id >= 2000000 THEN n = id % 1000 AND name = 'new'
              ELSE n = id % 1000 AND name = 'old' END
            OR (SELECT count(*) FROM items WHERE id <= 100000) <> 100000",
};

fn python_ready() {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg, psycopg_pool"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        _ => panic!(
            "this test needs python3 with psycopg 3 and psycopg_pool: \
             pip install 'psycopg[binary]' psycopg-pool (.ci/run does)"
        ),
    }
}

struct App {
    child: Child,
    stop: PathBuf,
    name: &'static str,
}

impl App {
    fn start(
        name: &'static str,
        url: &str,
        search_path: &str,
        statements: &[&str],
        first_id: i64,
        dir: &Path,
    ) -> App {
        let stop = dir.join(format!("{name}.stop"));
        let spec = serde_json::json!({
            "statements": statements,
            "first_id": first_id,
            "max_rid": ROWS,
            "rate": 60,
            "threads": 3,
        });
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/app.py"))
            .args([url, search_path, &spec.to_string()])
            .arg(&stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python application");
        App { child, stop, name }
    }

    /// Stops it and returns what it ran; panics on any application error.
    fn finish(self) -> Ran {
        std::fs::write(&self.stop, "stop").expect("stop file");
        let output = self.child.wait_with_output().expect("app ends");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} app failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("report");
        assert_eq!(
            report["error_count"], 0,
            "{} application errors: {}",
            self.name, report["errors"]
        );
        Ran {
            ops: report["ops"].as_u64().unwrap_or(0),
            by_statement: report["by_statement"]
                .as_array()
                .map(|counts| counts.iter().filter_map(|c| c.as_u64()).collect())
                .unwrap_or_default(),
        }
    }
}

/// What an application ran: operations in all, and of each of its statements (in the
/// order given).
struct Ran {
    ops: u64,
    by_statement: Vec<u64>,
}

fn zdm(pg: &LocalPg, database: &str, root: &Path, args: &[&str]) -> Output {
    let output = Command::new(common::zdm_binary())
        .args(args)
        .arg("--dir")
        .arg(root.join("migrations"))
        .args(["--config"])
        .arg(root.join("zdm.toml"))
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", root.join("zdm.log"))
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env("XDG_STATE_HOME", root.join("state"))
        .output()
        .expect("run zdm");
    assert!(
        output.status.success(),
        "zdm {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The server, the case's table, and a root with the migration file in `migrations/`, a
/// socket directory and a `zdm.toml` pacing the backfill at `rows_per_second` (a few
/// seconds of it, so the applications write during it) with the throttle off.
async fn prepare(case: &Case, rows_per_second: u32) -> (LocalPg, PgPool, tempfile::TempDir) {
    python_ready();
    let pg = common::primary();
    let database = case.database;
    let migration = case.migration;
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
            .join(format!("{migration}.toml")),
        case.file,
    )
    .expect("file");
    std::fs::write(
        root.path().join("zdm.toml"),
        format!(
            "[backfill]\nmax_rows_per_second = {rows_per_second}\n\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("zdm.toml");
    (pg, pool, root)
}

/// `zdm init` (the baseline version the old application runs on), checked.
fn init(pg: &LocalPg, case: &Case, root: &Path) {
    let init = zdm(pg, case.database, root, &["init"]);
    let init_text = String::from_utf8_lossy(&init.stdout);
    assert!(
        init_text.contains("SET search_path TO \"public_baseline\""),
        "{init_text}"
    );
}

/// `zdm complete NAME` confirmed, every gate overridden: these tests are about the
/// applications; the gates have their own.
fn complete(pg: &LocalPg, case: &Case, root: &Path) {
    let migration = case.migration;
    let mut args = vec![
        "complete",
        migration,
        "--confirm-contract",
        migration,
        "--window",
        "0",
    ];
    for gate in zdm::gates::registry::names() {
        args.extend(["--override-gate", gate]);
    }
    zdm(pg, case.database, root, &args);
}

/// The old application (on the baseline), fresh ids from 1,000,000.
fn old_app(pg: &LocalPg, case: &Case, root: &Path) -> App {
    App::start(
        "old",
        &pg.primary().url(case.database),
        "\"public_baseline\"",
        case.old,
        1_000_000,
        root,
    )
}

/// The new application (on the migration's version), fresh ids from 2,000,000.
fn new_app(pg: &LocalPg, case: &Case, root: &Path) -> App {
    App::start(
        "new",
        &pg.primary().url(case.database),
        &format!("\"public_{}\"", case.migration),
        case.new,
        2_000_000,
        root,
    )
}

/// Every row an application's INSERT (its statement `insert`) returned is in the table:
/// as many rows with its ids as it counted.
async fn assert_inserts_kept(
    pool: &PgPool,
    table: &str,
    ran: &Ran,
    insert: usize,
    ids: (i64, i64),
) {
    let kept: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE id >= $1 AND id < $2"
    ))
    .bind(ids.0)
    .bind(ids.1)
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(
        u64::try_from(kept).unwrap_or(0),
        ran.by_statement[insert],
        "rows inserted with ids from {} (the application counted its inserts)",
        ids.0
    );
}

/// The end of a rollout on the items table: the old application retires, contract, the
/// new one goes on a little; then neither saw an error (`App::finish`), both did work,
/// every row either inserted is there, and every row is what the oracle says.
async fn retire_complete_and_check(
    pg: &LocalPg,
    case: &Case,
    root: &Path,
    pool: &PgPool,
    old: App,
    new: App,
) {
    let old_ran = old.finish();
    complete(pg, case, root);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new_ran = new.finish();
    assert!(
        old_ran.ops > 50 && new_ran.ops > 50,
        "old {}, new {}",
        old_ran.ops,
        new_ran.ops
    );
    assert_inserts_kept(pool, "items", &old_ran, 1, (1_000_000, 2_000_000)).await;
    assert_inserts_kept(pool, "items", &new_ran, 1, (2_000_000, 3_000_000)).await;
    assert_oracle(pool, case, "after complete").await;
}

/// No row of the items table differs from the case's oracle (`when` says at which point);
/// on failure, the rows themselves.
async fn assert_oracle(pool: &PgPool, case: &Case, when: &str) {
    let wrong = fetch_one(pool, case.wrong).await;
    if wrong != "0" {
        let rows = case.wrong.replacen(
            "SELECT count(*)::text FROM items",
            "SELECT coalesce(string_agg(items::text, ' | '), '') FROM items",
            1,
        );
        panic!(
            "{when}: {wrong} row(s) differing from the oracle: {}",
            fetch_one(pool, &rows).await
        );
    }
}

async fn run(case: &Case) {
    let (pg, pool, root) = prepare(case, 40_000).await;
    let database = case.database;
    let migration = case.migration;

    // zdm plan warns while the application is on the physical tables; zdm init gives it
    // the baseline version.
    let planned = zdm(&pg, database, root.path(), &["plan", migration]);
    assert!(
        String::from_utf8_lossy(&planned.stdout)
            .contains("WARNING: applications still on the physical tables"),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );
    init(&pg, case, root.path());
    let again = zdm(&pg, database, root.path(), &["init"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already there"));
    let status = zdm(&pg, database, root.path(), &["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .contains("baseline: SET search_path TO \"public_baseline\""),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let planned = zdm(&pg, database, root.path(), &["plan", migration]);
    assert!(
        String::from_utf8_lossy(&planned.stdout).contains("Old version: public_baseline"),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );

    let old = old_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;
    zdm(&pg, database, root.path(), &["start", migration]);
    zdm(&pg, database, root.path(), &["rollback", migration]);
    zdm(&pg, database, root.path(), &["start", migration]);

    // Ready to contract: both versions are offered, the baseline and the new one.
    let status = zdm(&pg, database, root.path(), &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("baseline: SET search_path TO \"public_baseline\"")
            && text.contains(&format!(
                "{migration}: SET search_path TO \"public_{migration}\""
            )),
        "{text}"
    );
    // The new application rolls out, then the old one retires.
    let new = new_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_ops = old.finish().ops;
    complete(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_ops = new.finish().ops;
    assert!(
        old_ops > 50 && new_ops > 50,
        "old {old_ops}, new {new_ops} operations"
    );

    assert_eq!(
        fetch_one(&pool, case.wrong).await,
        "0",
        "{migration}: rows differing from the oracle"
    );
    pool.close().await;
}

#[tokio::test]
async fn change_type_and_add_column() {
    run(&CHANGE_TYPE_AND_ADD_COLUMN).await;
}

#[tokio::test]
async fn set_not_null_and_drop_column() {
    run(&SET_NOT_NULL_AND_DROP_COLUMN).await;
}

#[tokio::test]
async fn split_table() {
    run(&SPLIT_TABLE).await;
}

#[tokio::test]
async fn enums_create_change_type_and_add_value() {
    run(&ENUMS).await;
}

/// A migration between two tables through its rollout (start, rollback, start, the new
/// version rolling out, the old one retiring, complete), both versions writing to each
/// table: `agree` (a count, as text) finds the rows where the two tables disagree while
/// both write, and must find none; each app's third statement must have run (the write
/// the other version follows), every row each inserted into `users` is kept, and no row
/// differs from the case's oracle after complete.
async fn across_two_tables(case: &Case, agree: &str) {
    let (pg, pool, root) = prepare(case, 40_000).await;
    let (database, migration) = (case.database, case.migration);
    init(&pg, case, root.path());
    let old = old_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;
    zdm(&pg, database, root.path(), &["start", migration]);
    zdm(&pg, database, root.path(), &["rollback", migration]);
    zdm(&pg, database, root.path(), &["start", migration]);
    let new = new_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each statement commits with its triggers' writes: at any snapshot the two agree.
    let apart = fetch_one(&pool, agree).await;
    assert_eq!(apart, "0", "{migration}: rows apart while both write");
    let old_ran = old.finish();
    complete(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new_ran = new.finish();
    assert!(
        old_ran.by_statement[2] > 10 && new_ran.by_statement[2] > 10,
        "both wrote what the other follows: old {:?}, new {:?}",
        old_ran.by_statement,
        new_ran.by_statement
    );
    assert_inserts_kept(&pool, "users", &old_ran, 1, (1_000_000, 2_000_000)).await;
    assert_inserts_kept(&pool, "users", &new_ran, 1, (2_000_000, 3_000_000)).await;
    let wrong = fetch_one(&pool, case.wrong).await;
    assert_eq!(
        wrong, "0",
        "{migration}: rows differing from the oracle after complete"
    );
    pool.close().await;
}

/// A column moved between tables: the two columns agree while both write, and after
/// complete every profile has an email one of the versions gave.
#[tokio::test]
async fn a_column_moved_between_tables_while_both_versions_write() {
    across_two_tables(
        &MOVE_COLUMN,
        "SELECT count(*)::text FROM users u JOIN profiles p ON p.user_id = u.id
          WHERE u.email IS DISTINCT FROM p.email",
    )
    .await;
}

/// A relation extracted into a new table: the old column shows the new table's first row
/// for every user while both write, and after complete every user has its one row.
#[tokio::test]
async fn a_relation_extracted_into_a_new_table_while_both_versions_write() {
    across_two_tables(
        &EXTRACT_RELATION,
        "SELECT count(*)::text FROM users u WHERE u.account_id IS DISTINCT FROM
           (SELECT a.account_id FROM user_accounts a WHERE a.user_id = u.id
             ORDER BY a.user_id, a.account_id LIMIT 1)",
    )
    .await;
}

#[tokio::test]
async fn an_application_view_over_a_renamed_and_retyped_column() {
    run(&APP_VIEW).await;
}

#[tokio::test]
async fn an_identity_column_added_to_a_table_with_rows() {
    run(&ADD_IDENTITY).await;
}

/// The table's file (pg_repack swaps it; the table's oid, which views and prepared
/// statements hold, stays).
async fn relfilenode(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT relfilenode::bigint FROM pg_class WHERE oid = 'public.{table}'::regclass"
    ))
    .fetch_one(pool)
    .await
    .expect("relfilenode")
}

/// The highest id of an application's fresh rows (from `from`), 0 when none.
async fn last_id(pool: &PgPool, from: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(max(id), 0) FROM items WHERE id >= $1 AND id < $1 + 1000000",
    )
    .bind(from)
    .fetch_one(pool)
    .await
    .expect("max id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repack_while_both_versions_write() {
    let case = &REPACK;
    let (pg, pool, root) = prepare(case, 40_000).await;
    init(&pg, case, root.path());
    let old = old_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;
    zdm(&pg, case.database, root.path(), &["start", case.migration]);
    let new = new_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Every row right before the rebuild too (so that a wrong one after says which of
    // the two did it).
    assert_oracle(&pool, case, "after zdm start, before the repack").await;
    // The rebuild, both versions writing through it.
    let file_before = relfilenode(&pool, "items").await;
    let (old_before, new_before) = (
        last_id(&pool, 1_000_000).await,
        last_id(&pool, 2_000_000).await,
    );
    // zdm's own checks: it fails this test on any error (and prints what it said).
    zdm(&pg, case.database, root.path(), &["repack", "items"]);
    assert_ne!(
        relfilenode(&pool, "items").await,
        file_before,
        "pg_repack swapped the files"
    );
    // Both kept writing across the swap (measured a second after it: how many writes
    // fall inside the rebuild itself depends on the machine's load).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        last_id(&pool, 1_000_000).await > old_before
            && last_id(&pool, 2_000_000).await > new_before,
        "both applications kept writing across pg_repack's swap"
    );

    // The old version retires, contract, the new one goes on a little.
    retire_complete_and_check(&pg, case, root.path(), &pool, old, new).await;
    pool.close().await;
}

/// `zdm start`'s run in this process (planned as the binary plans it) with its throttle's
/// clock in the test's hands: the backfill is held when the window closes and goes on when
/// the next opens, the old application writing all along; then the new version, and
/// `zdm complete` by the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_held_by_its_window_and_released_while_both_versions_write() {
    use sqlx::Connection;
    use zdm::config::{Config, Overrides};
    use zdm::engine::throttle::Throttle;
    use zdm::engine::{Engine, Event, Events};
    use zdm::schedule::{parse_windows, Clock};

    let case = &CHANGE_TYPE_AND_ADD_COLUMN;
    let case = &Case {
        database: "client_window",
        ..*case
    };
    let (pg, pool, root) = prepare(case, 20_000).await;
    init(&pg, case, root.path());
    let old = old_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let url = pg.primary().url(case.database);
    let config = Config::load(&Overrides {
        config_file: Some(root.path().join("zdm.toml")),
        database_url: Some(url.clone()),
        migrations_dir: Some(root.path().join("migrations")),
    })
    .expect("config");
    let planned = {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let planned = zdm::app::start::load_and_plan(&config, &mut conn, Some(case.migration))
            .await
            .expect("planned as zdm start plans");
        conn.close().await.expect("close");
        planned
    };
    // Only the windows hold it: no monitor here, so no metric input either.
    let mut options = config.engine_options();
    let settings = &mut options.backfill.throttle;
    settings.max_replica_lag = None;
    settings.max_lock_waiters = None;
    settings.max_active_sessions_factor = None;
    settings.max_host_cpu_percent = None;
    settings.max_canary_slowdown = None;
    settings.windows = parse_windows("Mon-Fri 01:00-05:00").expect("windows");
    settings.tz = Some("Europe/Zurich".to_string());
    let settings = settings.clone();
    let mut engine = Engine::connect(config.database_url().expect("url"), options)
        .await
        .expect("engine");
    // Tuesday 1 December 2026, 04:59 in Zurich: one minute of the window left.
    let clock = Clock::manual(common::zurich("2026-12-01T04:59:00"));
    let mut throttle = Throttle::without_monitor(settings, "no monitor in this test".to_string());
    throttle.set_clock(clock.clone());
    engine.set_throttle(throttle);
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    let task = tokio::spawn(async move {
        let outcome = engine.start(&planned.plan, &planned.checksum).await;
        engine.set_events(Events::none());
        (outcome, engine)
    });

    common::until(&mut events, Duration::from_secs(60), "a first batch", |e| {
        matches!(e, Event::BatchDone(_))
    })
    .await;
    clock.set(common::zurich("2026-12-01T05:00:30"));
    common::until(&mut events, Duration::from_secs(20), "the hold", |e| {
        matches!(e, Event::ThrottleOn { reason } if reason.starts_with("outside the low-traffic window"))
    })
    .await;
    // Held: the old application writes, no batch commits.
    let held = common::rows_checkpointed(&pool).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        common::rows_checkpointed(&pool).await,
        held,
        "no batch outside the window"
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(held < total, "held before the end: {held} of {total}");

    // The next window opens: it goes on by itself to the end.
    clock.set(common::zurich("2026-12-02T01:00:00"));
    common::until(&mut events, Duration::from_secs(20), "the release", |e| {
        matches!(e, Event::ThrottleOff { reason, .. } if reason.starts_with("the low-traffic window no longer holds"))
    })
    .await;
    let (outcome, engine) = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the backfill ends once released")
        .expect("join");
    outcome.expect("zdm start's run");
    engine.close().await.expect("close");

    let new = new_app(&pg, case, root.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    retire_complete_and_check(&pg, case, root.path(), &pool, old, new).await;
    pool.close().await;
}
