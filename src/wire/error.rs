use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::json;

/// Error codes of the contract, on every transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    InvalidSymbol,
    UnknownSymbol,
    TooManySymbols,
    RateLimited,
    Unauthorized,
    Forbidden,
    Internal,
    /// The instance cannot store accepted ticks (disk full, I/O error): the batch was
    /// not acknowledged; retry it (with `seq`, a retry never counts twice).
    StorageUnavailable,
}

impl ErrorCode {
    /// The code as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidSymbol => "invalid_symbol",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
            ErrorCode::StorageUnavailable => "storage_unavailable",
        }
    }

    /// The HTTP status a REST route answers this code with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::UnknownOp
            | ErrorCode::InvalidSymbol
            | ErrorCode::TooManySymbols => StatusCode::BAD_REQUEST,
            ErrorCode::UnknownSymbol => StatusCode::NOT_FOUND,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A REST error: `{"error":{"code":"…","message":"…"}}` with the fitting status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// A contract error code (or `not_found` / `method_not_allowed` for routing).
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
    /// One more header the status calls for (e.g. `sec-websocket-version: 13` on
    /// 426): a lower-case name and its value.
    pub header: Option<(&'static str, &'static str)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            header: None,
        }
    }

    /// 429 `rate_limited` with `Retry-After` (at least one second).
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(code.status(), code.as_str(), message)
    }

    /// The same error with one more response header.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some((name, value)) = self.header {
            response.insert_header((name, value));
        }
        response.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_serde_writes_it() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::UnknownOp,
            ErrorCode::InvalidSymbol,
            ErrorCode::UnknownSymbol,
            ErrorCode::TooManySymbols,
            ErrorCode::RateLimited,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::Internal,
            ErrorCode::StorageUnavailable,
        ] {
            let json = serde_json::to_string(&code).expect("codes serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
