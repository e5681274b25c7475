//! The interactive console. So far its theming; screens come with the engine, backfill and
//! monitor they show.

pub mod theme;
