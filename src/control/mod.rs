//! Live control of a running migration: `Command` in, `Event` out, over a private unix
//! socket per run (served by the run, used by `zdm ctl`, `zdm attach` and the console).
//!
//! # The contract with the run (engine / backfill loop)
//!
//! ```text
//! let info = RunInfo::new(&migration, Target::from_url(&url)?);
//! let (server, mut commands) = Server::start(&runtime_dir(), info).await?;
//! let events = server.events();            // EventSender: clone it anywhere
//! loop {
//!     select! {
//!         Some((command, reply)) = commands.recv() => {
//!             let answer = run.handle(command);   // Reply::done / Value / Status / error
//!             let _ = reply.send(answer);         // the client may have gone: ignore
//!         }
//!         _ = next_batch => events.send(Event::Progress(...)),
//!     }
//! }
//! server.shutdown().await;                  // attached clients read the last events, then EOF
//! ```
//!
//! * Every [`Command`] gets exactly one [`Reply`]; a command the run cannot honour now
//!   (pause with no backfill running) gets `Reply::error` in words. The server waits at
//!   most [`socket::REPLY_TIMEOUT`] and then tells the client the run is busy, so the run
//!   should answer between batches, not after a long step.
//! * `Set` is applied with [`BackfillSettings::apply`](crate::engine::BackfillSettings::apply) (which refuses contradictions) and answered
//!   with `Reply::Value` of the value now in force; the run also sends
//!   `Event::SettingChanged` so that every front-end sees it.
//! * The run sends `Event::Progress` after every batch and about once a second while
//!   throttled or paused, so a client attaching mid-run is up to date within a second.
//! * Sending events never blocks and never fails: a slow client is told how many it
//!   missed (`Event::Missed`), a stuck one is dropped.
//! * Everything a front-end shows must come through [`Event`]; the console subscribes in
//!   process with [`EventSender::subscribe`] or over the socket with [`Client::attach`].
//!
//! The wire protocol, the settings and where sockets live are documented in
//! `docs/control.md`.

pub mod address;
pub mod client;
pub mod command;
pub mod ctl;
pub mod discover;
pub mod error;
pub mod event;
pub mod line;
mod millis;
pub mod publish;
pub mod request;
pub mod setting;
pub mod socket;

pub use address::{runtime_dir, RunInfo, Target};
pub use client::{Client, EventStream};
pub use command::{Command, Reply, RunStatus};
pub use discover::{discover, find, Running};
pub use error::Error;
pub use event::{BatchDone, Event, Gate, Level, Progress, RunState, Stamped};
pub use publish::EventSender;
pub use setting::{Setting, SettingError, SettingKey};
pub use socket::{CommandRequest, Server};
