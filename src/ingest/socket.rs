//! `GET /ws/ingest`: a publisher's WebSocket. Each `publish` message is one batch,
//! answered by an `ack` with the same report as the HTTP route.

use std::sync::Arc;

use actix_http::ws::{CloseCode, CloseReason};
use actix_web::dev::RequestHead;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use super::{IngestReport, Ingestor, PublisherId};
use crate::config::StreamSettings;
use crate::http::{authenticate_publisher, ApiError};
use crate::socket::WebSocket;
use crate::state::AppState;
use crate::stream::{peek_req_id, ErrorCode, Fault, Inbound, InboundFrames, ReqId};

/// `{"op":"publish","ticks":[…],"req_id":n}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest<'a> {
    op: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    ticks: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    req_id: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a ReqId>,
    #[serde(flatten)]
    report: &'a IngestReport,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a ReqId>,
    code: ErrorCode,
    message: &'a str,
}

/// A publisher's upgrade request that passed the gate.
pub struct PublisherRequest {
    admission: crate::security::Admission,
    publisher: PublisherId,
}

/// The gate for `/ws/ingest`, before any upgrade: origin, rates and caps, then the key
/// from `Authorization: Bearer <key>` (or `?key=` for clients that cannot set
/// headers). A bad key gets 401 and no socket.
pub fn admit_publisher(head: &RequestHead, state: &AppState) -> Result<PublisherRequest, ApiError> {
    let query = crate::http::query_map(head)?;
    let admission = state.security.admit_socket(head)?;
    let publisher = match query.get("key") {
        Some(key) if crate::http::bearer(&head.headers).is_none() => {
            state.ingestor.authenticate(key).ok_or_else(|| {
                ApiError::new(
                    actix_web::http::StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "invalid publisher key",
                )
            })?
        }
        _ => authenticate_publisher(&head.headers, state)?,
    };
    Ok(PublisherRequest {
        admission,
        publisher,
    })
}

/// `GET /ws/ingest` without an upgrade: the same gate, then 400.
pub async fn ws_ingest_route(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admit_publisher(req.head(), &state)?;
    Err(crate::socket::not_an_upgrade(req.head()))
}

/// Runs an admitted publisher's socket until it ends.
pub async fn run_publisher(socket: WebSocket, request: PublisherRequest, state: &AppState) {
    let Some(slot) = request.admission.slot else {
        return socket
            .refuse_full(state.stream_settings.slow_consumer_timeout())
            .await;
    };
    let span = tracing::info_span!("ingest_socket", publisher = ?request.publisher);
    run(
        socket,
        request.publisher,
        state.ingestor.clone(),
        state.stream_settings.clone(),
        state.shutdown.clone(),
        slot,
    )
    .instrument(span)
    .await
}

async fn run(
    mut ws: WebSocket,
    publisher: PublisherId,
    ingestor: Arc<Ingestor>,
    timing: Arc<StreamSettings>,
    shutdown: CancellationToken,
    // Held until the socket ends: frees the connection slot.
    _slot: crate::limits::ConnectionSlot,
) {
    let mut frames = InboundFrames::new(ingestor.max_body_bytes);
    let mut last_inbound = Instant::now();
    let mut ping = tokio::time::interval_at(
        Instant::now() + timing.ping_interval(),
        timing.ping_interval(),
    );
    let close: Option<CloseReason> = loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Some((CloseCode::Away, "server shutting down").into()),
            frame = ws.recv() => frame,
            _ = sleep_until(last_inbound + timing.idle_timeout()) => {
                break Some(CloseReason { code: CloseCode::Normal, description: Some("idle timeout: no frame received".into()) })
            }
            _ = ping.tick() => {
                if ws.ping(b"").await.is_err() { break None; }
                continue;
            }
        };
        last_inbound = Instant::now();
        let reply = match frames.accept(frame) {
            Ok(Inbound::Text(text)) => handle(&text, publisher, &ingestor).await,
            Ok(Inbound::Ping(payload)) => {
                if ws.pong(&payload).await.is_err() {
                    break None;
                }
                continue;
            }
            Ok(Inbound::Nothing) => continue,
            Ok(Inbound::Closed(reason)) => break reason.or(Some(CloseCode::Normal.into())),
            Err(Fault::Close(code, reason)) => {
                break Some(CloseReason {
                    code,
                    description: Some(reason),
                })
            }
            Err(Fault::Gone) => break None,
        };
        if ws.text(reply.as_bytes()).await.is_err() {
            break None;
        }
    };
    debug!(?close, "ingest socket ended");
    ws.close(close, timing.slow_consumer_timeout()).await;
}

/// One `publish` message to its reply text (`ack` or `error`).
async fn handle(text: &str, publisher: PublisherId, ingestor: &Ingestor) -> String {
    let error = |req_id: Option<&ReqId>, code: ErrorCode, message: &str| {
        serde_json::to_string(&ErrorReply {
            kind: "error",
            req_id,
            code,
            message,
        })
        .expect("replies always serialize")
    };
    let request: PublishRequest = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(e) => {
            // Echo req_id when the message is JSON enough to have one.
            let req_id = peek_req_id(text);
            let message = format!("expected {{\"op\":\"publish\",\"ticks\":[…]}}: {e}");
            return error(req_id.as_ref(), ErrorCode::BadRequest, &message);
        }
    };
    let req_id = match request.req_id.map(ReqId::from_raw) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return error(
                None,
                ErrorCode::BadRequest,
                "req_id must be a number or a string",
            )
        }
    };
    let req_id = req_id.as_ref();
    match request.op.as_deref() {
        Some("publish") => {}
        Some(other) => {
            return error(
                req_id,
                ErrorCode::UnknownOp,
                &format!("unknown op {other:?}; expected publish"),
            )
        }
        None => return error(req_id, ErrorCode::BadRequest, "missing field `op`"),
    }
    let Some(ticks) = request.ticks else {
        return error(req_id, ErrorCode::BadRequest, "missing field `ticks`");
    };
    if ticks.len() > ingestor.max_batch_ticks {
        let message = format!(
            "{} ticks in one batch; ingest.max_batch_ticks is {}",
            ticks.len(),
            ingestor.max_batch_ticks
        );
        return error(req_id, ErrorCode::BadRequest, &message);
    }
    let report = ingestor
        .ingest(publisher, ticks.iter().map(|t| t.get()))
        .await;
    serde_json::to_string(&Ack {
        kind: "ack",
        req_id,
        report: &report,
    })
    .expect("acks always serialize")
}
