//! Process shutdown: one cancellation token for the HTTP server, the feeds and every
//! viewer. actix-web stops accepting on its own but does not tell WebSocket tasks, so
//! we own the signal and cancel the token; viewers then close with 1001.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Waits for SIGTERM (orchestrators) or SIGINT (Ctrl-C), then cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let signal = wait_for_signal().await;
    info!(signal, "shutting down");
    token.cancel();
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
