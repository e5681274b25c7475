//! Surviving a lost connection: which errors mean "the connection or the server went
//! away" (rather than "this statement failed"), and the wait for the database to answer
//! again, with backoff and jitter, within a budget (`reconnect_budget_s`). While it waits
//! the run reports "database unreachable for 42 s (reconnecting; gives up after 30 min)"
//! to every front-end; its log gets that line on the first try and then at a slowing
//! interval, so a server gone for good leaves a bounded number of lines.

use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::event::{Event, Events};
use super::Error;
use crate::format::duration as duration_words;

/// The first wait between two tries, and the longest.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// SQLSTATE classes and codes that say the session is gone, not that a statement failed:
/// 08 (connection exception), 57P01 admin_shutdown (pg_terminate_backend, a fast stop),
/// 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up, shutting down), 25006
/// read_only_sql_transaction (this server became a standby: a failover happened).
fn is_session_gone_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// Whether `error` means the connection (or its server) is gone.
pub fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().as_deref().is_some_and(is_session_gone_code),
        _ => false,
    }
}

/// "database unreachable for 42.0 s (reconnecting; gives up after 30m 00s): why": the one
/// wording of [`Event::Unreachable`] in logs and front-ends.
pub use crate::protocol::unreachable_words as describe;

/// One wait for the database, started when the loss was noticed.
#[derive(Debug)]
pub struct Outage {
    since: Instant,
    budget: Duration,
    tries: u32,
    wait: Duration,
}

impl Outage {
    pub fn new(budget: Duration) -> Self {
        Outage {
            since: Instant::now(),
            budget,
            tries: 0,
            wait: FIRST_WAIT,
        }
    }

    fn describe(&self, why: &str) -> String {
        describe(self.since.elapsed(), self.budget, why)
    }

    /// Reports the try that just failed, then sleeps before the next one; the budget
    /// spent ends the wait with [`Error::Unreachable`].
    pub async fn failed(&mut self, why: &str, events: &Events) -> Result<(), Error> {
        self.tries += 1;
        let down_for = self.since.elapsed();
        if down_for >= self.budget {
            tracing::error!(
                tries = self.tries,
                "database unreachable for {}: giving up",
                duration_words(down_for)
            );
            return Err(Error::Unreachable {
                down_for: duration_words(down_for),
                budget: duration_words(self.budget),
                why: why.to_string(),
            });
        }
        let line = self.describe(why);
        // On the 1st, 2nd, 4th, 8th… try: a slowing interval, a bounded number of lines.
        if self.tries.is_power_of_two() {
            tracing::warn!(tries = self.tries, "{line}");
        }
        events.emit(Event::Unreachable {
            down_for,
            budget: self.budget,
            why: why.to_string(),
        });
        // Jitter in the upper half, so that many clients do not come back in step.
        let jittered = self.wait.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        let left = self.budget.saturating_sub(down_for);
        tokio::time::sleep(jittered.min(left).max(Duration::from_millis(10))).await;
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
        Ok(())
    }

    /// How long the database has been away.
    pub fn down_for(&self) -> Duration {
        self.since.elapsed()
    }
}

/// A new connection on `options` to a primary (a server in recovery is a standby: after
/// a failover the run must write to the new primary, never wait on a read-only one).
pub async fn connect_primary(options: &PgConnectOptions) -> Result<PgConnection, String> {
    let mut conn =
        crate::db::connect_within(options, Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT))
            .await
            .map_err(|error| error.to_string())?;
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .map_err(|error| error.to_string())?;
    if standby {
        let _ = conn.close().await;
        return Err("the server answering is a standby (in recovery), not a primary".to_string());
    }
    Ok(conn)
}
