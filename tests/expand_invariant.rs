//! The expand invariant (docs/planner.md): after every committed expand step, however the
//! run stops there, the old version can still insert and update. For every operation that
//! installs a sync trigger or a constraint, the run is stopped after each expand step in
//! turn, once by an abort (the engine's stop request, what `zdm ctl abort` and Ctrl-C do)
//! and once by kill -9 of the real binary;
//! then the old version writes, and a rollback leaves the database as it was.

mod plan_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plan_support::{catalog, client, common, demo_database, migration};
use sqlx::PgPool;
use tokio::sync::mpsc;
use zdm::engine::{Engine, EngineOptions, Event, Events};
use zdm::localpg::LocalPg;
use zdm::plan::{plan, Phase};

/// One operation and the old-version writes that must keep working.
struct Case {
    name: &'static str,
    file: &'static str,
    /// Statements of the old application (search_path = public), run after each stop.
    /// `{n}` is replaced by a number unique to the stop, for fresh keys.
    old_writes: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "0001_add_not_null",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "cents", type = "bigint", nullable = false, check = "cents >= 0", unique = false }
up = "total_cents"
"#,
        old_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n}, 1, 100)",
            "UPDATE orders SET total_cents = total_cents + 1 WHERE id = 1",
        ],
    },
    Case {
        name: "0002_set_not_null",
        file: r#"
[[operations]]
op = "set_not_null"
table = "customers"
column = "phone"
up = "coalesce(phone, 'unknown')"
"#,
        old_writes: &[
            "INSERT INTO customers (id, email, full_name, country) VALUES ({n}, 'x{n}@example.com', 'X', 'FR')",
            "UPDATE customers SET phone = NULL WHERE id = 2",
        ],
    },
    Case {
        name: "0003_change_type_not_null",
        file: r#"
[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents::numeric / 100"
down = "(price_cents * 100)::integer"
"#,
        old_writes: &[
            "INSERT INTO products (id, sku, name, category, price_cents) VALUES ({n}, 'S{n}', 'P', 'home', 1234)",
            "UPDATE products SET price_cents = price_cents + 1 WHERE id = 1",
        ],
    },
    Case {
        name: "0004_drop_column",
        file: r#"
[[operations]]
op = "drop_column"
table = "customers"
column = "country"
down = "'ZZ'"
"#,
        old_writes: &[
            "INSERT INTO customers (id, email, full_name, country) VALUES ({n}, 'y{n}@example.com', 'Y', 'FR')",
            "UPDATE customers SET country = 'DE' WHERE id = 3",
        ],
    },
    Case {
        name: "0005_split_table",
        file: r#"
[[operations]]
op = "split_table"
table = "customers"
columns = ["marketing_opt_in"]
new_table = "customer_marketing"
"#,
        old_writes: &[
            "INSERT INTO customers (id, email, full_name, country, marketing_opt_in) VALUES ({n}, 'z{n}@example.com', 'Z', 'FR', true)",
            "UPDATE customers SET marketing_opt_in = NOT marketing_opt_in WHERE id = 4",
        ],
    },
    Case {
        name: "0006_add_column_keys",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "ref", type = "bigint", unique = true, check = "ref > 0" }
up = "id"
"#,
        old_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n}, 1, 100)",
            "UPDATE orders SET total_cents = total_cents + 1 WHERE id = 2",
        ],
    },
    Case {
        name: "0007_constraints",
        file: r#"
[[operations]]
op = "add_check"
table = "orders"
name = "orders_total_nonnegative"
check = "total_cents >= 0"

[[operations]]
op = "add_unique"
table = "products"
name = "products_name_sku_key"
columns = ["name", "sku"]

[[operations]]
op = "add_foreign_key"
table = "order_items"
name = "order_items_product_fk"
columns = ["product_id"]
references = { table = "products", columns = ["id"] }
"#,
        old_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n}, 1, 100)",
            "INSERT INTO products (id, sku, name, category, price_cents) VALUES ({n}, 'K{n}', 'P', 'home', 5)",
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (1, 1, 1, 5)",
            "UPDATE products SET name = name || '!' WHERE id = 1",
        ],
    },
    Case {
        name: "0008_drop_not_null",
        file: r#"
[[operations]]
op = "drop_not_null"
table = "customers"
column = "country"
down = "'ZZ'"
"#,
        old_writes: &[
            "INSERT INTO customers (id, email, full_name, country) VALUES ({n}, 'w{n}@example.com', 'W', 'FR')",
            "UPDATE customers SET country = 'DE' WHERE id = 5",
        ],
    },
    Case {
        name: "0009_extract_relation",
        file: r#"
[[operations]]
op = "create_table"
table = "customer_countries"
columns = [{ name = "customer_id", type = "bigint", primary_key = true }, { name = "country", type = "text", nullable = false }]
up = { table = "customers", values = { customer_id = "customers.id", country = "customers.country" }, where = "customer_countries.customer_id = customers.id" }

[[operations]]
op = "drop_column"
table = "customers"
column = "country"
down = "customer_countries.country"
from = { table = "customer_countries", where = "customer_countries.customer_id = customers.id" }
"#,
        old_writes: &[
            "INSERT INTO customers (id, email, full_name, country) VALUES ({n}, 'v{n}@example.com', 'V', 'FR')",
            "UPDATE customers SET country = 'DE' WHERE id = 6",
        ],
    },
    Case {
        name: "0011_add_identity",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "number", type = "bigint", identity = "always" }
