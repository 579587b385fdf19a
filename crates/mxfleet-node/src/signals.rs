//! Waiting for the signals that steer a node: SIGTERM (systemd, Kubernetes) and SIGINT
//! (Ctrl-C) stop it; SIGHUP reloads what can change without a restart.

/// Resolves with the signal's name once SIGTERM or SIGINT arrives. The handlers are
/// installed when this is called, not when the future is first polled: from then on
/// the signals no longer end the process by their default action, and one that
/// arrives before the caller waits is kept for it.
pub fn stop_requested() -> impl std::future::Future<Output = std::io::Result<&'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let installed = signal(SignalKind::terminate())
        .and_then(|terminate| Ok((terminate, signal(SignalKind::interrupt())?)));
    async move {
        let (mut terminate, mut interrupt) = installed?;
        Ok(tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        })
    }
}

/// A stream of SIGHUPs (reload requests).
pub fn reload_requests() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
