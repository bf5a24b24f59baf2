//! Built-in connectors to market-data vendors' stock WebSockets (Finnhub, Alpaca,
//! Polygon/Massive): a third source beside the simulator and CSV replay.
//!
//! Each vendor module only turns its wire format into [`Decoded`] ticks and control
//! events and says what to send when (`finnhub`, `alpaca`, `polygon`); the one
//! [`runner`] owns the connection: timeouts, heartbeats, backoff, leadership and
//! applying ticks through the broker, so every vendor gets the same guarantees.
//! docs/FEEDS.md is the operator's view.

mod alpaca;
pub mod backfill;
mod expose;
mod finnhub;
mod monitor;
mod polygon;
#[cfg(test)]
mod properties;
mod runner;
mod values;

pub use expose::{readiness, write_metrics};
pub use monitor::{FeedMonitor, FeedStatus, Unmapped};
pub use runner::{run, LiveSince};

use crate::config::{FeedKind, FeedSettings};
use crate::domain::ParsedTick;

/// What one vendor message asked of the connection, besides ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The vendor's welcome (Alpaca `connected`, Polygon `connected`): time to log in.
    Greeting,
    /// Credentials accepted: time to subscribe.
    Authenticated,
    /// The subscription was acknowledged.
    Subscribed,
    /// A vendor-level heartbeat (Finnhub `{"type":"ping"}`).
    Heartbeat,
    /// The vendor refused us (bad key, connection limit, plan): close and back off
    /// for at least `feed.refusal_backoff_ms`, since retrying soon cannot help.
    Refused(FeedStatus, String),
    /// An error that leaves the connection usable (a symbol limit, a bad request):
    /// logged once, shown on `/readyz` when it has a status.
    Warning(Option<FeedStatus>, String),
}

/// The ticks, control events and refusals one text frame carried. Reused between
/// frames, so the hot path does not allocate per frame.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Vendor messages in the frame (array elements, or the one object).
    pub messages: u64,
    pub ticks: Vec<ParsedTick>,
    pub controls: Vec<Control>,
    pub unmapped: Vec<Unmapped>,
}

impl Decoded {
    pub fn clear(&mut self) {
        self.messages = 0;
        self.ticks.clear();
        self.controls.clear();
        self.unmapped.clear();
    }
}

/// One vendor's protocol: where to connect and what to say when.
#[derive(Debug, Clone)]
pub enum Vendor {
    Finnhub(finnhub::Finnhub),
    Alpaca(alpaca::Alpaca),
    Polygon(polygon::Polygon),
}

impl Vendor {
    /// The vendor for `settings`, or `None` when no feed is configured.
    pub fn from_settings(settings: &FeedSettings) -> anyhow::Result<Option<Vendor>> {
        let symbols: Vec<String> = settings
            .symbols()?
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let key = settings.api_key.clone();
        Ok(match settings.kind {
            FeedKind::None => None,
            FeedKind::Finnhub => Some(Vendor::Finnhub(finnhub::Finnhub::new(
                &settings.url,
                key,
                symbols,
            ))),
            FeedKind::Alpaca => Some(Vendor::Alpaca(alpaca::Alpaca::new(
                &settings.url,
                &settings.alpaca_feed,
                key,
                settings.api_secret.clone(),
                symbols,
                settings.round_lot_shares,
            ))),
            FeedKind::Polygon => Some(Vendor::Polygon(polygon::Polygon::new(
                &settings.url,
                settings.polygon_delayed,
                key,
                symbols,
                settings.round_lot_shares,
            ))),
        })
    }

    /// The address to connect to, credentials included where the vendor wants them
    /// in the URL (Finnhub). Never logged: see [`Vendor::address_for_logs`].
    fn url(&self) -> String {
        match self {
            Vendor::Finnhub(v) => v.url(),
            Vendor::Alpaca(v) => v.url(),
            Vendor::Polygon(v) => v.url(),
        }
    }

    /// The address without credentials.
    fn address_for_logs(&self) -> String {
        match self {
            Vendor::Finnhub(v) => v.base.clone(),
            Vendor::Alpaca(v) => v.url(),
            Vendor::Polygon(v) => v.url(),
        }
    }

    /// Frames to send as soon as the socket is open.
    fn on_open(&self) -> Vec<String> {
        match self {
            Vendor::Finnhub(v) => v.subscribe(),
            Vendor::Alpaca(_) | Vendor::Polygon(_) => Vec::new(),
        }
    }

    /// Frames answering a control event (log in after the greeting, subscribe after
    /// authentication).
    fn respond(&self, control: &Control) -> Vec<String> {
        match (self, control) {
            (Vendor::Alpaca(v), Control::Greeting) => vec![v.auth()],
            (Vendor::Alpaca(v), Control::Authenticated) => vec![v.subscribe()],
            (Vendor::Polygon(v), Control::Greeting) => vec![v.auth()],
            (Vendor::Polygon(v), Control::Authenticated) => vec![v.subscribe()],
            _ => Vec::new(),
        }
    }

    /// Whether the vendor acknowledges subscriptions (Finnhub does not: it is
    /// connected once the subscriptions are sent).
    fn acknowledges_subscriptions(&self) -> bool {
        !matches!(self, Vendor::Finnhub(_))
    }

    /// Decodes one text frame into `out` (cleared first). Never panics, whatever the
    /// input; anything that cannot be mapped exactly is counted in `out.unmapped`.
    pub fn decode(&self, text: &str, out: &mut Decoded) {
        out.clear();
        match self {
            Vendor::Finnhub(_) => finnhub::decode(text, out),
            Vendor::Alpaca(v) => alpaca::decode(text, v.round_lot_shares, out),
            Vendor::Polygon(v) => polygon::decode(text, v.round_lot_shares, out),
        }
    }
}

/// Adds the symbols named in `feed.symbols` that the universe lacks (as
/// `ingest.auto_create_symbols` would on their first tick), through the broker so
/// every instance of a cluster knows them.
pub async fn add_symbols(
    settings: &FeedSettings,
    store: &crate::store::SnapshotStore,
    broker: &crate::broker::Broker,
) -> anyhow::Result<()> {
    for symbol in settings.symbols()? {
        if store.lookup(&symbol).is_some() {
            continue;
        }
        let name = symbol.as_str().to_owned();
        broker
            .upsert_symbol(symbol, Some(&name), None)
            .await
            .map_err(|e| anyhow::anyhow!("feed.symbols: cannot add {name}: {e}"))?;
    }
    Ok(())
}
