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
pub use protocol::{parse_request, ErrorCode, Request, RequestError};
pub use subscriptions::{FlushStats, Subscriptions};

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use tokio_util::sync::CancellationToken;

use crate::config::{LimitSettings, StreamSettings};
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::security::Security;
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

/// Checks the gate (origin, rates, caps, token), upgrades to a WebSocket, and spawns
/// the connection's session task on this worker.
pub async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
    let admission = security.admit_socket(&req)?;
    let claims = security.authenticate_viewer(&req, query.get("token").map(String::as_str))?;
    let (response, ws, inbound) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")))?;
    let Some(slot) = admission.slot else {
        actix_web::rt::spawn(refuse_full(ws));
        return Ok(response);
    };
    let ctx = state.stream_context();
    let inbound = inbound.max_frame_size(ctx.settings.max_message_bytes);
    let id = format!("{:016x}", rand::random::<u64>());
    let peer = ViewerPeer {
        ip: admission.ip,
        claims,
        slot,
    };
    let session = Session::new(id, ws, ctx, compression, peer);
    actix_web::rt::spawn(session.run(inbound, initial));
    Ok(response)
}

/// Who is on the other end of a session, as the gate admitted them.
pub struct ViewerPeer {
    pub ip: std::net::IpAddr,
    pub claims: Option<crate::security::Claims>,
    /// Held for the session's lifetime; dropping it frees the connection slot.
    pub slot: crate::limits::ConnectionSlot,
}

/// Closes a socket with 1013: the server holds `limits.max_connections` already.
pub async fn refuse_full(ws: actix_ws::Session) {
    let reason = actix_ws::CloseReason {
        code: actix_ws::CloseCode::Again,
        description: Some("server full; try again later".into()),
    };
    let _ = ws.close(Some(reason)).await;
}
