//! A small DEFLATE encoder for one connection's stream of short, similar messages.
//!
//! Each message is LZ77-matched against the connection's last few KiB of plaintext
//! (which the client's inflater window already holds) and itself, then written as
//! one fixed-Huffman block followed by a sync flush (an empty stored block, ending in
//! `00 00 FF FF`), so every message ends byte-aligned and decodes on its own with the
//! connection's single inflater (RFC 1951).
//!
//! Why not zlib: a zlib compressor per connection costs ~300 KB; the shared,
//! primed zlib compressor (codec.rs) costs ~6 µs a message, mostly resetting a fixed
//! 64 Ki-entry hash table and re-hashing the dictionary (docs/BENCHMARKS.md). Here the
//! per-connection state is the history plus a 2,048-entry table of absolute positions
//! that stays valid across messages, so nothing is reset or re-hashed. Both live in
//! one block of pages that a quiet connection gives back (`compress_resting`). Fixed Huffman
//! codes are what zlib's fastest level uses too; for messages of a few hundred bytes a
//! dynamic table's header would cost more than it saves.

use super::pages::PageBlock;

/// Hash table size: 2,048 positions of 16 bits (4 KiB per connection).
const HASH_BITS: u32 = 11;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
/// The largest distance DEFLATE allows (the inflater's window).
const MAX_DISTANCE: usize = 32 * 1024;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The hash table's bytes at the start of the state block: one page.
const TABLE_BYTES: usize = 2 << HASH_BITS;

/// The encoder state of one connection.
#[derive(Debug)]
pub struct FastDeflate {
    window: usize,
    /// The farthest back-reference allowed: 32 KiB, or less when the client limited
    /// the server's window (RFC 7692 `server_max_window_bits`).
    max_distance: usize,
    /// The hash table, then the last `history_len` bytes of plaintext sent (at most
    /// `window`), in one block of pages taken on the first message and given back by
    /// [`FastDeflate::compress_resting`] (`None` until then and after).
    ///
    /// The table maps the hash of 4 bytes to the low 16 bits of the absolute stream
    /// position last seen with that hash. 16 bits halve it (4 KiB, 64 cache lines):
    /// at 10,000 connections every message starts with the table cold in cache, and
    /// its misses were the encoder's largest cost (docs/BENCHMARKS.md). A candidate is
    /// only a hint: its bytes are always compared.
    state: Option<PageBlock>,
    history_len: usize,
    /// Bytes of plaintext sent so far (absolute position of the next byte).
    total: u32,
}

impl FastDeflate {
    /// `window`: plaintext kept for matching, at most 32 KiB.
    pub fn new(window: usize) -> FastDeflate {
        FastDeflate::with_max_distance(window, MAX_DISTANCE)
    }

    /// As [`FastDeflate::new`], with back-references no farther than `max_distance`
    /// (at most 32 KiB): the history kept shrinks to match.
    pub fn with_max_distance(window: usize, max_distance: usize) -> FastDeflate {
        let max_distance = max_distance.min(MAX_DISTANCE);
        FastDeflate {
            window: window.min(max_distance),
            max_distance,
            state: None,
            history_len: 0,
            total: 0,
        }
    }

