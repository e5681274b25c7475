//! One request line read from the control socket: a [`Command`] for the run, or one of
//! the socket's own requests (`attach`, `info`), with clear words for anything else.

use serde_json::Value;

use crate::protocol::Command;
use crate::suggest;

/// The socket's own requests, answered without the run.
pub const SOCKET_REQUESTS: [&str; 2] = ["attach", "info"];

/// What a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Handed to the run.
    Run(Command),
    /// Turn this connection into a stream of events.
    Attach,
    /// Which migration this socket belongs to (answered by the socket itself).
    Info,
}

impl Request {
    /// The JSON line a client sends (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Request::Run(command) => serde_json::to_string(command)
                .unwrap_or_else(|_| format!(r#"{{"command":"{}"}}"#, command.name())),
            Request::Attach => r#"{"command":"attach"}"#.to_string(),
            Request::Info => r#"{"command":"info"}"#.to_string(),
        }
    }
}

/// Reads one request line; the error is the sentence sent back to the client.
pub fn parse(line: &str) -> Result<Request, String> {
    const EXAMPLE: &str = r#"e.g. {"command":"status"}"#;
    let value: Value = serde_json::from_str(line).map_err(|error| {
        format!("not valid JSON ({error}); send one JSON object per line, {EXAMPLE}")
    })?;
    let Value::Object(object) = &value else {
        return Err(format!(
            "a request is a JSON object with a \"command\" field, {EXAMPLE}"
        ));
    };
    let name = match object.get("command") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(format!("\"command\" must be a string, {EXAMPLE}")),
        None => return Err(format!("the request has no \"command\" field, {EXAMPLE}")),
    };
    match name {
        "attach" => return Ok(Request::Attach),
        "info" => return Ok(Request::Info),
        _ => {}
    }
    let names: Vec<&str> = Command::NAMES
        .iter()
        .chain(SOCKET_REQUESTS.iter())
        .copied()
        .collect();
    // `no-throttle` as typed on the command line is the same command.
    let normalized = name.replace('-', "_");
    if !names.contains(&normalized.as_str()) {
        return Err(format!(
            "unknown command `{name}`{}",
            suggest::hint(&normalized, &names, &suggest::one_of(&names))
        ));
    }
    let mut object = object.clone();
    object.insert("command".to_string(), Value::String(normalized.clone()));
    serde_json::from_value::<Command>(Value::Object(object))
        .map(Request::Run)
        .map_err(|error| match normalized.as_str() {
            "set" => format!(
                "bad `set` request: {error}; e.g. {{\"command\":\"set\",\"key\":\"batch_target\",\"value\":\"200ms\"}}"
            ),
            "get" => format!(
                "bad `get` request: {error}; e.g. {{\"command\":\"get\",\"key\":\"batch_target\"}}"
            ),
            _ => format!("bad `{normalized}` request: {error}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::setting::{Setting, SettingKey};
    use std::time::Duration;

    #[test]
    fn every_request_parses() {
        assert_eq!(parse(r#"{"command":"attach"}"#), Ok(Request::Attach));
        assert_eq!(parse(r#"{"command":"info"}"#), Ok(Request::Info));
        assert_eq!(
            parse(r#"{"command":"no-throttle"}"#),
            Ok(Request::Run(Command::NoThrottle))
        );
        assert_eq!(
            parse(r#"{"command":"set","key":"max_replica_lag","value":"2s"}"#),
            Ok(Request::Run(Command::Set(Setting::MaxReplicaLag(Some(
                Duration::from_secs(2)
            )))))
        );
        assert_eq!(
            parse(r#" {"command":"get","key":"nice_ratio"} "#),
            Ok(Request::Run(Command::Get {
                key: SettingKey::NiceRatio
            }))
        );
    }

    #[test]
    fn requests_print_as_they_parse() {
        for request in [
            Request::Attach,
            Request::Info,
            Request::Run(Command::Abort),
            Request::Run(Command::Set(Setting::MaxRowsPerSecond(Some(10.0)))),
        ] {
            assert_eq!(parse(&request.to_line()), Ok(request));
        }
    }

    #[test]
    fn bad_requests_get_sentences() {
        let error = |line: &str| parse(line).expect_err(line);
        assert!(error("pause").starts_with("not valid JSON"));
        assert!(error("[1,2]").contains("JSON object with a \"command\" field"));
        assert!(error(r#"{"cmd":"pause"}"#).contains("no \"command\" field"));
        assert!(error(r#"{"command":7}"#).contains("must be a string"));
        let unknown = error(r#"{"command":"pasue"}"#);
        assert!(
            unknown.starts_with("unknown command `pasue`; did you mean `pause`?"),
            "{unknown}"
        );
        assert!(unknown.contains("`attach`"), "{unknown}");
        let set = error(r#"{"command":"set","key":"batch_traget","value":"1s"}"#);
        assert!(set.contains("did you mean `batch_target`"), "{set}");
        let set = error(r#"{"command":"set","key":"batch_target"}"#);
        assert!(set.contains("missing field `value`"), "{set}");
        let get = error(r#"{"command":"get"}"#);
        assert!(get.starts_with("bad `get` request"), "{get}");
    }
}
