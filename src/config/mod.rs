//! Settings: one typed struct, loaded in layers and validated at start-up.
//!
//! Layers, later wins: the defaults embedded in the binary (`config/default.toml`),
//! `config/default.toml` on disk (or the `--config` file), `config/$TICKSTREAM_ENV.toml`,
//! then environment variables `TICKSTREAM__SECTION__KEY`. Any error names the key.
//!
//! This module holds the types; `layering` builds them from those sources and
//! `validation` checks the values serde cannot.

mod layering;
mod validation;

pub use layering::{Deprecation, Loaded, EMBEDDED_DEFAULTS};

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub simulator: SimulatorSettings,
    pub stream: StreamSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub ingest: IngestSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    /// Was `[session]`, still read as a deprecated alias (see `layering`).
    pub trading_day: TradingDaySettings,
    pub replay: ReplaySettings,
    pub auth: AuthSettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub http: HttpSettings,
    pub tls: TlsSettings,
    pub broker: BrokerSettings,
    pub feed: FeedSettings,
}

/// A configuration mistake: a value that cannot be read or is out of range, an unknown
/// key, a file that cannot be read or parsed. A type of its own so that `main` can tell
/// the user's mistake (one line, exit status 2) from a failure to run. The message is
/// one line and names the key (or the file, or the variable) to fix.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    /// The message for every rejected value: the key first, then why.
    fn invalid_key(key: &str, why: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(format!("invalid configuration key `{key}`: {why}"))
    }

    /// Joins the lines of `message` (a TOML or serde message may end in a newline, or
    /// span several), since the message is printed as one line.
    fn new(message: impl std::fmt::Display) -> ConfigError {
        let message = message.to_string();
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        ConfigError(lines.join(" "))
    }

    /// Takes over an error from the loading steps, its causes joined on one line.
    fn from_chain(error: anyhow::Error) -> ConfigError {
        ConfigError::new(format!("{error:#}"))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Which vendor's stream the built-in connector speaks (`feed.kind`); empty = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    #[serde(rename = "")]
    None,
    Finnhub,
    Alpaca,
    Polygon,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::None => "none",
            FeedKind::Finnhub => "finnhub",
            FeedKind::Alpaca => "alpaca",
            FeedKind::Polygon => "polygon",
        }
    }

    /// REST requests per minute a free plan allows (docs/FEEDS.md, "History
    /// backfill"): Alpaca 200, Polygon 5, Finnhub 60. The default pace of backfill.
    pub fn free_requests_per_minute(self) -> u32 {
        match self {
            FeedKind::Alpaca => 200,
            FeedKind::Polygon => 5,
            FeedKind::Finnhub | FeedKind::None => 60,
        }
    }
}

/// The built-in market-data connector (src/sources/feed/, docs/FEEDS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    pub kind: FeedKind,
    /// Comma-separated symbols to subscribe to; those not in the universe are added.
    pub symbols: String,
    /// Overrides the vendor's address (tests point it at a local server).
    pub url: String,
    /// The vendor's key (environment only).
    #[serde(default)]
    pub api_key: Secret,
    /// Alpaca's secret key (environment only).
    #[serde(default)]
    pub api_secret: Secret,
    /// Alpaca's data feed: `iex` (free), `sip` (paid), `delayed_sip`, or `test`.
    pub alpaca_feed: String,
    /// Polygon's (Massive's) cluster host: real-time or 15-minute delayed.
    pub polygon_delayed: bool,
    /// Shares per round lot, for vendors that send quote sizes in round lots
    /// (Alpaca, Polygon); 1 keeps the vendor's numbers.
    pub round_lot_shares: u64,
    pub connect_timeout_ms: u64,
    pub write_timeout_ms: u64,
    /// A WebSocket ping goes to the vendor this often; its pong, like any frame,
    /// proves the connection alive.
    pub ping_interval_ms: u64,
    /// No frame at all for this long means a dead connection: reconnect.
    pub idle_timeout_ms: u64,
    /// Reconnect delays: the first, the cap, and the floor after an auth or limit
    /// refusal (retrying those quickly cannot succeed and may get a key blocked).
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub refusal_backoff_ms: u64,
    /// Backfill history from the vendor's REST API each time the feed goes live.
    pub backfill: bool,
    /// The vendor's REST API for history backfill; empty = its documented address
    /// (tests point it at a local server).
    pub rest_url: String,
    /// Calendar days of daily bars fetched at start (and after a gap).
    pub backfill_days: u32,
    /// Backfill requests per minute, so a free plan's quota is never exceeded;
    /// 0 = the vendor's free-plan limit ([`FeedKind::free_requests_per_minute`]).
    pub backfill_requests_per_minute: u32,
    /// Deadline of one REST request: connect, headers and body.
    pub backfill_timeout_ms: u64,
}

