//! How a connection is stopped from outside: the server shutting down, or an admin's
//! kick. Shared by both drivers, so a kick and shutdown reach every transport alike.

use std::pin::Pin;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Ending;

pub(super) struct Stop {
    shutdown: CancellationToken,
    /// A child of `shutdown`, cancelled alone by a kick.
    kick: CancellationToken,
    /// `kick.cancelled()`, created once: re-creating it per wait registers a waiter
    /// each time. Polling it again after it fired returns at once.
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Stop {
    pub(super) fn new(shutdown: &CancellationToken) -> Stop {
        let kick = shutdown.child_token();
        Stop {
            stopped: Box::pin(kick.clone().cancelled_owned()),
            kick,
            shutdown: shutdown.clone(),
        }
    }

    /// Cancelling this token ends the connection ("kicked by an admin").
    pub(super) fn kick_handle(&self) -> CancellationToken {
        self.kick.clone()
    }

    /// Waits until the connection must stop; why.
    pub(super) async fn wait(&mut self) -> Ending {
        (&mut self.stopped).await;
        if self.shutdown.is_cancelled() {
            Ending::Shutdown
        } else {
            Ending::Kicked
        }
    }
}
