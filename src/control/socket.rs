//! The control socket server of one run: binds the private unix socket (replacing a
//! stale one, refusing a live one, binding it again if its file is removed), reads one
//! JSON request per line, hands commands to the run and writes its replies, and streams
//! events to attached clients.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::address::{prepare_dir, socket_path, RunInfo, MAX_SOCKET_PATH};
use super::error::Error;
use super::line::{Line, LineReader, MAX_REQUEST};
use super::publish::EventSender;
use super::request::{self, Request};
use crate::protocol::{Command, Reply};
use crate::protocol::{Event, Stamped};

/// One command for the run, with the channel its reply goes back on.
pub type CommandRequest = (Command, oneshot::Sender<Reply>);

/// How long a client waits for the run to answer before it is told the run is busy.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes longer than this to accept one line is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands queued for the run before a client waits for room.
const COMMAND_QUEUE: usize = 16;
/// How long shutdown waits for connections to flush their last events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the server checks that its socket file is still there.
const CHECK_FILE_EVERY: Duration = Duration::from_secs(5);

/// (device, inode) of a socket file.
type FileId = (u64, u64);

/// A running control socket. Dropping it stops serving and removes the socket file;
/// [`Server::shutdown`] does the same but first lets attached clients read every event
/// already sent.
pub struct Server {
    path: PathBuf,
    /// The socket file we bound (shared with the accept loop, which binds it again when it
    /// was removed), so we never remove a successor's.
    file_id: Arc<Mutex<Option<FileId>>>,
    info: RunInfo,
    events: EventSender,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

/// What every connection task shares.
struct Shared {
    info: RunInfo,
    events: EventSender,
    commands: mpsc::Sender<CommandRequest>,
}

impl Server {
    /// Serves the control socket of `info.migration` on `info.target` in `dir` (see
    /// [`super::address::runtime_dir`]). Commands arrive on the returned receiver; the
    /// run answers each on its oneshot sender.
    pub async fn start(
        dir: &Path,
        info: RunInfo,
    ) -> Result<(Server, mpsc::Receiver<CommandRequest>), Error> {
        Self::start_with(dir, info, EventSender::default()).await
    }

    /// As [`Server::start`], with events sent through `events` (e.g. with a smaller buffer).
    pub async fn start_with(
        dir: &Path,
        info: RunInfo,
        events: EventSender,
    ) -> Result<(Server, mpsc::Receiver<CommandRequest>), Error> {
        prepare_dir(dir)?;
        let path = socket_path(dir, &info.target, &info.migration);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::PathTooLong {
                path,
                limit: MAX_SOCKET_PATH,
            });
        }
        clear_stale(&path, &info).await?;
        let bind = |source| Error::Bind {
            path: path.clone(),
            source,
        };
        let listener = UnixListener::bind(&path).map_err(|source| {
            // Another process bound it between our check and now: it runs this migration.
            if source.kind() == std::io::ErrorKind::AddrInUse {
                Error::AlreadyRunning {
                    migration: info.migration.clone(),
                    target: info.target.to_string(),
                    path: path.clone(),
                }
            } else {
                bind(source)
            }
        })?;
        // The directory is 0700 already; the socket's own mode says the same.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
        let file_id = Arc::new(Mutex::new(file_id_of(&path)));

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            info: info.clone(),
            events: events.clone(),
            commands,
        });
        let place = Place {
            dir: dir.to_path_buf(),
            path: path.clone(),
            file_id: file_id.clone(),
        };
        let accept = tokio::spawn(accept_loop(listener, shared, place, stopped));
        tracing::info!(path = %path.display(), "control socket listening");
        Ok((
            Server {
                path,
                file_id,
                info,
                events,
                stop,
                accept: Some(accept),
            },
            receiver,
        ))
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// Where the run sends its events.
    pub fn events(&self) -> EventSender {
        self.events.clone()
    }

    /// Sends one event to every attached client.
    pub fn send(&self, event: Event) {
        self.events.send(event);
    }

    /// How many clients follow the event stream right now.
    pub fn attached(&self) -> usize {
        self.events.attached()
    }

    /// Stops accepting, lets attached clients read what was already sent (briefly), closes
    /// every connection and removes the socket file. Clients see the stream end.
    pub async fn shutdown(mut self) {
        // Gone from the directory first: nobody new finds a run that is ending.
        self.remove_file();
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    fn remove_file(&mut self) {
        let mut bound = self.file_id.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = file_id_of(&self.path);
        if ours.is_some() && ours == *bound {
            let _ = std::fs::remove_file(&self.path);
        }
        *bound = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.remove_file();
    }
}

