//! Connections as a DBA's libpq habits expect them, on real servers: the `PG*` variables
//! without a URL, a Unix-socket directory in the URL, a password file with password
//! authentication, and a server that accepts and never answers, which must make every
//! read command fail within its connect timeout instead of hanging.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Far beyond any connect timeout used here: only a hang reaches it.
const HANG: Duration = Duration::from_secs(90);

/// Runs zdm in an empty directory (no zdm.toml) with only `env` of the libpq variables;
/// kills it and fails the test if it is still running after [`HANG`].
fn zdm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(common::zdm_binary());
    command
        .args(args)
        .current_dir(cwd.path())
        .env(
            "ZDM_LOG_FILE",
            std::env::temp_dir().join("zdm-test-connections.log"),
        )
        .env("HOME", cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run zdm");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "zdm {args:?} hung: still running after {HANG:?}\n{}",
                text(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sample_migrations() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-migrations")
        .display()
        .to_string()
}

/// A TCP server on 127.0.0.1 that accepts every connection and never sends a byte.
fn silent_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn a_silent_server_fails_every_read_command_within_its_connect_timeout() {
    let port = silent_listener();
    let url = format!("postgres://app@127.0.0.1:{port}/shop?connect_timeout=2");
    let dir = sample_migrations();
    let commands: [&[&str]; 5] = [
        &["status", "--dir", &dir],
        &["plan", "--dir", &dir],
        &["validate", "--dir", &dir],
        &["gates", "0001_orders_add_status", "--dir", &dir],
        &["audit"],
    ];
    for args in commands {
        let output = zdm(args, &[("DATABASE_URL", &url)]);
        let said = text(&output);
        assert!(!output.status.success(), "zdm {args:?}: {said}");
        assert!(
            said.contains(&format!(
                "host 127.0.0.1 port {port} did not answer within 2 s"
            )),
            "zdm {args:?} names the server and the limit: {said}"
        );
        assert!(said.contains("connect_timeout"), "zdm {args:?}: {said}");
    }

    // The commands that run the engine give up too (its own connections wait at most
    // libpq's default of 10 s).
    for args in [
        &["start", "0001_orders_add_status", "--dir", &dir][..],
        &["rollback", "0001_orders_add_status", "--dir", &dir],
    ] {
        let output = zdm(args, &[("DATABASE_URL", &url)]);
        let said = text(&output);
        assert!(!output.status.success(), "zdm {args:?}: {said}");
        assert!(
            said.contains(&format!("host 127.0.0.1 port {port} did not answer within")),
            "zdm {args:?} names the server: {said}"
        );
    }

    // The same limit from PGCONNECT_TIMEOUT, the server from PGHOST and PGPORT alone.
    let port_text = port.to_string();
    let output = zdm(
        &["status", "--dir", &dir],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port_text),
            ("PGCONNECT_TIMEOUT", "2"),
        ],
    );
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "host 127.0.0.1 port {port} did not answer within 2 s"
        )),
        "{said}"
    );
}

#[test]
fn no_url_and_no_libpq_variables_says_every_way_to_name_a_database() {
    let output = zdm(&["status", "--dir", &sample_migrations()], &[]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("no database to work on"), "{said}");
    assert!(
        said.contains("PGHOST") && said.contains("PGPASSFILE"),
        "{said}"
    );
}

#[tokio::test]
async fn the_libpq_environment_and_a_socket_directory_url_reach_the_server() {
    let pg = common::primary();
    let _pool = common::database(&pg, "shop").await;
    let port = pg.primary().port().to_string();
    let dir = sample_migrations();

    // No URL at all: PGHOST, PGPORT, PGUSER, PGDATABASE, PGAPPNAME.
    let output = zdm(
        &["status", "--dir", &dir],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "shop"),
            ("PGAPPNAME", "night-shift"),
            ("PGSSLMODE", "disable"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0001_orders_add_status"),
        "{}",
        text(&output)
    );

    // A Unix socket: the directory as the URL's host parameter, then as PGHOST.
    let socket_dir = pg.primary().data_dir().display().to_string();
    let url = format!("postgresql://postgres@/shop?host={socket_dir}&port={port}");
    let output = zdm(&["status", "--dir", &dir], &[("DATABASE_URL", &url)]);
    assert!(output.status.success(), "{}", text(&output));
    let output = zdm(
        &["audit"],
        &[
            ("PGHOST", &socket_dir),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "shop"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));

    // A wrong database in the environment is reported, and the error names it.
    let output = zdm(
        &["audit"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "no_such_db"),
        ],
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("no_such_db"), "{}", text(&output));
    pg.stop().expect("stop");
}

