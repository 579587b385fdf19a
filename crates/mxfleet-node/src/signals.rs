//! Waiting for the signals that steer a node: SIGTERM (systemd, Kubernetes) and SIGINT
//! (Ctrl-C) stop it; SIGHUP reloads what can change without a restart.

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

/// A stream of SIGHUPs (reload requests).
pub fn reload_requests() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
