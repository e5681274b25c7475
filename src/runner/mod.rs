//! Runs that outlive their terminal: an engine command serving its control socket while
//! it runs ([`Served`], with the [`RunView`] its `status` answers from), and the detached
//! runner process the console and `zdm start --detach` start ([`spawn()`](spawn::spawn)),
//! and a run's Prometheus endpoint (`metrics`).

pub mod metrics;
pub mod serve;
pub mod spawn;
pub mod view;

pub use serve::{Confirmation, Served};
pub use spawn::{spawn, Detached, Error, Job};
pub use view::RunView;