#[tokio::test]
async fn a_password_file_or_pgpassword_authenticates_and_no_password_is_printed() {
    const PASSWORD: &str = "s3cr3t-night:pw";
    let pg = common::primary();
    let pool = common::database(&pg, "shop").await;
    sqlx::query("CREATE ROLE app LOGIN PASSWORD 's3cr3t-night:pw'")
        .execute(&pool)
        .await
        .expect("create role");
    sqlx::query("GRANT ALL ON DATABASE shop TO app")
        .execute(&pool)
        .await
        .expect("grant");
    // Role app must give its password, over TCP and over the socket; everyone else is
    // trusted as before.
    let hba = pg.primary().data_dir().join("pg_hba.conf");
    let before = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("local all app scram-sha-256\nhost all app 127.0.0.1/32 scram-sha-256\n{before}"),
    )
    .expect("write pg_hba.conf");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&pool)
        .await
        .expect("reload");
    // The reload is asynchronous: wait until a password-less login is refused.
    let port = pg.primary().port();
    let refused = async {
        for _ in 0..100 {
            let trial = sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .username("app")
                .database("shop");
            if sqlx::PgConnection::connect_with(&trial).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    use sqlx::Connection;
    assert!(refused.await, "pg_hba.conf reload took effect");

    let home = tempfile::tempdir().expect("tempdir");
    let passfile = home.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("127.0.0.1:{port}:shop:app:{PASSWORD}\nlocalhost:{port}:*:app:{PASSWORD}\n"),
    )
    .expect("write passfile");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let passfile_text = passfile.display().to_string();
    let port_text = port.to_string();
    let socket_dir = pg.primary().data_dir().display().to_string();
    let tcp = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port_text.as_str()),
        ("PGUSER", "app"),
        ("PGDATABASE", "shop"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, &str)> = tcp.to_vec();
        env.extend_from_slice(extra);
        zdm(&["audit"], &env)
    };

    // Without a password the server refuses, and says so.
    let output = with(&[]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("password"), "{}", text(&output));

    // PGPASSFILE over TCP, PGPASSFILE over the socket (matched as localhost), PGPASSWORD.
    let output = with(&[("PGPASSFILE", &passfile_text)]);
    assert!(output.status.success(), "{}", text(&output));
    let url = format!("postgresql://app@/shop?host={socket_dir}&port={port}");
    let output = zdm(
        &["audit"],
        &[("DATABASE_URL", &url), ("PGPASSFILE", &passfile_text)],
    );
    assert!(output.status.success(), "{}", text(&output));
    let output = with(&[("PGPASSWORD", PASSWORD)]);
    assert!(output.status.success(), "{}", text(&output));

    // A password file others may read is ignored, as libpq ignores it.
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = with(&[("PGPASSFILE", &passfile_text)]);
    assert!(!output.status.success(), "{}", text(&output));

    // A wrong password in the URL: refused, and the password is not in the message.
    let url = format!("postgres://app:{PASSWORD}x@127.0.0.1:{port}/shop");
    let output = zdm(&["audit"], &[("DATABASE_URL", &url)]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains("s3cr3t"), "{}", text(&output));
    // Said once: no cause repeated under the message that already holds it.
    for command in [&["audit"][..], &["status"], &["start", "--dir", "."]] {
        let output = zdm(command, &[("DATABASE_URL", &url)]);
        let said = text(&output);
        assert_eq!(
            said.matches("password authentication failed").count(),
            1,
            "{command:?}: {said}"
        );
        assert!(!said.contains("Caused by"), "{command:?}: {said}");
    }

    // A role that may connect but not change the tables is told which grant it lacks.
    sqlx::raw_sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL);
         INSERT INTO items SELECT g, g FROM generate_series(1, 10) AS g;
         GRANT SELECT ON items TO app;",
    )
    .execute(&pool)
    .await
    .expect("items");
    let files = tempfile::tempdir().expect("dir");
    std::fs::write(
        files.path().join("0001_items_add_size.toml"),
        "[[operations]]\nop = \"add_column\"\ntable = \"items\"\n\
         column = { name = \"size\", type = \"int\" }\n",
    )
    .expect("file");
    let dir = files.path().display().to_string();
    let output = zdm(
        &["start", "--dir", &dir],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port_text.as_str()),
            ("PGUSER", "app"),
            ("PGDATABASE", "shop"),
            ("PGPASSWORD", PASSWORD),
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("GRANT") || said.contains("run zdm as that role"),
        "the missing privilege is named: {said}"
    );
    pg.stop().expect("stop");
}

