//! The settings `zdm ctl set/get` and the wire name: declared once in [`crate::settings`]
//! (names, units, ranges, defaults, parsing); re-exported here for the control protocol.

pub use crate::settings::{Deprecated, Setting, SettingError, SettingKey};
