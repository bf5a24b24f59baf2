//! One task per WebSocket viewer: private state and a single loop on its driver.
//!
//! The driver (`crate::transport`) owns the connection: stop, pings, the idle timeout,
//! every write's deadline. The viewer waits on it for a client's text message or its
//! own wake-up: "the store changed" (only while no flush is scheduled) or its one
//! timer, which is the scheduled flush or else the heartbeat deadline. A flush scans
//! the subscriptions, writes one `update` with every changed symbol, and awaits the
//! socket: that await is the backpressure. While it waits nothing queues; the next
//! flush simply sends the newer values (conflation).

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::CloseCode;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{debug, info, Instrument};

use super::protocol::{
    begin_quotes_message, end_quotes_message, write_heartbeat, ControlMessage, ErrorCode, Hz,
    RequestError,
};
use super::subscriptions::{FlushStats, Subscriptions};
use super::CompressionMode;
use super::{StreamContext, ViewerPeer};
use crate::deflate::DeflateStream;
use crate::domain::now_millis;
use crate::limits::{AbuseGuard, ConnectionSlot};
use crate::metrics::Counters;
use crate::security::{ViewerEntry, ViewerStats};
use crate::transport::{Ending, Event, Transport};

thread_local! {
    /// The JSON of the message being built, and its app-level compressed form: one
    /// buffer each per worker thread, not per viewer.
    static MESSAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why a message is sent: the viewer's own traffic, or a heartbeat because the
/// connection was quiet (compressors then give their state back).
#[derive(Clone, Copy)]
enum Traffic {
    Active,
    Quiet,
}

/// What woke the viewer (besides a client message).
enum Wake {
    /// The store changed (`false`: the store is gone).
    Changed(bool),
    /// The flush or heartbeat timer.
    Timer,
}

/// One viewer: its connection's driver and everything it alone owns.
pub struct Viewer<T: Transport> {
    pub(super) id: String,
    pub(super) driver: T,
    pub(super) ctx: StreamContext,
    pub(super) counters: Arc<Counters>,
    pub(super) changes: watch::Receiver<u64>,
    pub(super) subs: Subscriptions,
    pub(super) deflate: Option<DeflateStream>,
    /// Sequence number of the last data-bearing message sent.
    pub(super) seq: u64,
    pub(super) max_hz: f64,
    pub(super) flush_interval: Duration,
    pub(super) last_sent: Instant,
    pub(super) last_flush: Instant,
    /// The scheduled flush, if any.
    pub(super) flush_at: Option<Instant>,
    /// The viewer's one timer: at `flush_at`, or else when a heartbeat is due.
    pub(super) timer: Pin<Box<Sleep>>,
    /// The store's removal counter when this viewer last checked its symbols.
    pub(super) seen_removals: u64,
    /// This viewer as admins see it (stats, kick handle).
    pub(super) entry: Arc<ViewerEntry>,
    /// The per-connection message budget.
    pub(super) budget: AbuseGuard,
    /// Frees the connection slot when the viewer ends.
    pub(super) _slot: ConnectionSlot,
}

impl<T: Transport> Viewer<T> {
    pub fn new(
        id: String,
        mut driver: T,
        ctx: StreamContext,
        compression: CompressionMode,
        peer: ViewerPeer,
        max_hz: Option<f64>,
    ) -> Viewer<T> {
        let config = &ctx.settings;
        let deflate = (compression == CompressionMode::Deflate)
            .then(|| DeflateStream::new(config.deflate_level, config.deflate_dictionary_bytes));
        let max_hz = max_hz.map_or(config.max_hz, |hz| hz.clamp(config.min_hz, config.max_hz));
        let heartbeat = config.heartbeat();
        let now = Instant::now();
        let mut subs = Subscriptions::default();
        let user = peer.claims.as_ref().map(|claims| {
            if let Some(entitled) = claims.entitlements() {
                subs.restrict_to(entitled);
            }
            let left_ms = (claims.exp.saturating_mul(1000) - now_millis()).max(0) as u64;
            driver.expire_at(now + Duration::from_millis(left_ms));
            claims.sub.clone()
        });
        let entry = Arc::new(ViewerEntry {
            id: id.clone(),
            peer: peer.ip.to_string(),
            user,
            since: now_millis(),
            compression: match deflate {
                Some(_) => "deflate",
                None => driver.compression(),
            },
            stats: ViewerStats::default(),
            kick: driver.kick_handle(),
        });
        let limits = &ctx.limits;
        Viewer {
            entry,
            budget: AbuseGuard::new(
                limits.messages_per_second,
                limits.message_burst,
                limits.abuse_close_after,
                Duration::from_millis(limits.abuse_window_ms),
            ),
            _slot: peer.slot,
            id,
            driver,
            counters: ctx.metrics.shard(),
            changes: ctx.store.watch_changes(),
            seen_removals: ctx.store.removals(),
            ctx,
            subs,
            deflate,
            seq: 0,
            max_hz,
            flush_interval: Duration::from_secs_f64(1.0 / max_hz),
            last_sent: now,
            last_flush: now - Duration::from_secs(3600),
            flush_at: None,
            timer: Box::pin(sleep_until(now + heartbeat)),
        }
    }

    /// Runs the connection to its end. `initial` is the `symbols=` query parameter.
    ///
    /// Not an `async fn` taking `self`: rustc keeps such an argument twice in the
    /// future (as passed, and moved into the body), which made every viewer's task
    /// carry its 776-byte `Viewer` twice. Here the viewer is the async block's own
    /// captured value, borrowed in place, and only moved out (into a box) to close.
    pub fn run(self, initial: Option<Vec<String>>) -> impl std::future::Future<Output = ()> {
        let span = tracing::info_span!("viewer", viewer = %self.id);
        let mut viewer = self;
        async move {
            let ending = viewer.open_and_serve(initial).await;
            info!(reason = ?ending, symbols = viewer.subs.len(), sent = viewer.seq, "viewer left");
            Box::pin(viewer.finish(ending)).await;
        }
        .instrument(span)
    }

    async fn open_and_serve(&mut self, initial: Option<Vec<String>>) -> Ending {
        Counters::add(&self.counters.connections_opened, 1);
        self.ctx.security.viewers.insert(self.entry.clone());
        debug!("connected");
        // Opening, client requests and the close are boxed: they are rare, and their
        // futures (subscribe with its replies, the close's deadlines) would otherwise
        // size every idle viewer's task for its whole life.
        match Box::pin(self.open(initial)).await {
            Ok(()) => self.serve().await,
            Err(ending) => ending,
        }
    }

    async fn open(&mut self, initial: Option<Vec<String>>) -> Result<(), Ending> {
        // The welcome is always a plain text frame, so a client can read it before
        // setting up an inflater.
        MESSAGE.with_borrow_mut(|json| {
            json.clear();
            ControlMessage::Welcome {
                session: &self.id,
                compression: if self.deflate.is_some() {
                    "deflate"
                } else {
                    "none"
                },
                max_hz: Hz(self.max_hz),
                heartbeat_ms: self.ctx.settings.heartbeat_ms,
                t: now_millis(),
            }
            .write_to(json);
            self.driver.start_text("welcome", None, json)?;
            self.sent(json.len());
            Ok(())
        })?;
        self.driver.flush().await?;
        self.changes.borrow_and_update();
        if let Some(symbols) = initial {
            self.subscribe(None, symbols).await?;
        }
        Ok(())
    }

    async fn serve(&mut self) -> Ending {
        loop {
            let wants_changes =
                self.flush_at.is_none() && (!self.subs.is_empty() || self.subs.is_wildcard());
            let changes = &mut self.changes;
            let timer = self.timer.as_mut();
            let wake = async move {
                tokio::select! {
                    biased;
                    changed = changes.changed(), if wants_changes => Wake::Changed(changed.is_ok()),
                    _ = timer => Wake::Timer,
                }
            };
            let step = match self.driver.next(wake).await {
                Ok(Event::Text(text)) => Box::pin(self.on_text(&text)).await,
                Ok(Event::Wake(Wake::Changed(true))) => {
                    let at = Instant::now().max(self.last_flush + self.flush_interval);
                    self.flush_at = Some(at);
                    self.timer.as_mut().reset(at);
                    Ok(())
                }
                Ok(Event::Wake(Wake::Changed(false))) => {
                    Err(Ending::Close(CloseCode::Error, "store closed".into()))
                }
                Ok(Event::Wake(Wake::Timer)) => self.on_timer().await,
                Err(ending) => Err(ending),
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// The timer fired: flush if one is due, send a heartbeat if one is due, and re-arm
    /// at the next of the two.
    async fn on_timer(&mut self) -> Result<(), Ending> {
        let now = Instant::now();
        if self.flush_at.is_some_and(|at| now >= at) {
            self.flush_at = None;
            // Something moved: under a steady feed it will again by the next slot, so
            // take that slot now instead of being woken by the store's next batch first
            // (one task wake-up per flush less). A slot with nothing new returns to
            // waiting for the store.
            if self.flush().await? {
                self.flush_at = Some(self.last_flush + self.flush_interval);
            }
        }
        let heartbeat = self.ctx.settings.heartbeat();
        if Instant::now() >= self.last_sent + heartbeat {
            self.heartbeat().await?;
        }
        let due = self.last_sent + heartbeat;
        let at = self.flush_at.map_or(due, |flush| flush.min(due));
        self.timer.as_mut().reset(at);
        Ok(())
    }

    /// One `update` with every subscribed symbol that changed since it was last sent.
    /// Returns whether anything was sent.
    async fn flush(&mut self) -> Result<bool, Ending> {
        self.last_flush = Instant::now();
        self.changes.borrow_and_update();
        // Borrow the store through its field: cloning the handle here would bump one
        // reference count shared by every viewer on every flush.
        let removals = self.ctx.store.removals();
        if removals != self.seen_removals {
            self.seen_removals = removals;
            self.drop_removed_symbols().await?;
        }
        self.subs.follow_new_symbols(&self.ctx.store);
        let seq = self.seq + 1;
        let mut stats = FlushStats::default();
        let sent = self.start("update", Some(seq), |viewer, json| {
            begin_quotes_message("update", seq, None, json);
            stats = viewer.subs.write_update(&viewer.ctx.store, json);
            end_quotes_message(json);
            stats.quotes > 0
        })?;
        Counters::add(&self.counters.updates_conflated, stats.conflated);
        Counters::add(&self.entry.stats.updates_conflated, stats.conflated);
        if sent {
            self.seq = seq;
            Counters::add(&self.counters.symbol_updates_sent, stats.quotes as u64);
            self.driver.flush().await?;
        }
        let resend = self.subs.take_resend();
        if !resend.is_empty() {
            self.send_snapshot(None, Some(&resend)).await?;
        }
        Ok(stats.quotes > 0 || !resend.is_empty())
    }

    /// Symbols removed from the universe leave the subscription; the client gets the
    /// new set and an `unknown_symbol` error naming them.
    async fn drop_removed_symbols(&mut self) -> Result<(), Ending> {
        let store = self.ctx.store.clone();
        let removed = self.subs.drop_removed(&store);
        if removed.is_empty() {
            return Ok(());
        }
        let names = removed
            .iter()
            .map(|&id| store.info(id).symbol.to_string())
            .collect();
        self.send_subscriptions(None).await?;
        let error = RequestError::new(
            None,
            ErrorCode::UnknownSymbol,
            "removed from the universe; no longer subscribed",
        )
        .with_symbols(names);
        self.send_error(&error).await
    }

    /// Sent when nothing else was for a heartbeat interval: a quiet connection, whose
    /// compressor (app-level or the transport's) gives its state back here.
    async fn heartbeat(&mut self) -> Result<(), Ending> {
        let seq = self.seq + 1;
        self.start_as("heartbeat", Some(seq), Traffic::Quiet, |_, json| {
            write_heartbeat(seq, now_millis(), json);
            true
        })?;
        self.seq = seq;
        self.driver.flush().await
    }

    /// Builds one message in this worker's scratch buffer (`build` returns whether
    /// there is anything to send) and starts it on the transport: a text message (the
    /// transport may compress it), or one app-level compressed binary frame of the
    /// JSON plus `\n`. `kind` is the message's `type`, `id` its `seq` if it has one.
    /// No viewer keeps a message buffer: the transport keeps only what its socket
    /// did not take, until the caller's `flush`.
    pub(super) fn start(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        build: impl FnOnce(&mut Self, &mut Vec<u8>) -> bool,
    ) -> Result<bool, Ending> {
        self.start_as(kind, id, Traffic::Active, build)
    }

    /// [`Viewer::start`], saying whether the message is sent because the connection
    /// was quiet ([`Transport::start_quiet_text`]).
    fn start_as(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        traffic: Traffic,
        build: impl FnOnce(&mut Self, &mut Vec<u8>) -> bool,
    ) -> Result<bool, Ending> {
        MESSAGE.with_borrow_mut(|json| {
            json.clear();
            if !build(self, json) {
                return Ok(false);
            }
            debug_assert!(std::str::from_utf8(json).is_ok());
            let Some(deflate) = self.deflate.as_mut() else {
                match traffic {
                    Traffic::Active => self.driver.start_text(kind, id, json)?,
                    Traffic::Quiet => self.driver.start_quiet_text(kind, id, json)?,
                }
                self.sent(json.len());
                return Ok(true);
            };
            json.push(b'\n');
            let len = COMPRESSED.with_borrow_mut(|wire| {
                wire.clear();
                let compressed = match traffic {
                    Traffic::Active => deflate.compress(json, wire),
                    Traffic::Quiet => deflate.compress_resting(json, wire),
                };
                compressed.map_err(|e| Ending::Close(CloseCode::Error, e.to_string()))?;
                self.driver.start_binary(wire)?;
                Ok::<usize, Ending>(wire.len())
            })?;
            self.sent(len);
            Ok(true)
        })
    }

    fn sent(&mut self, len: usize) {
        self.last_sent = Instant::now();
        Counters::add(&self.counters.messages_sent, 1);
        Counters::add(&self.counters.bytes_sent, len as u64);
        Counters::add(&self.entry.stats.messages_sent, 1);
        Counters::add(&self.entry.stats.bytes_sent, len as u64);
    }

    async fn finish(self, ending: Ending) {
        let Viewer {
            driver,
            ctx,
            counters,
            entry,
            ..
        } = self;
        ctx.security.viewers.remove(&entry.id);
        match ending {
            Ending::SlowConsumer => Counters::add(&counters.slow_consumer_closes, 1),
            Ending::Kicked => Counters::add(&ctx.security.counters.kicks, 1),
            Ending::Flood => Counters::add(&ctx.security.counters.abuse_closes, 1),
            _ => {}
        }
        driver.close(&ending).await;
        Counters::add(&counters.connections_closed, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Driver, SseDriver};

    /// The size of what `f` returns, without calling it (the type is opaque).
    fn output_size<F, A, B, R>(_: &F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is this future, for the connection's whole life, so
    /// its size is memory per viewer. An `async fn` taking the viewer by value kept
    /// it twice (2,464 bytes for a 776-byte viewer over a WebSocket).
    #[test]
    fn a_viewers_task_holds_the_viewer_once() {
        fn check<T: Transport>(transport: &str) {
            let viewer = std::mem::size_of::<Viewer<T>>();
            let task = output_size(&Viewer::<T>::run);
            // The viewer, then its loop's state: the transport's wait (a read, a
            // ping), a flush, the span. Rare paths are boxed.
            assert!(
                task <= viewer + 1024,
                "{transport}: a {task}-byte task for a {viewer}-byte viewer"
            );
        }
        check::<Driver>("WebSocket");
        check::<SseDriver>("SSE");
    }
}
