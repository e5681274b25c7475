//! Why the control socket could not be served or reached, in sentences a DBA acts on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot prepare the control directory {dir}: {source}")]
    RuntimeDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the control directory {dir} belongs to another user (uid {owner}): zdm will not put \
         its control socket there; set XDG_RUNTIME_DIR to a directory of your own"
    )]
    ForeignRuntimeDir { dir: PathBuf, owner: u32 },
    #[error(
        "migration {migration} on {target} is already running in another zdm process \
         (its control socket {path} answers); use `zdm attach` or `zdm ctl` to reach it"
    )]
    AlreadyRunning {
        migration: String,
        target: String,
        path: PathBuf,
    },
    #[error(
        "{path} exists and is not a socket: zdm will not replace it; remove it if it is stale"
    )]
    NotASocket { path: PathBuf },
    #[error(
        "the control socket path {path} is longer than the {limit} bytes a unix socket \
         allows; set XDG_RUNTIME_DIR to a shorter directory"
    )]
    PathTooLong { path: PathBuf, limit: usize },
    #[error("cannot open the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "which database? zdm ctl and zdm attach only reach the runs of the database they are \
         given: pass --database-url URL (host, port and database are enough), or set \
         DATABASE_URL, database_url in zdm.toml, or libpq's variables (PGHOST, PGPORT, \
         PGDATABASE, PGUSER), as for every other command{others}"
    )]
    NoDatabase { others: String },
    #[error("no running migration{named} on {target}{others}")]
    NotRunning {
        named: String,
        target: String,
        others: String,
    },
    #[error(
        "{count} migrations are running on {target} ({names}): choose one with --migration NAME"
    )]
    Ambiguous {
        count: usize,
        target: String,
        names: String,
    },
    #[error("cannot reach the run at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the connection to the run at {path} broke: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the run at {path} closed the connection before answering")]
    Closed { path: PathBuf },
    #[error("the run at {path} did not answer within {seconds} s")]
    Timeout { path: PathBuf, seconds: u64 },
    #[error(
        "the run at {path} sent a line zdm cannot read ({detail}); are both zdm the same version?"
    )]
    Protocol { path: PathBuf, detail: String },
    #[error(transparent)]
    Setting(#[from] super::setting::SettingError),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}
