//! REST routes, health, metrics and the static dashboard.

mod admin;
mod auth;
mod error;
mod frontend;
mod health;
mod history;
mod ingest;
mod metrics;
mod quotes;

pub use auth::bearer;
pub use ingest::authenticate as authenticate_publisher;

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
    .route("/ws/ingest", web::get().to(crate::ingest::ws_ingest_route))
    .route("/api/v1/ticks", web::post().to(ingest::post_ticks))
    .route("/api/v1/history/{symbol}", web::get().to(history::history))
    .route(
        "/api/v1/admin/symbols/{symbol}",
        web::put().to(admin::put_symbol),
    )
    .route(
        "/api/v1/admin/symbols/{symbol}",
        web::delete().to(admin::delete_symbol),
    )
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
