//! The one protocol between a run and its front-ends: the [`Event`]s a run reports (the
//! engine emits them directly) and the [`Command`]s it answers with a [`Reply`], with
//! the vocabulary they share on the wire: a migration's [`Status`], its [`Phase`], one
//! [`Level`], a gate's [`Verdict`] and [`GateReport`], and settings as typed values.
//!
//! A low layer: it names plan, monitor and settings types and nothing above them (no
//! engine, control socket, runner, gates or front-end), so every layer can speak it.
//! The JSON form is documented in `docs/control.md`.

pub mod command;
pub mod event;
pub mod gate;
pub(crate) mod millis;
pub mod status;

pub use crate::plan::Phase;
pub use command::{Command, Reply, RunStatus};
pub use event::{
    phase_name, unreachable_words, BatchDone, Event, Level, Progress, RunState, Stamped,
};
pub use gate::{GateReport, Observing, Report, Verdict};
pub use status::Status;
