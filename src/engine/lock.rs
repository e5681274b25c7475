//! The run lock: a session-level advisory lock on the target database, held for a whole
//! run, so two zdm processes never change the same database at once. A second zdm is
//! told who holds it (host and pid, read from the holder's `application_name`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use super::ddl;
use super::identity::parse_application_name;
use super::{Context, Error};

/// The advisory lock key pair: "zdm" in ASCII, and 1 for "the run lock". Advisory locks
/// are scoped to the current database, so one key gives one lock per target database.
const KEY_CLASS: i32 = 0x007a_646d;
const KEY_OBJECT: i32 = 1;

/// Who holds the run lock, as far as PostgreSQL can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The holder's zdm process id and host, when it is a zdm (from its application name).
    pub zdm_pid: Option<u32>,
    pub host: Option<String>,
    pub application_name: String,
    /// The server process serving the holder.
    pub backend_pid: Option<i32>,
    pub db_user: Option<String>,
    pub client_addr: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.zdm_pid, &self.host) {
            (Some(pid), Some(host)) => write!(f, "zdm pid {pid} on host {host}")?,
            _ if self.backend_pid.is_some() => write!(
                f,
                "a session with application name {:?}",
                self.application_name
            )?,
            _ => return f.write_str("a session zdm cannot see (it may have just finished)"),
        }
        let mut details = Vec::new();
        if let Some(user) = &self.db_user {
            details.push(format!("database user {user}"));
        }
        if let Some(addr) = &self.client_addr {
            details.push(format!("from {addr}"));
        }
        if let Some(since) = self.since {
            details.push(format!(
                "connected since {}",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if let Some(pid) = self.backend_pid {
            details.push(format!("server process {pid}"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// The held run lock; dropping it closes its connection, which releases the lock.
#[derive(Debug)]
pub struct RunLock {
    conn: PgConnection,
    /// Where the lock was taken, to take it again after its connection was lost.
    options: PgConnectOptions,
}

/// What [`RunLock::hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The lock was held all along.
    Still,
    /// Its connection was lost and the lock was taken again on a new one: whatever the
    /// run read before may have been changed by another command meanwhile.
    Retaken,
}

impl RunLock {
    /// Takes the run lock on the database `options` points at, or says who holds it.
    pub async fn acquire(options: &PgConnectOptions) -> Result<Self, Error> {
        let mut conn =
            crate::db::connect_within(options, Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT))
                .await
                .map_err(|source| Error::Connect {
                    url: target(options),
                    source,
                })?;
        // The lock's connection is idle between checks by design; a role's
        // `idle_session_timeout` must not end it (and the lock with it).
        crate::db::keep_session_open(&mut conn).await;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(KEY_CLASS)
            .bind(KEY_OBJECT)
            .fetch_one(&mut conn)
            .await
            .context("taking zdm's run lock")?;
        if locked {
            return Ok(RunLock {
                conn,
                options: options.clone(),
            });
        }
        let holder = holder(&mut conn).await?;
        Err(Error::Locked {
            holder: Box::new(holder),
        })
    }

    /// Checks that this session still holds the lock (a round trip, which also keeps the
    /// connection from looking idle to a proxy).
    pub async fn check(&mut self) -> Result<(), Error> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks \
             WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted \
               AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2)",
        )
        .bind(i64::from(KEY_CLASS))
        .bind(i64::from(KEY_OBJECT))
        .fetch_one(&mut self.conn)
        .await
        .map_err(|source| Error::LockLost {
            why: source.to_string(),
        })?;
        if held {
            Ok(())
        } else {
            Err(Error::LockLost {
                why: "the session no longer holds it".to_string(),
            })
        }
    }

    /// Makes sure the lock is held before the run changes anything more: checks it and,
    /// when its connection was lost (terminated, timed out, dropped by a proxy), takes it
    /// again on a new connection. Fails with [`Error::LockTaken`] when another session
    /// took it meanwhile, and with [`Error::LockLost`] when it cannot be taken again.
    pub async fn hold(&mut self) -> Result<Held, Error> {
        let lost = match self.check().await {
            Ok(()) => return Ok(Held::Still),
            Err(error) => error,
        };
        tracing::warn!(%lost, "zdm's run lock was lost; taking it again");
        match RunLock::acquire(&self.options).await {
            Ok(again) => {
                let old = std::mem::replace(self, again);
                drop(old);
                tracing::info!("zdm's run lock is held again");
                Ok(Held::Retaken)
            }
            Err(Error::Locked { holder }) => Err(Error::LockTaken { holder }),
            Err(other) => Err(Error::LockLost {
                why: format!("{lost}; taking it again failed: {other}"),
            }),
        }
    }

    /// Takes the lock on `options` from now on (after a failover to another server).
    pub fn retarget(&mut self, options: PgConnectOptions) {
        self.options = options;
    }

    /// The sessions server process `pid` waits for (see [`ddl::blocking`]), asked on the
    /// lock's connection, which is idle while a batch runs. For messages only: a failure
    /// is an empty list (and a lost connection is noticed by the next check).
    pub async fn blocking(&mut self, pid: i32, table: &str) -> Vec<ddl::Blocker> {
        ddl::blocking(&mut self.conn, pid, table)
            .await
            .unwrap_or_else(|error| {
                tracing::debug!(%error, "could not ask whom the batch waits for");
                Vec::new()
            })
    }

    /// Releases the lock now (dropping it does the same when the connection closes).
    pub async fn release(mut self) -> Result<(), Error> {
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(KEY_CLASS)
            .bind(KEY_OBJECT)
            .execute(&mut self.conn)
            .await
            .context("releasing zdm's run lock")?;
        let _ = self.conn.close().await;
        Ok(())
    }
}

/// `postgres://user@host:port/db` from connection options: never a password.
pub fn target(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Finds the session holding the run lock in `pg_locks` and describes it from
/// `pg_stat_activity` (whose application name is visible to every user); a [`Holder`]
/// without `backend_pid` when no session holds it. Public for the console, which shows
/// a migration recorded in progress without a holder as stopped.
pub async fn holder(conn: &mut PgConnection) -> Result<Holder, Error> {
    let row = sqlx::query(
        "SELECT a.pid, a.application_name, a.usename::text AS usename, \
                host(a.client_addr) AS client_addr, a.backend_start \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2 \
         LIMIT 1",
    )
    .bind(i64::from(KEY_CLASS))
    .bind(i64::from(KEY_OBJECT))
    .fetch_optional(conn)
    .await
    .context("finding who holds zdm's run lock")?;
    let Some(row) = row else {
        return Ok(Holder {
            zdm_pid: None,
            host: None,
            application_name: String::new(),
            backend_pid: None,
            db_user: None,
            client_addr: None,
            since: None,
        });
    };
    let application_name: Option<String> = row.try_get("application_name").ok().flatten();
    let application_name = application_name.unwrap_or_default();
    let parsed = parse_application_name(&application_name);
    Ok(Holder {
        zdm_pid: parsed.as_ref().map(|(pid, _)| *pid),
        host: parsed.map(|(_, host)| host),
        application_name,
        backend_pid: row.try_get("pid").ok(),
        db_user: row.try_get("usename").ok().flatten(),
        client_addr: row.try_get("client_addr").ok().flatten(),
        since: row.try_get("backend_start").ok().flatten(),
    })
}
