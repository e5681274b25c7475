//! What an operator can ask of a running migration: the `Command` enum in, and the
//! `Reply` the run answers with (`{"ok": true, ...}` or `{"ok": false, "error": ...}`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::event::Progress;
use super::status::Status;
use crate::settings::{Setting, SettingKey};

/// One request to the run. On the wire: `{"command": "pause"}`,
/// `{"command": "set", "key": "batch_target", "value": "200ms"}`,
/// `{"command": "get", "key": "max_rows_per_second"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Where the run is: status, progress, throttle, settings.
    Status,
    /// Stop the backfill after the current batch (its checkpoint commits) until `resume`.
    Pause,
    Resume,
    /// Change one setting from the next batch on.
    Set(Setting),
    /// Read one setting.
    Get {
        key: SettingKey,
    },
    /// Throttle now, by hand, until `no_throttle` (on top of any automatic throttle).
    Throttle,
    /// Clear the manual throttle (automatic throttle inputs still apply).
    NoThrottle,
    /// Stop the backfill after the current batch; its checkpoint holds, so a later
    /// `zdm start` resumes it. Expand stays in place (nothing is rolled back). A contract
    /// waiting for its confirmation is cancelled (nothing contracted).
    Abort,
    /// Confirm the contract of a run waiting for it (`zdm complete NAME
    /// --await-confirmation`): `confirmation` is the migration's name typed again, and
    /// `overrides` names every gate that did not pass and is accepted anyway.
    ConfirmContract {
        confirmation: String,
        #[serde(default)]
        overrides: Vec<String>,
    },
}

impl Command {
    /// Every command's wire name, for "did you mean" and help.
    pub const NAMES: [&'static str; 9] = [
        "status",
        "pause",
        "resume",
        "set",
        "get",
        "throttle",
        "no_throttle",
        "abort",
        "confirm_contract",
    ];

    /// The wire name of this command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Set(_) => "set",
            Command::Get { .. } => "get",
            Command::Throttle => "throttle",
            Command::NoThrottle => "no_throttle",
            Command::Abort => "abort",
            Command::ConfirmContract { .. } => "confirm_contract",
        }
    }
}

/// The run's answer to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done; `message` says what happened in words ("paused after batch 41").
    Done { message: String },
    /// The answer to `status`.
    Status(Box<RunStatus>),
    /// The answer to `get` (and to `set`: the value now in force).
    Value(Setting),
    /// Refused or failed, in words.
    Error(String),
}

impl Reply {
    pub fn done(message: impl Into<String>) -> Self {
        Reply::Done {
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Reply::Error(message.into())
    }

    pub fn is_ok(&self) -> bool {
        !matches!(self, Reply::Error(_))
    }
}

/// Where a run stands, as `zdm ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub migration: String,
    /// The migration's status (`expanding`, `backfilling`, ...); `null` while the command
    /// starts, before it has read or written one.
    pub status: Option<Status>,
    /// The step running now, in words.
    pub step: Option<String>,
    /// The backfill's numbers, while one runs.
    pub progress: Option<Progress>,
    pub paused: bool,
    /// Whether the operator's manual throttle is on.
    pub manual_throttle: bool,
    /// Every reason the backfill is held back right now, in words.
    pub throttle_reasons: Vec<String>,
    /// Every setting in force, as `{"batch_target": "200ms", ...}` on the wire (the
    /// values in the form `zdm ctl set` takes).
    #[serde(with = "settings_map")]
    pub settings: Vec<Setting>,
}

impl RunStatus {
    /// The value of `key` in force, when the run reported it.
    pub fn setting(&self, key: SettingKey) -> Option<&Setting> {
        self.settings.iter().find(|setting| setting.key() == key)
    }

    /// The status in words (`starting` before the command has one).
    pub fn status_words(&self) -> String {
        self.status
            .map_or_else(|| "starting".to_string(), |status| status.to_string())
    }
}

