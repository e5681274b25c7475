//! Live control of a running migration: `Command` in, `Event` out (both from
//! [`crate::protocol`]), over a private unix socket per run (served by the run, used by
//! `zdm ctl`, `zdm attach` and the console).
//!
//! # The contract with the run
//!
//! `crate::runner::serve` is the run's side: it starts a [`Server`] once the command
//! knows its migration, answers each [`CommandRequest`] from a task of its own (so a
//! command is answered at once, even during a long step, and takes effect through the
//! engine's `BackfillControl` within the batch in flight), sends every event through the
//! server's [`EventSender`], and calls [`Server::shutdown`] at the end so attached clients
//! read the last events before their stream closes.
//!
//! * Every [`Command`] gets exactly one [`Reply`]; one the run refuses (resume when not
//!   paused) gets `Reply::error` in words. The server waits at most
//!   [`socket::REPLY_TIMEOUT`] for the run and then tells the client it is busy.
//! * `Set` is applied with [`BackfillSettings::apply`](crate::engine::BackfillSettings::apply)
//!   (which refuses contradictions) and answered with `Reply::Value` of the value now in
//!   force; the run also sends `Event::SettingChanged` so that every front-end sees it.
//! * The run sends every sample of its monitor as `Event::Metrics` (the figures its
//!   throttle acts on) and, before contract, `Event::GatesEvaluated` with every verdict.
//! * The run sends `Event::Progress` after batches (at most about once a second) and
//!   every second while throttled or paused, so a client attaching mid-run is up to date
//!   within a second.
//! * Sending events never blocks and never fails: a slow client is told how many it
//!   missed (`Event::Missed`), a stuck one is dropped.
//! * Everything a front-end shows comes through [`Event`]: the headless output subscribes
//!   in process ([`EventSender::subscribe`]), the console and `zdm attach` over the socket
//!   ([`Client::attach`]).
//!
//! The wire protocol, the settings and where sockets live are documented in
//! `docs/control.md`.

pub mod address;
pub mod client;
pub mod discover;
pub mod error;
pub mod line;
pub mod publish;
pub mod request;
pub mod setting;
pub mod socket;

pub use crate::protocol::{
    BatchDone, Command, Event, Level, Progress, Reply, RunState, RunStatus, Stamped,
};
pub use address::{runtime_dir, RunInfo, Target};
pub use client::{Client, EventStream};
pub use discover::{discover, find, Running};
pub use error::Error;
pub use publish::EventSender;
pub use setting::{Setting, SettingError, SettingKey};
pub use socket::{CommandRequest, Server};
