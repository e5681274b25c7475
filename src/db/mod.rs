//! PostgreSQL access shared by every part of zdm: identifier quoting, password-free URLs
//! and the session settings a run's connections use whatever the role's defaults say.

pub mod catalog;

use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, PgConnection};

/// How long a session of a run may sit idle inside a transaction before the server ends
/// it. zdm's transactions never wait on zdm itself, so only a stalled (SIGSTOPped,
/// swapped out) zdm trips it, and then its row and table locks are freed for the
/// application instead of being held for as long as zdm is stuck.
const IDLE_IN_TRANSACTION: &str = "60s";

/// Connection options for a run's own sessions (the engine's connection, the run lock):
/// they override the role's and server's defaults knowingly, so that a role with
/// `statement_timeout = '100ms'` or `lock_timeout` set for its applications does not
/// cancel zdm's statements. `statement_timeout` is `statement` (zdm.toml
/// `statement_timeout_ms`, none by default: each DDL step and backfill batch sets its own
/// bound); `lock_timeout` is off at the session level because every DDL step and batch
/// sets its own, and zdm's own state writes wait only for zdm's own short transactions.
/// `idle_session_timeout` is set after connecting ([`keep_session_open`]): servers before
/// PostgreSQL 14 refuse it in the startup packet.
pub fn run_session(options: PgConnectOptions, statement: Option<Duration>) -> PgConnectOptions {
    let statement = statement.map_or_else(|| "0".to_string(), |d| format!("{}ms", d.as_millis()));
    options.options([
        ("statement_timeout", statement),
        ("lock_timeout", "0".to_string()),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION.to_string(),
        ),
    ])
}

/// Switches a role's `idle_session_timeout` off for this session: a run's connections are
/// idle for long stretches by design (the run lock's between checks, the engine's during
/// a pause). PostgreSQL 14 and later; older servers have no such timeout.
pub async fn keep_session_open(conn: &mut PgConnection) {
    if let Err(error) = conn.execute("SET idle_session_timeout = 0").await {
        tracing::debug!(%error, "idle_session_timeout is not available");
    }
}

/// A connection URL that never shows its password: `Display` and `Debug` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: String) -> Self {
        DatabaseUrl(url)
    }

    /// The URL with its password, for connecting only: never print or log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Connection options parsed from the URL. Only `postgres://` and `postgresql://`
    /// URLs are taken: anything else (`postgresql:/user:pw@host/db`, one slash short)
    /// would be read with the rest as a database name, which the server then echoes back
    /// in its error, password and all.
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        if !(self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")) {
            return Err(sqlx::Error::Configuration(
                "a database URL must start with postgres:// or postgresql://".into(),
            ));
        }
        self.0.parse()
    }

    /// A small pool of connections to this database.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.connect_options()?)
            .await
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Quotes an SQL identifier (`order` → `"order"`, `a"b` → `"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A connection URL fit to show or log: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let unreadable =
        |scheme: &str| format!("{scheme}… (not a URL zdm can read; the rest is not shown)");
    let Some((scheme, rest)) = url.split_once("://") else {
        // Nothing past the scheme: a malformed URL may hold a password anywhere.
        return match url.split_once(':') {
            Some((scheme, _)) if is_scheme(scheme) => unreadable(&format!("{scheme}:")),
            _ => unreadable(""),
        };
    };
    if !is_scheme(scheme) {
        return unreadable("");
    }
    // The authority ends at the first '/', '?' or '#'; user info ends at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // An '@' after the authority, or a "port" that is not a number, means the user info
    // holds a '/', '?', '#' or ':' of its own: where the password ends is anyone's guess.
    let port_is_odd = !authority.contains('@')
        && !authority.ends_with(']')
        && authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.chars().all(|c| c.is_ascii_digit()));
    if tail.contains('@') || port_is_odd {
        return format!("{scheme}://{}", unreadable(""));
    }
    let redacted_authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let redacted_tail = redact_query_password(tail);
    format!("{scheme}://{redacted_authority}{redacted_tail}")
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Redacts a `password=` query parameter, which libpq-style URLs also accept.
fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => param.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("Order Items"), "\"Order Items\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://app:s3cr3t@db.example:5432/shop"),
            "postgres://app:***@db.example:5432/shop"
        );
        assert_eq!(
            redact_url("postgresql://app:p@ss:w@rd@db/shop?sslmode=require"),
            "postgresql://app:***@db/shop?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/shop?user=app&password=hunter2&sslmode=verify-full"),
            "postgres://db/shop?user=app&password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/shop"),
            "postgres://postgres@127.0.0.1:5432/shop"
        );
        for unreadable in [
            "not a url",
            "postgresql:/secretuser:PW@127.0.0.1/e7",
            "postgres://secretuser:P/W@127.0.0.1/e7",
            "postgres://secretuser:PW?x@127.0.0.1/e7",
            "postgres://secretuser:PW",
        ] {
            let shown = redact_url(unreadable);
            assert!(
                !shown.contains("PW") && !shown.contains("P/W") && !shown.contains("secretuser"),
                "{unreadable} → {shown}"
            );
        }
        assert_eq!(
            redact_url("postgresql:/secretuser:PW@127.0.0.1/e7"),
            "postgresql:… (not a URL zdm can read; the rest is not shown)"
        );
        assert_eq!(redact_url("postgres://[::1]/shop"), "postgres://[::1]/shop");
        assert_eq!(
            redact_url("postgres://db:5432/shop"),
            "postgres://db:5432/shop"
        );
        let one_slash = DatabaseUrl::new("postgresql:/secretuser:PW@127.0.0.1/e7".to_string());
        let error = one_slash
            .connect_options()
            .expect_err("refused")
            .to_string();
        assert!(!error.contains("PW"), "{error}");
    }

    #[test]
    fn database_urls_print_redacted() {
        let url = DatabaseUrl::new("postgres://app:s3cr3t@db/shop".to_string());
        assert_eq!(url.to_string(), "postgres://app:***@db/shop");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        assert_eq!(url.expose(), "postgres://app:s3cr3t@db/shop");
    }
}
