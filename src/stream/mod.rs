//! `GET /ws`: the viewer stream (contract §2).

mod codec;
mod fast_deflate;
mod inbound;
mod protocol;
mod session;
mod subscriptions;

pub use codec::{CompressionMode, DeflateStream};
pub use fast_deflate::FastDeflate;
pub use inbound::{Fault, Inbound, InboundFrames};
pub use protocol::{parse_request, peek_req_id, ErrorCode, ReqId, Request, RequestError};
pub use subscriptions::{FlushStats, Subscriptions};

use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio_util::sync::CancellationToken;

use crate::config::{LimitSettings, StreamSettings};
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::security::Security;
use crate::socket::WebSocket;
use crate::state::AppState;
use crate::store::SnapshotStore;
use session::Session;

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

/// A viewer's upgrade request that passed the gate: what it asked for and who it is.
pub struct ViewerRequest {
    compression: CompressionMode,
    /// The `symbols=` query parameter, split.
    initial: Option<Vec<String>>,
    admission: crate::security::Admission,
    claims: Option<crate::security::Claims>,
}

/// The gate for `/ws`, before any upgrade: query parameters, origin, rates, caps and
/// token. A refusal is the HTTP error the handshake gets instead of 101.
pub fn admit_viewer(head: &RequestHead, state: &AppState) -> Result<ViewerRequest, ApiError> {
    let query = crate::http::query_map(head)?;
    let compression = match query.get("compression") {
        None => CompressionMode::None,
        Some(raw) => CompressionMode::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "compression must be `deflate` or `none`, not {raw:?}"
            ))
        })?,
    };
    let initial: Option<Vec<String>> = query.get("symbols").map(|raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let security = &state.security;
    let admission = security.admit_socket(head)?;
    let claims = security.authenticate_viewer(head, query.get("token").map(String::as_str))?;
    Ok(ViewerRequest {
        compression,
        initial,
        admission,
        claims,
    })
}

/// Runs an admitted viewer's session on its upgraded socket until it ends. A server
/// that is full closes at once with 1013, which browsers (unable to read an HTTP status
/// from a failed handshake) can act on.
pub async fn run_viewer(socket: WebSocket, request: ViewerRequest, state: &AppState) {
    let ctx = state.stream_context();
    let Some(slot) = request.admission.slot else {
        return socket
            .refuse_full(ctx.settings.slow_consumer_timeout())
            .await;
    };
    let id = format!("{:016x}", rand::random::<u64>());
    let peer = ViewerPeer {
        ip: request.admission.ip,
        claims: request.claims,
        slot,
    };
    let session = Session::new(id, socket, ctx, request.compression, peer);
    session.run(request.initial).await;
}

/// `GET /ws` without an upgrade: the same gate as a handshake, then 400, so a client
/// learns about a bad token or parameter whichever way it asks. (Upgrade requests never
/// reach the application: see `crate::socket`.)
pub async fn ws_route(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admit_viewer(req.head(), &state)?;
    Err(crate::socket::not_an_upgrade(req.head()))
}

/// Who is on the other end of a session, as the gate admitted them.
pub struct ViewerPeer {
    pub ip: std::net::IpAddr,
    pub claims: Option<crate::security::Claims>,
    /// Held for the session's lifetime; dropping it frees the connection slot.
    pub slot: crate::limits::ConnectionSlot,
}
