//! `GET /api/v1/history/{symbol}?interval=1s|1m&limit=N`: recent OHLCV bars.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};

use super::quotes::resolve;
use super::ApiError;
use crate::store::Interval;
use crate::store::SnapshotStore;

pub async fn history(
    store: web::Data<SnapshotStore>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = resolve(&store, &[path.as_str()])?[0];
    let interval = match query.get("interval") {
        None => Interval::OneMinute,
        Some(raw) => Interval::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!("interval must be 1s or 1m, not {raw:?}"))
        })?,
    };
    let limit = match query.get("limit") {
        None => interval.capacity(),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be a positive integer, not {raw:?}"))
            })?,
    };
    let bars = store.bars(id, interval, limit);
    let mut out = Vec::with_capacity(96 * bars.len() + 64);
    out.extend_from_slice(b"{\"s\":\"");
    out.extend_from_slice(store.info(id).symbol.as_str().as_bytes());
    out.extend_from_slice(b"\",\"interval\":\"");
    out.extend_from_slice(interval.as_str().as_bytes());
    out.extend_from_slice(b"\",\"bars\":[");
    for (i, bar) in bars.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"t\":");
        out.extend_from_slice(itoa::Buffer::new().format(bar.t).as_bytes());
        for (key, price) in [("o", bar.o), ("h", bar.h), ("l", bar.l), ("c", bar.c)] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            price.write_to(&mut out);
        }
        out.extend_from_slice(b",\"v\":");
        out.extend_from_slice(itoa::Buffer::new().format(bar.v).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}