    /// Bytes of per-connection state.
    pub fn state_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, PageBlock::bytes)
    }

    /// Appends the compressed form of `message` to `out`, ending with a sync flush.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        SCRATCH.with_borrow_mut(|scratch| self.compress_with(message, out, scratch));
    }

    /// For a message sent because the connection has been quiet (a heartbeat): gives
    /// the table and history back, then appends `message` as literals, keeping
    /// nothing. The stream stays valid because a back-reference is only ever a choice:
    /// the client's inflater keeps its window, and the next [`FastDeflate::compress`]
    /// starts with an empty history (fresh state, one message less well compressed).
    pub fn compress_resting(&mut self, message: &[u8], out: &mut Vec<u8>) {
        self.state = None;
        self.history_len = 0;
        let mut bits = BitWriter::new(out, message.len() + 16);
        bits.put(0b010, 3);
        for &byte in message {
            bits.put_literal(byte);
        }
        finish_block(&mut bits);
        self.total = self.total.wrapping_add(message.len() as u32);
    }

    /// `scratch` holds history + message while encoding (one buffer per thread), so
    /// the connection keeps exactly `window` bytes between messages.
    fn compress_with(&mut self, message: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let window = self.window;
        let block = self
            .state
            .get_or_insert_with(|| PageBlock::new(TABLE_BYTES + window))
            .as_mut_slice();
        let (head, history) = block.split_at_mut(TABLE_BYTES);
        // A fixed-size array: with the hash below 2,048, indexing needs no bounds check.
        let head: &mut [u8; TABLE_BYTES] = head.try_into().expect("the table's bytes");
        prefetch_table(head);
        // Positions wrap after 4 GiB of plaintext: start the table afresh then (the
        // history bytes stay valid; they are just not indexed).
        let history_len = self.history_len;
        if self.total.checked_add(message.len() as u32 + 1).is_none() {
            head.fill(0);
            self.total = history_len as u32;
        }
        // Absolute position of history[0].
        let base = self.total - history_len as u32;
        scratch.clear();
        scratch.extend_from_slice(&history[..history_len]);
        scratch.extend_from_slice(message);
        let buf = scratch.as_slice();
        let mut bits = BitWriter::new(out, message.len() / 2 + 16);
        // Block header: BFINAL = 0, BTYPE = 01 (fixed Huffman).
        bits.put(0b010, 3);
        let mut i = history_len;
        while i < buf.len() {
            if i + MIN_MATCH <= buf.len() {
                let h = hash(&buf[i..i + MIN_MATCH]);
                let position = base.wrapping_add(i as u32);
                let back = position.wrapping_sub(u32::from(table_get(head, h))) & 0xffff;
                table_set(head, h, position as u16);
                if let Some(length) = match_at(buf, i, back as usize, self.max_distance) {
                    bits.put_match(length, back as usize);
                    i += length;
                    // Index only the match's last position (as zlib's fastest level
                    // skips the inside of matches): hashing every covered byte cost
                    // more than the few matches it found.
                    if i - 1 + MIN_MATCH <= buf.len() {
                        let h = hash(&buf[i - 1..i - 1 + MIN_MATCH]);
                        table_set(head, h, base.wrapping_add(i as u32 - 1) as u16);
                    }
                    continue;
                }
            }
            bits.put_literal(buf[i]);
            i += 1;
        }
        finish_block(&mut bits);
        self.total += message.len() as u32;
        let keep = buf.len().min(window);
        history[..keep].copy_from_slice(&buf[buf.len() - keep..]);
        self.history_len = keep;
    }
}

/// Ends the fixed-Huffman block, then the sync flush: an empty stored block,
/// byte-aligned, so the message decodes on its own.
fn finish_block(bits: &mut BitWriter<'_>) {
    bits.put(0, 7);
    bits.put(0, 3);
    bits.align();
    bits.out.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
}

/// Table entries are 16-bit positions stored in the state block's bytes (native
/// order: they never leave this process).
#[inline]
fn table_get(table: &[u8; TABLE_BYTES], h: usize) -> u16 {
    u16::from_ne_bytes([table[2 * h], table[2 * h + 1]])
}

#[inline]
fn table_set(table: &mut [u8; TABLE_BYTES], h: usize, position: u16) {
    table[2 * h..2 * h + 2].copy_from_slice(&position.to_ne_bytes());
}

