//! The one feed source: the simulator or replay runs only on the instance holding a
//! Redis lock with expiry (`broker.lock_ttl_ms`), so a cluster of any size produces
//! one feed, and the feed moves when its instance dies (the lock expires) or stops
//! (the lock is released).
//!
//! The holder renews at a third of the expiry, so one late or failed renewal does not
//! lose it; the others poll at a tenth, so one of them takes over soon after it
//! expires. Only
//! a joined instance holds it: a cut-off instance cannot tell that another took over.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Cluster;

/// Takes, renews or releases the lock (see the script).
static LOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/lock.lua")));

impl Cluster {
    /// Takes and renews the source lock while joined; gives it up at shutdown.
    pub(super) async fn hold_source_lock(self: Arc<Self>, shutdown: CancellationToken) {
        let ttl_ms = self.lock_ttl.as_millis() as u64;
        loop {
            let held = self.source_lock(ttl_ms, "hold").await;
            let was = self.leader.send_replace(held);
            if held != was {
                info!(
                    leader = held,
                    "feed source (simulator/replay) leadership changed"
                );
            }
            // Renew at a third of the expiry; poll faster for a free lock so a
            // successor takes over soon after the holder's lock expires.
            let pause = if held { ttl_ms / 3 } else { ttl_ms / 10 }.max(10);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            }
        }
        if *self.leader.borrow() {
            // A clean stop hands the feed over at once instead of at expiry.
            self.source_lock(ttl_ms, "release").await;
            self.leader.send_replace(false);
        }
    }

    /// Runs the lock script (`hold` or `release`); true when this instance holds it.
    async fn source_lock(&self, ttl_ms: u64, action: &str) -> bool {
        let Some(link) = self.current_link() else {
            return false;
        };
        let mut conn = link.conn.clone();
        let reply: Result<Result<i64, _>, _> = tokio::time::timeout(
            self.remote.timeout,
            LOCK.key(&self.remote.keys.source_lock)
                .arg(&self.remote.instance)
                .arg(ttl_ms)
                .arg(action)
                .invoke_async(&mut conn),
        )
        .await;
        matches!(reply, Ok(Ok(1)))
    }
}
