//! Structured logs on stdout: human text by default, JSON lines for log shippers.
//!
//! Client faults are never logged at ERROR: anyone could fill an operator's error log
//! with malformed requests. Our own code logs them at debug or info; actix-http logs
//! every malformed request and broken connection as an ERROR "stream error: …", so
//! those events are re-emitted at debug (target `tickstream::http`) instead.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Where actix-http reports a connection's parse and I/O errors.
const ACTIX_DISPATCHER: &str = "actix_http::h1::dispatcher";
/// Its message prefix for those errors (its other ERROR lines are internal bugs).
const CLIENT_FAULT_PREFIX: &str = "stream error: ";

/// Installs the global subscriber. `RUST_LOG` overrides `log.level`.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        // Colour codes only for a terminal: `docker logs` and log files get plain text.
        .with_ansi(ansi);
    let output = match settings.format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().flatten_event(true).boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(ClientFaults)
        .with(output.with_filter(filter_fn(|meta| {
            !(meta.target() == ACTIX_DISPATCHER && *meta.level() == Level::ERROR)
        })))
        .try_init();
    // A second init (tests building several apps) keeps the first subscriber.
    let _ = result;
}

/// Re-emits actix-http's per-connection errors at debug.
struct ClientFaults;

impl<S: Subscriber> Layer<S> for ClientFaults {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != ACTIX_DISPATCHER || *meta.level() != Level::ERROR {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        match message.0.strip_prefix(CLIENT_FAULT_PREFIX) {
            Some(fault) => tracing::debug!(target: "tickstream::http", fault, "client fault"),
            None => {
                tracing::error!(target: "tickstream::http", error = %message.0, "actix-http error")
            }
        }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }
}
