use std::net::IpAddr;
use std::sync::atomic::Ordering;

use actix_web::dev::RequestHead;
use actix_web::http::StatusCode;

use super::{bearer, client_ip, origin_allowed, Claims, Security};
use crate::limits::{ConnectionSlot, Refusal};
use crate::wire::ApiError;

/// A WebSocket upgrade that passed the gate. `slot` is `None` when the server is full:
/// the caller upgrades and closes with 1013 so browsers, which cannot read an HTTP
/// status from a failed handshake, learn to come back later.
pub struct Admission {
    pub ip: IpAddr,
    pub slot: Option<ConnectionSlot>,
}

impl Security {
    /// Origin, connection-attempt rate and connection caps, before any upgrade.
    pub fn admit_socket(&self, req: &RequestHead) -> Result<Admission, ApiError> {
        let ip = client_ip(req, &self.trusted_proxies);
        if !origin_allowed(req, &self.allowed_origins) {
            self.counters.origin_refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this page's origin may not open a socket here (security.allowed_origins)",
            ));
        }
        if let Err(wait) = self.connect_rate.check(ip) {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::rate_limited(
                "too many connection attempts from your address",
                wait,
            ));
        }
        let slot = match self.socket_caps.acquire(ip) {
            Ok(slot) => Some(slot),
            Err(Refusal::ServerFull) => {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(Refusal::TooManyFromAddress) => {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::rate_limited(
                    "too many open connections from your address",
                    std::time::Duration::from_secs(5),
                ));
            }
        };
        Ok(Admission { ip, slot })
    }

    /// The viewer's token claims when auth is on (`?token=` or `Authorization: Bearer`);
    /// `None` when auth is off. A missing or bad token is 401.
    pub fn authenticate_viewer(
        &self,
        req: &RequestHead,
        query_token: Option<&str>,
    ) -> Result<Option<Claims>, ApiError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let unauthorized = |message: String| {
            self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        };
        let token = query_token
            .or_else(|| bearer(&req.headers))
            .ok_or_else(|| {
                unauthorized(
                    "a token is required: ?token=<jwt> or Authorization: Bearer <jwt>".into(),
                )
            })?;
        verifier
            .verify(token)
            .map(Some)
            .map_err(|e| unauthorized(format!("invalid token: {e}")))
    }
}
