//! REST rate limit: a token bucket per client address; beyond it, 429 with Retry-After.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use super::ApiError;
use crate::security::{client_ip, Security};

pub async fn per_ip(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(security) = req.app_data::<web::Data<Security>>() {
        let ip = client_ip(req.request().head(), &security.trusted_proxies);
        if let Err(wait) = security.rest_rate.check(ip) {
            security
                .counters
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::rate_limited("too many requests from your address", wait).into());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
