//! The application's shared handles, given to every route and task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{LimitSettings, Secret, Settings};
use crate::http::HttpConnections;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::security::Security;
use crate::socket::DriverSettings;
use crate::store::SnapshotStore;
use crate::stream::StreamContext;

/// Cheap to clone; the store is the only mutable shared state.
#[derive(Clone)]
pub struct AppState {
    pub store: SnapshotStore,
    /// Where accepted changes go: this store, or every instance through Redis.
    pub broker: Broker,
    pub settings: Arc<Settings>,
    pub stream_settings: Arc<crate::config::StreamSettings>,
    pub metrics: Arc<Metrics>,
    pub ingestor: Arc<Ingestor>,
    pub admin_key: Secret,
    pub security: Arc<Security>,
    pub limits: Arc<LimitSettings>,
    /// The bounds of viewers' and publishers' sockets.
    pub viewer_socket: Arc<DriverSettings>,
    pub publisher_socket: Arc<DriverSettings>,
    /// Caps, deadlines and counters of plain HTTP connections (src/http/connection.rs).
    pub http: Arc<HttpConnections>,
    pub shutdown: CancellationToken,
    /// Every upgraded socket's and SSE response's task: shutdown waits (bounded) for
    /// them to send their close before the workers stop.
    pub connections: tokio_util::task::TaskTracker,
    /// The built-in market-data connector's health, when `feed.kind` is set.
    pub feed: Option<Arc<crate::feed::FeedMonitor>>,
    ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        store: SnapshotStore,
        broker: Broker,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let security = Arc::new(Security::new(&settings)?);
        Ok(AppState {
            http: Arc::new(HttpConnections::new(
                &settings.http,
                security.trusted_proxies.clone(),
            )),
            security,
            limits: Arc::new(settings.limits.clone()),
            ingestor: Arc::new(Ingestor::new(
                store.clone(),
                broker.clone(),
                &settings.ingest,
            )),
            viewer_socket: Arc::new(socket_settings(
                &settings,
                settings.stream.max_message_bytes,
                settings.stream.slow_consumer_timeout_ms,
                settings.stream.idle_timeout_ms,
                settings.stream.ping_interval_ms,
            )),
            publisher_socket: Arc::new(socket_settings(
                &settings,
                settings.ingest.max_body_bytes,
                settings.ingest.write_timeout_ms,
                settings.ingest.idle_timeout_ms,
                settings.ingest.ping_interval_ms,
            )),
            broker,
            admin_key: settings.admin.api_key.clone(),
            store,
            stream_settings: Arc::new(settings.stream.clone()),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            shutdown,
            feed: None,
            connections: tokio_util::task::TaskTracker::new(),
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn stream_context(&self) -> StreamContext {
        StreamContext {
            store: self.store.clone(),
            settings: self.stream_settings.clone(),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
            security: self.security.clone(),
            limits: self.limits.clone(),
        }
    }

    /// Ready once start-up finished and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// A socket's bounds: its own message limit and timers, and the shared control-frame
/// budget.
fn socket_settings(
    settings: &Settings,
    max_message_bytes: usize,
    write_timeout_ms: u64,
    idle_timeout_ms: u64,
    ping_interval_ms: u64,
) -> DriverSettings {
    let l = &settings.limits;
    DriverSettings {
        max_message_bytes,
        write_timeout: Duration::from_millis(write_timeout_ms),
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        ping_interval: Duration::from_millis(ping_interval_ms),
        control_frames_per_second: l.control_frames_per_second,
        control_frame_burst: l.control_frame_burst,
        abuse_close_after: l.abuse_close_after,
        abuse_window: Duration::from_millis(l.abuse_window_ms),
        deflate_level: settings.stream.deflate_level,
        deflate_dictionary_bytes: settings.stream.deflate_dictionary_bytes,
    }
}
