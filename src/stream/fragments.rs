//! Encoded quote fields, cached per worker thread: each symbol's fields are formatted
//! once per store version on each worker, and every viewer's message is assembled
//! from those pieces by copying.
//!
//! Why: at 10,000 viewers each symbol is in about 400 subscriptions, and every one of
//! them used to format the same numbers again: number formatting was the largest user
//! cost in W1's profile after the diff itself (docs/BENCHMARKS.md, issue 13). A viewer
//! still decides on its own which fields to send (what *its* client last saw); only
//! the text of a field's value is shared. The cache is the worker's, like the
//! message scratch buffers, so nothing on the flush path is shared between workers or
//! locked. Its size follows the symbols the worker's viewers watch: an entry is the
//! quote's JSON (about 150 bytes) and its field offsets.

use std::cell::RefCell;

use crate::domain::{write_json_start, Field, FieldSet, Quote, SymbolId};

thread_local! {
    static FRAGMENTS: RefCell<Fragments> = RefCell::new(Fragments::default());
}

/// Runs `f` with this worker's cache.
pub fn with_fragments<R>(f: impl FnOnce(&mut Fragments) -> R) -> R {
    FRAGMENTS.with_borrow_mut(f)
}

/// Marks an entry that holds no encoding yet.
const UNSET: u64 = u64::MAX;

/// One worker's encoded quotes, indexed by symbol id, for one store.
#[derive(Default)]
pub struct Fragments {
    /// The store the entries came from ([`crate::store::SnapshotStore::serial`]).
    store: u64,
    entries: Vec<Encoded>,
}

/// A quote at one version as `{"s":"SYM"` followed by each field's `,"key":value`.
struct Encoded {
    version: u64,
    /// Where `{"s":"SYM"` ends, then where each field's piece ends (a field without
    /// a value has an empty piece).
    ends: [u16; Field::COUNT + 1],
    bytes: Vec<u8>,
}

impl Default for Encoded {
    fn default() -> Encoded {
        Encoded {
            version: UNSET,
            ends: [0; Field::COUNT + 1],
            bytes: Vec::new(),
        }
    }
}

impl Fragments {
    /// Appends what [`Quote::write_json`] would for `quote` (symbol `id` of store
    /// `store` at `version`), from the cache, encoding the quote first if this worker
    /// has not yet at this version.
    #[allow(clippy::too_many_arguments)]
    pub fn write_json(
        &mut self,
        store: u64,
        id: SymbolId,
        version: u64,
        symbol: &str,
        quote: &Quote,
        fields: FieldSet,
        out: &mut Vec<u8>,
    ) {
        if self.store != store {
            self.store = store;
            self.entries.clear();
        }
        let index = id.index();
        if index >= self.entries.len() {
            self.entries.resize_with(index + 1, Encoded::default);
        }
        let entry = &mut self.entries[index];
        if entry.version != version {
            entry.encode(symbol, quote);
            entry.version = version;
        }
        entry.write(fields.and(quote.present()), out);
    }
}

impl Encoded {
    fn encode(&mut self, symbol: &str, quote: &Quote) {
        self.bytes.clear();
        write_json_start(symbol, &mut self.bytes);
        self.ends[0] = self.bytes.len() as u16;
        let present = quote.present();
        for (index, field) in Field::ALL.iter().enumerate() {
            if present.contains(*field) {
                quote.write_json_field(index, &mut self.bytes);
            }
            self.ends[index + 1] = self.bytes.len() as u16;
        }
    }

    /// Copies the symbol's piece and those of `fields`. Pieces next to each other in
    /// `bytes` go in one copy: a run of changed fields (a price moves `p`, `h`, `d`,
    /// `dp` and `t` together) is one `memcpy` rather than one per field of a dozen
    /// bytes each.
    fn write(&self, fields: FieldSet, out: &mut Vec<u8>) {
        // Piece 0 is `{"s":"SYM"`, piece k + 1 field k; piece k ends at `ends[k]`.
        let mut wanted = 1 | u32::from(fields.bits()) << 1;
        while wanted != 0 {
            let first = wanted.trailing_zeros() as usize;
            let run = (wanted >> first).trailing_ones() as usize;
            let start = if first == 0 {
                0
            } else {
                usize::from(self.ends[first - 1])
            };
            let end = usize::from(self.ends[first + run - 1]);
            out.extend_from_slice(&self.bytes[start..end]);
            wanted &= !(((1u32 << run) - 1) << first);
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Price, Tick};

    fn quote(price: &str, size: u64, ts: i64) -> Quote {
        let mut quote = Quote::with_previous_close(Price::parse("187.3").ok());
        quote.apply(&Tick {
            symbol: SymbolId(0),
            price: Price::parse(price).ok(),
            size: Some(size),
            bid: Price::parse("0.000001").ok(),
            ts,
            ..Tick::default()
        });
        quote
    }

    fn direct(quote: &Quote, fields: FieldSet) -> Vec<u8> {
        let mut out = Vec::new();
        quote.write_json("BRK.B", fields, &mut out);
        out
    }

    #[test]
    fn assembled_pieces_equal_the_direct_encoding_for_every_field_set() {
        let mut cache = Fragments::default();
        let quotes = [quote("189.12", 100, 1_000), quote("190", 7, 2_000)];
        for (version, q) in quotes.iter().enumerate() {
            for mask in 0..(1u32 << Field::COUNT) {
                let fields = FieldSet::ALL.and(field_set(mask));
                let mut out = Vec::new();
                cache.write_json(7, SymbolId(3), version as u64, "BRK.B", q, fields, &mut out);
                assert_eq!(out, direct(q, fields), "version {version}, mask {mask:b}");
            }
        }
    }

    #[test]
    fn a_new_version_or_another_store_is_encoded_afresh() {
        let mut cache = Fragments::default();
        let (a, b) = (quote("1.5", 1, 1), quote("2.25", 2, 2));
        let mut out = Vec::new();
        cache.write_json(1, SymbolId(0), 5, "BRK.B", &a, FieldSet::ALL, &mut out);
        out.clear();
        cache.write_json(1, SymbolId(0), 6, "BRK.B", &b, FieldSet::ALL, &mut out);
        assert_eq!(out, direct(&b, FieldSet::ALL), "a new version");
        out.clear();
        cache.write_json(2, SymbolId(0), 6, "BRK.B", &a, FieldSet::ALL, &mut out);
        assert_eq!(
            out,
            direct(&a, FieldSet::ALL),
            "same id and version, other store"
        );
    }

    fn field_set(mask: u32) -> FieldSet {
        Field::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(FieldSet::EMPTY, |set, (_, f)| set.with(*f))
    }
}
