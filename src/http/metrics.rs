//! `GET /metrics` in the Prometheus text exposition format.

use std::fmt::Write;

use actix_web::{web, HttpResponse};

use std::sync::Arc;

use crate::broker::Broker;
use crate::ingest::Ingestor;
use crate::listener::HttpGuard;
use crate::metrics::Metrics;
use crate::security::Security;
use crate::sources::feed::FeedMonitor;
use crate::store::{CommitStats, Durable, SnapshotStore, COMMIT_SECONDS_BUCKETS};

/// Every component whose counters `/metrics` reads. (Each component will register and
/// own its metrics once they come from a metrics crate; until then this route reads
/// them.)
pub struct MetricSources {
    pub viewers: Arc<Metrics>,
    pub store: SnapshotStore,
    pub broker: Broker,
    pub ingestor: Arc<Ingestor>,
    pub security: Arc<Security>,
    pub http: Arc<HttpGuard>,
    pub feed: Option<Arc<FeedMonitor>>,
    /// With `store.data_dir` set: the durable writer.
    pub storage: Option<Durable>,
}

pub async fn metrics(state: web::Data<MetricSources>) -> HttpResponse {
    let t = state.viewers.totals();
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "tickstream_connections",
        "gauge",
        "Viewer WebSocket connections open now.",
        t.connections_opened.saturating_sub(t.connections_closed),
    );
    metric(
        "tickstream_connections_opened_total",
        "counter",
        "Viewer WebSocket connections accepted.",
        t.connections_opened,
    );
    metric(
        "tickstream_messages_sent_total",
        "counter",
        "Messages sent to viewers (all types).",
        t.messages_sent,
    );
    metric(
        "tickstream_bytes_sent_total",
        "counter",
        "Payload bytes sent to viewers, after compression.",
        t.bytes_sent,
    );
    metric(
        "tickstream_symbol_updates_sent_total",
        "counter",
        "Partial quotes sent in update messages.",
        t.symbol_updates_sent,
    );
    metric(
        "tickstream_updates_conflated_total",
        "counter",
        "Ticks folded into a later update instead of being sent on their own.",
        t.updates_conflated,
    );
    metric(
        "tickstream_client_errors_total",
        "counter",
        "Error messages sent to viewers for refused requests.",
        t.client_errors,
    );
    metric(
        "tickstream_slow_consumer_closes_total",
        "counter",
        "Connections closed with 4008 because their socket did not drain.",
        t.slow_consumer_closes,
    );
    metric(
        "tickstream_ticks_applied_total",
        "counter",
        "Ticks applied to the snapshot store.",
        state.store.ticks_applied(),
    );
    let ingest = &state.ingestor.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    metric(
        "tickstream_ingest_ticks_accepted_total",
        "counter",
        "Ticks accepted from publishers (HTTP and /ws/ingest).",
        load(&ingest.accepted),
    );
    metric(
        "tickstream_ingest_ticks_duplicate_total",
        "counter",
        "Ticks counted but not applied because their seq was not new.",
        load(&ingest.duplicates),
    );
    metric(
        "tickstream_ingest_ticks_rejected_total",
        "counter",
        "Ticks refused with an error code.",
        load(&ingest.rejected),
    );
    let security = &state.security.counters;
    for (name, help, counter) in [
        (
            "tickstream_auth_failures_total",
            "Viewer connections refused for a missing or bad token.",
            &security.auth_failures,
        ),
        (
            "tickstream_rate_limited_total",
            "Messages, connection attempts and REST requests refused by a rate limit.",
            &security.rate_limited,
        ),
        (
            "tickstream_origin_refused_total",
            "WebSocket upgrades refused because of their Origin.",
            &security.origin_refused,
        ),
        (
            "tickstream_connections_refused_total",
            "Connections refused by the per-address or total connection caps.",
            &security.connections_refused,
        ),
        (
            "tickstream_kicks_total",
            "Viewers closed by an admin.",
            &security.kicks,
        ),
        (
            "tickstream_abuse_closes_total",
            "Connections closed with 1008 for repeated abuse.",
            &security.abuse_closes,
        ),
    ] {
        metric(name, "counter", help, load(counter));
    }
    metric(
        "tickstream_http_connections",
        "gauge",
        "Plain HTTP connections open now (upgraded WebSockets not included).",
        state.http.open() as u64,
    );
    let http = &state.http.counters;
    for (name, help, counter) in [
        (
            "tickstream_http_refused_per_address_total",
            "HTTP connections refused with 429 by http.max_connections_per_ip.",
            &http.refused_per_address,
        ),
        (
            "tickstream_http_refused_server_full_total",
            "HTTP connections refused with 503 by http.max_connections.",
            &http.refused_server_full,
        ),
        (
            "tickstream_http_write_timeouts_total",
            "HTTP connections closed because a response write stayed blocked past http.write_timeout_ms.",
            &http.write_timeouts,
        ),
        (
            "tickstream_http_body_timeouts_total",
            "Requests answered 408 because their body did not arrive within http.body_timeout_ms.",
            &http.body_timeouts,
        ),
    ] {
        metric(name, "counter", help, load(counter));
    }
    let status = state.broker.status();
    metric(
        "tickstream_broker_degraded",
        "gauge",
        "1 while Redis is unreachable (broker.kind = \"redis\"): serving local quotes and ingest.",
        u64::from(status == crate::broker::BrokerStatus::Degraded),
    );
    metric(
        "tickstream_feed_leader",
        "gauge",
        "1 while this instance runs the cluster's one simulator or replay source.",
        u64::from(*state.broker.source_leadership().borrow()),
    );
    if let Some(cluster) = state.broker.cluster() {
        let c = &cluster.counters;
        for (name, help, value) in [
            (
                "tickstream_broker_published_total",
                "Changes this instance published through Redis.",
                load(&c.published),
            ),
            (
                "tickstream_broker_received_total",
                "Cluster messages applied from the Redis channel (own ones included).",
                load(&c.received),
            ),
            (
                "tickstream_broker_resyncs_total",
                "Times the store was rebuilt from the cluster state in Redis.",
                load(&c.resyncs),
            ),
            (
                "tickstream_broker_duplicates_total",
                "Ticks the cluster dropped because another instance had their seq.",
                load(&c.duplicates),
            ),
            (
                "tickstream_broker_outbox_dropped_total",
                "Ticks accepted while Redis was down that overflowed the outbox.",
                load(&c.outbox_dropped),
            ),
        ] {
            metric(name, "counter", help, value);
        }
        metric(
            "tickstream_broker_outbox",
            "gauge",
            "Ticks accepted while Redis is unreachable, waiting to be published.",
            cluster.outbox_len() as u64,
        );
    }
    metric(
        "tickstream_symbols",
        "gauge",
        "Symbols in the universe.",
        state.store.symbols().count() as u64,
    );
    if let Some(storage) = &state.storage {
        let status = storage.status();
        let stats = storage.commit_stats();
        for (name, kind, help, value) in [
            (
                "tickstream_store_commits_total",
                "counter",
                "Commits of the market state to the data file, each fsynced.",
                stats.commits(),
            ),
            (
                "tickstream_store_commit_failures_total",
                "counter",
                "Commit attempts that failed (disk full, I/O error); their changes are retried.",
                status.failures,
            ),
            (
                "tickstream_store_healthy",
                "gauge",
                "0 from a failed commit until the next one succeeds (publishers get 503 meanwhile).",
                u64::from(status.healthy),
            ),
            (
                "tickstream_store_pending_changes",
                "gauge",
                "Changes to the market state not committed yet.",
                state.store.generation().saturating_sub(status.committed),
            ),
            (
                "tickstream_store_file_bytes",
                "gauge",
                "Size of the data file after the latest commit attempt.",
                stats.file_bytes,
            ),
        ] {
            metric(name, kind, help, value);
        }
        write_commit_seconds(&mut out, &stats);
    }
    if let Some(monitor) = &state.feed {
        crate::sources::feed::write_metrics(monitor, &mut out);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// `tickstream_store_commit_seconds`: a histogram with fixed buckets.
fn write_commit_seconds(out: &mut String, stats: &CommitStats) {
    let name = "tickstream_store_commit_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from copying the changes to the commit's fsync returning, for \
         successful commits.\n# TYPE {name} histogram"
    );
    let bounds = COMMIT_SECONDS_BUCKETS.iter().map(|bound| bound.to_string());
    for (le, count) in bounds.chain(["+Inf".to_owned()]).zip(stats.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {}", stats.seconds);
    let _ = writeln!(out, "{name}_count {}", stats.commits());
}
