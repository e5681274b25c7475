//! The demo's application: a few connections reading, inserting and updating orders at a
//! modest, bounded rate, so that locks, latency and replication lag are real.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::schema::Scale;

/// The `application_name` the workload's sessions show in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "shop-app";

/// How hard the application works.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadOptions {
    /// Concurrent sessions; 0 disables the workload.
    pub connections: usize,
    /// Operations per second over all sessions.
    pub ops_per_second: f64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            connections: 4,
            ops_per_second: 40.0,
        }
    }
}

/// Counters shared by the workload's sessions.
#[derive(Debug, Default)]
pub struct WorkloadStats {
    pub operations: AtomicU64,
    pub errors: AtomicU64,
}

/// A running workload; [`Workload::stop`] ends it.
#[derive(Debug)]
pub struct Workload {
    stop: watch::Sender<bool>,
    sessions: Vec<JoinHandle<()>>,
    stats: Arc<WorkloadStats>,
}

impl Workload {
    /// Starts `options.connections` sessions against `target`.
    pub fn start(target: PgConnectOptions, scale: Scale, options: WorkloadOptions) -> Self {
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(WorkloadStats::default());
        let pause = if options.ops_per_second > 0.0 {
            Duration::from_secs_f64(options.connections as f64 / options.ops_per_second)
        } else {
            Duration::from_secs(1)
        };
        let target = target
            .application_name(APPLICATION_NAME)
            .log_statements(tracing::log::LevelFilter::Trace);
        let sessions = (0..options.connections)
            .map(|_| {
                let session = Session {
                    target: target.clone(),
                    scale,
                    pause,
                    stats: Arc::clone(&stats),
                    stopped: stopped.clone(),
                    rng: StdRng::from_entropy(),
                };
                tokio::spawn(session.run())
            })
            .collect();
        Workload {
            stop,
            sessions,
            stats,
        }
    }

    /// Operations done and failed so far.
    pub fn stats(&self) -> &WorkloadStats {
        &self.stats
    }

    /// Asks every session to finish its current operation and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for session in self.sessions {
            let _ = session.await;
        }
    }
}

struct Session {
    target: PgConnectOptions,
    scale: Scale,
    pause: Duration,
    stats: Arc<WorkloadStats>,
    stopped: watch::Receiver<bool>,
    rng: StdRng,
}

impl Session {
    async fn run(mut self) {
        let mut conn: Option<PgConnection> = None;
        while !*self.stopped.borrow() {
            let Some(session) = conn.as_mut() else {
                match PgConnection::connect_with(&self.target).await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, "demo workload cannot connect; retrying");
                        self.rest(Duration::from_secs(1)).await;
                    }
                }
                continue;
            };
            match self.operate(session).await {
                Ok(()) => {
                    self.stats.operations.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, "demo workload operation failed");
                    // A broken connection is replaced; a failed statement just moves on.
                    if matches!(
                        error,
                        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_)
                    ) {
                        conn = None;
                    }
                }
            }
            // Jitter keeps the sessions from marching in step.
            let pause = self.pause.mul_f64(self.rng.gen_range(0.5..1.5));
            self.rest(pause).await;
        }
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
    }

    /// Sleeps, waking early when the workload is stopped.
    async fn rest(&mut self, duration: Duration) {
        tokio::select! {
            _ = self.stopped.changed() => {}
            _ = tokio::time::sleep(duration) => {}
        }
    }

    /// One application request: mostly reads, some new orders, some shipments.
    async fn operate(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let roll: f64 = self.rng.gen();
        let order_id = self.rng.gen_range(1..=self.scale.orders);
        if roll < 0.5 {
            sqlx::query(
                "SELECT o.id, o.placed_at, o.total_cents, count(i.id) AS items
                 FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
                 WHERE o.id = $1 GROUP BY o.id",
            )
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
        } else if roll < 0.7 {
            let customer_id =
                1 + (self.rng.gen::<f64>().powi(3) * self.scale.customers as f64) as i64;
            sqlx::query(
                "SELECT id, placed_at, shipped_at, total_cents FROM orders
                 WHERE customer_id = $1 ORDER BY placed_at DESC LIMIT 10",
            )
            .bind(customer_id)
            .fetch_all(conn)
            .await?;
        } else if roll < 0.85 {
            self.place_order(conn).await?;
        } else {
            sqlx::query(
                "UPDATE orders SET shipped_at = now() WHERE id = $1 AND shipped_at IS NULL",
            )
            .bind(order_id)
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    async fn place_order(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let customer_id = self.rng.gen_range(1..=self.scale.customers);
        let lines: Vec<(i64, i32, i32)> = (0..self.rng.gen_range(1..=3))
            .map(|_| {
                (
                    self.rng.gen_range(1..=self.scale.products),
                    self.rng.gen_range(1..=4),
                    self.rng.gen_range(199..20_000),
                )
            })
            .collect();
        let total: i64 = lines.iter().map(|(_, q, p)| i64::from(q * p)).sum();
        let mut tx = conn.begin().await?;
        let order_id: i64 = sqlx::query_scalar(
            "INSERT INTO orders (customer_id, total_cents) VALUES ($1, $2) RETURNING id",
        )
        .bind(customer_id)
        .bind(total)
        .fetch_one(&mut *tx)
        .await?;
        for (product_id, quantity, price) in lines {
            sqlx::query(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(order_id)
            .bind(product_id)
            .bind(quantity)
            .bind(price)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
