//! The client side of a control socket: send a command and read the reply, ask which
//! run it is, or attach and read the event stream (used by `zdm ctl`, `zdm attach` and
//! the console).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::address::RunInfo;
use super::error::Error;
use super::line::{Line, LineReader, MAX_REPLY};
use super::request::Request;
use super::socket::REPLY_TIMEOUT;
use crate::protocol::Stamped;
use crate::protocol::{Command, Reply};

/// A client waits a little longer than the server waits for the run, so that the
/// server's own "did not answer" reply arrives first.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(REPLY_TIMEOUT.as_secs() + 5);

/// One connection to a run's control socket.
pub struct Client {
    path: PathBuf,
    lines: LineReader<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

/// The socket's reply to `info` and `attach`.
#[derive(Deserialize)]
struct InfoReply {
    ok: bool,
    info: Option<RunInfo>,
    error: Option<String>,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, Error> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (read, write) = stream.into_split();
        Ok(Client {
            path: path.to_path_buf(),
            lines: LineReader::new(BufReader::new(read), MAX_REPLY),
            write,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one command; the run's reply (an error reply is `Ok(Reply::Error)`).
    pub async fn send(&mut self, command: &Command) -> Result<Reply, Error> {
        let line = self.request(&Request::Run(command.clone())).await?;
        serde_json::from_str(&line).map_err(|error| self.protocol(error))
    }

    /// Sends one request and returns the reply line exactly as the server wrote it
    /// (`zdm ctl --json` prints it).
    pub async fn request(&mut self, request: &Request) -> Result<String, Error> {
        self.request_line(&request.to_line()).await
    }

    /// Sends any text as one request line and returns the reply line.
    pub async fn request_line(&mut self, line: &str) -> Result<String, Error> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        let path = self.path.clone();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        self.write.write_all(&bytes).await.map_err(io)?;
        match tokio::time::timeout(CLIENT_TIMEOUT, self.lines.next()).await {
            Err(_) => Err(Error::Timeout {
                path: self.path.clone(),
                seconds: CLIENT_TIMEOUT.as_secs(),
            }),
            Ok(Err(source)) => Err(io(source)),
            Ok(Ok(Line::End)) => Err(Error::Closed {
                path: self.path.clone(),
            }),
            Ok(Ok(Line::TooLong)) => Err(Error::Protocol {
                path: self.path.clone(),
                detail: format!("a reply longer than {MAX_REPLY} bytes"),
            }),
            Ok(Ok(Line::Text(text))) => Ok(text),
        }
    }

    /// Which migration, target and process this socket belongs to.
    pub async fn info(&mut self) -> Result<RunInfo, Error> {
        let line = self.request(&Request::Info).await?;
        self.read_info(&line)
    }

    /// Turns this connection into the run's event stream.
    pub async fn attach(mut self) -> Result<(RunInfo, EventStream), Error> {
        let line = self.request(&Request::Attach).await?;
        let info = self.read_info(&line)?;
        Ok((
            info,
            EventStream {
                path: self.path,
                lines: self.lines,
                _write: self.write,
            },
        ))
    }

    fn read_info(&self, line: &str) -> Result<RunInfo, Error> {
        let reply: InfoReply = serde_json::from_str(line).map_err(|error| self.protocol(error))?;
        match (reply.ok, reply.info) {
            (true, Some(info)) => Ok(info),
            _ => Err(Error::Protocol {
                path: self.path.clone(),
                detail: reply
                    .error
                    .unwrap_or_else(|| "an answer without the run's identity".to_string()),
            }),
        }
    }

    fn protocol(&self, error: serde_json::Error) -> Error {
        Error::Protocol {
            path: self.path.clone(),
            detail: error.to_string(),
        }
    }
}

/// The events of one run, in order, until it ends.
pub struct EventStream {
    path: PathBuf,
    lines: LineReader<BufReader<OwnedReadHalf>>,
    // Kept open: closing our side would tell the server we left.
    _write: OwnedWriteHalf,
}

impl EventStream {
    /// The next event line as the server wrote it; `None` when the run closed the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        loop {
            match self.lines.next().await {
                Ok(Line::Text(text)) if text.trim().is_empty() => continue,
                Ok(Line::Text(text)) => return Ok(Some(text)),
                Ok(Line::End) => return Ok(None),
                Ok(Line::TooLong) => {
                    return Err(Error::Protocol {
                        path: self.path.clone(),
                        detail: format!("an event longer than {MAX_REPLY} bytes"),
                    })
                }
                Err(source) => {
                    return Err(Error::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// The next event; `None` when the run closed the stream.
    pub async fn next(&mut self) -> Result<Option<Stamped>, Error> {
        let Some(line) = self.next_line().await? else {
            return Ok(None);
        };
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|error| Error::Protocol {
                path: self.path.clone(),
                detail: error.to_string(),
            })
    }
}
