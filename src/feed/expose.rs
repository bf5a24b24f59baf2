//! The feed's lines in `/metrics` and its object in `/readyz`.
//!
//! Added by a middleware around the existing handlers (src/http is another team's
//! area while this lands): it appends to `/metrics` and adds a `feed` object to
//! `/readyz`'s JSON, leaving every status code as the handlers set it. Feed trouble
//! does not make the instance unready: it still serves the last quotes, and an
//! orchestrator restarting it would not fix a refused key.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use super::{FeedMonitor, Unmapped};

/// Middleware for `App::wrap(from_fn(expose))`; finds the monitor in the app data
/// (`Option<Arc<FeedMonitor>>`) and passes everything through when there is none.
pub async fn expose(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let monitor = req
        .app_data::<Option<Arc<FeedMonitor>>>()
        .and_then(Clone::clone);
    let target = match (req.method(), req.path()) {
        (&Method::GET, "/metrics") => Some(Target::Metrics),
        (&Method::GET, "/readyz") => Some(Target::Readyz),
        _ => None,
    };
    let response = next.call(req).await?.map_into_boxed_body();
    let (Some(monitor), Some(target)) = (monitor, target) else {
        return Ok(response);
    };
    let (req, response) = response.into_parts();
    let (response, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body).await else {
        return Ok(ServiceResponse::new(
            req,
            response.set_body(BoxBody::new(())),
        ));
    };
    let body = match target {
        Target::Metrics => {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            write_metrics(&monitor, &mut text);
            text.into_bytes()
        }
        Target::Readyz => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(mut object)) => {
                object.insert("feed".to_owned(), readiness(&monitor));
                serde_json::to_vec(&object).unwrap_or_else(|_| bytes.to_vec())
            }
            _ => bytes.to_vec(),
        },
    };
    let mut response = response.set_body(BoxBody::new(body));
    // The body changed length; the server computes it again.
    response
        .headers_mut()
        .remove(actix_web::http::header::CONTENT_LENGTH);
    Ok(ServiceResponse::new(req, response))
}

enum Target {
    Metrics,
    Readyz,
}

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
