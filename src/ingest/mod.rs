//! Feed sources that produce ticks into the snapshot store: adapters over HTTP and
//! WebSocket (`publisher`, `wire`, `routes`), the simulator, and CSV replay.

mod publisher;
mod replay;
mod simulator;
mod socket;
mod wire;

pub use publisher::{IngestReport, Ingestor, PublisherId, Rejected};
pub use replay::{parse_replay, run_replay, ReplayRow, SAMPLE_CSV};
pub use simulator::Simulator;
pub use socket::run_publisher;
pub use wire::MAX_SIZE;
pub use wire::{parse_tick, ParsedTick, TickError};
