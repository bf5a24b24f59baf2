//! The Server-Sent Events driver: a one-way stream of the same messages as a WebSocket
//! viewer's, as `text/event-stream` on a plain HTTP response.
//!
//! The handler's messages become events (`event:` the message type, `id:` the seq of
//! data-bearing ones, `data:` the JSON), optionally gzip-encoded by our small encoder
//! with a sync flush per event, and are handed to the response body through a channel
//! of one: awaiting that hand-over is the backpressure, bounded by the write deadline
//! and interrupted by stop, as on a WebSocket. The HTTP layer bounds the socket writes
//! themselves. There is no inbound traffic, so no idle timeout and no pings: the
//! handler's heartbeats keep proxies from timing out, and a client that went away
//! drops the body, which ends the viewer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_http::ws::CloseCode;
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::stop::Stop;
use super::{DriverSettings, Ending, Event, Transport};
use crate::deflate::{CodecError, FastDeflate};

/// The gzip member header (RFC 1952): deflate, no flags, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final stored block: ends the DEFLATE data of the member.
const FINAL_BLOCK: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];

/// One SSE response being streamed.
pub struct SseDriver {
    body: mpsc::Sender<Bytes>,
    gzip: Option<Box<Gzip>>,
    settings: Arc<DriverSettings>,
    stop: Stop,
    expiry: Pin<Box<Sleep>>,
    expires_at: Option<Instant>,
    /// An event the body did not take at once: [`Transport::flush`] hands it over.
    pending: Option<Bytes>,
}

/// The response body: one chunk per event, until the driver is dropped.
pub type SseBody = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>>>>;

impl SseDriver {
    /// A driver and the body it streams into. `gzip`: the client accepts gzip.
    pub fn new(
        settings: Arc<DriverSettings>,
        shutdown: &CancellationToken,
        gzip: bool,
    ) -> (SseDriver, SseBody) {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok(chunk), rx))
        });
        let far = Instant::now() + std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        let driver = SseDriver {
            body: tx,
            gzip: gzip.then(|| {
                Box::new(Gzip {
                    deflate: FastDeflate::new(settings.deflate_dictionary_bytes),
                    crc: flate2::Crc::new(),
                    started: false,
                })
            }),
            stop: Stop::new(shutdown),
            expiry: Box::pin(sleep_until(far)),
            expires_at: None,
            pending: None,
            settings,
        };
        (driver, Box::pin(body))
    }

    /// Encodes one event into a chunk of the body (`quiet`: see
    /// [`Transport::start_quiet_text`]).
    fn encode(
        &mut self,
        kind: &str,
        id: Option<u64>,
        json: &[u8],
        quiet: bool,
    ) -> Result<Bytes, CodecError> {
        let mut event = Vec::with_capacity(json.len() + 40);
        write_event(kind, id, json, &mut event);
        match self.gzip.as_mut() {
            None => Ok(Bytes::from(event)),
            Some(gzip) => Ok(Bytes::from(gzip.compress(&event, quiet))),
        }
    }

    /// Encodes one event and hands it to the body without waiting; a chunk the body
    /// has no room for is kept until `flush`.
    fn start_event(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
        quiet: bool,
    ) -> Result<(), Ending> {
        let chunk = self
            .encode(kind, id, json, quiet)
            .map_err(|e| Ending::Close(CloseCode::Error, e.to_string()))?;
        if let Some(pending) = self.pending.as_mut() {
            // Only when a handler starts two events without flushing between them.
            let mut joined = Vec::with_capacity(pending.len() + chunk.len());
            joined.extend_from_slice(pending);
            joined.extend_from_slice(&chunk);
            *pending = Bytes::from(joined);
            return Ok(());
        }
        match self.body.try_send(chunk) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                self.pending = Some(chunk);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Ending::Gone),
        }
    }

    /// Hands a chunk to the body within the write deadline, until stop or expiry.
    async fn hand_over(&mut self, chunk: Bytes) -> Result<(), Ending> {
        let expiry = self.expires_at;
        let outcome: Ending = tokio::select! {
            biased;
            sent = self.body.send(chunk) => match sent {
                Ok(()) => return Ok(()),
                Err(_) => Ending::Gone,
            },
            ending = self.stop.wait() => ending,
            _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => Ending::Expired,
            _ = sleep(self.settings.write_timeout) => Ending::SlowConsumer,
        };
        Err(outcome)
    }
}

