//! DEFLATE with little state per connection: one raw DEFLATE stream per connection for
//! the app-level mode (`?compression=deflate`) and RFC 7692 permessage-deflate alike,
//! and a per-worker inflater for compressed client messages. Level 1 uses
//! [`FastDeflate`]; the notes below are about the zlib path used for levels 2-9.
//!
//! A zlib compressor per connection costs about 320 KB (its window and hash tables);
//! at 10,000 viewers that is 3 GB. The client only needs *one valid DEFLATE stream*,
//! so each worker thread owns one compressor and every connection keeps just the last
//! few KiB of plaintext it was sent. Per message the shared compressor is reset and
//! primed with that tail as a preset dictionary: its back-references then point into
//! bytes the client's inflater already holds in its 32 KiB window, and the sync flush
//! leaves the stream byte-aligned for the next message. Memory per connection is the
//! dictionary size; see docs/BENCHMARKS.md for the trade-off.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};

mod fast;
mod inflate;
mod pages;

pub use fast::FastDeflate;
pub use inflate::{inflate_message, InflateError};

#[derive(Debug, thiserror::Error)]
#[error("deflate failed: {0}")]
pub struct CodecError(pub String);

/// One connection's DEFLATE stream. Level 1 (the default) is [`FastDeflate`]: LZ77
/// against the connection's recent plaintext with fixed Huffman codes, no per-message
/// reset, ~1 µs a message. Levels 2-9 use the per-thread zlib compressor primed with
/// that plaintext: about a quarter fewer bytes for several times the CPU
/// (docs/BENCHMARKS.md).
#[derive(Debug)]
pub struct DeflateStream {
    engine: Engine,
}

#[derive(Debug)]
enum Engine {
    Fast(FastDeflate),
    Primed(PrimedZlib),
}

/// The per-connection half of the shared zlib path: the plaintext tail that primes the
/// shared compressor.
#[derive(Debug)]
struct PrimedZlib {
    level: u32,
    dictionary_bytes: usize,
    /// The last `dictionary_bytes` of plaintext sent on this connection.
    history: Vec<u8>,
}

thread_local! {
    /// One compressor per thread (actix workers are single-threaded): reset per message.
    static SHARED_COMPRESSOR: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

impl DeflateStream {
    pub fn new(level: u32, dictionary_bytes: usize) -> DeflateStream {
        let engine = if level <= 1 {
            Engine::Fast(FastDeflate::new(dictionary_bytes))
        } else {
            Engine::Primed(PrimedZlib {
                level,
                dictionary_bytes,
                history: Vec::new(),
            })
        };
        DeflateStream { engine }
    }

    /// A stream whose back-references reach at most `2^max_window_bits` bytes, and
    /// without history between messages unless `context_takeover` (RFC 7692's
    /// `server_max_window_bits` and `server_no_context_takeover`). The zlib path serves
    /// only the full window with context takeover; anything else uses the fast encoder.
    pub fn with_window(
        level: u32,
        dictionary_bytes: usize,
        max_window_bits: u8,
        context_takeover: bool,
    ) -> DeflateStream {
        if max_window_bits >= 15 && context_takeover {
            return DeflateStream::new(level, dictionary_bytes);
        }
        let history = if context_takeover {
            dictionary_bytes
        } else {
            0
        };
        let max_distance = 1usize << max_window_bits.clamp(8, 15);
        DeflateStream {
            engine: Engine::Fast(FastDeflate::with_max_distance(history, max_distance)),
        }
    }

    /// Appends the compressed form of `plaintext` to `out`, ending with a sync flush
    /// (`00 00 FF FF`). The stream never ends (no final block), so one inflater reads
    /// a connection's messages in order.
    pub fn compress(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &mut self.engine {
            Engine::Fast(fast) => {
                fast.compress(plaintext, out);
                Ok(())
            }
            Engine::Primed(primed) => primed.compress(plaintext, out),
        }
    }

    /// Compresses a message sent because the connection has been quiet (a
    /// heartbeat): the per-connection state is given back first and the message is
    /// encoded without it, keeping nothing, so an idle connection holds no encoder
    /// state. The next [`DeflateStream::compress`] starts with an empty history.
    pub fn compress_resting(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match &mut self.engine {
            Engine::Fast(fast) => {
                fast.compress_resting(plaintext, out);
                Ok(())
            }
            Engine::Primed(primed) => {
                primed.history = Vec::new();
                primed.deflate(plaintext, out)
            }
        }
    }

    /// Bytes of per-connection state (for the memory budget).
    pub fn state_bytes(&self) -> usize {
        match &self.engine {
            Engine::Fast(fast) => fast.state_bytes(),
            Engine::Primed(primed) => primed.history.capacity(),
        }
    }
}

impl PrimedZlib {
    fn compress(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.deflate(plaintext, out)?;
        self.remember(plaintext);
        Ok(())
    }

    /// Compresses `plaintext` against the history, without remembering it.
    fn deflate(&self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        SHARED_COMPRESSOR.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some((level, compressor)) if *level == self.level => compressor,
                _ => {
                    let fresh =
                        Compress::new_with_window_bits(Compression::new(self.level), false, 15);
                    &mut slot.insert((self.level, fresh)).1
                }
            };
            compressor.reset();
            if !self.history.is_empty() {
                compressor
                    .set_dictionary(&self.history)
                    .map_err(|e| CodecError(e.to_string()))?;
            }
            deflate_sync(compressor, plaintext, out)
        })
    }

    fn remember(&mut self, plaintext: &[u8]) {
        let keep = self.dictionary_bytes;
        if keep == 0 {
            return;
        }
        if self.history.capacity() < keep {
            // Exactly the budget, once: the buffer never grows past it.
            self.history.reserve_exact(keep - self.history.len());
        }
        if plaintext.len() >= keep {
            self.history.clear();
            self.history
                .extend_from_slice(&plaintext[plaintext.len() - keep..]);
            return;
        }
        let overflow = (self.history.len() + plaintext.len()).saturating_sub(keep);
        if overflow > 0 {
            self.history.drain(..overflow);
        }
        self.history.extend_from_slice(plaintext);
    }
}

