//! The opening handshake (RFC 6455 §4.2): answered with 101, or refused with the usual
//! JSON error and status, on a connection actix-http hands over with its request.

use actix_codec::Framed;
use actix_http::body::{self, BodySize};
use actix_http::ws::HandshakeError;
use actix_http::{h1, ws, ConnectionType, Request, RequestHead, Response};
use actix_web::http::StatusCode;
use actix_web::web::BytesMut;
use actix_web::ResponseError;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::extension::{self, PerMessageDeflate};
use super::Io;

/// The longest the 101 or a refusal may take to leave: a few hundred bytes that any
/// reading client takes at once.
const REPLY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
use crate::wire::ApiError;

/// Why a request is not a WebSocket handshake we can answer, as the client is told.
/// An unsupported `Sec-WebSocket-Version` is 426 naming the version we speak
/// (§4.2.2); every other fault is 400.
pub fn handshake_error(head: &RequestHead) -> Option<ApiError> {
    let error = ws::verify_handshake(head).err()?;
    Some(match error {
        HandshakeError::UnsupportedVersion => ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "bad_request",
            "unsupported Sec-WebSocket-Version; this server speaks 13",
        )
        .with_header("sec-websocket-version", "13"),
        other => ApiError::bad_request(format!("expected a WebSocket upgrade: {other}")),
    })
}

/// A connection past its handshake: the raw stream, what the client sent behind its
/// request, and the permessage-deflate parameters if that was negotiated.
pub struct Accepted<T> {
    pub io: T,
    pub leftover: BytesMut,
    pub deflate: Option<PerMessageDeflate>,
}

/// Answers the handshake with 101 and takes the connection out of the HTTP codec, with
/// anything the client already sent behind its request. `None`: refused or gone.
/// `offer_deflate`: whether a permessage-deflate offer may be accepted.
///
/// The request is dropped here on purpose: its URI and headers are slices of the
/// dispatcher's 8 KiB read buffer, which would otherwise live as long as the socket.
pub async fn accept<T: Io + 'static>(
    req: Request,
    mut framed: Framed<T, h1::Codec>,
    offer_deflate: bool,
) -> Option<Accepted<T>> {
    if let Some(error) = handshake_error(req.head()) {
        refuse(framed, &error).await;
        return None;
    }
    let negotiated = offer_deflate
        .then(|| extension::negotiate(req.head()))
        .flatten();
    let mut response = ws::handshake_response(req.head());
    if let Some((deflate, echo_window)) = negotiated {
        response.insert_header((
            "sec-websocket-extensions",
            deflate.response_header(echo_window),
        ));
    }
    let response = response.finish().drop_body();
    drop(req);
    let sent = tokio::time::timeout(
        REPLY_DEADLINE,
        framed.send((response, BodySize::None).into()),
    );
    match sent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!(error = %e, "handshake reply not sent");
            return None;
        }
        Err(_) => {
            debug!("handshake reply not taken in time");
            return None;
        }
    }
    let parts = framed.into_parts();
    // The codec's 8 KiB buffers go here; the socket keeps only what it needs.
    Some(Accepted {
        io: parts.io,
        leftover: parts.read_buf,
        deflate: negotiated.map(|(deflate, _)| deflate),
    })
}

/// Sends `error` as the HTTP response to the upgrade request, then closes.
pub async fn refuse<T: Io + 'static>(mut framed: Framed<T, h1::Codec>, error: &ApiError) {
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
        framed.send(h1::Message::Chunk(None)).await?;
        framed.into_parts().io.shutdown().await
    };
    match tokio::time::timeout(REPLY_DEADLINE, sent).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "refusal not sent"),
        Err(_) => debug!("refusal not taken in time"),
    }
}
