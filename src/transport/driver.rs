//! The connection driver: the one owner of an upgraded connection's I/O and timers.
//!
//! A handler (the viewer viewer, the publisher) sees only what it cares about: a text
//! message, its own wake-up, or the reason the connection ends. Everything else is
//! here, once, for every socket:
//! - every frame written (data, ping, pong, close) is bounded by the write deadline
//!   and interrupted by stop (shutdown, an admin's kick), so a client that never
//!   reads costs one deadline, never a pinned task;
//! - pings are answered here, and inbound control frames count against a budget, so a
//!   ping flood ends in 1008 like any other abuse;
//! - one housekeeping timer runs the idle timeout, the periodic ping and the token's
//!   expiry (activity only moves the deadlines; the timer re-arms when it fires);
//! - fragments are reassembled under the message limit, and text must be UTF-8;
//! - with permessage-deflate (RFC 7692), messages are compressed and inflated here, so
//!   handlers always see and send plain text.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::ws::{CloseCode, CloseReason, OpCode};
use actix_web::web::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{sleep, sleep_until, Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::extension::PerMessageDeflate;
use super::frame::{self, Frame, Kind, Limits};
use super::stop::Stop;
use super::{Io, Transport};
use crate::deflate::{inflate_message, DeflateStream, InflateError};
use crate::limits::{AbuseGuard, Verdict};

/// Free space that makes a read go straight into the connection's buffer: the
/// decoder reserves a frame's size once its header is in. With less, the read goes
/// through the worker's scratch buffer.
const READ_RESERVE: usize = 512;

/// The per-worker read scratch: a client's pings, pongs and requests are a few dozen
/// bytes; a publisher's batch header arrives in the first read.
const READ_SCRATCH: usize = 16 * 1024;

/// The longest our close frame may take to leave. The connection is ending anyway,
/// often because the client stopped reading or the server is stopping, so this is
/// short whatever the write deadline is.
pub(super) const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// After our close frame, how long we keep reading for the client's close (or EOF)
/// before dropping the connection. Closing with unread input makes the kernel send a
/// reset, which can destroy our close frame in the client's receive buffer.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Close code for a client whose socket did not drain in time (contract §2).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// The bounds of one kind of socket (viewers and publishers have their own).
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// Largest message (and frame) accepted from the client.
    pub max_message_bytes: usize,
    /// A write that does not complete within this ends the connection (4008).
    pub write_timeout: Duration,
    /// The connection closes after this long without any inbound frame.
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    /// Inbound control frames (pings, pongs): rate, burst, and how many refused ones
    /// within `abuse_window` close the connection with 1008.
    pub control_frames_per_second: f64,
    pub control_frame_burst: f64,
    pub abuse_close_after: u32,
    pub abuse_window: Duration,
    /// The permessage-deflate encoder: level and plaintext history (as for the
    /// app-level mode).
    pub deflate_level: u32,
    pub deflate_dictionary_bytes: usize,
}

impl DriverSettings {
    /// Largest compressed payload accepted: a message within the limit can grow a
    /// little when it does not compress (stored blocks add 5 bytes per 64 KiB).
    fn max_compressed(&self) -> usize {
        self.max_message_bytes + self.max_message_bytes / 16 + 64
    }
}

/// What the driver hands its handler.
#[derive(Debug)]
pub enum Event<W> {
    /// A complete text message from the client.
    Text(String),
    /// The handler's own wake-up future completed with this.
    Wake(W),
}

