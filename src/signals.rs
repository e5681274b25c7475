//! Waiting for the signals that ask zdm to stop: SIGINT (Ctrl-C), SIGTERM and SIGHUP.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name when one of them arrives.
pub async fn shutdown_requested() -> &'static str {
    let mut listeners = Vec::new();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ] {
        match signal(kind) {
            Ok(stream) => listeners.push((stream, name)),
            Err(error) => tracing::warn!(%error, "cannot listen for {name}"),
        }
    }
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    let waits = listeners.iter_mut().map(|(stream, name)| {
        Box::pin(async move {
            stream.recv().await;
            *name
        })
    });
    let (name, _, _) = futures::future::select_all(waits).await;
    name
}
