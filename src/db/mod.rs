//! PostgreSQL access shared by every part of zdm: identifier quoting, password-free URLs
//! resolved as libpq resolves them ([`conninfo`]), connections that never wait forever,
//! and the session settings a run's connections use whatever the role's defaults say.

pub mod advice;
pub mod catalog;
pub mod conninfo;

use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

use conninfo::Params;

/// The `statement_timeout` of every connection zdm opens from a URL, so a read (the
/// catalog for `zdm plan`, the state for `zdm status`, the gates' queries, the audit
/// trail) on a stuck server ends with an error instead of hanging. A run's own sessions
/// replace it ([`run_session`]); a `statement_timeout` in the URL's or PGOPTIONS's
/// `options` wins over it.
pub const READ_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// The database the libpq environment names when no URL is given (any of
    /// [`conninfo::LOCATING_VARIABLES`] set), as a URL without the password: it shows
    /// where zdm connects, and a detached runner that inherits the same environment
    /// reads the password (`PGPASSWORD`, the password file) the same way.
    pub fn from_libpq_env() -> Option<DatabaseUrl> {
        if !Params::env_names_a_database() {
            return None;
        }
        let var = conninfo::env;
        let mut url = String::from("postgresql://");
        if let Some(user) = var("PGUSER") {
            url.push_str(&conninfo::encode(&user));
            url.push('@');
        }
        let mut query = Vec::new();
        match var("PGHOST") {
            Some(host) if host.starts_with('/') => {
                query.push(format!("host={}", conninfo::encode(&host)));
            }
            Some(host) if host.contains(':') => url.push_str(&format!("[{host}]")),
            Some(host) => url.push_str(&conninfo::encode(&host)),
            None => {}
        }
        if let Some(addr) = var("PGHOSTADDR") {
            query.push(format!("hostaddr={}", conninfo::encode(&addr)));
        }
        if let Some(port) = var("PGPORT") {
            url.push(':');
            url.push_str(&conninfo::encode(&port));
        }
        url.push('/');
        if let Some(database) = var("PGDATABASE") {
            url.push_str(&conninfo::encode(&database));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        Some(DatabaseUrl(url))
    }

    /// The URL with its password, for connecting only: never print or log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Connection options as libpq would resolve them: the URL, then the `PG*`
    /// environment for what it leaves out, then the password file ([`conninfo`]); with
    /// [`READ_STATEMENT_TIMEOUT`]. Only `postgres://` and `postgresql://` URLs are taken:
    /// anything else (`postgresql:/user:pw@host/db`, one slash short) would be read with
    /// the rest as a database name, which the server then echoes back in its error,
    /// password and all.
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        let params = self.params()?;
        let options = params.connect_options().map_err(configuration)?;
        Ok(if params.options_set("statement_timeout") {
            options
        } else {
            options.options([(
                "statement_timeout",
                format!("{}ms", READ_STATEMENT_TIMEOUT.as_millis()),
            )])
        })
    }

    /// How long a connection may take to answer (`connect_timeout` in the URL, else
    /// `PGCONNECT_TIMEOUT`, else 10 s); `None`: no limit (a value of 0, as in libpq).
    pub fn connect_timeout(&self) -> Result<Option<Duration>, sqlx::Error> {
        self.params()?.connect_timeout().map_err(configuration)
    }

    /// One connection with `options` (from [`DatabaseUrl::connect_options`], perhaps
    /// adjusted), given up after this URL's connect timeout.
    pub async fn connect_with(
        &self,
        options: &PgConnectOptions,
    ) -> Result<PgConnection, sqlx::Error> {
        connect_within(options, self.connect_timeout()?).await
    }

    /// A small pool of connections to this database; each connection, and the wait for
    /// one, is bounded by the connect timeout.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, sqlx::Error> {
        let options = self.connect_options()?;
        let timeout = self.connect_timeout()?;
        let mut pool = PgPoolOptions::new().max_connections(max_connections);
        if let Some(timeout) = timeout {
            pool = pool.acquire_timeout(timeout);
        }
        match timeout {
            Some(limit) => tokio::time::timeout(limit, pool.connect_with(options.clone()))
                .await
                .unwrap_or_else(|_| Err(timed_out(&options, limit))),
            None => pool.connect_with(options).await,
        }
    }

    fn params(&self) -> Result<Params, sqlx::Error> {
        Params::from_url(&self.0)
            .map(|params| params.with_env(conninfo::env))
            .map_err(configuration)
    }
}

/// Connects with `options`, giving up after `timeout` (`None`: waits as long as the
/// network does) with an error that names the server and the limit.
pub async fn connect_within(
    options: &PgConnectOptions,
    timeout: Option<Duration>,
) -> Result<PgConnection, sqlx::Error> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, PgConnection::connect_with(options))
            .await
            .unwrap_or_else(|_| Err(timed_out(options, limit))),
        None => PgConnection::connect_with(options).await,
    }
}

/// Where `options` connect: `host 10.0.0.5 port 5432` or `socket /run/postgresql/.s.PGSQL.5432`.
pub fn server_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!("socket {}/.s.PGSQL.{}", dir.display(), options.get_port()),
        None if options.get_host().starts_with('/') => format!(
            "socket {}/.s.PGSQL.{}",
            options.get_host(),
            options.get_port()
        ),
        None => format!("host {} port {}", options.get_host(), options.get_port()),
    }
}

fn timed_out(options: &PgConnectOptions, limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "connecting timed out: PostgreSQL at {} did not answer within {} s \
             (connect_timeout; raise it with connect_timeout=N in the URL or PGCONNECT_TIMEOUT)",
            server_address(options),
            limit.as_secs()
        ),
    ))
}

fn configuration(message: String) -> sqlx::Error {
    sqlx::Error::Configuration(message.into())
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

/// `url` without its password, and the password (decoded), for a client program such as
/// `pg_dump` that must get it from `PGPASSWORD` rather than its command line (which every
/// user of the host can read). `None` when where the password ends cannot be told.
pub fn split_password(url: &str) -> Option<(String, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if !is_scheme(scheme) || tail.contains('@') {
        return None;
    }
    let mut password = None;
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, secret)) => {
                password = Some(conninfo::decode(secret).ok()?);
                format!("{user}@{host}")
            }
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|param| match param.split_once('=') {
                    Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                        password = conninfo::decode(value).ok();
                        false
                    }
                    _ => true,
                })
                .collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_string(),
    };
    Some((format!("{scheme}://{authority}{tail}"), password))
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
    fn a_password_is_taken_out_of_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://app:p%40ss@db:5432/shop?sslmode=require"),
            Some((
                "postgres://app@db:5432/shop?sslmode=require".to_string(),
                Some("p@ss".to_string())
            ))
        );
        assert_eq!(
            split_password("postgresql://app@db/shop?password=s3cret&application_name=x"),
            Some((
                "postgresql://app@db/shop?application_name=x".to_string(),
                Some("s3cret".to_string())
            ))
        );
        assert_eq!(
            split_password("postgres://db/shop"),
            Some(("postgres://db/shop".to_string(), None))
        );
        assert_eq!(split_password("not a url"), None);
    }

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