/// Appends one event: `event:`, `id:` when given, one `data:` line (our JSON is
/// compact, so it holds no line break), and the blank line that ends the event.
pub fn write_event(kind: &str, id: Option<u64>, json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    debug_assert!(!json.contains(&b'\n') && !json.contains(&b'\r'));
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// A gzip member streamed one event at a time: each event ends with a sync flush, so
/// the browser can inflate it as soon as it arrives.
struct Gzip {
    deflate: FastDeflate,
    crc: flate2::Crc,
    started: bool,
}

impl Gzip {
    fn compress(&mut self, plain: &[u8], quiet: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() / 2 + 32);
        if !self.started {
            out.extend_from_slice(&GZIP_HEADER);
            self.started = true;
        }
        if quiet {
            self.deflate.compress_resting(plain, &mut out);
        } else {
            self.deflate.compress(plain, &mut out);
        }
        self.crc.update(plain);
        out
    }

    /// The end of the member: a final block, the CRC-32 and the length (mod 2^32).
    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + 13);
        if !self.started {
            out.extend_from_slice(&GZIP_HEADER);
        }
        out.extend_from_slice(&FINAL_BLOCK);
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        out
    }
}

impl Transport for SseDriver {
    async fn next<W: Future>(&mut self, wake: W) -> Result<Event<W::Output>, Ending> {
        tokio::pin!(wake);
        let has_expiry = self.expires_at.is_some();
        tokio::select! {
            biased;
            ending = self.stop.wait() => Err(ending),
            _ = self.body.closed() => Err(Ending::Gone),
            _ = &mut self.expiry, if has_expiry => Err(Ending::Expired),
            output = &mut wake => Ok(Event::Wake(output)),
        }
    }

    fn start_text(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_event(kind, id, json, false)
    }

    fn start_quiet_text(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        json: &[u8],
    ) -> Result<(), Ending> {
        self.start_event(kind, id, json, true)
    }

    fn start_binary(&mut self, _payload: &[u8]) -> Result<(), Ending> {
        Err(Ending::Close(
            CloseCode::Error,
            "binary messages cannot travel as events".into(),
        ))
    }

    async fn flush(&mut self) -> Result<(), Ending> {
        match self.pending.take() {
            None => Ok(()),
            Some(chunk) => Box::pin(self.hand_over(chunk)).await,
        }
    }

    async fn close(mut self, ending: &Ending) {
        let Some(reason) = ending.close_reason() else {
            return;
        };
        let close = serde_json::json!({
            "type": "close",
            "code": u16::from(reason.code),
            "reason": reason.description.unwrap_or_default(),
        })
        .to_string();
        let deadline = self
            .settings
            .write_timeout
            .min(super::driver::CLOSE_DEADLINE);
        let mut event = Vec::new();
        write_event("close", None, close.as_bytes(), &mut event);
        let chunk = match self.gzip.as_mut() {
            None => event,
            Some(gzip) => {
                let mut chunk = gzip.compress(&event, false);
                chunk.extend_from_slice(&gzip.finish());
                chunk
            }
        };
        // An event the body never took goes first: with gzip, the close continues its
        // compressed stream.
        let chunk = match self.pending.take() {
            None => chunk,
            Some(pending) => [&pending[..], &chunk].concat(),
        };
        let _ = tokio::time::timeout(deadline, self.body.send(Bytes::from(chunk))).await;
    }

    fn kick_handle(&self) -> CancellationToken {
        self.stop.kick_handle()
    }

    fn expire_at(&mut self, at: Instant) {
        self.expires_at = Some(at);
        self.expiry.as_mut().reset(at);
    }

    fn compression(&self) -> &'static str {
        if self.gzip.is_some() {
            "gzip"
        } else {
            "none"
        }
    }

    fn is_one_way(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn events_are_framed_as_the_spec_says() {
        let mut out = Vec::new();
        write_event("update", Some(8), br#"{"type":"update","seq":8}"#, &mut out);
        write_event("welcome", None, br#"{"type":"welcome"}"#, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: update\nid: 8\ndata: {\"type\":\"update\",\"seq\":8}\n\n\
             event: welcome\ndata: {\"type\":\"welcome\"}\n\n"
        );
    }

    #[test]
    fn the_gzip_member_inflates_event_by_event_and_ends_with_a_valid_trailer() {
        let mut gzip = Gzip {
            deflate: FastDeflate::new(4096),
            crc: flate2::Crc::new(),
            started: false,
        };
        let events: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("event: update\nid: {i}\ndata: {{\"seq\":{i}}}\n\n").into_bytes())
            .collect();
        let mut wire = Vec::new();
        let mut inflater = flate2::Decompress::new(false);
        for (i, event) in events.iter().enumerate() {
            let chunk = gzip.compress(event, false);
            // Each chunk inflates at once (after the 10-byte header of the first).
            let body = if i == 0 { &chunk[10..] } else { &chunk[..] };
            let mut out = Vec::with_capacity(4096);
            inflater
                .decompress_vec(body, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(&out, event);
            wire.extend_from_slice(&chunk);
        }
        wire.extend_from_slice(&gzip.finish());
        // A standard gzip reader checks the CRC and the length.
        let mut all = String::new();
        flate2::read::GzDecoder::new(&wire[..])
            .read_to_string(&mut all)
            .expect("a valid gzip member");
        assert_eq!(all.as_bytes(), events.concat());
    }
}