#[tokio::test]
async fn reading_sessions_have_a_statement_timeout_and_run_sessions_their_own() {
    use sqlx::Row;
    let pg = common::primary();
    let _pool = common::database(&pg, "shop").await;
    let port = pg.primary().port();
    let show = |options: sqlx::postgres::PgConnectOptions| async move {
        let mut conn = zdm::db::connect_within(&options, Some(Duration::from_secs(10)))
            .await
            .expect("connect");
        sqlx::query("SHOW statement_timeout")
            .fetch_one(&mut conn)
            .await
            .expect("show")
            .get::<String, _>(0)
    };
    let url = zdm::db::DatabaseUrl::new(format!("postgres://postgres@127.0.0.1:{port}/shop"));
    let reading = url.connect_options().expect("options");
    assert_eq!(show(reading.clone()).await, "30s");
    assert_eq!(show(zdm::db::run_session(reading.clone(), None)).await, "0");
    assert_eq!(
        show(zdm::db::run_session(reading, Some(Duration::from_secs(90)))).await,
        "90s"
    );
    // The user's own setting wins over zdm's reading default.
    let url = zdm::db::DatabaseUrl::new(format!(
        "postgres://postgres@127.0.0.1:{port}/shop?options=-c%20statement_timeout%3D5min"
    ));
    assert_eq!(show(url.connect_options().expect("options")).await, "5min");
    pg.stop().expect("stop");
}

/// A server whose certificate is its own CA (what `openssl req -x509` makes by default):
/// verifying it fails, and zdm says what is wrong with the certificate and which option to
/// use, not rustls's `Other(OtherError(CaUsedAsEndEntity))`. Skipped without openssl.
#[tokio::test]
async fn a_refused_server_certificate_is_said_in_words() {
    let pg = common::primary();
    let pool = common::database(&pg, "shop").await;
    let data = pg.primary().data_dir().to_path_buf();
    let (cert, key) = (data.join("zdm-test.crt"), data.join("zdm-test.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let Ok(made) = made else {
        eprintln!("openssl is not installed: the certificate test is skipped");
        return;
    };
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // The server (maybe running as another user) must own its key, readable by it alone.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let owner = std::fs::metadata(&data).expect("data dir").uid();
    for file in [&cert, &key] {
        nix::unistd::chown(
            file.as_path(),
            Some(nix::unistd::Uid::from_raw(owner)),
            None,
        )
        .expect("chown");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for statement in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("turn TLS on");
    }
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/shop?sslmode=verify-ca&sslrootcert={}",
        pg.primary().port(),
        cert.display()
    );
    // The reload is asynchronous: retry while the server still refuses TLS itself.
    let mut said = String::new();
    for _ in 0..50 {
        let output = zdm(&["audit"], &[("DATABASE_URL", &url)]);
        said = text(&output);
        assert!(!output.status.success(), "{said}");
        if said.contains("certificate") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(said.contains("CA certificate as its own"), "{said}");
    assert!(
        said.contains(&format!(
            "could not connect to postgres://postgres@127.0.0.1:{}",
            pg.primary().port()
        )),
        "which server is still said: {said}"
    );
    assert!(
        said.contains("sslrootcert") && said.contains("sslmode=require"),
        "{said}"
    );
    assert!(
        !said.contains("OtherError") && !said.contains("CaUsedAsEndEntity"),
        "{said}"
    );
    // sslmode=require encrypts without verifying, as the message says: it connects.
    let require = format!(
        "postgres://postgres@127.0.0.1:{}/shop?sslmode=require",
        pg.primary().port()
    );
    let output = zdm(&["audit"], &[("DATABASE_URL", &require)]);
    assert!(output.status.success(), "{}", text(&output));
    pg.stop().expect("stop");
}
