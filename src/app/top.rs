//! `zdm top`: the live metrics without a migration, one line (or one JSON object) per sample.

use std::io::Write;

use crate::monitor::metrics::{Locks, Metrics, Replication, Sessions, Throughput};
use crate::monitor::reading::Reading;
use crate::monitor::{Monitor, MonitorOptions};

/// Why `zdm top` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write to standard output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot write a sample as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// What `zdm top` shows and for how long.
#[derive(Debug, Clone)]
pub struct TopOptions {
    pub monitor: MonitorOptions,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Stop after this many samples (None: until a signal).
    pub count: Option<u64>,
}

/// Prints every sample until `count` samples were shown or a signal arrives.
pub async fn run(options: TopOptions) -> Result<(), Error> {
    let monitor = Monitor::start(options.monitor.clone());
    let mut samples = monitor.subscribe();
    let shutdown = crate::signals::shutdown_requested();
    tokio::pin!(shutdown);
    let mut shown = 0_u64;
    let result = loop {
        if options.count.is_some_and(|count| shown >= count) {
            break Ok(());
        }
        tokio::select! {
            changed = samples.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
            }
            _ = &mut shutdown => break Ok(()),
        }
        let metrics = samples.borrow_and_update().clone();
        let text = if options.json {
            match serde_json::to_string(&*metrics) {
                Ok(text) => text,
                Err(error) => break Err(Error::Json(error)),
            }
        } else {
            line(&metrics)
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Ok(()) => {}
            // `zdm top | head` closes the pipe: that is an ordinary way to stop.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => break Ok(()),
            Err(error) => break Err(Error::Output(error)),
        }
        shown += 1;
    };
    monitor.stop().await;
    result
}

