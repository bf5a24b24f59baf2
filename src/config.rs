//! Settings: one typed struct, loaded in layers and validated at start-up.
//!
//! Layers, later wins: the defaults embedded in the binary (`config/default.toml`),
//! `config/default.toml` on disk (or the `--config` file), `config/$TICKSTREAM_ENV.toml`,
//! then environment variables `TICKSTREAM__SECTION__KEY`. Any error names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use toml::{Table, Value};

/// The defaults, embedded so the binary needs no files to start.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "TICKSTREAM__";
/// Keys that hold secrets: accepted only from the environment, and always as text.
const SECRET_KEYS: [[&str; 2]; 5] = [
    ["ingest", "publisher_keys"],
    ["admin", "api_key"],
    ["auth", "jwt_secret"],
    ["feed", "api_key"],
    ["feed", "api_secret"],
];

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
    pub session: SessionSettings,
    pub replay: ReplaySettings,
    pub auth: AuthSettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub http: HttpSettings,
    pub tls: TlsSettings,
    pub broker: BrokerSettings,
    pub feed: FeedSettings,
}

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
}

/// The built-in market-data connector (src/feed/, docs/FEEDS.md).
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

/// Bounds on every plain HTTP connection (src/http/connection.rs): how many may be
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub rollover_time: String,
    pub time_zone: String,
}