"#,
        old_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n}, 1, 100)",
            "UPDATE orders SET total_cents = total_cents + 1 WHERE id = 1",
        ],
    },
    Case {
        name: "0012_add_check_per_column",
        file: r#"
[[operations]]
op = "add_check"
table = "products"
name = "products_price_positive"
check = "price_cents > 0 AND category <> ''"
up = { price_cents = "greatest(price_cents, 1)" }
"#,
        // The old version still writes what the new version's check forbids.
        old_writes: &[
            "INSERT INTO products (id, sku, name, category, price_cents) VALUES ({n}, 'Q{n}', 'P', 'home', 0)",
            "UPDATE products SET price_cents = 0 WHERE id = 2",
        ],
    },
];

fn database_name(case: &Case, how: &str, k: usize) -> String {
    format!("{}_{how}_{k}", &case.name[5..])
}

async fn old_version_writes(pg: &LocalPg, database: &str, case: &Case, n: usize, at: &str) {
    let old = client(pg, database, "public").await;
    for sql in case.old_writes {
        let sql = sql.replace("{n}", &(900_000 + n).to_string());
        sqlx::raw_sql(&sql)
            .execute(&old)
            .await
            .unwrap_or_else(|e| panic!("{}: old version after {at}: {sql}: {e}", case.name));
    }
    old.close().await;
}

/// Asks `engine` to stop once step `k` (1-based) of `phase` starts: it sees the request
/// between steps, so it stops right after step `k` (every DDL is slowed down meanwhile).
fn stop_when_step_starts(
    engine: &mut Engine,
    phase: Phase,
    k: usize,
) -> tokio::task::JoinHandle<()> {
    let (sender, mut events) = mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    let control = engine.control();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::StepStarted {
                phase: started,
                index,
                ..
            } = event
            {
                if started == phase && index + 1 == k {
                    control.stop("the test aborts here");
                }
            }
        }
    })
}

/// Runs `zdm start` in-process and asks it to stop while expand step `k` (1-based) runs:
/// the engine sees the request between steps, so it stops right after step `k`. Every DDL
/// statement is slowed down so the request always arrives while step `k` runs.
async fn start_and_abort_after(pg: &LocalPg, database: &str, case: &Case, k: usize) {
    let pool: PgPool = demo_database(pg, database).await;
    slow_ddl(&pool, "0.05").await;
    let planned = plan(&migration(case.name, case.file), &catalog(&pool).await).expect("plans");
    let mut engine = Engine::connect_with(
        pg.primary().connect_options(database),
        EngineOptions::default(),
    )
    .await
    .expect("engine");
    let watcher = stop_when_step_starts(&mut engine, Phase::Expand, k);
    let outcome = engine.start(&planned, "checksum").await;
    assert!(
        outcome.is_err(),
        "{}: the run stops after expand step {k}",
        case.name
    );
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM zdm.steps WHERE migration = $1 AND phase = 'expand'",
    )
    .bind(case.name)
    .fetch_one(&pool)
    .await
    .expect("steps");
    assert_eq!(
        done, k as i64,
        "{}: stopped right after step {k}",
        case.name
    );
    engine.close().await.expect("close");
    watcher.abort();
    drop_slow_ddl(&pool).await;
    pool.close().await;
}

