//! Connection parameters resolved as libpq resolves them, so that zdm connects wherever
//! `psql` does: what the URL says wins, then the `PG*` environment variable, then the
//! default; a missing password comes from the password file (`PGPASSFILE`, else
//! `~/.pgpass`). sqlx reads most of the variables itself but not `PGCONNECT_TIMEOUT`, an
//! empty URL host (`postgresql://app@/db?host=/socket/dir`), libpq's password-file rules
//! or `sslmode=require` turning into `verify-ca` when a root certificate is given; this
//! module is the one place that knows them.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// libpq's `connect_timeout` default is "wait forever"; zdm's is this, so that a server
/// that accepts and never answers is an error, not a hung console.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq never waits less than this: a `connect_timeout` of 1 means 2 seconds.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The variables that say which server and database to use; any of them set is "a
/// database was given" when there is no URL (the others only qualify a connection).
pub const LOCATING_VARIABLES: [&str; 5] =
    ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"];

/// One libpq parameter: its keyword in a URL's query and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Host,
    HostAddr,
    Port,
    User,
    Password,
    DbName,
    SslMode,
    SslRootCert,
    SslCert,
    SslKey,
    ApplicationName,
    ConnectTimeout,
    Options,
    PassFile,
}

const KEYS: [(Keyword, &str, &str); 14] = [
    (Keyword::Host, "host", "PGHOST"),
    (Keyword::HostAddr, "hostaddr", "PGHOSTADDR"),
    (Keyword::Port, "port", "PGPORT"),
    (Keyword::User, "user", "PGUSER"),
    (Keyword::Password, "password", "PGPASSWORD"),
    (Keyword::DbName, "dbname", "PGDATABASE"),
    (Keyword::SslMode, "sslmode", "PGSSLMODE"),
    (Keyword::SslRootCert, "sslrootcert", "PGSSLROOTCERT"),
    (Keyword::SslCert, "sslcert", "PGSSLCERT"),
    (Keyword::SslKey, "sslkey", "PGSSLKEY"),
    (Keyword::ApplicationName, "application_name", "PGAPPNAME"),
    (
        Keyword::ConnectTimeout,
        "connect_timeout",
        "PGCONNECT_TIMEOUT",
    ),
    (Keyword::Options, "options", "PGOPTIONS"),
    (Keyword::PassFile, "passfile", "PGPASSFILE"),
];

/// The parameters one connection string sets, before the environment fills the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    values: Vec<(Keyword, String)>,
    home: Option<PathBuf>,
}

impl Params {
    fn get(&self, key: Keyword) -> Option<&str> {
        // A query parameter comes after the URL's own parts and wins, as in libpq.
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: Keyword, value: String) {
        self.values.push((key, value));
    }

