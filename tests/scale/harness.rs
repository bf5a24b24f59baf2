//! Real processes on loopback ports: redis-server, tickstream instances (the binary
//! under test, `broker.kind = "redis"`, on ports the OS chose), and nginx and HAProxy
//! with the shipped configurations. Every process is killed when its handle drops, and
//! its log is printed if the test is failing, so a red run says what each process saw
//! (tests/support).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    spawn_server, start_on_port, start_on_some_port, tickstream_command, Process, ServerProcess,
    TempDir,
};

pub const PUBLISHER_KEY: &str = "scale-publisher";
pub const ADMIN_KEY: &str = "scale-admin";

/// A program the test command (`scripts/test`) installs; a clear failure otherwise.
fn program(name: &str, fallbacks: &[&str]) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/test, which installs it (apt)")
        })
}

// ---- Redis ------------------------------------------------------------------------

pub struct Redis {
    pub port: u16,
    process: Option<Process>,
    dir: TempDir,
    /// Append-only file on (every write synced): a restart keeps the data.
    persistent: bool,
}

impl Redis {
    /// A fresh redis-server without persistence: a restart comes back empty, the
    /// hardest case for the instances' recovery.
    pub fn start() -> Redis {
        Redis::start_with(false)
    }

    /// A fresh redis-server with its append-only file on, as docker-compose.yml runs
    /// it: a restart comes back with everything it had.
    pub fn start_persistent() -> Redis {
        Redis::start_with(true)
    }

