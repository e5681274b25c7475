//! `zdm demo`: a throwaway primary and streaming replica holding a shop database under a
//! live application workload, torn down when it ends.

pub mod schema;
pub mod workload;

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::Executor;

use crate::db::quote_ident;
use crate::localpg::{self, LocalPg};
pub use schema::Scale;
pub use workload::{Workload, WorkloadOptions};

/// A line on stdout that is never a panic: a closed stdout (`zdm demo --no-console | head
/// -1`) must not take the servers down with it; the demo goes on until Ctrl-C.
macro_rules! say {
    ($($words:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($words)*);
    }};
}

/// The database the demo creates on its primary.
pub const DATABASE: &str = "shop";

/// What can stop the demo from coming up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    LocalPg(#[from] localpg::Error),
    #[error("loading the demo data failed: {0}")]
    Load(#[source] sqlx::Error),
    #[error("the local PostgreSQL task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How big and how busy the demo is.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data size relative to the default (200k customers, 1M orders, 2M order items).
    pub scale: f64,
    /// Start a streaming replica beside the primary.
    pub replica: bool,
    pub workload: WorkloadOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scale: 1.0,
            replica: true,
            workload: WorkloadOptions::default(),
        }
    }
}

/// A running demo: servers, data and workload.
#[derive(Debug)]
pub struct Demo {
    pg: LocalPg,
    scale: Scale,
    workload: Workload,
}

impl Demo {
    /// Starts the servers, loads the data and starts the workload, reporting each stage.
    pub async fn start(
        options: &DemoOptions,
        mut progress: impl FnMut(String),
    ) -> Result<Self, Error> {
        let started = Instant::now();
        let pg_options = localpg::Options {
            replica: options.replica,
            ..Default::default()
        };
        let pg = tokio::task::spawn_blocking(move || LocalPg::start(&pg_options)).await??;
        progress(format!(
            "PostgreSQL {} primary{} started as user {} ({:.1} s)",
            pg.binaries().major_version(),
            if options.replica { " and replica" } else { "" },
            pg.service_user().name(),
            started.elapsed().as_secs_f64()
        ));

        let mut admin = pg.primary().connect("postgres").await?;
        admin
            .execute(format!("CREATE DATABASE {}", quote_ident(DATABASE)).as_str())
            .await
            .map_err(Error::Load)?;
        // One connection per table filled at once, and one to watch them fill.
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(pg.primary().connect_options(DATABASE))
            .await
            .map_err(Error::Load)?;
        pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .map_err(Error::Load)?;
        let scale = Scale::from_factor(options.scale);
        schema::load(&pool, scale, &mut progress)
            .await
            .map_err(Error::Load)?;
        pool.close().await;

        pg.wait_for_replica(Duration::from_secs(30)).await?;
        let workload = Workload::start(
            pg.primary().connect_options(DATABASE),
            scale,
            options.workload,
        );
        Ok(Demo {
            pg,
            scale,
            workload,
        })
    }

    /// The local servers.
    pub fn pg(&self) -> &LocalPg {
        &self.pg
    }

    /// The size of the loaded data.
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// The application workload's counters.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The URL of the shop database on the primary.
    pub fn database_url(&self) -> String {
        self.pg.primary().url(DATABASE)
    }

    /// Stops the workload, then the servers, and removes their files.
    pub async fn stop(self) -> Result<(), Error> {
        self.workload.stop().await;
        let pg = self.pg;
        tokio::task::spawn_blocking(move || pg.stop()).await??;
        Ok(())
    }
}

/// The headless demo: start, print how to connect, serve until a signal, tear down.
pub async fn run(options: DemoOptions) -> Result<(), Error> {
    let shutdown = crate::signals::shutdown_requested();
    tokio::pin!(shutdown);
    say!("Starting the zdm demo (scale {}).", options.scale);
    let demo = tokio::select! {
        demo = Demo::start(&options, |line| say!("  {line}")) => demo?,
        signal = &mut shutdown => {
            say!("{signal}: stopped while starting; servers stopped and files removed.");
            return Ok(());
        }
    };
    print_summary(&demo, &options);
    let signal = shutdown.await;
    say!("{signal}: stopping the workload and the servers…");
    let stats = demo.workload().stats();
    let (ops, errors) = (
        stats.operations.load(std::sync::atomic::Ordering::Relaxed),
        stats.errors.load(std::sync::atomic::Ordering::Relaxed),
    );
    let root = demo.pg().root().to_path_buf();
    demo.stop().await?;
    say!(
        "Stopped. The workload ran {ops} operations ({errors} failed); {} was removed.",
        root.display()
    );
    Ok(())
}

fn print_summary(demo: &Demo, options: &DemoOptions) {
    let pg = demo.pg();
    let pid = |server: &localpg::Server| server.pid().map_or("?".to_string(), |p| p.to_string());
    say!();
    say!("zdm demo is running.");
    say!(
        "  primary   {}  (pid {})",
        pg.primary().url(DATABASE),
        pid(pg.primary())
    );
    if let Some(replica) = pg.replica() {
        say!(
            "  replica   {}  (pid {}, streaming)",
            replica.url(DATABASE),
            pid(replica)
        );
    }
    say!("  files     {}  (removed on exit)", pg.root().display());
    let workload = options.workload;
    if workload.connections > 0 {
        say!(
            "  workload  {} sessions, about {} operations/s (application_name {})",
            workload.connections,
            workload.ops_per_second,
            workload::APPLICATION_NAME
        );
    } else {
        say!("  workload  off");
    }
    say!();
    say!("From another terminal:");
    say!("  export DATABASE_URL={}", demo.database_url());
    say!("  psql \"$DATABASE_URL\"");
    say!();
    say!("Without the console (--no-console), the demo serves the database until Ctrl-C,");
    say!("then stops the servers and removes their files.");
}
