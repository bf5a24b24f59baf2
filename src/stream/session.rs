//! One task per WebSocket viewer: private state and a single loop on its driver.
//!
//! The driver (`crate::socket`) owns the connection: stop, pings, the idle timeout,
//! every write's deadline. The session waits on it for a client's text message or its
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
    begin_quotes_message, end_quotes_message, parse_request, write_heartbeat, ControlMessage,
    ErrorCode, Hz, ReqId, Request, RequestError,
};
use super::subscriptions::{FlushStats, Subscriptions};
use super::CompressionMode;
use super::{StreamContext, ViewerPeer};
use crate::deflate::DeflateStream;
use crate::domain::{now_millis, Symbol, SymbolId};
use crate::limits::{AbuseGuard, ConnectionSlot, Verdict};
use crate::metrics::Counters;
use crate::security::{SessionEntry, SessionStats};
use crate::socket::{Ending, Event, Transport};
use crate::store::SnapshotStore;

thread_local! {
    /// The JSON of the message being built, and its app-level compressed form: one
    /// buffer each per worker thread, not per session.
    static MESSAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why a message is sent: the session's own traffic, or a heartbeat because the
/// connection was quiet (compressors then give their state back).
#[derive(Clone, Copy)]
enum Traffic {
    Active,
    Quiet,
}

/// What woke the session (besides a client message).
enum Wake {
    /// The store changed (`false`: the store is gone).
    Changed(bool),
    /// The flush or heartbeat timer.
    Timer,
}

pub struct Session<T: Transport> {
    id: String,
    driver: T,
    ctx: StreamContext,
    counters: Arc<Counters>,
    changes: watch::Receiver<u64>,
    subs: Subscriptions,
    deflate: Option<DeflateStream>,
    /// Sequence number of the last data-bearing message sent.
    seq: u64,
    max_hz: f64,
    flush_interval: Duration,
    last_sent: Instant,
    last_flush: Instant,
    /// The scheduled flush, if any.
    flush_at: Option<Instant>,
    /// The session's one timer: at `flush_at`, or else when a heartbeat is due.
    timer: Pin<Box<Sleep>>,
    /// The store's removal counter when this session last checked its symbols.
    seen_removals: u64,
    /// This session as admins see it (stats, kick handle).
    entry: Arc<SessionEntry>,
    /// The per-connection message budget.
    budget: AbuseGuard,
    /// Frees the connection slot when the session ends.
    _slot: ConnectionSlot,
}

impl<T: Transport> Session<T> {
    pub fn new(
        id: String,
        mut driver: T,
        ctx: StreamContext,
        compression: CompressionMode,
        peer: ViewerPeer,
        max_hz: Option<f64>,
    ) -> Session<T> {
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
        let entry = Arc::new(SessionEntry {
            id: id.clone(),
            peer: peer.ip.to_string(),
            user,
            since: now_millis(),
            compression: match deflate {
                Some(_) => "deflate",
                None => driver.compression(),
            },
            stats: SessionStats::default(),
            kick: driver.kick_handle(),
        });
        let limits = &ctx.limits;
        Session {
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
    /// future (as passed, and moved into the body), which made every session's task
    /// carry its 776-byte `Session` twice. Here the session is the async block's own
    /// captured value, borrowed in place, and only moved out (into a box) to close.
    pub fn run(self, initial: Option<Vec<String>>) -> impl std::future::Future<Output = ()> {
        let span = tracing::info_span!("session", session = %self.id);
        let mut session = self;
        async move {
            let ending = session.open_and_serve(initial).await;
            info!(reason = ?ending, symbols = session.subs.len(), sent = session.seq, "session ended");
            Box::pin(session.finish(ending)).await;
        }
        .instrument(span)
    }

    async fn open_and_serve(&mut self, initial: Option<Vec<String>>) -> Ending {
        Counters::add(&self.counters.connections_opened, 1);
        self.ctx.security.sessions.insert(self.entry.clone());
        debug!("connected");
        // Opening, client requests and the close are boxed: they are rare, and their
        // futures (subscribe with its replies, the close's deadlines) would otherwise
        // size every idle session's task for its whole life.
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

    async fn on_text(&mut self, text: &str) -> Result<(), Ending> {
        if !self.within_budget()? {
            let limits = &self.ctx.limits;
            let error = RequestError::new(
                super::protocol::peek_req_id(text),
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages a second (burst {}); this one was dropped",
                    limits.messages_per_second, limits.message_burst
                ),
            );
            return self.send_error(&error).await;
        }
        match parse_request(text) {
            Err(error) => self.send_error(&error).await,
            Ok((req_id, Request::Subscribe { symbols })) => self.subscribe(req_id, symbols).await,
            Ok((req_id, Request::Unsubscribe { symbols })) => {
                self.unsubscribe(req_id, symbols).await
            }
            Ok((req_id, Request::Snapshot)) => self.send_snapshot(req_id.as_ref(), None).await,
            Ok((req_id, Request::Set { max_hz })) => {
                let config = &self.ctx.settings;
                self.max_hz = max_hz.clamp(config.min_hz, config.max_hz);
                self.flush_interval = Duration::from_secs_f64(1.0 / self.max_hz);
                self.send_control(&ControlMessage::Settings {
                    req_id: req_id.as_ref(),
                    max_hz: Hz(self.max_hz),
                })
                .await
            }
            Ok((req_id, Request::Ping)) => {
                self.send_control(&ControlMessage::Pong {
                    req_id: req_id.as_ref(),
                    t: now_millis(),
                })
                .await
            }
        }
    }

    /// Takes one message from the budget. Over budget is a refusal; too many refusals
    /// within the abuse window end the connection with 1008.
    fn within_budget(&mut self) -> Result<bool, Ending> {
        match self.budget.check(std::time::Instant::now()) {
            Verdict::Allowed => Ok(true),
            Verdict::Refused => {
                Counters::add(&self.ctx.security.counters.rate_limited, 1);
                Ok(false)
            }
            Verdict::Abuse => {
                Counters::add(&self.ctx.security.counters.rate_limited, 1);
                Counters::add(&self.ctx.security.counters.abuse_closes, 1);
                Err(Ending::Close(
                    CloseCode::Policy,
                    "repeated abuse: message rate limit exceeded".into(),
                ))
            }
        }
    }

    /// `subscribe`: count first (changing nothing on `too_many_symbols`; unknown names
    /// count too), then add the known symbols and report the invalid and unknown ones.
    async fn subscribe(&mut self, req_id: Option<ReqId>, names: Vec<String>) -> Result<(), Ending> {
        let store = self.ctx.store.clone();
        let mut named = NamedSymbols::resolve(&store, &names);
        let subs = &self.subs;
        let (permitted, forbidden): (Vec<SymbolId>, Vec<SymbolId>) = named
            .known
            .iter()
            .partition(|&&id| subs.permits(&store, id));
        named.known = permitted;
        named.forbidden = forbidden
            .iter()
            .map(|&id| store.info(id).symbol.to_string())
            .collect();
        if named.wildcard {
            // "*" covers every entitled name in the request; the rest are reported.
            let added = self.subs.add_all(&store);
            self.send_subscriptions(req_id.as_ref()).await?;
            self.send_snapshot(req_id.as_ref(), Some(&added)).await?;
            return self.report_symbol_errors(req_id, named).await;
        }
        let max = self.ctx.settings.max_symbols_per_connection;
        if !self.subs.is_wildcard() {
            let already = named
                .known
                .iter()
                .filter(|&&id| self.subs.contains(id))
                .count();
            let new = named.known.len() - already + named.unknown.len();
            if names.len() > max || self.subs.len() + new > max {
                let error = RequestError::new(
                    req_id,
                    ErrorCode::TooManySymbols,
                    format!(
                        "at most {max} symbols per connection: {} subscribed, {} requested",
                        self.subs.len(),
                        names.len()
                    ),
                );
                return self.send_error(&error).await;
            }
        }
        if !named.known.is_empty() || !named.has_errors() {
            let added = self.subs.add(&named.known);
            self.send_subscriptions(req_id.as_ref()).await?;
            self.send_snapshot(req_id.as_ref(), Some(&added)).await?;
            info!(added = added.len(), total = self.subs.len(), "subscribed");
        }
        self.report_symbol_errors(req_id, named).await
    }

    async fn unsubscribe(
        &mut self,
        req_id: Option<ReqId>,
        names: Vec<String>,
    ) -> Result<(), Ending> {
        let store = self.ctx.store.clone();
        let named = NamedSymbols::resolve(&store, &names);
        if named.wildcard {
            self.subs.clear();
        } else {
            // Take in any symbols the wildcard has not yet seen, so ending it keeps them.
            self.subs.follow_new_symbols(&store);
            self.subs.remove(&named.known);
        }
        self.send_subscriptions(req_id.as_ref()).await?;
        self.report_symbol_errors(req_id, named).await
    }

    async fn report_symbol_errors(
        &mut self,
        req_id: Option<ReqId>,
        named: NamedSymbols,
    ) -> Result<(), Ending> {
        if !named.invalid.is_empty() {
            let error = RequestError::new(
                req_id.clone(),
                ErrorCode::InvalidSymbol,
                "symbols must be 1-16 characters of A-Z, 0-9, '.', '-', starting with a letter or digit",
            )
            .with_symbols(named.invalid);
            self.send_error(&error).await?;
        }
        if !named.unknown.is_empty() {
            let error =
                RequestError::new(req_id.clone(), ErrorCode::UnknownSymbol, "no such symbol")
                    .with_symbols(named.unknown);
            self.send_error(&error).await?;
        }
        if !named.forbidden.is_empty() {
            let error = RequestError::new(
                req_id,
                ErrorCode::Forbidden,
                "not in your token's entitlements",
            )
            .with_symbols(named.forbidden);
            self.send_error(&error).await?;
        }
        Ok(())
    }

    async fn send_subscriptions(&mut self, req_id: Option<&ReqId>) -> Result<(), Ending> {
        self.entry
            .stats
            .symbols
            .store(self.subs.len(), std::sync::atomic::Ordering::Relaxed);
        // A one-way client (SSE) learns its set from snapshots and errors.
        if self.driver.is_one_way() {
            return Ok(());
        }
        let store = self.ctx.store.clone();
        let mut names: Vec<&str> = if self.subs.is_wildcard() {
            vec!["*"]
        } else {
            self.subs
                .ids()
                .map(|id| store.info(id).symbol.as_str())
                .collect()
        };
        names.sort_unstable();
        let message = ControlMessage::Subscriptions {
            req_id,
            symbols: &names,
        };
        self.send_control(&message).await
    }

    /// Full quotes of `ids` (or of every subscribed symbol); restarts their diff baseline.
    /// `req_id` is echoed when the snapshot answers a request.
    async fn send_snapshot(
        &mut self,
        req_id: Option<&ReqId>,
        ids: Option<&[SymbolId]>,
    ) -> Result<(), Ending> {
        let seq = self.seq + 1;
        self.start("snapshot", Some(seq), |session, json| {
            begin_quotes_message("snapshot", seq, req_id, json);
            session.subs.write_snapshot(&session.ctx.store, ids, json);
            end_quotes_message(json);
            true
        })?;
        self.seq = seq;
        self.driver.flush().await
    }

    /// One `update` with every subscribed symbol that changed since it was last sent.
    /// Returns whether anything was sent.
    async fn flush(&mut self) -> Result<bool, Ending> {
        self.last_flush = Instant::now();
        self.changes.borrow_and_update();
        // Borrow the store through its field: cloning the handle here would bump one
        // reference count shared by every session on every flush.
        let removals = self.ctx.store.removals();
        if removals != self.seen_removals {
            self.seen_removals = removals;
            self.drop_removed_symbols().await?;
        }
        self.subs.follow_new_symbols(&self.ctx.store);
        let seq = self.seq + 1;
        let mut stats = FlushStats::default();
        let sent = self.start("update", Some(seq), |session, json| {
            begin_quotes_message("update", seq, None, json);
            stats = session.subs.write_update(&session.ctx.store, json);
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

    async fn send_error(&mut self, error: &RequestError) -> Result<(), Ending> {
        Counters::add(&self.counters.client_errors, 1);
        debug!(code = ?error.code, message = %error.message, "request refused");
        self.send_control(&ControlMessage::from(error)).await
    }

    async fn send_control(&mut self, message: &ControlMessage<'_>) -> Result<(), Ending> {
        self.start(message.kind(), None, |_, json| {
            message.write_to(json);
            true
        })?;
        self.driver.flush().await
    }

    /// Builds one message in this worker's scratch buffer (`build` returns whether
    /// there is anything to send) and starts it on the transport: a text message (the
    /// transport may compress it), or one app-level compressed binary frame of the
    /// JSON plus `\n`. `kind` is the message's `type`, `id` its `seq` if it has one.
    /// No session keeps a message buffer: the transport keeps only what its socket
    /// did not take, until the caller's `flush`.
    fn start(
        &mut self,
        kind: &'static str,
        id: Option<u64>,
        build: impl FnOnce(&mut Self, &mut Vec<u8>) -> bool,
    ) -> Result<bool, Ending> {
        self.start_as(kind, id, Traffic::Active, build)
    }

    /// [`Session::start`], saying whether the message is sent because the connection
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
        let Session {
            driver,
            ctx,
            counters,
            entry,
            ..
        } = self;
        ctx.security.sessions.remove(&entry.id);
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

/// The names of a subscribe or unsubscribe request, sorted out once.
struct NamedSymbols {
    /// The request named `*`.
    wildcard: bool,
    /// Ids of the valid, known names (deduplicated, in request order).
    known: Vec<SymbolId>,
    /// Valid names that are not in the universe (upper-cased).
    unknown: Vec<String>,
    /// Names that are not symbols at all, as sent.
    invalid: Vec<String>,
    /// Known names outside the viewer's entitlements (filled by `subscribe`).
    forbidden: Vec<String>,
}

impl NamedSymbols {
    fn resolve(store: &SnapshotStore, names: &[String]) -> NamedSymbols {
        let mut named = NamedSymbols {
            wildcard: false,
            known: Vec::with_capacity(names.len()),
            unknown: Vec::new(),
            invalid: Vec::new(),
            forbidden: Vec::new(),
        };
        for name in names {
            if name == "*" {
                named.wildcard = true;
                continue;
            }
            match Symbol::parse(name) {
                Ok(symbol) => match store.lookup(&symbol) {
                    Some(id) if !named.known.contains(&id) => named.known.push(id),
                    Some(_) => {}
                    None if !named.unknown.iter().any(|u| u == symbol.as_str()) => {
                        named.unknown.push(symbol.to_string())
                    }
                    None => {}
                },
                Err(_) => named.invalid.push(name.clone()),
            }
        }
        named
    }

    fn has_errors(&self) -> bool {
        !self.invalid.is_empty() || !self.unknown.is_empty() || !self.forbidden.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Driver, SseDriver};

    /// The size of what `f` returns, without calling it (the type is opaque).
    fn output_size<F, A, B, R>(_: &F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is this future, for the connection's whole life, so
    /// its size is memory per viewer. An `async fn` taking the session by value kept
    /// it twice (2,464 bytes for a 776-byte session over a WebSocket).
    #[test]
    fn a_sessions_task_holds_the_session_once() {
        fn check<T: Transport>(transport: &str) {
            let session = std::mem::size_of::<Session<T>>();
            let task = output_size(&Session::<T>::run);
            // The session, then its loop's state: the transport's wait (a read, a
            // ping), a flush, the span. Rare paths are boxed.
            assert!(
                task <= session + 1024,
                "{transport}: a {task}-byte task for a {session}-byte session"
            );
        }
        check::<Driver>("WebSocket");
        check::<SseDriver>("SSE");
    }
}