    fn start_with(persistent: bool) -> Redis {
        let dir = TempDir::new("scale-redis");
        let (process, port) = start_on_some_port("redis-server", &dir.join("redis.log"), |port| {
            redis_command(&dir, port, persistent)
        });
        Redis {
            port,
            process: Some(process),
            dir,
            persistent,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGKILL; without persistence its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.signal("-CONT");
            process.stop();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as
    /// in a network partition; its data is kept.
    pub fn pause(&self) {
        assert!(self.process.as_ref().expect("running").signal("-STOP"));
    }

    pub fn resume(&self) {
        assert!(self.process.as_ref().expect("running").signal("-CONT"));
    }

    /// Starts again on the same port (empty unless persistent): the instances know
    /// only that port.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.join("redis.log");
        let process = start_on_port(
            "redis-server",
            &mut redis_command(&self.dir, self.port, self.persistent),
            &log,
            self.port,
        )
        .unwrap_or_else(|_| {
            panic!(
                "redis-server's port {} was taken while it was down",
                self.port
            )
        });
        self.process = Some(process);
    }
}

fn redis_command(dir: &TempDir, port: u16, persistent: bool) -> Command {
    let mut command = Command::new(program("redis-server", &["/usr/bin/redis-server"]));
    command
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(dir.path());
    if persistent {
        command.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    command
}

// ---- tickstream instances ---------------------------------------------------------

pub struct Instance {
    pub name: String,
    pub port: u16,
    server: ServerProcess,
    /// Its working directory; after `server`, which must stop first.
    _dir: TempDir,
}

impl Instance {
    /// Starts the binary against `redis` with the simulator off unless `env` says
    /// otherwise, on a port the OS chooses; the port is reported once it listens.
    pub fn start(name: &str, redis: &Redis, env: &[(&str, &str)]) -> Instance {
        let dir = TempDir::new(&format!("scale-{name}"));
        let mut command = tickstream_command();
        command
            .current_dir(dir.path())
            .env("TICKSTREAM__SERVER__HOST", "127.0.0.1")
            .env("TICKSTREAM__SERVER__WORKERS", "1")
            .env("TICKSTREAM__SIMULATOR__ENABLED", "false")
            .env("TICKSTREAM__BROKER__KIND", "redis")
            .env("TICKSTREAM__BROKER__REDIS_URL", redis.url())
            .env("TICKSTREAM__BROKER__LOCK_TTL_MS", "1500")
            .env("TICKSTREAM__INGEST__PUBLISHER_KEYS", PUBLISHER_KEY)
            .env("TICKSTREAM__ADMIN__API_KEY", ADMIN_KEY)
            .env("TICKSTREAM__LOG__LEVEL", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let server = spawn_server(name, command);
        Instance {
            name: name.to_owned(),
            port: server.port,
            server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no goodbye, no lock release, connections just drop.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Freezes the process (SIGSTOP): it misses the channel until [`Instance::resume`].
    pub fn pause(&self) {
        assert!(
            self.server.signal("-STOP"),
            "{}: kill -STOP failed",
            self.name
        );
    }

    pub fn resume(&self) {
        assert!(
            self.server.signal("-CONT"),
            "{}: kill -CONT failed",
            self.name
        );
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        get(&self.url(path)).await
    }

    pub async fn quote(&self, symbol: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/quotes/{symbol}")).await;
        assert_eq!(status, 200, "{}: {body}", self.name);
        body
    }

    pub async fn readiness(&self) -> (u16, String) {
        let (status, body) = self.get("/readyz").await;
        (status, body["status"].as_str().unwrap_or("").to_owned())
    }

    /// Polls `/readyz` until it says `want` (bounded).
    pub async fn wait_status(&self, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, status) = self.readiness().await;
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} stayed {status:?}, expected {want:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> u64 {
        crate::support::metric(self.port, name).await
    }

    /// `POST /api/v1/ticks` as the test publisher.
    pub async fn publish(&self, ticks: Value) -> Value {
        let client = awc::Client::new();
        let mut response = client
            .post(self.url("/api/v1/ticks"))
            .insert_header(("Authorization", format!("Bearer {PUBLISHER_KEY}")))
            .send_json(&ticks)
            .await
            .expect("ingest request succeeds");
        let body = response.body().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// Viewer sessions on this instance, as `(id, subscribed symbol count)`.
    pub async fn sessions(&self) -> Vec<(String, u64)> {
        let client = awc::Client::new();
        let mut response = client
            .get(self.url("/api/v1/admin/sessions"))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send()
            .await
            .expect("admin request succeeds");
        let body: Value = response.json().await.unwrap();
        let list = body
            .get("sessions")
            .and_then(Value::as_array)
            .or_else(|| body.as_array())
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_owned(),
                    s["symbols"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

pub async fn get(url: &str) -> (u16, Value) {
    let client = awc::Client::new();
    let mut response = client.get(url).send().await.expect("HTTP request succeeds");
    let body = response.body().await.unwrap_or_default();
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

// ---- nginx ------------------------------------------------------------------------

pub struct Nginx {
    pub port: u16,
    process: Process,
    /// Its prefix (config, logs, temp files); after `process`, which must stop first.
    _dir: TempDir,
}

impl Nginx {
    /// nginx with the project's `config/nginx.conf`, rewritten only where a test
    /// must differ: loopback port, the instances' addresses, and files under a
    /// temporary prefix (pid, logs, temp paths) so it runs unprivileged in parallel.
    pub fn start(instances: &[&Instance]) -> Nginx {
        let dir = TempDir::new("scale-nginx");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx.conf"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let path = dir.join("nginx.conf");
        let (process, port) = start_on_some_port("nginx", &dir.join("stderr.log"), |port| {
            std::fs::write(&path, nginx_config(&shipped, instances, dir.path(), port)).unwrap();
            let mut command = Command::new(program("nginx", &["/usr/sbin/nginx"]));
            command.arg("-p").arg(dir.path()).arg("-c").arg(&path);
            command
        });
        Nginx {
            port,
            process: process.also_print(dir.join("error.log")),
            _dir: dir,
        }
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }
}

fn nginx_config(shipped: &str, instances: &[&Instance], dir: &Path, port: u16) -> String {
    let servers: String = instances
        .iter()
        .map(|i| {
            format!(
                "        server 127.0.0.1:{} max_fails=1 fail_timeout=5s;\n",
                i.port
            )
        })
        .collect();
    let mut config = String::new();
    config.push_str(&format!(
        "daemon off;\npid {0}/nginx.pid;\nerror_log {0}/error.log info;\n",
        dir.display()
    ));
    let mut replaced_upstreams = false;
    for line in shipped.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("server tickstream-") {
            if !replaced_upstreams {
                config.push_str(&servers);
                replaced_upstreams = true;
            }
            continue;
        }
        if trimmed == "listen 8080;" {
            config.push_str(&format!("        listen 127.0.0.1:{port};\n"));
            continue;
        }
        if trimmed == "access_log /dev/stdout;" {
            config.push_str(&format!("    access_log {}/access.log;\n", dir.display()));
            for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                config.push_str(&format!("    {temp}_temp_path {}/{temp};\n", dir.display()));
            }
            continue;
        }
        config.push_str(line);
        config.push('\n');
    }
    assert!(
        replaced_upstreams,
        "config/nginx.conf lost its upstream servers"
    );
    config
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Graceful first (lets the workers go); the process handle then kills it.
        let _ = self.process.signal("-QUIT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- HAProxy ----------------------------------------------------------------------

pub struct Haproxy {
    pub port: u16,
    _process: Process,
    /// Its config and log; after `_process`, which must stop first.
    _dir: TempDir,
}

impl Haproxy {
    /// HAProxy with the project's `config/haproxy.cfg`, rewritten only for the
    /// loopback port and the instances' addresses.
    pub fn start(instances: &[&Instance]) -> Haproxy {
        let dir = TempDir::new("scale-haproxy");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/haproxy.cfg"),
        )
        .unwrap();
        let path = dir.join("haproxy.cfg");
        let (process, port) = start_on_some_port("haproxy", &dir.join("haproxy.log"), |port| {
            std::fs::write(&path, haproxy_config(&shipped, instances, port)).unwrap();
            let mut command = Command::new(program("haproxy", &["/usr/sbin/haproxy"]));
            command.arg("-db").arg("-f").arg(&path);
            command
        });
        Haproxy {
            port,
            _process: process,
            _dir: dir,
        }
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }
}

fn haproxy_config(shipped: &str, instances: &[&Instance], port: u16) -> String {
    let mut config = String::new();
    let mut replaced = false;
    for line in shipped.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("server tickstream-") {
            if !replaced {
                for (n, instance) in instances.iter().enumerate() {
                    let rest = trimmed.splitn(3, ' ').nth(2).unwrap_or("");
                    let rest = rest.split_once(' ').map_or("", |(_, r)| r);
                    config.push_str(&format!(
                        "    server t{n} 127.0.0.1:{} {rest}\n",
                        instance.port
                    ));
                }
                replaced = true;
            }
            continue;
        }
        if trimmed == "bind :8080" {
            config.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            continue;
        }
        config.push_str(line);
        config.push('\n');
    }
    assert!(replaced, "config/haproxy.cfg lost its servers");
    config
}