/// A socket file left by a dead process (nobody accepts) is removed; a live one means
/// this migration is already running.
async fn clear_stale(path: &Path, info: &RunInfo) -> Result<(), Error> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(Error::AlreadyRunning {
            migration: info.migration.clone(),
            target: info.target.to_string(),
            path: path.to_path_buf(),
        }),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            tracing::info!(path = %path.display(), "replacing a stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(Error::Bind {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(Error::Bind {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Where the socket lives, for binding it again.
struct Place {
    dir: PathBuf,
    path: PathBuf,
    file_id: Arc<Mutex<Option<FileId>>>,
}

fn file_id_of(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

impl Place {
    /// A new listener when our socket file is gone (a cleaner, or systemd-logind removing
    /// `$XDG_RUNTIME_DIR` at logout, removed it): a run that outlives its session stays
    /// reachable once the directory can be made again (e.g. at the next login). None while
    /// the file is ours, or while binding fails (tried again at the next check).
    fn rebind_if_removed(&self) -> Option<UnixListener> {
        let mut bound = self.file_id.lock().unwrap_or_else(PoisonError::into_inner);
        if bound.is_none() || file_id_of(&self.path) == *bound {
            return None;
        }
        if file_id_of(&self.path).is_some() {
            // Someone else's file at our path now: leave it, and never remove it later.
            *bound = None;
            return None;
        }
        prepare_dir(&self.dir).ok()?;
        let listener = UnixListener::bind(&self.path).ok()?;
        let private = std::fs::Permissions::from_mode(0o600);
        if std::fs::set_permissions(&self.path, private).is_err() {
            let _ = std::fs::remove_file(&self.path);
            return None;
        }
        *bound = file_id_of(&self.path);
        tracing::warn!(path = %self.path.display(), "the control socket file was removed; bound it again");
        Some(listener)
    }
}

async fn accept_loop(
    mut listener: UnixListener,
    shared: Arc<Shared>,
    place: Place,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut check = tokio::time::interval(CHECK_FILE_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop_requested(&mut stopped) => break,
            _ = check.tick() => {
                if let Some(rebound) = place.rebind_if_removed() {
                    listener = rebound;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone(), stopped.clone()));
                }
                // Out of descriptors and the like: keep serving the clients we have.
                Err(error) => {
                    tracing::warn!(%error, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow with every `zdm ctl`.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// One client connection: requests and replies until it attaches, disconnects, or the
/// server stops. Every failure here ends this connection only.
async fn serve(stream: UnixStream, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let (read, mut write) = stream.into_split();
    let mut lines = LineReader::new(BufReader::new(read), MAX_REQUEST);
    loop {
        let line = tokio::select! {
            _ = stop_requested(&mut stopped) => return,
            line = lines.next() => line,
        };
        let reply = match line {
            Err(_) | Ok(Line::End) => return,
            Ok(Line::TooLong) => error_line(&format!(
                "request longer than {MAX_REQUEST} bytes was skipped; send one short JSON object per line"
            )),
            Ok(Line::Text(text)) if text.trim().is_empty() => continue,
            Ok(Line::Text(text)) => match request::parse(&text) {
                Err(message) => error_line(&message),
                Ok(Request::Info) => info_line(&shared.info, false),
                Ok(Request::Run(command)) => reply_line(&ask_run(&shared.commands, command).await),
                Ok(Request::Attach) => {
                    let events = shared.events.subscribe();
                    if write_line(&mut write, &info_line(&shared.info, true))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    stream_events(&mut lines, &mut write, events, &shared, stopped).await;
                    return;
                }
            },
        };
        if write_line(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

/// Hands one command to the run and waits (bounded) for its reply.
async fn ask_run(commands: &mpsc::Sender<CommandRequest>, command: Command) -> Reply {
    let name = command.name();
    let (reply_to, reply) = oneshot::channel();
    let exchange = async {
        commands.send((command, reply_to)).await.ok()?;
        reply.await.ok()
    };
    match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
        Ok(Some(reply)) => reply,
        Ok(None) => Reply::error(format!(
            "the run is no longer taking commands (it is stopping); `{name}` was not applied"
        )),
        Err(_) => Reply::error(format!(
            "the run did not answer `{name}` within {} s (busy in a long step?); try again",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}

/// Follows the event stream until the client goes or the server stops. A client too
/// slow to keep up is told how many events it missed; one that stops reading entirely
/// is dropped after [`WRITE_TIMEOUT`].
async fn stream_events<R, W>(
    lines: &mut LineReader<R>,
    write: &mut W,
    mut events: broadcast::Receiver<Stamped>,
    shared: &Shared,
    mut stopped: watch::Receiver<bool>,
) where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _counted = shared.events.attach_guard();
    loop {
        let line = tokio::select! {
            _ = stop_requested(&mut stopped) => {
                // Deliver what the run sent before it stopped (its last words).
                while let Ok(event) = events.try_recv() {
                    if write_line(write, &event_line(&event)).await.is_err() {
                        return;
                    }
                }
                return;
            }
            received = events.recv() => match received {
                Ok(event) => event_line(&event),
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    event_line(&Stamped::now(Event::Missed { count }))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // An attached client sends nothing more; reading only notices it leaving.
            read = lines.next() => match read {
                Ok(Line::End) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        if write_line(write, &line).await.is_err() {
            return;
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(write: &mut W, line: &str) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

fn reply_line(reply: &Reply) -> String {
    serde_json::to_string(reply)
        .unwrap_or_else(|error| error_line(&format!("the reply could not be encoded: {error}")))
}

fn error_line(message: &str) -> String {
    serde_json::json!({ "ok": false, "error": message }).to_string()
}

fn info_line(info: &RunInfo, attached: bool) -> String {
    let mut reply = serde_json::json!({ "ok": true, "info": info });
    if attached {
        reply["attached"] = serde_json::Value::Bool(true);
    }
    reply.to_string()
}

fn event_line(event: &Stamped) -> String {
    serde_json::to_string(event).unwrap_or_else(|error| {
        serde_json::json!({
            "at": event.at,
            "event": "error",
            "message": format!("an event could not be encoded: {error}"),
        })
        .to_string()
    })
}

/// Resolves once the server is asked to stop (or is gone). Holds no borrow of the
/// channel afterwards, so the caller may await in its select branch.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
