//! REST routes, health, metrics and the static dashboard.

mod error;
mod frontend;
mod health;
mod metrics;
mod quotes;

pub use error::ApiError;

use actix_web::web;

use crate::stream::ws_route;

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
    .route("/api/v1/symbols", web::get().to(quotes::symbols))
    .route("/api/v1/quotes", web::get().to(quotes::quotes))
    .route("/api/v1/quotes/{symbol}", web::get().to(quotes::quote))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics::metrics))
    .default_service(web::to(frontend::serve));
}

/// Appends `value` as a JSON string literal.
pub(crate) fn write_json_string(value: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("writing a string to a Vec cannot fail");
}