thread_local! {
    /// History + the message being encoded; grows to the largest message sent.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Starts loading the whole table into cache with independent reads, one per 64-byte
/// line, before the encoding loop needs its entries one dependent step at a time
/// (plain loads: the CPU overlaps their misses; no `unsafe` prefetch intrinsic).
#[inline]
fn prefetch_table(head: &[u8]) {
    let mut touched = 0u8;
    for line in head.chunks(64) {
        touched ^= line[0];
    }
    std::hint::black_box(touched);
}

fn hash(bytes: &[u8]) -> usize {
    let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    (word.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
}

/// The length of a usable match for position `i` with the bytes `distance` back, if
/// any. A distance of 0 or reaching before the buffer (trimmed history, or a stale
/// table entry) is no match.
fn match_at(buf: &[u8], i: usize, distance: usize, max_distance: usize) -> Option<usize> {
    if distance == 0 || distance > i || distance > max_distance {
        return None;
    }
    let from = i - distance;
    let limit = (buf.len() - i).min(MAX_MATCH);
    // Eight bytes at a time, then the first differing byte from the XOR. The source
    // may overlap the target (distance < length), which DEFLATE allows.
    let mut length = 0;
    while length + 8 <= limit {
        let a = u64::from_le_bytes(
            buf[from + length..from + length + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let b = u64::from_le_bytes(buf[i + length..i + length + 8].try_into().expect("8 bytes"));
        let diff = a ^ b;
        if diff != 0 {
            length += (diff.trailing_zeros() / 8) as usize;
            return (length >= MIN_MATCH).then_some(length);
        }
        length += 8;
    }
    while length < limit && buf[from + length] == buf[i + length] {
        length += 1;
    }
    (length >= MIN_MATCH).then_some(length)
}

/// The length code (0-28) of every match length 3..=258, by table instead of a search.
const LENGTH_CODE: [u8; MAX_MATCH + 1] = {
    let mut table = [0u8; MAX_MATCH + 1];
    let mut code = 0;
    while code < LENGTH_BASE.len() {
        let end = if code + 1 < LENGTH_BASE.len() {
            LENGTH_BASE[code + 1] as usize
        } else {
            MAX_MATCH + 1
        };
        let mut length = LENGTH_BASE[code] as usize;
        while length < end {
            table[length] = code as u8;
            length += 1;
        }
        code += 1;
    }
    // 258 has its own code (28), not the top of code 27's range.
    table[MAX_MATCH] = 28;
    table
};

/// zlib's two-level distance-code table: distances 1-256 directly, larger ones by
/// (distance - 1) >> 7 (codes 16 and up all span multiples of 128).
const DISTANCE_CODE: [u8; 512] = {
    let mut table = [0u8; 512];
    let mut code = 0;
    while code < DISTANCE_BASE.len() {
        let first = DISTANCE_BASE[code] as usize;
        let last = first + (1usize << DISTANCE_EXTRA[code]) - 1;
        let mut distance = first;
        while distance <= last {
            if distance <= 256 {
                table[distance - 1] = code as u8;
            } else {
                table[256 + ((distance - 1) >> 7)] = code as u8;
            }
            distance += 1;
        }
        code += 1;
    }
    table
};

fn distance_code(distance: usize) -> usize {
    let index = if distance <= 256 {
        distance - 1
    } else {
        256 + ((distance - 1) >> 7)
    };
    usize::from(DISTANCE_CODE[index])
}

/// Fixed-Huffman literal codes, already bit-reversed for the LSB-first stream, with
/// their lengths: 0-143 use 8 bits from 0x30, 144-255 use 9 bits from 0x190.
const LITERAL_CODES: [(u16, u8); 256] = {
    let mut table = [(0u16, 0u8); 256];
    let mut byte = 0;
    while byte < 256 {
        let (code, bits) = if byte < 144 {
            (0x30 + byte as u32, 8)
        } else {
            (0x190 + (byte as u32 - 144), 9)
        };
        table[byte] = ((code.reverse_bits() >> (32 - bits)) as u16, bits as u8);
        byte += 1;
    }
    table
};

/// `bits` of a Huffman code given MSB-first as the RFC lists it, reversed for the
/// LSB-first stream.
const fn reversed(code: u32, bits: u32) -> u32 {
    code.reverse_bits() >> (32 - bits)
}

/// For every match length 3..=258: its fixed-Huffman length symbol (257-285, 7 or 8
/// bits), reversed, followed by its extra bits, and the total bit count.
const LENGTH_BITS: [(u32, u8); MAX_MATCH + 1] = {
    let mut table = [(0u32, 0u8); MAX_MATCH + 1];
    let mut length = 3;
    while length <= MAX_MATCH {
        let code = LENGTH_CODE[length] as usize;
        let symbol = 257 + code as u32;
        let (huffman, bits) = if symbol < 280 {
            (reversed(symbol - 256, 7), 7)
        } else {
            (reversed(0xc0 + (symbol - 280), 8), 8)
        };
        let extra = (length - LENGTH_BASE[code] as usize) as u32;
        table[length] = (
            huffman | extra << bits,
            (bits + LENGTH_EXTRA[code] as u32) as u8,
        );
        length += 1;
    }
    table
};

/// The 30 distance codes (fixed 5 bits), reversed.
const DISTANCE_CODES: [u8; 30] = {
    let mut table = [0u8; 30];
    let mut code = 0;
    while code < 30 {
        table[code] = reversed(code as u32, 5) as u8;
        code += 1;
    }
    table
};

/// Writes bits least-significant first, as DEFLATE packs them.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    accumulator: u64,
    count: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>, expected: usize) -> BitWriter<'a> {
        out.reserve(expected);
        BitWriter {
            out,
            accumulator: 0,
            count: 0,
        }
    }

    fn put(&mut self, value: u32, bits: u32) {
        self.accumulator |= u64::from(value) << self.count;
        self.count += bits;
        // Flush whole 32-bit words: one copy instead of up to four pushes.
        if self.count >= 32 {
            self.out
                .extend_from_slice(&(self.accumulator as u32).to_le_bytes());
            self.accumulator >>= 32;
            self.count -= 32;
        }
    }

    fn put_literal(&mut self, byte: u8) {
        let (code, bits) = LITERAL_CODES[usize::from(byte)];
        self.put(u32::from(code), u32::from(bits));
    }

    /// A match: its length's code and extra bits, then its distance's, each from a
    /// table of codes already bit-reversed (no reversal per match).
    fn put_match(&mut self, length: usize, distance: usize) {
        let (bits, count) = LENGTH_BITS[length];
        self.put(bits, u32::from(count));
        let code = distance_code(distance);
        let extra = (distance - usize::from(DISTANCE_BASE[code])) as u32;
        self.put(
            u32::from(DISTANCE_CODES[code]) | extra << 5,
            5 + u32::from(DISTANCE_EXTRA[code]),
        );
    }

    /// Pads to a byte boundary with zero bits, writing out everything pending.
    fn align(&mut self) {
        while self.count > 0 {
            self.out.push(self.accumulator as u8);
            self.accumulator >>= 8;
            self.count = self.count.saturating_sub(8);
        }
        self.accumulator = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use proptest::prelude::*;

    fn inflate(inflater: &mut Decompress, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() * 16 + 1024);
        let start = inflater.total_in();
        loop {
            let used = (inflater.total_in() - start) as usize;
            if used == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(64 * 1024);
            inflater
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .expect("a valid DEFLATE stream");
        }
    }

    #[test]
    fn back_references_stay_within_the_allowed_window() {
        // A repeat 1,000 bytes back: a 512-byte window must not reach it.
        let chunk: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        let filler: Vec<u8> = (0..800u32).map(|i| (i * 13 % 97) as u8 + 100).collect();
        let message = [&chunk[..], &filler[..], &chunk[..]].concat();
        assert_eq!(match_at(&message, 1000, 1000, 512), None);
        assert_eq!(match_at(&message, 1000, 1000, MAX_DISTANCE), Some(200));
        let encode = |mut encoder: FastDeflate| {
            let mut wire = Vec::new();
            encoder.compress(&message, &mut wire);
            assert_eq!(inflate(&mut Decompress::new(false), &wire), message);
            wire.len()
        };
        let limited = encode(FastDeflate::with_max_distance(4096, 512));
        let unlimited = encode(FastDeflate::new(4096));
        assert!(
            limited > unlimited,
            "{limited} vs {unlimited}: the far repeat is not used"
        );
    }

    #[test]
    fn one_inflater_decodes_a_stream_of_similar_messages() {
        let mut encoder = FastDeflate::new(4096);
        let mut inflater = Decompress::new(false);
        let (mut plain, mut wire) = (0, 0);
        for i in 0..500 {
            let message = format!(
                "{{\"type\":\"update\",\"seq\":{i},\"quotes\":[{{\"s\":\"AAPL\",\"p\":189.{:02},\"v\":{},\"t\":17640720{:05}}}]}}\n",
                i % 100,
                i * 137,
                i * 41
            );
            let mut out = Vec::new();
            encoder.compress(message.as_bytes(), &mut out);
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            assert_eq!(
                inflate(&mut inflater, &out),
                message.as_bytes(),
                "message {i}"
            );
            plain += message.len();
            wire += out.len();
        }
        assert!(wire * 3 < plain, "{wire} of {plain}");
        assert_eq!(
            encoder.state_bytes(),
            4096 + 4096,
            "history window + hash table"
        );
    }

    #[test]
    fn a_quiet_connection_gives_its_state_back_and_its_stream_goes_on() {
        let mut encoder = FastDeflate::new(4096);
        let mut inflater = Decompress::new(false);
        let update = |i: u32| {
            format!("{{\"type\":\"update\",\"seq\":{i},\"quotes\":[{{\"s\":\"AAPL\",\"p\":189.{i:02}}}]}}\n")
        };
        for round in 0..3u32 {
            for i in 0..20 {
                let message = update(round * 100 + i);
                let mut out = Vec::new();
                encoder.compress(message.as_bytes(), &mut out);
                assert_eq!(inflate(&mut inflater, &out), message.as_bytes());
            }
            assert_eq!(
                encoder.state_bytes(),
                8192,
                "one page of table, one of history"
            );
            let heartbeat =
                format!("{{\"type\":\"heartbeat\",\"seq\":{round},\"ts\":1764072000000}}\n");
            let mut out = Vec::new();
            encoder.compress_resting(heartbeat.as_bytes(), &mut out);
            assert_eq!(encoder.state_bytes(), 0, "nothing kept while quiet");
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            assert_eq!(inflate(&mut inflater, &out), heartbeat.as_bytes());
        }
    }

    #[test]
    fn long_runs_high_bytes_and_empty_messages() {
        let mut encoder = FastDeflate::new(32 * 1024);
        let mut inflater = Decompress::new(false);
        let mut messages: Vec<Vec<u8>> = vec![
            vec![],
            vec![b'a'; 10_000],
            (0..=255u8).cycle().take(70_000).collect(),
            "héllo wörld €".repeat(300).into_bytes(),
            vec![0xff; 3],
        ];
        messages.push(messages[2].clone());
        for message in &messages {
            let mut out = Vec::new();
            encoder.compress(message, &mut out);
            assert_eq!(&inflate(&mut inflater, &out), message);
        }
    }

    #[test]
    fn code_tables_agree_with_the_rfc_ranges() {
        for (length, &code) in LENGTH_CODE.iter().enumerate().skip(3) {
            let searched = LENGTH_BASE.partition_point(|&b| usize::from(b) <= length) - 1;
            assert_eq!(usize::from(code), searched, "length {length}");
        }
        for distance in 1..=MAX_DISTANCE {
            let searched = DISTANCE_BASE.partition_point(|&b| usize::from(b) <= distance) - 1;
            assert_eq!(distance_code(distance), searched, "distance {distance}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_sequence_of_messages_round_trips(
            messages in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..600),
                    prop::collection::vec(prop::sample::select(b"{}\":,0123456789.AB".to_vec()), 0..2000),
                ],
                1..20,
            ),
            window in prop::sample::select(vec![0usize, 1, 64, 4096, 32768]),
            rest_at in 0usize..4,
        ) {
            let mut encoder = FastDeflate::new(window);
            let mut inflater = Decompress::new(false);
            for (i, message) in messages.iter().enumerate() {
                let mut out = Vec::new();
                // Every third message as a quiet connection's, which gives the state
                // back: the stream must stay one valid stream through it.
                if i % 3 == rest_at {
                    encoder.compress_resting(message, &mut out);
                    prop_assert_eq!(encoder.state_bytes(), 0);
                } else {
                    encoder.compress(message, &mut out);
                }
                prop_assert_eq!(&inflate(&mut inflater, &out), message);
            }
        }
    }
}
