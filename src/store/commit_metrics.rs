//! What the durable writer measures for `/metrics`: its commits, how long each took,
//! and the size of the data file. Only the writer thread writes them, with relaxed
//! atomics: no lock, and nothing on the tick path. A scrape may read a commit's
//! bucket before its time is in the sum; each series stays monotonic.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-duration buckets, in seconds. A commit is one fsync,
/// a few milliseconds on a healthy disk; the upper buckets show a slow or failing one
/// (the writer retries a failed commit within a second).
pub const COMMIT_SECONDS_BUCKETS: [f64; 9] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

const BUCKETS: usize = COMMIT_SECONDS_BUCKETS.len() + 1;

#[derive(Debug, Default)]
pub(super) struct CommitMetrics {
    /// Successful commits per bucket, not cumulative; the last one is above every
    /// bound.
    commits: [AtomicU64; BUCKETS],
    micros: AtomicU64,
    file_bytes: AtomicU64,
}

impl CommitMetrics {
    /// A successful commit that took `elapsed`.
    pub(super) fn commit_took(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = COMMIT_SECONDS_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS - 1);
        self.commits[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Reads the file's size (one `stat`); keeps the last size when that fails.
    pub(super) fn measure_file(&self, path: &Path) {
        if let Ok(metadata) = std::fs::metadata(path) {
            self.file_bytes.store(metadata.len(), Ordering::Relaxed);
        }
    }

    pub(super) fn read(&self) -> CommitStats {
        let mut total = 0;
        let cumulative = std::array::from_fn(|i| {
            total += self.commits[i].load(Ordering::Relaxed);
            total
        });
        CommitStats {
            cumulative,
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            file_bytes: self.file_bytes.load(Ordering::Relaxed),
        }
    }
}

/// One reading of the writer's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitStats {
    /// Successful commits that took at most each of [`COMMIT_SECONDS_BUCKETS`]
    /// (cumulative, as a Prometheus histogram counts), then all of them.
    pub cumulative: [u64; BUCKETS],
    /// The time all of them took.
    pub seconds: f64,
    /// The data file's size after the latest commit attempt.
    pub file_bytes: u64,
}

impl CommitStats {
    /// Successful commits so far.
    pub fn commits(&self) -> u64 {
        self.cumulative[BUCKETS - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_fall_in_the_first_bucket_that_holds_them() {
        let metrics = CommitMetrics::default();
        for ms in [0, 1, 3, 3, 2_000] {
            metrics.commit_took(Duration::from_millis(ms));
        }

        let stats = metrics.read();

        // le=0.001 holds 0 and 1 ms, le=0.005 adds the 3 ms pair, +Inf adds 2 s.
        assert_eq!(stats.cumulative, [2, 2, 4, 4, 4, 4, 4, 4, 4, 5]);
        assert_eq!(stats.commits(), 5);
        assert!((stats.seconds - 2.007).abs() < 1e-9, "{}", stats.seconds);
    }
}
