//! Waiting for the signals that stop a node: SIGTERM (systemd, Kubernetes) and SIGINT
//! (Ctrl-C).

/// Resolves with the signal's name once SIGTERM or SIGINT arrives.
pub async fn stop_requested() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
