//! The console as a client of runner processes: it spawns `zdm start|complete|rollback`
//! detached from the terminal ([`crate::runner`]), finds the runs of its database, follows
//! their event streams and sends them commands over their control sockets. Each of these
//! is a tokio task reporting over the console's channel: the event loop never waits for a
//! process or a socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::backend::Update;
use crate::config::Config;
use crate::control::{
    self, Client, Command, EventStream, Reply, RunInfo, Running, Setting, SettingKey, Stamped,
    Target,
};
use crate::runner::{self, Detached, Job};

/// A socket that does not let the console attach in this long is reported and retried at
/// the next discovery.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);

/// While a runner starts, its socket is tried this often (the runner opens it before its
/// first step; a short run may not live much longer).
const EARLY_POLL: Duration = Duration::from_millis(10);

/// After the runner answered (or failed), the socket is tried this much longer.
const EARLY_GRACE: Duration = Duration::from_secs(2);

/// What a task working with runs reports to the event loop.
#[derive(Debug)]
pub enum RunUpdate {
    /// The runner of a job this console asked for serves its control socket.
    Spawned {
        job: &'static str,
        migration: String,
        detached: Detached,
    },
    /// The runner did its job and exited (code 0) before it served its socket: a run
    /// faster than the console's attach (a sub-second rollback). Judged by how it ended,
    /// not by whether the console saw it.
    EndedEarly {
        job: &'static str,
        migration: String,
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The runner could not be started, or exited before it served its socket.
    SpawnFailed {
        job: &'static str,
        migration: String,
        error: String,
    },
    /// The runs of this console's database whose sockets answer.
    Discovered(Vec<Running>),
    /// The event stream of the run at `socket` is open.
    Attached {
        socket: PathBuf,
        info: RunInfo,
    },
    AttachFailed {
        socket: PathBuf,
        error: String,
    },
    /// One event of a followed run.
    Event {
        socket: PathBuf,
        event: Stamped,
    },
    /// A line of a followed run's stream this zdm cannot read (a newer runner's event).
    Unreadable {
        socket: PathBuf,
        line: String,
    },
    /// The stream closed (`error` when reading it failed rather than the run closing it).
    StreamEnded {
        socket: PathBuf,
        error: Option<String>,
    },
    /// The run's answer to a command (or why there is none).
    Replied {
        socket: PathBuf,
        purpose: Purpose,
        reply: Result<Reply, String>,
    },
}

/// Why a command was sent: what the event loop does with its reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// A live-control key (p, t, + / -): the reply is the notice.
    Key(Command),
    /// A status read (after attaching, after a throttle change): it corrects what is shown.
    Status,
    /// `q` then `p`: the console quits once the run answered the pause.
    PauseAndQuit,
    /// `q` then `s` (demo): the console quits once the run ended.
    StopAndQuit,
    /// The contract dialog's confirmation of the named migration: the run's answer is the
    /// dialog's (contract runs, or why not).
    Confirm(String),
}

/// The console's way to start, find, follow and steer runs.
#[derive(Debug, Clone)]
pub struct Runs {
    config: Arc<Config>,
    /// This console's database, as runs name theirs; `None` when the URL cannot be read
    /// (then no run is recognised as ours).
    target: Option<Target>,
    updates: UnboundedSender<Update>,
}

impl Runs {
    pub fn new(config: Arc<Config>, updates: UnboundedSender<Update>) -> Self {
        let target = config
            .database_url()
            .ok()
            .and_then(|url| Target::from_url(url).ok());
        Runs {
            config,
            target,
            updates,
        }
    }

    /// Where the run of `migration` on this database serves its control socket.
    pub fn socket_of(&self, migration: &str) -> Option<PathBuf> {
        let target = self.target.as_ref()?;
        Some(control::address::socket_path(
            &control::runtime_dir(),
            target,
            migration,
        ))
    }

    /// Starts `job` in a runner process of its own; reports `Spawned` or `SpawnFailed`.
    /// Meanwhile it watches for the run's socket (`socket`, see [`Runs::socket_of`]) and
    /// attaches the moment it answers: a short run (a rollback, a contract) may end
    /// within a fraction of a second, and the console must not miss how.
    pub fn spawn(&self, job: Job, socket: Option<PathBuf>) {
        let config = self.config.clone();
        let updates = self.updates.clone();
        let (word, migration) = describe(&job);
        tokio::spawn(async move {
            let (spawned, spawned_rx) = tokio::sync::watch::channel(false);
            let early = socket
                .map(|socket| tokio::spawn(follow_when_ready(socket, updates.clone(), spawned_rx)));
            let result = runner::spawn(&config, &job).await;
            // Attached already, or about to, or never: the watcher gives up after a grace.
            let _ = spawned.send(true);
            drop(early);
            let update = match result {
                Ok(detached) => RunUpdate::Spawned {
                    job: word,
                    migration,
                    detached,
                },
                Err(runner::spawn::Error::Exited {
                    code: Some(0),
                    log,
                    tail,
                    ..
                }) => RunUpdate::EndedEarly {
                    job: word,
                    migration,
                    log,
                    tail,
                },
                Err(error) => RunUpdate::SpawnFailed {
                    job: word,
                    migration,
                    error: error.to_string(),
                },
            };
            report(&updates, update);
        });
    }

