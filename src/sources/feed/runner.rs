//! The connection loop every vendor shares: connect, log in, subscribe (again after
//! every reconnect), keep the connection provably alive, apply ticks through the
//! broker, and reconnect with capped exponential backoff and jitter.
//!
//! Every exchange with the vendor is bounded: the connect and handshake by
//! `feed.connect_timeout_ms`, each write by `feed.write_timeout_ms`, and silence by
//! `feed.idle_timeout_ms` (a WebSocket ping every `feed.ping_interval_ms` makes a live
//! vendor answer). With a Redis broker the connection is held only while this
//! instance leads the cluster's sources: vendors allow one connection per key.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Control, Decoded, FeedMonitor, FeedStatus, Unmapped, Vendor};
use crate::broker::{Broker, TickBatch};
use crate::config::FeedSettings;
use crate::domain::now_millis;
use crate::store::SnapshotStore;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest vendor frame accepted. Vendors batch many messages into one array; this is
/// far above any batch they document, and bounds memory against a broken peer.
const MAX_FRAME_BYTES: usize = 16 << 20;

/// How one connection ended, which decides the wait before the next.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Shutdown,
    LostLeadership,
    /// The connection failed or dropped; `healthy` when it had been subscribed and
    /// receiving, which restarts the backoff from its first step.
    Dropped {
        healthy: bool,
    },
    /// The vendor refused the key, the plan or the connection count.
    Refused,
}

/// Runs the configured feed until `shutdown`.
pub async fn run(
    vendor: Vendor,
    settings: FeedSettings,
    store: SnapshotStore,
    broker: Broker,
    monitor: Arc<FeedMonitor>,
    live: watch::Sender<Option<LiveSince>>,
    shutdown: CancellationToken,
) {
    let mut runner = Runner {
        vendor,
        settings,
        store,
        broker: broker.clone(),
        monitor,
        shutdown,
        leader: broker.source_leadership(),
        decoded: Decoded::default(),
        batch: TickBatch::new(0),
        live,
        dropped_at: None,
    };
    let reason = runner.run().await;
    runner.monitor.set_status(FeedStatus::Stopped);
    info!(feed = runner.monitor.kind.as_str(), reason, "feed stopped");
}

struct Runner {
    vendor: Vendor,
    settings: FeedSettings,
    store: SnapshotStore,
    broker: Broker,
    monitor: Arc<FeedMonitor>,
    shutdown: CancellationToken,
    leader: watch::Receiver<bool>,
    decoded: Decoded,
    batch: TickBatch,
    /// Told each time a connection goes live, for the history backfill.
    live: watch::Sender<Option<LiveSince>>,
    /// When the last live connection ended, until the next one is live.
    dropped_at: Option<i64>,
}

/// A connection went live: ticks flow from `live_from` (ms) on, after a gap that
/// began at `gap_from` (`None` for the first connection of this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSince {
    pub live_from: i64,
    pub gap_from: Option<i64>,
}

impl Runner {
    /// The subscription is live: tell the backfill where the gap (if any) was.
    fn went_live(&mut self) {
        let since = LiveSince {
            live_from: now_millis(),
            gap_from: self.dropped_at.take(),
        };
        self.live.send_replace(Some(since));
    }

