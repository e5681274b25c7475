//! The pure throttle decision: Metrics-derived inputs ([`Observation`]) in, run /
//! throttle / critical with reasons ([`Verdict`]) out, with hysteresis per input and the
//! baselines it learns. No I/O: the flag file, the throttle query and the monitor are
//! read by [`Throttle`](super::Throttle), so this is tested on synthetic samples.

use std::path::PathBuf;
use std::time::Duration;

use crate::schedule::Window;
use crate::settings::SettingKey;

/// Every throttle limit; each input can be switched off with `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSettings {
    /// Throttle while any replica's replay lag is above this.
    pub max_replica_lag: Option<Duration>,
    /// Throttle while more than this many other sessions wait for a lock on the target table.
    pub max_lock_waiters: Option<u64>,
    /// Throttle while active sessions exceed `start level × factor` (and start level + 5).
    pub max_active_sessions_factor: Option<f64>,
    /// Throttle while host CPU is above this percentage (only when the server is local).
    pub max_host_cpu_percent: Option<f64>,
    /// Throttle while the canary's latency exceeds `baseline × slowdown`.
    pub max_canary_slowdown: Option<f64>,
    /// A query returning one number; above 0 means throttle.
    pub query: Option<String>,
    /// While this file exists, the backfill is throttled.
    pub flag_file: Option<PathBuf>,
    /// An input above `critical_factor × its limit` pauses the backfill and raises an
    /// alert instead of throttling (None: off).
    pub critical_factor: Option<f64>,
    /// Consecutive samples below the release level before an input lets go.
    pub release_samples: u32,
    /// A limit lets go below `release_ratio × limit`.
    pub release_ratio: f64,
    /// A Metrics snapshot older than this is stale: hold.
    pub stale_after: Duration,
    /// Low-traffic windows: outside every one, hold (empty: any time).
    pub windows: Vec<Window>,
    /// The IANA time zone of the windows; None: the system's.
    pub tz: Option<String>,
    /// Whether the windows apply (`window=off`: an operator runs outside them).
    pub window: bool,
}

/// The declared defaults (`crate::settings`).
impl Default for ThrottleSettings {
    fn default() -> Self {
        crate::engine::BackfillSettings::default().throttle
    }
}

/// The inputs, in the order they are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    ReplicaLag,
    LockWaiters,
    ActiveSessions,
    HostCpu,
    Canary,
    Query,
    FlagFile,
}

const INPUTS: [Input; 7] = [
    Input::ReplicaLag,
    Input::LockWaiters,
    Input::ActiveSessions,
    Input::HostCpu,
    Input::Canary,
    Input::Query,
    Input::FlagFile,
];

impl Input {
    fn index(self) -> usize {
        self as usize
    }

    /// How the input is named in reasons and settings.
    pub fn name(self) -> &'static str {
        match self {
            Input::ReplicaLag => "replica lag",
            Input::LockWaiters => "lock waiters",
            Input::ActiveSessions => "active sessions",
            Input::HostCpu => "host CPU",
            Input::Canary => "canary latency",
            Input::Query => "throttle query",
            Input::FlagFile => "flag file",
        }
    }

    /// The setting that switches it off, for "holding" reasons.
    fn setting(self) -> SettingKey {
        match self {
            Input::ReplicaLag => SettingKey::MaxReplicaLag,
            Input::LockWaiters => SettingKey::MaxLockWaiters,
            Input::ActiveSessions => SettingKey::MaxActiveSessionsFactor,
            Input::HostCpu => SettingKey::MaxHostCpuPercent,
            Input::Canary => SettingKey::MaxCanarySlowdown,
            Input::Query => SettingKey::ThrottleQuery,
            Input::FlagFile => SettingKey::FlagFile,
        }
    }
}

/// One input's reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The input is switched off or does not apply (e.g. host CPU of a remote server).
    NotUsed,
    /// A current value.
    Value(f64),
    /// No current value, and why: the throttle holds.
    Unknown(String),
}

/// The inputs of one evaluation, in raw units (seconds, sessions, percent, ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub replica_lag_seconds: Observed,
    pub lock_waiters: Observed,
    pub active_sessions: Observed,
    pub host_cpu_percent: Observed,
    pub canary_ms: Observed,
    pub query: Observed,
    /// Whether the flag file exists (None: no flag file configured).
    pub flag_file: Option<bool>,
}

