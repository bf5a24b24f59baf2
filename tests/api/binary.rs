//! The release contract of the binary itself: environment-only configuration, the
//! health-check command, SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::WsClient;

/// The binary with no `TICKSTREAM*` settings inherited from the caller's shell, so
/// each test sets exactly what it means to.
pub fn tickstream_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickstream"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TICKSTREAM") {
            command.env_remove(key);
        }
    }
    // Memory only: these tests share working directories, and a data file is locked
    // by the one process that has it open (tests/api/durable.rs covers the file).
    command.env("TICKSTREAM__STORE__DATA_DIR", "");
    command
}

/// A spawned server that is killed when dropped, so a failing test never leaves one
/// running (holding its port and the test runner's output pipe).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthcheck(port: u16) -> bool {
    tickstream_command()
        .arg("healthcheck")
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("healthcheck runs")
        .success()
}

#[actix_web::test]
async fn env_configured_binary_serves_passes_healthcheck_and_stops_on_sigterm() {
    let port = free_port();
    assert!(!healthcheck(port), "nothing listens yet: unhealthy");
    let dir = std::env::temp_dir(); // a working directory without config/ files
    let mut child = tickstream_command()
        .current_dir(&dir)
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .env("TICKSTREAM__LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut healthy = false;
    for _ in 0..100 {
        if healthcheck(port) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "healthcheck passes once the server runs");

    let url = format!("ws://127.0.0.1:{port}/ws?symbols=AAPL");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = WsClient::from_stream(ws).await;
    client.recv_type("update").await; // the embedded simulator is on by default

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1001);
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "exits within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut logs).unwrap();
    let first = logs.lines().next().expect("logs on stdout");
    let line: serde_json::Value = serde_json::from_str(first).expect("JSON log lines");
    assert!(line.get("level").is_some(), "{first}");
}

#[test]
fn a_bad_setting_fails_start_up_naming_the_key() {
    let output = tickstream_command()
        .env("TICKSTREAM__STREAM__MAX_HZ", "fast")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stream.max_hz"), "{stderr}");
}

#[test]
fn tickstream_env_overlays_its_file_and_config_flag_picks_the_base() {
    // Arrange: a working directory whose production overlay sets an invalid value, so
    // start-up failing on that key proves the overlay was read.
    let dir = std::env::temp_dir().join(format!("tickstream-env-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("config/staging.toml"),
        "[stream]\nheartbeat_ms = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("base.toml"),
        "[stream]\nmax_symbols_per_connection = 0\n",
    )
    .unwrap();

    // Act
    let overlay = tickstream_command()
        .current_dir(&dir)
        .env("TICKSTREAM_ENV", "staging")
        .output()
        .unwrap();
    let flag = tickstream_command()
        .current_dir(&dir)
        .args(["--config", "base.toml"])
        .output()
        .unwrap();
    let missing = tickstream_command()
        .current_dir(&dir)
        .env("TICKSTREAM_ENV", "nosuchenv")
        .output()
        .unwrap();

    // Assert
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!overlay.status.success());
    assert!(
        stderr(&overlay).contains("stream.heartbeat_ms"),
        "{}",
        stderr(&overlay)
    );
    assert!(!flag.status.success());
    assert!(
        stderr(&flag).contains("stream.max_symbols_per_connection"),
        "{}",
        stderr(&flag)
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("nosuchenv.toml"),
        "{}",
        stderr(&missing)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_production_overlay_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.toml"
    ))
    .unwrap();
    let settings = tickstream::config::Settings::from_sources(
        &[("production.toml".into(), text)],
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    assert_eq!(settings.server.host, "0.0.0.0");
    assert_eq!(settings.log.format, tickstream::config::LogFormat::Json);
}

#[actix_web::test]
async fn replay_command_plays_a_recording_as_the_feed() {
    let port = free_port();
    let mut child = tickstream_command()
        .args([
            "replay",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample-ticks.csv"),
            "--speed",
            "10",
        ])
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .env("TICKSTREAM__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut connected = None;
    for _ in 0..100 {
        let url = format!("ws://127.0.0.1:{port}/ws?symbols=AAPL,TSLA");
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            connected = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = WsClient::from_stream(connected.expect("server listens")).await;
    let update = client.recv_type("update").await;
    assert!(!update["quotes"].as_array().unwrap().is_empty());
    let _ = child.kill();
    let _ = child.wait();
}

#[actix_web::test]
async fn healthcheck_speaks_tls_when_the_server_does() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tickstream-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let with_tls = |command: &mut Command| {
        command
            .env("TICKSTREAM__SERVER__PORT", port.to_string())
            .env("TICKSTREAM__TLS__CERT_FILE", &cert_path)
            .env("TICKSTREAM__TLS__KEY_FILE", &key_path);
    };
    let mut server = tickstream_command();
    with_tls(&mut server);
    let mut child = server.stdout(Stdio::null()).spawn().unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        let mut probe = tickstream_command();
        with_tls(&mut probe);
        if probe
            .arg("healthcheck")
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(healthy, "the TLS server passes its healthcheck");
}

#[actix_web::test]
async fn client_faults_never_log_at_error_level() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let child = tickstream_command()
        .current_dir(std::env::temp_dir())
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .env("TICKSTREAM__LOG__FORMAT", "json")
        .env("TICKSTREAM__SIMULATOR__ENABLED", "false")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut child = KillOnDrop(child);
    for _ in 0..100 {
        if healthcheck(port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handshake = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let faults: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec(),
        b"POST /api/v1/ticks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            .to_vec(),
        // After a valid handshake: a fragmented ping, RSV bits, a bad close code.
        [handshake.as_bytes(), &[0x09, 0x80, 1, 2, 3, 4]].concat(),
        [handshake.as_bytes(), &[0xF1, 0x80, 1, 2, 3, 4]].concat(),
        [handshake.as_bytes(), &[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xED]].concat(),
    ];
    for fault in faults {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(&fault).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut logs).unwrap();
    child.0.wait().unwrap();
    assert!(logs.contains("tickstream listening"), "{logs}");
    for line in logs.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("JSON log lines");
        assert_ne!(line["level"], "ERROR", "{line}");
        assert_ne!(line["level"], "WARN", "{line}");
    }
}
