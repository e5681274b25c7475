//! The values in force of a backfill's settings (pacing and throttle limits), declared in
//! [`crate::settings`]: their defaults come from the declaration, `zdm.toml` sets them
//! at start, `zdm ctl set` or the console changes the live ones, each key by key
//! ([`Setting`]).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pacing::PacingSettings;
use super::throttle::ThrottleSettings;
use crate::settings::{Setting, SettingError, SettingKey};

/// Every setting a backfill reads while it runs. The defaults are the declaration's.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSettings {
    pub pacing: PacingSettings,
    pub throttle: ThrottleSettings,
    /// How many workers backfill at once; None: adaptive (`workers=auto`).
    pub workers: Option<u64>,
    /// Plain VACUUM of the table once its dead rows pass this percentage of its rows;
    /// None: never.
    pub vacuum_dead_percent: Option<f64>,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        // Every field is set from its declared default below; these placeholders never
        // survive (a test compares each field with the declaration).
        let mut settings = BackfillSettings {
            pacing: PacingSettings {
                target: std::time::Duration::ZERO,
                start_rows: 0,
                min_rows: 0,
                max_rows: 0,
                nice_ratio: 0.0,
                max_rows_per_second: None,
            },
            throttle: ThrottleSettings {
                max_replica_lag: None,
                max_lock_waiters: None,
                max_active_sessions_factor: None,
                max_host_cpu_percent: None,
                max_canary_slowdown: None,
                query: None,
                flag_file: None,
                critical_factor: None,
                release_samples: 0,
                release_ratio: 0.0,
                stale_after: std::time::Duration::ZERO,
                windows: Vec::new(),
                tz: None,
                window: true,
            },
            workers: None,
            vacuum_dead_percent: None,
        };
        for setting in SettingKey::all().filter_map(Setting::default_of) {
            settings.assign(setting);
        }
        settings
    }
}

impl BackfillSettings {
    /// The current value of a live key; None for a key read only at start (it is not
    /// shown or answered live: `zdm ctl get` refuses it).
    pub fn get(&self, key: SettingKey) -> Option<Setting> {
        let (pacing, throttle) = (&self.pacing, &self.throttle);
        Some(match key {
            SettingKey::BatchTarget => Setting::BatchTarget(pacing.target),
            SettingKey::MinBatchRows => Setting::MinBatchRows(pacing.min_rows),
            SettingKey::MaxBatchRows => Setting::MaxBatchRows(pacing.max_rows),
            SettingKey::MaxRowsPerSecond => Setting::MaxRowsPerSecond(pacing.max_rows_per_second),
            SettingKey::NiceRatio => Setting::NiceRatio(pacing.nice_ratio),
            SettingKey::Workers => Setting::Workers(self.workers),
            SettingKey::VacuumDeadPercent => Setting::VacuumDeadPercent(self.vacuum_dead_percent),
            SettingKey::MaxReplicaLag => Setting::MaxReplicaLag(throttle.max_replica_lag),
            SettingKey::CriticalFactor => Setting::CriticalFactor(throttle.critical_factor),
            SettingKey::MaxLockWaiters => Setting::MaxLockWaiters(throttle.max_lock_waiters),
            SettingKey::MaxActiveSessionsFactor => {
                Setting::MaxActiveSessionsFactor(throttle.max_active_sessions_factor)
            }
            SettingKey::MaxHostCpuPercent => {
                Setting::MaxHostCpuPercent(throttle.max_host_cpu_percent)
            }
            SettingKey::MaxCanarySlowdown => {
                Setting::MaxCanarySlowdown(throttle.max_canary_slowdown)
            }
            SettingKey::ThrottleQuery => Setting::ThrottleQuery(throttle.query.clone()),
            SettingKey::FlagFile => Setting::FlagFile(throttle.flag_file.clone()),
            SettingKey::Windows => Setting::Windows(throttle.windows.clone()),
            SettingKey::TimeZone => Setting::TimeZone(throttle.tz.clone()),
            SettingKey::Window => Setting::Window(throttle.window),
            // Read only at start (fixed_batch_rows and batch_timeout are held by the
            // engine's options, not here).
            SettingKey::StartBatchRows
            | SettingKey::ReleaseSamples
            | SettingKey::ReleaseRatio
            | SettingKey::StaleAfter
            | SettingKey::FixedBatchRows
            | SettingKey::BatchTimeout => return None,
        })
    }

