//! `POST /api/v1/ticks`: a batch of ticks as a JSON array or NDJSON (contract §3).

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::value::RawValue;

use super::auth::unauthorized;
use super::body::{read_body, BodyDeadline};
use super::ApiError;
use crate::ingest::{Ingestor, PublisherId};
use crate::security::bearer;
use crate::wire::ErrorCode;

pub async fn post_ticks(
    req: HttpRequest,
    mut payload: web::Payload,
    ingestor: web::Data<Ingestor>,
    deadline: web::Data<BodyDeadline>,
) -> Result<HttpResponse, ApiError> {
    // The key first: a refused publisher's body is never read.
    let publisher = authenticate(req.headers(), &ingestor)?;
    let body = read_body(
        &req,
        &mut payload,
        ingestor.max_body_bytes,
        "ingest.max_body_bytes",
        &deadline,
    )
    .await?;

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
    let report = report.map_err(|e| {
        let mut error = ApiError::from_code(ErrorCode::StorageUnavailable, e.to_string());
        error.retry_after = Some(1);
        error
    })?;
    Ok(HttpResponse::Ok().json(report))
}

/// Resolves the publisher from `Authorization: Bearer <key>` (401 otherwise).
pub fn authenticate(headers: &HeaderMap, ingestor: &Ingestor) -> Result<PublisherId, ApiError> {
    let key = bearer(headers)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <publisher key>`"))?;
    ingestor
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
