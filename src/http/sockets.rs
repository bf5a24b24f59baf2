//! The one door to every WebSocket: `/ws` (viewers) and `/ws/ingest` (publishers).
//!
//! Each route has one gate, run the same way for a handshake and for a plain `GET`
//! (which then gets 400), so a client learns about a bad token or parameter whichever
//! way it asks. With an upgrade service set, actix-http sends every request that asks
//! for an upgrade to [`upgrade_service`] with its connection instead of to the
//! application: the gate runs, `crate::transport` answers the handshake, and the admitted
//! handler gets a driver for the connection, on this worker.
//!
//! Everything the socket routes touch is in one [`SocketRoutes`], built by the wiring.

use actix_codec::Framed;
use actix_http::{h1, Request, RequestHead};
use actix_service::{fn_service, ServiceFactory};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ingest::{Ingestor, PublisherId};
use crate::security::{Admission, Security};
use crate::stream::{CompressionMode, StreamContext, ViewerRequest};
use crate::transport::{self, Driver, DriverSettings, Io, SseDriver};
use crate::wire::ApiError;

/// What the socket routes (`/ws`, `/ws/ingest`, `/sse`) need: the viewers' stream
/// context, the publishers' ingestor, each kind of socket's bounds, and the tracker
/// shutdown waits on.
pub struct SocketRoutes {
    pub viewers: StreamContext,
    pub ingestor: Arc<Ingestor>,
    pub security: Arc<Security>,
    /// The bounds of viewers' and publishers' sockets.
    pub viewer_socket: Arc<DriverSettings>,
    pub publisher_socket: Arc<DriverSettings>,
    pub shutdown: CancellationToken,
    /// Every upgraded socket's and SSE response's task: shutdown waits (bounded) for
    /// them to send their close before the workers stop.
    pub open_streams: TaskTracker,
}

/// The service actix-http calls with each upgrade request and its connection.
pub fn upgrade_service<T>(
    state: Arc<SocketRoutes>,
) -> impl ServiceFactory<
    (Request, Framed<T, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_http::Error,
    InitError = (),
>
where
    T: Io + 'static,
{
    fn_service(move |(req, framed): (Request, Framed<T, h1::Codec>)| {
        let state = state.clone();
        async move {
            serve(state, req, framed).await;
            Ok::<(), actix_http::Error>(())
        }
    })
}

/// Routes one upgrade request. Once upgraded, the connection runs as a task of its own
/// (tracked, so shutdown waits for its close): this future lives inside actix-http's
/// per-connection dispatcher, whose allocation is sized for its largest state, so
/// running the viewer here kept the dispatcher's ~6.5 KB alive beside the viewer's
/// state machine for the connection's whole life (idle RSS per connection 19.0 KiB
/// with it, docs/BENCHMARKS.md).
async fn serve<T: Io + 'static>(
    state: Arc<SocketRoutes>,
    req: Request,
    framed: Framed<T, h1::Codec>,
) {
    match req.head().uri.path() {
        "/ws" => match admit_viewer(req.head(), &state) {
            Ok(mut viewer) => {
                // `?compression=deflate` asks for the app-level stream: it wins, and a
                // permessage-deflate offer is then declined (never compressed twice).
                let kind = Kind::Viewer {
                    app_level_deflate: viewer.compression == CompressionMode::Deflate,
                };
                let Some(driver) = upgrade(req, framed, &state, kind).await else {
                    return;
                };
                // A full server upgrades, then closes with 1013: browsers cannot read
                // an HTTP status from a failed handshake, but can act on a close code.
                match viewer.admission.slot.take() {
                    Some(slot) => spawn_connection(
                        &state,
                        crate::stream::run_viewer(driver, viewer, slot, &state.viewers),
                    ),
                    None => driver.refuse_full().await,
                }
            }
            Err(error) => transport::refuse(framed, &error).await,
        },
        "/ws/ingest" => match admit_publisher(req.head(), &state) {
            Ok((admission, publisher)) => {
                if let Some(driver) = upgrade(req, framed, &state, Kind::Publisher).await {
                    let ingestor = state.ingestor.clone();
                    spawn_connection(&state, async move {
                        crate::ingest::run_publisher(driver, admission, publisher, &ingestor).await
                    });
                }
            }
            Err(error) => transport::refuse(framed, &error).await,
        },
        path => {
            let message = format!("no WebSocket at {path}; use /ws or /ws/ingest");
            let error = ApiError::new(StatusCode::NOT_FOUND, "not_found", message);
            transport::refuse(framed, &error).await
        }
    }
}

/// Runs a connection's handler as a task of its own on this worker, tracked by the
/// application so that shutdown waits for it to send its close.
fn spawn_connection(
    state: &SocketRoutes,
    handler: impl std::future::Future<Output = ()> + 'static,
) {
    actix_web::rt::spawn(state.open_streams.track_future(handler));
}

enum Kind {
    Viewer { app_level_deflate: bool },
    Publisher,
}

