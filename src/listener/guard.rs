//! Bounds on every plain HTTP connection, enforced on the byte stream itself, below
//! actix-http's HTTP/1 dispatcher.
//!
//! The dispatcher has a head timeout (first request only) and a keep-alive timeout, but
//! nothing bounds a connection whose client stops reading: a blocked response write
//! is retried forever, and the dispatcher keeps decoding pipelined requests into an
//! unbounded write buffer meanwhile (measured: 20 such clients, 110 MB). Nor does
//! anything cap how many connections one address holds. So every accepted connection
//! (plain TCP, or TLS after its handshake) is admitted here and wrapped in a
//! [`GuardedIo`] before the dispatcher sees it:
//!
//! - it holds an HTTP connection slot (per client address and in total); a
//!   connection beyond a cap gets a raw 429 or 503 with `Retry-After` and is closed;
//! - a write that stays blocked longer than `http.write_timeout_ms` fails with
//!   `TimedOut`, which ends the dispatcher and frees its buffers;
//! - while a write is blocked, reads pause, and requests already read wait before
//!   their handler runs ([`wait_until_writable`]): the dispatcher would otherwise
//!   encode every pipelined request's response into its write buffer (128 KiB of
//!   `GET /app.js` requests become ~100 MB of responses), so a client that does not
//!   read could make the server buffer far more than it sent;
//! - bytes read while no handler runs must become a request within
//!   `http.request_head_timeout_ms`: actix-http times the first request's head only,
//!   so a later request's head could otherwise be trickled for ever.
//!
//! An upgraded WebSocket leaves this regime through [`GuardedIo::into_inner`]: it has
//! its own caps (`[limits]`) and write deadline (the slow-consumer timeout).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::debug;

use crate::config::HttpSettings;
use crate::limits::{ConnectionLimits, ConnectionSlot, Refusal};

/// How long a refusal may take to write: it is a few hundred bytes into an empty
/// socket buffer, so only a client that is not there at all takes longer.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a refused connection's input is drained after the refusal is sent and
/// the write side closed: closing with unread input would send a reset, which can
/// destroy the refusal before the client reads it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// `Retry-After` of a refusal for the per-address cap: one of the address's own
/// connections usually ends within a keep-alive period.
const RETRY_AFTER_PER_ADDRESS_SECS: u64 = 1;
/// `Retry-After` of a refusal because the server is full: spread the retries out.
const RETRY_AFTER_SERVER_FULL_SECS: u64 = 5;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Connections refused with 429 (the address holds its maximum).
    pub refused_per_address: AtomicU64,
    /// Connections refused with 503 (the server holds its maximum).
    pub refused_server_full: AtomicU64,
    /// Connections ended because a response write stayed blocked too long.
    pub write_timeouts: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub body_timeouts: AtomicU64,
}

/// The HTTP connection caps and deadlines of one server, shared by its workers.
pub struct HttpGuard {
    limits: Arc<ConnectionLimits>,
    /// Exempt from the per-address cap: all of a proxy's clients share its address.
    trusted_proxies: Vec<IpAddr>,
    write_timeout: Duration,
    /// Also bounds the heads of later requests on a kept-alive connection, which
    /// actix-http's head timer (first request only) does not.
    head_timeout: Duration,
    pub counters: HttpCounters,
}

impl HttpGuard {
    pub fn new(settings: &HttpSettings, trusted_proxies: Vec<IpAddr>) -> HttpGuard {
        HttpGuard {
            limits: Arc::new(ConnectionLimits::new(
                settings.max_connections_per_ip,
                settings.max_connections,
            )),
            trusted_proxies,
            write_timeout: settings.write_timeout(),
            head_timeout: settings.request_head_timeout(),
            counters: HttpCounters::default(),
        }
    }

    /// HTTP connections open now (upgraded WebSockets are not among them).
    pub fn open(&self) -> usize {
        self.limits.open()
    }

