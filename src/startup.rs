//! Building and running the application: the one place where the pieces are wired.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_server::Server;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use anyhow::Context;
use tracing::info;

use crate::broker::Broker;
use crate::config::{Settings, StoreSettings};
use crate::feed::{FeedMonitor, Vendor};
use crate::http::{routes, upgrade_service};
use crate::ingest::{parse_replay, run_replay, Simulator};
use crate::market_session::{run_rollovers, Clock, SystemClock};
use crate::state::AppState;
use crate::store::{load_universe, SnapshotStore, DEFAULT_UNIVERSE_CSV};

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Loads the universe, binds the listener (port 0 picks a free one), starts the
    /// HTTP workers and the configured feeds. Must run inside the actix/tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the wall clock that schedules trading-session
    /// rollovers injected (tests move it to just before 09:30).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let store = build_store(&settings.store)?;
        let replay = if settings.replay.file.is_empty() {
            None
        } else {
            let csv = std::fs::read_to_string(&settings.replay.file)
                .with_context(|| format!("replay.file: cannot read {}", settings.replay.file))?;
            Some(parse_replay(&csv).context("replay.file: bad replay CSV")?)
        };
        let rollover_time = settings.session.rollover_time()?;
        let time_zone = settings.session.time_zone()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let broker = Broker::start(store.clone(), &settings.broker, shutdown.clone()).await?;
        let state = AppState::new(
            store.clone(),
            broker.clone(),
            settings.clone(),
            shutdown.clone(),
        )?;

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
            // We own SIGTERM: sessions must be told before the server stops (shutdown.rs).
            .disable_signals()
            .shutdown_timeout(
                Duration::from_millis(settings.server.shutdown_timeout_ms)
                    .as_secs()
                    .max(1),
            );
        let tls = crate::tls::server_config(&settings.tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let data = web::Data::new(state.clone());
        let vendor = Vendor::from_settings(&settings.feed).context("feed")?;
        let feed_monitor = vendor
            .as_ref()
            .map(|_| Arc::new(FeedMonitor::new(settings.feed.kind)));
        let feed_data = feed_monitor.clone();
        // One HTTP service per worker: actix-web's application for every request,
        // except upgrade requests, which actix-http hands to `upgrade_service` with the
        // connection (src/socket/). The HTTP/1 settings are actix-web's defaults.
        macro_rules! http_service {
            () => {{
                let data = data.clone();
                let app = App::new()
                    .app_data(data.clone())
                    .app_data(feed_data.clone())
                    // The feed's lines in /metrics and /readyz (src/feed/expose.rs).
                    .wrap(actix_web::middleware::from_fn(crate::feed::expose))
                    .configure(routes);
                HttpService::build()
                    .keep_alive(KeepAlive::default())
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // Every flush is one small write that should leave now: Nagle's
                    // algorithm would hold it back behind an unacknowledged segment (40 ms
                    // with delayed ACKs; measured on TLS handshakes in docs/BENCHMARKS.md).
                    .tcp_nodelay(true)
                    .upgrade(upgrade_service(data.get_ref().clone()))
                    .finish(map_config(
                        app.into_factory()
                            .map_err(|err: actix_web::Error| err.error_response()),
                        |_| AppConfig::default(),
                    ))
            }};
        }
        let builder = match tls {
            Some(config) => builder.listen("tickstream-https", listener, move || {
                http_service!().rustls_0_23(config.clone())
            }),
            None => builder.listen("tickstream-http", listener, move || http_service!().tcp()),
        }
        .context("cannot start the HTTP server")?;
        let server = builder.run();

        if let (Some(vendor), Some(monitor)) = (vendor, feed_monitor) {
            crate::feed::add_symbols(&settings.feed, &store, &broker).await?;
            tokio::spawn(crate::feed::run(
                vendor,
                settings.feed.clone(),
                store.clone(),
                broker.clone(),
                monitor,
                shutdown.clone(),
            ));
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
            shutdown,
        ));
        state.set_ready(true);
        info!(
            host = %settings.server.host,
            port,
            workers,
            symbols = state.store.len(),
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
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared handles (tests use the store as a feed and the token to stop).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the shutdown token is cancelled (by a signal or a caller), then
    /// lets sessions send 1001 and stops the server gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await.context("HTTP server failed")?;
        info!("stopped");
        Ok(())
    }
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
