//! What `/readyz` and `/metrics` show of the feed: its status, counters, and the age
//! of the last message. Written by the one runner task, read by HTTP handlers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tracing::{info, warn};

use crate::config::FeedKind;

/// Where the connection to the vendor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FeedStatus {
    /// Another instance of the cluster holds the feed (Redis broker).
    Standby,
    Connecting,
    Authenticating,
    Subscribing,
    Connected,
    /// Lost the connection; waiting out the backoff before reconnecting.
    Reconnecting,
    /// The vendor refused the key.
    AuthFailed,
    /// The vendor's limit on simultaneous connections (Alpaca 406, Polygon
    /// `max_connections`): another client uses this key.
    ConnectionLimit,
    /// More symbols than the plan allows (Alpaca 405).
    SymbolLimit,
    /// The plan does not include this data (Alpaca 409).
    InsufficientSubscription,
    Stopped,
}

impl FeedStatus {
    const ALL: [FeedStatus; 11] = [
        FeedStatus::Standby,
        FeedStatus::Connecting,
        FeedStatus::Authenticating,
        FeedStatus::Subscribing,
        FeedStatus::Connected,
        FeedStatus::Reconnecting,
        FeedStatus::AuthFailed,
        FeedStatus::ConnectionLimit,
        FeedStatus::SymbolLimit,
        FeedStatus::InsufficientSubscription,
        FeedStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::Standby => "standby",
            FeedStatus::Connecting => "connecting",
            FeedStatus::Authenticating => "authenticating",
            FeedStatus::Subscribing => "subscribing",
            FeedStatus::Connected => "connected",
            FeedStatus::Reconnecting => "reconnecting",
            FeedStatus::AuthFailed => "auth_failed",
            FeedStatus::ConnectionLimit => "connection_limit",
            FeedStatus::SymbolLimit => "symbol_limit",
            FeedStatus::InsufficientSubscription => "insufficient_subscription",
            FeedStatus::Stopped => "stopped",
        }
    }
}

/// Why a vendor message was not applied (the `reason` label of
/// `tickstream_feed_unmapped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    /// Not JSON, or a trade/quote without its required fields.
    Malformed,
    /// A message type we do not map (bars, news, an unknown event).
    UnsupportedType,
    /// A symbol outside the universe and not in `feed.symbols`.
    UnknownSymbol,
    /// Not a positive decimal with at most 6 decimals.
    BadPrice,
    /// Not a whole number of shares (fractional, negative, too large).
    BadSize,
    BadTimestamp,
}

impl Unmapped {
    pub const ALL: [Unmapped; 6] = [
        Unmapped::Malformed,
        Unmapped::UnsupportedType,
        Unmapped::UnknownSymbol,
        Unmapped::BadPrice,
        Unmapped::BadSize,
        Unmapped::BadTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unmapped::Malformed => "malformed",
            Unmapped::UnsupportedType => "unsupported_type",
            Unmapped::UnknownSymbol => "unknown_symbol",
            Unmapped::BadPrice => "bad_price",
            Unmapped::BadSize => "bad_size",
            Unmapped::BadTimestamp => "bad_timestamp",
        }
    }
}

/// Distinct log causes remembered; beyond this a vendor inventing new error texts
/// cannot grow memory, and further causes are not logged.
const MAX_LOGGED_CAUSES: usize = 256;

pub struct FeedMonitor {
    pub kind: FeedKind,
    status: AtomicU8,
    started: Instant,
    /// Milliseconds after `started` of the last frame from the vendor, plus one;
    /// 0 = none yet.
    last_frame: AtomicU64,
    pub messages: AtomicU64,
    pub ticks_applied: AtomicU64,
    pub reconnects: AtomicU64,
    unmapped: [AtomicU64; Unmapped::ALL.len()],
    /// Causes already logged. A std lock: held for a set lookup, never across `.await`.
    logged: Mutex<HashSet<String>>,
}

impl FeedMonitor {
    pub fn new(kind: FeedKind) -> FeedMonitor {
        FeedMonitor {
            kind,
            status: AtomicU8::new(FeedStatus::Connecting as u8),
            started: Instant::now(),
            last_frame: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            ticks_applied: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unmapped: Default::default(),
            logged: Mutex::new(HashSet::new()),
        }
    }

    pub fn status(&self) -> FeedStatus {
        let raw = self.status.load(Ordering::Relaxed);
        FeedStatus::ALL
            .into_iter()
            .find(|s| *s as u8 == raw)
            .unwrap_or(FeedStatus::Stopped)
    }

    pub fn set_status(&self, status: FeedStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
    }

    /// Records that the vendor sent a frame now.
    pub fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_frame.store(ms, Ordering::Relaxed);
    }

    /// Seconds since the vendor's last frame; `None` before the first.
    pub fn last_message_age_s(&self) -> Option<f64> {
        match self.last_frame.load(Ordering::Relaxed) {
            0 => None,
            at => {
                let now = self.started.elapsed().as_millis() as u64 + 1;
                Some(now.saturating_sub(at) as f64 / 1000.0)
            }
        }
    }

    pub fn count_unmapped(&self, reason: Unmapped) {
        let index = Unmapped::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        let before = self.unmapped[index].fetch_add(1, Ordering::Relaxed);
        if before == 0 {
            info!(
                feed = self.kind.as_str(),
                reason = reason.as_str(),
                "feed message not applied (logged once per reason; see tickstream_feed_unmapped_total)"
            );
        }
    }

    pub fn unmapped(&self, reason: Unmapped) -> u64 {
        let index = Unmapped::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.unmapped[index].load(Ordering::Relaxed)
    }

    /// True the first time `cause` is seen: vendor faults are logged once per cause,
    /// never per message or per reconnect.
    pub fn first_time(&self, cause: &str) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.contains(cause) || logged.len() >= MAX_LOGGED_CAUSES {
            return false;
        }
        logged.insert(cause.to_owned());
        true
    }

    /// Logs a vendor fault at WARN once per cause.
    pub fn warn_once(&self, cause: &str, detail: &str) {
        if self.first_time(cause) {
            warn!(
                feed = self.kind.as_str(),
                cause, detail, "feed vendor fault (logged once per cause)"
            );
        }
    }
}