    /// Every live setting, in declaration order (as `zdm ctl status` lists them).
    pub fn all(&self) -> Vec<Setting> {
        SettingKey::live().filter_map(|key| self.get(key)).collect()
    }

    /// Applies one setting while a run goes on, refusing one read only at start and a
    /// value that contradicts another setting (the old value stays).
    pub fn apply(&mut self, setting: Setting) -> Result<(), SettingError> {
        let key = setting.key();
        if !key.spec().live {
            return Err(SettingError::NotLive { key });
        }
        let mut next = self.clone();
        next.assign(setting);
        next.check(key)?;
        *self = next;
        Ok(())
    }

    /// Whether the batch bounds agree; `changed` is the key the error is about.
    pub fn check(&self, changed: SettingKey) -> Result<(), SettingError> {
        let (min, max) = (self.pacing.min_rows, self.pacing.max_rows);
        if min <= max {
            return Ok(());
        }
        let reason = if changed == SettingKey::MaxBatchRows {
            format!("must not be below min_batch_rows ({min})")
        } else {
            format!("must not exceed max_batch_rows ({max})")
        };
        Err(SettingError::Conflict {
            key: if changed == SettingKey::MaxBatchRows {
                SettingKey::MaxBatchRows
            } else {
                SettingKey::MinBatchRows
            },
            reason,
        })
    }

    /// Sets one value without cross-checks (`zdm.toml` checks once all are read).
    /// `fixed_batch_rows` and `batch_timeout` belong to the engine's options (they choose
    /// how the backfill is set up when it starts), not here: the config sets those.
    pub fn assign(&mut self, setting: Setting) {
        let (pacing, throttle) = (&mut self.pacing, &mut self.throttle);
        match setting {
            Setting::BatchTarget(v) => pacing.target = v,
            Setting::StartBatchRows(v) => pacing.start_rows = v,
            Setting::MinBatchRows(v) => {
                pacing.min_rows = v;
                // The first batch is never smaller than the smallest allowed.
                pacing.start_rows = pacing.start_rows.max(v);
            }
            Setting::MaxBatchRows(v) => {
                pacing.max_rows = v;
                pacing.start_rows = pacing.start_rows.min(v);
            }
            Setting::MaxRowsPerSecond(v) => pacing.max_rows_per_second = v,
            Setting::NiceRatio(v) => pacing.nice_ratio = v,
            Setting::Workers(v) => self.workers = v,
            Setting::VacuumDeadPercent(v) => self.vacuum_dead_percent = v,
            Setting::MaxReplicaLag(v) => throttle.max_replica_lag = v,
            Setting::CriticalFactor(v) => throttle.critical_factor = v,
            Setting::MaxLockWaiters(v) => throttle.max_lock_waiters = v,
            Setting::MaxActiveSessionsFactor(v) => throttle.max_active_sessions_factor = v,
            Setting::MaxHostCpuPercent(v) => throttle.max_host_cpu_percent = v,
            Setting::MaxCanarySlowdown(v) => throttle.max_canary_slowdown = v,
            Setting::ThrottleQuery(v) => throttle.query = v,
            Setting::FlagFile(v) => throttle.flag_file = v,
            Setting::ReleaseSamples(v) => {
                throttle.release_samples = u32::try_from(v).unwrap_or(u32::MAX)
            }
            Setting::ReleaseRatio(v) => throttle.release_ratio = v,
            Setting::StaleAfter(v) => throttle.stale_after = v,
            Setting::Windows(v) => throttle.windows = v,
            Setting::TimeZone(v) => throttle.tz = v,
            Setting::Window(v) => throttle.window = v,
            Setting::FixedBatchRows(_) | Setting::BatchTimeout(_) => {}
        }
    }
}