    /// Parses a `postgres://` or `postgresql://` URL the way libpq does:
    /// `postgresql://[user[:password]@][host][:port][/dbname][?keyword=value&…]`, every
    /// part optional and percent-decoded.
    pub fn from_url(url: &str) -> Result<Params, String> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or("a database URL must start with postgres:// or postgresql://")?;
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (before_query, None),
        };
        let mut params = Params::default();
        let host_port = match authority.rsplit_once('@') {
            Some((user_info, host_port)) => {
                let (user, password) = match user_info.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (user_info, None),
                };
                if !user.is_empty() {
                    params.set(Keyword::User, decode(user)?);
                }
                if let Some(password) = password {
                    params.set(Keyword::Password, decode(password)?);
                }
                host_port
            }
            None => authority,
        };
        if host_port.contains(',') {
            return Err("several hosts in one URL are not supported: give one host".into());
        }
        let (host, port) = split_host_port(host_port)?;
        if !host.is_empty() {
            params.set(Keyword::Host, decode(host)?);
        }
        if let Some(port) = port.filter(|p| !p.is_empty()) {
            params.set(Keyword::Port, port.to_string());
        }
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            params.set(Keyword::DbName, decode(path)?);
        }
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                format!("URL parameter {pair:?} has no value (expected key=value)")
            })?;
            let key = decode(key)?;
            let found = KEYS.iter().find(|(_, name, _)| *name == key).map(|k| k.0);
            let Some(key) = found else {
                return Err(format!(
                    "unknown URL parameter {key:?} (libpq's are {})",
                    KEYS.map(|(_, name, _)| name).join(", ")
                ));
            };
            params.set(key, decode(value)?);
        }
        Ok(params)
    }

    /// Whether any of [`LOCATING_VARIABLES`] is set (non-empty).
    pub fn env_names_a_database() -> bool {
        LOCATING_VARIABLES.iter().any(|name| env(name).is_some())
    }

    /// These parameters with the environment's for every one they leave unset (`lookup`
    /// is `std::env::var` but for tests); `HOME` locates `~/.pgpass` and
    /// `~/.postgresql/root.crt`.
    pub fn with_env(self, lookup: impl Fn(&str) -> Option<String>) -> Params {
        let lookup = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let mut values: Vec<(Keyword, String)> = KEYS
            .iter()
            .filter(|(key, _, _)| self.get(*key).is_none())
            .filter_map(|(key, _, variable)| lookup(variable).map(|value| (*key, value)))
            .collect();
        values.extend(self.values);
        Params {
            values,
            home: lookup("HOME").map(PathBuf::from),
        }
    }

    /// Each parameter from the URL, else (after [`Params::with_env`]) its variable.
    fn resolved(&self, key: Keyword) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// How long to wait for the server to answer: `connect_timeout` (URL) or
    /// `PGCONNECT_TIMEOUT`, in whole seconds as in libpq (0 or less: no limit; 1 is 2),
    /// else [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(&self) -> Result<Option<Duration>, String> {
        let Some(text) = self.resolved(Keyword::ConnectTimeout) else {
            return Ok(Some(DEFAULT_CONNECT_TIMEOUT));
        };
        let seconds: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("connect_timeout {text:?} is not a whole number of seconds"))?;
        Ok((seconds > 0)
            .then(|| Duration::from_secs(seconds.unsigned_abs()).max(MIN_CONNECT_TIMEOUT)))
    }

    /// The options to connect with: every field set from the URL, the environment or
    /// libpq's default, so nothing depends on how sqlx would read the same variables.
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        // sqlx's constructor reads the environment too; every field that matters is set
        // below, so what it read only stands where libpq would read the same.
        let mut options = PgConnectOptions::new_without_pgpass();
        let port = self.port()?;
        options = options.port(port);
        let host = self.target_host(port)?;
        options = if host.starts_with('/') {
            options.socket(&host)
        } else {
            options.host(&host)
        };
        if let Some(user) = self.resolved(Keyword::User) {
            options = options.username(&user);
        }
        if let Some(database) = self.resolved(Keyword::DbName) {
            options = options.database(&database);
        }
        if let Some(password) = self.password() {
            options = options.password(&password);
        }
        let (mode, root_cert) = self.ssl()?;
        options = options.ssl_mode(mode);
        if let Some(root) = root_cert {
            options = options.ssl_root_cert(root);
        }
        if let Some(cert) = self.resolved(Keyword::SslCert) {
            options = options.ssl_client_cert(cert);
        }
        if let Some(key) = self.resolved(Keyword::SslKey) {
            options = options.ssl_client_key(key);
        }
        if let Some(name) = self.resolved(Keyword::ApplicationName) {
            options = options.application_name(&name);
        }
        // PGOPTIONS was read by sqlx's constructor already; the URL's `options` replaces
        // it in libpq, and goes after it here, where later settings win.
        if let Some(text) = self.get(Keyword::Options) {
            options = options.options(parse_options(text)?);
        }
        Ok(options)
    }

    fn port(&self) -> Result<u16, String> {
        match self.resolved(Keyword::Port) {
            Some(text) => text
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("port {text:?} is not a port number")),
            None => Ok(5432),
        }
    }

    /// Where to connect: `hostaddr`, else `host` (a directory is a Unix socket's), else
    /// libpq's default.
    fn target_host(&self, port: u16) -> Result<String, String> {
        match (
            self.resolved(Keyword::HostAddr),
            self.resolved(Keyword::Host),
        ) {
            (Some(addr), _) => {
                addr.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("hostaddr {addr:?} is not an IP address"))?;
                Ok(addr)
            }
            (None, Some(host)) => Ok(host),
            (None, None) => Ok(default_host(port)),
        }
    }

    /// The password given (URL, PGPASSWORD), else the password file's for this host,
    /// port, database (by default the user's name) and user.
    fn password(&self) -> Option<String> {
        if let Some(password) = self.resolved(Keyword::Password) {
            return Some(password);
        }
        let file = self
            .resolved(Keyword::PassFile)
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|home| home.join(".pgpass")))?;
        let port = self.port().ok()?;
        // libpq matches the host as given; without one, what it connects to.
        let host = match self.resolved(Keyword::Host) {
            Some(host) => host,
            None => self.target_host(port).ok()?,
        };
        let user = self.resolved(Keyword::User).unwrap_or_else(|| {
            PgConnectOptions::new_without_pgpass()
                .get_username()
                .to_string()
        });
        let database = self
            .resolved(Keyword::DbName)
            .unwrap_or_else(|| user.clone());
        passfile_password(&file, &host, port, &database, &user)
    }

    /// Whether the user's own options (URL or PGOPTIONS) set `name`.
    pub fn options_set(&self, name: &str) -> bool {
        self.resolved(Keyword::Options)
            .and_then(|text| parse_options(&text).ok())
            .is_some_and(|pairs| pairs.iter().any(|(key, _)| key == name))
    }

    /// libpq's sslmode rules: `prefer` by default; `require` encrypts without checking
    /// the certificate unless a root certificate is given (explicitly, or
    /// `~/.postgresql/root.crt` exists), when it checks it like `verify-ca`;
    /// `sslrootcert=system` trusts the system's roots and implies `verify-full`.
    fn ssl(&self) -> Result<(PgSslMode, Option<PathBuf>), String> {
        let mode = match self.resolved(Keyword::SslMode) {
            Some(text) => PgSslMode::from_str(&text).map_err(|_| {
                format!(
                    "sslmode {text:?} is not one of disable, allow, prefer, require, \
                     verify-ca, verify-full"
                )
            })?,
            None => PgSslMode::Prefer,
        };
        let explicit = self.resolved(Keyword::SslRootCert);
        if explicit.as_deref() == Some("system") {
            return Ok((PgSslMode::VerifyFull, None));
        }
        let root = explicit.map(PathBuf::from).or_else(|| {
            self.home
                .as_ref()
                .map(|home| home.join(".postgresql").join("root.crt"))
                .filter(|path| path.is_file())
        });
        let mode = match (mode, &root) {
            (PgSslMode::Require, Some(_)) => PgSslMode::VerifyCa,
            (mode, _) => mode,
        };
        Ok((mode, root))
    }
}

