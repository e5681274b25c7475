//! One setting with its typed value ([`Setting`]), read from the `KEY=VALUE` text
//! `zdm ctl set` takes or from a `zdm.toml` value, and written back in the same form.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Kind, OldName, SettingKey, Value};
use crate::schedule::Window;

/// Why a setting was refused; each message names the key and shows a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("`{given}` is not KEY=VALUE: write it as e.g. `batch_target=200ms`")]
    NotAnAssignment { given: String },
    #[error("unknown setting `{given}`{hint}")]
    UnknownKey { given: String, hint: String },
    #[error("{key}: `{value}` is not {expected}")]
    BadValue {
        key: SettingKey,
        value: String,
        expected: String,
    },
    #[error("{key}: {reason}")]
    Conflict { key: SettingKey, reason: String },
    /// A value whose own reader says exactly what is wrong (a window, a time zone).
    #[error("{key}: {reason}")]
    Invalid { key: SettingKey, reason: String },
    #[error(
        "{key} is read from zdm.toml ([{table}]) when a run starts; it cannot be read or \
         changed while the run goes on",
        table = key.spec().table.name()
    )]
    NotLive { key: SettingKey },
}

/// An old name was used: the warning to show (it names the new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecated {
    pub old: &'static str,
    pub new: &'static str,
}

impl From<&OldName> for Deprecated {
    fn from(old: &OldName) -> Self {
        Deprecated {
            old: old.name,
            new: old.key.name(),
        }
    }
}

impl fmt::Display for Deprecated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is an old name, accepted until the next release: write `{}` instead",
            self.old, self.new
        )
    }
}

/// One setting with its value; the doc of each is its [`Spec::doc`](super::Spec::doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    BatchTarget(Duration),
    StartBatchRows(u64),
    MinBatchRows(u64),
    MaxBatchRows(u64),
    FixedBatchRows(Option<u64>),
    BatchTimeout(Option<Duration>),
    MaxRowsPerSecond(Option<f64>),
    NiceRatio(f64),
    /// `None`: `auto`.
    Workers(Option<u64>),
    VacuumDeadPercent(Option<f64>),
    MaxReplicaLag(Option<Duration>),
    CriticalFactor(Option<f64>),
    MaxLockWaiters(Option<u64>),
    MaxActiveSessionsFactor(Option<f64>),
    MaxHostCpuPercent(Option<f64>),
    MaxCanarySlowdown(Option<f64>),
    ThrottleQuery(Option<String>),
    FlagFile(Option<PathBuf>),
    ReleaseSamples(u64),
    ReleaseRatio(f64),
    StaleAfter(Duration),
    Windows(Vec<Window>),
    /// `None`: the system's time zone.
    TimeZone(Option<String>),
    Window(bool),
}

impl Setting {
    pub fn key(&self) -> SettingKey {
        match self {
            Setting::BatchTarget(_) => SettingKey::BatchTarget,
            Setting::StartBatchRows(_) => SettingKey::StartBatchRows,
            Setting::MinBatchRows(_) => SettingKey::MinBatchRows,
            Setting::MaxBatchRows(_) => SettingKey::MaxBatchRows,
            Setting::FixedBatchRows(_) => SettingKey::FixedBatchRows,
            Setting::BatchTimeout(_) => SettingKey::BatchTimeout,
            Setting::MaxRowsPerSecond(_) => SettingKey::MaxRowsPerSecond,
            Setting::NiceRatio(_) => SettingKey::NiceRatio,
            Setting::Workers(_) => SettingKey::Workers,
            Setting::VacuumDeadPercent(_) => SettingKey::VacuumDeadPercent,
            Setting::MaxReplicaLag(_) => SettingKey::MaxReplicaLag,
            Setting::CriticalFactor(_) => SettingKey::CriticalFactor,
            Setting::MaxLockWaiters(_) => SettingKey::MaxLockWaiters,
            Setting::MaxActiveSessionsFactor(_) => SettingKey::MaxActiveSessionsFactor,
            Setting::MaxHostCpuPercent(_) => SettingKey::MaxHostCpuPercent,
            Setting::MaxCanarySlowdown(_) => SettingKey::MaxCanarySlowdown,
            Setting::ThrottleQuery(_) => SettingKey::ThrottleQuery,
            Setting::FlagFile(_) => SettingKey::FlagFile,
            Setting::ReleaseSamples(_) => SettingKey::ReleaseSamples,
            Setting::ReleaseRatio(_) => SettingKey::ReleaseRatio,
            Setting::StaleAfter(_) => SettingKey::StaleAfter,
            Setting::Windows(_) => SettingKey::Windows,
            Setting::TimeZone(_) => SettingKey::TimeZone,
            Setting::Window(_) => SettingKey::Window,
        }
    }

