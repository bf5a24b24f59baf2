//! Where ticks come from, besides publishers (`crate::ingest`): the built-in
//! simulator, CSV replay, the vendor feed connectors (`feed.*`), and the trading day's
//! rollover. Each hands its changes to the broker, never to the store.

pub mod feed;
mod replay;
mod simulator;
pub mod trading_day;

pub use replay::{parse_replay, run_replay, ReplayRow, SAMPLE_CSV};
pub use simulator::Simulator;
