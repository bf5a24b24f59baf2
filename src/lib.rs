//! tickstream: a live stock-ticker backend.
//!
//! The data's way: sources (`sources`: simulator, replay, vendor feeds; `ingest`:
//! publishers) hand batches of ticks to the `broker`, the only writer of the
//! snapshot `store`; one task per viewer (`stream`) diffs the store against what its
//! client last saw and hands one message per flush to its `transport` (WebSocket or
//! SSE). The imports point the other way, downwards: `startup` (the wiring) →
//! `http` (routes and gates) and `listener` → features (`stream`, `ingest`,
//! `sources`) → `broker` → `store` → `domain` and `wire`.

pub mod broker;
pub mod config;
pub mod deflate;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod security;
pub mod shutdown;
pub mod sources;
pub mod startup;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod transport;
pub mod wire;
