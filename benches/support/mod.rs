//! Helpers shared by the benchmark harnesses that run the release server in its own
//! process (each harness is its own crate and includes this module).
#![allow(dead_code)] // not every harness uses every helper

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("a local address")
        .port()
}

/// Starts `target/release/tickstream` on `port` with `env` on top of the settings
/// every harness needs: no inherited TICKSTREAM* variables, warn-level logs, and the
/// per-address limits (meant for internet clients) lifted, because the load comes
/// from one address. Waits until it listens.
pub fn start_server(port: u16, env: &[(&str, &str)]) -> Child {
    // TICKSTREAM_SERVER_BIN runs another build (e.g. a saved "before" binary) for
    // side-by-side comparisons; the default is this crate's release binary.
    let binary = std::env::var("TICKSTREAM_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tickstream").to_owned());
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("TICKSTREAM") {
            command.env_remove(key);
        }
    }
    command
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .env("TICKSTREAM__LOG__LEVEL", "warn")
        .env("TICKSTREAM__LIMITS__MAX_CONNECTIONS_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECTS_PER_SECOND_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECT_BURST_PER_IP", "100000")
        .env(
            "TICKSTREAM__LIMITS__REST_REQUESTS_PER_SECOND_PER_IP",
            "100000",
        )
        .env("TICKSTREAM__LIMITS__REST_BURST_PER_IP", "100000")
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    let mut child = command.spawn().expect("the server starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not listen on port {port}");
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
