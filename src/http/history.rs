//! `GET /api/v1/history/{symbol}?interval=1s|1m|1d&from=&to=&limit=`: a page of
//! OHLCV bars, the newest of the range, oldest first, exact decimals.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::quotes::resolve;
use super::ApiError;
use crate::broker::Cluster;
use crate::store::{
    history_page, Durable, Interval, SnapshotStore, StorageUnavailable, MAX_PAGE_BARS,
};
use crate::wire::ErrorCode;

/// Where history pages come from besides the rings in memory.
pub enum HistorySource {
    /// Memory only (`store.data_dir = ""`).
    Memory,
    /// Older bars from the data file.
    DataFile(Durable),
    /// Every bar from Redis, shared by the cluster (`broker.kind = "redis"`).
    Cluster(Arc<Cluster>),
}

/// Bars in a page when the request names no `limit`.
const DEFAULT_PAGE_BARS: usize = 1_000;

pub async fn history(
    store: web::Data<SnapshotStore>,
    source: web::Data<HistorySource>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = resolve(&store, &[path.as_str()])?[0];
    let interval = match query.get("interval") {
        None => Interval::OneMinute,
        Some(raw) => Interval::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!("interval must be 1s, 1m or 1d, not {raw:?}"))
        })?,
    };
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE_BARS,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be a positive integer, not {raw:?}"))
            })?
            .min(MAX_PAGE_BARS),
    };
    let from = time_param(&query, "from")?.unwrap_or(i64::MIN);
    let to = time_param(&query, "to")?.unwrap_or(i64::MAX);
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let page = match source.get_ref() {
        HistorySource::Cluster(cluster) => {
            cluster.history_page(id, interval, from, to, limit).await
        }
        HistorySource::DataFile(durable) => {
            history_page(&store, Some(durable), id, interval, from, to, limit)
                .await
                .map_err(storage_unavailable)?
        }
        HistorySource::Memory => history_page(&store, None, id, interval, from, to, limit)
            .await
            .map_err(storage_unavailable)?,
    };
    let mut out = Vec::with_capacity(96 * page.bars.len() + 64);
    out.extend_from_slice(b"{\"s\":\"");
    out.extend_from_slice(store.info(id).symbol.as_str().as_bytes());
    out.extend_from_slice(b"\",\"interval\":\"");
    out.extend_from_slice(interval.as_str().as_bytes());
    out.extend_from_slice(b"\",\"bars\":[");
    for (i, bar) in page.bars.iter().enumerate() {
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
    out.extend_from_slice(b"],\"more\":");
    out.extend_from_slice(if page.more { b"true" } else { b"false" });
    out.push(b'}');
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

fn storage_unavailable(e: StorageUnavailable) -> ApiError {
    let mut error = ApiError::from_code(ErrorCode::StorageUnavailable, e.to_string());
    error.retry_after = Some(1);
    error
}

/// A time bound: milliseconds since the epoch, or an RFC 3339 timestamp.
fn time_param(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = query.get(name) else {
        return Ok(None);
    };
    raw.parse::<i64>()
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|t| t.timestamp_millis())
        })
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be milliseconds since the epoch or an RFC 3339 time, not {raw:?}"
            ))
        })
}