/// What the throttle says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on.
    Run,
    /// Wait; the reason names every input holding the backfill back.
    Throttle { reason: String },
    /// An input passed its critical level: pause and alert.
    Critical { reason: String },
}

impl Verdict {
    /// This verdict with a hold that comes first (outside the low-traffic window): a run
    /// is held, a throttle names both, a critical level stays critical.
    pub fn held_by(self, hold: Option<String>) -> Verdict {
        let Some(hold) = hold else {
            return self;
        };
        match self {
            Verdict::Run => Verdict::Throttle { reason: hold },
            Verdict::Throttle { reason } => Verdict::Throttle {
                reason: format!("{hold}; {reason}"),
            },
            critical @ Verdict::Critical { .. } => critical,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Run => None,
            Verdict::Throttle { reason } | Verdict::Critical { reason } => Some(reason),
        }
    }
}

/// The pure throttle decision, with hysteresis per input and the baselines it learns
/// (active sessions and canary latency at the start).
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    settings: ThrottleSettings,
    engaged: [bool; 7],
    /// Consecutive samples below the release level, per input.
    calm: [u32; 7],
    sessions_at_start: Option<f64>,
    canary_baseline: Option<f64>,
    canary_samples: Vec<f64>,
}

/// Canary samples averaged (median) into its baseline.
const CANARY_BASELINE_SAMPLES: usize = 3;
/// The canary never throttles below this latency, whatever its baseline.
const CANARY_FLOOR_MS: f64 = 5.0;
/// Active sessions never throttle below start level + this.
const SESSIONS_HEADROOM: f64 = 5.0;

impl ThrottlePolicy {
    pub fn new(settings: ThrottleSettings) -> Self {
        ThrottlePolicy {
            settings,
            engaged: [false; 7],
            calm: [0; 7],
            sessions_at_start: None,
            canary_baseline: None,
            canary_samples: Vec::new(),
        }
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: ThrottleSettings) {
        self.settings = settings;
    }

    /// The limit of `input` in its raw unit (None: switched off or not learnt yet).
    fn limit(&self, input: Input) -> Option<f64> {
        let s = &self.settings;
        match input {
            Input::ReplicaLag => s.max_replica_lag.map(|d| d.as_secs_f64()),
            Input::LockWaiters => s.max_lock_waiters.map(|n| n as f64),
            Input::ActiveSessions => {
                let factor = s.max_active_sessions_factor?;
                let start = self.sessions_at_start?;
                Some((start * factor).max(start + SESSIONS_HEADROOM))
            }
            Input::HostCpu => s.max_host_cpu_percent,
            Input::Canary => {
                let factor = s.max_canary_slowdown?;
                Some((self.canary_baseline? * factor).max(CANARY_FLOOR_MS))
            }
            Input::Query => s.query.as_ref().map(|_| 0.0),
            Input::FlagFile => s.flag_file.as_ref().map(|_| 0.0),
        }
    }

    /// The level below which an engaged input counts a calm sample. Counts (waiters,
    /// query, flag) let go at their limit; measurements at `release_ratio` of it.
    fn release_level(&self, input: Input, limit: f64) -> f64 {
        match input {
            Input::LockWaiters | Input::Query | Input::FlagFile => limit,
            _ => limit * self.settings.release_ratio,
        }
    }

    fn learn(&mut self, observation: &Observation) {
        if self.sessions_at_start.is_none() {
            if let Observed::Value(active) = observation.active_sessions {
                self.sessions_at_start = Some(active);
            }
        }
        if self.canary_baseline.is_none() {
            if let Observed::Value(ms) = observation.canary_ms {
                self.canary_samples.push(ms);
                if self.canary_samples.len() >= CANARY_BASELINE_SAMPLES {
                    let mut sorted = self.canary_samples.clone();
                    sorted.sort_by(f64::total_cmp);
                    self.canary_baseline = Some(sorted[sorted.len() / 2]);
                }
            }
        }
    }