    /// Looks for the runs of this database; reports `Discovered` (possibly empty).
    pub fn discover(&self) {
        let target = self.target.clone();
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let found = control::discover(&control::runtime_dir()).await;
            let ours = found
                .into_iter()
                .filter(|run| target.as_ref() == Some(&run.info.target))
                .collect();
            report(&updates, RunUpdate::Discovered(ours));
        });
    }

    /// Attaches to the run at `socket` and forwards its events until the stream ends.
    pub fn attach(&self, socket: PathBuf) {
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let attaching = async { Client::connect(&socket).await?.attach().await };
            match tokio::time::timeout(ATTACH_TIMEOUT, attaching).await {
                Ok(Ok((info, events))) => follow(socket, info, events, &updates).await,
                Ok(Err(error)) => {
                    let error = error.to_string();
                    report(&updates, RunUpdate::AttachFailed { socket, error });
                }
                Err(_) => {
                    let error = format!(
                        "its control socket did not answer in {} s",
                        ATTACH_TIMEOUT.as_secs()
                    );
                    report(&updates, RunUpdate::AttachFailed { socket, error });
                }
            }
        });
    }

    /// Sends `command` to the run at `socket`; reports `Replied` with `purpose`.
    pub fn send(&self, socket: PathBuf, command: Command, purpose: Purpose) {
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let reply = async { Client::connect(&socket).await?.send(&command).await }
                .await
                .map_err(|error| error.to_string());
            report(
                &updates,
                RunUpdate::Replied {
                    socket,
                    purpose,
                    reply,
                },
            );
        });
    }

    /// Multiplies the batch time target of the run at `socket` by `factor`, from
    /// `current` (the last one the run reported) or, when none is known, the run's own.
    pub fn scale_batch_target(&self, socket: PathBuf, current: Option<Duration>, factor: f64) {
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let mut command = None;
            let reply = async {
                let mut client = Client::connect(&socket).await?;
                let current = match current {
                    Some(current) => current,
                    None => {
                        let key = SettingKey::BatchTarget;
                        match client.send(&Command::Get { key }).await? {
                            Reply::Value(Setting::BatchTarget(current)) => current,
                            other => return Ok(other),
                        }
                    }
                };
                let set = Command::Set(Setting::batch_target_scaled(current, factor));
                command = Some(set.clone());
                client.send(&set).await
            }
            .await
            .map_err(|error: control::Error| error.to_string());
            let command = command.unwrap_or(Command::Get {
                key: SettingKey::BatchTarget,
            });
            report(
                &updates,
                RunUpdate::Replied {
                    socket,
                    purpose: Purpose::Key(command),
                    reply,
                },
            );
        });
    }
}

fn report(updates: &UnboundedSender<Update>, update: RunUpdate) -> bool {
    updates.send(Update::Run(update)).is_ok()
}

/// Reports `Attached`, then every event of the run until its stream ends.
async fn follow(
    socket: PathBuf,
    info: RunInfo,
    mut events: EventStream,
    updates: &UnboundedSender<Update>,
) {
    let attached = RunUpdate::Attached {
        socket: socket.clone(),
        info,
    };
    if !report(updates, attached) {
        return;
    }
    loop {
        let update = match events.next_line().await {
            // A line this zdm cannot read (a newer runner's event) is shown, not fatal.
            Ok(Some(line)) => match serde_json::from_str::<Stamped>(&line) {
                Ok(event) => RunUpdate::Event {
                    socket: socket.clone(),
                    event,
                },
                Err(_) => RunUpdate::Unreadable {
                    socket: socket.clone(),
                    line,
                },
            },
            Ok(None) => {
                report(
                    updates,
                    RunUpdate::StreamEnded {
                        socket,
                        error: None,
                    },
                );
                return;
            }
            Err(error) => {
                let error = Some(error.to_string());
                report(updates, RunUpdate::StreamEnded { socket, error });
                return;
            }
        };
        if !report(updates, update) {
            // The console quit: stop reading (the run goes on).
            return;
        }
    }
}

/// Tries to attach to `socket` every [`EARLY_POLL`] until it answers, then follows the
/// run. Once `spawned` turns true (the runner answered, or could not start) it tries for
/// [`EARLY_GRACE`] more, then reports `AttachFailed`: the run ended before it could be
/// followed.
async fn follow_when_ready(
    socket: PathBuf,
    updates: UnboundedSender<Update>,
    spawned: tokio::sync::watch::Receiver<bool>,
) {
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        let attaching = async { Client::connect(&socket).await?.attach().await };
        if let Ok(Ok((info, events))) = tokio::time::timeout(ATTACH_TIMEOUT, attaching).await {
            follow(socket, info, events, &updates).await;
            return;
        }
        if give_up.is_none() && *spawned.borrow() {
            give_up = Some(tokio::time::Instant::now() + EARLY_GRACE);
        }
        if give_up.is_some_and(|at| tokio::time::Instant::now() >= at) {
            let error = "it ended before the console could attach".to_string();
            report(&updates, RunUpdate::AttachFailed { socket, error });
            return;
        }
        tokio::time::sleep(EARLY_POLL).await;
    }
}

/// The job's word as the console says it (`zdm complete` is contract) and its migration.
pub fn describe(job: &Job) -> (&'static str, String) {
    let word = match job {
        Job::Complete { .. } | Job::CompleteOnConfirmation { .. } => "contract",
        _ => job.command(),
    };
    (word, job.migration().to_string())
}
