//! The feed's lines in `/metrics` and its object in `/readyz`.
//!
//! Feed trouble does not make the instance unready: it still serves the last quotes,
//! and an orchestrator restarting it would not fix a refused key.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{FeedMonitor, Unmapped};

/// `{"kind":"alpaca","status":"connected","last_message_age_s":0.4}`.
pub fn readiness(monitor: &FeedMonitor) -> serde_json::Value {
    serde_json::json!({
        "kind": monitor.kind.as_str(),
        "status": monitor.status().as_str(),
        "last_message_age_s": monitor.last_message_age_s(),
    })
}

/// The feed's series in the Prometheus text format, labelled by feed.
pub fn write_metrics(monitor: &FeedMonitor, out: &mut String) {
    let feed = monitor.kind.as_str();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    for (name, help, value) in [
        (
            "tickstream_feed_messages_received_total",
            "Messages received from the market-data vendor (each element of a batch counts).",
            load(&monitor.messages),
        ),
        (
            "tickstream_feed_ticks_applied_total",
            "Vendor trades and quotes applied as ticks.",
            load(&monitor.ticks_applied),
        ),
        (
            "tickstream_feed_reconnects_total",
            "Reconnections to the vendor after a drop, a timeout or a refusal.",
            load(&monitor.reconnects),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{feed=\"{feed}\"}} {value}"
        );
    }
    let name = "tickstream_feed_unmapped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Vendor messages not applied, by reason.\n# TYPE {name} counter"
    );
    for reason in Unmapped::ALL {
        let _ = writeln!(
            out,
            "{name}{{feed=\"{feed}\",reason=\"{}\"}} {}",
            reason.as_str(),
            monitor.unmapped(reason)
        );
    }
    let name = "tickstream_feed_connected";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while subscribed to the vendor.\n# TYPE {name} gauge\n{name}{{feed=\"{feed}\"}} {}",
        u8::from(monitor.status() == super::FeedStatus::Connected)
    );
    let name = "tickstream_feed_last_message_age_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds since the vendor's last frame (NaN before the first).\n# TYPE {name} gauge\n{name}{{feed=\"{feed}\"}} {}",
        monitor
            .last_message_age_s()
            .map_or_else(|| "NaN".to_owned(), |age| format!("{age:.3}"))
    );
}