impl SessionSettings {
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

impl Settings {
    /// Loads the process configuration: files as described above, then the process
    /// environment.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut files: Vec<(String, String)> = Vec::new();
        let base = match config_file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config/default.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = &base {
            files.push(read_file(path)?);
        }
        if let Ok(env_name) = std::env::var("TICKSTREAM_ENV") {
            let dir = base
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("config"), Path::to_path_buf);
            files.push(read_file(&dir.join(format!("{env_name}.toml")))?);
        }
        Settings::from_sources(&files, std::env::vars())
    }

    /// Builds settings from the embedded defaults, the given `(name, toml)` files and
    /// `(key, value)` environment pairs (only `TICKSTREAM__*` keys are read).
    pub fn from_sources(
        files: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut merged: Table = EMBEDDED_DEFAULTS
            .parse()
            .expect("the embedded default configuration is valid TOML");
        for (name, text) in files {
            let table: Table = text
                .parse()
                .with_context(|| format!("configuration file {name} is not valid TOML"))?;
            for [section, key] in SECRET_KEYS {
                let in_file = table
                    .get(section)
                    .and_then(Value::as_table)
                    .is_some_and(|t| t.contains_key(key));
                if in_file {
                    bail!(
                        "configuration file {name} sets the secret `{section}.{key}`; secrets come only from the environment (TICKSTREAM__{}__{})",
                        section.to_ascii_uppercase(),
                        key.to_ascii_uppercase()
                    );
                }
            }
            merge(&mut merged, table);
        }
        for (key, raw) in env {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            let is_secret = SECRET_KEYS.iter().any(|secret| path == secret);
            let value = if is_secret {
                Value::String(raw)
            } else {
                env_value(&raw)
            };
            set_path(&mut merged, &path, value)
                .with_context(|| format!("environment variable {key}"))?;
        }
        let settings: Settings =
            serde_path_to_error::deserialize(Value::Table(merged)).map_err(|e| {
                let key = e.path().to_string();
                anyhow::anyhow!("invalid configuration key `{key}`: {}", e.inner())
            })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value; called by the loaders, and again after command-line changes.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn check(ok: bool, key: &str, why: impl std::fmt::Display) -> anyhow::Result<()> {
            if ok {
                Ok(())
            } else {
                bail!("invalid configuration key `{key}`: {why}")
            }
        }
        let s = &self.stream;
        check(
            s.max_hz.is_finite() && s.max_hz > 0.0 && s.max_hz <= 1000.0,
            "stream.max_hz",
            format!("must be in (0, 1000], got {}", s.max_hz),
        )?;
        check(
            s.min_hz.is_finite() && s.min_hz > 0.0 && s.min_hz <= s.max_hz,
            "stream.min_hz",
            format!("must be in (0, stream.max_hz], got {}", s.min_hz),
        )?;
        for (key, value) in [
            ("stream.heartbeat_ms", s.heartbeat_ms),
            ("stream.ping_interval_ms", s.ping_interval_ms),
            ("stream.idle_timeout_ms", s.idle_timeout_ms),
            (
                "stream.slow_consumer_timeout_ms",
                s.slow_consumer_timeout_ms,
            ),
            (
                "simulator.batch_interval_ms",
                self.simulator.batch_interval_ms,
            ),
            ("broker.timeout_ms", self.broker.timeout_ms),
            ("ingest.ping_interval_ms", self.ingest.ping_interval_ms),
            ("ingest.idle_timeout_ms", self.ingest.idle_timeout_ms),
            ("ingest.write_timeout_ms", self.ingest.write_timeout_ms),
            ("broker.lock_ttl_ms", self.broker.lock_ttl_ms),
        ] {
            check(
                value >= 10,
                key,
                format!("must be at least 10 ms, got {value}"),
            )?;
        }
        if self.broker.kind == BrokerKind::Redis {
            check(
                !self.broker.redis_url.expose().is_empty(),
                "broker.redis_url",
                "must be set when broker.kind = \"redis\"",
            )?;
            check(
                !self.broker.key_prefix.is_empty()
                    && !self.broker.key_prefix.contains(char::is_whitespace),
                "broker.key_prefix",
                "must be a non-empty word",
            )?;
        }
        check(
            s.idle_timeout_ms > s.ping_interval_ms,
            "stream.idle_timeout_ms",
            "must be longer than stream.ping_interval_ms, or live clients would be dropped",
        )?;
        check(
            self.ingest.idle_timeout_ms > self.ingest.ping_interval_ms,
            "ingest.idle_timeout_ms",
            "must be longer than ingest.ping_interval_ms, or live publishers would be dropped",
        )?;
        let l = &self.limits;
        check(
            l.control_frames_per_second.is_finite()
                && l.control_frames_per_second > 0.0
                && l.control_frame_burst >= 1.0,
            "limits.control_frames_per_second",
            "the rate must be positive and limits.control_frame_burst at least 1",
        )?;
        check(
            s.max_symbols_per_connection >= 1,
            "stream.max_symbols_per_connection",
            "must be at least 1",
        )?;
        check(
            (64..=1 << 20).contains(&s.max_message_bytes),
            "stream.max_message_bytes",
            format!("must be in [64, 1048576], got {}", s.max_message_bytes),
        )?;
        check(
            (1..=9).contains(&s.deflate_level),
            "stream.deflate_level",
            format!("must be 1-9, got {}", s.deflate_level),
        )?;
        check(
            s.deflate_dictionary_bytes <= 32 * 1024,
            "stream.deflate_dictionary_bytes",
            format!(
                "must be at most 32768 (the DEFLATE window), got {}",
                s.deflate_dictionary_bytes
            ),
        )?;
        check(
            (1..=1_000_000).contains(&self.store.max_symbols),
            "store.max_symbols",
            format!("must be in [1, 1000000], got {}", self.store.max_symbols),
        )?;
        check(
            !self.simulator.enabled || self.simulator.ticks_per_second > 0,
            "simulator.ticks_per_second",
            "must be positive when the simulator is enabled",
        )?;
        check(
            (1024..=256 << 20).contains(&self.ingest.max_body_bytes),
            "ingest.max_body_bytes",
            format!(
                "must be in [1024, 268435456], got {}",
                self.ingest.max_body_bytes
            ),
        )?;
        check(
            self.ingest.max_batch_ticks >= 1,
            "ingest.max_batch_ticks",
            "must be at least 1",
        )?;
        if let Err(e) = self.session.rollover_time() {
            bail!("invalid configuration key `session.rollover_time`: {e}");
        }
        if let Err(e) = self.session.time_zone() {
            bail!("invalid configuration key `session.time_zone`: {e}");
        }
        check(
            self.replay.speed.is_finite() && self.replay.speed > 0.0,
            "replay.speed",
            format!("must be a positive number, got {}", self.replay.speed),
        )?;
        check(
            self.replay.file.is_empty() || !self.simulator.enabled,
            "replay.file",
            "the simulator is enabled too; run one built-in feed (set simulator.enabled = false)",
        )?;
        let l = &self.limits;
        for (key, value) in [
            ("limits.messages_per_second", l.messages_per_second),
            ("limits.message_burst", l.message_burst),
            (
                "limits.connects_per_second_per_ip",
                l.connects_per_second_per_ip,
            ),
            ("limits.connect_burst_per_ip", l.connect_burst_per_ip),
            (
                "limits.rest_requests_per_second_per_ip",
                l.rest_requests_per_second_per_ip,
            ),
            ("limits.rest_burst_per_ip", l.rest_burst_per_ip),
        ] {
            check(
                value.is_finite() && value >= 1.0,
                key,
                format!("must be at least 1, got {value}"),
            )?;
        }
        check(
            l.max_connections >= 1,
            "limits.max_connections",
            "must be at least 1",
        )?;
        check(
            l.max_connections_per_ip >= 1,
            "limits.max_connections_per_ip",
            "must be at least 1",
        )?;
        check(
            l.abuse_window_ms >= 10,
            "limits.abuse_window_ms",
            "must be at least 10 ms",
        )?;
        let h = &self.http;
        for (key, value) in [
            ("http.keep_alive_ms", h.keep_alive_ms),
            ("http.request_head_timeout_ms", h.request_head_timeout_ms),
            ("http.body_timeout_ms", h.body_timeout_ms),
            ("http.write_timeout_ms", h.write_timeout_ms),
        ] {
            check(
                value >= 10,
                key,
                format!("must be at least 10 ms, got {value}"),
            )?;
        }
        check(
            h.max_connections >= 1,
            "http.max_connections",
            "must be at least 1",
        )?;
        check(
            h.max_connections_per_ip >= 1,
            "http.max_connections_per_ip",
            "must be at least 1",
        )?;
        if let Err(e) = self.security.trusted_proxies() {
            bail!("invalid configuration key `security.trusted_proxies`: {e}");
        }
        if self.auth.mode == AuthMode::Jwt {
            let secret = !self.auth.jwt_secret.expose().is_empty();
            let key_file = !self.auth.jwt_public_key_file.is_empty();
            check(
                secret != key_file,
                "auth.mode",
                "jwt needs exactly one of TICKSTREAM__AUTH__JWT_SECRET (HS256) or auth.jwt_public_key_file (RS256/ES256)",
            )?;
        }
        check(
            self.tls.cert_file.is_empty() == self.tls.key_file.is_empty(),
            "tls.cert_file",
            "tls.cert_file and tls.key_file must be set together",
        )?;
        check(
            !self.server.host.trim().is_empty(),
            "server.host",
            "must not be empty",
        )?;
        self.validate_feed()
    }

    fn validate_feed(&self) -> anyhow::Result<()> {
        fn check(ok: bool, key: &str, why: impl std::fmt::Display) -> anyhow::Result<()> {
            if ok {
                Ok(())
            } else {
                bail!("invalid configuration key `{key}`: {why}")
            }
        }
        let f = &self.feed;
        if f.kind == FeedKind::None {
            return Ok(());
        }
        let kind = f.kind.as_str();
        let symbols = match f.symbols() {
            Ok(symbols) => symbols,
            Err(e) => bail!("invalid configuration key `feed.symbols`: {e}"),
        };
        check(
            !symbols.is_empty(),
            "feed.symbols",
            format!("feed.kind = \"{kind}\" needs symbols to subscribe to, e.g. TICKSTREAM__FEED__SYMBOLS=AAPL,MSFT"),
        )?;
        check(
            !f.api_key.expose().is_empty(),
            "feed.api_key",
            format!("feed.kind = \"{kind}\" needs the vendor's key in TICKSTREAM__FEED__API_KEY"),
        )?;
        if f.kind == FeedKind::Alpaca {
            check(
                !f.api_secret.expose().is_empty(),
                "feed.api_secret",
                "feed.kind = \"alpaca\" needs the secret key in TICKSTREAM__FEED__API_SECRET",
            )?;
            check(
                ["iex", "sip", "delayed_sip", "test"].contains(&f.alpaca_feed.as_str()),
                "feed.alpaca_feed",
                format!(
                    "must be iex, sip, delayed_sip or test, got {:?}",
                    f.alpaca_feed
                ),
            )?;
        }
        check(
            f.url.is_empty() || f.url.starts_with("ws://") || f.url.starts_with("wss://"),
            "feed.url",
            format!("must be a ws:// or wss:// address, got {:?}", f.url),
        )?;
        check(
            (1..=1_000_000).contains(&f.round_lot_shares),
            "feed.round_lot_shares",
            "must be in [1, 1000000]",
        )?;
        for (key, value) in [
            ("feed.connect_timeout_ms", f.connect_timeout_ms),
            ("feed.write_timeout_ms", f.write_timeout_ms),
            ("feed.ping_interval_ms", f.ping_interval_ms),
            ("feed.idle_timeout_ms", f.idle_timeout_ms),
            ("feed.backoff_initial_ms", f.backoff_initial_ms),
            ("feed.backoff_max_ms", f.backoff_max_ms),
            ("feed.refusal_backoff_ms", f.refusal_backoff_ms),
        ] {
            check(
                value >= 10,
                key,
                format!("must be at least 10 ms, got {value}"),
            )?;
        }
        check(
            f.backoff_max_ms >= f.backoff_initial_ms,
            "feed.backoff_max_ms",
            "must be at least feed.backoff_initial_ms",
        )?;
        check(
            f.idle_timeout_ms > f.ping_interval_ms,
            "feed.idle_timeout_ms",
            "must be longer than feed.ping_interval_ms, or a live vendor would be dropped",
        )?;
        check(
            self.replay.file.is_empty(),
            "replay.file",
            "feed.kind is set too; run one built-in source",
        )?;
        Ok(())
    }
}