    async fn run(&mut self) -> &'static str {
        let kind = self.monitor.kind.as_str();
        info!(feed = kind, address = %self.vendor.address_for_logs(), "feed started");
        let mut failures: u32 = 0;
        loop {
            if !self.wait_for_leadership().await {
                return "shutdown";
            }
            self.monitor.set_status(FeedStatus::Connecting);
            let ended = self.attempt().await;
            // The gap starts when the connection ends (kept if it never went live).
            self.dropped_at.get_or_insert_with(now_millis);
            let delay = match ended {
                Ended::Shutdown => return "shutdown",
                Ended::LostLeadership => {
                    info!(
                        feed = kind,
                        "feed handed over: another instance leads the sources"
                    );
                    failures = 0;
                    continue;
                }
                Ended::Dropped { healthy } => {
                    if healthy {
                        failures = 0;
                    }
                    self.monitor.set_status(FeedStatus::Reconnecting);
                    backoff(&self.settings, failures)
                }
                Ended::Refused => backoff(&self.settings, failures)
                    .max(Duration::from_millis(self.settings.refusal_backoff_ms)),
            };
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = self.shutdown.cancelled() => return "shutdown",
                _ = sleep(delay) => {}
            }
            self.monitor.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until this instance leads the sources (at once on a single instance);
    /// false on shutdown.
    async fn wait_for_leadership(&mut self) -> bool {
        while !*self.leader.borrow_and_update() {
            self.monitor.set_status(FeedStatus::Standby);
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                changed = self.leader.changed() => {
                    if changed.is_err() {
                        // The broker is gone: the application is stopping.
                        self.shutdown.cancelled().await;
                        return false;
                    }
                }
            }
        }
        !self.shutdown.is_cancelled()
    }

    async fn connect(&self) -> Result<Socket, Ended> {
        let config = WebSocketConfig {
            max_message_size: Some(MAX_FRAME_BYTES),
            max_frame_size: Some(MAX_FRAME_BYTES),
            ..WebSocketConfig::default()
        };
        let connect =
            tokio_tungstenite::connect_async_with_config(self.vendor.url(), Some(config), true);
        let limit = Duration::from_millis(self.settings.connect_timeout_ms);
        match timeout(limit, connect).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(response)))
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                self.monitor.set_status(FeedStatus::AuthFailed);
                let status = response.status().as_u16();
                self.monitor.warn_once(
                    "handshake refused",
                    &format!("HTTP {status}: check TICKSTREAM__FEED__API_KEY"),
                );
                Err(Ended::Refused)
            }
            Ok(Err(e)) => {
                self.monitor
                    .warn_once(&format!("connect: {}", error_kind(&e)), &e.to_string());
                Err(Ended::Dropped { healthy: false })
            }
            Err(_) => {
                self.monitor.warn_once(
                    "connect timed out",
                    &format!(
                        "no WebSocket handshake within {} ms",
                        self.settings.connect_timeout_ms
                    ),
                );
                Err(Ended::Dropped { healthy: false })
            }
        }
    }

    /// One connection attempt to the vendor, from connect to its end.
    async fn attempt(&mut self) -> Ended {
        // Shutdown must not wait out a slow connect (up to feed.connect_timeout_ms).
        let connected = tokio::select! {
            _ = self.shutdown.cancelled() => return Ended::Shutdown,
            connected = self.connect() => connected,
        };
        let mut socket = match connected {
            Ok(socket) => socket,
            Err(ended) => return ended,
        };
        let kind = self.monitor.kind.as_str();
        info!(feed = kind, "feed connected");
        let mut subscribed = false;
        let mut healthy = false;
        for frame in self.vendor.on_open() {
            if let Err(ended) = self.send(&mut socket, frame).await {
                return ended;
            }
        }
        if self.vendor.acknowledges_subscriptions() {
            self.monitor.set_status(FeedStatus::Authenticating);
        } else {
            self.monitor.set_status(FeedStatus::Connected);
            subscribed = true;
            self.went_live();
        }
        let idle = Duration::from_millis(self.settings.idle_timeout_ms);
        let ping_every = Duration::from_millis(self.settings.ping_interval_ms);
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut deadline = Instant::now() + idle;
        // A vendor that keeps the connection alive but never completes the login and
        // subscription would otherwise hold us in `authenticating` forever.
        let handshake_deadline =
            Instant::now() + Duration::from_millis(self.settings.connect_timeout_ms);
        let mut leader_alive = true;
        let ended = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Ended::Shutdown,
                changed = self.leader.changed(), if leader_alive => {
                    leader_alive = changed.is_ok();
                    if leader_alive && !*self.leader.borrow_and_update() {
                        break Ended::LostLeadership;
                    }
                }
                _ = sleep_until(deadline) => {
                    self.monitor.warn_once(
                        "silent connection",
                        &format!("no frame for {} ms: reconnecting", idle.as_millis()),
                    );
                    break Ended::Dropped { healthy };
                }
                _ = sleep_until(handshake_deadline), if !subscribed => {
                    self.monitor.warn_once(
                        "login or subscription not acknowledged",
                        &format!(
                            "no subscription acknowledgement within {} ms: reconnecting",
                            self.settings.connect_timeout_ms
                        ),
                    );
                    break Ended::Dropped { healthy: false };
                }
                _ = ping.tick() => {
                    if let Err(ended) = self.send_message(&mut socket, Message::Ping(Vec::new())).await {
                        break ended;
                    }
                }
                frame = socket.next() => {
                    deadline = Instant::now() + idle;
                    self.monitor.touch();
                    let text = match frame {
                        None => {
                            info!(feed = kind, "feed connection closed by the vendor");
                            break Ended::Dropped { healthy };
                        }
                        Some(Err(e)) => {
                            info!(feed = kind, error = %e, "feed connection failed");
                            break Ended::Dropped { healthy };
                        }
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(bytes))) => match String::from_utf8(bytes) {
                            Ok(text) => text,
                            Err(_) => {
                                self.monitor.count_unmapped(Unmapped::Malformed);
                                continue;
                            }
                        },
                        Some(Ok(Message::Close(close))) => {
                            let (code, reason) = close
                                .map(|c| (u16::from(c.code), c.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            info!(feed = kind, code, reason, "feed connection closed by the vendor");
                            break Ended::Dropped { healthy };
                        }
                        // Pings are answered by tungstenite on the next read or write;
                        // pongs and pings only prove the connection alive.
                        Some(Ok(_)) => continue,
                    };
                    if subscribed {
                        healthy = true;
                    }
                    match self.handle(&mut socket, &text).await {
                        Ok(now_subscribed) => {
                            if now_subscribed && !subscribed {
                                self.went_live();
                            }
                            subscribed |= now_subscribed;
                        }
                        Err(ended) => break ended,
                    }
                }
            }
        };
        // A polite close, bounded: the vendor may already be gone.
        let write = Duration::from_millis(self.settings.write_timeout_ms);
        let _ = timeout(write, socket.close(None)).await;
        ended
    }

    /// Applies one frame's ticks and answers its control messages; `Ok(true)` once
    /// the subscription is acknowledged.
    async fn handle(&mut self, socket: &mut Socket, text: &str) -> Result<bool, Ended> {
        self.vendor.decode(text, &mut self.decoded);
        self.monitor
            .messages
            .fetch_add(self.decoded.messages, Ordering::Relaxed);
        for reason in std::mem::take(&mut self.decoded.unmapped) {
            self.monitor.count_unmapped(reason);
        }
        if !self.decoded.ticks.is_empty() {
            self.batch.received_at = now_millis();
            self.batch.ticks.clear();
            // Only symbols of this instance's universe: the broker would otherwise
            // create the vendor's extra symbols on every instance of a cluster.
            for parsed in self.decoded.ticks.drain(..) {
                if self.store.lookup(&parsed.symbol).is_some() {
                    self.batch.ticks.push(parsed);
                } else {
                    self.monitor.count_unmapped(Unmapped::UnknownSymbol);
                }
            }
            self.broker.publish(&self.batch).await;
            self.monitor
                .ticks_applied
                .fetch_add(self.batch.ticks.len() as u64, Ordering::Relaxed);
        }
        let mut subscribed = false;
        let controls = std::mem::take(&mut self.decoded.controls);
        for control in &controls {
            match control {
                Control::Greeting => self.monitor.set_status(FeedStatus::Authenticating),
                Control::Authenticated => self.monitor.set_status(FeedStatus::Subscribing),
                Control::Subscribed => {
                    self.monitor.set_status(FeedStatus::Connected);
                    info!(feed = self.monitor.kind.as_str(), "feed subscribed");
                    subscribed = true;
                }
                Control::Heartbeat => {}
                Control::Refused(status, message) => {
                    self.monitor.set_status(*status);
                    if self.monitor.first_time(&format!("refused {message}")) {
                        warn!(
                            feed = self.monitor.kind.as_str(),
                            status = status.as_str(),
                            message = %message,
                            "feed refused by the vendor; retrying after feed.refusal_backoff_ms (logged once per cause)"
                        );
                    }
                    return Err(Ended::Refused);
                }
                Control::Warning(status, message) => {
                    if let Some(status) = status {
                        self.monitor.set_status(*status);
                    }
                    self.monitor
                        .warn_once(&format!("vendor error {message}"), message);
                }
            }
            for frame in self.vendor.respond(control) {
                self.send(socket, frame).await?;
            }
        }
        self.decoded.controls = controls;
        Ok(subscribed)
    }

    async fn send(&self, socket: &mut Socket, text: String) -> Result<(), Ended> {
        self.send_message(socket, Message::Text(text)).await
    }

    async fn send_message(&self, socket: &mut Socket, message: Message) -> Result<(), Ended> {
        let limit = Duration::from_millis(self.settings.write_timeout_ms);
        match timeout(limit, socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                info!(feed = self.monitor.kind.as_str(), error = %e, "feed write failed");
                Err(Ended::Dropped { healthy: false })
            }
            Err(_) => {
                self.monitor.warn_once(
                    "write timed out",
                    &format!("a write did not drain within {} ms", limit.as_millis()),
                );
                Err(Ended::Dropped { healthy: false })
            }
        }
    }
}

