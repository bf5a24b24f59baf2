//! The viewer stream (contract §2), over either transport (`/ws` or `/sse`): one task
//! per viewer (`viewer`: the loop and the flush) answering its client's requests
//! (`requests`), with its subscriptions and what its client was last sent
//! (`subscriptions`, `sent`, `fragments`).

mod fragments;
mod protocol;
mod requests;
mod sent;
mod subscriptions;
mod viewer;

pub use protocol::{parse_request, Request, RequestError};
pub use subscriptions::{FlushStats, Subscriptions};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{LimitSettings, StreamSettings};
use crate::limits::ConnectionSlot;
use crate::metrics::Metrics;
use crate::security::Security;
use crate::store::SnapshotStore;
use crate::transport::Transport;
use viewer::Viewer;

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

/// What every viewer shares: cheap clones of the handles the stream needs, built once
/// by the wiring.
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
    /// The `max_hz=` query parameter (clamped to the server's bounds).
    pub max_hz: Option<f64>,
}

/// An admitted viewer on its transport (a WebSocket or an SSE response): the future
/// that runs it until it ends. `slot` is the connection slot the gate took for it.
///
/// Not an `async fn`: the viewer is built here and its own future returned, so the
/// task holds the viewer once, not again in each caller's state.
pub fn run_viewer<T: Transport>(
    driver: T,
    request: ViewerRequest,
    slot: ConnectionSlot,
    ctx: &StreamContext,
) -> impl std::future::Future<Output = ()> {
    let ctx = ctx.clone();
    let id = format!("{:016x}", rand::random::<u64>());
    let peer = ViewerPeer {
        ip: request.admission.ip,
        claims: request.claims,
        slot,
    };
    let viewer = Viewer::new(id, driver, ctx, request.compression, peer, request.max_hz);
    viewer.run(request.initial)
}

/// Who is on the other end of a viewer connection, as the gate admitted them.
pub struct ViewerPeer {
    pub ip: std::net::IpAddr,
    pub claims: Option<crate::security::Claims>,
    /// Held for the viewer's lifetime; dropping it frees the connection slot.
    pub slot: crate::limits::ConnectionSlot,
}