/// Why a connection ends; each has its close code (`Gone` has none: nothing can be sent).
#[derive(Debug)]
pub enum Ending {
    /// The server is stopping (1001).
    Shutdown,
    /// An admin closed the connection (1008).
    Kicked,
    /// The client's token expired (1008).
    Expired,
    /// No inbound frame within the idle timeout (1000).
    Idle,
    /// A write did not complete within the write deadline (4008).
    SlowConsumer,
    /// Too many control frames (1008).
    Flood,
    /// The client broke the protocol: 1002, 1003, 1007 or 1009.
    Fault(CloseCode, &'static str),
    /// The handler's own reason.
    Close(CloseCode, String),
    /// The client sent a close frame; it is echoed.
    ClientClosed(Option<CloseReason>),
    /// The connection is gone.
    Gone,
}

impl Ending {
    /// The close frame this ending sends, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        let (code, description): (CloseCode, &str) = match self {
            Ending::Shutdown => (CloseCode::Away, "server shutting down"),
            Ending::Kicked => (CloseCode::Policy, "kicked by an admin"),
            Ending::Expired => (CloseCode::Policy, "token expired"),
            Ending::Idle => (CloseCode::Normal, "idle timeout: no frame received"),
            Ending::SlowConsumer => (
                CloseCode::Other(CLOSE_SLOW_CONSUMER),
                "slow consumer: socket did not drain",
            ),
            Ending::Flood => (
                CloseCode::Policy,
                "repeated abuse: control frame rate limit exceeded",
            ),
            Ending::Fault(code, reason) => (*code, *reason),
            Ending::Close(code, reason) => (*code, reason.as_str()),
            Ending::ClientClosed(reason) => {
                return Some(reason.clone().unwrap_or(CloseReason {
                    code: CloseCode::Normal,
                    description: None,
                }))
            }
            Ending::Gone => return None,
        };
        Some(CloseReason {
            code,
            description: Some(description.to_owned()),
        })
    }
}

/// One upgraded connection, server side (RFC 6455).
pub struct Driver {
    io: Box<dyn Io>,
    read: BytesMut,
    /// What the socket did not take of the frames started: empty (no allocation)
    /// unless a write is waiting; `written` bytes of it are on the wire.
    out: Vec<u8>,
    written: usize,
    /// Bytes were written since the last flush of the stream (TLS buffers records).
    unflushed: bool,
    /// A fragmented text message being reassembled (compressed, if `partial_deflated`).
    partial: Option<Vec<u8>>,
    partial_deflated: bool,
    /// The permessage-deflate encoder, when negotiated.
    deflate: Option<Box<DeflateStream>>,
    settings: Arc<DriverSettings>,
    stop: Stop,
    /// The housekeeping timer: the earliest of the next ping, the idle deadline and
    /// the expiry.
    timer: Pin<Box<Sleep>>,
    last_inbound: Instant,
    next_ping: Instant,
    expires_at: Option<Instant>,
    control: AbuseGuard,
}

impl Driver {
    /// `leftover`: what the client sent behind its handshake, already read.
    /// `deflate`: the permessage-deflate parameters, if the handshake negotiated it.
    pub fn new(
        io: Box<dyn Io>,
        leftover: &[u8],
        settings: Arc<DriverSettings>,
        shutdown: &CancellationToken,
        deflate: Option<PerMessageDeflate>,
    ) -> Driver {
        let read = BytesMut::from(leftover);
        let now = Instant::now();
        let next_ping = now + settings.ping_interval;
        let control = AbuseGuard::new(
            settings.control_frames_per_second,
            settings.control_frame_burst,
            settings.abuse_close_after,
            settings.abuse_window,
        );
        let mut driver = Driver {
            io,
            read,
            out: Vec::new(),
            written: 0,
            unflushed: false,
            partial: None,
            partial_deflated: false,
            deflate: deflate.map(|d| {
                Box::new(DeflateStream::with_window(
                    settings.deflate_level,
                    settings.deflate_dictionary_bytes,
                    d.server_max_window_bits,
                    !d.server_no_context_takeover,
                ))
            }),
            stop: Stop::new(shutdown),
            timer: Box::pin(sleep_until(next_ping)),
            last_inbound: now,
            next_ping,
            expires_at: None,
            control,
            settings,
        };
        driver.rearm();
        driver
    }