    /// The untyped value (what [`Kind`](super::Kind) reads and writes).
    pub fn value(&self) -> Value {
        match self.clone() {
            Setting::BatchTarget(d) | Setting::StaleAfter(d) => Value::Duration(Some(d)),
            Setting::BatchTimeout(d) | Setting::MaxReplicaLag(d) => Value::Duration(d),
            Setting::StartBatchRows(n)
            | Setting::MinBatchRows(n)
            | Setting::MaxBatchRows(n)
            | Setting::ReleaseSamples(n) => Value::Count(Some(n)),
            Setting::FixedBatchRows(n) | Setting::MaxLockWaiters(n) | Setting::Workers(n) => {
                Value::Count(n)
            }
            Setting::NiceRatio(r) | Setting::ReleaseRatio(r) => Value::Number(Some(r)),
            Setting::MaxRowsPerSecond(r)
            | Setting::VacuumDeadPercent(r)
            | Setting::CriticalFactor(r)
            | Setting::MaxActiveSessionsFactor(r)
            | Setting::MaxHostCpuPercent(r)
            | Setting::MaxCanarySlowdown(r) => Value::Number(r),
            Setting::ThrottleQuery(q) => Value::Text(q),
            Setting::FlagFile(p) => Value::Path(p),
            Setting::Windows(w) => {
                Value::Text((!w.is_empty()).then(|| crate::schedule::windows_text(&w)))
            }
            Setting::TimeZone(tz) => Value::Text(tz),
            Setting::Window(on) => Value::Switch(on),
        }
    }

    /// The setting of `key` with `value`; None when the value is not of the key's kind
    /// (never for a value its [`Kind`](super::Kind) parsed; a test checks every key).
    pub fn from_value(key: SettingKey, value: Value) -> Option<Setting> {
        use SettingKey as K;
        Some(match (key, value) {
            (K::BatchTarget, Value::Duration(Some(d))) => Setting::BatchTarget(d),
            (K::StaleAfter, Value::Duration(Some(d))) => Setting::StaleAfter(d),
            (K::BatchTimeout, Value::Duration(d)) => Setting::BatchTimeout(d),
            (K::MaxReplicaLag, Value::Duration(d)) => Setting::MaxReplicaLag(d),
            (K::StartBatchRows, Value::Count(Some(n))) => Setting::StartBatchRows(n),
            (K::MinBatchRows, Value::Count(Some(n))) => Setting::MinBatchRows(n),
            (K::MaxBatchRows, Value::Count(Some(n))) => Setting::MaxBatchRows(n),
            (K::ReleaseSamples, Value::Count(Some(n))) => Setting::ReleaseSamples(n),
            (K::FixedBatchRows, Value::Count(n)) => Setting::FixedBatchRows(n),
            (K::MaxLockWaiters, Value::Count(n)) => Setting::MaxLockWaiters(n),
            (K::Workers, Value::Count(n)) => Setting::Workers(n),
            (K::VacuumDeadPercent, Value::Number(r)) => Setting::VacuumDeadPercent(r),
            (K::NiceRatio, Value::Number(Some(r))) => Setting::NiceRatio(r),
            (K::ReleaseRatio, Value::Number(Some(r))) => Setting::ReleaseRatio(r),
            (K::MaxRowsPerSecond, Value::Number(r)) => Setting::MaxRowsPerSecond(r),
            (K::CriticalFactor, Value::Number(r)) => Setting::CriticalFactor(r),
            (K::MaxActiveSessionsFactor, Value::Number(r)) => Setting::MaxActiveSessionsFactor(r),
            (K::MaxHostCpuPercent, Value::Number(r)) => Setting::MaxHostCpuPercent(r),
            (K::MaxCanarySlowdown, Value::Number(r)) => Setting::MaxCanarySlowdown(r),
            (K::ThrottleQuery, Value::Text(q)) => Setting::ThrottleQuery(q),
            (K::FlagFile, Value::Path(p)) => Setting::FlagFile(p),
            (K::Windows, Value::Text(None)) => Setting::Windows(Vec::new()),
            (K::Windows, Value::Text(Some(w))) => {
                Setting::Windows(crate::schedule::parse_windows(&w).ok()?)
            }
            (K::TimeZone, Value::Text(tz)) => Setting::TimeZone(tz),
            (K::Window, Value::Switch(on)) => Setting::Window(on),
            _ => return None,
        })
    }

