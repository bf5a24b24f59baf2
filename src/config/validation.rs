//! `Settings::validate`: the checks serde cannot make (ranges, values that depend on
//! each other), each naming the key it rejects.

use super::{AuthMode, BrokerKind, ConfigError, FeedKind, Settings};

/// Rejects `key` with the reason `why` unless `ok`.
fn check(ok: bool, key: &str, why: impl std::fmt::Display) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid_key(key, why))
    }
}

/// Ten years of daily bars: far more than a chart shows, and few enough that one
/// vendor page (Alpaca 10,000 bars, Polygon 50,000) holds them.
const MAX_BACKFILL_DAYS: u32 = 3660;

/// Timers and intervals below 10 ms would spin rather than wait.
fn at_least_10_ms(key: &str, value: u64) -> Result<(), ConfigError> {
    check(
        value >= 10,
        key,
        format!("must be at least 10 ms, got {value}"),
    )
}

impl Settings {
    /// Checks every value; called by the loaders, and again after command-line changes.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
            at_least_10_ms(key, value)?;
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
            (1..=60_000).contains(&self.store.flush_interval_ms),
            "store.flush_interval_ms",
            format!(
                "must be in [1, 60000], got {}",
                self.store.flush_interval_ms
            ),
        )?;
        // The file keeps at least what the rings in memory hold (store/history.rs), so
        // a restart never shortens a history page; the upper bounds keep the numbers
        // far from overflowing when turned into milliseconds.
        for (value, key, least, most) in [
            (
                self.store.history_1s_seconds,
                "store.history_1s_seconds",
                300,
                86_400 * 366,
            ),
            (
                self.store.history_1m_days,
                "store.history_1m_days",
                1,
                3_660,
            ),
            (
                self.store.history_1d_days,
                "store.history_1d_days",
                366,
                36_600,
            ),
        ] {
            check(
                (least..=most).contains(&value),
                key,
                format!("must be in [{least}, {most}], got {value}"),
            )?;
        }
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
        if let Err(e) = self.trading_day.rollover_time() {
            return Err(ConfigError::invalid_key("trading_day.rollover_time", e));
        }
        if let Err(e) = self.trading_day.time_zone() {
            return Err(ConfigError::invalid_key("trading_day.time_zone", e));
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
            at_least_10_ms(key, value)?;
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
            return Err(ConfigError::invalid_key("security.trusted_proxies", e));
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

    fn validate_feed(&self) -> Result<(), ConfigError> {
        let f = &self.feed;
        if f.kind == FeedKind::None {
            return Ok(());
        }
        let kind = f.kind.as_str();
        let symbols = match f.symbols() {
            Ok(symbols) => symbols,
            Err(e) => return Err(ConfigError::invalid_key("feed.symbols", e)),
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
            f.rest_url.is_empty()
                || f.rest_url.starts_with("http://")
                || f.rest_url.starts_with("https://"),
            "feed.rest_url",
            format!(
                "must be an http:// or https:// address, got {:?}",
                f.rest_url
            ),
        )?;
        check(
            f.backfill_days <= MAX_BACKFILL_DAYS,
            "feed.backfill_days",
            format!("must be at most {MAX_BACKFILL_DAYS}"),
        )?;
        check(
            f.backfill_requests_per_minute <= 60_000,
            "feed.backfill_requests_per_minute",
            "must be at most 60000 (0 = the vendor's free-plan limit)",
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
            ("feed.backfill_timeout_ms", f.backfill_timeout_ms),
        ] {
            at_least_10_ms(key, value)?;
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

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn trading_day_and_replay_values_are_validated() {
        let err = Settings::from_sources(
            &[],
            env(&[("TICKSTREAM__TRADING_DAY__TIME_ZONE", "Mars/Base")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("trading_day.time_zone"), "{err}");
        let err = Settings::from_sources(
            &[],
            env(&[("TICKSTREAM__TRADING_DAY__ROLLOVER_TIME", "9h")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("trading_day.rollover_time"),
            "{err}"
        );
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
        let mut bad_rest_url = alpaca.to_vec();
        bad_rest_url.push(("TICKSTREAM__FEED__API_SECRET", "s"));
        bad_rest_url.push(("TICKSTREAM__FEED__REST_URL", "wss://x"));
        assert!(err(&bad_rest_url).contains("feed.rest_url"));
        let mut too_many_days = alpaca.to_vec();
        too_many_days.push(("TICKSTREAM__FEED__API_SECRET", "s"));
        too_many_days.push(("TICKSTREAM__FEED__BACKFILL_DAYS", "100000"));
        assert!(err(&too_many_days).contains("feed.backfill_days"));
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
    fn invalid_values_name_the_key() {
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__STREAM__MAX_HZ", "0")])).unwrap_err();
        assert!(err.to_string().contains("stream.max_hz"), "{err}");
        let err = Settings::from_sources(&[], env(&[("TICKSTREAM__HTTP__WRITE_TIMEOUT_MS", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("http.write_timeout_ms"), "{err}");
        let err = Settings::from_sources(&[], env(&[("TICKSTREAM__HTTP__MAX_CONNECTIONS", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("http.max_connections"), "{err}");
    }
}