fn read_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> anyhow::Result<()> {
    match path {
        [] => bail!("empty key"),
        [key] if key.is_empty() => bail!("empty key"),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(inner) => set_path(inner, rest, value),
                _ => bail!("`{section}` is not a section"),
            }
        }
    }
}

/// An environment value is read as a TOML scalar when it is one (`8080`, `true`, `1.5`)
/// and as a string otherwise, so `TICKSTREAM__SERVER__HOST=0.0.0.0` needs no quotes.
fn env_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, Value::Table(_) | Value::Array(_)))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let settings = Settings::from_sources(&[], env(&[])).unwrap();
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert!(settings.simulator.enabled);
        assert_eq!(settings.stream.max_hz, 10.0);
    }

    #[test]
    fn files_then_environment_override_in_order() {
        let files = vec![(
            "production.toml".to_string(),
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n".to_string(),
        )];
        let settings = Settings::from_sources(
            &files,
            env(&[
                ("TICKSTREAM__SERVER__PORT", "9100"),
                ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
                ("TICKSTREAM__STREAM__MAX_HZ", "4"),
                ("TICKSTREAM__LOG__FORMAT", "json"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.port, 9100);
        assert_eq!(settings.server.host, "0.0.0.0");
        assert!(!settings.simulator.enabled);
        assert_eq!(settings.stream.max_hz, 4.0);
        assert_eq!(settings.log.format, LogFormat::Json);
        let http = Settings::from_sources(
            &[],
            env(&[("TICKSTREAM__HTTP__MAX_CONNECTIONS_PER_IP", "7")]),
        )
        .unwrap()
        .http;
        assert_eq!(http.max_connections_per_ip, 7);
        assert_eq!(http.max_connections, 10_000, "the default stays");
    }

    #[test]
    fn secrets_come_only_from_the_environment_and_stay_text() {
        let settings = Settings::from_sources(
            &[],
            env(&[
                ("TICKSTREAM__INGEST__PUBLISHER_KEYS", " alpha, 12345 ,,"),
                ("TICKSTREAM__ADMIN__API_KEY", "007"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.ingest.keys(),
            vec![Secret::new("alpha"), Secret::new("12345")]
        );
        assert_eq!(settings.admin.api_key.expose(), "007");
        assert!(
            !format!("{settings:?}").contains("alpha"),
            "secrets are not printed"
        );
        let file = vec![(
            "prod.toml".to_string(),
            "[admin]\napi_key = \"x\"\n".to_string(),
        )];
        let err = Settings::from_sources(&file, env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("TICKSTREAM__ADMIN__API_KEY"),
            "{err}"
        );
    }

    #[test]
    fn session_and_replay_values_are_validated() {
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SESSION__TIME_ZONE", "Mars/Base")]))
                .unwrap_err();
        assert!(err.to_string().contains("session.time_zone"), "{err}");
        let err = Settings::from_sources(&[], env(&[("TICKSTREAM__SESSION__ROLLOVER_TIME", "9h")]))
            .unwrap_err();
        assert!(err.to_string().contains("session.rollover_time"), "{err}");
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__REPLAY__FILE", "x.csv")])).unwrap_err();
        assert!(err.to_string().contains("replay.file"), "{err}");
    }

    #[test]
    fn feed_settings_follow_the_operator_contract() {
        let settings = Settings::from_sources(
            &[],
            env(&[
                ("TICKSTREAM__FEED__KIND", "finnhub"),
                ("TICKSTREAM__FEED__URL", "ws://127.0.0.1:9"),
                ("TICKSTREAM__FEED__API_KEY", "12345"),
                ("TICKSTREAM__FEED__SYMBOLS", "aapl, MSFT,AAPL"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.feed.kind, FeedKind::Finnhub);
        // A numeric-looking key stays text: secrets are never read as TOML scalars.
        assert_eq!(settings.feed.api_key.expose(), "12345");
        let symbols: Vec<String> = settings
            .feed
            .symbols()
            .unwrap()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(symbols, ["AAPL", "MSFT"]);
        assert!(!format!("{settings:?}").contains("12345"));

        let err = |pairs: &[(&str, &str)]| {
            Settings::from_sources(&[], env(pairs))
                .unwrap_err()
                .to_string()
        };
        let alpaca = [
            ("TICKSTREAM__FEED__KIND", "alpaca"),
            ("TICKSTREAM__FEED__SYMBOLS", "AAPL"),
            ("TICKSTREAM__FEED__API_KEY", "k"),
        ];
        assert!(err(&alpaca).contains("TICKSTREAM__FEED__API_SECRET"));
        assert!(err(&alpaca[..2]).contains("TICKSTREAM__FEED__API_KEY"));
        assert!(err(&[("TICKSTREAM__FEED__KIND", "bloomberg")]).contains("feed.kind"));
        assert!(err(&[
            ("TICKSTREAM__FEED__KIND", "polygon"),
            ("TICKSTREAM__FEED__API_KEY", "k")
        ])
        .contains("feed.symbols"));
        let mut bad_url = alpaca.to_vec();
        bad_url.push(("TICKSTREAM__FEED__API_SECRET", "s"));
        bad_url.push(("TICKSTREAM__FEED__URL", "http://x"));
        assert!(err(&bad_url).contains("feed.url"));
        let file = vec![(
            "prod.toml".to_string(),
            "[feed]\napi_secret = \"x\"\n".to_string(),
        )];
        let e = Settings::from_sources(&file, env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("TICKSTREAM__FEED__API_SECRET"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SERVER__PORT", "http")])).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__STREAM__MAX_HZ", "0")])).unwrap_err();
        assert!(err.to_string().contains("stream.max_hz"), "{err}");
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SERVER__PROT", "1")])).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = Settings::from_sources(&[], env(&[("TICKSTREAM__HTTP__WRITE_TIMEOUT_MS", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("http.write_timeout_ms"), "{err}");
        let err = Settings::from_sources(&[], env(&[("TICKSTREAM__HTTP__MAX_CONNECTIONS", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("http.max_connections"), "{err}");
        let bad_file = vec![("x.toml".to_string(), "[stream]\nmax_hz = [".to_string())];
        let err = Settings::from_sources(&bad_file, env(&[])).unwrap_err();
        assert!(err.to_string().contains("x.toml"), "{err}");
    }
}
