//! tickstream: a live stock-ticker backend.
//!
//! Ticks flow from feed sources (`ingest`) into the snapshot store (`store`); one
//! session task per WebSocket viewer (`stream`) diffs the store against what its
//! client last saw and sends conflated, minimal, optionally compressed updates.

pub mod broker;
pub mod config;
pub mod deflate;
pub mod domain;
pub mod feed;
pub mod healthcheck;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod market_session;
pub mod metrics;
pub mod security;
pub mod shutdown;
pub mod socket;
pub mod startup;
pub mod state;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod wire;
