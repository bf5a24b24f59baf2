//! The push API for publishers (contract §3): `POST /api/v1/ticks` and `/ws/ingest`
//! parse ticks (`tick_json`), check the key, de-duplicate by `seq` and hand each batch
//! to the broker (`publisher`).

mod publisher;
mod publisher_socket;
mod tick_json;

pub use publisher::{Applied, IngestReport, Ingestor, PublisherId, Rejected};
pub use publisher_socket::run_publisher;
pub use tick_json::{parse_tick, TickError};