/// On the wire the settings are one object of `key: "value text"`, in the form `set` takes.
impl Serialize for BackfillSettings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let all = self.all();
        let mut map = serializer.serialize_map(Some(all.len()))?;
        for setting in all {
            map.serialize_entry(setting.key().name(), &setting.value_text())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for BackfillSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        let mut settings = BackfillSettings::default();
        // Keys this version does not know (from a newer zdm) are skipped, not fatal; a
        // consistent set may pass through inconsistent states, so no cross-checks here.
        for (key, value) in &map {
            if let Ok((key, old)) = SettingKey::lookup_live(key) {
                let value = old.map_or(value.clone(), |old| old.value_text(value));
                settings.assign(Setting::parse_value(key, &value).map_err(D::Error::custom)?);
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn every_key_reads_back_what_was_set_and_prints_in_a_form_set_accepts() {
        let mut settings = BackfillSettings::default();
        for text in [
            "batch_target=1.5s",
            "min_batch_rows=50",
            "max_batch_rows=5000",
            "max_rows_per_second=1234.5/s",
            "nice_ratio=0.25",
            "workers=3",
            "workers=auto",
            "vacuum_dead_percent=none",
            "vacuum_dead_percent=50%",
            "max_replica_lag=2s",
            "critical_factor=3x",
            "max_lock_waiters=none",
            "max_active_sessions_factor=1.5x",
            "max_host_cpu_percent=none",
            "max_canary_slowdown=6x",
            "throttle_query=SELECT 1",
            "flag_file=/run/zdm.pause",
        ] {
            let setting = Setting::parse(text).expect(text);
            settings.apply(setting.clone()).expect(text);
            assert_eq!(settings.get(setting.key()), Some(setting.clone()), "{text}");
            assert_eq!(setting.to_string(), text);
        }
        assert_eq!(settings.pacing.target, Duration::from_millis(1500));
        assert_eq!(settings.throttle.max_lock_waiters, None);
        assert_eq!(settings.throttle.critical_factor, Some(3.0));
        assert_eq!(
            settings.throttle.flag_file,
            Some(PathBuf::from("/run/zdm.pause"))
        );
        assert_eq!(settings.pacing.start_rows, 100, "within 50..=5000");
    }

    #[test]
    fn exactly_the_live_keys_are_read_and_listed_live() {
        let settings = BackfillSettings::default();
        for key in SettingKey::all() {
            assert_eq!(settings.get(key).is_some(), key.spec().live, "{key}");
        }
        assert_eq!(settings.all().len(), SettingKey::live().count());
        let refused = settings
            .clone()
            .apply(Setting::StartBatchRows(5))
            .expect_err("read only at start");
        assert!(matches!(refused, SettingError::NotLive { .. }), "{refused}");
    }

    #[test]
    fn the_defaults_are_the_declarations() {
        let settings = BackfillSettings::default();
        for key in SettingKey::live() {
            assert_eq!(settings.get(key), Setting::default_of(key), "{key}");
        }
        assert_eq!(settings.pacing.target, Duration::from_millis(200));
        assert_eq!(settings.pacing.start_rows, 100);
        assert_eq!(
            settings.throttle.max_replica_lag,
            Some(Duration::from_secs(1))
        );
        assert_eq!(settings.throttle.release_samples, 3);
        assert_eq!(settings.throttle.release_ratio, 0.8);
        assert_eq!(settings.throttle.stale_after, Duration::from_secs(5));
        assert_eq!(settings.throttle.max_lock_waiters, Some(0));
    }

    #[test]
    fn settings_round_trip_through_json() {
        let mut settings = BackfillSettings::default();
        settings.pacing.nice_ratio = 0.25;
        settings.throttle.flag_file = Some(PathBuf::from("/run/zdm.pause"));
        let json = serde_json::to_string(&settings).expect("serialize");
        assert!(json.contains("\"batch_target\":\"200ms\""), "{json}");
        let back: BackfillSettings = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, settings);
    }

    #[test]
    fn contradicting_settings_are_refused_and_leave_the_old_value() {
        let mut settings = BackfillSettings::default();
        let error = settings
            .apply(Setting::MinBatchRows(200_000))
            .expect_err("above max");
        assert_eq!(
            error.to_string(),
            "min_batch_rows: must not exceed max_batch_rows (100000)"
        );
        assert_eq!(settings.pacing.min_rows, 10);
        settings
            .apply(Setting::MaxBatchRows(50))
            .expect("above min");
        assert!(settings.apply(Setting::MinBatchRows(51)).is_err());
        let error = settings
            .apply(Setting::MaxBatchRows(5))
            .expect_err("below min");
        assert_eq!(
            error.to_string(),
            "max_batch_rows: must not be below min_batch_rows (10)"
        );
    }
}