    /// Takes one sample of every input and decides.
    pub fn evaluate(&mut self, observation: &Observation) -> Verdict {
        self.learn(observation);
        let mut throttling = Vec::new();
        let mut critical = Vec::new();
        let mut unknown: Vec<(Input, String)> = Vec::new();
        for input in INPUTS {
            let observed = match input {
                Input::ReplicaLag => observation.replica_lag_seconds.clone(),
                Input::LockWaiters => observation.lock_waiters.clone(),
                Input::ActiveSessions => observation.active_sessions.clone(),
                Input::HostCpu => observation.host_cpu_percent.clone(),
                Input::Canary => observation.canary_ms.clone(),
                Input::Query => observation.query.clone(),
                Input::FlagFile => match observation.flag_file {
                    None => Observed::NotUsed,
                    Some(exists) => Observed::Value(if exists { 1.0 } else { 0.0 }),
                },
            };
            let i = input.index();
            if !self.settings_enable(input) || matches!(observed, Observed::NotUsed) {
                self.engaged[i] = false;
                self.calm[i] = 0;
                continue;
            }
            match observed {
                Observed::NotUsed => {}
                Observed::Unknown(why) => {
                    // Never speed up on missing data.
                    self.calm[i] = 0;
                    unknown.push((input, why));
                }
                Observed::Value(value) => {
                    // Relative limits wait for their baseline (learnt from this sample on).
                    let Some(limit) = self.limit(input) else {
                        continue;
                    };
                    if let Some(factor) = self.settings.critical_factor {
                        let level = critical_level(input, limit, factor);
                        if value > level {
                            critical.push(format!(
                                "{} {} is above its critical level {}",
                                input.name(),
                                show(input, value),
                                show(input, level)
                            ));
                        }
                    }
                    if value > limit {
                        self.engaged[i] = true;
                        self.calm[i] = 0;
                    } else if self.engaged[i] {
                        if value <= self.release_level(input, limit) {
                            self.calm[i] += 1;
                        } else {
                            self.calm[i] = 0;
                        }
                        // A flag file removed is an operator's deliberate act: at once.
                        let needed = match input {
                            Input::FlagFile => 1,
                            _ => self.settings.release_samples.max(1),
                        };
                        if self.calm[i] >= needed {
                            self.engaged[i] = false;
                            self.calm[i] = 0;
                        }
                    }
                    if self.engaged[i] {
                        throttling.push(describe(
                            input,
                            value,
                            limit,
                            self.release_level(input, limit),
                            self.calm[i],
                            &self.settings,
                        ));
                    }
                }
            }
        }
        throttling.extend(holds(&unknown));
        if !critical.is_empty() {
            return Verdict::Critical {
                reason: critical.join("; "),
            };
        }
        if throttling.is_empty() {
            Verdict::Run
        } else {
            Verdict::Throttle {
                reason: throttling.join("; "),
            }
        }
    }

    /// Whether the input is switched on in the settings (its limit may still be unlearnt).
    fn settings_enable(&self, input: Input) -> bool {
        let s = &self.settings;
        match input {
            Input::ReplicaLag => s.max_replica_lag.is_some(),
            Input::LockWaiters => s.max_lock_waiters.is_some(),
            Input::ActiveSessions => s.max_active_sessions_factor.is_some(),
            Input::HostCpu => s.max_host_cpu_percent.is_some(),
            Input::Canary => s.max_canary_slowdown.is_some(),
            Input::Query => s.query.is_some(),
            Input::FlagFile => s.flag_file.is_some(),
        }
    }
}

/// The critical level: `factor × limit`, or for the zero-limit counts, `factor` itself.
fn critical_level(input: Input, limit: f64, factor: f64) -> f64 {
    match input {
        Input::LockWaiters | Input::Query | Input::FlagFile => (limit * factor).max(factor),
        _ => limit * factor,
    }
}

/// The reasons of the inputs that are unknown, one sentence per cause (every input is
/// unknown for the same reason before the monitor's first sample: one short line then).
fn holds(unknown: &[(Input, String)]) -> Vec<String> {
    let mut causes: Vec<&str> = Vec::new();
    for (_, why) in unknown {
        if !causes.contains(&why.as_str()) {
            causes.push(why);
        }
    }
    causes
        .into_iter()
        .map(|why| {
            let inputs: Vec<Input> = unknown
                .iter()
                .filter(|(_, w)| w == why)
                .map(|(input, _)| *input)
                .collect();
            match inputs[..] {
                _ if why == super::FIRST_SAMPLE => {
                    "waiting for the monitor's first sample".to_string()
                }
                [input] => hold(input, why),
                _ => {
                    let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
                    let keys: Vec<String> = inputs
                        .iter()
                        .map(|i| format!("`zdm ctl set {}=none`", i.setting()))
                        .collect();
                    format!(
                        "{} unknown ({why}): holding until they are known again (or switch \
                         them off: {}, or the same keys in [throttle] of zdm.toml)",
                        names.join(", "),
                        keys.join(", ")
                    )
                }
            }
        })
        .collect()
}

