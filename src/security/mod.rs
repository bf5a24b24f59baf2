//! Who may connect and how much: viewer tokens, origins, client addresses, connection
//! and rate limits, and the registry of live viewers that admins can see and kick.
//! The threat model behind each piece is in docs/SECURITY.md.

mod address;
mod gate;
mod jwt;
mod origin;
mod registry;

pub use address::client_ip;
pub use gate::Admission;
pub use jwt::{Claims, JwtVerifier};
pub use origin::origin_allowed;
pub use registry::{ViewerEntry, ViewerRegistry, ViewerStats};

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use anyhow::Context;

use crate::config::{AuthMode, Settings};
use crate::limits::{ConnectionLimits, PerIpRate};

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct SecurityCounters {
    pub auth_failures: AtomicU64,
    pub rate_limited: AtomicU64,
    pub origin_refused: AtomicU64,
    pub connections_refused: AtomicU64,
    pub kicks: AtomicU64,
    pub abuse_closes: AtomicU64,
}

/// Everything the routes consult before letting a request or a socket in.
pub struct Security {
    pub verifier: Option<JwtVerifier>,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpAddr>,
    /// The caps on open sockets (viewers and publishers), per address and in total.
    pub socket_caps: Arc<ConnectionLimits>,
    pub connect_rate: PerIpRate,
    pub rest_rate: PerIpRate,
    /// The live viewers, which admins can list and kick.
    pub viewers: ViewerRegistry,
    pub counters: SecurityCounters,
}

impl Security {
    pub fn new(settings: &Settings) -> anyhow::Result<Security> {
        let verifier = match settings.auth.mode {
            AuthMode::None => None,
            AuthMode::Jwt => Some(JwtVerifier::from_settings(&settings.auth).context("auth")?),
        };
        let limits = &settings.limits;
        Ok(Security {
            verifier,
            allowed_origins: settings.security.allowed_origins(),
            trusted_proxies: settings.security.trusted_proxies()?,
            socket_caps: Arc::new(ConnectionLimits::new(
                limits.max_connections_per_ip,
                limits.max_connections,
            )),
            connect_rate: PerIpRate::new(
                limits.connects_per_second_per_ip,
                limits.connect_burst_per_ip,
            ),
            rest_rate: PerIpRate::new(
                limits.rest_requests_per_second_per_ip,
                limits.rest_burst_per_ip,
            ),
            viewers: ViewerRegistry::default(),
            counters: SecurityCounters::default(),
        })
    }
}

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
