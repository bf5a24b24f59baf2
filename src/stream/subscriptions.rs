//! One connection's subscriptions and what it was last sent: the diff that gives
//! conflation, batching and minimal payloads in one mechanism.
//!
//! For every subscribed symbol the viewer holds the quote it last sent, with its
//! store version, in its worker's table of sent quotes (`super::sent`), which keeps
//! one copy per version for all the worker's viewers. On a flush it compares
//! versions (one atomic load per symbol), and for the symbols that moved writes only
//! the fields that differ between the quote it holds and the current one. However
//! many ticks arrived in between, the client gets one entry per symbol with the
//! latest values, so memory is proportional to subscriptions, never to the tick rate.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;

use super::fragments::{with_fragments, Fragments};
use super::sent::{self, with_sent, Held, SentQuotes};
use crate::domain::{FieldSet, Symbol, SymbolId};
use crate::store::SnapshotStore;

/// 8 bytes: the quote last sent, and its version, are the worker's ([`super::sent`]).
#[derive(Debug)]
struct Entry {
    id: SymbolId,
    /// The quote last sent, in the worker's table; `Held::NONE`: never sent, so
    /// everything the symbol has is new to the client.
    sent: Held,
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
    /// Not `Send`: the entries hold quotes in this thread's table of sent quotes, and
    /// give them back there when dropped.
    _worker: PhantomData<*const ()>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        sent::release_all(self.entries.iter().map(|entry| entry.sent));
    }
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
        // 20 symbols would otherwise hold 32 entries.
        self.entries.reserve_exact(ids.len());
        for &id in ids {
            if let Err(at) = self.position(id) {
                self.entries.insert(
                    at,
                    Entry {
                        id,
                        sent: Held::NONE,
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
                let entry = self.entries.remove(at);
                sent::release_all(std::iter::once(entry.sent));
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
                sent::release_all(std::iter::once(entry.sent));
            }
            !gone
        });
        self.release_spare();
        removed
    }

    pub fn clear(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        sent::release_all(entries.iter().map(|entry| entry.sent));
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
        with_sent(|sent| {
            with_fragments(|fragments| self.write_snapshot_from(sent, fragments, store, ids, out))
        })
    }

    fn write_snapshot_from(
        &mut self,
        sent: &mut SentQuotes,
        fragments: &mut Fragments,
        store: &SnapshotStore,
        ids: Option<&[SymbolId]>,
        out: &mut Vec<u8>,
    ) -> usize {
        let mut written = 0;
        let serial = store.serial();
        let mut write = |entry: &mut Entry, out: &mut Vec<u8>| {
            let now = sent.current(store, entry.id, store.version(entry.id));
            if written > 0 {
                out.push(b',');
            }
            let symbol = store.info(entry.id).symbol.as_str();
            let version = sent.version(now);
            let quote = sent.quote(now);
            fragments.write_json(serial, entry.id, version, symbol, quote, FieldSet::ALL, out);
            sent.advance(entry.sent, now);
            entry.sent = now;
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
        with_sent(|sent| {
            with_fragments(|fragments| self.write_update_from(sent, fragments, store, out))
        })
    }

    fn write_update_from(
        &mut self,
        sent: &mut SentQuotes,
        fragments: &mut Fragments,
        store: &SnapshotStore,
        out: &mut Vec<u8>,
    ) -> FlushStats {
        let serial = store.serial();
        let mut stats = FlushStats::default();
        for entry in &mut self.entries {
            let version = store.version(entry.id);
            let first_time = entry.sent.is_none();
            if !first_time && sent.version(entry.sent) == version {
                continue;
            }
            let now = sent.current(store, entry.id, version);
            let version = sent.version(now);
            let quote = sent.quote(now);
            let changed = if first_time {
                quote.present()
            } else {
                let before = sent.quote(entry.sent);
                let seen = sent.version(entry.sent);
                stats.conflated += version.saturating_sub(seen).saturating_sub(1);
                if quote.lost_fields_since(before) {
                    sent.forget_unheld(now);
                    self.resend.push(entry.id);
                    continue;
                }
                quote.changed_since(before)
            };
            // A symbol the client has never been sent goes out even with no fields, so a
            // wildcard subscriber learns that it exists.
            if !changed.is_empty() || first_time {
                if stats.quotes > 0 {
                    out.push(b',');
                }
                let symbol = store.info(entry.id).symbol.as_str();
                fragments.write_json(serial, entry.id, version, symbol, quote, changed, out);
                stats.quotes += 1;
            }
            sent.advance(entry.sent, now);
            entry.sent = now;
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
    use crate::domain::{Field, Price, Quote, Symbol, Tick};

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

    /// Many subscriptions on one thread share its table of sent quotes. Whatever the
    /// order of ticks, rollovers (which remove fields), flushes, snapshots and
    /// unsubscribes, every update must be exactly the diff against a private copy of
    /// what that subscription was sent (the design before the table), and once every
    /// subscription is gone the table must hold nothing.
    #[test]
    fn shared_sent_quotes_give_each_subscription_exactly_its_own_diff() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        use std::collections::HashMap;

        let store = SnapshotStore::new(16);
        let names = ["AAPL", "MSFT", "NVDA", "TSLA", "BRK.B", "IBM"];
        for s in names {
            store
                .add_symbol(Symbol::parse(s).unwrap(), s, Price::parse("100").ok())
                .unwrap();
        }
        let mut rng = StdRng::seed_from_u64(13);
        let mut subs: Vec<(Subscriptions, HashMap<SymbolId, Quote>)> = Vec::new();
        let mut ts = 0;
        let (mut updates, mut resends) = (0, 0);
        for step in 0..6_000 {
            match rng.random_range(0..100) {
                0..=44 => {
                    ts += rng.random_range(0..3);
                    let tick = Tick {
                        symbol: SymbolId(rng.random_range(0..names.len() as u32)),
                        price: rng
                            .random_bool(0.6)
                            .then(|| Price::from_micros(rng.random_range(99..102) * 1_000_000)),
                        size: Some(rng.random_range(0..3)),
                        bid: rng
                            .random_bool(0.3)
                            .then(|| Price::from_micros(rng.random_range(98..100) * 1_000_000)),
                        bid_size: rng.random_bool(0.3).then(|| rng.random_range(1..3)),
                        ts,
                        ..Tick::default()
                    };
                    store.apply_batch(&[tick]);
                }
                45 => store.roll_over(i64::from(step) * 86_400_000),
                46..=50 if subs.len() < 8 => {
                    let mut sub = Subscriptions::default();
                    let ids: Vec<SymbolId> = (0..names.len() as u32)
                        .filter(|_| rng.random_bool(0.6))
                        .map(SymbolId)
                        .collect();
                    sub.add(&ids);
                    subs.push((sub, HashMap::new()));
                }
                51..=53 if !subs.is_empty() => {
                    let at = rng.random_range(0..subs.len());
                    let (sub, sent) = &mut subs[at];
                    let id = SymbolId(rng.random_range(0..names.len() as u32));
                    if rng.random_bool(0.5) {
                        sub.remove(&[id]);
                        sent.remove(&id);
                    } else {
                        sub.add(&[id]);
                    }
                }
                54 if !subs.is_empty() => {
                    subs.swap_remove(rng.random_range(0..subs.len()));
                }
                55..=59 if !subs.is_empty() => {
                    let at = rng.random_range(0..subs.len());
                    let (sub, sent) = &mut subs[at];
                    let mut out = Vec::new();
                    sub.write_snapshot(&store, None, &mut out);
                    for id in sub.ids() {
                        sent.insert(id, store.read(id).0);
                    }
                }
                _ if !subs.is_empty() => {
                    let at = rng.random_range(0..subs.len());
                    let (sub, sent) = &mut subs[at];
                    let mut expected = Vec::new();
                    let mut expected_resend = Vec::new();
                    for id in sub.ids().collect::<Vec<_>>() {
                        let quote = store.read(id).0;
                        let fields = match sent.get(&id) {
                            None => quote.present(),
                            Some(before) if quote.lost_fields_since(before) => {
                                expected_resend.push(id);
                                continue;
                            }
                            // Field by field, not through `Quote::changed_since`.
                            Some(before) => Field::ALL
                                .into_iter()
                                .filter(|&f| {
                                    quote.get(f).is_some() && quote.get(f) != before.get(f)
                                })
                                .fold(FieldSet::EMPTY, FieldSet::with),
                        };
                        if fields.is_empty() && sent.contains_key(&id) {
                            continue;
                        }
                        if !expected.is_empty() {
                            expected.push(b',');
                        }
                        quote.write_json(store.info(id).symbol.as_str(), fields, &mut expected);
                        sent.insert(id, quote);
                    }
                    let mut out = Vec::new();
                    sub.write_update(&store, &mut out);
                    assert_eq!(text(&out), text(&expected), "step {step}");
                    let resend = sub.take_resend();
                    assert_eq!(resend, expected_resend, "step {step}");
                    updates += usize::from(!out.is_empty());
                    resends += resend.len();
                    out.clear();
                    sub.write_snapshot(&store, Some(&resend), &mut out);
                    for id in resend {
                        sent.insert(id, store.read(id).0);
                    }
                }
                _ => {}
            }
        }
        assert!(
            updates > 300 && resends > 10,
            "{updates} updates, {resends} resends"
        );
        assert!(with_sent(|sent| sent.in_use()) > 0);
        drop(subs);
        assert_eq!(with_sent(|sent| sent.in_use()), 0, "holds left behind");
    }

    #[test]
    fn subscriptions_at_one_version_share_one_quote_and_give_it_back() {
        let store = store();
        let mut a = Subscriptions::default();
        let mut b = Subscriptions::default();
        a.add(&[SymbolId(0), SymbolId(1)]);
        b.add(&[SymbolId(0), SymbolId(2)]);
        let mut out = Vec::new();
        a.write_snapshot(&store, None, &mut out);
        b.write_snapshot(&store, None, &mut out);
        assert_eq!(
            with_sent(|sent| sent.in_use()),
            3,
            "AAPL is held once for both"
        );

        store.apply_batch(&[trade(0, "101", 1)]);
        a.write_update(&store, &mut out);
        assert_eq!(with_sent(|sent| sent.in_use()), 4, "AAPL at two versions");
        b.write_update(&store, &mut out);
        assert_eq!(with_sent(|sent| sent.in_use()), 3, "the old AAPL is let go");

        b.remove(&[SymbolId(2)]);
        assert_eq!(with_sent(|sent| sent.in_use()), 2);
        a.clear();
        assert_eq!(with_sent(|sent| sent.in_use()), 1);
        drop(b);
        assert_eq!(with_sent(|sent| sent.in_use()), 0);
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