/// Answers the handshake and hands the connection to a driver with that kind of
/// socket's bounds.
async fn upgrade<T: Io + 'static>(
    req: Request,
    framed: Framed<T, h1::Codec>,
    state: &SocketRoutes,
    kind: Kind,
) -> Option<Driver> {
    let (settings, offer_deflate) = match kind {
        Kind::Viewer { app_level_deflate } => (state.viewer_socket.clone(), !app_level_deflate),
        Kind::Publisher => (state.publisher_socket.clone(), true),
    };
    let accepted = transport::accept(req, framed, offer_deflate).await?;
    Some(Driver::new(
        Box::new(accepted.io),
        &accepted.leftover,
        settings,
        &state.shutdown,
        accepted.deflate,
    ))
}

/// The gate for `/ws`, before any upgrade: query parameters, origin, rates, caps and
/// token. A refusal is the HTTP error the handshake gets instead of 101.
pub fn admit_viewer(head: &RequestHead, state: &SocketRoutes) -> Result<ViewerRequest, ApiError> {
    let query = super::query_map(head)?;
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
    let max_hz = match query.get("max_hz") {
        None => None,
        Some(raw) => Some(
            raw.parse::<f64>()
                .ok()
                .filter(|hz| hz.is_finite() && *hz > 0.0)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("max_hz must be a positive number, not {raw:?}"))
                })?,
        ),
    };
    let security = &state.security;
    let admission = security.admit_socket(head)?;
    let claims = security.authenticate_viewer(head, query.get("token").map(String::as_str))?;
    Ok(ViewerRequest {
        compression,
        initial,
        admission,
        claims,
        max_hz,
    })
}

/// `GET /sse`: the viewer stream as Server-Sent Events, for clients that cannot use
/// WebSockets. The same gate as `/ws` (origin, rates, caps, token); a full server
/// answers 503 here, since an HTTP response can say so.
pub async fn sse_route(
    req: HttpRequest,
    state: web::Data<SocketRoutes>,
) -> Result<HttpResponse, ApiError> {
    let mut viewer = admit_viewer(req.head(), &state)?;
    if viewer.compression == CompressionMode::Deflate {
        return Err(ApiError::bad_request(
            "compression=deflate is for /ws; /sse is gzip-encoded when you send Accept-Encoding: gzip",
        ));
    }
    let Some(slot) = viewer.admission.slot.take() else {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_full",
            "server full; try again later",
        );
        error.retry_after = Some(5);
        return Err(error);
    };
    let gzip = accepts_gzip(req.head());
    let (driver, body) = SseDriver::new(state.viewer_socket.clone(), &state.shutdown, gzip);
    spawn_connection(
        &state,
        crate::stream::run_viewer(driver, viewer, slot, &state.viewers),
    );
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx buffers proxied responses unless told not to.
        .insert_header(("x-accel-buffering", "no"));
    if gzip {
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .insert_header((header::VARY, "Accept-Encoding"));
    }
    // The gate let a cross-origin page in only if its origin is allowed: say so to the
    // browser, or its EventSource would not see the response.
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .append_header((header::VARY, "Origin"));
    }
    Ok(response.streaming(body))
}

/// Whether `Accept-Encoding` accepts gzip (`gzip`, `x-gzip` or `*`, with q above 0).
fn accepts_gzip(head: &RequestHead) -> bool {
    head.headers
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let named = ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c));
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            named && !refused
        })
}

/// The gate for `/ws/ingest`, before any upgrade: origin, rates and caps, then the key
/// from `Authorization: Bearer <key>` (or `?key=` for clients that cannot set
/// headers). A bad key gets 401 and no socket.
pub fn admit_publisher(
    head: &RequestHead,
    state: &SocketRoutes,
) -> Result<(Admission, PublisherId), ApiError> {
    let query = super::query_map(head)?;
    let admission = state.security.admit_socket(head)?;
    let publisher = match query.get("key") {
        Some(key) if crate::security::bearer(&head.headers).is_none() => {
            state.ingestor.authenticate(key).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "invalid publisher key",
                )
            })?
        }
        _ => super::ingest::authenticate(&head.headers, &state.ingestor)?,
    };
    Ok((admission, publisher))
}

/// `GET /ws` without an upgrade: the gate, then 400 (or 426 for a version we do not
/// speak).
pub async fn ws_route(
    req: HttpRequest,
    state: web::Data<SocketRoutes>,
) -> Result<HttpResponse, ApiError> {
    admit_viewer(req.head(), &state)?;
    Err(not_an_upgrade(req.head()))
}

/// `GET /ws/ingest` without an upgrade: the gate, then 400.
pub async fn ws_ingest_route(
    req: HttpRequest,
    state: web::Data<SocketRoutes>,
) -> Result<HttpResponse, ApiError> {
    admit_publisher(req.head(), &state)?;
    Err(not_an_upgrade(req.head()))
}

/// The error for a plain request to a socket route, after its gate has passed.
fn not_an_upgrade(head: &RequestHead) -> ApiError {
    transport::handshake_error(head)
        .unwrap_or_else(|| ApiError::bad_request("expected a WebSocket upgrade"))
}
