//! The upgraded WebSocket, owned by its session on the raw connection.
//!
//! actix-ws keeps every upgraded socket inside actix-http's HTTP/1 dispatcher for its
//! whole life: an 8 KiB read and an 8 KiB write buffer per connection, and every frame
//! hops through a channel and a streaming body into that dispatcher (two task
//! wake-ups, two copies and an allocation per frame). For a server holding tens of
//! thousands of mostly idle viewers that was most of the memory per connection
//! (docs/BENCHMARKS.md, target 2). So actix-http hands upgrade requests to
//! [`upgrade`], which answers the handshake and gives the connection to the session:
//! frames are parsed with actix-http's WebSocket codec from a read buffer that starts
//! at a few hundred bytes and grows only while a large frame is in flight, and are
//! written straight from one reused output buffer. Awaiting that write is the
//! backpressure: nothing queues behind the kernel's socket buffer.

mod frame;
mod upgrade;

pub use upgrade::{not_an_upgrade, upgrade_service};

use std::io;
use std::time::Duration;

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message, OpCode, ProtocolError};
use actix_web::web::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Free read space kept before each read: a client's pings, pongs and requests are a
/// few dozen bytes, and a larger frame makes the codec reserve what it needs.
const READ_RESERVE: usize = 512;

/// Buffer capacity kept between messages. A buffer that grew beyond it (a large
/// snapshot, a 1 MiB publish batch) is released once it is empty again, so memory
/// follows what a connection is doing now.
const KEEP_CAPACITY: usize = 64 * 1024;

/// After our close frame, how long we keep reading for the client's close (or EOF)
/// before dropping the connection. Closing with unread input makes the kernel send a
/// reset, which can destroy our close frame in the client's receive buffer.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// One WebSocket connection, server side (RFC 6455).
pub struct WebSocket {
    io: Box<dyn Io>,
    read: BytesMut,
    codec: Codec,
    max_frame: usize,
    /// Frames not yet fully written; `written` bytes of it are on the wire.
    out: Vec<u8>,
    written: usize,
}

impl WebSocket {
    /// `leftover` is what the client sent after its handshake, already read from the
    /// connection. Frames over `max_frame` bytes are refused (`ProtocolError::Overflow`).
    pub fn new(io: Box<dyn Io>, leftover: &[u8], max_frame: usize) -> WebSocket {
        let mut read = BytesMut::with_capacity(READ_RESERVE.max(leftover.len()));
        read.extend_from_slice(leftover);
        WebSocket {
            io,
            read,
            codec: Codec::new().max_size(max_frame),
            max_frame,
            out: Vec::new(),
            written: 0,
        }
    }

    /// The next message from the client; `None` when the connection ended without a
    /// close frame. Cancel-safe: whatever was read stays in the buffer for the next call.
    pub async fn recv(&mut self) -> Option<Result<Message, ProtocolError>> {
        loop {
            if !self.read.is_empty() {
                // Refuse an oversized frame from its header, before buffering it.
                if frame::declared_len(&self.read).is_some_and(|len| len > self.max_frame as u64) {
                    return Some(Err(ProtocolError::Overflow));
                }
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => return Some(into_message(frame)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            } else if self.read.capacity() > KEEP_CAPACITY {
                self.read = BytesMut::new();
            }
            self.read.reserve(READ_RESERVE);
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(ProtocolError::Io(e))),
            }
        }
    }

    pub async fn text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OpCode::Text, payload).await
    }

    pub async fn binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OpCode::Binary, payload).await
    }

    pub async fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OpCode::Ping, payload).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OpCode::Pong, payload).await
    }

    /// Frames `payload` behind anything still unsent and writes it all out.
    async fn send(&mut self, op: OpCode, payload: &[u8]) -> io::Result<()> {
        frame::write(op, payload, &mut self.out);
        self.flush().await
    }

    /// Writes whatever is unsent. Cancel-safe: progress is kept in `written`, so a
    /// send abandoned by a timeout leaves a frame that the next write completes.
    async fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            let n = self.io.write(&self.out[self.written..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        // TLS buffers records until flushed; for TCP this does nothing.
        self.io.flush().await?;
        self.out.clear();
        self.written = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Closes at once with 1013: the server holds `limits.max_connections` already.
    /// (Upgraded first, because browsers cannot read an HTTP status from a failed
    /// handshake, but can act on a close code.)
    pub async fn refuse_full(self, timeout: Duration) {
        let reason = close_reason(CloseCode::Again, "server full; try again later");
        self.close(Some(reason), timeout).await;
    }

    /// Ends the connection: our close frame (after anything still unsent, within
    /// `timeout`), then a half-close and a short linger for the client's reply.
    /// `None` drops the connection without a close frame.
    pub async fn close(mut self, reason: Option<CloseReason>, timeout: Duration) {
        let Some(reason) = reason else {
            return;
        };
        let mut payload = Vec::with_capacity(2 + 123);
        frame::close_payload(&reason, &mut payload);
        let sent = tokio::time::timeout(timeout, async {
            self.send(OpCode::Close, &payload).await?;
            self.io.shutdown().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                self.read.clear();
                self.read.reserve(READ_RESERVE);
                match self.io.read_buf(&mut self.read).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// A close reason from a code and a description.
pub fn close_reason(code: CloseCode, description: impl Into<String>) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.into()),
    }
}

/// A decoded frame as a message: text must be UTF-8 (else an `InvalidData` error,
/// which sessions close with 1007).
fn into_message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(bytes) => Message::Text(
            ByteString::try_from(bytes)
                .map_err(|e| ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        ),
        Frame::Binary(bytes) => Message::Binary(bytes),
        Frame::Continuation(item) => Message::Continuation(item),
        Frame::Ping(bytes) => Message::Ping(bytes),
        Frame::Pong(bytes) => Message::Pong(bytes),
        Frame::Close(reason) => Message::Close(reason),
    })
}
