//! Black-box tests: a real server on port 0, real WebSocket and HTTP clients.

mod backfill;
mod binary;
mod config_errors;
mod container;
mod durable;
mod exactness;
mod example_adapter;
mod feed;
mod helpers;
mod http_edge;
mod ingest;
mod invariant;
mod parser_properties;
mod permessage_deflate;
mod rest;
mod security;
mod shutdown;
mod socket;
mod socket_bounds;
mod sse;
mod stream;
mod stream_errors;
mod support_checks;
mod universe;

#[path = "../support/mod.rs"]
mod support;