    /// Takes a connection slot for `io` from `peer`: the guarded stream, or the
    /// stream back with the reason it may not stay.
    #[allow(clippy::result_large_err)] // the `Err` hands the stream back, by design
    pub fn admit<T>(
        self: &Arc<Self>,
        io: T,
        peer: Option<SocketAddr>,
    ) -> Result<GuardedIo<T>, (T, Refusal)> {
        let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let slot = if self.trusted_proxies.contains(&ip) {
            self.limits.acquire_exempt()
        } else {
            self.limits.acquire(ip)
        };
        match slot {
            Ok(slot) => Ok(GuardedIo {
                io,
                _slot: slot,
                guard: self.clone(),
                gate: WriteGate::default(),
                write_deadline: None,
                write_blocked: false,
                read_paused: false,
                timed_out: false,
                read_yield: false,
                head_deadline: None,
                head_armed: None,
            }),
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::TooManyFromAddress => &self.counters.refused_per_address,
                    Refusal::ServerFull => &self.counters.refused_server_full,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                debug!(%ip, ?refusal, "HTTP connection refused by a connection cap");
                Err((io, refusal))
            }
        }
    }
}

/// Answers a connection refused by a cap with a complete HTTP response (429 or 503,
/// `Retry-After`, our JSON error body, `Connection: close`), then closes it politely:
/// half-close, and drain whatever the client sent for a moment, so it reads the
/// answer rather than a reset. Every step is bounded; errors only end it sooner.
pub async fn refuse<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, refusal: Refusal) {
    let response = refusal_response(refusal);
    let written = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The raw response for a refusal; the same JSON error shape as every REST error.
fn refusal_response(refusal: Refusal) -> String {
    let (status, code, message, retry_after) = match refusal {
        Refusal::TooManyFromAddress => (
            "429 Too Many Requests",
            "rate_limited",
            "too many open HTTP connections from your address (http.max_connections_per_ip)",
            RETRY_AFTER_PER_ADDRESS_SECS,
        ),
        Refusal::ServerFull => (
            "503 Service Unavailable",
            "server_full",
            "the server holds its maximum of HTTP connections (http.max_connections)",
            RETRY_AFTER_SERVER_FULL_SECS,
        ),
    };
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    format!(
        "HTTP/1.1 {status}\r\nRetry-After: {retry_after}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An admitted HTTP connection: holds its slot until dropped, fails a write that
/// stays blocked longer than `http.write_timeout_ms`, and a read once bytes have
/// waited longer than `http.request_head_timeout_ms` to become a request.
pub struct GuardedIo<T> {
    io: T,
    /// Released when the connection ends, or by [`GuardedIo::into_inner`].
    _slot: ConnectionSlot,
    guard: Arc<HttpGuard>,
    /// Tells this connection's request handlers whether its writes are blocked.
    gate: WriteGate,
    /// Allocated on the first blocked write only (most connections never block), then
    /// reset, never reallocated.
    write_deadline: Option<Pin<Box<Sleep>>>,
    /// A write returned `Pending` and none has made progress since.
    write_blocked: bool,
    /// A read returned `Pending` because a write was blocked: the task must be woken
    /// when writes resume, since no read readiness was registered then.
    read_paused: bool,
    /// The deadline passed: every later write fails at once.
    timed_out: bool,
    /// The last read returned data: the next one yields first.
    read_yield: bool,
    /// Allocated on the first read, then reset: the deadline for bytes read while no
    /// handler runs (the start of a request head) to become a request.
    head_deadline: Option<Pin<Box<Sleep>>>,
    /// Armed with the gate's request count at arming time; a request started since
    /// (or one running) disarms it.
    head_armed: Option<u64>,
}

impl<T> GuardedIo<T> {
    /// Releases the HTTP connection slot and returns the raw stream: an upgraded
    /// WebSocket is governed by its own caps and deadlines from then on.
    pub fn into_inner(self) -> T {
        self.io
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The handle [`wait_until_writable`] finds in the request's connection data.
    pub fn write_gate(&self) -> WriteGate {
        self.gate.clone()
    }

    /// Bytes went out: the server is still answering an earlier request, so a
    /// pipelined next one is not late yet; its head deadline restarts.
    fn wrote(&mut self, poll: &Poll<io::Result<usize>>) {
        if let (Poll::Ready(Ok(1..)), Some(_), Some(sleep)) =
            (poll, self.head_armed, &mut self.head_deadline)
        {
            sleep
                .as_mut()
                .reset(Instant::now() + self.guard.head_timeout);
        }
    }

    /// A write made progress (or failed): the deadline is off, and reads and handlers
    /// that were paused for it may go on.
    fn unblocked(&mut self, cx: &mut Context<'_>) {
        if !self.write_blocked {
            return;
        }
        self.write_blocked = false;
        self.gate.set_blocked(false);
        if self.read_paused {
            self.read_paused = false;
            cx.waker().wake_by_ref();
        }
    }

    /// A write returned `Pending`: arms the deadline on the first one, then tells
    /// whether it has passed (registering the task to be woken when it does).
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.guard.write_timeout;
        let newly_blocked = !self.write_blocked;
        if newly_blocked {
            self.write_blocked = true;
            self.gate.set_blocked(true);
        }
        let sleep = match &mut self.write_deadline {
            Some(sleep) => {
                if newly_blocked {
                    sleep.as_mut().reset(Instant::now() + timeout);
                }
                sleep
            }
            None => self
                .write_deadline
                .insert(Box::pin(sleep_until(Instant::now() + timeout))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timed_out = true;
        self.guard
            .counters
            .write_timeouts
            .fetch_add(1, Ordering::Relaxed);
        debug!(
            timeout_ms = timeout.as_millis() as u64,
            "HTTP client does not read its responses; closing the connection"
        );
        Poll::Ready(timed_out())
    }

    /// The outcome of one write-side poll of the inner stream, with the deadline.
    fn bound<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.unblocked(cx);
                Poll::Ready(result)
            }
            Poll::Pending => self.blocked(cx).map(Err),
        }
    }
}

/// A connection's state shared between its [`GuardedIo`] and its request handlers
/// (one allocation per connection): whether its writes are blocked, and whether a
/// request has reached its handler since bytes were read.
#[derive(Clone, Default)]
pub struct WriteGate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    blocked: AtomicBool,
    waiter: AtomicWaker,
    /// Requests whose handler has started on this connection.
    requests: AtomicU64,
    /// Handlers running now.
    running: AtomicU64,
}

/// A handler running; counted until dropped.
pub struct Running(WriteGate);

impl Drop for Running {
    fn drop(&mut self) {
        self.0 .0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WriteGate {
    /// A request reached its handler.
    fn start_request(&self) -> Running {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        self.0.requests.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// The started-request count, if no handler runs now.
    fn idle_requests(&self) -> Option<u64> {
        (self.0.running.load(Ordering::Acquire) == 0)
            .then(|| self.0.requests.load(Ordering::Acquire))
    }

    /// Whether a request started since the count `since`, or one is running.
    fn request_started_since(&self, since: u64) -> bool {
        self.0.running.load(Ordering::Acquire) > 0
            || self.0.requests.load(Ordering::Acquire) != since
    }

    fn set_blocked(&self, blocked: bool) {
        self.0.blocked.store(blocked, Ordering::Release);
        if !blocked {
            self.0.waiter.wake();
        }
    }

    /// Resolves once the connection's writes are not blocked.
    pub async fn writable(&self) {
        std::future::poll_fn(|cx| {
            if !self.0.blocked.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.0.waiter.register(cx.waker());
            // Unblocked between the check and the registration: do not miss it.
            if self.0.blocked.load(Ordering::Acquire) {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}

/// Middleware on every route: a request's handler runs only while its connection's
/// writes are not blocked, so the dispatcher stops producing responses for a client
/// that does not read them (and, its pipeline queue full, stops decoding requests).
/// The write deadline ends such a connection; this bounds what it holds meanwhile.
/// It also tells the connection that a request arrived whole (see `head_deadline`).
pub async fn wait_until_writable(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(gate) = req.conn_data::<WriteGate>().cloned() else {
        return next.call(req).await;
    };
    gate.writable().await;
    let _running = gate.start_request();
    next.call(req).await
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "response write blocked longer than http.write_timeout_ms",
    )
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_blocked {
            // The pending write (its readiness and its deadline) will wake this task.
            this.read_paused = true;
            return Poll::Pending;
        }
        if this.read_yield {
            // One read per turn: the dispatcher decodes (and answers) what it has before
            // it reads more, instead of decoding every request a 128 KiB read buffer
            // holds before the first response shows the client is not reading.
            this.read_yield = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(armed) = this.head_armed {
            if this.gate.request_started_since(armed) {
                this.head_armed = None;
            } else if let Some(sleep) = &mut this.head_deadline {
                if sleep.as_mut().poll(cx).is_ready() {
                    debug!("a request head did not arrive in time; closing the connection");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received within http.request_head_timeout_ms",
                    )));
                }
            }
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        let read_some = buf.filled().len() > before;
        this.read_yield = read_some;
        if read_some && this.head_armed.is_none() {
            if let Some(requests) = this.gate.idle_requests() {
                // Bytes with no handler running: the start of a request, which must
                // reach its handler within the head timeout (a trickled head would
                // otherwise hold a kept-alive connection for ever).
                let deadline = Instant::now() + this.guard.head_timeout;
                match &mut this.head_deadline {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => this.head_deadline = Some(Box::pin(sleep_until(deadline))),
                }
                this.head_armed = Some(requests);
            }
        }
        poll
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&poll);
        this.bound(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&poll);
        this.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.bound(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bound(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_ip: usize, total: usize, write_timeout_ms: u64) -> HttpSettings {
        HttpSettings {
            max_connections_per_ip: per_ip,
            max_connections: total,
            keep_alive_ms: 5000,
            request_head_timeout_ms: 5000,
            body_timeout_ms: 10000,
            write_timeout_ms,
        }
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    #[tokio::test]
    async fn a_write_blocked_past_the_deadline_fails_and_reads_pause_meanwhile() {
        // A duplex pipe with a 16-byte buffer stands for a client that does not read.
        let (server, mut client) = tokio::io::duplex(16);
        let connections = Arc::new(HttpGuard::new(&settings(4, 4, 50), vec![]));
        let Ok(mut guarded) = connections.admit(server, peer("10.0.0.1")) else {
            panic!("admitted");
        };
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();

        let started = std::time::Instant::now();
        let err = guarded.write_all(&[b'x'; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(
            connections.counters.write_timeouts.load(Ordering::Relaxed),
            1
        );
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(20), guarded.read(&mut buf)).await;
        assert!(read.is_err(), "reads pause while a write is blocked");
    }

    #[tokio::test]
    async fn writes_that_progress_never_time_out_and_resume_reads() {
        let (server, mut client) = tokio::io::duplex(16);
        let connections = Arc::new(HttpGuard::new(&settings(4, 4, 100), vec![]));
        let Ok(mut guarded) = connections.admit(server, peer("10.0.0.1")) else {
            panic!("admitted");
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            while got.len() < 256 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let n = client.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            client.write_all(b"next").await.unwrap();
            client
        });
        guarded.write_all(&[b'y'; 256]).await.unwrap();
        let _client = reader.await.unwrap();
        let mut buf = [0u8; 4];
        guarded.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"next");
    }

    #[test]
    fn slots_are_capped_per_address_except_for_proxies_and_released_by_into_inner() {
        let proxy = "10.0.0.9";
        let connections = Arc::new(HttpGuard::new(
            &settings(1, 3, 1000),
            vec![proxy.parse().unwrap()],
        ));
        let first = connections.admit((), peer("10.0.0.1")).ok().unwrap();
        let refused = connections.admit((), peer("10.0.0.1")).err().unwrap();
        assert_eq!(refused.1, Refusal::TooManyFromAddress);
        let _proxied: Vec<_> = (0..2)
            .map(|_| connections.admit((), peer(proxy)).ok().unwrap())
            .collect();
        let full = connections.admit((), peer(proxy)).err().unwrap();
        assert_eq!(full.1, Refusal::ServerFull);
        assert_eq!(connections.open(), 3);
        first.into_inner();
        assert_eq!(connections.open(), 2, "into_inner releases the slot");
        assert!(connections.admit((), peer("10.0.0.1")).is_ok());
    }

    #[test]
    fn refusals_are_complete_json_responses() {
        let response = refusal_response(Refusal::TooManyFromAddress);
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains("Retry-After: 1\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "rate_limited");
        let response = refusal_response(Refusal::ServerFull);
        assert!(response.starts_with("HTTP/1.1 503 "));
        assert!(response.contains("\"server_full\""));
    }
}
