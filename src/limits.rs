//! Rate and connection limits: one abusive client must not hurt the others.
//!
//! A token bucket per connection (client messages), per IP (connection attempts and
//! REST requests), and counters of open connections per IP and in total. The per-IP
//! tables sit behind a std mutex held only for a hash lookup (never across `.await`)
//! and touched once per connection or REST request, never per streamed message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Refills `rate` tokens a second up to `burst`; each event takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }

    fn is_full_at(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate
            >= self.burst
    }
}

/// A budget with a memory for abuse: events beyond the token bucket are refused, and
/// more than `close_after` refusals within `window` mean the client is abusing it.
#[derive(Debug, Clone)]
pub struct AbuseGuard {
    bucket: TokenBucket,
    close_after: u32,
    window: Duration,
    refused: u32,
    window_start: Instant,
}

/// What an [`AbuseGuard`] says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over budget: drop the event (and say so, where the protocol has a way).
    Refused,
    /// Over budget too often: close the connection (1008).
    Abuse,
}

impl AbuseGuard {
    pub fn new(rate: f64, burst: f64, close_after: u32, window: Duration) -> AbuseGuard {
        AbuseGuard {
            bucket: TokenBucket::new(rate, burst),
            close_after,
            window,
            refused: 0,
            window_start: Instant::now(),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.try_take(now) {
            return Verdict::Allowed;
        }
        if now.duration_since(self.window_start) > self.window {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused > self.close_after {
            Verdict::Abuse
        } else {
            Verdict::Refused
        }
    }
}

/// One token bucket per IP address.
pub struct PerIpRate {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_ip: HashMap<IpAddr, TokenBucket>,
    last_sweep: Instant,
}

/// Table size above which refilled buckets are swept (at most once a second, so a
/// large table of active addresses costs one scan a second, not one per request).
const SWEEP_ABOVE: usize = 10_000;

impl PerIpRate {
    pub fn new(rate: f64, burst: f64) -> PerIpRate {
        PerIpRate {
            rate,
            burst,
            buckets: Mutex::new(Buckets {
                by_ip: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// `Ok` when `ip` may go ahead, else how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.by_ip.len() > SWEEP_ABOVE
            && now.duration_since(buckets.last_sweep) > Duration::from_secs(1)
        {
            // Forget addresses whose buckets have refilled: they are indistinguishable
            // from new ones, and this bounds the table.
            buckets.by_ip.retain(|_, bucket| !bucket.is_full_at(now));
            buckets.last_sweep = now;
        }
        let bucket = buckets
            .by_ip
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst));
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(bucket.retry_after())
        }
    }
}

/// Open connections per IP and in total, with caps.
pub struct ConnectionLimits {
    per_ip_max: usize,
    total_max: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its maximum number of connections.
    ServerFull,
    /// This address holds its maximum number of connections.
    TooManyFromAddress,
}

/// Releases its connection slot when dropped (the viewer ends, however it ends).
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    /// The address counted against the per-address cap; `None` for an exempt one.
    ip: Option<IpAddr>,
}

impl ConnectionLimits {
    pub fn new(per_ip_max: usize, total_max: usize) -> ConnectionLimits {
        ConnectionLimits {
            per_ip_max,
            total_max,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.total_max {
            return Err(Refusal::ServerFull);
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.per_ip_max {
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip: Some(ip),
        })
    }

    /// A slot counted only against the total: for a trusted proxy, whose one address
    /// stands for all of its clients.
    pub fn acquire_exempt(self: &Arc<Self>) -> Result<ConnectionSlot, Refusal> {
        // The lock makes the check and the increment one step, as in `acquire`.
        let _per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.total_max {
            return Err(Refusal::ServerFull);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip: None,
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ip) = self.ip {
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 40.0);
        let taken = (0..100).filter(|_| bucket.try_take(start)).count();
        assert_eq!(taken, 40);
        assert!(!bucket.try_take(start));
        assert!(
            bucket.try_take(start + Duration::from_millis(50)),
            "one token per 50 ms"
        );
        assert!(!bucket.try_take(start + Duration::from_millis(50)));
        assert!(bucket.retry_after() <= Duration::from_millis(50));
    }

    #[test]
    fn abuse_is_too_many_refusals_within_the_window() {
        let start = Instant::now();
        let mut guard = AbuseGuard::new(1.0, 2.0, 3, Duration::from_secs(10));
        let verdicts: Vec<Verdict> = (0..6).map(|_| guard.check(start)).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Allowed, Allowed, Refused, Refused, Refused, Abuse]
        );
        // A new window forgets old refusals; the bucket has refilled by then.
        let later = start + Duration::from_secs(11);
        assert_eq!(guard.check(later), Allowed);
        assert_eq!(guard.check(later), Allowed);
        assert_eq!(guard.check(later), Refused);
    }

    #[test]
    fn per_ip_rates_are_independent() {
        let limiter = PerIpRate::new(1.0, 2.0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limiter.check(a).is_ok() && limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn slots_are_capped_and_released_on_drop() {
        let limits = Arc::new(ConnectionLimits::new(2, 3));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limits.acquire(a).unwrap();
        let _second = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refusal::ServerFull));
        drop(first);
        assert!(limits.acquire(a).is_ok());
    }

    #[test]
    fn exempt_slots_count_only_in_the_total() {
        let limits = Arc::new(ConnectionLimits::new(1, 3));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let proxied: Vec<_> = (0..2).map(|_| limits.acquire_exempt().unwrap()).collect();
        let direct = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire_exempt().err(), Some(Refusal::ServerFull));
        drop(proxied);
        assert_eq!(limits.open(), 1);
        assert_eq!(limits.acquire(a).err(), Some(Refusal::TooManyFromAddress));
        drop(direct);
        assert!(limits.acquire(a).is_ok());
    }
}
