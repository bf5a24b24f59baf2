//! One task per WebSocket viewer: private state and a single `select!` loop.
//!
//! The loop waits on, in priority order: shutdown, a client frame, "the store changed"
//! (only while no flush is scheduled), the scheduled flush, the heartbeat deadline,
//! the idle deadline and the ping interval. A flush scans the subscriptions, writes one
//! `update` with every changed symbol, and awaits the socket: that await is the
//! backpressure. While it waits nothing queues; the next flush simply sends the newer
//! values (conflation).

use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::{CloseCode, CloseReason, Message, ProtocolError};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, Instrument};

use super::codec::{CompressionMode, DeflateStream};
use super::inbound::{Fault, Inbound, InboundFrames};
use super::protocol::{
    begin_quotes_message, end_quotes_message, parse_request, write_heartbeat, ControlMessage,
    ErrorCode, Hz, ReqId, Request, RequestError,
};
use super::subscriptions::Subscriptions;
use super::{StreamContext, ViewerPeer};
use crate::domain::{now_millis, Symbol, SymbolId};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::metrics::Counters;
use crate::security::{SessionEntry, SessionStats};
use crate::socket::WebSocket;
use crate::store::SnapshotStore;

/// Close code for a client whose socket did not drain in time (contract §2).
const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// We close with this code and reason.
    Close(CloseCode, String),
    /// The socket did not drain for `slow_consumer_timeout`.
    SlowConsumer,
    /// The client sent a close frame; echo it.
    ClientClosed(Option<CloseReason>),
    /// The connection is gone; nothing can be sent.
    Gone,
}

pub struct Session {
    id: String,
    ws: WebSocket,
    ctx: StreamContext,
    counters: Arc<Counters>,
    changes: watch::Receiver<u64>,
    subs: Subscriptions,
    deflate: Option<DeflateStream>,
    /// Sequence number of the last data-bearing message sent.
    seq: u64,
    max_hz: f64,
    flush_interval: Duration,
    /// Reused buffers: the JSON of the message being sent, and its compressed form.
    json: Vec<u8>,
    wire: Vec<u8>,
    last_sent: Instant,
    last_flush: Instant,
    /// The store's removal counter when this session last checked its symbols.
    seen_removals: u64,
    /// This session as admins see it (stats, kick handle).
    entry: Arc<SessionEntry>,
    /// When the viewer's token expires (auth on).
    expires_at: Option<Instant>,
    /// The per-connection message budget, and refusals in the current abuse window.
    budget: TokenBucket,
    refused: u32,
    abuse_window_start: std::time::Instant,
    /// Frees the connection slot when the session ends.
    _slot: ConnectionSlot,
}

impl Session {
    pub fn new(
        id: String,
        ws: WebSocket,
        ctx: StreamContext,
        compression: CompressionMode,
        peer: ViewerPeer,
    ) -> Session {
        let config = &ctx.settings;
        let deflate = (compression == CompressionMode::Deflate)
            .then(|| DeflateStream::new(config.deflate_level, config.deflate_dictionary_bytes));
        let max_hz = config.max_hz;
        let now = Instant::now();
        let mut subs = Subscriptions::default();
        let (user, expires_at) = match &peer.claims {
            Some(claims) => {
                if let Some(entitled) = claims.entitlements() {
                    subs.restrict_to(entitled);
                }
                let left_ms = (claims.exp.saturating_mul(1000) - now_millis()).max(0) as u64;
                (
                    Some(claims.sub.clone()),
                    Some(now + Duration::from_millis(left_ms)),
                )
            }
            None => (None, None),
        };
        let entry = Arc::new(SessionEntry {
            id: id.clone(),
            peer: peer.ip.to_string(),
            user,
            since: now_millis(),
            compression: deflate.is_some(),
            stats: SessionStats::default(),
            kick: tokio_util::sync::CancellationToken::new(),
        });
        let limits = &ctx.limits;
        Session {
            entry,
            expires_at,
            budget: TokenBucket::new(limits.messages_per_second, limits.message_burst),
            refused: 0,
            abuse_window_start: std::time::Instant::now(),
            _slot: peer.slot,
            id,
            ws,
            counters: ctx.metrics.shard(),
            changes: ctx.store.watch_changes(),
            seen_removals: ctx.store.removals(),
            ctx,
            subs,
            deflate,
            seq: 0,
            max_hz,
            flush_interval: Duration::from_secs_f64(1.0 / max_hz),
            json: Vec::with_capacity(512),
            wire: Vec::new(),
            last_sent: now,
            last_flush: now - Duration::from_secs(3600),
        }
    }

