//! Who is running zdm (OS user, host, process id) and how the engine's connections
//! announce it to PostgreSQL (`application_name`), so another zdm can name the holder.

use std::fmt;

use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;

use crate::db::DatabaseUrl;

/// Prefix of the `application_name` of every connection the engine opens.
const APPLICATION_PREFIX: &str = "zdm pid=";

/// The person and process behind a run; recorded with every command in schema `zdm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub os_user: String,
    pub host: String,
    pub pid: u32,
}

impl Identity {
    /// This process.
    pub fn current() -> Self {
        Identity {
            os_user: os_user(),
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// `zdm pid=1234 host=bastion-1`: the pid comes first because PostgreSQL cuts
    /// application names at 63 bytes and a long host name must not hide it.
    pub fn application_name(&self) -> String {
        let name = format!("{APPLICATION_PREFIX}{} host={}", self.pid, self.host);
        truncate_to_bytes(&name, 63).to_string()
    }

    /// Connection options that carry this identity.
    pub fn apply(&self, options: PgConnectOptions) -> PgConnectOptions {
        options.application_name(&self.application_name())
    }
}

/// A connection to `url` (without the run lock) that announces this process like every
/// zdm connection: for reading, the audit trail, the gates. It gives up after the URL's
/// connect timeout and its statements after [`crate::db::READ_STATEMENT_TIMEOUT`].
pub async fn connect(url: &DatabaseUrl) -> Result<PgConnection, sqlx::Error> {
    let options = Identity::current().apply(url.connect_options()?);
    url.connect_with(&options).await
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} (pid {})", self.os_user, self.host, self.pid)
    }
}

/// Reads back `(pid, host)` from an application name written by [`Identity::application_name`].
pub fn parse_application_name(name: &str) -> Option<(u32, String)> {
    let rest = name.strip_prefix(APPLICATION_PREFIX)?;
    let (pid, host) = rest.split_once(" host=")?;
    Some((pid.parse().ok()?, host.to_string()))
}

fn os_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| format!("uid {uid}")),
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown host".to_string())
}

fn truncate_to_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_round_trip_and_keep_the_pid_when_cut() {
        let me = Identity {
            os_user: "dba".to_string(),
            host: "bastion-1".to_string(),
            pid: 4242,
        };
        assert_eq!(me.application_name(), "zdm pid=4242 host=bastion-1");
        assert_eq!(
            parse_application_name(&me.application_name()),
            Some((4242, "bastion-1".to_string()))
        );
        let long = Identity {
            host: "é".repeat(60),
            ..me
        };
        let name = long.application_name();
        assert!(name.len() <= 63, "{name}");
        assert_eq!(
            parse_application_name(&name).map(|(pid, _)| pid),
            Some(4242)
        );
        assert_eq!(parse_application_name("psql"), None);
    }
}
