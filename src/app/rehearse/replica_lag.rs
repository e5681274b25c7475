//! The scratch server's streaming replica's lag, sampled while a rehearsal runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::DatabaseUrl;

use super::{percentile, RehearseError, ReplicaLag};

/// How often the replica's lag is sampled.
const LAG_EVERY: Duration = Duration::from_millis(200);

/// The streaming replica's lag, sampled on the scratch primary's `pg_stat_replication`:
/// the WAL bytes sent or not, but not replayed yet, and `replay_lag`.
pub(super) struct LagSampler {
    samples: Arc<std::sync::Mutex<Vec<(Duration, u64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    pub(super) async fn start(
        url: &DatabaseUrl,
        since: Instant,
    ) -> Result<LagSampler, RehearseError> {
        let mut conn = url.connect_with(&url.connect_options()?).await?;
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let lag: Result<Option<(i64, f64)>, _> = sqlx::query_as(
                    "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::int8,                      coalesce(extract(epoch FROM replay_lag) * 1000, 0)::float8                      FROM pg_stat_replication ORDER BY replay_lsn NULLS FIRST LIMIT 1",
                )
                .fetch_optional(&mut conn)
                .await;
                match lag {
                    Ok(Some((bytes, ms))) => {
                        if let Ok(mut samples) = kept.lock() {
                            samples.push((since.elapsed(), bytes.max(0) as u64, ms));
                        }
                    }
                    Ok(None) => {}
                    // The server went away: the rehearsal is over.
                    Err(_) => break,
                }
                tokio::time::sleep(LAG_EVERY).await;
            }
        });
        Ok(LagSampler { samples, task })
    }

    /// The lag over `from..to`, its worst and its p95.
    pub(super) fn over(&self, phase: &str, from: Duration, to: Duration) -> ReplicaLag {
        let within: Vec<(u64, f64)> = self
            .samples
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(at, ..)| *at >= from && *at < to)
                    .map(|(_, b, ms)| (*b, *ms))
                    .collect()
            })
            .unwrap_or_default();
        let mut bytes: Vec<f64> = within.iter().map(|(b, _)| *b as f64).collect();
        let mut ms: Vec<f64> = within.iter().map(|(_, m)| *m).collect();
        bytes.sort_by(f64::total_cmp);
        ms.sort_by(f64::total_cmp);
        ReplicaLag {
            phase: phase.to_string(),
            samples: within.len(),
            max_bytes: bytes.last().copied().unwrap_or(0.0) as u64,
            p95_bytes: percentile(&bytes, 0.95) as u64,
            max_ms: ms.last().copied().unwrap_or(0.0),
            p95_ms: percentile(&ms, 0.95),
        }
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
