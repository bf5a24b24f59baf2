use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Live figures of one viewer, written only by that viewer's task (relaxed atomics, no
/// contention) and read by the admin route.
#[derive(Debug, Default)]
pub struct ViewerStats {
    pub symbols: AtomicUsize,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub updates_conflated: AtomicU64,
}

/// What admins see of a viewer, and the handle to kick it.
#[derive(Debug)]
pub struct ViewerEntry {
    pub id: String,
    pub peer: String,
    pub user: Option<String>,
    /// Connection time, ms since the Unix epoch.
    pub since: i64,
    /// `deflate` (app-level), `permessage-deflate`, or `none`.
    pub compression: &'static str,
    pub stats: ViewerStats,
    pub kick: CancellationToken,
}

#[derive(Serialize)]
struct ViewerView<'a> {
    id: &'a str,
    peer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    since: i64,
    symbols: usize,
    messages_sent: u64,
    bytes_sent: u64,
    updates_conflated: u64,
    compression: &'static str,
}

/// Viewers by id (the wire calls it `session`). Touched when a viewer connects and
/// leaves and by admin requests.
#[derive(Default)]
pub struct ViewerRegistry {
    viewers: Mutex<HashMap<String, Arc<ViewerEntry>>>,
}

impl ViewerRegistry {
    pub fn insert(&self, entry: Arc<ViewerEntry>) {
        self.lock().insert(entry.id.clone(), entry);
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Asks a viewer to close with 1008; false when there is no such viewer.
    pub fn kick(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(entry) => {
                entry.kick.cancel();
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `{"sessions":[…]}`, oldest first.
    pub fn to_json(&self) -> serde_json::Value {
        let viewers = self.lock();
        let mut entries: Vec<&Arc<ViewerEntry>> = viewers.values().collect();
        entries.sort_by_key(|e| (e.since, e.id.clone()));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let views: Vec<ViewerView> = entries
            .iter()
            .map(|e| ViewerView {
                id: &e.id,
                peer: &e.peer,
                user: e.user.as_deref(),
                since: e.since,
                symbols: e.stats.symbols.load(Ordering::Relaxed),
                messages_sent: load(&e.stats.messages_sent),
                bytes_sent: load(&e.stats.bytes_sent),
                updates_conflated: load(&e.stats.updates_conflated),
                compression: e.compression,
            })
            .collect();
        serde_json::json!({ "sessions": views })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ViewerEntry>>> {
        self.viewers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
