//! `GET /ws`: the viewer stream (contract §2).

mod protocol;
mod session;
mod subscriptions;

pub use protocol::{parse_request, Request, RequestError};
pub use subscriptions::{FlushStats, Subscriptions};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{LimitSettings, StreamSettings};
use crate::metrics::Metrics;
use crate::security::Security;
use crate::socket::Driver;
use crate::state::AppState;
use crate::store::SnapshotStore;
use session::Session;

/// What the client asked for with `compression=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMode {
    None,
    Deflate,
}

impl CompressionMode {
    pub fn parse(raw: &str) -> Option<CompressionMode> {
        match raw {
            "none" => Some(CompressionMode::None),
            "deflate" => Some(CompressionMode::Deflate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CompressionMode::None => "none",
            CompressionMode::Deflate => "deflate",
        }
    }
}

/// What every session shares: cheap clones of the application's handles.
#[derive(Clone)]
pub struct StreamContext {
    pub store: SnapshotStore,
    pub settings: Arc<StreamSettings>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub security: Arc<Security>,
    pub limits: Arc<LimitSettings>,
}

/// A viewer's upgrade request that passed the gate (`crate::http`): what it asked for
/// and who it is.
pub struct ViewerRequest {
    pub compression: CompressionMode,
    /// The `symbols=` query parameter, split.
    pub initial: Option<Vec<String>>,
    pub admission: crate::security::Admission,
    pub claims: Option<crate::security::Claims>,
}

/// Runs an admitted viewer's session on its driver until it ends. A server that is
/// full closes at once with 1013, which browsers (unable to read an HTTP status from a
/// failed handshake) can act on.
pub async fn run_viewer(driver: Driver, request: ViewerRequest, state: &AppState) {
    let ctx = state.stream_context();
    let Some(slot) = request.admission.slot else {
        return driver.refuse_full().await;
    };
    let id = format!("{:016x}", rand::random::<u64>());
    let peer = ViewerPeer {
        ip: request.admission.ip,
        claims: request.claims,
        slot,
    };
    let session = Session::new(id, driver, ctx, request.compression, peer);
    session.run(request.initial).await;
}

/// Who is on the other end of a session, as the gate admitted them.
pub struct ViewerPeer {
    pub ip: std::net::IpAddr,
    pub claims: Option<crate::security::Claims>,
    /// Held for the session's lifetime; dropping it frees the connection slot.
    pub slot: crate::limits::ConnectionSlot,
}
