//! The in-memory snapshot store: the latest quote of every symbol.
//!
//! One slot per symbol, indexed by the dense `SymbolId`. Writers (ticks, admin, resync)
//! take the slot's own small lock (never held across an `.await`) and publish the
//! quote and its version behind a sequence lock; viewers read that without writing
//! anything shared, so a viewer checks "changed since I last looked?" with one atomic
//! load and reading a quote never moves a cache line between workers. There is no
//! store-wide lock on the tick or flush path.
//!
//! Slots are pre-allocated up to a configured capacity: ids stay valid forever and the
//! hot path indexes a plain slice, at the cost of a fixed limit on the universe size.

mod commit_metrics;
pub mod data_file;
mod durable;
mod history;
mod page;
mod universe;

pub use commit_metrics::{CommitStats, COMMIT_SECONDS_BUCKETS};
pub use durable::{Durable, StorageStatus, StorageUnavailable, DATA_FILE};
pub use history::{
    day_bar_time, with_day_in_progress, Bar, ChangedBars, History, Interval, RecentBars, Retention,
    DAY_BARS, MINUTE_BARS, SECOND_BARS,
};
pub use page::{history_page, HistoryPage, MAX_PAGE_BARS};
pub(crate) use universe::split_csv_line;
pub use universe::{load_universe, UniverseEntry, DEFAULT_UNIVERSE_CSV};

use std::collections::HashMap;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::watch;

use crate::domain::{Field, Price, Quote, Symbol, SymbolId, Tick};

/// The immutable identity of a slot.
#[derive(Debug, Clone)]
pub struct SymbolInfo {
    pub id: SymbolId,
    pub symbol: Symbol,
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
    /// Tells this store from any other in the process (see [`SnapshotStore::serial`]).
    serial: u64,
    slots: Box<[Slot]>,
    /// Number of slots in use; ids below it were issued (some may be removed).
    len: AtomicUsize,
    /// Symbol -> id of its live slot; written only when the universe changes.
    registry: RwLock<HashMap<Symbol, SymbolId>>,
    /// Bumped when a symbol is removed: viewers compare it to notice removals.
    removals: AtomicU64,
    /// Carries the number of applied batches; viewers wait on it instead of polling.
    changes: watch::Sender<u64>,
    ticks_applied: AtomicU64,
    /// The consistent-cut gate of the durable layer: every change (a batch with its
    /// publisher's `seq`, a universe change, a rollover) is made under a shared hold,
    /// and the durable writer takes it exclusively just long enough to copy what
    /// changed. So a copy never holds half a batch, nor a batch without its `seq`.
    /// Std lock: held for plain memory work only, never across an `.await`; one
    /// uncontended read-lock per batch, not per tick.
    gate: RwLock<()>,
    /// Counts changes, bumped under the gate; the writer records the value it copied
    /// at, and a waiter is covered once a commit reached its change's number.
    generation: AtomicU64,
    /// The number of this process's run of the data file (see `SlotState::order`).
    run: AtomicU64,
    /// The current trading day as a daily bar's `t` (its date at 00:00 UTC), or
    /// `i64::MIN` before it is known; the quote's `o/h/l/v` are that day's.
    trading_day: AtomicI64,
    /// The trading day changed since the last copy (written under the gate).
    trading_day_changed: AtomicBool,
    /// Highest accepted `seq` per publisher fingerprint, with a "changed since the
    /// last copy" flag; written under the gate with the batch it belongs to.
    publisher_seqs: Mutex<HashMap<Arc<str>, (u64, bool)>>,
}

/// Everything that changed since the previous [`SnapshotStore::take_changes`], copied
/// at one consistent moment (see `Inner::gate`).
#[derive(Debug, Default)]
pub struct Changes {
    /// The [`SnapshotStore::generation`] this copy covers.
    pub generation: u64,
    /// In id order, so a removed slot is written before a later slot of its symbol.
    pub symbols: Vec<SymbolChange>,
    pub publishers: Vec<(Arc<str>, u64)>,
    /// The trading day, when it changed (see [`SnapshotStore::trading_day`]).
    pub trading_day: Option<i64>,
}

/// A symbol's full stored state, and its bars changed since the last copy.
#[derive(Debug, Clone)]
pub struct SymbolChange {
    pub id: SymbolId,
    pub symbol: Symbol,
    pub removed: bool,
    pub name: Arc<str>,
    /// Creation order across restarts; the restore recreates symbols in it.
    pub order: u64,
    pub quote: Quote,
    pub bars: Vec<ChangedBars>,
}

