//! Upgrade requests, as actix-http hands them over: route by path, run the gate, answer
//! the handshake (or refuse with the usual JSON error and status), then run the
//! socket's task on the connection, on this worker.
//!
//! With an upgrade service set, actix-http sends every request that asks for an
//! upgrade here instead of to the application, so this is the one door to `/ws` and
//! `/ws/ingest`; a plain `GET` of either still reaches the application, which runs the
//! same gate and answers 400.

use actix_codec::Framed;
use actix_http::body::{self, BodySize};
use actix_http::{h1, ws, ConnectionType, Request, RequestHead, Response};
use actix_service::{fn_service, ServiceFactory};
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::{Io, WebSocket};
use crate::http::ApiError;
use crate::state::AppState;

/// The service actix-http calls with each upgrade request and its connection.
pub fn upgrade_service<T>(
    state: AppState,
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

async fn serve<T: Io + 'static>(state: AppState, req: Request, framed: Framed<T, h1::Codec>) {
    match req.head().uri.path() {
        "/ws" => match crate::stream::admit_viewer(req.head(), &state) {
            Ok(viewer) => {
                let limit = state.stream_settings.max_message_bytes;
                if let Some(socket) = accept(req, framed, limit).await {
                    crate::stream::run_viewer(socket, viewer, &state).await;
                }
            }
            Err(error) => refuse(framed, &error).await,
        },
        "/ws/ingest" => match crate::ingest::admit_publisher(req.head(), &state) {
            Ok(publisher) => {
                let limit = state.ingestor.max_body_bytes;
                if let Some(socket) = accept(req, framed, limit).await {
                    crate::ingest::run_publisher(socket, publisher, &state).await;
                }
            }
            Err(error) => refuse(framed, &error).await,
        },
        path => {
            let message = format!("no WebSocket at {path}; use /ws or /ws/ingest");
            refuse(
                framed,
                &ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            )
            .await
        }
    }
}

/// Why a request is not a WebSocket handshake, as the 400 says it.
fn handshake_error(head: &RequestHead) -> Option<ApiError> {
    ws::verify_handshake(head)
        .err()
        .map(|e| ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")))
}

/// The 400 for a plain `GET` of a socket route, after its gate has passed.
pub fn not_an_upgrade(head: &RequestHead) -> ApiError {
    handshake_error(head).unwrap_or_else(|| ApiError::bad_request("expected a WebSocket upgrade"))
}

/// Answers the handshake with 101 and takes the connection out of the HTTP codec, with
/// anything the client already sent behind its request. `None`: refused or gone.
///
/// The request is dropped here on purpose: its URI and headers are slices of the
/// dispatcher's 8 KiB read buffer, which would otherwise live as long as the socket.
async fn accept<T: Io + 'static>(
    req: Request,
    mut framed: Framed<T, h1::Codec>,
    max_frame: usize,
) -> Option<WebSocket> {
    if let Some(error) = handshake_error(req.head()) {
        refuse(framed, &error).await;
        return None;
    }
    let response = ws::handshake_response(req.head()).finish().drop_body();
    drop(req);
    if let Err(e) = framed.send((response, BodySize::None).into()).await {
        debug!(error = %e, "handshake reply not sent");
        return None;
    }
    let parts = framed.into_parts();
    // The codec's 8 KiB buffers go here; the socket keeps only what it needs.
    Some(WebSocket::new(
        Box::new(parts.io),
        &parts.read_buf,
        max_frame,
    ))
}

/// Sends `error` as the HTTP response to the upgrade request, then closes.
async fn refuse<T: Io + 'static>(mut framed: Framed<T, h1::Codec>, error: &ApiError) {
    let response: Response<_> = error.error_response().into();
    let (mut response, body) = response.into_parts();
    let body = body::to_bytes(body).await.unwrap_or_default();
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let size = BodySize::Sized(body.len() as u64);
    let sent = async {
        framed.feed(h1::Message::Item((response, size))).await?;
        framed.feed(h1::Message::Chunk(Some(body))).await?;
        framed.send(h1::Message::Chunk(None)).await
    };
    if let Err(e) = sent.await {
        debug!(error = %e, "refusal not sent");
        return;
    }
    let _ = framed.into_parts().io.shutdown().await;
}
