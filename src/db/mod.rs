//! PostgreSQL access shared by every part of zdm: identifier quoting and password-free URLs.

pub mod catalog;

use std::fmt;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

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

    /// Connection options parsed from the URL.
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
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
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; user info ends at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
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
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn database_urls_print_redacted() {
        let url = DatabaseUrl::new("postgres://app:s3cr3t@db/shop".to_string());
        assert_eq!(url.to_string(), "postgres://app:***@db/shop");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        assert_eq!(url.expose(), "postgres://app:s3cr3t@db/shop");
    }
}
