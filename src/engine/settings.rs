//! The one home of a backfill's live-tunable settings: pacing and throttle limits with
//! their defaults (from `zdm.toml`, changed live by `zdm ctl set` or the console), read
//! and changed key by key in the operator's terms ([`Setting`]).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pacing::PacingSettings;
use super::throttle::ThrottleSettings;
use crate::control::setting::{Setting, SettingError, SettingKey};

/// Every setting an operator can change while the backfill runs. The defaults are those
/// of [`PacingSettings`] and [`ThrottleSettings`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackfillSettings {
    pub pacing: PacingSettings,
    pub throttle: ThrottleSettings,
}

impl BackfillSettings {
    /// The current value of one key.
    pub fn get(&self, key: SettingKey) -> Setting {
        let (pacing, throttle) = (&self.pacing, &self.throttle);
        match key {
            SettingKey::BatchTarget => Setting::BatchTarget(pacing.target),
            SettingKey::MinBatchRows => Setting::MinBatchRows(pacing.min_rows),
            SettingKey::MaxBatchRows => Setting::MaxBatchRows(pacing.max_rows),
            SettingKey::MaxRate => Setting::MaxRate(pacing.max_rows_per_second),
            SettingKey::NiceRatio => Setting::NiceRatio(pacing.nice_ratio),
            SettingKey::MaxReplicaLag => Setting::MaxReplicaLag(throttle.max_replica_lag),
            SettingKey::CriticalFactor => Setting::CriticalFactor(throttle.critical_factor),
            SettingKey::MaxLockWaiters => Setting::MaxLockWaiters(throttle.max_lock_waiters),
            SettingKey::MaxActiveSessions => {
                Setting::MaxActiveSessions(throttle.max_active_sessions_factor)
            }
            SettingKey::MaxCpu => Setting::MaxCpu(throttle.max_host_cpu_percent),
            SettingKey::MaxCanarySlowdown => Setting::MaxCanarySlowdown(throttle.max_canary_factor),
            SettingKey::ThrottleQuery => Setting::ThrottleQuery(throttle.query.clone()),
            SettingKey::FlagFile => Setting::FlagFile(throttle.flag_file.clone()),
        }
    }

    /// Every setting, in [`SettingKey::ALL`] order.
    pub fn all(&self) -> Vec<Setting> {
        SettingKey::ALL.iter().map(|key| self.get(*key)).collect()
    }

    /// Applies one setting, refusing a value that contradicts another setting (the old
    /// value stays).
    pub fn apply(&mut self, setting: Setting) -> Result<(), SettingError> {
        let conflict = |reason: String| {
            Err(SettingError::Conflict {
                key: setting.key(),
                reason,
            })
        };
        match &setting {
            Setting::MinBatchRows(min) if *min > self.pacing.max_rows => {
                return conflict(format!(
                    "must not exceed max_batch_rows ({})",
                    self.pacing.max_rows
                ));
            }
            Setting::MaxBatchRows(max) if *max < self.pacing.min_rows => {
                return conflict(format!(
                    "must not be below min_batch_rows ({})",
                    self.pacing.min_rows
                ));
            }
            _ => {}
        }
        self.assign(setting);
        Ok(())
    }

    /// Sets one value without cross-checks.
    fn assign(&mut self, setting: Setting) {
        let (pacing, throttle) = (&mut self.pacing, &mut self.throttle);
        match setting {
            Setting::BatchTarget(v) => pacing.target = v,
            Setting::MinBatchRows(v) => {
                pacing.min_rows = v;
                // The first batch is never smaller than the smallest allowed.
                pacing.start_rows = pacing.start_rows.max(v);
            }
            Setting::MaxBatchRows(v) => {
                pacing.max_rows = v;
                pacing.start_rows = pacing.start_rows.min(v);
            }
            Setting::MaxRate(v) => pacing.max_rows_per_second = v,
            Setting::NiceRatio(v) => pacing.nice_ratio = v,
            Setting::MaxReplicaLag(v) => throttle.max_replica_lag = v,
            Setting::CriticalFactor(v) => throttle.critical_factor = v,
            Setting::MaxLockWaiters(v) => throttle.max_lock_waiters = v,
            Setting::MaxActiveSessions(v) => throttle.max_active_sessions_factor = v,
            Setting::MaxCpu(v) => throttle.max_host_cpu_percent = v,
            Setting::MaxCanarySlowdown(v) => throttle.max_canary_factor = v,
            Setting::ThrottleQuery(v) => throttle.query = v,
            Setting::FlagFile(v) => throttle.flag_file = v,
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
            if let Ok(key) = key.parse::<SettingKey>() {
                settings.assign(Setting::parse_value(key, value).map_err(D::Error::custom)?);
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
            "max_rate=1234.5/s",
            "nice_ratio=0.25",
            "max_replica_lag=2s",
            "critical_factor=3x",
            "max_lock_waiters=none",
            "max_active_sessions=1.5x",
            "max_cpu=none",
            "max_canary_slowdown=6x",
            "throttle_query=SELECT 1",
            "flag_file=/run/zdm.pause",
        ] {
            let setting = Setting::parse(text).expect(text);
            settings.apply(setting.clone()).expect(text);
            assert_eq!(settings.get(setting.key()), setting, "{text}");
            assert_eq!(settings.get(setting.key()).to_string(), text);
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
    fn the_defaults_are_the_engines() {
        let settings = BackfillSettings::default();
        assert_eq!(
            settings.get(SettingKey::BatchTarget).to_string(),
            "batch_target=200ms"
        );
        assert_eq!(
            settings.get(SettingKey::MaxReplicaLag).to_string(),
            "max_replica_lag=1s"
        );
        assert_eq!(
            settings.get(SettingKey::MaxLockWaiters),
            Setting::MaxLockWaiters(ThrottleSettings::default().max_lock_waiters)
        );
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
    }
}
