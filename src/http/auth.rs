//! Bearer keys for publishers and the admin. Keys are compared in constant time and
//! never logged.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::Secret;
use crate::security::bearer;

pub fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Checks the admin key; an unset key refuses every request.
pub fn require_admin(req: &HttpRequest, key: &Secret) -> Result<(), ApiError> {
    let presented = bearer(req.headers())
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <admin key>`"))?;
    let configured = key.expose().as_bytes();
    if configured.is_empty() || !bool::from(configured.ct_eq(presented.as_bytes())) {
        return Err(unauthorized("invalid admin key"));
    }
    Ok(())
}
