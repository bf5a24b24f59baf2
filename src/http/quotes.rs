//! `/api/v1/symbols` and `/api/v1/quotes`: the store's current state over REST.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};

use super::{write_json_string, ApiError};
use crate::domain::{Field, FieldSet, Symbol, SymbolId};
use crate::store::SnapshotStore;
use crate::wire::ErrorCode;

fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// `{"symbols":[{"s":"AAPL","name":"Apple Inc.","pc":…},…]}`
pub async fn symbols(store: web::Data<SnapshotStore>) -> HttpResponse {
    let mut out = Vec::with_capacity(64 * store.len() + 16);
    out.extend_from_slice(b"{\"symbols\":[");
    for (i, info) in store.symbols().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"s\":\"");
        out.extend_from_slice(info.symbol.as_str().as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        write_json_string(&store.name(info.id), &mut out);
        let (quote, _) = store.read(info.id);
        if let Some(pc) = quote.price(Field::Pc) {
            out.extend_from_slice(b",\"pc\":");
            pc.write_to(&mut out);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    json_response(out)
}

/// `GET /api/v1/quotes?symbols=A,B`: full quotes, every symbol without `symbols`.
pub async fn quotes(
    store: web::Data<SnapshotStore>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let ids: Vec<SymbolId> = match query.get("symbols") {
        None => store.symbols().map(|info| info.id).collect(),
        Some(raw) => {
            let names: Vec<&str> = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if names.is_empty() {
                return Err(ApiError::bad_request("symbols= names no symbol"));
            }
            resolve(&store, &names)?
        }
    };
    let mut out = Vec::with_capacity(160 * ids.len() + 16);
    out.extend_from_slice(b"{\"quotes\":[");
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (quote, _) = store.read(id);
        quote.write_json(store.info(id).symbol.as_str(), FieldSet::ALL, &mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(out))
}

/// `GET /api/v1/quotes/{symbol}`: one full quote.
pub async fn quote(
    store: web::Data<SnapshotStore>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = resolve(&store, &[path.as_str()])?[0];
    let mut out = Vec::with_capacity(192);
    let (quote, _) = store.read(id);
    quote.write_json(store.info(id).symbol.as_str(), FieldSet::ALL, &mut out);
    Ok(json_response(out))
}

/// Names to ids, in request order without repeats; the first invalid or unknown name
/// fails the request (400 `invalid_symbol`, 404 `unknown_symbol`).
pub(super) fn resolve(
    store: &crate::store::SnapshotStore,
    names: &[&str],
) -> Result<Vec<SymbolId>, ApiError> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let symbol = Symbol::parse(name)
            .map_err(|e| ApiError::from_code(ErrorCode::InvalidSymbol, e.to_string()))?;
        let id = store.lookup(&symbol).ok_or_else(|| {
            ApiError::from_code(
                ErrorCode::UnknownSymbol,
                format!("no such symbol: {symbol}"),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}
