//! Routes and gates: REST, ingest, admin, health, metrics, the socket routes and the
//! static dashboard. Each handler takes exactly the handles it uses as application
//! data (`web::Data<T>`, one per dependency, or a small context per feature); the
//! wiring (`crate::startup`) registers them.

mod admin;
mod auth;
mod body;
mod frontend;
mod health;
mod history;
pub use history::HistorySource;
mod ingest;
mod metrics;
mod quotes;
mod rate_limit;
mod sockets;

pub use admin::AdminRoutes;
pub use body::{close_on_unread_body, BodyDeadline};
pub use health::{HealthSources, Readiness};
pub use metrics::MetricSources;
pub use sockets::{upgrade_service, SocketRoutes};

pub use crate::wire::ApiError;

use std::collections::HashMap;

use actix_web::dev::RequestHead;
use actix_web::{guard, web};

use sockets::{sse_route, ws_ingest_route, ws_route};

/// Every route of the application.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::bad_request(format!("bad query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::bad_request(format!("bad path: {err}")).into()),
    )
    .route("/ws", web::get().to(ws_route))
    .route("/ws/ingest", web::get().to(ws_ingest_route))
    .route("/sse", web::get().to(sse_route))
    // Authenticated routes: keys, not addresses, decide who may call them, and a
    // publisher must not lose batches to an address limit.
    .route("/api/v1/ticks", web::post().to(ingest::post_ticks))
    .route(
        "/api/v1/admin/symbols/{symbol}",
        web::put().to(admin::put_symbol),
    )
    .route(
        "/api/v1/admin/symbols/{symbol}",
        web::delete().to(admin::delete_symbol),
    )
    .route(
        "/api/v1/admin/sessions",
        get_or_head().to(admin::list_viewers),
    )
    .route(
        "/api/v1/admin/sessions/{id}",
        web::delete().to(admin::kick_viewer),
    )
    .service(
        // The anonymous read routes are rate limited per client address; probes,
        // metrics and sockets are not (sockets have their own limits).
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(rate_limit::per_ip))
            .route("/symbols", get_or_head().to(quotes::symbols))
            .route("/quotes", get_or_head().to(quotes::quotes))
            .route("/quotes/{symbol}", get_or_head().to(quotes::quote))
            .route("/history/{symbol}", get_or_head().to(history::history))
            .default_service(web::to(frontend::not_found)),
    )
    .route("/healthz", get_or_head().to(health::healthz))
    .route("/readyz", get_or_head().to(health::readyz))
    .route("/metrics", get_or_head().to(metrics::metrics))
    .default_service(web::to(frontend::serve));
}

/// A route for GET and HEAD alike (RFC 9110 §9.3.2: HEAD wherever GET works; health
/// checkers use it). actix-http sends a HEAD response's head only, with the
/// Content-Length the GET body would have.
fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The query string as name -> value (of a repeated name, the last wins), or 400.
pub fn query_map(head: &RequestHead) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_str(head.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

/// Appends `value` as a JSON string literal.
pub(crate) fn write_json_string(value: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("writing a string to a Vec cannot fail");
}