/// Settings as one JSON object of key to value text. Keys this version does not know
/// (from a newer zdm) are skipped, not fatal.
mod settings_map {
    use super::*;
    use serde::de::Error as _;

    pub fn serialize<S: Serializer>(
        settings: &[Setting],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(settings.len()))?;
        for setting in settings {
            map.serialize_entry(setting.key().name(), &setting.value_text())?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Setting>, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut settings = Vec::new();
        for (key, value) in &map {
            let Ok(key) = key.parse::<SettingKey>() else {
                continue;
            };
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            settings.push(Setting::parse_value(key, &text).map_err(D::Error::custom)?);
        }
        Ok(settings)
    }
}

/// The wire form of a reply: one flat object with `ok` and the fields of its kind.
#[derive(Serialize, Deserialize)]
struct WireReply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Box<RunStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    setting: Option<Setting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut wire = WireReply {
            ok: self.is_ok(),
            message: None,
            status: None,
            setting: None,
            error: None,
        };
        match self {
            Reply::Done { message } => wire.message = Some(message.clone()),
            Reply::Status(status) => wire.status = Some(status.clone()),
            Reply::Value(setting) => wire.setting = Some(setting.clone()),
            Reply::Error(error) => wire.error = Some(error.clone()),
        }
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireReply::deserialize(deserializer)?;
        Ok(if !wire.ok {
            Reply::Error(wire.error.unwrap_or_else(|| "the run refused".to_string()))
        } else if let Some(status) = wire.status {
            Reply::Status(status)
        } else if let Some(setting) = wire.setting {
            Reply::Value(setting)
        } else {
            Reply::Done {
                message: wire.message.unwrap_or_default(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn commands_have_a_flat_json_form() {
        let set = Command::Set(Setting::BatchTarget(Duration::from_millis(500)));
        assert_eq!(
            serde_json::to_string(&set).expect("serialize"),
            r#"{"command":"set","key":"batch_target","value":"500ms"}"#
        );
        let get: Command =
            serde_json::from_str(r#"{"command":"get","key":"max_rows_per_second"}"#).expect("get");
        assert_eq!(
            get,
            Command::Get {
                key: SettingKey::MaxRowsPerSecond
            }
        );
        for name in Command::NAMES {
            if let Ok(command) =
                serde_json::from_str::<Command>(&format!(r#"{{"command":"{name}"}}"#))
            {
                assert_eq!(command.name(), name);
            }
        }
        assert_eq!(
            serde_json::to_string(&Command::NoThrottle).expect("serialize"),
            r#"{"command":"no_throttle"}"#
        );
    }

    #[test]
    fn replies_say_ok_or_error() {
        let json = serde_json::to_string(&Reply::done("paused")).expect("serialize");
        assert_eq!(json, r#"{"ok":true,"message":"paused"}"#);
        let json = serde_json::to_string(&Reply::error("no backfill runs")).expect("serialize");
        assert_eq!(json, r#"{"ok":false,"error":"no backfill runs"}"#);
        let value = Reply::Value(Setting::MaxRowsPerSecond(None));
        let json = serde_json::to_string(&value).expect("serialize");
        assert_eq!(
            json,
            r#"{"ok":true,"setting":{"key":"max_rows_per_second","value":"none"}}"#
        );
        let back: Reply = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, value);
        let status = Reply::Status(Box::new(RunStatus {
            migration: "m".to_string(),
            status: Some(Status::Backfilling),
            step: None,
            progress: None,
            paused: true,
            manual_throttle: false,
            throttle_reasons: vec![],
            settings: vec![
                Setting::BatchTarget(Duration::from_millis(200)),
                Setting::MaxRowsPerSecond(None),
            ],
        }));
        let back: Reply = serde_json::from_str(&serde_json::to_string(&status).expect("serialize"))
            .expect("deserialize");
        assert_eq!(back, status);
    }
}