/// One sample as one line of text.
pub fn line(m: &Metrics) -> String {
    let mut parts = vec![m.taken_at.format("%H:%M:%S").to_string()];
    if !m.sampler.connected {
        parts.push(format!(
            "DATABASE NOT READ: {}",
            m.sampler.problem.as_deref().unwrap_or("not connected")
        ));
    } else {
        parts.push(part(&m.throughput, "tx", throughput));
        parts.push(part(&m.sessions, "sessions", sessions));
        parts.push(part(&m.locks, "locks", locks));
        parts.push(part(&m.replication, "replication", replication));
        parts.push(part(&m.canary, "canary", |c| {
            format!("canary {:.1} ms", c.latency_ms)
        }));
        if let Some(statement) = m.statements.current().and_then(|s| s.first()) {
            parts.push(format!(
                "top stmt {:.1} ms x{}",
                statement.mean_ms, statement.calls
            ));
        }
        if let Some(progress) = m.progress.current() {
            for index in &progress.create_index {
                parts.push(format!(
                    "index {} {} {}%",
                    index.index.as_deref().unwrap_or("?"),
                    index.phase,
                    percent(index.blocks_done, index.blocks_total)
                ));
            }
            for vacuum in &progress.vacuum {
                let table = vacuum
                    .table
                    .as_ref()
                    .map_or("?".to_string(), |t| t.to_string());
                parts.push(format!(
                    "vacuum {table} {} {}%",
                    vacuum.phase,
                    percent(vacuum.heap_blocks_scanned, vacuum.heap_blocks_total)
                ));
            }
        }
        if m.tables.value.as_ref().is_some_and(|t| !t.is_empty()) || m.tables.problem.is_some() {
            parts.push(part(&m.tables, "tables", |tables| {
                tables
                    .iter()
                    .map(|table| {
                        format!(
                            "{} dead {}",
                            table.table,
                            crate::format::thousands(table.dead_tuples.max(0) as u64)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            }));
        }
    }
    parts.push(match (m.host.current(), &m.host.problem) {
        (Some(host), _) => format!(
            "cpu {:.0}% mem {:.0}%",
            host.cpu_percent,
            host.memory_percent()
        ),
        (None, Some(problem)) => problem.clone(),
        (None, None) => "host ?".to_string(),
    });
    let mut text = parts.join(" | ");
    for alert in &m.alerts {
        let severity = match alert.severity {
            crate::monitor::Severity::Warning => "WARN",
            crate::monitor::Severity::Critical => "CRIT",
        };
        text.push_str(&format!(" | {severity}: {}", alert.message));
    }
    text
}

/// A reading shown by `show`, or `name ?` with the reason it is not current.
fn part<T>(reading: &Reading<T>, name: &str, show: impl Fn(&T) -> String) -> String {
    match (reading.current(), &reading.problem) {
        (Some(value), _) => show(value),
        (None, Some(problem)) => format!("{name} ? ({problem})"),
        (None, None) => format!("{name} ?"),
    }
}

fn throughput(t: &Throughput) -> String {
    format!(
        "commit {:.1}/s rollback {:.1}/s ins {:.0}/s upd {:.0}/s del {:.0}/s",
        t.commits_per_second,
        t.rollbacks_per_second,
        t.inserted_per_second,
        t.updated_per_second,
        t.deleted_per_second
    )
}

fn sessions(s: &Sessions) -> String {
    let mut text = format!(
        "sessions {} active {} idle {} idle-in-tx {}",
        s.total, s.active, s.idle, s.idle_in_transaction
    );
    if let Some(oldest) = s.oldest_idle_in_transaction_seconds {
        text.push_str(&format!(" (oldest {oldest:.0}s)"));
    }
    text.push_str(&format!(" waiting {}", s.waiting));
    if !s.long_transactions.is_empty() {
        text.push_str(&format!(" long-tx {}", s.long_transactions.len()));
    }
    text
}

fn locks(l: &Locks) -> String {
    let Some(first) = l.waits.first() else {
        return "locks: no waits".to_string();
    };
    let zdm = |is_zdm: bool| if is_zdm { " [zdm]" } else { "" };
    format!(
        "locks: {} waiting, longest {:.1}s: pid {}{} {} on {} blocked by pid {}{} {}",
        l.waiters,
        l.longest_wait_seconds,
        first.waiter.pid,
        zdm(first.waiter.is_zdm),
        first.waiter_mode,
        first
            .relation
            .as_ref()
            .map_or_else(|| first.lock_type.clone(), |r| r.to_string()),
        first.blocker.pid,
        zdm(first.blocker.is_zdm),
        first.blocker_mode.as_deref().unwrap_or("?")
    )
}

fn replication(r: &Replication) -> String {
    let mut text = if r.replicas.is_empty() {
        "replicas: none".to_string()
    } else {
        let worst = r
            .replicas
            .iter()
            .max_by_key(|replica| replica.replay_lag_bytes.unwrap_or(0));
        let (bytes_lag, seconds) = worst.map_or((0, None), |w| {
            (w.replay_lag_bytes.unwrap_or(0), w.replay_lag_seconds)
        });
        format!(
            "replay lag {} {} ({} replica{})",
            bytes(bytes_lag),
            seconds.map_or("-".to_string(), |s| format!("{s:.1}s")),
            r.replicas.len(),
            if r.replicas.len() == 1 { "" } else { "s" }
        )
    };
    if let Some(retained) = r.slots.iter().filter_map(|s| s.retained_bytes).max() {
        text.push_str(&format!(" slots retain {}", bytes(retained)));
    }
    text
}

/// Bytes in binary units: `0 B`, `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n.abs() < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for next in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

fn percent(done: i64, total: i64) -> i64 {
    if total <= 0 {
        return 0;
    }
    (done.saturating_mul(100) / total).clamp(0, 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::{LockWait, RelationName, SessionRef};
    use chrono::{TimeZone, Utc};

    fn session(pid: i32, application_name: &str) -> SessionRef {
        SessionRef {
            pid,
            application_name: application_name.to_string(),
            user: None,
            state: None,
            query: String::new(),
            is_zdm: crate::monitor::is_zdm_application(application_name),
        }
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
    }

    #[test]
    fn a_line_shows_values_and_says_why_others_are_missing() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 3, 4, 5)
            .single()
            .expect("valid");
        let mut m = Metrics {
            taken_at: at,
            ..Default::default()
        };
        m.sampler.connected = true;
        m.locks = Reading::fresh(
            Locks {
                waits: vec![LockWait {
                    waiter: session(11, "app"),
                    blocker: session(22, "zdm-engine"),
                    lock_type: "relation".to_string(),
                    waiter_mode: "RowExclusiveLock".to_string(),
                    blocker_mode: Some("AccessExclusiveLock".to_string()),
                    blocker_granted: true,
                    relation: Some(RelationName {
                        schema: "public".to_string(),
                        name: "orders".to_string(),
                    }),
                    wait_seconds: 2.5,
                }],
                waiters: 1,
                longest_wait_seconds: 2.5,
            },
            at,
        );
        m.throughput = Reading::unavailable("rates need two samples");
        m.host = Reading::unavailable(crate::monitor::host::REMOTE_HOST);
        let text = line(&m);
        assert!(
            text.starts_with("03:04:05 | tx ? (rates need two samples)"),
            "{text}"
        );
        assert!(
            text.contains(
                "locks: 1 waiting, longest 2.5s: pid 11 RowExclusiveLock on public.orders \
                 blocked by pid 22 [zdm] AccessExclusiveLock"
            ),
            "{text}"
        );
        assert!(text.ends_with("remote host: not measured"), "{text}");
        m.sampler.connected = false;
        m.sampler.problem = Some("cannot connect: connection refused".to_string());
        assert!(line(&m).contains("DATABASE NOT READ: cannot connect: connection refused"));
    }
}
