//! Upgraded WebSocket connections: the handshake, the frames, and the one driver that
//! owns every socket's I/O and timers, for viewers and publishers alike.
//!
//! actix-ws keeps every upgraded socket inside actix-http's HTTP/1 dispatcher for its
//! whole life: an 8 KiB read and an 8 KiB write buffer per connection, and every frame
//! hops through a channel and a streaming body into that dispatcher (two task
//! wake-ups, two copies and an allocation per frame). For a server holding tens of
//! thousands of mostly idle viewers that was most of the memory per connection
//! (docs/BENCHMARKS.md). So actix-http hands upgrade requests to the edge's upgrade
//! service, which runs the gate and calls [`accept`] here: the handshake is answered,
//! and the connection leaves the dispatcher for a [`Driver`], which reads and writes
//! through per-worker scratch buffers: a connection keeps only an incomplete frame
//! it is reading and what its socket did not take of a frame it is writing,
//! and awaiting that rest is the backpressure: nothing queues behind the kernel's
//! socket buffer.
//!
//! This module knows no viewer, publisher or route: the edge picks a handler and
//! hands it a driver.

mod driver;
mod extension;
mod frame;
mod handshake;
mod sse;
mod stop;

pub use driver::{Driver, DriverSettings, Ending, Event, CLOSE_SLOW_CONSUMER};
pub use extension::PerMessageDeflate;
pub use handshake::{accept, handshake_error, refuse, Accepted};
pub use sse::{write_event, SseBody, SseDriver};

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a handler needs of its connection, whichever the transport: a WebSocket
/// ([`Driver`]) or a Server-Sent Events response ([`SseDriver`]). Each owns its
/// writes' deadlines, stop and expiry; a handler only sends messages and waits.
///
/// Handlers run on their connection's own (local) task, so the futures need not be
/// `Send`.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// The next client text message, or `wake`'s output (the handler's own timers and
    /// signals; dropped when anything else comes first, so it must be cancel-safe).
    async fn next<W: Future>(&mut self, wake: W) -> Result<Event<W::Output>, Ending>;
    /// Starts one message of JSON text: `kind` is its `type`, `id` its `seq` when it
    /// has one (an SSE event's name and id; a WebSocket ignores both). It is written
    /// at once as far as the connection takes it, from per-worker scratch space; only
    /// what the connection did not take is kept, until [`Transport::flush`]. Never
    /// waits, so a handler may build the message in per-worker scratch space too.
    fn start_text(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending>;
    /// [`Transport::start_text`] for a message sent because the connection has been
    /// quiet for a while (a heartbeat). A transport that compresses gives its
    /// per-connection encoder state back first and sends this message without it, so
    /// an idle connection holds no compressor memory; its stream stays valid.
    fn start_quiet_text(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_text(kind, id, json)
    }
    /// Starts one binary message (the app-level DEFLATE mode; WebSocket only).
    fn start_binary(&mut self, payload: &[u8]) -> Result<(), Ending>;
    /// Waits until everything started is written, within the write deadline and
    /// until stop or expiry. Returns at once when nothing is left, which is the usual
    /// case; awaiting it is the handler's backpressure.
    async fn flush(&mut self) -> Result<(), Ending>;
    /// [`Transport::start_text`], then [`Transport::flush`].
    async fn send_text(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_text(kind, id, json)?;
        self.flush().await
    }
    /// Ends the connection the way `ending` calls for.
    async fn close(self, ending: &Ending);
    /// Cancelling this token ends the connection ("kicked by an admin").
    fn kick_handle(&self) -> CancellationToken;
    /// The connection ends ("token expired") at `at`.
    fn expire_at(&mut self, at: Instant);
    /// How the transport compresses: `permessage-deflate`, `gzip` or `none`.
    fn compression(&self) -> &'static str;
    /// The client cannot send (SSE): no requests, and no replies to them.
    fn is_one_way(&self) -> bool;
}

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
