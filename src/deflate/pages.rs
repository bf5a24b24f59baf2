//! Zeroed, page-aligned blocks for per-connection encoder state, whose memory goes
//! back to the kernel the moment a block is given back.
//!
//! Why not the global allocator: a connection that goes quiet gives its 8 KiB of
//! DEFLATE state back, but glibc keeps freed chunks that sit between live ones in the
//! process, so RSS did not move (docs/BENCHMARKS.md, issue 13). Blocks here are carved
//! from anonymous mappings in whole pages; a released block is `madvise(MADV_DONTNEED)`d,
//! which frees its pages at once and makes them read as zeros on next use, and is kept
//! on a free list for the next connection. Address space is only reserved in 2 MiB
//! chunks; pages cost memory only while a live block has touched them.
//!
//! Taking or giving back a block happens when a connection starts compressing or goes
//! quiet, never per message, so one process-wide mutex is enough.

use std::ptr::NonNull;
use std::sync::Mutex;

/// Reserved at a time; blocks are carved from the current chunk in page steps.
const CHUNK_BYTES: usize = 2 << 20;

fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => 4096,
    })
}

/// Free blocks by length, and the unused rest of the current chunk.
struct Pool {
    free: Vec<(usize, Vec<NonNull<u8>>)>,
    /// Next unused address of the current chunk, and its end.
    next: usize,
    end: usize,
}

// SAFETY: the pool only stores addresses of memory it hands out exclusively; it is
// always used behind the mutex.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    next: 0,
    end: 0,
});

/// A zeroed block of whole pages, owned by one encoder.
pub struct PageBlock {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a block is the only handle to its memory, like a `Box<[u8]>`.
unsafe impl Send for PageBlock {}
unsafe impl Sync for PageBlock {}

impl std::fmt::Debug for PageBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBlock").field("len", &self.len).finish()
    }
}

impl PageBlock {
    /// A zeroed block of at least `bytes` (rounded up to whole pages).
    pub fn new(bytes: usize) -> PageBlock {
        let page = page_size();
        let len = bytes.max(1).div_ceil(page) * page;
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ptr) = pool
            .free
            .iter_mut()
            .find(|(size, _)| *size == len)
            .and_then(|(_, list)| list.pop())
        {
            return PageBlock { ptr, len };
        }
        if pool.end - pool.next < len {
            let reserve = len.max(CHUNK_BYTES);
            let start = map(reserve);
            pool.next = start;
            pool.end = start + reserve;
        }
        let at = pool.next;
        pool.next += len;
        PageBlock {
            ptr: NonNull::new(at as *mut u8).expect("mapped address is not null"),
            len,
        }
    }

    /// Its size in bytes (whole pages).
    pub fn bytes(&self) -> usize {
        self.len
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr..ptr + len` is mapped read-write, owned by this block alone
        // (the pool hands each range to one block at a time), and initialized: fresh
        // anonymous pages and pages after MADV_DONTNEED read as zeros.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBlock {
    fn drop(&mut self) {
        discard(self.ptr, self.len);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match pool.free.iter_mut().find(|(size, _)| *size == self.len) {
            Some((_, list)) => list.push(self.ptr),
            None => {
                let len = self.len;
                pool.free.push((len, vec![self.ptr]));
            }
        }
    }
}

/// Reserves `len` bytes of zeroed, private, read-write address space.
fn map(len: usize) -> usize {
    // SAFETY: an anonymous private mapping at an address the kernel picks touches no
    // existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let layout = std::alloc::Layout::from_size_align(len, page_size()).expect("layout");
        std::alloc::handle_alloc_error(layout);
    }
    ptr as usize
}

/// Frees the block's pages and leaves them reading as zeros.
fn discard(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the range is a page-aligned part of one of our anonymous private
    // mappings, and no reference to it outlives the block being dropped.
    #[cfg(target_os = "linux")]
    let done = unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) } == 0;
    #[cfg(not(target_os = "linux"))]
    let done = false;
    if !done {
        // Elsewhere MADV_DONTNEED need not zero the pages: zero them by hand (the
        // memory then stays resident, as with any allocator).
        // SAFETY: as above; the range is writable and exclusively ours.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_zeroed_page_multiples_and_come_back_zeroed() {
        let page = page_size();
        let mut a = PageBlock::new(100);
        assert_eq!(a.bytes(), page);
        assert_eq!(a.as_mut_slice().as_ptr() as usize % page, 0);
        assert!(a.as_mut_slice().iter().all(|&b| b == 0));
        a.as_mut_slice().fill(0xab);
        let mut b = PageBlock::new(2 * page + 1);
        assert_eq!(b.bytes(), 3 * page);
        b.as_mut_slice().fill(0xcd);
        drop(a);
        drop(b);
        // Other tests share the pool, so take a handful: every one must be zeroed.
        let mut again: Vec<PageBlock> = (0..8).map(|_| PageBlock::new(page)).collect();
        for block in &mut again {
            assert!(block.as_mut_slice().iter().all(|&b| b == 0));
            block.as_mut_slice()[page - 1] = 1;
        }
    }

    #[test]
    fn blocks_taken_and_given_back_on_several_threads_stay_whole() {
        // Connections start and go quiet on every worker at once: the pool is shared.
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut held: Vec<PageBlock> = Vec::new();
                    for round in 0..300usize {
                        let mut block = PageBlock::new(8192);
                        assert!(block.as_mut_slice().iter().all(|&b| b == 0));
                        block.as_mut_slice().fill(t + 1);
                        held.push(block);
                        if round % 3 == 2 {
                            held.remove(round % held.len());
                        }
                    }
                    for block in &mut held {
                        assert!(block.as_mut_slice().iter().all(|&b| b == t + 1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread saw another's bytes");
        }
    }

    #[test]
    fn blocks_do_not_overlap() {
        let mut blocks: Vec<PageBlock> =
            (0..600).map(|i| PageBlock::new(1 + i % 3 * 5000)).collect();
        for (i, block) in blocks.iter_mut().enumerate() {
            block.as_mut_slice().fill(i as u8);
        }
        for (i, block) in blocks.iter_mut().enumerate() {
            assert!(
                block.as_mut_slice().iter().all(|&b| b == i as u8),
                "block {i}"
            );
        }
    }
}
