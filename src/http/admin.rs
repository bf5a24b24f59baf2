//! Managing the symbol universe at run time (admin key).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::require_admin;
use super::ApiError;
use crate::domain::{Field, Price, Symbol};
use crate::state::AppState;
use crate::stream::ErrorCode;

/// Optional body of `PUT /api/v1/admin/symbols/{symbol}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolBody {
    name: Option<String>,
    pc: Option<f64>,
}

/// Creates a symbol (201) or updates its name and reference price (200).
pub async fn put_symbol(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_key)?;
    let symbol = Symbol::parse(&path)
        .map_err(|e| ApiError::from_code(ErrorCode::InvalidSymbol, e.to_string()))?;
    let body: SymbolBody = if body.iter().all(u8::is_ascii_whitespace) {
        SymbolBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body must be {{\"name\",\"pc\"}}: {e}")))?
    };
    let pc = body
        .pc
        .map(Price::positive_from_f64)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("pc: {e}")))?;
    let (id, created) = state
        .broker
        .upsert_symbol(symbol.clone(), body.name.as_deref(), pc)
        .await
        .map_err(|e| ApiError::from_code(ErrorCode::Internal, e.to_string()))?;
    tracing::info!(symbol = %symbol, created, "symbol upserted");
    let (quote, _) = state.store.read(id);
    let pc_value = quote
        .price(Field::Pc)
        .map(|p| serde_json::from_str::<serde_json::Value>(&p.to_string()).unwrap_or_default());
    let mut reply = json!({"s": symbol.as_str(), "name": &*state.store.name(id)});
    if let Some(pc) = pc_value {
        reply["pc"] = pc;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(reply))
}

/// Removes a symbol; its subscribers are told and it leaves their subscriptions.
pub async fn delete_symbol(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_key)?;
    let symbol = Symbol::parse(&path)
        .map_err(|e| ApiError::from_code(ErrorCode::InvalidSymbol, e.to_string()))?;
    state.broker.remove_symbol(&symbol).await.ok_or_else(|| {
        ApiError::from_code(
            ErrorCode::UnknownSymbol,
            format!("no such symbol: {symbol}"),
        )
    })?;
    tracing::info!(symbol = %symbol, "symbol removed");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/admin/sessions`: every live viewer session.
pub async fn sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_key)?;
    Ok(HttpResponse::Ok().json(state.security.sessions.to_json()))
}

/// `DELETE /api/v1/admin/sessions/{id}`: closes that session with 1008.
pub async fn kick_session(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_key)?;
    if !state.security.sessions.kick(&path) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session {:?}", path.as_str()),
        ));
    }
    tracing::info!(session = %path, "session kicked by an admin");
    Ok(HttpResponse::NoContent().finish())
}
