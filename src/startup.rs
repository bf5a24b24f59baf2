//! Building and running the application: the one place where the pieces are wired.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, Extensions, HttpService, KeepAlive, Protocol, Request};
use actix_server::Server;
use actix_service::{
    apply_fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use anyhow::Context;
use futures_util::future::Either;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::info;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::{Settings, StoreSettings};
use crate::http::{
    close_on_unread_body, routes, upgrade_service, AdminRoutes, BodyDeadline, HealthSources,
    HistorySource, MetricSources, Readiness, SocketRoutes,
};
use crate::ingest::Ingestor;
use crate::listener::{refuse, wait_until_writable, GuardedIo, HttpGuard};
use crate::metrics::Metrics;
use crate::security::Security;
use crate::sources::feed::{FeedMonitor, Vendor};
use crate::sources::trading_day::{current_day, run_rollovers, Clock, SystemClock};
use crate::sources::{parse_replay, run_replay, Simulator};
use crate::store::{load_universe, Durable, SnapshotStore, DEFAULT_UNIVERSE_CSV};
use crate::stream::StreamContext;
use crate::transport::DriverSettings;

pub struct Application {
    port: u16,
    server: Server,
    store: SnapshotStore,
    broker: Broker,
    shutdown: CancellationToken,
    open_streams: TaskTracker,
    shutdown_grace: Duration,
    durable: Option<Durable>,
}

impl Application {
    /// Loads the universe, binds the listener (port 0 picks a free one), starts the
    /// HTTP workers and the configured feeds. Must run inside the actix/tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the wall clock that schedules trading-day
    /// rollovers injected (tests move it to just before 09:30).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let store = build_store(&settings.store)?;
        let durable = open_durable(&settings, &store)?;
        let replay = if settings.replay.file.is_empty() {
            None
        } else {
            let csv = std::fs::read_to_string(&settings.replay.file)
                .with_context(|| format!("replay.file: cannot read {}", settings.replay.file))?;
            Some(parse_replay(&csv).context("replay.file: bad replay CSV")?)
        };
        let rollover_time = settings.trading_day.rollover_time()?;
        let time_zone = settings.trading_day.time_zone()?;
        let shutdown = CancellationToken::new();
        let broker = Broker::start(
            store.clone(),
            &settings.broker,
            settings.store.retention(),
            shutdown.clone(),
        )
        .await?;
        let vendor = Vendor::from_settings(&settings.feed).context("feed")?;
        let feed_monitor = vendor
            .as_ref()
            .map(|_| Arc::new(FeedMonitor::new(settings.feed.kind)));
        let security = Arc::new(Security::new(&settings)?);
        let http_guard = Arc::new(HttpGuard::new(
            &settings.http,
            security.trusted_proxies.clone(),
        ));
        let ingestor = Arc::new(Ingestor::new(
            store.clone(),
            broker.clone(),
            durable.clone(),
            &settings.ingest,
        ));
        let viewer_metrics = Arc::new(Metrics::default());
        let readiness = Readiness::new(shutdown.clone());
        let open_streams = TaskTracker::new();
        let sockets = web::Data::new(SocketRoutes {
            viewers: StreamContext {
                store: store.clone(),
                settings: Arc::new(settings.stream.clone()),
                metrics: viewer_metrics.clone(),
                shutdown: shutdown.clone(),
                security: security.clone(),
                limits: Arc::new(settings.limits.clone()),
            },
            ingestor: ingestor.clone(),
            security: security.clone(),
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
            shutdown: shutdown.clone(),
            open_streams: open_streams.clone(),
        });
        // The application data: one handle per dependency a handler names.
        let store_data = web::Data::new(store.clone());
        let broker_data = web::Data::new(broker.clone());
        let ingestor_data = web::Data::from(ingestor.clone());
        let security_data = web::Data::from(security.clone());
        let admin = web::Data::new(AdminRoutes {
            key: settings.admin.api_key.clone(),
            broker: broker.clone(),
            store: store.clone(),
            storage: durable.clone(),
            security: security.clone(),
        });
        let body_deadline = web::Data::new(BodyDeadline {
            timeout: settings.http.body_timeout(),
            guard: http_guard.clone(),
        });
        let health = web::Data::new(HealthSources {
            readiness: readiness.clone(),
            store: store.clone(),
            broker: broker.clone(),
            feed: feed_monitor.clone(),
            storage: durable.clone(),
        });
        let history_source = web::Data::new(match (broker.cluster(), &durable) {
            (Some(cluster), _) => HistorySource::Cluster(cluster.clone()),
            (None, Some(durable)) => HistorySource::DataFile(durable.clone()),
            (None, None) => HistorySource::Memory,
        });
        let metric_sources = web::Data::new(MetricSources {
            viewers: viewer_metrics,
            store: store.clone(),
            broker: broker.clone(),
            ingestor,
            security,
            http: http_guard.clone(),
            feed: feed_monitor.clone(),
            storage: durable.clone(),
        });

        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {}:{}", address.0, address.1))?;
        let port = listener.local_addr()?.port();
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let builder = Server::build()
            .workers(workers)
            // We own SIGTERM: viewers must be told before the server stops (shutdown.rs).
            .disable_signals()
            .shutdown_timeout(
                Duration::from_millis(settings.server.shutdown_timeout_ms)
                    .as_secs()
                    .max(1),
            );
        let tls = crate::listener::tls::server_config(&settings.tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let http_settings = settings.http.clone();
        // One HTTP service per worker: actix-web's application for every request,
        // except upgrade requests, which actix-http hands to `upgrade_service` with the
        // connection (src/transport/), released from the HTTP connection regime first.
        // `$io` is the stream under the guard (TCP, or TLS over TCP).
        macro_rules! http_service {
            ($io:ty) => {{
                let app = App::new()
                    .app_data(store_data.clone())
                    .app_data(broker_data.clone())
                    .app_data(ingestor_data.clone())
                    .app_data(security_data.clone())
                    .app_data(admin.clone())
                    .app_data(body_deadline.clone())
                    .app_data(health.clone())
                    .app_data(metric_sources.clone())
                    .app_data(history_source.clone())
                    .app_data(sockets.clone())
                    .wrap(actix_web::middleware::from_fn(close_on_unread_body))
                    .wrap(actix_web::middleware::from_fn(wait_until_writable))
                    .configure(routes);
                HttpService::<GuardedIo<$io>, _, _, _, _>::build()
                    .keep_alive(KeepAlive::Timeout(http_settings.keep_alive()))
                    .client_request_timeout(http_settings.request_head_timeout())
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // Handlers see whether their connection's writes are blocked.
                    .on_connect_ext(|io: &GuardedIo<$io>, data: &mut Extensions| {
                        data.insert(io.write_gate());
                    })
                    .upgrade(release_on_upgrade::<$io>(sockets.clone().into_inner()))
                    .finish(map_config(
                        app.into_factory()
                            .map_err(|err: actix_web::Error| err.error_response()),
                        |_| AppConfig::default(),
                    ))
            }};
        }
        let connections = http_guard;
        let builder = match tls {
            Some(config) => {
                let config = tls_config_for_http1(config);
                builder.listen("tickstream-https", listener, move || {
                    let connections = connections.clone();
                    // The acceptor keeps its default handshake timeout (3 s) and its
                    // cap on concurrent handshakes per worker.
                    let acceptor = Acceptor::new(config.clone());
                    fn_service(|tcp: TcpStream| async move {
                        set_nodelay(&tcp);
                        Ok::<_, ()>(tcp)
                    })
                    .and_then(acceptor.map_err(|_| ()))
                    .and_then(apply_fn_factory(
                        http_service!(TlsStream<TcpStream>)
                            .map_err(|_| ())
                            .map_init_err(|_| ()),
                        move |tls: TlsStream<TcpStream>, http: &_| {
                            let peer = tls.get_ref().0.peer_addr().ok();
                            govern(&connections, tls, peer, http)
                        },
                    ))
                })
            }
            None => builder.listen("tickstream-http", listener, move || {
                let connections = connections.clone();
                apply_fn_factory(
                    http_service!(TcpStream).map_err(|_| ()),
                    move |tcp: TcpStream, http: &_| {
                        set_nodelay(&tcp);
                        let peer = tcp.peer_addr().ok();
                        govern(&connections, tcp, peer, http)
                    },
                )
            }),
        }
        .context("cannot start the HTTP server")?;
        let server = builder.run();

        // Before any source applies a tick: a rollover missed while stopped must not
        // zero the new day's first trades.
        broker
            .start_trading_day(current_day(clock.now(), rollover_time, time_zone))
            .await;
        if let (Some(vendor), Some(monitor)) = (vendor, feed_monitor) {
            crate::sources::feed::add_symbols(&settings.feed, &store, &broker).await?;
            let (live, live_since) = tokio::sync::watch::channel(None);
            tokio::spawn(crate::sources::feed::run(
                vendor,
                settings.feed.clone(),
                store.clone(),
                broker.clone(),
                monitor,
                live,
                shutdown.clone(),
            ));
            if settings.feed.backfill {
                tokio::spawn(crate::sources::feed::backfill::run_backfills(
                    settings.feed.clone(),
                    settings.trading_day.clone(),
                    store.clone(),
                    broker.clone(),
                    live_since,
                    shutdown.clone(),
                ));
            }
        } else if settings.simulator.enabled {
            let simulator = Simulator::new(&settings.simulator);
            tokio::spawn(simulator.run(store.clone(), broker.clone(), shutdown.clone()));
        }
        if let Some(rows) = replay {
            let replay = &settings.replay;
            tokio::spawn(run_replay(
                rows,
                replay.speed,
                replay.repeat,
                store.clone(),
                broker.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(run_rollovers(
            broker.clone(),
            rollover_time,
            time_zone,
            clock,
            shutdown.clone(),
        ));
        readiness.set_ready();
        info!(
            host = %settings.server.host,
            port,
            workers,
            symbols = store.len(),
            simulator = settings.simulator.enabled && settings.feed.kind == crate::config::FeedKind::None,
            feed = settings.feed.kind.as_str(),
            replay = %settings.replay.file,
            publishers = settings.ingest.keys().len(),
            scheme,
            auth = ?settings.auth.mode,
            broker = ?settings.broker.kind,
            cluster = broker.status().as_str(),
            "tickstream listening"
        );
        Ok(Application {
            port,
            server,
            store,
            broker,
            shutdown,
            open_streams,
            shutdown_grace: Duration::from_millis(settings.server.shutdown_timeout_ms),
            durable,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The snapshot store (tests read it, and feed it directly as a fake source).
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// The broker every change goes through.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Cancel it to stop the application (a signal handler does; so do tests).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Serves until the shutdown token is cancelled (by a signal or a caller), then
    /// lets viewers send 1001 and stops the server gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let open_streams = self.open_streams.clone();
        let grace = self.shutdown_grace;
        tokio::spawn(async move {
            shutdown.cancelled().await;
            // Sockets and SSE responses run as their own tasks: let them send their
            // close (each bounded by its close deadline) before the workers stop.
            open_streams.close();
            let _ = tokio::time::timeout(grace, open_streams.wait()).await;
            handle.stop(true).await;
        });
        let served = self.server.await.context("HTTP server failed");
        // Graceful stop: every change so far is committed before the process exits. A
        // failed last commit lost data: it is this function's error, so that the exit
        // status tells the supervisor.
        let stored = match self.durable {
            Some(durable) => tokio::task::spawn_blocking(move || durable.close())
                .await
                .context("the durable writer's close panicked")
                .and_then(|closed| closed),
            None => Ok(()),
        };
        if let (Err(served), Err(_)) = (&served, &stored) {
            tracing::error!(error = %format!("{served:#}"), "HTTP server failed");
        }
        stored?;
        served?;
        info!("stopped");
        Ok(())
    }
}

/// Every flush is one small write that should leave now: Nagle's algorithm would
/// hold it back behind an unacknowledged segment (40 ms with delayed ACKs; measured on
/// TLS handshakes in docs/BENCHMARKS.md, so it is set before the handshake).
fn set_nodelay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// ALPN as actix-http offers it without HTTP/2: `http/1.1`, then any configured.
fn tls_config_for_http1(mut config: ServerConfig) -> ServerConfig {
    let mut protocols = vec![b"http/1.1".to_vec()];
    protocols.append(&mut config.alpn_protocols);
    config.alpn_protocols = protocols;
    config
}

/// Admits a new connection under the HTTP caps and hands it to the HTTP service, or
/// answers the refusal (429 / 503) itself and closes it.
fn govern<T, S>(
    connections: &Arc<HttpGuard>,
    io: T,
    peer: Option<SocketAddr>,
    http: &S,
) -> impl Future<Output = Result<(), S::Error>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<(GuardedIo<T>, Protocol, Option<SocketAddr>), Response = ()>,
{
    match connections.admit(io, peer) {
        Ok(guarded) => Either::Left(http.call((guarded, Protocol::Http1, peer))),
        Err((io, refusal)) => Either::Right(async move {
            refuse(io, refusal).await;
            Ok(())
        }),
    }
}

/// The upgrade hook: the connection leaves the HTTP regime (its slot is released and
/// its writes are no longer bounded by `http.write_timeout_ms`) before the WebSocket
/// code gets it, since an upgraded socket has its own caps and write deadline.
fn release_on_upgrade<T>(
    sockets: Arc<SocketRoutes>,
) -> impl ServiceFactory<
    (Request, Framed<GuardedIo<T>, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_http::Error,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    apply_fn_factory(
        upgrade_service::<T>(sockets),
        |(req, framed): (Request, Framed<GuardedIo<T>, h1::Codec>), upgrade: &_| {
            upgrade.call((req, framed.into_map_io(GuardedIo::into_inner)))
        },
    )
}

fn build_store(settings: &StoreSettings) -> anyhow::Result<SnapshotStore> {
    let csv = if settings.universe_file.is_empty() {
        DEFAULT_UNIVERSE_CSV.to_owned()
    } else {
        std::fs::read_to_string(&settings.universe_file).with_context(|| {
            format!(
                "store.universe_file: cannot read {}",
                settings.universe_file
            )
        })?
    };
    let universe = load_universe(&csv).context("store.universe_file: bad universe CSV")?;
    let store = SnapshotStore::new(settings.max_symbols);
    for entry in universe {
        store
            .add_symbol(entry.symbol, &entry.name, Some(entry.previous_close))
            .context("store.max_symbols is smaller than the universe")?;
    }
    Ok(store)
}

/// Opens the data file and restores the market state into `store`, when
/// `store.data_dir` is set. The durable layer covers a single instance: with Redis the
/// cluster's state lives there (persisting it here is a later increment).
fn open_durable(settings: &Settings, store: &SnapshotStore) -> anyhow::Result<Option<Durable>> {
    let dir = &settings.store.data_dir;
    if dir.is_empty() {
        return Ok(None);
    }
    if settings.broker.kind != crate::config::BrokerKind::Memory {
        tracing::warn!(
            data_dir = %dir,
            "store.data_dir is not used with broker.kind = \"redis\" yet; the state lives in Redis"
        );
        return Ok(None);
    }
    let flush = Duration::from_millis(settings.store.flush_interval_ms);
    let retention = settings.store.retention();
    Durable::open(std::path::Path::new(dir), store, flush, retention).map(Some)
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