    /// Starts a data message: compressed when permessage-deflate is on, framed, and
    /// written as far as the socket takes it, all through per-worker scratch buffers.
    /// `quiet`: sent because the connection was quiet; the encoder rests
    /// ([`DeflateStream::compress_resting`]).
    fn start_message(&mut self, op: OpCode, payload: &[u8], quiet: bool) -> Result<(), Ending> {
        if self.deflate.is_none() {
            return self.start(op, payload);
        }
        COMPRESSED.with_borrow_mut(|scratch| {
            scratch.clear();
            if let Some(deflate) = self.deflate.as_mut() {
                let compressed = if quiet {
                    deflate.compress_resting(payload, scratch)
                } else {
                    deflate.compress(payload, scratch)
                };
                if let Err(e) = compressed {
                    return Err(Ending::Close(CloseCode::Error, e.to_string()));
                }
            }
            // RFC 7692 §7.2.1: the sync flush's empty block is left off.
            scratch.truncate(scratch.len().saturating_sub(4));
            FRAME.with_borrow_mut(|frame| {
                frame.clear();
                frame::write_compressed(op, scratch, frame);
                self.write_now(frame)
            })
        })
    }

    /// Starts one uncompressed frame (control frames, and data without compression).
    fn start(&mut self, op: OpCode, payload: &[u8]) -> Result<(), Ending> {
        FRAME.with_borrow_mut(|frame| {
            frame.clear();
            frame::write(op, payload, frame);
            self.write_now(frame)
        })
    }

