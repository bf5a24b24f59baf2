//! The container's runtime contract (issue 8), checked on the binary started exactly
//! as the image starts it (see `image`): it serves, its health check tells healthy
//! from not, SIGTERM closes every viewer with 1001 and exits 0 within the shutdown
//! timeout, logs are text by default and JSON lines on request, and it writes nothing
//! to its working directory. scripts/deploy-checks runs these on the release build.

mod image;

use std::time::Duration;

use image::{http_get, ImageLayout};
use serde_json::Value;

use crate::helpers::WsClient;
use crate::support::RefusedPort;

/// server.shutdown_timeout_ms of the shipped configuration, which the image uses.
fn shutdown_timeout() -> Duration {
    let settings = tickstream::config::Settings::from_sources(&[], Vec::<(String, String)>::new())
        .expect("defaults load");
    Duration::from_millis(settings.server.shutdown_timeout_ms)
}

/// How much later than the shutdown timeout the process may exit: the time to stop
/// the runtime and the feeds. Kubernetes allows more (deploy/k8s/deployment.yaml:
/// preStop 5 s + this, within terminationGracePeriodSeconds 15).
const EXIT_MARGIN: Duration = Duration::from_secs(2);

async fn viewer(port: u16, query: &str) -> WsClient {
    let url = format!("ws://127.0.0.1:{port}/ws{query}");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket upgrade succeeds");
    WsClient::from_stream(ws).await // asserts the welcome
}

#[actix_web::test]
async fn the_image_command_serves_checks_its_health_and_stops_on_sigterm_with_1001() {
    // Arrange: the image's layout, read-only for the server's user, and nothing
    // listening yet, so the health check must fail.
    let layout = ImageLayout::new();
    layout.assert_workdir_is_read_only();
    let files_before = layout.snapshot();
    let nothing = RefusedPort::new();
    let down = layout.healthcheck(nothing.port);
    assert!(!down.status.success(), "nothing listens yet: unhealthy");

    // Act 1: start it as the image does, configured by the environment only.
    let mut server = layout.serve(&[]);
    layout.wait_until_healthy(&mut server).await;
    let port = server.port;

    // Assert: healthy (also with the image's own host value), ready, serving viewers.
    let probe = layout.healthcheck_with_host(port, "0.0.0.0");
    assert!(
        probe.status.success(),
        "the health check with the image's TICKSTREAM__SERVER__HOST=0.0.0.0 probes loopback: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready", "{body}");
    let mut viewers = Vec::new();
    for query in [
        "?symbols=AAPL",
        "?symbols=MSFT,NVDA&compression=deflate",
        "?symbols=TSLA",
        "?symbols=AMZN&compression=deflate",
    ] {
        viewers.push(viewer(port, query).await);
    }
    for viewer in &mut viewers {
        viewer.recv_type("update").await; // the built-in simulator is on by default
    }

    // Act 2: what `docker stop` and the kubelet do.
    server.sigterm();

    // Assert: every viewer is told 1001, the process exits 0 in time, then the health
    // check fails, and the working directory is as it was.
    for viewer in &mut viewers {
        let (code, reason) = viewer.expect_close().await;
        assert_eq!(code, 1001, "close reason: {reason}");
    }
    let limit = shutdown_timeout() + EXIT_MARGIN;
    let (exit, took) = server.wait_for_exit(limit);
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took <= limit, "exited after {took:?}, allowed {limit:?}");
    let down = layout.healthcheck(port);
    assert!(!down.status.success(), "the server is gone: unhealthy");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot connect"),
        "the failed health check says why: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let logs = server.stdout();
    let first = logs.lines().next().expect("logs on stdout");
    assert!(
        serde_json::from_str::<Value>(first).is_err(),
        "text logs by default, got {first}"
    );
    assert!(first.contains("INFO"), "{first}");
    assert!(
        logs.lines()
            .any(|l| l.contains("shutting down") && l.contains("SIGTERM")),
        "the shutdown is logged:\n{logs}"
    );
    assert_eq!(
        layout.snapshot(),
        files_before,
        "the server changed its working directory"
    );
}

#[actix_web::test]
async fn json_log_format_prints_one_json_object_per_stdout_line() {
    let layout = ImageLayout::new();
    let mut server = layout.serve(&[("TICKSTREAM__LOG__FORMAT", "json")]);
    layout.wait_until_healthy(&mut server).await;
    let mut client = viewer(server.port, "?symbols=AAPL").await;

    server.sigterm();
    let (code, _) = client.expect_close().await;
    let (exit, _) = server.wait_for_exit(shutdown_timeout() + EXIT_MARGIN);

    assert_eq!(code, 1001);
    assert!(exit.success(), "exit status {exit:?}");
    let logs = server.stdout();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.len() >= 3,
        "start-up and shutdown are logged:\n{logs}"
    );
    for line in &lines {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        for field in ["timestamp", "level", "target"] {
            assert!(value.get(field).is_some(), "no {field}: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["level"] == "INFO" && v["signal"] == "SIGTERM"
        }),
        "the shutdown is logged with its signal as a field:\n{logs}"
    );
}

#[test]
fn healthcheck_fails_when_the_answer_is_not_200() {
    // A listener that answers 503, as a server would while it cannot serve.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let answer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok((mut stream, _)) = listener.accept() {
                use std::io::{Read, Write};
                stream.set_nonblocking(false).unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let layout = ImageLayout::new();

    let output = layout.healthcheck(port);

    assert!(answer.join().unwrap(), "the health check connected");
    assert!(!output.status.success(), "503 is unhealthy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("503"), "{stderr}");
}