    /// The declared default of `key`.
    pub fn default_of(key: SettingKey) -> Option<Setting> {
        Setting::from_value(key, key.spec().default.clone())
    }

    /// Parses `KEY=VALUE` as `zdm ctl set` takes it: only settings that can change while
    /// a run goes on; an old name is accepted (use [`Setting::parse_named`] to warn).
    pub fn parse(assignment: &str) -> Result<Setting, SettingError> {
        Setting::parse_named(assignment).map(|(setting, _)| setting)
    }

    /// [`Setting::parse`], also saying whether an old name was used.
    pub fn parse_named(assignment: &str) -> Result<(Setting, Option<Deprecated>), SettingError> {
        let Some((name, value)) = assignment.split_once('=') else {
            // A lone known key gets a better message than "not KEY=VALUE".
            return match SettingKey::lookup(assignment) {
                Ok((key, _)) => Err(SettingError::BadValue {
                    key,
                    value: String::new(),
                    expected: key.expected(),
                }),
                Err(_) => Err(SettingError::NotAnAssignment {
                    given: assignment.to_string(),
                }),
            };
        };
        let (key, old) = SettingKey::lookup_live(name)?;
        let value = old.map_or_else(|| value.to_string(), |old| old.value_text(value));
        Ok((
            Setting::parse_value(key, &value)?,
            old.map(Deprecated::from),
        ))
    }

    /// Parses the value of one key, checking its range.
    pub fn parse_value(key: SettingKey, value: &str) -> Result<Setting, SettingError> {
        let text = value.trim();
        let spec = key.spec();
        // Windows and time zones say exactly what is wrong, and the form.
        let exact = match spec.kind {
            Kind::Windows if !super::value::is_none(text) => {
                crate::schedule::parse_windows(text).err()
            }
            Kind::TimeZone if !super::value::is_local(text) => {
                crate::schedule::time_zone(text).err()
            }
            _ => None,
        };
        if let Some(error) = exact {
            return Err(SettingError::Invalid {
                key,
                reason: error.to_string(),
            });
        }
        spec.kind
            .parse(text)
            .and_then(|value| Setting::from_value(key, value))
            .ok_or_else(|| SettingError::BadValue {
                key,
                value: text.to_string(),
                expected: key.expected(),
            })
    }

    /// The value in the form `set` and `zdm.toml` accept back (`200ms`, `5000/s`, `none`).
    pub fn value_text(&self) -> String {
        self.key().spec().kind.text(&self.value())
    }

    /// `batch_target` scaled by `factor` from `current` (the console's faster/slower
    /// keys), kept within its declared range.
    pub fn batch_target_scaled(current: Duration, factor: f64) -> Setting {
        let (min, max) = match SettingKey::BatchTarget.spec().kind {
            super::Kind::Duration { min, max, .. } => (min.as_secs_f64(), max.as_secs_f64()),
            _ => (0.010, 60.0),
        };
        let scaled = if factor.is_finite() && factor > 0.0 {
            current.as_secs_f64() * factor
        } else {
            current.as_secs_f64()
        };
        // Whole milliseconds: the value prints back as `set` text without a fraction.
        let millis = (scaled.clamp(min, max) * 1000.0).round() as u64;
        Setting::BatchTarget(Duration::from_millis(millis))
    }
}

impl SettingKey {
    /// [`SettingKey::lookup`], refusing a setting that is only read when a run starts.
    pub fn lookup_live(text: &str) -> Result<(SettingKey, Option<&'static OldName>), SettingError> {
        let (key, old) = SettingKey::lookup(text)?;
        if key.spec().live {
            Ok((key, old))
        } else {
            Err(SettingError::NotLive { key })
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key(), self.value_text())
    }
}

impl FromStr for Setting {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Setting::parse(text)
    }
}

/// A key by its name (or an old name: a client of the previous release still works).
impl FromStr for SettingKey {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SettingKey::lookup(text).map(|(key, _)| key)
    }
}

