//! The rehearsal's synthetic application: clients reading, updating and inserting rows of
//! the touched tables at a total rate, each statement's latency kept with when it ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::Connection;

use crate::db::DatabaseUrl;

use super::{percentile, Latency, Options, RehearseError, Target, Writes};

/// What a workload statement was.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Update,
    Insert,
}

/// One statement of the workload: when it began (since the workload started), how long it
/// took, what it was and whether it succeeded.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    ms: f64,
    kind: Kind,
    ok: bool,
}

/// A touched table the workload writes to: its name, key and range, the columns an insert
/// copies, and the next key an insert takes (shared by the clients).
struct Keyed {
    table: String,
    key: String,
    lo: i64,
    hi: i64,
    copy_columns: Option<String>,
    next: std::sync::atomic::AtomicI64,
}

impl Keyed {
    /// An insert of a copy of a random row, under a new key: the copy satisfies the row's
    /// constraints as the original does, and fires the migration's triggers as any insert.
    fn insert(&self, rng: &mut impl Rng) -> Option<String> {
        let columns = self.copy_columns.as_ref()?;
        let id = rng.gen_range(self.lo..=self.hi);
        let new = self.next.fetch_add(1, Ordering::Relaxed);
        let (table, key) = (&self.table, &self.key);
        Some(if columns.is_empty() {
            format!("INSERT INTO {table} ({key}) OVERRIDING SYSTEM VALUE VALUES ({new})")
        } else {
            format!(
                "INSERT INTO {table} ({key}, {columns}) OVERRIDING SYSTEM VALUE \
                 SELECT {new}, {columns} FROM {table} WHERE {key} = {id}"
            )
        })
    }
}

/// The synthetic application: clients reading rows (the target's top reads, else by key),
/// updating them by key (the update sets the key to itself, so the migration's triggers
/// fire as on any write) and inserting copies of them, at a total rate, each statement's
/// latency kept with when it ran.
pub(super) struct Workload {
    pub(super) started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<std::sync::Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    pub(super) async fn start(
        url: &DatabaseUrl,
        tables: &[Target],
        replays: Vec<crate::synth::replay::Replay>,
        options: &Options,
        rate: f64,
    ) -> Result<Workload, RehearseError> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keyed: Vec<Keyed> = tables
            .iter()
            .filter_map(|t| {
                t.key.as_ref().map(|(k, lo, hi)| Keyed {
                    table: t.name.clone(),
                    key: k.clone(),
                    lo: *lo,
                    hi: *hi,
                    copy_columns: t.copy_columns.clone(),
                    next: std::sync::atomic::AtomicI64::new(hi.saturating_add(1)),
                })
            })
            .collect();
        let mut tasks = Vec::new();
        if (keyed.is_empty() && replays.is_empty()) || options.clients == 0 || rate <= 0.0 {
            return Ok(Workload {
                started,
                stop,
                samples,
                tasks,
            });
        }
        let keyed = Arc::new(keyed);
        let total_calls: i64 = replays.iter().map(|r| r.calls.max(1)).sum();
        let replays = Arc::new(replays);
        let interval = Duration::from_secs_f64(options.clients as f64 / rate);
        for _ in 0..options.clients {
            let mut conn = url.connect_with(&url.connect_options()?).await?;
            let (stop, samples, keyed) = (stop.clone(), samples.clone(), keyed.clone());
            let replays = replays.clone();
            let write_share = options.write_share.clamp(0.0, 1.0);
            let insert_share = options.insert_share.clamp(0.0, 1.0);
            tasks.push(tokio::spawn(async move {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (kind, sql) = {
                        let mut rng = rand::thread_rng();
                        let write = !keyed.is_empty() && rng.gen_bool(write_share);
                        if write || replays.is_empty() {
                            let table = &keyed[rng.gen_range(0..keyed.len())];
                            let insert = if write && rng.gen_bool(insert_share) {
                                table.insert(&mut rng)
                            } else {
                                None
                            };
                            let id = rng.gen_range(table.lo..=table.hi);
                            let (t, key) = (&table.table, &table.key);
                            match insert {
                                Some(sql) => (Kind::Insert, sql),
                                None if write => (
                                    Kind::Update,
                                    format!("UPDATE {t} SET {key} = {key} WHERE {key} = {id}"),
                                ),
                                None => {
                                    (Kind::Read, format!("SELECT * FROM {t} WHERE {key} = {id}"))
                                }
                            }
                        } else {
                            // The target's reads, each as often as it is called there.
                            let mut pick = rng.gen_range(0..total_calls.max(1));
                            let replay = replays
                                .iter()
                                .find(|r| {
                                    pick -= r.calls.max(1);
                                    pick < 0
                                })
                                .unwrap_or(&replays[0]);
                            (Kind::Read, replay.statement(&mut rng))
                        }
                    };
                    let at = Instant::now();
                    // A statement that fails (a lock timeout, the migration's own DDL)
                    // is measured like any other: the application would have waited too.
                    // Not kept prepared: the values are in the text, each one new.
                    let ok = sqlx::query(&sql)
                        .persistent(false)
                        .execute(&mut conn)
                        .await
                        .is_ok();
                    let ms = at.elapsed().as_secs_f64() * 1000.0;
                    if let Ok(mut samples) = samples.lock() {
                        samples.push(Sample {
                            at: at.duration_since(started),
                            ms,
                            kind,
                            ok,
                        });
                    }
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    } else {
                        next = Instant::now();
                    }
                }
                let _ = conn.close().await;
            }));
        }
        Ok(Workload {
            started,
            stop,
            samples,
            tasks,
        })
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The statements that began in `from..to` (since the workload started): their
    /// latencies, failures and the rate achieved.
    pub(super) fn latency_between(&self, from: Duration, to: Duration) -> Latency {
        let (mut times, failed) = self
            .samples
            .lock()
            .map(|s| {
                let within: Vec<&Sample> = s.iter().filter(|x| x.at >= from && x.at < to).collect();
                (
                    within.iter().map(|x| x.ms).collect::<Vec<f64>>(),
                    within.iter().filter(|x| !x.ok).count(),
                )
            })
            .unwrap_or_default();
        times.sort_by(f64::total_cmp);
        let seconds = to.saturating_sub(from).as_secs_f64();
        Latency {
            statements: times.len(),
            per_s: if seconds > 0.0 {
                times.len() as f64 / seconds
            } else {
                0.0
            },
            failed,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
        }
    }

    /// The writes so far, by kind.
    pub(super) fn writes(&self) -> Writes {
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let count = |kind: Kind| samples.iter().filter(|s| s.kind == kind).count();
        Writes {
            updates: count(Kind::Update),
            inserts: count(Kind::Insert),
            failed: samples
                .iter()
                .filter(|s| s.kind != Kind::Read && !s.ok)
                .count(),
            not_inserted: Vec::new(),
        }
    }

    pub(super) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
