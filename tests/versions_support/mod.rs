//! Test-only scenarios of migrations run through the engine's commands (`app::start`,
//! `app::rollback`, `app::complete`: what `zdm start`, `zdm rollback` and `zdm complete`
//! run) on one shared local PostgreSQL per test binary, a fresh database per test, with
//! clients on the old and the new version schema. Used by tests/ops_xtable.rs and
//! tests/reshape_suite.rs.
#![allow(dead_code)]

use std::sync::OnceLock;

use sqlx::PgPool;
use zdm::app;
use zdm::config::{Config, Overrides};
use zdm::localpg::LocalPg;

#[path = "../plan_support/mod.rs"]
pub mod plan_support;

pub use plan_support::common;
#[allow(unused_imports)] // each test binary uses part of the harness
pub use plan_support::{fetch_one as one, fetch_strings as all};

/// The binary's one server. Never dropped (a static): the janitor of the next
/// `LocalPg::start` on the machine stops it once this process is gone.
fn server() -> &'static LocalPg {
    static SERVER: OnceLock<LocalPg> = OnceLock::new();
    SERVER.get_or_init(common::primary)
}

/// One test's database and migrations directory.
pub struct Scenario {
    pub db: String,
    pub pool: PgPool,
    dir: tempfile::TempDir,
    config: Config,
}

impl Scenario {
    /// A fresh database `db` on the shared server, with `setup` run in it.
    pub async fn new(db: &str, setup: &str) -> Scenario {
        let pg = server();
        let pool = common::database(pg, db).await;
        if !setup.trim().is_empty() {
            sqlx::raw_sql(setup).execute(&pool).await.expect("setup");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // A dot file: the migrations directory skips it. The throttle is off: these runs
        // are about the mechanics; a busy test machine must not hold their backfills.
        let quiet = dir.path().join(".zdm-quiet.toml");
        std::fs::write(
            &quiet,
            "[throttle]\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n\
             max_active_sessions_factor = \"none\"\n",
        )
        .expect("write the test config");
        let config = Config::load(&Overrides {
            config_file: Some(quiet),
            database_url: Some(pg.primary().url(db)),
            migrations_dir: Some(dir.path().to_path_buf()),
        })
        .expect("config");
        Scenario {
            db: db.to_string(),
            pool,
            dir,
            config,
        }
    }

    /// Writes migration file `<name>.toml`.
    pub fn write(&self, name: &str, file: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.toml")), file).expect("write");
    }

    /// `zdm start NAME`: expand and backfill, the new version published.
    pub async fn start(&self, name: &str) -> Result<String, String> {
        app::start::run(&self.config, Some(name))
            .await
            .map_err(|e| e.to_string())
    }

    /// `zdm rollback NAME`, which may refuse (nothing of the migration ran).
    pub async fn try_rollback(&self, name: &str) -> Result<String, String> {
        app::rollback::run(&self.config, name)
            .await
            .map_err(|e| e.to_string())
    }

    /// `zdm rollback NAME`.
    pub async fn rollback(&self, name: &str) {
        let done = app::rollback::run(&self.config, name)
            .await
            .unwrap_or_else(|e| panic!("rollback {name}: {e}"));
        assert!(done.contains("rolled back"), "{done}");
    }

    /// `zdm complete NAME` (gates overridden: contract's mechanics are tested here, the
    /// gates in tests/gates.rs).
    pub async fn complete(&self, name: &str) {
        let options = app::complete::CompleteOptions {
            confirmation: name.to_string(),
            overrides: zdm::gates::registry::names()
                .into_iter()
                .map(String::from)
                .collect(),
            window: Some(std::time::Duration::ZERO),
            ..Default::default()
        };
        let done = app::complete::run(&self.config, name, &options)
            .await
            .unwrap_or_else(|e| panic!("complete {name}: {e}"));
        assert!(done.contains("complete"), "{done}");
    }

    /// start then complete: a migration everything after it builds on.
    pub async fn migrate(&self, name: &str, file: &str) {
        self.write(name, file);
        let started = self.start(name).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(started.contains("ready to contract"), "{started}");
        self.complete(name).await;
    }

    /// A client whose sessions use migration `name`'s version schema (`None`: the
    /// physical tables, `public`).
    pub async fn client(&self, name: Option<&str>) -> PgPool {
        let path = match name {
            Some(name) => format!("\"public_{name}\""),
            None => "public".to_string(),
        };
        plan_support::client(server(), &self.db, &path).await
    }

    /// `pg_dump --schema-only`, without zdm's own state schema.
    pub fn dump(&self) -> String {
        plan_support::schema_dump_without_zdm(server(), &self.db)
    }

    /// start → rollback leaves `pg_dump --schema-only` exactly as before; then start again.
    pub async fn start_after_exact_rollback(&self, name: &str, file: &str) {
        self.write(name, file);
        let before = self.dump();
        let started = self.start(name).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(started.contains("ready to contract"), "{started}");
        self.rollback(name).await;
        assert_eq!(
            before,
            self.dump(),
            "{name}: rollback restores the schema dump"
        );
        let started = self.start(name).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(started.contains("ready to contract"), "{started}");
    }

    /// What is left of zdm's machinery (triggers, columns of `public` tables and views,
    /// constraints, functions named `_zdm…`), listed: empty after a complete or rollback.
    /// (An index keeps the name its column had when it was built in its own catalog row,
    /// `_zdm_new_<column>` for one rebuilt over a shadow column; PostgreSQL never shows it:
    /// the index's definition names the column as it is now.)
    pub async fn leftovers(&self) -> String {
        one(
            &self.pool,
            "SELECT coalesce(string_agg(found, ', ' ORDER BY found), '') FROM (
                 SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE '\\_zdm%'
                 UNION ALL
                 SELECT 'column ' || c.relname || '.' || a.attname FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND a.attname LIKE '\\_zdm%' AND NOT a.attisdropped
                    AND c.relkind IN ('r', 'p', 'v')
                 UNION ALL
                 SELECT 'constraint ' || conname FROM pg_constraint WHERE conname LIKE '\\_zdm%'
                 UNION ALL
                 SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE '\\_zdm%'
             ) AS left_over (found)",
        )
        .await
    }
}

/// Runs statements; each must succeed.
pub async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// Whether a statement fails.
pub async fn fails(pool: &PgPool, sql: &str) -> bool {
    sqlx::raw_sql(sql).execute(pool).await.is_err()
}

/// Runs two lists of statements at the same time, interleaved, one per version; every
/// statement must succeed.
pub async fn write_concurrently(old: &PgPool, old_sql: &[&str], new: &PgPool, new_sql: &[&str]) {
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    plan_support::write_concurrently(old, owned(old_sql), new, owned(new_sql)).await;
}