    /// Writes `bytes` as far as the socket takes them without waiting; keeps the rest
    /// in `out` for [`Driver::drain`]. Behind anything already waiting, it only queues.
    fn write_now(&mut self, bytes: &[u8]) -> Result<(), Ending> {
        self.unflushed = true;
        if !self.out.is_empty() {
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        // A no-op waker: `Pending` only means "the rest waits for `drain`", whose
        // poll registers the task's real waker.
        let mut cx = Context::from_waker(Waker::noop());
        let mut sent = 0;
        while sent < bytes.len() {
            match Pin::new(&mut self.io).poll_write(&mut cx, &bytes[sent..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(Ending::Gone),
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Pending => break,
            }
        }
        if sent < bytes.len() {
            self.out.extend_from_slice(&bytes[sent..]);
            self.written = 0;
            return Ok(());
        }
        match Pin::new(&mut self.io).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => self.unflushed = false,
            Poll::Ready(Err(_)) => return Err(Ending::Gone),
            Poll::Pending => {}
        }
        Ok(())
    }

    /// Closes at once with 1013: the server holds its maximum of connections already.
    /// (Upgraded first, because browsers cannot read an HTTP status from a failed
    /// handshake, but can act on a close code.)
    pub async fn refuse_full(self) {
        let ending = Ending::Close(CloseCode::Again, "server full; try again later".into());
        self.close(&ending).await;
    }

    /// Frames `payload` and writes it out, waiting if the socket does not take it.
    async fn send(&mut self, op: OpCode, payload: &[u8]) -> Result<(), Ending> {
        self.start(op, payload)?;
        self.wait_written().await
    }

    /// Waits for whatever [`Driver::write_now`] left. The wait is boxed: it is the
    /// slow path, so the handler's future does not carry its timers.
    async fn wait_written(&mut self) -> Result<(), Ending> {
        if self.out.is_empty() && !self.unflushed {
            return Ok(());
        }
        Box::pin(self.drain()).await
    }

    /// Writes out everything left, within the write deadline, and until stop or the
    /// token's expiry; then releases the buffer.
    async fn drain(&mut self) -> Result<(), Ending> {
        let write = flush(&mut self.io, &mut self.out, &mut self.written);
        // Biased towards the write: when it completes at once, neither the deadline
        // nor the stop waiter is ever registered.
        let expiry = self.expires_at;
        let outcome: Ending = tokio::select! {
            biased;
            written = write => match written {
                Ok(()) => {
                    self.unflushed = false;
                    return Ok(());
                }
                Err(_) => Ending::Gone,
            },
            ending = self.stop.wait() => ending,
            _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => Ending::Expired,
            _ = sleep(self.settings.write_timeout) => Ending::SlowConsumer,
        };
        Err(outcome)
    }

    /// A frame from the client: `Some` when it completes a text message.
    async fn on_frame(&mut self, frame: Frame) -> Result<Option<String>, Ending> {
        let limit = self.settings.max_message_bytes;
        match frame.kind {
            Kind::Text if self.partial.is_some() => Err(Ending::Fault(
                CloseCode::Protocol,
                "a new message began before the last one ended",
            )),
            Kind::Text if frame.fin => self.message(frame.payload.to_vec(), frame.rsv1).map(Some),
            Kind::Text => {
                self.partial = Some(frame.payload.to_vec());
                self.partial_deflated = frame.rsv1;
                Ok(None)
            }
            Kind::Binary => Err(Ending::Fault(
                CloseCode::Unsupported,
                "binary frames are not accepted; send JSON text",
            )),
            Kind::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(Ending::Fault(
                        CloseCode::Protocol,
                        "unexpected continuation frame",
                    ));
                };
                let cap = if self.partial_deflated {
                    self.settings.max_compressed()
                } else {
                    limit
                };
                if partial.len() + frame.payload.len() > cap {
                    return Err(Ending::Fault(
                        CloseCode::Size,
                        "message larger than the limit",
                    ));
                }
                partial.extend_from_slice(&frame.payload);
                match (frame.fin, self.partial.take()) {
                    (true, Some(message)) => self.message(message, self.partial_deflated).map(Some),
                    (_, partial) => {
                        self.partial = partial;
                        Ok(None)
                    }
                }
            }
            Kind::Ping => {
                if self.control_allowed()? {
                    self.send(OpCode::Pong, &frame.payload).await?;
                }
                Ok(None)
            }
            Kind::Pong => {
                self.control_allowed()?;
                Ok(None)
            }
            Kind::Close => match frame::parse_close(&frame.payload) {
                Ok(reason) => Err(Ending::ClientClosed(reason)),
                Err(fault) => Err(Ending::Fault(fault.code, fault.reason)),
            },
        }
    }

    /// A complete text message, inflated first if it came compressed (under the
    /// message limit, refused while inflating).
    fn message(&self, payload: Vec<u8>, compressed: bool) -> Result<String, Ending> {
        if !compressed {
            return utf8(payload);
        }
        match inflate_message(&payload, self.settings.max_message_bytes) {
            Ok(plain) => utf8(plain),
            Err(InflateError::TooLarge(_)) => Err(Ending::Fault(
                CloseCode::Size,
                "message larger than the limit",
            )),
            Err(InflateError::Invalid) => Err(Ending::Fault(
                CloseCode::Invalid,
                "compressed message is not valid DEFLATE data",
            )),
        }
    }

    /// Takes a control frame from the budget: over it, the frame is ignored; abuse
    /// ends the connection.
    fn control_allowed(&mut self) -> Result<bool, Ending> {
        match self.control.check(std::time::Instant::now()) {
            Verdict::Allowed => Ok(true),
            Verdict::Refused => Ok(false),
            Verdict::Abuse => Err(Ending::Flood),
        }
    }

    async fn on_timer(&mut self) -> Result<(), Ending> {
        let now = Instant::now();
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Ending::Expired);
        }
        if now >= self.last_inbound + self.settings.idle_timeout {
            return Err(Ending::Idle);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.settings.ping_interval;
            self.send(OpCode::Ping, b"").await?;
        }
        self.rearm();
        Ok(())
    }

    fn rearm(&mut self) {
        let mut at = self
            .next_ping
            .min(self.last_inbound + self.settings.idle_timeout);
        if let Some(expiry) = self.expires_at {
            at = at.min(expiry);
        }
        self.timer.as_mut().reset(at);
    }
}