async fn drop_slow_ddl(pool: &PgPool) {
    sqlx::raw_sql("DROP EVENT TRIGGER test_slow_ddl; DROP FUNCTION public.test_slow_ddl()")
        .execute(pool)
        .await
        .expect("drop the event trigger");
}

#[tokio::test]
async fn the_old_version_writes_after_an_abort_at_every_expand_step() {
    let pg = common::primary();
    for case in CASES {
        let probe = demo_database(&pg, &database_name(case, "plan", 0)).await;
        let expand = plan(&migration(case.name, case.file), &catalog(&probe).await)
            .expect("plans")
            .phase(Phase::Expand)
            .count();
        probe.close().await;
        for k in 1..=expand {
            let database = database_name(case, "abort", k);
            start_and_abort_after(&pg, &database, case, k).await;
            old_version_writes(
                &pg,
                &database,
                case,
                k,
                &format!("abort after expand step {k}"),
            )
            .await;
            // And the stopped run rolls back cleanly (the same engine command as `zdm
            // rollback`).
            let mut engine = Engine::connect_with(
                pg.primary().connect_options(&database),
                EngineOptions::default(),
            )
            .await
            .expect("engine");
            engine.rollback(case.name).await.expect("rollback");
            engine.close().await.expect("close");
            old_version_writes(&pg, &database, case, k + 100, "rollback").await;
        }
    }
}

/// The same invariant for rollback: stopped after each of its steps in turn (an abort),
/// the old version still inserts and updates. (A constraint left after the trigger that
/// fills its column was dropped refused old-version inserts, seen by the real client.)
#[tokio::test]
async fn the_old_version_writes_after_an_abort_at_every_rollback_step() {
    let pg = common::primary();
    for case in CASES {
        let probe = demo_database(&pg, &database_name(case, "rplan", 0)).await;
        let steps = plan(&migration(case.name, case.file), &catalog(&probe).await)
            .expect("plans")
            .phase(Phase::Rollback)
            .count();
        probe.close().await;
        for k in 1..steps {
            let database = database_name(case, "rollback", k);
            let pool = demo_database(&pg, &database).await;
            let planned =
                plan(&migration(case.name, case.file), &catalog(&pool).await).expect("plans");
            let mut engine = Engine::connect_with(
                pg.primary().connect_options(&database),
                EngineOptions::default(),
            )
            .await
            .expect("engine");
            engine.start(&planned, "checksum").await.expect("start");
            slow_ddl(&pool, "0.05").await;
            let watcher = stop_when_step_starts(&mut engine, Phase::Rollback, k);
            assert!(
                engine.rollback(case.name).await.is_err(),
                "{}: the rollback stops after step {k}",
                case.name
            );
            watcher.abort();
            drop_slow_ddl(&pool).await;
            old_version_writes(&pg, &database, case, k, &format!("rollback step {k}")).await;
            engine.close().await.expect("close");
            pool.close().await;
        }
    }
}

/// Makes every DDL statement of zdm's sessions take `delay` (an event trigger), so that a
/// kill can land inside step k+1 once step k is recorded.
async fn slow_ddl(pool: &PgPool, delay: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION public.test_slow_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF current_setting('application_name') LIKE 'zdm%' THEN PERFORM pg_sleep({delay}); END IF;
         END $$;
         CREATE EVENT TRIGGER test_slow_ddl ON ddl_command_end EXECUTE FUNCTION public.test_slow_ddl();"
    ))
    .execute(pool)
    .await
    .expect("event trigger");
}

