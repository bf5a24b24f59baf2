//! Liveness and readiness, for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerStatus};
use crate::sources::feed::FeedMonitor;
use crate::store::{Durable, SnapshotStore};

/// Whether the instance is ready for new viewers: start-up finished and shutdown has
/// not begun. The wiring marks it ready once every part is running.
#[derive(Clone)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl Readiness {
    /// Not ready until [`Readiness::set_ready`]; never ready once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Readiness {
        Readiness {
            ready: Arc::new(AtomicBool::new(false)),
            shutdown,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// What `/readyz` reads.
pub struct HealthSources {
    pub readiness: Readiness,
    pub store: SnapshotStore,
    pub broker: Broker,
    /// The built-in feed connector's health, when `feed.kind` is set.
    pub feed: Option<Arc<FeedMonitor>>,
    /// The durable writer, when `store.data_dir` is set.
    pub storage: Option<Durable>,
}

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
///
/// With a data directory (`store.data_dir`), every answer carries `"storage"`: `"ok"`,
/// or `"unavailable"` while commits fail (disk full, I/O error). Publishers then get
/// 503 `storage_unavailable`, but the status code stays as above: viewers are still
/// served their quotes, and the writer retries and recovers by itself.
pub async fn readyz(state: web::Data<HealthSources>) -> HttpResponse {
    let symbols = state.store.symbols().count();
    let (ready, mut body) = if state.readiness.is_ready() {
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
    } else if state.readiness.shutdown.is_cancelled() {
        (false, json!({"status": "shutting_down"}))
    } else {
        (false, json!({"status": "starting"}))
    };
    if let Some(monitor) = &state.feed {
        body["feed"] = crate::sources::feed::readiness(monitor);
    }
    if let Some(storage) = &state.storage {
        body["storage"] = json!(if storage.status().healthy {
            "ok"
        } else {
            "unavailable"
        });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
