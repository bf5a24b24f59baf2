//! One connection's subscriptions and what it was last sent: the diff that gives
//! conflation, batching and minimal payloads in one mechanism.
//!
//! For every subscribed symbol the session remembers the store version and the quote
//! it last sent. On a flush it compares versions (one atomic load per symbol), copies
//! only the quotes that moved, and writes only the fields that differ. However many
//! ticks arrived in between, the client gets one entry per symbol with the latest
//! values, so memory is proportional to subscriptions, never to the tick rate.

use std::collections::HashSet;
use std::sync::Arc;

use super::fragments::{with_fragments, Fragments};
use crate::domain::{FieldSet, Quote, Symbol, SymbolId};
use crate::store::SnapshotStore;

/// Marks a symbol whose quote was never sent: everything it has is new to the client.
const NEVER_SENT: u64 = u64::MAX;

#[derive(Debug, Clone)]
struct Entry {
    id: SymbolId,
    seen_version: u64,
    sent: Quote,
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Partial quotes written into the update.
    pub quotes: usize,
    /// Ticks folded into those quotes beyond the one each quote represents.
    pub conflated: u64,
}

/// The subscribed set, sorted by id.
#[derive(Debug, Default)]
pub struct Subscriptions {
    entries: Vec<Entry>,
    /// Subscribed to "*": every symbol, including ones added later.
    wildcard: bool,
    /// How much of the store the wildcard has already taken in.
    wildcard_covers: usize,
    /// Symbols that lost a field since they were sent: they go out in full.
    resend: Vec<SymbolId>,
    /// The viewer's entitlements (from its token); `None` = every symbol.
    entitled: Option<Arc<HashSet<Symbol>>>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Limits this connection to the given symbols (a token's entitlements).
    pub fn restrict_to(&mut self, entitled: HashSet<Symbol>) {
        self.entitled = Some(Arc::new(entitled));
    }

    /// Whether the viewer may receive `id`.
    pub fn permits(&self, store: &SnapshotStore, id: SymbolId) -> bool {
        self.entitled
            .as_ref()
            .is_none_or(|set| set.contains(&store.info(id).symbol))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    pub fn contains(&self, id: SymbolId) -> bool {
        self.position(id).is_ok()
    }

    fn position(&self, id: SymbolId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |e| e.id)
    }

    pub fn ids(&self) -> impl Iterator<Item = SymbolId> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Adds symbols; returns the ones that were not already subscribed (in id order).
    pub fn add(&mut self, ids: &[SymbolId]) -> Vec<SymbolId> {
        let mut added = Vec::new();
        // Exactly what may be needed, not the doubling growth of one insert at a time:
        // an entry is 128 bytes, and 20 symbols would otherwise hold 32 of them.
        self.entries.reserve_exact(ids.len());
        for &id in ids {
            if let Err(at) = self.position(id) {
                self.entries.insert(
                    at,
                    Entry {
                        id,
                        seen_version: NEVER_SENT,
                        sent: Quote::default(),
                    },
                );
                added.push(id);
            }
        }
        added.sort_unstable();
        added
    }

    /// Subscribes to every symbol, now and later; returns the newly added ones.
    pub fn add_all(&mut self, store: &SnapshotStore) -> Vec<SymbolId> {
        self.wildcard = true;
        self.wildcard_covers = 0;
        self.follow_new_symbols(store)
    }

    /// With the wildcard on, takes in symbols added to the store since the last call.
    /// They are marked never-sent, so the next update carries all their fields.
    pub fn follow_new_symbols(&mut self, store: &SnapshotStore) -> Vec<SymbolId> {
        if !self.wildcard {
            return Vec::new();
        }
        let len = store.len();
        if len == self.wildcard_covers {
            return Vec::new();
        }
        let new: Vec<SymbolId> = (self.wildcard_covers..len)
            .map(|i| SymbolId(i as u32))
            .filter(|&id| !store.is_removed(id) && self.permits(store, id))
            .collect();
        self.wildcard_covers = len;
        self.add(&new)
    }

    /// Removes symbols. Removing any symbol ends the wildcard: the set becomes explicit.
    pub fn remove(&mut self, ids: &[SymbolId]) {
        if !ids.is_empty() {
            self.wildcard = false;
        }
        for &id in ids {
            if let Ok(at) = self.position(id) {
                self.entries.remove(at);
            }
        }
        self.release_spare();
    }

    /// Gives back capacity that removals left unused (memory follows the set).
    fn release_spare(&mut self) {
        if self.entries.capacity() > 2 * self.entries.len() + 8 {
            self.entries.shrink_to_fit();
        }
    }

    /// Drops symbols the store removed from the universe; returns them.
    pub fn drop_removed(&mut self, store: &SnapshotStore) -> Vec<SymbolId> {
        let mut removed = Vec::new();
        self.entries.retain(|entry| {
            let gone = store.is_removed(entry.id);
            if gone {
                removed.push(entry.id);
            }
            !gone
        });
        self.release_spare();
        removed
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.wildcard = false;
        self.resend.clear();
    }

    /// Writes full quotes, comma-separated, for `ids` (or every subscribed symbol when
    /// `None`), and restarts the diff baseline from them. Returns how many were written.
    pub fn write_snapshot(
        &mut self,
        store: &SnapshotStore,
        ids: Option<&[SymbolId]>,
        out: &mut Vec<u8>,
    ) -> usize {
        with_fragments(|fragments| self.write_snapshot_from(fragments, store, ids, out))
    }

    fn write_snapshot_from(
        &mut self,
        fragments: &mut Fragments,
        store: &SnapshotStore,
        ids: Option<&[SymbolId]>,
        out: &mut Vec<u8>,
    ) -> usize {
        let mut written = 0;
        let serial = store.serial();
        let mut write = |entry: &mut Entry, out: &mut Vec<u8>| {
            let (quote, version) = store.read(entry.id);
            if written > 0 {
                out.push(b',');
            }
            let symbol = store.info(entry.id).symbol.as_str();
            fragments.write_json(
                serial,
                entry.id,
                version,
                symbol,
                &quote,
                FieldSet::ALL,
                out,
            );
            entry.sent = quote;
            entry.seen_version = version;
            written += 1;
        };
        match ids {
            None => {
                for entry in &mut self.entries {
                    write(entry, out);
                }
            }
            Some(ids) => {
                for &id in ids {
                    if let Ok(at) = self.entries.binary_search_by_key(&id, |e| e.id) {
                        write(&mut self.entries[at], out);
                    }
                }
            }
        }
        written
    }

    /// Writes comma-separated partial quotes of every symbol that changed since it was
    /// last sent, and records them as sent. Symbols that lost a field are queued for
    /// [`Subscriptions::take_resend`] instead.
    pub fn write_update(&mut self, store: &SnapshotStore, out: &mut Vec<u8>) -> FlushStats {
        with_fragments(|fragments| self.write_update_from(fragments, store, out))
    }

    fn write_update_from(
        &mut self,
        fragments: &mut Fragments,
        store: &SnapshotStore,
        out: &mut Vec<u8>,
    ) -> FlushStats {
        let serial = store.serial();
        let mut stats = FlushStats::default();
        for entry in &mut self.entries {
            if store.version(entry.id) == entry.seen_version {
                continue;
            }
            let (quote, version) = store.read(entry.id);
            let first_time = entry.seen_version == NEVER_SENT;
            if !first_time {
                stats.conflated += version.saturating_sub(entry.seen_version).saturating_sub(1);
            }
            if quote.lost_fields_since(&entry.sent) {
                self.resend.push(entry.id);
                continue;
            }
            entry.seen_version = version;
            let changed = quote.changed_since(&entry.sent);
            // A symbol the client has never been sent goes out even with no fields, so a
            // wildcard subscriber learns that it exists.
            if changed.is_empty() && !first_time {
                continue;
            }
            if stats.quotes > 0 {
                out.push(b',');
            }
            let symbol = store.info(entry.id).symbol.as_str();
            fragments.write_json(serial, entry.id, version, symbol, &quote, changed, out);
            entry.sent = quote;
            stats.quotes += 1;
        }
        stats
    }

    /// Symbols that must be re-sent as a snapshot (a field was removed upstream).
    pub fn take_resend(&mut self) -> Vec<SymbolId> {
        std::mem::take(&mut self.resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Price, Symbol, Tick};

    fn store() -> SnapshotStore {
        let store = SnapshotStore::new(16);
        for s in ["AAPL", "MSFT", "NVDA"] {
            store
                .add_symbol(Symbol::parse(s).unwrap(), s, Price::parse("100").ok())
                .unwrap();
        }
        store
    }

    fn trade(id: u32, price: &str, ts: i64) -> Tick {
        Tick {
            symbol: SymbolId(id),
            price: Price::parse(price).ok(),
            size: Some(10),
            ts,
            ..Tick::default()
        }
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn update_carries_only_changed_fields_once_per_symbol() {
        let store = store();
        let mut subs = Subscriptions::default();
        subs.add(&[SymbolId(0), SymbolId(1)]);
        let mut out = Vec::new();
        subs.write_snapshot(&store, None, &mut out);
        assert_eq!(text(&out), r#"{"s":"AAPL","pc":100},{"s":"MSFT","pc":100}"#);

        store.apply_batch(&[trade(0, "101", 1), trade(0, "102", 2), trade(2, "5", 3)]);
        out.clear();
        let stats = subs.write_update(&store, &mut out);
        assert_eq!(
            text(&out),
            r#"{"s":"AAPL","p":102,"v":20,"o":101,"h":102,"l":101,"d":2,"dp":2,"t":2}"#
        );
        assert_eq!(
            stats,
            FlushStats {
                quotes: 1,
                conflated: 1
            }
        );

        store.apply_batch(&[trade(0, "102", 3)]);
        out.clear();
        subs.write_update(&store, &mut out);
        assert_eq!(text(&out), r#"{"s":"AAPL","v":30,"t":3}"#);

        out.clear();
        assert_eq!(subs.write_update(&store, &mut out).quotes, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn wildcard_follows_new_symbols_and_ends_on_remove() {
        let store = store();
        let mut subs = Subscriptions::default();
        assert_eq!(subs.add_all(&store).len(), 3);
        store
            .add_symbol(Symbol::parse("TSLA").unwrap(), "Tesla", None)
            .unwrap();
        assert_eq!(subs.follow_new_symbols(&store), vec![SymbolId(3)]);
        let mut out = Vec::new();
        subs.write_update(&store, &mut out);
        assert!(text(&out).contains(r#"{"s":"TSLA"}"#), "{}", text(&out));
        subs.remove(&[SymbolId(0)]);
        assert!(!subs.is_wildcard());
        assert_eq!(subs.len(), 3);
    }

    #[test]
    fn add_reports_only_new_symbols() {
        let mut subs = Subscriptions::default();
        assert_eq!(
            subs.add(&[SymbolId(2), SymbolId(0)]),
            vec![SymbolId(0), SymbolId(2)]
        );
        assert_eq!(subs.add(&[SymbolId(2), SymbolId(1)]), vec![SymbolId(1)]);
        assert_eq!(
            subs.ids().collect::<Vec<_>>(),
            vec![SymbolId(0), SymbolId(1), SymbolId(2)]
        );
    }
}
