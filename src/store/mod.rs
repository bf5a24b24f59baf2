//! The in-memory snapshot store: the latest quote of every symbol.
//!
//! One slot per symbol, indexed by the dense `SymbolId`. Each slot has its own small
//! lock (held only to copy or update 112 bytes, never across an `.await`) and an atomic
//! version, so a session checks "changed since I last looked?" with one atomic load and
//! two actix workers only ever contend on the same symbol at the same instant. There is
//! no store-wide lock on the tick or flush path.
//!
//! Slots are pre-allocated up to a configured capacity: ids stay valid forever and the
//! hot path indexes a plain slice, at the cost of a fixed limit on the universe size.

mod universe;

pub use universe::{load_universe, UniverseEntry, DEFAULT_UNIVERSE_CSV};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use tokio::sync::watch;

use crate::domain::{Price, Quote, Symbol, SymbolId, Tick};

/// What the store knows about a symbol besides its quote.
#[derive(Debug, Clone)]
pub struct SymbolInfo {
    pub id: SymbolId,
    pub symbol: Symbol,
    pub name: Arc<str>,
    pub previous_close: Option<Price>,
}

#[derive(Debug, thiserror::Error)]
#[error("the symbol store is full ({0} symbols); raise store.max_symbols")]
pub struct StoreFull(pub usize);

/// A cheap-to-clone handle to the shared store.
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Box<[Slot]>,
    /// Number of slots in use; ids below it are valid.
    len: AtomicUsize,
    /// Symbol -> id, written only when the universe changes.
    registry: RwLock<HashMap<Symbol, SymbolId>>,
    /// Carries the number of applied batches; sessions wait on it instead of polling.
    changes: watch::Sender<u64>,
    ticks_applied: AtomicU64,
}

#[derive(Default)]
struct Slot {
    info: OnceLock<SymbolInfo>,
    /// Number of ticks applied to this symbol; a session's "what I last sent" marker.
    version: AtomicU64,
    quote: Mutex<Quote>,
}

impl SnapshotStore {
    pub fn new(capacity: usize) -> SnapshotStore {
        let slots = (0..capacity).map(|_| Slot::default()).collect();
        let (changes, _) = watch::channel(0);
        SnapshotStore {
            inner: Arc::new(Inner {
                slots,
                len: AtomicUsize::new(0),
                registry: RwLock::new(HashMap::new()),
                changes,
                ticks_applied: AtomicU64::new(0),
            }),
        }
    }

    /// Adds a symbol (or returns the existing id: adding is idempotent).
    pub fn add_symbol(
        &self,
        symbol: Symbol,
        name: &str,
        previous_close: Option<Price>,
    ) -> Result<SymbolId, StoreFull> {
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = registry.get(&symbol) {
            return Ok(id);
        }
        let index = self.inner.len.load(Ordering::Acquire);
        let slot = self
            .inner
            .slots
            .get(index)
            .ok_or(StoreFull(self.inner.slots.len()))?;
        let id = SymbolId(index as u32);
        *slot.quote.lock().unwrap_or_else(PoisonError::into_inner) =
            Quote::with_previous_close(previous_close);
        let info = SymbolInfo {
            id,
            symbol: symbol.clone(),
            name: Arc::from(name),
            previous_close,
        };
        // The slot at `len` has never been published, so this is its first and only set.
        let _ = slot.info.set(info);
        registry.insert(symbol, id);
        // Publish the slot only once it is fully initialised.
        self.inner.len.store(index + 1, Ordering::Release);
        drop(registry);
        self.notify_change();
        Ok(id)
    }

