//! Domain types: everything past the boundary speaks these, never raw strings or floats.

mod price;
mod quote;
mod symbol;
mod tick;

pub use price::{Percent, Price, PriceError};
pub use quote::{write_json_start, Field, FieldSet, Quote};
pub use symbol::{Symbol, SymbolError, SymbolId};
pub use tick::{now_millis, ParsedTick, Tick, MAX_SIZE};
