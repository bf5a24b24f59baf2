//! Real processes on free loopback ports: redis-server, tickstream instances (the
//! binary under test, `broker.kind = "redis"`), and nginx with `config/nginx.conf`.
//! Every process is killed when its handle drops, and its log is printed if the test
//! is failing, so a red run says what each process saw.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PUBLISHER_KEY: &str = "scale-publisher";
pub const ADMIN_KEY: &str = "scale-admin";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickstream-scale-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
}

fn print_log_if_failing(name: &str, log: &Path) {
    if std::thread::panicking() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("---- last lines of {name} ({}):", log.display());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// Waits until something accepts TCP connections on `port` (bounded).
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- Redis ------------------------------------------------------------------------

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Redis {
    /// A fresh redis-server without persistence: a restart comes back empty, the
    /// hardest case for the instances' recovery.
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
            dir: temp_dir("redis"),
        };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new(program("redis-server", &["/usr/bin/redis-server"]))
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        wait_listening(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as
    /// in a network partition; its data is kept.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running"), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), "-CONT");
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        print_log_if_failing("redis-server", &self.dir.join("redis.log"));
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- tickstream instances ---------------------------------------------------------

pub struct Instance {
    pub name: String,
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Instance {
    /// Starts the binary against `redis` with the simulator off unless `env` says
    /// otherwise; waits until it answers `/healthz`.
    pub fn start(name: &str, redis: &Redis, env: &[(&str, &str)]) -> Instance {
        let port = free_port();
        let dir = temp_dir(name);
        let log = std::fs::File::create(dir.join("tickstream.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tickstream"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TICKSTREAM") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(&dir)
            .env("TICKSTREAM__SERVER__HOST", "127.0.0.1")
            .env("TICKSTREAM__SERVER__PORT", port.to_string())
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
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tickstream starts");
        let instance = Instance {
            name: name.to_owned(),
            port,
            child: Some(child),
            dir,
        };
        wait_listening(port, name);
        instance
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no goodbye, no lock release, connections just drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        let text = text(&self.url("/metrics")).await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
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

impl Drop for Instance {
    fn drop(&mut self) {
        print_log_if_failing(&self.name, &self.dir.join("tickstream.log"));
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
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

pub async fn text(url: &str) -> String {
    let client = awc::Client::new();
    let mut response = client.get(url).send().await.expect("HTTP request succeeds");
    let body = response.body().await.unwrap_or_default();
    String::from_utf8_lossy(&body).into_owned()
}

// ---- nginx ------------------------------------------------------------------------

pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    /// nginx with the project's `config/nginx.conf`, rewritten only where a test
    /// must differ: loopback port, the instances' addresses, and files under a
    /// temporary prefix (pid, logs, temp paths) so it runs unprivileged in parallel.
    pub fn start(instances: &[&Instance]) -> Nginx {
        let port = free_port();
        let dir = temp_dir("nginx");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx.conf"),
        )
        .unwrap();
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
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(program("nginx", &["/usr/sbin/nginx"]))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx {
            port,
            child: Some(child),
            dir,
        };
        wait_listening(port, "nginx");
        nginx
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        print_log_if_failing("nginx", &self.dir.join("error.log"));
        if let Some(mut child) = self.child.take() {
            signal(&child, "-QUIT");
            std::thread::sleep(Duration::from_millis(50));
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- HAProxy ----------------------------------------------------------------------

pub struct Haproxy {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Haproxy {
    /// HAProxy with the project's `config/haproxy.cfg`, rewritten only for the
    /// loopback port and the instances' addresses.
    pub fn start(instances: &[&Instance]) -> Haproxy {
        let port = free_port();
        let dir = temp_dir("haproxy");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/haproxy.cfg"),
        )
        .unwrap();
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
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(program("haproxy", &["/usr/sbin/haproxy"]))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let haproxy = Haproxy {
            port,
            child: Some(child),
            dir,
        };
        wait_listening(port, "haproxy");
        haproxy
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        print_log_if_failing("haproxy", &self.dir.join("haproxy.log"));
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
