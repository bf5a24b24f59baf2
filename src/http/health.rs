//! Liveness and readiness, for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// Liveness: the process answers HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: start-up is complete and the server is not shutting down, so a load
/// balancer should send it new viewers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_ready() {
        HttpResponse::Ok()
            .json(json!({"status": "ready", "symbols": state.store.symbols().count()}))
    } else if state.shutdown.is_cancelled() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "starting"}))
    }
}
