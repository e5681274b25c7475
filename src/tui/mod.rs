//! The interactive console: one [`app::App`] state, views that only draw it, a key map
//! shared by help, footer and docs, and themes. The event loop that feeds it from the
//! engine and the monitor arrives with them.

pub mod app;
pub mod backend;
pub mod health;
pub mod keymap;
pub mod run;
pub mod theme;
pub mod view;
