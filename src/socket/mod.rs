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
//! and the connection leaves the dispatcher for a [`Driver`], which reads frames from
//! a buffer that starts at a few hundred bytes and writes them straight from one
//! reused output buffer. Awaiting that write is the backpressure: nothing queues
//! behind the kernel's socket buffer.
//!
//! This module knows no viewer, publisher or route: the edge picks a handler and
//! hands it a driver.

mod driver;
mod extension;
mod frame;
mod handshake;

pub use driver::{Driver, DriverSettings, Ending, Event, CLOSE_SLOW_CONSUMER};
pub use extension::PerMessageDeflate;
pub use handshake::{accept, handshake_error, refuse, Accepted};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
