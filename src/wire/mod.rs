//! What every edge speaks, below every feature: the contract's error codes and their
//! HTTP statuses, the REST error body, and request ids.
//!
//! The socket driver, the viewer stream, ingest and the HTTP routes all answer clients
//! with these; keeping them here lets `transport/` refuse a handshake with the same JSON
//! error a REST route would give, without knowing any route or feature.

mod error;
mod req_id;

pub use error::{ApiError, ErrorCode};
pub use req_id::{peek_req_id, ReqId};