    /// Runs the connection to its end. `initial` is the `symbols=` query parameter.
    pub async fn run(self, initial: Option<Vec<String>>) {
        let span = tracing::info_span!("session", session = %self.id);
        self.run_in_span(initial).instrument(span).await;
    }

    async fn run_in_span(mut self, initial: Option<Vec<String>>) {
        Counters::add(&self.counters.connections_opened, 1);
        self.ctx.security.sessions.insert(self.entry.clone());
        debug!("connected");
        let end = match self.open(initial).await {
            Ok(()) => self.serve().await,
            Err(end) => end,
        };
        info!(reason = ?end, symbols = self.subs.len(), sent = self.seq, "session ended");
        self.finish(end).await;
    }

    async fn open(&mut self, initial: Option<Vec<String>>) -> Result<(), End> {
        self.json.clear();
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
        .write_to(&mut self.json);
        // The welcome is always a plain text frame, so a client can read it before
        // setting up an inflater.
        self.send_plain_text().await?;
        self.changes.borrow_and_update();
        if let Some(symbols) = initial {
            self.subscribe(None, symbols).await?;
        }
        Ok(())
    }

    async fn serve(&mut self) -> End {
        let config = self.ctx.settings.clone();
        let shutdown = self.ctx.shutdown.clone();
        let kick = self.entry.kick.clone();
        let mut frames = InboundFrames::new(config.max_message_bytes);
        let mut last_inbound = Instant::now();
        let mut flush_at: Option<Instant> = None;
        let mut ping = tokio::time::interval_at(
            Instant::now() + config.ping_interval(),
            config.ping_interval(),
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every future the loop waits on is created once and pinned: re-creating them
        // each iteration re-registered timers and cancellation waiters per message
        // (about 5% of server CPU in the W1 profile, docs/BENCHMARKS.md).
        let far_future = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let shutting_down = shutdown.cancelled();
        let kicked = kick.cancelled();
        let expiry = sleep_until(self.expires_at.unwrap_or(far_future));
        let flush_timer = sleep_until(far_future);
        // The heartbeat and idle timers are re-armed lazily: activity only moves the
        // deadline they are checked against, and a timer that fires early re-arms.
        let heartbeat_timer = sleep_until(self.last_sent + config.heartbeat());
        let idle_timer = sleep_until(last_inbound + config.idle_timeout());
        tokio::pin!(
            shutting_down,
            kicked,
            expiry,
            flush_timer,
            heartbeat_timer,
            idle_timer
        );
        let has_expiry = self.expires_at.is_some();
        loop {
            let wants_changes =
                flush_at.is_none() && (!self.subs.is_empty() || self.subs.is_wildcard());
            let step = tokio::select! {
                biased;
                _ = &mut shutting_down => {
                    Err(End::Close(CloseCode::Away, "server shutting down".into()))
                }
                _ = &mut kicked => {
                    Counters::add(&self.ctx.security.counters.kicks, 1);
                    Err(End::Close(CloseCode::Policy, "kicked by an admin".into()))
                }
                _ = &mut expiry, if has_expiry => {
                    Err(End::Close(CloseCode::Policy, "token expired".into()))
                }
                frame = self.ws.recv() => {
                    last_inbound = Instant::now();
                    self.on_frame(frame, &mut frames).await
                }
                changed = self.changes.changed(), if wants_changes => match changed {
                    Ok(()) => {
                        let at = Instant::now().max(self.last_flush + self.flush_interval);
                        flush_at = Some(at);
                        flush_timer.as_mut().reset(at);
                        Ok(())
                    }
                    Err(_) => Err(End::Close(CloseCode::Error, "store closed".into())),
                },
                _ = &mut flush_timer, if flush_at.is_some() => {
                    flush_at = None;
                    match self.flush().await {
                        // Something moved: under a steady feed it will again by the
                        // next slot, so take that slot now instead of being woken by
                        // the store's next batch first (one task wake-up per flush
                        // less). A slot with nothing new returns to waiting.
                        Ok(true) => {
                            let at = self.last_flush + self.flush_interval;
                            flush_at = Some(at);
                            flush_timer.as_mut().reset(at);
                            Ok(())
                        }
                        Ok(false) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                _ = &mut heartbeat_timer => {
                    let due = self.last_sent + config.heartbeat();
                    let sent = if Instant::now() >= due { self.heartbeat().await } else { Ok(()) };
                    heartbeat_timer.as_mut().reset(self.last_sent + config.heartbeat());
                    sent
                }
                _ = &mut idle_timer => {
                    let due = last_inbound + config.idle_timeout();
                    if Instant::now() >= due {
                        Err(End::Close(CloseCode::Normal, "idle timeout: no frame received".into()))
                    } else {
                        idle_timer.as_mut().reset(due);
                        Ok(())
                    }
                }
                _ = ping.tick() => self.ws.ping(b"").await.map_err(|_| End::Gone),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, ProtocolError>>,
        inbound: &mut InboundFrames,
    ) -> Result<(), End> {
        match inbound.accept(frame) {
            Ok(Inbound::Text(text)) => self.on_text(&text).await,
            Ok(Inbound::Ping(payload)) => self.ws.pong(&payload).await.map_err(|_| End::Gone),
            Ok(Inbound::Nothing) => Ok(()),
            Ok(Inbound::Closed(reason)) => Err(End::ClientClosed(reason)),
            Err(Fault::Close(code, reason)) => Err(End::Close(code, reason)),
            Err(Fault::Gone) => Err(End::Gone),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
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
    fn within_budget(&mut self) -> Result<bool, End> {
        let now = std::time::Instant::now();
        if self.budget.try_take(now) {
            return Ok(true);
        }
        Counters::add(&self.ctx.security.counters.rate_limited, 1);
        let window = Duration::from_millis(self.ctx.limits.abuse_window_ms);
        if now.duration_since(self.abuse_window_start) > window {
            self.abuse_window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused > self.ctx.limits.abuse_close_after {
            Counters::add(&self.ctx.security.counters.abuse_closes, 1);
            return Err(End::Close(
                CloseCode::Policy,
                "repeated abuse: message rate limit exceeded".into(),
            ));
        }
        Ok(false)
    }

    /// `subscribe`: count first (changing nothing on `too_many_symbols`; unknown names
    /// count too), then add the known symbols and report the invalid and unknown ones.
    async fn subscribe(&mut self, req_id: Option<ReqId>, names: Vec<String>) -> Result<(), End> {
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

    async fn unsubscribe(&mut self, req_id: Option<ReqId>, names: Vec<String>) -> Result<(), End> {
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
    ) -> Result<(), End> {
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

    async fn send_subscriptions(&mut self, req_id: Option<&ReqId>) -> Result<(), End> {
        self.entry
            .stats
            .symbols
            .store(self.subs.len(), std::sync::atomic::Ordering::Relaxed);
        let store = &self.ctx.store;
        let mut names: Vec<&str> = if self.subs.is_wildcard() {
            vec!["*"]
        } else {
            self.subs
                .ids()
                .map(|id| store.info(id).symbol.as_str())
                .collect()
        };
        names.sort_unstable();
        self.json.clear();
        ControlMessage::Subscriptions {
            req_id,
            symbols: &names,
        }
        .write_to(&mut self.json);
        self.send_json().await
    }

    /// Full quotes of `ids` (or of every subscribed symbol); restarts their diff baseline.
    /// `req_id` is echoed when the snapshot answers a request.
    async fn send_snapshot(
        &mut self,
        req_id: Option<&ReqId>,
        ids: Option<&[SymbolId]>,
    ) -> Result<(), End> {
        self.json.clear();
        begin_quotes_message("snapshot", self.seq + 1, req_id, &mut self.json);
        self.subs
            .write_snapshot(&self.ctx.store, ids, &mut self.json);
        end_quotes_message(&mut self.json);
        self.seq += 1;
        self.send_json().await
    }

    /// One `update` with every subscribed symbol that changed since it was last sent.
    /// Returns whether anything was sent.
    async fn flush(&mut self) -> Result<bool, End> {
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
        self.json.clear();
        begin_quotes_message("update", self.seq + 1, None, &mut self.json);
        let stats = self.subs.write_update(&self.ctx.store, &mut self.json);
        Counters::add(&self.counters.updates_conflated, stats.conflated);
        Counters::add(&self.entry.stats.updates_conflated, stats.conflated);
        if stats.quotes > 0 {
            end_quotes_message(&mut self.json);
            self.seq += 1;
            self.send_json().await?;
            Counters::add(&self.counters.symbol_updates_sent, stats.quotes as u64);
        }
        let resend = self.subs.take_resend();
        if !resend.is_empty() {
            self.send_snapshot(None, Some(&resend)).await?;
        }
        Ok(stats.quotes > 0 || !resend.is_empty())
    }

    /// Symbols removed from the universe leave the subscription; the client gets the
    /// new set and an `unknown_symbol` error naming them.
    async fn drop_removed_symbols(&mut self) -> Result<(), End> {
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

    async fn heartbeat(&mut self) -> Result<(), End> {
        self.json.clear();
        write_heartbeat(self.seq + 1, now_millis(), &mut self.json);
        self.seq += 1;
        self.send_json().await
    }

    async fn send_error(&mut self, error: &RequestError) -> Result<(), End> {
        Counters::add(&self.counters.client_errors, 1);
        debug!(code = ?error.code, message = %error.message, "request refused");
        self.send_control(&ControlMessage::from(error)).await
    }

    async fn send_control(&mut self, message: &ControlMessage<'_>) -> Result<(), End> {
        self.json.clear();
        message.write_to(&mut self.json);
        self.send_json().await
    }

    /// Sends `self.json` framed for this connection: a text frame, or one compressed
    /// binary frame of the JSON plus `\n`.
    async fn send_json(&mut self) -> Result<(), End> {
        let Some(deflate) = self.deflate.as_mut() else {
            return self.send_plain_text().await;
        };
        self.json.push(b'\n');
        self.wire.clear();
        let compressed = deflate.compress(&self.json, &mut self.wire);
        if let Err(e) = compressed {
            return Err(End::Close(CloseCode::Error, e.to_string()));
        }
        self.bounded_send(true).await
    }

    /// Sends `self.json` as a text frame (our JSON writers emit UTF-8 only).
    async fn send_plain_text(&mut self) -> Result<(), End> {
        debug_assert!(std::str::from_utf8(&self.json).is_ok());
        self.bounded_send(false).await
    }

    /// Awaits the socket, but not forever: a socket that does not drain within the
    /// slow-consumer timeout ends the session, and shutdown interrupts the wait.
    /// `binary`: send `self.wire` as a binary frame, else `self.json` as a text frame.
    async fn bounded_send(&mut self, binary: bool) -> Result<(), End> {
        let timeout = self.ctx.settings.slow_consumer_timeout();
        let shutdown = &self.ctx.shutdown;
        let ws = &mut self.ws;
        let payload = if binary {
            &self.wire[..]
        } else {
            &self.json[..]
        };
        let len = payload.len();
        let send = async move {
            if binary {
                ws.binary(payload).await
            } else {
                ws.text(payload).await
            }
        };
        // Biased towards the send: it usually completes at once, and then the timer
        // is never even registered.
        tokio::select! {
            biased;
            sent = send => sent.map_err(|_| End::Gone)?,
            _ = shutdown.cancelled() => {
                return Err(End::Close(CloseCode::Away, "server shutting down".into()))
            }
            _ = sleep(timeout) => return Err(End::SlowConsumer),
        }
        self.last_sent = Instant::now();
        Counters::add(&self.counters.messages_sent, 1);
        Counters::add(&self.counters.bytes_sent, len as u64);
        Counters::add(&self.entry.stats.messages_sent, 1);
        Counters::add(&self.entry.stats.bytes_sent, len as u64);
        Ok(())
    }

    async fn finish(self, end: End) {
        let Session {
            ws,
            ctx,
            counters,
            entry,
            ..
        } = self;
        ctx.security.sessions.remove(&entry.id);
        let reason = match end {
            End::Gone => None,
            End::Close(code, description) => Some(CloseReason {
                code,
                description: Some(description),
            }),
            End::SlowConsumer => {
                Counters::add(&counters.slow_consumer_closes, 1);
                Some(CloseReason {
                    code: CloseCode::Other(CLOSE_SLOW_CONSUMER),
                    description: Some("slow consumer: socket did not drain".into()),
                })
            }
            End::ClientClosed(reason) => reason.or(Some(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })),
        };
        // The close frame goes behind whatever the socket still holds; a slow client
        // gets one more timeout to take it, then the connection is dropped regardless.
        ws.close(reason, ctx.settings.slow_consumer_timeout()).await;
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