/// Compresses all of `input` with a sync flush. zlib's rule: the flush is complete
/// when a call returns with output space left over.
fn deflate_sync(
    compressor: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start_in = compressor.total_in();
    loop {
        let consumed = (compressor.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(input.len().saturating_sub(consumed) / 2 + 256);
        }
        let status = compressor
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .map_err(|e| CodecError(e.to_string()))?;
        let consumed = (compressor.total_in() - start_in) as usize;
        let done = consumed == input.len() && out.len() < out.capacity();
        match status {
            Status::Ok | Status::BufError if done => return Ok(()),
            Status::Ok | Status::BufError => continue,
            Status::StreamEnd => return Err(CodecError("unexpected end of stream".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate_all(inflater: &mut Decompress, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() * 8 + 64);
        let start = inflater.total_in();
        loop {
            let consumed = (inflater.total_in() - start) as usize;
            if consumed == input.len() {
                return out;
            }
            out.reserve(4096);
            inflater
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .unwrap();
        }
    }

    #[test]
    fn one_inflater_decodes_every_message_of_a_connection() {
        let mut stream = DeflateStream::new(1, 1024);
        let mut inflater = Decompress::new(false);
        let mut total_plain = 0;
        let mut total_wire = 0;
        for i in 0..200 {
            let msg = format!(
                "{{\"type\":\"update\",\"seq\":{i},\"quotes\":[{{\"s\":\"AAPL\",\"p\":189.{:02},\"t\":17640720{:05}}}]}}\n",
                i % 100,
                i * 37
            );
            let mut wire = Vec::new();
            stream.compress(msg.as_bytes(), &mut wire).unwrap();
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]), "sync flush marker");
            assert_eq!(inflate_all(&mut inflater, &wire), msg.as_bytes());
            total_plain += msg.len();
            total_wire += wire.len();
        }
        assert!(
            total_wire * 2 < total_plain,
            "priming should compress repetitive messages: {total_wire} vs {total_plain}"
        );
    }

    #[test]
    fn both_engines_rest_and_their_streams_read_on() {
        for level in [1, 6] {
            let mut stream = DeflateStream::new(level, 4096);
            let mut inflater = Decompress::new(false);
            for i in 0..30 {
                let msg = format!("{{\"type\":\"update\",\"seq\":{i},\"p\":189.{i:02}}}\n");
                let mut wire = Vec::new();
                if i % 7 == 6 {
                    stream.compress_resting(msg.as_bytes(), &mut wire).unwrap();
                    assert_eq!(stream.state_bytes(), 0, "level {level}: nothing kept");
                } else {
                    stream.compress(msg.as_bytes(), &mut wire).unwrap();
                }
                assert_eq!(
                    inflate_all(&mut inflater, &wire),
                    msg.as_bytes(),
                    "level {level}, {i}"
                );
            }
        }
    }

    #[test]
    fn interleaved_connections_on_one_thread_stay_independent() {
        let mut a = DeflateStream::new(1, 4096);
        let mut b = DeflateStream::new(6, 64);
        let mut ia = Decompress::new(false);
        let mut ib = Decompress::new(false);
        for i in 0..50 {
            let ma = format!("{{\"a\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i * 20));
            let mb = format!("{{\"b\":{}}}\n", i * 7);
            let (mut wa, mut wb) = (Vec::new(), Vec::new());
            a.compress(ma.as_bytes(), &mut wa).unwrap();
            b.compress(mb.as_bytes(), &mut wb).unwrap();
            assert_eq!(inflate_all(&mut ia, &wa), ma.as_bytes());
            assert_eq!(inflate_all(&mut ib, &wb), mb.as_bytes());
        }
        assert_eq!(
            a.state_bytes(),
            4096 + 4096,
            "fast engine: window + hash table"
        );
        assert_eq!(b.state_bytes(), 64);
    }

    #[test]
    fn large_messages_survive_output_growth() {
        let mut stream = DeflateStream::new(9, 32 * 1024);
        let mut inflater = Decompress::new(false);
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut wire = Vec::new();
        stream.compress(&big, &mut wire).unwrap();
        assert_eq!(inflate_all(&mut inflater, &wire), big);
    }
}