    pub fn lookup(&self, symbol: &Symbol) -> Option<SymbolId> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(symbol)
            .copied()
    }

    /// Number of symbols; ids `0..len()` are valid.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, id: SymbolId) -> &Slot {
        &self.inner.slots[id.index()]
    }

    /// Static facts of a symbol. Panics on an id this store never issued (a bug).
    pub fn info(&self, id: SymbolId) -> &SymbolInfo {
        self.slot(id)
            .info
            .get()
            .expect("ids are only issued after their slot is initialised")
    }

    /// Every symbol, in id order.
    pub fn symbols(&self) -> impl Iterator<Item = &SymbolInfo> + '_ {
        (0..self.len()).map(|index| self.info(SymbolId(index as u32)))
    }

    /// The symbol's version: one atomic load, the flush loop's cheap "changed?" test.
    pub fn version(&self, id: SymbolId) -> u64 {
        self.slot(id).version.load(Ordering::Acquire)
    }

    /// A consistent copy of the quote and the version it corresponds to.
    pub fn read(&self, id: SymbolId) -> (Quote, u64) {
        let slot = self.slot(id);
        let quote = slot.quote.lock().unwrap_or_else(PoisonError::into_inner);
        (*quote, slot.version.load(Ordering::Relaxed))
    }

    /// Applies ticks in order, then wakes waiting sessions once for the whole batch.
    pub fn apply_batch(&self, ticks: &[Tick]) {
        if ticks.is_empty() {
            return;
        }
        for tick in ticks {
            let slot = self.slot(tick.symbol);
            let mut quote = slot.quote.lock().unwrap_or_else(PoisonError::into_inner);
            quote.apply(tick);
            // Bumped under the lock so `read` sees quote and version agree.
            slot.version.fetch_add(1, Ordering::Release);
        }
        self.inner
            .ticks_applied
            .fetch_add(ticks.len() as u64, Ordering::Relaxed);
        self.notify_change();
    }

    fn notify_change(&self) {
        self.inner.changes.send_modify(|batches| *batches += 1);
    }

    /// A receiver that resolves `changed()` after the next applied batch.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub fn ticks_applied(&self) -> u64 {
        self.inner.ticks_applied.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Field;

    fn store_with(symbols: &[&str]) -> SnapshotStore {
        let store = SnapshotStore::new(8);
        for s in symbols {
            store
                .add_symbol(Symbol::parse(s).unwrap(), s, Price::parse("100").ok())
                .unwrap();
        }
        store
    }

    #[test]
    fn interns_symbols_densely_and_idempotently() {
        let store = store_with(&["AAPL", "MSFT"]);
        let aapl = Symbol::parse("aapl").unwrap();
        assert_eq!(store.lookup(&aapl), Some(SymbolId(0)));
        assert_eq!(store.add_symbol(aapl, "x", None).unwrap(), SymbolId(0));
        assert_eq!(store.len(), 2);
        assert_eq!(store.info(SymbolId(1)).symbol.as_str(), "MSFT");
    }

    #[test]
    fn refuses_symbols_beyond_capacity() {
        let store = SnapshotStore::new(1);
        store
            .add_symbol(Symbol::parse("A").unwrap(), "", None)
            .unwrap();
        assert!(store
            .add_symbol(Symbol::parse("B").unwrap(), "", None)
            .is_err());
    }

    #[test]
    fn batches_bump_versions_and_notify_once() {
        let store = store_with(&["AAPL", "MSFT"]);
        let mut changes = store.watch_changes();
        changes.borrow_and_update();
        let tick = |id, ts| Tick {
            symbol: SymbolId(id),
            price: Price::parse("101").ok(),
            size: Some(10),
            ts,
            ..Tick::default()
        };
        store.apply_batch(&[tick(0, 1), tick(0, 2), tick(1, 3)]);
        assert!(changes.has_changed().unwrap());
        assert_eq!(store.version(SymbolId(0)), 2);
        assert_eq!(store.version(SymbolId(1)), 1);
        let (quote, version) = store.read(SymbolId(0));
        assert_eq!((quote.get(Field::V), version), (Some(20), 2));
        assert_eq!(store.ticks_applied(), 3);
    }
}