/// An environment variable, with empty meaning unset (as `DATABASE_URL=` does in zdm).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `host:port`, `[v6addr]:port`, `host`, `:port` or nothing.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 host in a URL needs its closing ]")?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(|| format!("unexpected {after:?} after the IPv6 host")),
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

/// Percent-decoding (`%2Fsocket%2Fdir` is `/socket/dir`); `+` stays `+`, as in libpq.
pub(crate) fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("invalid percent-encoding in the URL")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to invalid UTF-8".to_string())
}

/// Percent-encodes one part of a URL built from the environment.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A libpq `options` string (`-c name=value -c …`, also `-cname=value` and
/// `--name=value`) as settings; anything else is refused rather than silently dropped.
fn parse_options(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = text.split_whitespace();
    let mut pairs = Vec::new();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words
                .next()
                .ok_or("options: -c needs a name=value after it")?
                .to_string()
        } else if let Some(setting) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            setting.to_string()
        } else {
            return Err(format!(
                "options: {word:?} is not supported (give settings as -c name=value)"
            ));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("options: {setting:?} is not name=value"))?;
        pairs.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(pairs)
}

/// libpq's default when no host is given: the Unix socket directory where a server
/// listens on `port` (Debian's, then the upstream default), else localhost.
fn default_host(port: u16) -> String {
    let socket = format!(".s.PGSQL.{port}");
    ["/var/run/postgresql", "/tmp"]
        .into_iter()
        .find(|dir| Path::new(dir).join(&socket).exists())
        .unwrap_or("localhost")
        .to_string()
}

/// The password a libpq password file gives for this connection, as libpq reads it:
/// lines `host:port:database:user:password`, `*` matches anything, `\` escapes `:` and
/// `\`, the first match wins; a Unix-socket connection matches host `localhost`; a file
/// that others may read is ignored (with a warning in the log), like a missing one.
fn passfile_password(
    file: &Path,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<String> {
    let text = match read_private(file) {
        Ok(text) => text?,
        Err(warning) => {
            tracing::warn!("{warning}");
            return None;
        }
    };
    let host = if host.is_empty() || host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    let wanted = [host, port.as_str(), database, user];
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_passfile_line(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = [h, p, d, u]
                .iter()
                .zip(wanted)
                .all(|(field, wanted)| field.as_str() == "*" || field.as_str() == wanted);
            matches.then(|| password.clone())
        })
}

