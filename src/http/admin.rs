//! Managing the symbol universe at run time (admin key).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::require_admin;
use super::body::{read_body, BodyDeadline};
use super::ApiError;
use crate::broker::Broker;
use crate::config::Secret;
use crate::domain::{Field, Price, Symbol};
use crate::security::Security;
use crate::store::{Durable, SnapshotStore};
use crate::wire::ErrorCode;

/// What the admin routes touch: their key, the broker every universe change goes
/// through, the store they read back, the durable writer (when `store.data_dir` is
/// set: a change is answered only once stored, like a publisher's batch), and the
/// registry of live viewers.
pub struct AdminRoutes {
    /// `admin.api_key`; unset refuses every admin request.
    pub key: Secret,
    pub broker: Broker,
    pub store: SnapshotStore,
    pub storage: Option<Durable>,
    pub security: Arc<Security>,
}

impl AdminRoutes {
    /// Waits until every change made so far (this request's included) is stored;
    /// 503 `storage_unavailable` when it cannot be.
    async fn stored(&self) -> Result<(), ApiError> {
        let Some(durable) = &self.storage else {
            return Ok(());
        };
        // THE DURABILITY MOMENT for admin changes: the reply waits for the commit.
        durable
            .wait_stored(self.store.generation())
            .await
            .map_err(|e| {
                let mut error = ApiError::from_code(ErrorCode::StorageUnavailable, e.to_string());
                error.retry_after = Some(1);
                error
            })
    }
}

/// Optional body of `PUT /api/v1/admin/symbols/{symbol}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolBody {
    name: Option<String>,
    pc: Option<Box<serde_json::value::RawValue>>,
}

/// Largest `PUT /api/v1/admin/symbols/{symbol}` body: a name and a price.
const MAX_SYMBOL_BODY_BYTES: usize = 16 * 1024;

/// Creates a symbol (201) or updates its name and reference price (200).
pub async fn put_symbol(
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
    admin: web::Data<AdminRoutes>,
    deadline: web::Data<BodyDeadline>,
) -> Result<HttpResponse, ApiError> {
    // The key before the body: an unauthenticated client gets 401 at once, whatever
    // it claims to send, and cannot hold the connection with a slow body.
    require_admin(&req, &admin.key)?;
    let symbol = Symbol::parse(&path)
        .map_err(|e| ApiError::from_code(ErrorCode::InvalidSymbol, e.to_string()))?;
    let body = read_body(
        &req,
        &mut payload,
        MAX_SYMBOL_BODY_BYTES,
        "the symbol body limit",
        &deadline,
    )
    .await?;
    let body: SymbolBody = if body.iter().all(u8::is_ascii_whitespace) {
        SymbolBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body must be {{\"name\",\"pc\"}}: {e}")))?
    };
    let pc = body
        .pc
        .as_deref()
        .map(Price::positive_from_json)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("pc: {e}")))?;
    let (id, created) = admin
        .broker
        .upsert_symbol(symbol.clone(), body.name.as_deref(), pc)
        .await
        .map_err(|e| ApiError::from_code(ErrorCode::Internal, e.to_string()))?;
    admin.stored().await?;
    tracing::info!(symbol = %symbol, created, "symbol upserted");
    // The reply is written like `/api/v1/symbols`: `pc` as its shortest exact decimal.
    let (quote, _) = admin.store.read(id);
    let mut reply = Vec::with_capacity(96);
    reply.extend_from_slice(b"{\"s\":\"");
    reply.extend_from_slice(symbol.as_str().as_bytes());
    reply.extend_from_slice(b"\",\"name\":");
    super::write_json_string(&admin.store.name(id), &mut reply);
    if let Some(pc) = quote.price(Field::Pc) {
        reply.extend_from_slice(b",\"pc\":");
        pc.write_to(&mut reply);
    }
    reply.push(b'}');
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .content_type(actix_web::http::header::ContentType::json())
        .body(reply))
}

/// Removes a symbol; its subscribers are told and it leaves their subscriptions.
pub async fn delete_symbol(
    req: HttpRequest,
    path: web::Path<String>,
    admin: web::Data<AdminRoutes>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &admin.key)?;
    let symbol = Symbol::parse(&path)
        .map_err(|e| ApiError::from_code(ErrorCode::InvalidSymbol, e.to_string()))?;
    admin.broker.remove_symbol(&symbol).await.ok_or_else(|| {
        ApiError::from_code(
            ErrorCode::UnknownSymbol,
            format!("no such symbol: {symbol}"),
        )
    })?;
    admin.stored().await?;
    tracing::info!(symbol = %symbol, "symbol removed");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/admin/sessions`: every live viewer (the wire calls them sessions).
pub async fn list_viewers(
    req: HttpRequest,
    admin: web::Data<AdminRoutes>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &admin.key)?;
    Ok(HttpResponse::Ok().json(admin.security.viewers.to_json()))
}

/// `DELETE /api/v1/admin/sessions/{id}`: closes that viewer's connection with 1008.
pub async fn kick_viewer(
    req: HttpRequest,
    path: web::Path<String>,
    admin: web::Data<AdminRoutes>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &admin.key)?;
    if !admin.security.viewers.kick(&path) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session {:?}", path.as_str()),
        ));
    }
    tracing::info!(viewer = %path, "viewer kicked by an admin");
    Ok(HttpResponse::NoContent().finish())
}
