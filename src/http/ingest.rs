//! `POST /api/v1/ticks`: a batch of ticks as a JSON array or NDJSON (contract §3).

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::value::RawValue;

use super::auth::{bearer, unauthorized};
use super::ApiError;
use crate::ingest::PublisherId;
use crate::state::AppState;

pub async fn post_ticks(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ingestor = &state.ingestor;
    let publisher = authenticate(req.headers(), &state)?;
    let limit = ingestor.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("body larger than ingest.max_body_bytes ({limit} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(8192).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    let ndjson = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-ndjson"));
    let report = if ndjson {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("NDJSON body is not UTF-8"))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        check_batch(lines.len(), ingestor.max_batch_ticks)?;
        ingestor.ingest(publisher, lines).await
    } else {
        let items: Vec<&RawValue> = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("body is not a JSON array of ticks: {e}"))
        })?;
        check_batch(items.len(), ingestor.max_batch_ticks)?;
        ingestor
            .ingest(publisher, items.iter().map(|item| item.get()))
            .await
    };
    Ok(HttpResponse::Ok().json(report))
}

/// Resolves the publisher from `Authorization: Bearer <key>` (401 otherwise).
pub fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<PublisherId, ApiError> {
    let key = bearer(headers)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <publisher key>`"))?;
    state
        .ingestor
        .authenticate(key)
        .ok_or_else(|| unauthorized("invalid publisher key"))
}

fn check_batch(count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("{count} ticks in one batch; ingest.max_batch_ticks is {max}"),
        ));
    }
    Ok(())
}
