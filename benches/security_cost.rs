//! The cost of viewer auth (JWT) and TLS: connect time and per-message server CPU.
//!
//! Run: `cargo bench --bench security_cost` (optional args: CONNECTS VIEWERS SECONDS,
//! default 300 200 10). Four release servers in turn (plain, JWT, TLS, TLS + JWT), each
//! in its own process with the simulator at 2,000 ticks/s. Connect time is measured
//! from TCP connect to the `welcome` message, one connection after another. Then
//! VIEWERS viewers subscribe to 20 symbols (max_hz 10) for SECONDS, and the server's
//! CPU time is divided by the messages it sent (from /metrics).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::Connector;

use support::{cpu_seconds, start_server, ServerProcess};

const JWT_SECRET: &str = "bench-jwt-secret";
const SYMBOLS: &str =
    "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM,V,MA,UNH,XOM,JNJ,PG,HD,COST,SPY,QQQ,NFLX,AMD";

struct Variant {
    name: &'static str,
    tls: bool,
    jwt: bool,
}

fn start(variant: &Variant, cert: &std::path::Path, key: &std::path::Path) -> ServerProcess {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut env = vec![
        ("TICKSTREAM__SIMULATOR__TICKS_PER_SECOND", "2000"),
        ("TICKSTREAM__SIMULATOR__SEED", "3"),
    ];
    if variant.jwt {
        env.extend([
            ("TICKSTREAM__AUTH__MODE", "jwt"),
            ("TICKSTREAM__AUTH__JWT_SECRET", JWT_SECRET),
        ]);
    }
    if variant.tls {
        env.extend([
            ("TICKSTREAM__TLS__CERT_FILE", cert.as_str()),
            ("TICKSTREAM__TLS__KEY_FILE", key.as_str()),
        ]);
    }
    start_server(&env)
}

struct Client {
    port: u16,
    tls: Option<Connector>,
    token: Option<String>,
}

impl Client {
    async fn connect(
        &self,
        query: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let token = self
            .token
            .as_ref()
            .map(|t| format!("&token={t}"))
            .unwrap_or_default();
        let url = format!("{scheme}://localhost:{}/ws?x=1{query}{token}", self.port);
        let request = url.into_client_request().unwrap();
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, self.tls.clone())
                .await
                .expect("connect");
        // The welcome.
        ws.next().await.expect("welcome").expect("welcome ok");
        ws
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let connects = args.first().copied().unwrap_or(300);
    let viewers = args.get(1).copied().unwrap_or(200);
    let seconds = args.get(2).copied().unwrap_or(10) as u64;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tickstream-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client_tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let token = encode(
        &Header::default(),
        &serde_json::json!({"sub":"bench","exp": chrono::Utc::now().timestamp() + 3600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("security cost: {connects} sequential connects; {viewers} viewers x 20 symbols for {seconds} s, simulator 2,000 ticks/s, max_hz 10");
    println!("| variant | connect p50 (ms) | connect p99 (ms) | server CPU per connect (ms) | messages received/s | server CPU per 1k messages (ms) |");
    println!("|---|---|---|---|---|---|");
    for variant in [
        Variant {
            name: "plain",
            tls: false,
            jwt: false,
        },
        Variant {
            name: "JWT (HS256)",
            tls: false,
            jwt: true,
        },
        Variant {
            name: "TLS",
            tls: true,
            jwt: false,
        },
        Variant {
            name: "TLS + JWT",
            tls: true,
            jwt: true,
        },
    ] {
        let server = start(&variant, &cert_path, &key_path);
        let (port, pid) = (server.port, server.pid());
        let client = Client {
            port,
            tls: variant.tls.then(|| Connector::Rustls(client_tls.clone())),
            token: variant.jwt.then(|| token.clone()),
        };
        let (connect_times, connect_cpu, rate, cpu_per_k) = runtime.block_on(async {
            // Warm up.
            drop(client.connect("").await);
            let cpu_before = cpu_seconds(pid);
            let mut times = Vec::with_capacity(connects);
            for _ in 0..connects {
                let started = Instant::now();
                let ws = client.connect("").await;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                drop(ws);
            }
            let connect_cpu = (cpu_seconds(pid) - cpu_before) * 1000.0 / connects as f64;
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());

            let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..viewers {
                let mut ws = client.connect(&format!("&symbols={SYMBOLS}")).await;
                let received = received.clone();
                tasks.push(tokio::spawn(async move {
                    while let Some(Ok(_)) = ws.next().await {
                        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let cpu_before = cpu_seconds(pid);
            let before = received.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let messages = (received.load(std::sync::atomic::Ordering::Relaxed) - before) as f64;
            let cpu = cpu_seconds(pid) - cpu_before;
            for task in tasks {
                task.abort();
            }
            (
                times,
                connect_cpu,
                messages / seconds as f64,
                cpu * 1000.0 / (messages / 1000.0),
            )
        });
        println!(
            "| {} | {:.2} | {:.2} | {:.3} | {:.0} | {:.2} |",
            variant.name,
            percentile(&connect_times, 0.5),
            percentile(&connect_times, 0.99),
            connect_cpu,
            rate,
            cpu_per_k
        );
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