fn hold(input: Input, why: &str) -> String {
    format!(
        "{} unknown ({why}): holding until it is known again (or switch it off: \
         `zdm ctl set {key}=none`, or `{key} = \"none\"` in [throttle] of zdm.toml)",
        input.name(),
        key = input.setting()
    )
}

fn show(input: Input, value: f64) -> String {
    match input {
        Input::ReplicaLag => format!("{value:.1} s"),
        Input::LockWaiters | Input::ActiveSessions => format!("{value:.0}"),
        Input::HostCpu => format!("{value:.0} %"),
        Input::Canary => format!("{value:.1} ms"),
        Input::Query => format!("{value}"),
        Input::FlagFile => String::new(),
    }
}

/// Why an engaged input holds the backfill: above its limit, or back under it and easing
/// (waiting for calm samples at or below its release level), never both in one sentence.
fn describe(
    input: Input,
    value: f64,
    limit: f64,
    release: f64,
    calm: u32,
    settings: &ThrottleSettings,
) -> String {
    let what = match input {
        Input::FlagFile => format!(
            "flag file {} exists",
            settings
                .flag_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Input::Query => format!("throttle query returned {value}"),
        Input::LockWaiters => format!(
            "{} sessions wait for a lock on the target table",
            show(input, value)
        ),
        _ => format!("{} {}", input.name(), show(input, value)),
    };
    if value > limit {
        return match input {
            Input::FlagFile | Input::Query => what,
            Input::LockWaiters => format!("{what} (max {})", show(input, limit)),
            _ => format!("{what} above max {}", show(input, limit)),
        };
    }
    let level = if value <= release {
        "at or below"
    } else {
        "not yet at or below"
    };
    format!(
        "easing: {what}, {level} {}; {calm} of {} calm samples",
        show(input, release),
        settings.release_samples.max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Observation {
        Observation {
            replica_lag_seconds: Observed::Value(0.0),
            lock_waiters: Observed::Value(0.0),
            active_sessions: Observed::Value(3.0),
            host_cpu_percent: Observed::NotUsed,
            canary_ms: Observed::Value(1.0),
            query: Observed::NotUsed,
            flag_file: None,
        }
    }

    fn lag(seconds: f64) -> Observation {
        Observation {
            replica_lag_seconds: Observed::Value(seconds),
            ..calm()
        }
    }

    #[test]
    fn calm_inputs_run() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert_eq!(policy.evaluate(&calm()), Verdict::Run);
    }

    #[test]
    fn lag_engages_above_max_and_releases_below_80_percent_after_three_samples() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert_eq!(policy.evaluate(&lag(0.9)), Verdict::Run);
        let verdict = policy.evaluate(&lag(2.5));
        assert_eq!(
            verdict.reason(),
            Some("replica lag 2.5 s above max 1.0 s"),
            "{verdict:?}"
        );
        // 0.9 s is below the max but above 80 % of it: still throttled, not counting.
        let verdict = policy.evaluate(&lag(0.9));
        assert!(
            verdict.reason().is_some_and(|r| r.contains("0 of 3 calm")),
            "{verdict:?}"
        );
        for _ in 0..2 {
            assert!(matches!(
                policy.evaluate(&lag(0.5)),
                Verdict::Throttle { .. }
            ));
        }
        assert_eq!(policy.evaluate(&lag(0.5)), Verdict::Run);
    }

    #[test]
    fn an_easing_input_says_it_is_back_under_its_limit_never_above_it() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        policy.evaluate(&lag(2.5));
        let verdict = policy.evaluate(&lag(0.9));
        assert_eq!(
            verdict.reason(),
            Some("easing: replica lag 0.9 s, not yet at or below 0.8 s; 0 of 3 calm samples"),
            "{verdict:?}"
        );
        policy.evaluate(&lag(0.1));
        let verdict = policy.evaluate(&lag(0.1));
        let reason = verdict.reason().unwrap_or_default();
        assert_eq!(
            reason,
            "easing: replica lag 0.1 s, at or below 0.8 s; 2 of 3 calm samples"
        );
        assert!(!reason.contains("above"), "{reason}");
    }

    #[test]
    fn a_flapping_input_does_not_flap_the_verdict() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        let mut verdicts = Vec::new();
        for i in 0..12 {
            let seconds = if i % 2 == 0 { 1.2 } else { 0.3 };
            verdicts.push(matches!(policy.evaluate(&lag(seconds)), Verdict::Run));
        }
        assert!(verdicts.iter().all(|run| !run), "{verdicts:?}");
    }

    #[test]
    fn before_the_first_sample_one_short_line_holds() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        let first = || Observed::Unknown(super::super::FIRST_SAMPLE.to_string());
        let verdict = policy.evaluate(&Observation {
            replica_lag_seconds: first(),
            lock_waiters: first(),
            active_sessions: first(),
            canary_ms: first(),
            ..calm()
        });
        assert_eq!(
            verdict.reason(),
            Some("waiting for the monitor's first sample"),
            "{verdict:?}"
        );
        // Several inputs unknown for one other cause: one sentence naming them.
        let lost = || Observed::Unknown("connection lost".to_string());
        let verdict = policy.evaluate(&Observation {
            replica_lag_seconds: lost(),
            canary_ms: lost(),
            ..calm()
        });
        let reason = verdict.reason().unwrap_or_default();
        assert_eq!(reason.matches("connection lost").count(), 1, "{reason}");
        assert!(reason.starts_with("replica lag, canary"), "{reason}");
    }

    #[test]
    fn unknown_inputs_hold_and_say_why() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        let verdict = policy.evaluate(&Observation {
            replica_lag_seconds: Observed::Unknown("connection lost".to_string()),
            ..calm()
        });
        let reason = verdict.reason().expect("holds");
        assert!(
            reason.starts_with("replica lag unknown (connection lost): holding"),
            "{reason}"
        );
        assert!(
            reason.contains("`zdm ctl set max_replica_lag=none`, or `max_replica_lag = \"none\"`"),
            "{reason}"
        );
        // An input switched off is never waited for.
        let mut off = ThrottlePolicy::new(ThrottleSettings {
            max_replica_lag: None,
            ..ThrottleSettings::default()
        });
        assert_eq!(
            off.evaluate(&Observation {
                replica_lag_seconds: Observed::Unknown("connection lost".to_string()),
                ..calm()
            }),
            Verdict::Run
        );
    }

    #[test]
    fn every_throttling_input_is_named() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings {
            flag_file: Some(PathBuf::from("/tmp/zdm-throttle")),
            query: Some("SELECT 1".to_string()),
            ..ThrottleSettings::default()
        });
        let verdict = policy.evaluate(&Observation {
            lock_waiters: Observed::Value(2.0),
            query: Observed::Value(1.0),
            flag_file: Some(true),
            ..lag(3.0)
        });
        let reason = verdict.reason().expect("throttled");
        assert!(reason.contains("replica lag 3.0 s"), "{reason}");
        assert!(
            reason.contains("2 sessions wait for a lock on the target table"),
            "{reason}"
        );
        assert!(reason.contains("throttle query returned 1"), "{reason}");
        assert!(
            reason.contains("flag file /tmp/zdm-throttle exists"),
            "{reason}"
        );
    }

    #[test]
    fn active_sessions_and_canary_are_relative_to_the_start() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        for _ in 0..3 {
            assert_eq!(policy.evaluate(&calm()), Verdict::Run);
        }
        // Start level 3: the limit is max(3 × 2, 3 + 5) = 8.
        let busy = Observation {
            active_sessions: Observed::Value(9.0),
            ..calm()
        };
        assert!(policy
            .evaluate(&busy)
            .reason()
            .is_some_and(|r| r.contains("active sessions 9 above max 8")));
        // Canary baseline 1 ms: the limit is max(1 × 4, 5 ms) = 5 ms.
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        for _ in 0..3 {
            policy.evaluate(&calm());
        }
        let slow = Observation {
            canary_ms: Observed::Value(7.0),
            ..calm()
        };
        assert!(policy
            .evaluate(&slow)
            .reason()
            .is_some_and(|r| r.contains("canary latency 7.0 ms above max 5.0 ms")));
    }

    #[test]
    fn the_critical_level_is_off_by_default_and_pauses_when_set() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert!(matches!(
            policy.evaluate(&lag(50.0)),
            Verdict::Throttle { .. }
        ));
        let mut policy = ThrottlePolicy::new(ThrottleSettings {
            critical_factor: Some(10.0),
            ..ThrottleSettings::default()
        });
        assert!(matches!(
            policy.evaluate(&lag(5.0)),
            Verdict::Throttle { .. }
        ));
        let verdict = policy.evaluate(&lag(12.0));
        assert_eq!(
            verdict,
            Verdict::Critical {
                reason: "replica lag 12.0 s is above its critical level 10.0 s".to_string()
            }
        );
    }
}