impl Transport for Driver {
    fn compression(&self) -> &'static str {
        if self.deflate.is_some() {
            "permessage-deflate"
        } else {
            "none"
        }
    }

    fn is_one_way(&self) -> bool {
        false
    }

    /// Cancelling this token closes the connection with 1008 ("kicked by an admin").
    fn kick_handle(&self) -> CancellationToken {
        self.stop.kick_handle()
    }

    /// The connection closes with 1008 ("token expired") at `at`.
    fn expire_at(&mut self, at: Instant) {
        self.expires_at = Some(at);
        self.rearm();
    }

    /// Waits for the next thing the handler must act on: a text message from the
    /// client, or `wake` (the handler's own timers and signals; it is dropped when
    /// anything else comes first, so it must be cancel-safe). Control frames, pings,
    /// the idle timeout and stop are dealt with here.
    async fn next<W: Future>(&mut self, wake: W) -> Result<Event<W::Output>, Ending> {
        tokio::pin!(wake);
        let limits = Limits {
            max_payload: self.settings.max_message_bytes,
            max_compressed: self
                .deflate
                .is_some()
                .then(|| self.settings.max_compressed()),
        };
        loop {
            // The handler's wake first: it is what fires on almost every wake-up (the
            // flush timer), and returning at once skips polling the rest, which costs
            // cache misses per connection (stop's token, the socket's readiness, the
            // timer). It cannot starve stop: it is re-armed into the future each time.
            // Stop comes before reads, so a client that floods frames cannot hold off
            // a kick or shutdown.
            let step = tokio::select! {
                biased;
                output = &mut wake => return Ok(Event::Wake(output)),
                ending = self.stop.wait() => Step::Stopped(ending),
                frame = read_frame(&mut self.io, &mut self.read, limits) => Step::Frame(frame),
                _ = &mut self.timer => Step::Timer,
            };
            match step {
                Step::Stopped(ending) => return Err(ending),
                Step::Timer => self.on_timer().await?,
                Step::Frame(frame) => {
                    self.last_inbound = Instant::now();
                    if let Some(text) = self.on_frame(frame?).await? {
                        return Ok(Event::Text(text));
                    }
                }
            }
        }
    }

    fn start_text(
        &mut self,
        _kind: &'static str,
        _id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_message(OpCode::Text, json, false)
    }

    fn start_quiet_text(
        &mut self,
        _kind: &'static str,
        _id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_message(OpCode::Text, json, true)
    }

    fn start_binary(&mut self, payload: &[u8]) -> Result<(), Ending> {
        self.start_message(OpCode::Binary, payload, false)
    }

    async fn flush(&mut self) -> Result<(), Ending> {
        self.wait_written().await
    }

    /// Ends the connection: the ending's close frame (behind anything still unsent,
    /// within a short deadline), then a half-close and a short linger for the client's
    /// reply. An ending without a close frame drops the connection.
    async fn close(mut self, ending: &Ending) {
        let Some(reason) = ending.close_reason() else {
            return;
        };
        let mut payload = Vec::with_capacity(2 + 123);
        frame::close_payload(&reason, &mut payload);
        frame::write(OpCode::Close, &payload, &mut self.out);
        let deadline = self.settings.write_timeout.min(CLOSE_DEADLINE);
        let sent = tokio::time::timeout(deadline, async {
            flush(&mut self.io, &mut self.out, &mut self.written).await?;
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

thread_local! {
    /// The compressed form of the message being sent (one buffer per worker thread).
    static COMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The frame being written (one buffer per worker thread): a connection keeps only
    /// what its socket did not take.
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// What a read brought in (one buffer per worker thread): a connection keeps only
    /// an incomplete frame.
    static READ: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

enum Step {
    Stopped(Ending),
    Timer,
    Frame(Result<Frame, Ending>),
}

fn utf8(bytes: Vec<u8>) -> Result<String, Ending> {
    String::from_utf8(bytes)
        .map_err(|_| Ending::Fault(CloseCode::Invalid, "text message is not UTF-8"))
}

/// Reads until `buf` holds one whole frame. Cancel-safe: whatever was read stays in
/// `buf` for the next call.
async fn read_frame(
    io: &mut Box<dyn Io>,
    buf: &mut BytesMut,
    limits: Limits,
) -> Result<Frame, Ending> {
    loop {
        let decoded = frame::decode(buf, limits);
        if buf.is_empty() {
            // Nothing pending: the connection waits for input with no buffer of its own.
            *buf = BytesMut::new();
        }
        match decoded {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(fault) => return Err(Ending::Fault(fault.code, fault.reason)),
        }
        let read = if buf.capacity() - buf.len() >= READ_RESERVE {
            // A frame in progress: the decoder reserved its size; read straight in.
            io.read_buf(buf).await
        } else {
            read_via_scratch(io, buf).await
        };
        match read {
            Ok(0) | Err(_) => return Err(Ending::Gone),
            Ok(_) => {}
        }
    }
}

/// Reads what the socket has into this worker's scratch buffer and appends it to
/// `buf`, so an idle connection (most viewers, most of the time) waits for its next
/// ping or request without a read buffer. Cancel-safe: a pending read took nothing.
async fn read_via_scratch(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ.with_borrow_mut(|scratch| {
            if scratch.len() < READ_SCRATCH {
                scratch.resize(READ_SCRATCH, 0);
            }
            let mut read = ReadBuf::new(scratch);
            match Pin::new(&mut **io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// Writes whatever is unsent. Cancel-safe: progress is kept in `written`, so a write
/// abandoned by stop leaves a frame that the close completes.
async fn flush(
    io: &mut Box<dyn Io>,
    out: &mut Vec<u8>,
    written: &mut usize,
) -> std::io::Result<()> {
    while *written < out.len() {
        let n = io.write(&out[*written..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *written += n;
    }
    // TLS buffers records until flushed; for TCP this does nothing.
    io.flush().await?;
    // Released, not kept: most writes never wait, so most connections hold nothing.
    *out = Vec::new();
    *written = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A driver on one end of an in-memory pipe that holds 64 bytes.
    fn piped(write_timeout: Duration) -> (Driver, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(64);
        let shutdown = CancellationToken::new();
        let driver = Driver::new(
            Box::new(server),
            &[],
            settings(write_timeout),
            &shutdown,
            None,
        );
        (driver, client)
    }

    fn settings(write_timeout: Duration) -> Arc<DriverSettings> {
        Arc::new(DriverSettings {
            max_message_bytes: 64 * 1024,
            write_timeout,
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(60),
            control_frames_per_second: 10.0,
            control_frame_burst: 10.0,
            abuse_close_after: 5,
            abuse_window: Duration::from_secs(10),
            deflate_level: 1,
            deflate_dictionary_bytes: 4096,
        })
    }

    /// Splits server frames (unmasked, 16-bit lengths here) into their payloads.
    fn payloads(mut wire: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0], 0x81, "a final text frame");
            assert_eq!(wire[1], 126, "a 16-bit length");
            let len = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
            out.push(wire[4..4 + len].to_vec());
            wire = &wire[4 + len..];
        }
        out
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_is_kept_and_written_in_order() {
        // Every message is a partial write.
        let (mut driver, mut client) = piped(Duration::from_secs(5));
        let messages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 1000]).collect();
        driver.start_text("update", None, &messages[0]).unwrap();
        assert_eq!(driver.out.len(), 4 + 1000 - 64, "the rest is kept");
        // Behind a partial write, the next message only queues.
        driver.start_text("update", None, &messages[1]).unwrap();
        let reader = tokio::spawn(async move {
            let mut wire = vec![0; 3 * (4 + 1000)];
            client.read_exact(&mut wire).await.unwrap();
            wire
        });
        driver.flush().await.unwrap();
        assert_eq!(driver.out.capacity(), 0, "released once written");
        driver
            .send_text("update", None, &messages[2])
            .await
            .unwrap();
        assert_eq!(payloads(&reader.await.unwrap()), messages);
    }

    /// A masked client text frame.
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        frame
    }

    #[tokio::test]
    async fn frames_are_read_whole_however_they_arrive_and_nothing_is_kept_after() {
        use tokio::io::AsyncWriteExt;
        let (mut driver, mut client) = piped(Duration::from_secs(5));
        let large = "x".repeat(20_000);
        let sent = ["ping", "{\"type\":\"snapshot\"}", large.as_str()];
        let wire: Vec<u8> = sent
            .iter()
            .flat_map(|m| client_frame(m.as_bytes()))
            .collect();
        // Two small frames in one read, then a large one (past the scratch buffer)
        // in pieces of every size.
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(997) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        for expected in sent {
            match driver.next(std::future::pending::<()>()).await {
                Ok(Event::Text(text)) => assert_eq!(text, expected),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(driver.read.capacity(), 0, "no read buffer between messages");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_ends_at_the_deadline() {
        let (mut driver, _client) = piped(Duration::from_millis(200));
        let outcome = driver.send_text("update", None, &[b'x'; 1000]).await;
        assert!(matches!(outcome, Err(Ending::SlowConsumer)), "{outcome:?}");
    }
}
