//! The quotes this worker's viewers were last sent: one copy per symbol and version,
//! shared by every viewer of the worker that was last sent that version.
//!
//! Why: the diff sends only the fields that differ from what the client last saw
//! (contract §1), so for every subscription something must remember that quote. Each
//! subscription used to keep its own copy: 112 of an entry's 128 bytes, 2.2 KiB of a
//! 20-symbol viewer, and the cache lines a flush missed most (issue 13's profile,
//! docs/BENCHMARKS.md). But a worker's viewers were all sent quotes of the same
//! store, and at any moment only a few versions of each symbol: the ones sent in the
//! last flush interval. So the worker keeps each (symbol, version) that some of its
//! viewers were last sent, counting those viewers, and a subscription keeps only a
//! handle to it. A version nobody holds any more is dropped at once, so memory
//! follows the distinct versions in use, never the tick rate.
//!
//! Handles are slab indexes, so every lookup on the flush path is one index: the
//! version a viewer was last sent through its handle, the symbol's current version
//! through the symbol's newest handle. The table is the worker's (a thread-local),
//! like the encoded fragments: nothing here is shared between workers or locked. A
//! [`super::Subscriptions`] therefore stays on the thread that made it (it is not
//! `Send`) and gives its holds back when dropped.

use std::cell::RefCell;

use crate::domain::{Quote, SymbolId};
use crate::store::SnapshotStore;

thread_local! {
    static SENT: RefCell<SentQuotes> = RefCell::new(SentQuotes::default());
}

/// Runs `f` with this worker's table.
pub fn with_sent<R>(f: impl FnOnce(&mut SentQuotes) -> R) -> R {
    SENT.with_borrow_mut(f)
}

/// Gives back holds from a drop, which may run while the thread is being torn down
/// (its table already gone: then there is nothing left to give back to).
pub fn release_all(holds: impl Iterator<Item = Held>) {
    let _ = SENT.try_with(|sent| match sent.try_borrow_mut() {
        Ok(mut sent) => holds.for_each(|held| sent.release(held)),
        Err(_) => debug_assert!(false, "a subscription dropped inside the table's own use"),
    });
}

/// A hold on one (symbol, version) of the table; `NONE` holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held(u32);

impl Held {
    pub const NONE: Held = Held(u32::MAX);

    pub fn is_none(self) -> bool {
        self == Held::NONE
    }
}

/// The version of a free node.
const FREED: u64 = u64::MAX;

/// One worker's held quotes.
#[derive(Default)]
pub struct SentQuotes {
    slab: Vec<Node>,
    /// Free slab slots, reused before the slab grows.
    free: Vec<u32>,
    /// By symbol index: the handle of its newest node, if any (a hint, checked on use).
    newest: Vec<Held>,
}

struct Node {
    /// The store ([`SnapshotStore::serial`]), symbol and version this quote is: with
    /// these three it is that quote for ever.
    store: u64,
    id: SymbolId,
    version: u64,
    /// Subscriptions on this worker whose client was last sent this quote (0: just
    /// added by [`SentQuotes::current`], or free).
    holders: u32,
    quote: Quote,
}

impl SentQuotes {
    /// The node for `id`'s quote at `version` (its current version a moment ago) in
    /// `store`: this worker's copy if it has one, else read from the store and added
    /// without holders. The store may have moved on since `version` was loaded; the
    /// returned node is then the newer quote.
    pub fn current(&mut self, store: &SnapshotStore, id: SymbolId, version: u64) -> Held {
        let serial = store.serial();
        let index = id.index();
        if index >= self.newest.len() {
            self.newest.resize(index + 1, Held::NONE);
        }
        let newest = self.newest[index];
        if self.is(newest, serial, id, version) {
            return newest;
        }
        let (quote, version) = store.read(id);
        if self.is(newest, serial, id, version) {
            return newest;
        }
        let node = Node {
            store: serial,
            id,
            version,
            holders: 0,
            quote,
        };
        let held = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = node;
                Held(slot)
            }
            None => {
                self.slab.push(node);
                Held(self.slab.len() as u32 - 1)
            }
        };
        self.newest[index] = held;
        held
    }

    fn is(&self, held: Held, store: u64, id: SymbolId, version: u64) -> bool {
        self.slab
            .get(held.0 as usize)
            .is_some_and(|node| node.store == store && node.id == id && node.version == version)
    }

    pub fn quote(&self, held: Held) -> &Quote {
        &self.slab[held.0 as usize].quote
    }

    pub fn version(&self, held: Held) -> u64 {
        self.slab[held.0 as usize].version
    }

    /// Moves one subscription's hold from `from` (`NONE`: it held nothing) to `to`, and
    /// frees `from` if that was its last holder.
    pub fn advance(&mut self, from: Held, to: Held) {
        self.slab[to.0 as usize].holders += 1;
        self.release(from);
    }

    /// Frees `held` if nobody holds it: a node [`SentQuotes::current`] added for a
    /// quote that was then not sent.
    pub fn forget_unheld(&mut self, held: Held) {
        if self.slab[held.0 as usize].holders == 0 {
            self.free_node(held);
        }
    }

    /// Gives back one hold on `held` (`NONE`: nothing).
    pub fn release(&mut self, held: Held) {
        if held.is_none() {
            return;
        }
        let node = &mut self.slab[held.0 as usize];
        debug_assert!(node.holders > 0, "released a hold never taken");
        node.holders = node.holders.saturating_sub(1);
        if node.holders == 0 {
            self.free_node(held);
        }
    }

    fn free_node(&mut self, held: Held) {
        let node = &mut self.slab[held.0 as usize];
        // No quote has this version: a freed node never matches a lookup.
        node.version = FREED;
        let index = node.id.index();
        self.free.push(held.0);
        if self.newest.get(index) == Some(&held) {
            self.newest[index] = Held::NONE;
        }
    }

    /// Nodes in use (held or just added).
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.slab.len() - self.free.len()
    }
}
