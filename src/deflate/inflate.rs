//! Compressed client messages (RFC 7692), inflated under a size limit.
//!
//! The server asks every client for `client_no_context_takeover`, so each message is
//! a DEFLATE stream of its own: one inflater per worker thread, reset per message,
//! serves every connection, and no connection keeps inflater state (a zlib inflater
//! is over 40 KiB). The limit applies to the inflated size and is enforced while
//! inflating: a small message that would inflate to gigabytes stops at the limit.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

/// The sync-flush tail the sender removed (RFC 7692 §7.2.2), put back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("message inflates to more than {0} bytes")]
    TooLarge(usize),
    #[error("compressed message is not valid DEFLATE data")]
    Invalid,
}

thread_local! {
    /// One raw inflater (32 KiB window) per thread; actix workers are single-threaded.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Inflates one compressed message (its sync-flush tail removed) into a new buffer of
/// at most `limit` bytes.
pub fn inflate_message(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with_borrow_mut(|slot| {
        let inflater = slot.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        // One byte more than the limit: filling it proves the message too large, and
        // nothing beyond it is ever produced.
        let mut out = Vec::with_capacity((compressed.len() * 4).clamp(256, limit + 1));
        for input in [compressed, &TAIL[..]] {
            let start = inflater.total_in();
            loop {
                let used = (inflater.total_in() - start) as usize;
                if out.len() > limit {
                    return Err(InflateError::TooLarge(limit));
                }
                if used == input.len() && out.len() < out.capacity() {
                    break;
                }
                if out.len() == out.capacity() {
                    out.reserve((out.capacity()).min(limit + 1 - out.len()).max(1));
                }
                let before = (inflater.total_in(), inflater.total_out());
                let status = inflater
                    .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Invalid)?;
                let progressed = (inflater.total_in(), inflater.total_out()) != before;
                if status == Status::StreamEnd || !progressed {
                    // A final block (allowed) ends the data; no progress with room
                    // left means the input is used up.
                    if out.len() > limit {
                        return Err(InflateError::TooLarge(limit));
                    }
                    break;
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// What a client sends: one message compressed alone, its tail removed.
    fn client_message(plain: &[u8]) -> Vec<u8> {
        let mut compressor = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(plain.len() + 64);
        compressor
            .compress_vec(plain, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn messages_inflate_one_after_another_on_the_shared_inflater() {
        for text in [&b"{\"op\":\"ping\"}"[..], b"", &[b'a'; 5000][..]] {
            assert_eq!(inflate_message(&client_message(text), 8192).unwrap(), text);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = client_message(&vec![b'x'; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024, "50 MiB compress to {}", bomb.len());
        assert_eq!(
            inflate_message(&bomb, 4096),
            Err(InflateError::TooLarge(4096))
        );
        // Exactly at the limit is fine.
        let exact = client_message(&[b'y'; 4096]);
        assert_eq!(inflate_message(&exact, 4096).unwrap().len(), 4096);
    }

    #[test]
    fn garbage_is_invalid_and_the_next_message_still_inflates() {
        assert_eq!(
            inflate_message(&[0xff, 0xff, 0xff, 0xff], 4096),
            Err(InflateError::Invalid)
        );
        assert_eq!(
            inflate_message(&client_message(b"ok"), 4096).unwrap(),
            b"ok"
        );
    }
}
