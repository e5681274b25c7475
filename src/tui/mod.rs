//! The interactive console: one [`app::App`] state, views that only draw it, a key map
//! shared by help, footer and docs, and themes. The event loop feeds it from the database
//! poller, the monitor and the runs it follows over their control sockets.

pub mod app;
pub mod backend;
pub mod event_loop;
pub mod follow;
pub mod health;
pub mod keymap;
pub mod runs;
pub mod theme;
pub mod view;
