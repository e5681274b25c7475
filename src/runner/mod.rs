//! Runs that outlive their terminal: an engine command serving its control socket while
//! it runs ([`Served`]), the bridge from engine events to wire events ([`relay`]), and
//! the detached runner process the console and `zdm start --detach` start ([`spawn()`](spawn::spawn)).

pub mod relay;
pub mod serve;
pub mod spawn;

pub use relay::RunView;
pub use serve::Served;
pub use spawn::{spawn, Detached, Error, Job};
