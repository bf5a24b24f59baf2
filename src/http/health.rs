//! Liveness and readiness, for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::broker::BrokerStatus;
use crate::state::AppState;

/// Liveness: the process answers HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: start-up is complete and the server is not shutting down, so a load
/// balancer should send it new viewers.
///
/// In a cluster: `syncing` (503) while the store is being rebuilt from Redis, and
/// `degraded` (200) while Redis is unreachable: the instance still serves its current
/// quotes and local ingest, so it stays in the load balancer's rotation, and says so.
///
/// With a built-in feed (`feed.kind`), every answer carries a `feed` object with the
/// connector's status; feed trouble never changes the status code (the instance still
/// serves its last quotes, and a restart would not fix a refused key).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let symbols = state.store.symbols().count();
    let (ready, mut body) = if state.is_ready() {
        match state.broker.status() {
            BrokerStatus::Ready => (true, json!({"status": "ready", "symbols": symbols})),
            BrokerStatus::Degraded => (
                true,
                json!({
                    "status": "degraded",
                    "symbols": symbols,
                    "reason": "Redis unreachable: serving local quotes and ingest, retrying",
                }),
            ),
            BrokerStatus::Syncing => (false, json!({"status": "syncing"})),
        }
    } else if state.shutdown.is_cancelled() {
        (false, json!({"status": "shutting_down"}))
    } else {
        (false, json!({"status": "starting"}))
    };
    if let Some(monitor) = &state.feed {
        body["feed"] = crate::feed::readiness(monitor);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
