//! Feed sources that produce ticks into the snapshot store.

mod simulator;

pub use simulator::Simulator;