#[tokio::test]
async fn the_old_version_writes_after_kill_9_at_every_expand_step() {
    let pg = common::primary();
    for case in CASES {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!("{}.toml", case.name)), case.file).expect("file");
        let probe = demo_database(&pg, &database_name(case, "kplan", 0)).await;
        let expand = plan(&migration(case.name, case.file), &catalog(&probe).await)
            .expect("plans")
            .phase(Phase::Expand)
            .count();
        probe.close().await;
        for k in 1..expand {
            let database = database_name(case, "kill", k);
            let pool = demo_database(&pg, &database).await;
            slow_ddl(&pool, "0.15").await;
            let mut child = Command::new(common::zdm_binary())
                .args(["start", case.name, "--dir"])
                .arg(dir.path())
                .args(["--database-url", &pg.primary().url(&database)])
                .env_remove("DATABASE_URL")
                .env("ZDM_LOG_FILE", pg.root().join(format!("{database}.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("zdm start");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let done: Option<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM zdm.steps WHERE migration = $1 AND phase = 'expand'",
                )
                .bind(case.name)
                .fetch_one(&pool)
                .await
                .ok();
                // Each DDL statement is slowed down, so this is nearly always right after
                // step k; on a very busy machine a later step may have committed too, and
                // the old version must write there just the same (the abort test above
                // covers every step deterministically).
                if done.unwrap_or(0) >= k as i64 {
                    break;
                }
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!("{}: zdm start ended ({status}) before step {k}", case.name);
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: step {k} never done",
                    case.name
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            child.kill().expect("kill -9");
            let _ = child.wait();
            // The server rolls back the killed session's step once it notices.
            drop_slow_ddl(&pool).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            while sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'zdm%'",
            )
            .fetch_one(&pool)
            .await
            .expect("activity")
                > 0
            {
                assert!(Instant::now() < deadline, "the killed sessions end");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM zdm.steps WHERE migration = $1 AND phase = 'expand'",
            )
            .bind(case.name)
            .fetch_one(&pool)
            .await
            .expect("steps");
            assert!(done >= k as i64, "{}: killed after step {k}", case.name);
            old_version_writes(
                &pg,
                &database,
                case,
                k,
                &format!("kill -9 after expand step {done} (aimed at {k})"),
            )
            .await;
            pool.close().await;
        }
    }
}

/// A column a sync rule fills, with a default of its own: an add_column with `up` and a
/// default, and a change_type's shadow of a column with a default.
const DEFAULTED: &[(Case, &str)] = &[
    (
        Case {
            name: "0009_add_column_up_and_default",
            file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "grade", type = "bigint", default = "0" }
up = "total_cents % 5"
"#,
            old_writes: &[
                "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n}, 1, 1003)",
                "UPDATE orders SET total_cents = total_cents + 1 WHERE id = 1",
            ],
        },
        "SELECT count(*) FROM orders WHERE grade IS DISTINCT FROM total_cents % 5",
    ),
    (
        Case {
            name: "0010_change_type_of_a_defaulted_column",
            file: r#"
[[operations]]
op = "change_type"
table = "orders"
column = "currency"
type = "varchar(3)"
up = "upper(currency)"
down = "currency"
"#,
            old_writes: &[
                "INSERT INTO orders (id, customer_id, total_cents, currency) VALUES ({n}, 1, 100, 'usd')",
                "INSERT INTO orders (id, customer_id, total_cents) VALUES ({n} + 50000, 1, 100)",
            ],
        },
        "SELECT count(*) FROM orders WHERE _zdm_new_currency IS DISTINCT FROM upper(currency)::varchar(3)",
    ),
];

/// Rows the old version writes while a run is stopped between two expand steps end with
/// the value the sync rule gives them once the run goes on. (A default set with the new
/// column, before the trigger computing it existed, was kept by an insert in between, and
/// the backfill, which fills the column's NULLs, never saw that row: seen by the real
/// client under load.)
#[tokio::test]
async fn rows_written_between_expand_steps_get_the_synced_value_not_the_default() {
    let pg = common::primary();
    for (case, wrong) in DEFAULTED {
        let probe = demo_database(&pg, &database_name(case, "plan", 0)).await;
        let planned =
            plan(&migration(case.name, case.file), &catalog(&probe).await).expect("plans");
        let expand = planned.phase(Phase::Expand).count();
        probe.close().await;
        for k in 1..expand {
            let database = database_name(case, "default", k);
            start_and_abort_after(&pg, &database, case, k).await;
            old_version_writes(&pg, &database, case, k, &format!("a stop after step {k}")).await;
            let pool = PgPool::connect_with(pg.primary().connect_options(&database))
                .await
                .expect("pool");
            // The same plan goes on where the stop left it, as `zdm start` does.
            let mut engine = Engine::connect_with(
                pg.primary().connect_options(&database),
                EngineOptions::default(),
            )
            .await
            .expect("engine");
            engine
                .start(&planned, "checksum")
                .await
                .expect("the run goes on to its end");
            engine.close().await.expect("close");
            let found: i64 = sqlx::query_scalar(wrong)
                .fetch_one(&pool)
                .await
                .expect("check");
            assert_eq!(
                found, 0,
                "{}: rows written after expand step {k} of {expand} keep a value the sync rule did not give them ({wrong})",
                case.name
            );
            pool.close().await;
        }
    }
}