/// The file's text; `Ok(None)` when it does not exist; `Err` (a warning) when it may not
/// be used.
fn read_private(file: &Path) -> Result<Option<String>, String> {
    let metadata = match std::fs::metadata(file) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("password file {} ignored: {error}", file.display())),
    };
    if !metadata.is_file() {
        return Err(format!(
            "password file {} is not a plain file",
            file.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "password file {} has group or world access and is ignored; permissions \
                 should be u=rw (0600) or less",
                file.display()
            ));
        }
    }
    std::fs::read_to_string(file)
        .map(Some)
        .map_err(|error| format!("password file {} ignored: {error}", file.display()))
}

/// The `:`-separated fields of a password-file line, `\:` and `\\` unescaped.
fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            // The password is the last field and may hold unescaped colons.
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(url: &str, env: &[(&str, &str)]) -> Params {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Params::from_url(url)
            .expect("parses")
            .with_env(|name| env.get(name).cloned())
    }

    #[test]
    fn urls_parse_as_libpq_reads_them() {
        let p = resolve(
            "postgresql://app:p%40ss@db.example:6543/shop?sslmode=require",
            &[],
        );
        assert_eq!(p.get(Keyword::User), Some("app"));
        assert_eq!(p.get(Keyword::Password), Some("p@ss"));
        assert_eq!(p.get(Keyword::Host), Some("db.example"));
        assert_eq!(p.get(Keyword::Port), Some("6543"));
        assert_eq!(p.get(Keyword::DbName), Some("shop"));
        assert_eq!(p.get(Keyword::SslMode), Some("require"));

        // No host in the authority: the socket directory comes from the query.
        let p = resolve("postgresql://app@/db?host=/socket/dir", &[]);
        let options = p.connect_options().expect("options");
        assert_eq!(options.get_socket(), Some(&PathBuf::from("/socket/dir")));
        assert_eq!(options.get_username(), "app");
        assert_eq!(options.get_database(), Some("db"));
        // The same socket percent-encoded as the host.
        let p = resolve("postgresql://%2Fsocket%2Fdir:5433/db", &[]);
        let options = p.connect_options().expect("options");
        assert_eq!(options.get_socket(), Some(&PathBuf::from("/socket/dir")));
        assert_eq!(options.get_port(), 5433);

        let p = resolve("postgres://[::1]:5444/db", &[]);
        assert_eq!(p.get(Keyword::Host), Some("::1"));
        assert_eq!(p.get(Keyword::Port), Some("5444"));

        for bad in [
            "postgres://a,b/db",
            "postgres://h/db?nosuch=1",
            "postgres://h/db?sslmode",
            "mysql://h/db",
        ] {
            assert!(Params::from_url(bad).is_err(), "{bad}");
        }
        let error = resolve("postgres://h/db?sslmode=sometimes", &[])
            .connect_options()
            .expect_err("bad sslmode");
        assert!(error.contains("verify-full"), "{error}");
    }

    #[test]
    fn the_url_wins_over_the_environment_which_fills_the_rest() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "7000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGAPPNAME", "envapp"),
            ("PGSSLMODE", "disable"),
        ];
        let options = resolve("postgres://urluser@urlhost/urldb", &env)
            .connect_options()
            .expect("options");
        assert_eq!(options.get_host(), "urlhost");
        assert_eq!(options.get_port(), 7000);
        assert_eq!(options.get_username(), "urluser");
        assert_eq!(options.get_database(), Some("urldb"));
        assert_eq!(options.get_application_name(), Some("envapp"));
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Disable));

        let options = resolve("postgresql://", &env)
            .connect_options()
            .expect("options");
        assert_eq!(options.get_host(), "envhost");
        assert_eq!(options.get_username(), "envuser");
        assert_eq!(options.get_database(), Some("envdb"));

        // A socket directory in PGHOST.
        let options = resolve("postgresql://", &[("PGHOST", "/run/pg")])
            .connect_options()
            .expect("options");
        assert_eq!(options.get_socket(), Some(&PathBuf::from("/run/pg")));
        assert_eq!(options.get_port(), 5432);
    }

    #[test]
    fn connect_timeouts_follow_libpq_with_a_default_of_ten_seconds() {
        let timeout = |url: &str, env: &[(&str, &str)]| resolve(url, env).connect_timeout();
        assert_eq!(
            timeout("postgres://h/db", &[]),
            Ok(Some(DEFAULT_CONNECT_TIMEOUT))
        );
        assert_eq!(
            timeout(
                "postgres://h/db?connect_timeout=7",
                &[("PGCONNECT_TIMEOUT", "3")]
            ),
            Ok(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            timeout("postgres://h/db", &[("PGCONNECT_TIMEOUT", "3")]),
            Ok(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            timeout("postgres://h/db?connect_timeout=1", &[]),
            Ok(Some(Duration::from_secs(2)))
        );
        assert_eq!(timeout("postgres://h/db?connect_timeout=0", &[]), Ok(None));
        assert!(timeout("postgres://h/db?connect_timeout=soon", &[]).is_err());
    }

    #[test]
    fn sslmode_require_verifies_only_when_given_a_root_certificate() {
        let mode = |url: &str, env: &[(&str, &str)]| {
            resolve(url, env)
                .ssl()
                .map(|(mode, root)| (format!("{mode:?}"), root))
                .expect("ssl")
        };
        let home = [("HOME", "/nonexistent-home")];
        assert_eq!(mode("postgres://h/db", &home), ("Prefer".to_string(), None));
        assert_eq!(
            mode("postgres://h/db?sslmode=require", &home),
            ("Require".to_string(), None)
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=require&sslrootcert=/ca.pem", &home),
            ("VerifyCa".to_string(), Some(PathBuf::from("/ca.pem")))
        );
        assert_eq!(
            mode(
                "postgres://h/db",
                &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", "/ca.pem")]
            ),
            ("VerifyFull".to_string(), Some(PathBuf::from("/ca.pem")))
        );
        assert_eq!(
            mode("postgres://h/db?sslrootcert=system", &home),
            ("VerifyFull".to_string(), None)
        );
    }

    #[test]
    fn options_become_settings_and_odd_ones_are_refused() {
        assert_eq!(
            parse_options("-c statement_timeout=5s -csearch_path=app --work-mem=4MB"),
            Ok(vec![
                ("statement_timeout".to_string(), "5s".to_string()),
                ("search_path".to_string(), "app".to_string()),
                ("work_mem".to_string(), "4MB".to_string()),
            ])
        );
        assert!(parse_options("-c").is_err());
        assert!(parse_options("-x 1").is_err());
        assert!(
            resolve("postgres://h/db?options=-c%20statement_timeout%3D1s", &[])
                .options_set("statement_timeout")
        );
        assert!(resolve(
            "postgres://h/db",
            &[("PGOPTIONS", "-c statement_timeout=1s")]
        )
        .options_set("statement_timeout"));
        assert!(!resolve("postgres://h/db", &[]).options_set("statement_timeout"));
    }

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\n\
             db.example:5432:shop:app:first\n\
             db.example:*:*:app:second\n\
             localhost:5432:*:app:on\\:socket:with:colons\n\
             *:*:*:*:fallback\\\\pw\n",
        )
        .expect("write");
        let lookup = |host: &str, port: u16, db: &str, user: &str| {
            passfile_password(&file, host, port, db, user)
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert_eq!(
                lookup("db.example", 5432, "shop", "app"),
                None,
                "readable by others"
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        assert_eq!(
            lookup("db.example", 5432, "shop", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup("db.example", 6000, "other", "app").as_deref(),
            Some("second")
        );
        assert_eq!(
            lookup("/run/postgresql", 5432, "shop", "app").as_deref(),
            Some("on:socket:with:colons")
        );
        assert_eq!(
            lookup("elsewhere", 1, "x", "y").as_deref(),
            Some("fallback\\pw")
        );
        assert_eq!(
            passfile_password(&dir.path().join("none"), "h", 1, "d", "u"),
            None
        );

        // Through the parameters: PGPASSFILE is used when no password is given, the
        // database defaults to the user's name, and a given password wins.
        let passfile = file.to_string_lossy().to_string();
        let env = [
            ("PGPASSFILE", passfile.as_str()),
            ("HOME", "/nonexistent-home"),
        ];
        let p = resolve("postgres://app@db.example/shop", &env);
        assert_eq!(p.password().as_deref(), Some("first"));
        let p = resolve("postgres://app:given@db.example/shop", &env);
        assert_eq!(p.password().as_deref(), Some("given"));
        let p = resolve("postgresql://app@/shop?host=/run/pg", &env);
        assert_eq!(p.password().as_deref(), Some("on:socket:with:colons"));
    }

    #[test]
    fn env_urls_encode_their_parts() {
        assert_eq!(encode("a b/c@d"), "a%20b%2Fc%40d");
        assert_eq!(decode(&encode("/run/é pg")), Ok("/run/é pg".to_string()));
    }
}