/// A coarse, stable name for a connect error, so each kind is logged once.
fn error_kind(e: &tungstenite::Error) -> &'static str {
    match e {
        tungstenite::Error::Io(_) => "io",
        tungstenite::Error::Tls(_) => "tls",
        tungstenite::Error::Http(_) => "http status",
        tungstenite::Error::Url(_) => "url",
        tungstenite::Error::Protocol(_) => "protocol",
        _ => "other",
    }
}

/// The wait before reconnect number `failures` (0-based): doubling from
/// `feed.backoff_initial_ms` up to `feed.backoff_max_ms`, with "equal jitter" (a
/// uniform draw from the upper half), so many instances restarted together spread
/// out, yet each wait is at least half the step and the rate stays bounded.
fn backoff(settings: &FeedSettings, failures: u32) -> Duration {
    let step = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << failures.min(20))
        .min(settings.backoff_max_ms);
    let jittered = rand::rng().random_range(step / 2..=step);
    Duration::from_millis(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let settings = crate::config::Settings::from_sources(&[], Vec::<(String, String)>::new())
            .unwrap()
            .feed;
        for _ in 0..100 {
            let first = backoff(&settings, 0).as_millis() as u64;
            assert!((250..=500).contains(&first), "{first}");
            let third = backoff(&settings, 2).as_millis() as u64;
            assert!((1000..=2000).contains(&third), "{third}");
            let late = backoff(&settings, 40).as_millis() as u64;
            assert!((15_000..=30_000).contains(&late), "{late}");
        }
    }
}
