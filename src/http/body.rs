//! Request bodies: read whole within a size limit and a deadline, and never allowed to
//! hold a connection once the route is done with the request.
//!
//! actix-http ends a connection whose `Content-Length` body was left unread, but a
//! chunked body left unread is *drained*: the dispatcher keeps reading and discarding
//! it, with no timer, for as long as the client keeps sending. So a trickling chunked
//! body sent to any route (one that takes no body, or one that refused the request
//! before reading it) would pin the connection. [`close_on_unread_body`] closes such
//! connections instead, on every route.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{Error, HttpMessage};
use futures_util::{Stream, StreamExt};

use super::ApiError;

/// How long a request body may take to arrive (`http.body_timeout_ms`), and where a
/// late one is counted: given to the routes that read bodies as application data.
pub struct BodyDeadline {
    pub timeout: std::time::Duration,
    pub guard: std::sync::Arc<crate::listener::HttpGuard>,
}

/// Reads the whole body: 413 beyond `limit` bytes (`limit_key` names the setting in
/// the message; a declared `Content-Length` over it is refused before reading), 408
/// `request_timeout` when it has not arrived within `deadline` (`http.body_timeout_ms`). Routes
/// check their keys before calling this, so no body is read for a refused request.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    limit_key: &str,
    deadline: &BodyDeadline,
) -> Result<Bytes, ApiError> {
    let timeout = deadline.timeout;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("body larger than {limit_key} ({limit} bytes)"),
        )
    };
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(8192).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => {
            deadline
                .guard
                .counters
                .body_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(path = req.path(), "request body timed out");
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} ms (http.body_timeout_ms)",
                    timeout.as_millis()
                ),
            ))
        }
    }
}

/// Middleware on every route: when a request's body was not read to its end by the
/// time the response is ready, the response says `Connection: close` and keeps the
/// body's receiver alive until it is sent, which makes actix-http close the
/// connection (after its short linger) instead of draining the rest. Requests without
/// a body, and bodies read whole, keep their connection alive as before.
pub async fn close_on_unread_body(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return next.call(req).await;
    }
    let watched = Watched {
        inner: Rc::new(RefCell::new(payload)),
        finished: Rc::new(Cell::new(false)),
    };
    let (inner, finished) = (watched.inner.clone(), watched.finished.clone());
    req.set_payload(Payload::Stream {
        payload: Box::pin(watched),
    });
    let mut res = next.call(req).await?;
    if finished.get() {
        return Ok(res);
    }
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(res.map_body(|_, body| BoxBody::new(HoldingBody { body, _held: inner })))
}

/// The request payload as the route sees it; remembers whether it was read to its end.
struct Watched {
    inner: Rc<RefCell<Payload>>,
    finished: Rc<Cell<bool>>,
}

impl Stream for Watched {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Not borrowed elsewhere: the middleware only holds its clone, never reads it.
        let poll = Pin::new(&mut *self.inner.borrow_mut()).poll_next(cx);
        if matches!(poll, Poll::Ready(None)) {
            self.finished.set(true);
        }
        poll
    }
}

/// A response body that keeps the unread request payload alive until the response
/// has been written: while it lives, actix-http counts the body as unread (not
/// dropped), and closes the connection rather than draining it.
struct HoldingBody {
    body: BoxBody,
    _held: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}