#[derive(Default)]
struct Slot {
    /// The quote and version as viewers read them, without taking the lock.
    published: Published,
    info: OnceLock<SymbolInfo>,
    removed: AtomicBool,
    /// Changed since the durable writer last copied it (set under the gate).
    dirty: AtomicBool,
    state: Mutex<SlotState>,
}

/// A slot's quote and version behind a sequence lock: written only by the holder of
/// the slot's lock, read by viewers without writing anything shared. (With the
/// mutex, every viewer's read was a write to the slot's cache line, so the two
/// workers took turns owning every line a flush touched; the version check that
/// starts each symbol's diff stalled on it: issue 13's profile.)
///
/// Writers make `seq` odd, store the fields and the version, then make it even;
/// readers retry while it is odd or changed under them. Every field is an atomic, so
/// a torn read is detected, never undefined.
#[derive(Default)]
#[repr(align(64))]
struct Published {
    seq: AtomicU64,
    /// Number of changes applied to this symbol; a viewer's "what I last sent" marker.
    version: AtomicU64,
    present: AtomicU32,
    values: [AtomicI64; Field::COUNT],
}

impl Published {
    /// Publishes `quote` (the slot's lock is held), counting one change if `changed`.
    fn publish(&self, quote: &Quote, changed: bool) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let (present, values) = quote.to_parts();
        self.present.store(u32::from(present), Ordering::Relaxed);
        for (slot, value) in self.values.iter().zip(values) {
            slot.store(value, Ordering::Relaxed);
        }
        if changed {
            let version = self.version.load(Ordering::Relaxed);
            self.version.store(version + 1, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy of the quote and its version.
    fn read(&self) -> (Quote, u64) {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let present = self.present.load(Ordering::Relaxed) as u16;
                let values = std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed));
                let version = self.version.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == seq {
                    return (Quote::from_parts(present, values), version);
                }
            }
            std::hint::spin_loop();
        }
    }
}