impl FeedSettings {
    /// The configured symbols, parsed, without duplicates, in order.
    pub fn symbols(&self) -> anyhow::Result<Vec<crate::domain::Symbol>> {
        let mut out: Vec<crate::domain::Symbol> = Vec::new();
        for raw in split_list(&self.symbols) {
            let symbol = crate::domain::Symbol::parse(&raw)?;
            if !out.contains(&symbol) {
                out.push(symbol);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// One instance; ticks go straight into its store.
    Memory,
    /// Several instances sharing ticks and quotes through Redis.
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    pub kind: BrokerKind,
    /// May carry a password, so it is never printed.
    pub redis_url: Secret,
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub lock_ttl_ms: u64,
    pub outbox_max_ticks: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Jwt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// HS256 secret (environment only).
    #[serde(default)]
    pub jwt_secret: Secret,
    pub jwt_public_key_file: String,
    /// Required `aud` claim; empty = tokens' `aud`, if any, is not checked.
    #[serde(default)]
    pub audience: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub allowed_origins: String,
    pub trusted_proxies: String,
}

impl SecuritySettings {
    pub fn allowed_origins(&self) -> Vec<String> {
        split_list(&self.allowed_origins)
    }

    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<std::net::IpAddr>> {
        split_list(&self.trusted_proxies)
            .iter()
            .map(|ip| {
                ip.parse()
                    .with_context(|| format!("{ip:?} is not an IP address"))
            })
            .collect()
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub messages_per_second: f64,
    pub message_burst: f64,
    pub abuse_close_after: u32,
    pub abuse_window_ms: u64,
    /// Inbound WebSocket control frames (pings, pongs) per connection.
    pub control_frames_per_second: f64,
    pub control_frame_burst: f64,
    pub max_connections_per_ip: usize,
    pub max_connections: usize,
    pub connects_per_second_per_ip: f64,
    pub connect_burst_per_ip: f64,
    pub rest_requests_per_second_per_ip: f64,
    pub rest_burst_per_ip: f64,
}

/// Bounds on every plain HTTP connection (src/listener/guard.rs): how many may be
/// open, and how long a client may keep one busy without making progress.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Open HTTP connections per client address (trusted proxies are exempt).
    pub max_connections_per_ip: usize,
    /// Open HTTP connections in total.
    pub max_connections: usize,
    /// Idle time between requests on a kept-alive connection.
    pub keep_alive_ms: u64,
    /// Time for a request's head to arrive whole (actix-http's timer for the first
    /// request, ours for later ones on a kept-alive connection).
    pub request_head_timeout_ms: u64,
    /// Time for a whole request body to arrive once its handler starts reading it.
    pub body_timeout_ms: u64,
    /// Time a response write may stay blocked (the client not reading).
    pub write_timeout_ms: u64,
}

impl HttpSettings {
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
    pub fn request_head_timeout(&self) -> Duration {
        Duration::from_millis(self.request_head_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: String,
    pub key_file: String,
}

/// A secret from the environment: never printed, compared in constant time by users.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Comma-separated publisher keys (environment only).
    #[serde(default)]
    pub publisher_keys: Secret,
    pub max_body_bytes: usize,
    pub max_batch_ticks: usize,
    pub auto_create_symbols: bool,
    /// The publisher socket's own timers (`/ws/ingest`), separate from viewers'.
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub write_timeout_ms: u64,
}

impl IngestSettings {
    /// The configured keys, one per publisher, in order.
    pub fn keys(&self) -> Vec<Secret> {
        self.publisher_keys
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Environment only; empty = admin routes refused.
    #[serde(default)]
    pub api_key: Secret,
}

/// The trading day's rollover: at this local time `pc` becomes the last price and
/// o/h/l/v restart. Named for the market's day, not a viewer's session (a session
/// is a viewer connection everywhere else in tickstream).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingDaySettings {
    pub rollover_time: String,
    pub time_zone: String,
}

impl TradingDaySettings {
    pub fn rollover_time(&self) -> anyhow::Result<chrono::NaiveTime> {
        chrono::NaiveTime::parse_from_str(&self.rollover_time, "%H:%M")
            .with_context(|| format!("expected HH:MM, got {:?}", self.rollover_time))
    }

    pub fn time_zone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.time_zone
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown time zone {:?}", self.time_zone))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    pub file: String,
    pub speed: f64,
    #[serde(rename = "loop")]
    pub repeat: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    pub enabled: bool,
    pub ticks_per_second: u32,
    pub batch_interval_ms: u64,
    #[serde(default)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    pub max_hz: f64,
    pub min_hz: f64,
    pub heartbeat_ms: u64,
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub slow_consumer_timeout_ms: u64,
    pub max_symbols_per_connection: usize,
    pub max_message_bytes: usize,
    pub deflate_level: u32,
    pub deflate_dictionary_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub universe_file: String,
    pub max_symbols: usize,
    /// Directory of the durable market state (`tickstream.redb`); empty keeps
    /// everything in memory only, so a restart starts from the universe file.
    pub data_dir: String,
    /// Longest time a change from an unacknowledged source (simulator, replay, vendor
    /// feed) waits before it is committed; a publisher's batch is committed at once.
    pub flush_interval_ms: u64,
    /// How far back the data file keeps each interval's bars, counted back from a
    /// symbol's newest bar of it (see `store::Retention`).
    pub history_1s_seconds: u64,
    pub history_1m_days: u64,
    pub history_1d_days: u64,
}

impl StoreSettings {
    pub fn retention(&self) -> crate::store::Retention {
        const DAY_MS: i64 = 86_400_000;
        crate::store::Retention {
            second_bars_ms: self.history_1s_seconds as i64 * 1_000,
            minute_bars_ms: self.history_1m_days as i64 * DAY_MS,
            day_bars_ms: self.history_1d_days as i64 * DAY_MS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl StreamSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn slow_consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_consumer_timeout_ms)
    }
}

/// `(key, value)` pairs for the loaders' `env` argument, so tests never read or change
/// the process environment.
#[cfg(test)]
fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn comma_lists_are_trimmed_and_their_bad_entries_named() {
        let security = SecuritySettings {
            allowed_origins: " https://a.example ,,https://b.example".to_owned(),
            trusted_proxies: "10.0.0.1, ::1".to_owned(),
        };
        assert_eq!(
            security.allowed_origins(),
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(security.trusted_proxies().unwrap().len(), 2);
        let bad = SecuritySettings {
            trusted_proxies: "10.0.0.1, proxy.local".to_owned(),
            ..security
        };
        let err = bad.trusted_proxies().unwrap_err();
        assert!(err.to_string().contains("proxy.local"), "{err}");
    }

    #[test]
    fn trading_day_accessors_parse_their_text() {
        let trading_day = TradingDaySettings {
            rollover_time: "16:00".to_owned(),
            time_zone: "Europe/London".to_owned(),
        };
        assert_eq!(
            trading_day.rollover_time().unwrap(),
            chrono::NaiveTime::from_hms_opt(16, 0, 0).unwrap()
        );
        assert_eq!(trading_day.time_zone().unwrap(), chrono_tz::Europe::London);
        let bad = TradingDaySettings {
            rollover_time: "4pm".to_owned(),
            time_zone: "Mars/Base".to_owned(),
        };
        assert!(bad.rollover_time().unwrap_err().to_string().contains("4pm"));
        assert!(bad
            .time_zone()
            .unwrap_err()
            .to_string()
            .contains("Mars/Base"));
    }
}