impl Serialize for SettingKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SettingKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// On the wire a setting is `{"key": "batch_target", "value": "200ms"}`: the value is
/// the same text `zdm ctl set` takes (a JSON number is read as its text).
impl Serialize for Setting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", self.key().name())?;
        map.serialize_entry("value", &self.value_text())?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Text(String),
            Number(serde_json::Number),
        }
        #[derive(Deserialize)]
        struct Wire {
            key: String,
            value: Text,
        }
        let wire = Wire::deserialize(deserializer)?;
        let value = match wire.value {
            Text::Text(text) => text,
            Text::Number(number) => number.to_string(),
        };
        let (key, old) = SettingKey::lookup_live(&wire.key).map_err(D::Error::custom)?;
        let value = old.map_or(value.clone(), |old| old.value_text(&value));
        Setting::parse_value(key, &value).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Setting {
        Setting::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        match Setting::parse(text) {
            Ok(setting) => panic!("{text} was accepted as {setting:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn durations_take_their_units() {
        assert_eq!(
            parse("batch_target=200ms"),
            Setting::BatchTarget(Duration::from_millis(200))
        );
        assert_eq!(
            parse("batch_target=1.5s"),
            Setting::BatchTarget(Duration::from_millis(1500))
        );
        assert_eq!(
            parse(" max_replica_lag = 2 s "),
            Setting::MaxReplicaLag(Some(Duration::from_secs(2)))
        );
        assert_eq!(parse("max_replica_lag=off"), Setting::MaxReplicaLag(None));
        assert_eq!(
            parse("critical_factor=3x"),
            Setting::CriticalFactor(Some(3.0))
        );
        assert_eq!(parse("critical_factor=none"), Setting::CriticalFactor(None));
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_an_example() {
        let message = error("batch_target=200");
        assert!(
            message.contains("batch_target: `200` is not a duration (10ms–1m)"),
            "{message}"
        );
        assert!(message.contains("`200ms`"), "{message}");
    }

    #[test]
    fn rates_counts_ratios_factors_and_percentages() {
        assert_eq!(
            parse("max_rows_per_second=5000/s"),
            Setting::MaxRowsPerSecond(Some(5000.0))
        );
        assert_eq!(
            parse("max_rows_per_second=2500"),
            Setting::MaxRowsPerSecond(Some(2500.0))
        );
        assert_eq!(
            parse("max_rows_per_second=none"),
            Setting::MaxRowsPerSecond(None)
        );
        assert_eq!(
            parse("max_batch_rows=100_000"),
            Setting::MaxBatchRows(100_000)
        );
        assert_eq!(parse("nice_ratio=0.5"), Setting::NiceRatio(0.5));
        assert_eq!(
            parse("max_active_sessions_factor=1.5x"),
            Setting::MaxActiveSessionsFactor(Some(1.5))
        );
        assert_eq!(
            parse("max_canary_slowdown=4"),
            Setting::MaxCanarySlowdown(Some(4.0))
        );
        assert_eq!(
            parse("max_host_cpu_percent=80%"),
            Setting::MaxHostCpuPercent(Some(80.0))
        );
        assert_eq!(
            parse("max_lock_waiters=0"),
            Setting::MaxLockWaiters(Some(0))
        );
        assert_eq!(
            parse("max_lock_waiters=none"),
            Setting::MaxLockWaiters(None)
        );
        assert_eq!(
            parse("max-rows-per-second=10/s"),
            Setting::MaxRowsPerSecond(Some(10.0))
        );
    }

    #[test]
    fn old_names_are_applied_and_say_the_new_one() {
        for (old, new) in [
            ("max_rate=5000/s", "max_rows_per_second=5000/s"),
            ("max-cpu=80%", "max_host_cpu_percent=80%"),
            ("max_active_sessions=2x", "max_active_sessions_factor=2x"),
            ("max_canary_factor=6", "max_canary_slowdown=6x"),
            ("target_batch_ms=500", "batch_target=500ms"),
            ("max_replica_lag_ms=-1", "max_replica_lag=none"),
        ] {
            let (setting, deprecated) = Setting::parse_named(old).expect(old);
            assert_eq!(setting.to_string(), new, "{old}");
            let warning = deprecated.expect("deprecated").to_string();
            let new_name = new.split('=').next().unwrap_or_default();
            assert!(
                warning.contains(&format!("write `{new_name}`")),
                "{warning}"
            );
        }
        let (_, deprecated) = Setting::parse_named("max_rows_per_second=1").expect("new");
        assert_eq!(deprecated, None);
    }

    #[test]
    fn settings_read_only_at_start_are_refused_live() {
        let message = error("start_batch_rows=500");
        assert!(
            message.starts_with("start_batch_rows is read from zdm.toml ([backfill])"),
            "{message}"
        );
        assert!(error("backfill_batch_size=10").starts_with("fixed_batch_rows is read"));
    }

    #[test]
    fn text_values_keep_everything_after_the_first_equals_sign() {
        assert_eq!(
            parse("throttle_query=SELECT count(*) FROM jobs WHERE state = 'busy'"),
            Setting::ThrottleQuery(Some(
                "SELECT count(*) FROM jobs WHERE state = 'busy'".to_string()
            ))
        );
        assert_eq!(
            parse("flag_file=/tmp/zdm.pause"),
            Setting::FlagFile(Some(PathBuf::from("/tmp/zdm.pause")))
        );
        assert_eq!(parse("flag_file=none"), Setting::FlagFile(None));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for text in [
            "batch_target=5ms",
            "batch_target=2m",
            "max_rows_per_second=0",
            "max_rows_per_second=-5/s",
            "nice_ratio=-1",
            "nice_ratio=NaN",
            "nice_ratio=none",
            "min_batch_rows=0",
            "max_batch_rows=1.5",
            "max_active_sessions_factor=0.5x",
            "max_host_cpu_percent=150%",
            "max_lock_waiters=-1",
            "critical_factor=1x",
        ] {
            let message = error(text);
            let key = text.split('=').next().unwrap_or_default();
            assert!(
                message.starts_with(&format!("{key}: ")),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_and_list_all() {
        let message = error("batch_traget=200ms");
        assert!(
            message.starts_with("unknown setting `batch_traget`; did you mean `batch_target`?"),
            "{message}"
        );
        for key in SettingKey::all() {
            assert!(
                message.contains(&format!("`{key}`")),
                "{key} missing: {message}"
            );
        }
        let message = error("speed=fast");
        assert!(
            message.starts_with("unknown setting `speed`; expected "),
            "{message}"
        );
    }

    #[test]
    fn missing_equals_sign_is_explained() {
        assert!(error("batch_target").contains("batch_target: `` is not a duration"));
        assert!(error("fast please").contains("is not KEY=VALUE"));
    }

    #[test]
    fn a_setting_on_the_wire_accepts_numbers_old_names_and_reports_bad_values() {
        let setting: Setting =
            serde_json::from_str(r#"{"key":"max_rows_per_second","value":5000}"#).expect("number");
        assert_eq!(setting, Setting::MaxRowsPerSecond(Some(5000.0)));
        let old: Setting =
            serde_json::from_str(r#"{"key":"max_rate","value":"5000/s"}"#).expect("old name");
        assert_eq!(old, setting);
        let error =
            serde_json::from_str::<Setting>(r#"{"key":"max_rows_per_second","value":"fast"}"#)
                .expect_err("bad value")
                .to_string();
        assert!(
            error.contains("max_rows_per_second: `fast` is not rows per second"),
            "{error}"
        );
    }

    #[test]
    fn windows_time_zones_and_the_window_switch_are_set_live() {
        let windows = parse("windows=Mon-Fri 01:00-05:00; sat,sun 0:00-8:00");
        assert_eq!(
            windows.to_string(),
            "windows=Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00"
        );
        assert_eq!(parse("windows=none"), Setting::Windows(Vec::new()));
        assert_eq!(
            parse("tz=europe/zurich"),
            Setting::TimeZone(Some("Europe/Zurich".to_string()))
        );
        assert_eq!(parse("tz=local"), Setting::TimeZone(None));
        assert_eq!(parse("window=off"), Setting::Window(false));
        assert_eq!(parse("window=on").to_string(), "window=on");
        let message = error("windows=Mon-Fri 01:00-05:00; Sun 9-10");
        assert!(
            message.starts_with("windows: window `Sun 9-10`: `9` is not a time"),
            "{message}"
        );
        assert!(
            message.contains("the form is `DAYS HH:MM-HH:MM`"),
            "{message}"
        );
        let message = error("tz=Europe/Zurch");
        assert!(
            message.starts_with(
                "tz: `Europe/Zurch` is not an IANA time zone name; did you mean `Europe/Zurich`?"
            ),
            "{message}"
        );
        assert!(error("window=maybe").starts_with("window: `maybe` is not `on` or `off`"));
        // On the wire, as `zdm ctl` sends them.
        let wire = serde_json::to_string(&windows).expect("serialize");
        let back: Setting = serde_json::from_str(&wire).expect("deserialize");
        assert_eq!(back, windows);
    }

    #[test]
    fn the_batch_target_scales_within_its_range() {
        let current = Duration::from_millis(200);
        assert_eq!(
            Setting::batch_target_scaled(current, 1.5),
            Setting::BatchTarget(Duration::from_millis(300))
        );
        assert_eq!(
            Setting::batch_target_scaled(current, 0.001),
            Setting::BatchTarget(Duration::from_millis(10))
        );
        assert_eq!(
            Setting::batch_target_scaled(Duration::from_secs(50), 2.0),
            Setting::BatchTarget(Duration::from_secs(60))
        );
        assert_eq!(
            Setting::batch_target_scaled(current, f64::NAN),
            Setting::BatchTarget(current)
        );
    }
}