/// What changes under the slot lock. Held only for plain memory work, never across
/// an `.await`.
#[derive(Default)]
struct SlotState {
    quote: Quote,
    history: History,
    name: Arc<str>,
    /// Where the symbol stands in the universe across restarts: the run that created
    /// it (high 32 bits, see [`SnapshotStore::set_run`]) and its id in that run.
    order: u64,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SnapshotStore {
    pub fn new(capacity: usize) -> SnapshotStore {
        let slots = (0..capacity).map(|_| Slot::default()).collect();
        let (changes, _) = watch::channel(0);
        static STORES: AtomicU64 = AtomicU64::new(0);
        SnapshotStore {
            inner: Arc::new(Inner {
                serial: STORES.fetch_add(1, Ordering::Relaxed),
                slots,
                len: AtomicUsize::new(0),
                registry: RwLock::new(HashMap::new()),
                removals: AtomicU64::new(0),
                changes,
                ticks_applied: AtomicU64::new(0),
                gate: RwLock::new(()),
                generation: AtomicU64::new(0),
                run: AtomicU64::new(0),
                trading_day: AtomicI64::new(i64::MIN),
                trading_day_changed: AtomicBool::new(false),
                publisher_seqs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Adds a symbol (or returns the live id: adding is idempotent).
    pub fn add_symbol(
        &self,
        symbol: Symbol,
        name: &str,
        previous_close: Option<Price>,
    ) -> Result<SymbolId, StoreFull> {
        self.upsert_symbol(symbol, Some(name), previous_close)
            .map(|(id, _)| id)
    }

    /// Creates a symbol, or updates the name and reference price of a live one.
    /// Returns the id and whether it was created.
    pub fn upsert_symbol(
        &self,
        symbol: Symbol,
        name: Option<&str>,
        previous_close: Option<Price>,
    ) -> Result<(SymbolId, bool), StoreFull> {
        let _gate = self.change_gate();
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = registry.get(&symbol) {
            drop(registry);
            if name.is_some() || previous_close.is_some() {
                let slot = self.slot(id);
                let mut state = slot.lock();
                if let Some(name) = name {
                    state.name = Arc::from(name);
                }
                if let Some(pc) = previous_close {
                    state.quote.set(Field::Pc, pc.micros());
                    state.quote.derive_change();
                    slot.published.publish(&state.quote, true);
                }
                drop(state);
                self.mark_changed(slot);
                self.notify_change();
            }
            return Ok((id, false));
        }
        let index = self.inner.len.load(Ordering::Acquire);
        let slot = self
            .inner
            .slots
            .get(index)
            .ok_or(StoreFull(self.inner.slots.len()))?;
        let id = SymbolId(index as u32);
        {
            let mut state = slot.lock();
            state.quote = Quote::with_previous_close(previous_close);
            state.name = Arc::from(name.unwrap_or(symbol.as_str()));
            state.order = (self.inner.run.load(Ordering::Relaxed) << 32) | index as u64;
            slot.published.publish(&state.quote, false);
        }
        // The slot at `len` has never been published, so this is its first and only set.
        let _ = slot.info.set(SymbolInfo {
            id,
            symbol: symbol.clone(),
        });
        registry.insert(symbol, id);
        // Publish the slot only once it is fully initialised.
        self.inner.len.store(index + 1, Ordering::Release);
        drop(registry);
        self.mark_changed(slot);
        self.notify_change();
        Ok((id, true))
    }

    /// Removes a symbol from the universe. Its id stays dead (a later re-add gets a new
    /// slot), so viewers can tell "removed" from "changed".
    pub fn remove_symbol(&self, symbol: &Symbol) -> Option<SymbolId> {
        let _gate = self.change_gate();
        let id = self
            .inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(symbol)?;
        self.slot(id).removed.store(true, Ordering::Release);
        self.mark_changed(self.slot(id));
        self.inner.removals.fetch_add(1, Ordering::Release);
        self.notify_change();
        Some(id)
    }

    pub fn is_removed(&self, id: SymbolId) -> bool {
        self.slot(id).removed.load(Ordering::Acquire)
    }

    /// Changes whenever a symbol is removed.
    pub fn removals(&self) -> u64 {
        self.inner.removals.load(Ordering::Acquire)
    }

    pub fn lookup(&self, symbol: &Symbol) -> Option<SymbolId> {
        self.lookup_str(symbol.as_str())
    }

    /// Looks up an already upper-cased symbol without building a `Symbol`.
    pub fn lookup_str(&self, symbol: &str) -> Option<SymbolId> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(symbol)
            .copied()
    }

    /// Number of slots issued; ids `0..len()` are valid (some may be removed).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, id: SymbolId) -> &Slot {
        &self.inner.slots[id.index()]
    }

    /// The identity of a slot. Panics on an id this store never issued (a bug).
    pub fn info(&self, id: SymbolId) -> &SymbolInfo {
        self.slot(id)
            .info
            .get()
            .expect("ids are only issued after their slot is initialised")
    }

    /// The company name.
    pub fn name(&self, id: SymbolId) -> Arc<str> {
        self.slot(id).lock().name.clone()
    }

    /// Every live symbol, in id order.
    pub fn symbols(&self) -> impl Iterator<Item = &SymbolInfo> + '_ {
        (0..self.len())
            .map(|index| SymbolId(index as u32))
            .filter(|&id| !self.is_removed(id))
            .map(|id| self.info(id))
    }

    /// A number no other store of this process has: with a symbol's id and version
    /// it names one quote for ever (ids are never reused, and every change of a
    /// published quote counts a version), so caches of encoded quotes can key on it.
    pub fn serial(&self) -> u64 {
        self.inner.serial
    }

    /// The symbol's version: one atomic load, the flush loop's cheap "changed?" test.
    pub fn version(&self, id: SymbolId) -> u64 {
        self.slot(id).published.version.load(Ordering::Acquire)
    }

    /// A consistent copy of the quote and the version it corresponds to, read without
    /// the slot's lock (see [`Published`]).
    pub fn read(&self, id: SymbolId) -> (Quote, u64) {
        self.slot(id).published.read()
    }

    /// The newest `limit` bars of one interval, oldest first (memory only; see
    /// [`SnapshotStore::recent_bars`]).
    pub fn bars(&self, id: SymbolId, interval: Interval, limit: usize) -> Vec<Bar> {
        self.recent_bars(id, interval, i64::MIN, i64::MAX, limit)
            .bars
    }

    /// The newest `limit` bars with `from <= t < to` that memory holds, oldest first.
    /// For days, the trading day in progress is a bar too: the quote's `o/h/l/p/v`.
    pub fn recent_bars(
        &self,
        id: SymbolId,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> RecentBars {
        let state = self.slot(id).lock();
        let today = (interval == Interval::OneDay)
            .then(|| self.day_in_progress(&state.quote))
            .flatten();
        let (today, closed_to, closed_limit) = with_day_in_progress(today, from, to, limit);
        let mut recent = state
            .history
            .recent(interval, from, closed_to, closed_limit);
        drop(state);
        if let Some(bar) = today {
            recent.ring_from.get_or_insert(bar.t);
            recent.bars.push(bar);
        }
        recent
    }

    /// Merges bars from elsewhere (a vendor's history) into `id`'s history: those of
    /// buckets before `before` only (from there on, the live trades make the bars,
    /// and a vendor's bar for them would count those trades twice). Daily bars are
    /// merged only for days before the current trading day, whose bar is the quote's.
    /// Each replaces the stored bar of its bucket: a vendor's bar is whole.
    pub fn merge_bars(&self, id: SymbolId, interval: Interval, bars: &[Bar], before: i64) {
        let before = self.merge_cutoff(interval, before);
        let bars: Vec<Bar> = bars.iter().filter(|bar| bar.t < before).copied().collect();
        if bars.is_empty() {
            return;
        }
        let _gate = self.change_gate();
        let slot = self.slot(id);
        if slot.removed.load(Ordering::Acquire) {
            return;
        }
        let spill = self.inner.run.load(Ordering::Relaxed) > 0;
        slot.lock().history.merge(interval, &bars, spill);
        self.mark_changed(slot);
    }

    /// The trading day in progress as a daily bar (the quote's `o/h/l/p/v`), once
    /// it has a trade.
    pub fn day_bar_in_progress(&self, id: SymbolId) -> Option<Bar> {
        self.day_in_progress(&self.read(id).0)
    }

    /// Where merged bars of `interval` stop: `before`, and for days the current
    /// trading day too (its bar is the quote's).
    pub fn merge_cutoff(&self, interval: Interval, before: i64) -> i64 {
        match (interval, self.trading_day()) {
            (Interval::OneDay, Some(today)) => before.min(today),
            _ => before,
        }
    }

    /// The current trading day's bar from the quote, once the day has a trade.
    fn day_in_progress(&self, quote: &Quote) -> Option<Bar> {
        let t = self.trading_day()?;
        let price = |field| quote.get(field).map(Price::from_micros);
        Some(Bar {
            t,
            o: price(Field::O)?,
            h: price(Field::H)?,
            l: price(Field::L)?,
            c: price(Field::P)?,
            v: quote.get(Field::V).unwrap_or(0).max(0) as u64,
        })
    }

    /// The current trading day as a daily bar's `t`, once known.
    pub fn trading_day(&self) -> Option<i64> {
        let day = self.inner.trading_day.load(Ordering::Acquire);
        (day != i64::MIN).then_some(day)
    }

    /// Names the trading day the quotes' `o/h/l/v` belong to (at start-up, when no
    /// stored day says otherwise). Stored with the next commit.
    pub fn set_trading_day(&self, day: i64) {
        let _gate = self.change_gate();
        self.inner.trading_day.store(day, Ordering::Release);
        self.inner
            .trading_day_changed
            .store(true, Ordering::Relaxed);
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Start-up only: the stored trading day.
    pub fn restore_trading_day(&self, day: i64) {
        self.inner.trading_day.store(day, Ordering::Release);
    }

    /// Applies ticks in order (quote and bars together), then wakes waiting viewers
    /// once for the whole batch. Ticks for removed symbols are dropped.
    pub fn apply_batch(&self, ticks: &[Tick]) {
        self.apply_publisher_batch(ticks, None);
    }

    /// [`SnapshotStore::apply_batch`], recording `publisher`'s highest accepted `seq`
    /// together with its ticks: the durable layer stores both or neither, so after a
    /// crash a retried batch is either all duplicates or all new, never counted twice.
    pub fn apply_publisher_batch(&self, ticks: &[Tick], publisher: Option<(&Arc<str>, u64)>) {
        if ticks.is_empty() && publisher.is_none() {
            return;
        }
        let _gate = self.change_gate();
        if let Some((fingerprint, seq)) = publisher {
            let mut seqs = self.publisher_seqs();
            let entry = seqs.entry(fingerprint.clone()).or_insert((seq, true));
            if seq >= entry.0 {
                *entry = (seq, true);
            }
        }
        // A data file is attached once it numbered this run: it takes changed bars.
        let spill = self.inner.run.load(Ordering::Relaxed) > 0;
        for tick in ticks {
            let slot = self.slot(tick.symbol);
            if slot.removed.load(Ordering::Acquire) {
                continue;
            }
            let mut state = slot.lock();
            let in_order = state.quote.get(Field::T).is_none_or(|t| tick.ts >= t);
            if let Some(price) = tick.price {
                state
                    .history
                    .record_trade(tick.ts, price, tick.size.unwrap_or(0), in_order, spill);
            }
            state.quote.apply(tick);
            slot.published.publish(&state.quote, true);
            drop(state);
            slot.dirty.store(true, Ordering::Relaxed);
        }
        self.inner.generation.fetch_add(1, Ordering::Release);
        self.inner
            .ticks_applied
            .fetch_add(ticks.len() as u64, Ordering::Relaxed);
        self.notify_change();
    }

    /// Replaces a symbol's quote (a cluster resync), bumping its version only when
    /// something changed so viewers send just the difference. Bars are kept.
    pub fn replace_quote(&self, id: SymbolId, quote: Quote) {
        let _gate = self.change_gate();
        let slot = self.slot(id);
        let mut state = slot.lock();
        if state.quote != quote {
            state.quote = quote;
            slot.published.publish(&state.quote, true);
            drop(state);
            self.mark_changed(slot);
            self.notify_change();
        }
    }

    /// Starts trading day `day` (a daily bar's `t`) for every symbol: the day that
    /// ends becomes a daily bar (if the symbol traded in it), the last price becomes
    /// the reference (`pc`), volume restarts at zero and open/high/low wait for the
    /// next trade. Intraday bars are not touched.
    pub fn roll_over(&self, day: i64) {
        let _gate = self.change_gate();
        if self.trading_day().is_some_and(|current| current >= day) {
            // Already that day (or a later one): rolling again would zero its volume.
            return;
        }
        self.inner
            .trading_day_changed
            .store(true, Ordering::Relaxed);
        for id in (0..self.len()).map(|i| SymbolId(i as u32)) {
            let slot = self.slot(id);
            if slot.removed.load(Ordering::Acquire) {
                continue;
            }
            let mut state = slot.lock();
            if let Some(bar) = self.day_in_progress(&state.quote).filter(|bar| bar.t < day) {
                state.history.put_day(bar);
            }
            state.quote.roll_over();
            slot.published.publish(&state.quote, true);
            drop(state);
            self.mark_changed(slot);
        }
        self.inner.trading_day.store(day, Ordering::Release);
        self.inner.generation.fetch_add(1, Ordering::Release);
        self.notify_change();
    }

    /// A shared hold on the consistent-cut gate, for the length of one change.
    fn change_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.inner
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a slot for the durable writer and counts one change (gate held).
    fn mark_changed(&self, slot: &Slot) {
        slot.dirty.store(true, Ordering::Relaxed);
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    fn publisher_seqs(&self) -> MutexGuard<'_, HashMap<Arc<str>, (u64, bool)>> {
        self.inner
            .publisher_seqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of changes made so far. A change is stored once a commit covered
    /// the generation read after it was made.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The highest stored or accepted `seq` of a publisher (restored at start-up).
    pub fn publisher_seq(&self, fingerprint: &str) -> Option<u64> {
        self.publisher_seqs().get(fingerprint).map(|&(seq, _)| seq)
    }

    /// Copies every change since the last call at one consistent moment: the gate
    /// is held exclusively, so no batch is half applied and every applied batch's
    /// `seq` is in the same copy. Cheap: the writer does the I/O after releasing it.
    pub fn take_changes(&self) -> Changes {
        let _exclusive = self
            .inner
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation();
        let mut symbols = Vec::new();
        for index in 0..self.len() {
            let slot = &self.inner.slots[index];
            if !slot.dirty.swap(false, Ordering::Relaxed) {
                continue;
            }
            let mut state = slot.lock();
            symbols.push(SymbolChange {
                id: SymbolId(index as u32),
                symbol: self.info(SymbolId(index as u32)).symbol.clone(),
                removed: slot.removed.load(Ordering::Acquire),
                name: state.name.clone(),
                order: state.order,
                quote: state.quote,
                bars: state.history.take_changed(),
            });
        }
        let mut publishers = Vec::new();
        for (fingerprint, (seq, changed)) in self.publisher_seqs().iter_mut() {
            if std::mem::take(changed) {
                publishers.push((fingerprint.clone(), *seq));
            }
        }
        let trading_day = self
            .inner
            .trading_day_changed
            .swap(false, Ordering::Relaxed)
            .then(|| self.trading_day())
            .flatten();
        Changes {
            generation,
            symbols,
            publishers,
            trading_day,
        }
    }

    /// Marks everything in a copy whose commit failed as changed again, so the next
    /// copy takes it (at its then current state) instead of the writer keeping old
    /// copies for as long as the disk fails.
    pub fn requeue(&self, changes: &Changes) {
        for change in &changes.symbols {
            let slot = self.slot(change.id);
            let mut state = slot.lock();
            for changed in &change.bars {
                state.history.requeue(changed);
            }
            drop(state);
            slot.dirty.store(true, Ordering::Relaxed);
        }
        if changes.trading_day.is_some() {
            self.inner
                .trading_day_changed
                .store(true, Ordering::Relaxed);
        }
        let mut seqs = self.publisher_seqs();
        for (fingerprint, _) in &changes.publishers {
            if let Some(entry) = seqs.get_mut(fingerprint) {
                entry.1 = true;
            }
        }
    }

    /// Start-up only, before anything else runs: puts back a stored symbol's name,
    /// quote and bars, creating it if the universe file does not have it. Not marked
    /// changed: it is what the file already holds.
    pub fn restore_symbol(
        &self,
        symbol: Symbol,
        name: &str,
        order: u64,
        quote: Quote,
        bars: Vec<(Interval, Vec<Bar>)>,
    ) -> Result<SymbolId, StoreFull> {
        let (id, _) = self.upsert_symbol(symbol, Some(name), None)?;
        let slot = self.slot(id);
        let mut state = slot.lock();
        state.quote = quote;
        state.order = order;
        for (interval, bars) in bars {
            state.history.restore(interval, bars);
        }
        slot.published.publish(&state.quote, false);
        drop(state);
        slot.dirty.store(false, Ordering::Relaxed);
        Ok(id)
    }

    /// Start-up only: numbers this run of the data file, so symbols created from now
    /// on sort after every stored one (their `order`'s high 32 bits).
    pub fn set_run(&self, run: u64) {
        self.inner.run.store(run, Ordering::Relaxed);
    }

    /// Start-up only: a symbol removed at run time stays removed.
    pub fn restore_removal(&self, symbol: &Symbol) {
        if let Some(id) = self.remove_symbol(symbol) {
            self.slot(id).dirty.store(false, Ordering::Relaxed);
        }
    }

    /// Start-up only: a publisher's stored highest `seq`.
    pub fn restore_publisher_seq(&self, fingerprint: &str, seq: u64) {
        self.publisher_seqs()
            .insert(Arc::from(fingerprint), (seq, false));
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

    #[test]
    fn reads_racing_writes_see_a_quote_and_its_version_together() {
        let store = SnapshotStore::new(1);
        let id = store
            .add_symbol(Symbol::parse("AAPL").unwrap(), "Apple", None)
            .unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 1..=20_000i64 {
                    store.apply_batch(&[Tick {
                        symbol: id,
                        price: Price::parse(&(100 + n % 50).to_string()).ok(),
                        size: Some(1),
                        ts: n,
                        ..Tick::default()
                    }]);
                }
            })
        };
        // Every tick adds 1 to the volume and 1 to the version, and sets `t` to its
        // number: a torn read would show them apart.
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let (quote, version) = store.read(id);
            let v = quote.get(Field::V).unwrap_or(0);
            assert_eq!(v as u64, version, "{quote:?}");
            assert_eq!(quote.get(Field::T).unwrap_or(0), v);
            reads += 1;
        }
        writer.join().unwrap();
        assert_eq!(store.read(id).1, 20_000);
    }

    #[test]
    fn every_copy_of_changes_is_a_consistent_cut_of_volume_and_seq() {
        let store = store_with(&["AAPL"]);
        let publisher: Arc<str> = Arc::from("p");
        let writer = {
            let store = store.clone();
            let publisher = publisher.clone();
            std::thread::spawn(move || {
                for seq in 1..=20_000u64 {
                    let tick = Tick {
                        symbol: SymbolId(0),
                        price: Price::parse("101").ok(),
                        size: Some(1),
                        ts: seq as i64,
                        ..Tick::default()
                    };
                    store.apply_publisher_batch(&[tick], Some((&publisher, seq)));
                }
            })
        };
        // Every batch adds 1 to the volume and carries seq = its number: a copy
        // taken between the two would store a seq that its volume does not match.
        let mut copies = 0;
        while !writer.is_finished() || copies == 0 {
            let changes = store.take_changes();
            let seq = changes.publishers.first().map(|&(_, seq)| seq);
            let volume = changes.symbols.first().and_then(|s| s.quote.get(Field::V));
            assert_eq!(seq.map(|s| s as i64), volume, "{changes:?}");
            copies += 1;
        }
        writer.join().unwrap();
        assert_eq!(store.publisher_seq("p"), Some(20_000));
    }

    #[test]
    fn a_requeued_copy_is_taken_again_with_its_bars() {
        let store = store_with(&["AAPL", "MSFT"]);
        let publisher: Arc<str> = Arc::from("p");
        let tick = Tick {
            symbol: SymbolId(1),
            price: Price::parse("101").ok(),
            size: Some(3),
            ts: 1_000,
            ..Tick::default()
        };
        store.apply_publisher_batch(&[tick], Some((&publisher, 9)));
        let failed = store.take_changes();
        assert!(store.take_changes().symbols.is_empty(), "taken once");
        store.requeue(&failed);
        let again = store.take_changes();
        assert_eq!(again.publishers, vec![(publisher, 9)]);
        let ids: Vec<_> = again.symbols.iter().map(|s| s.id).collect();
        let failed_ids: Vec<_> = failed.symbols.iter().map(|s| s.id).collect();
        assert_eq!(ids, failed_ids);
        let msft = again.symbols.iter().find(|s| s.id == SymbolId(1)).unwrap();
        assert_eq!(msft.bars.len(), 2, "both intervals' bars again");
        assert_eq!(msft.bars[0].bars[0].v, 3);
    }

    #[test]
    fn removed_symbols_disappear_and_come_back_with_a_new_id() {
        let store = store_with(&["AAPL", "MSFT"]);
        let aapl = Symbol::parse("AAPL").unwrap();
        let before = store.removals();
        assert_eq!(store.remove_symbol(&aapl), Some(SymbolId(0)));
        assert!(store.is_removed(SymbolId(0)) && store.removals() > before);
        assert_eq!(store.lookup(&aapl), None);
        assert_eq!(store.symbols().count(), 1);
        assert_eq!(store.remove_symbol(&aapl), None);
        let (id, created) = store.upsert_symbol(aapl, Some("Apple"), None).unwrap();
        assert_eq!((id, created), (SymbolId(2), true));
    }

    #[test]
    fn upsert_updates_name_and_reference_price() {
        let store = store_with(&["AAPL"]);
        let aapl = Symbol::parse("AAPL").unwrap();
        store.apply_batch(&[Tick {
            symbol: SymbolId(0),
            price: Price::parse("110").ok(),
            ts: 1,
            ..Tick::default()
        }]);
        let (id, created) = store
            .upsert_symbol(aapl, Some("Apple Inc."), Price::parse("100").ok())
            .unwrap();
        assert_eq!((id, created), (SymbolId(0), false));
        assert_eq!(&*store.name(id), "Apple Inc.");
        let (quote, _) = store.read(id);
        assert_eq!(quote.get(Field::D), Some(10_000_000));
        assert_eq!(quote.get(Field::Dp), Some(1_000));
    }

    #[test]
    fn roll_over_makes_the_last_price_the_reference() {
        let store = store_with(&["AAPL"]);
        store.apply_batch(&[Tick {
            symbol: SymbolId(0),
            price: Price::parse("105").ok(),
            size: Some(9),
            ts: 1,
            ..Tick::default()
        }]);
        const DAY: i64 = 86_400_000;
        store.set_trading_day(DAY);
        store.roll_over(2 * DAY);
        let (quote, version) = store.read(SymbolId(0));
        assert_eq!(quote.price(Field::Pc), Price::parse("105").ok());
        assert_eq!(
            (
                quote.get(Field::V),
                quote.get(Field::D),
                quote.get(Field::Dp)
            ),
            (Some(0), Some(0), Some(0))
        );
        assert_eq!(
            (
                quote.get(Field::O),
                quote.get(Field::H),
                quote.get(Field::L)
            ),
            (None, None, None)
        );
        assert_eq!(version, 2);
        assert_eq!(
            store.bars(SymbolId(0), Interval::OneMinute, 10).len(),
            1,
            "bars keep flowing"
        );
        let days = store.bars(SymbolId(0), Interval::OneDay, 10);
        let p105 = Price::parse("105").unwrap();
        assert_eq!(
            days,
            vec![Bar {
                t: DAY,
                o: p105,
                h: p105,
                l: p105,
                c: p105,
                v: 9
            }],
            "the day that ended is a daily bar; the new day has no trade yet"
        );
        store.roll_over(2 * DAY);
        assert_eq!(
            store.read(SymbolId(0)).1,
            2,
            "the same day never rolls twice"
        );
    }

    #[test]
    fn merged_vendor_bars_stop_where_live_trades_begin() {
        let store = store_with(&["AAPL"]);
        const DAY: i64 = 86_400_000;
        store.set_trading_day(10 * DAY);
        let p = |text| Price::parse(text).unwrap();
        let bar = |t, c, v| Bar {
            t,
            o: p(c),
            h: p(c),
            l: p(c),
            c: p(c),
            v,
        };
        // Live trades from minute 2 on; the vendor has minutes 0..=3.
        store.apply_batch(&[Tick {
            symbol: SymbolId(0),
            price: Some(p("7")),
            size: Some(1),
            ts: 2 * 60_000 + 5,
            ..Tick::default()
        }]);
        let vendor: Vec<Bar> = (0..4).map(|m| bar(m * 60_000, "6.5", 100)).collect();
        store.merge_bars(SymbolId(0), Interval::OneMinute, &vendor, 2 * 60_000);
        let minutes = store.bars(SymbolId(0), Interval::OneMinute, 10);
        assert_eq!(
            minutes,
            vec![
                bar(0, "6.5", 100),
                bar(60_000, "6.5", 100),
                bar(120_000, "7", 1)
            ],
            "the vendor fills what came before; the live bar is not counted twice"
        );
        // Daily bars: only days before the current trading day (its bar is the quote's).
        let days: Vec<Bar> = (8..=10).map(|d| bar(d * DAY, "6", 50)).collect();
        store.merge_bars(SymbolId(0), Interval::OneDay, &days, i64::MAX);
        let ts: Vec<i64> = store
            .bars(SymbolId(0), Interval::OneDay, 10)
            .iter()
            .map(|bar| bar.t)
            .collect();
        assert_eq!(ts, vec![8 * DAY, 9 * DAY, 10 * DAY]);
        assert_eq!(
            store.bars(SymbolId(0), Interval::OneDay, 10)[2].c,
            p("7"),
            "today is the quote"
        );
    }

    #[test]
    fn the_day_in_progress_is_the_newest_daily_bar() {
        let store = store_with(&["AAPL"]);
        const DAY: i64 = 86_400_000;
        let trade = |price: &str, size| Tick {
            symbol: SymbolId(0),
            price: Price::parse(price).ok(),
            size: Some(size),
            ts: 5,
            ..Tick::default()
        };
        store.apply_batch(&[trade("10", 1)]);
        assert!(
            store.bars(SymbolId(0), Interval::OneDay, 10).is_empty(),
            "no trading day known yet"
        );
        store.set_trading_day(DAY);
        store.apply_batch(&[trade("12.5", 2), trade("9.75", 3)]);
        let today = store.recent_bars(SymbolId(0), Interval::OneDay, 0, i64::MAX, 10);
        assert_eq!(today.bars.len(), 1);
        let bar = today.bars[0];
        assert_eq!(
            (bar.t, bar.o, bar.c, bar.v),
            (
                DAY,
                Price::parse("10").unwrap(),
                Price::parse("9.75").unwrap(),
                6
            )
        );
        assert!(
            store
                .recent_bars(SymbolId(0), Interval::OneDay, 0, DAY, 10)
                .bars
                .is_empty(),
            "`to` is exclusive"
        );
    }
}
