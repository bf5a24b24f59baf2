//! Test support written once, for every test binary and benchmark that runs real
//! processes (`tests/api`, `tests/scale`, `benches/support`). Each includes it with
//! `#[path = "../support/mod.rs"] mod support;`.
//!
//! - [`spawn_server`]: the tickstream binary on a port the OS chose. It binds port 0
//!   and writes the port it got to the file named by `TICKSTREAM_PORT_FILE`
//!   (src/main.rs), whatever its log level or format; nothing here binds a port,
//!   releases it and hopes (STYLE.md rule 13).
//! - [`start_on_some_port`]: programs that must be told their port and cannot report
//!   one they chose (redis-server, nginx, haproxy): try a port, and another when that
//!   one turns out to be taken.
//! - [`Process`]: every child is killed and reaped when its handle drops, and its log
//!   is printed first if the test is failing, so a red run says what each process saw.
//! - [`metric`] and [`parse_metric`]: the one `/metrics` scraper.
#![allow(dead_code)] // each includer uses a different part

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a process may take to listen: a debug build on a loaded 2-core machine
/// can take seconds.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many ports [`start_on_some_port`] tries before it gives up.
const PORT_ATTEMPTS: usize = 5;

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// How often a start-up or exit is polled.
const POLL: Duration = Duration::from_millis(10);

// ---- Temporary directories --------------------------------------------------------

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tickstream-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- Any child process ------------------------------------------------------------

/// A child process, killed (SIGKILL) and reaped when dropped, so a failing test never
/// leaves one running, holding its port and the test runner's output pipe. If the
/// test is failing, the tail of each of its logs is printed first.
pub struct Process {
    label: String,
    child: Child,
    logs: Vec<PathBuf>,
    stopped: bool,
}

impl Process {
    /// Starts `command` with its stdout and stderr written to `log` (truncated).
    pub fn spawn(label: &str, command: &mut Command, log: &Path) -> Process {
        let file = File::create(log).expect("a log file");
        command
            .stdout(file.try_clone().expect("a second handle on the log"))
            .stderr(file);
        Process::spawn_logged(label, command, vec![log.to_owned()])
    }

    /// Starts `command`, whose output the caller directed to `logs`.
    fn spawn_logged(label: &str, command: &mut Command, logs: Vec<PathBuf>) -> Process {
        Process {
            label: label.to_owned(),
            child: spawn_child(command),
            logs,
            stopped: false,
        }
    }

    /// Another file to print if the test fails (a log the program writes itself).
    pub fn also_print(mut self, log: PathBuf) -> Process {
        self.logs.push(log);
        self
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name, as `kill` spells it (`-TERM`, `-STOP`, `-CONT`,
    /// `-QUIT`); whether it was delivered.
    pub fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.id().to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child can be waited for")
    }

    /// Waits at most `limit` for the process to exit; its status and how long it took.
    pub fn wait_for_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.exited() {
                return (exit, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "{} did not exit within {limit:?}",
                self.label
            );
            std::thread::sleep(POLL);
        }
    }

    /// Prints its logs if the test is failing, then SIGKILL and reap. Idempotent; drop
    /// calls it too.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if std::thread::panicking() {
            self.print_logs();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn print_logs(&self) {
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
            eprintln!("---- last lines of {} ({}):", self.label, log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    fn logs_mention(&self, needle: &str) -> bool {
        self.logs.iter().any(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains(needle)
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns, retrying while the kernel says "text file busy": a child that another test
/// thread forks while a test writes an executable (the container tests copy the
/// binary) inherits the open file for a moment, until it execs, and an executable
/// open for writing cannot be run.
pub fn spawn_child(command: &mut Command) -> Child {
    for _ in 0..100 {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => {
                return result.unwrap_or_else(|e| panic!("{:?} starts: {e}", command.get_program()))
            }
        }
    }
    panic!("{:?} stayed busy for 2 s", command.get_program());
}

// ---- The tickstream binary --------------------------------------------------------

/// The environment variable naming the file the binary writes its port to once it
/// listens (src/main.rs; `--port-file` on the command line).
pub const PORT_FILE_VAR: &str = "TICKSTREAM_PORT_FILE";

/// The binary under test, with no `TICKSTREAM*` variable inherited from the caller's
/// shell, so each test sets exactly what it means to.
pub fn tickstream_command() -> Command {
    tickstream_command_at(env!("CARGO_BIN_EXE_tickstream"))
}

/// As [`tickstream_command`], for another build of the binary (benchmarks compare).
pub fn tickstream_command_at(binary: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TICKSTREAM") {
            command.env_remove(key);
        }
    }
    // Memory only unless a test says otherwise: tests share working directories, and
    // a data file is locked by the one process that has it open
    // (tests/api/durable.rs covers the file).
    command.env("TICKSTREAM__STORE__DATA_DIR", "");
    command
}

/// A running tickstream binary and the port it reported.
pub struct ServerProcess {
    pub port: u16,
    process: Process,
    /// Its port file and logs; after `process`, so the logs outlive the printing.
    dir: TempDir,
}

/// Starts `command` (a tickstream binary: [`tickstream_command`], or another way to
/// run one) on a port the OS chooses, `TICKSTREAM__SERVER__PORT=0`, and returns once
/// it has reported the port it bound (within [`START_TIMEOUT`]). Its stdout and
/// stderr go to files ([`ServerProcess::stdout`]), printed if the test fails.
pub fn spawn_server(label: &str, mut command: Command) -> ServerProcess {
    let dir = TempDir::new(label);
    // The server may run as another user (the container tests run it as the image's
    // user when they run as root); it must be able to create its port file here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("the port file directory is writable by anyone");
    let port_file = dir.join("port");
    let (stdout, stderr) = (dir.join("stdout.log"), dir.join("stderr.log"));
    command
        .env("TICKSTREAM__SERVER__PORT", "0")
        .env(PORT_FILE_VAR, &port_file)
        .stdout(File::create(&stdout).expect("a log file"))
        .stderr(File::create(&stderr).expect("a log file"));
    let mut process = Process::spawn_logged(label, &mut command, vec![stdout, stderr]);
    let deadline = Instant::now() + START_TIMEOUT;
    let port = loop {
        // Renamed into place by the server: once it exists, it is complete.
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{label} wrote a bad port file {text:?}: {e}"));
        }
        if let Some(exit) = process.exited() {
            panic!("{label} exited during start-up: {exit}");
        }
        assert!(
            Instant::now() < deadline,
            "{label} reported no port within {START_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    };
    ServerProcess { port, process, dir }
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// What `docker stop` and the kubelet send.
    pub fn sigterm(&self) {
        assert!(self.process.signal("-TERM"), "kill -TERM failed");
    }

    /// SIGKILL: no goodbye, no lock release, connections just drop.
    pub fn kill(&mut self) {
        self.process.stop();
    }

    /// Sends `signal` (`-STOP`, `-CONT`, …); whether `kill` succeeded.
    pub fn signal(&self, signal: &str) -> bool {
        self.process.signal(signal)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Waits at most `limit` for the process to exit; its status and how long it took.
    pub fn wait_for_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        self.process.wait_for_exit(limit)
    }

    /// Everything it has written to stdout so far (its logs).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).expect("the stdout file")
    }

    /// Everything it has written to stderr so far (the one line of a fatal error).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).expect("the stderr file")
    }
}

/// A loopback port this test holds without listening on it: a connection there is
/// refused, and nobody else can listen there while the handle lives. For checking
/// what a client does when no server runs.
pub struct RefusedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

impl RefusedPort {
    pub fn new() -> RefusedPort {
        RefusedPort::bind(false)
    }

    /// As [`RefusedPort::new`], for a server this test starts on the port later: the
    /// socket allows address reuse, so a listener bound with SO_REUSEADDR (as std's
    /// and tokio's are) may take the port over, while port-0 binds elsewhere still
    /// pass it by.
    pub fn for_a_later_server() -> RefusedPort {
        RefusedPort::bind(true)
    }

    fn bind(reuse: bool) -> RefusedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(reuse).expect("SO_REUSEADDR");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("a loopback port");
        let port = socket.local_addr().expect("a bound address").port();
        RefusedPort {
            port,
            _socket: socket,
        }
    }
}

// ---- Programs told their port -----------------------------------------------------

/// Starts a program that must be told its port and cannot report one it chose
/// (redis-server, nginx, haproxy): `command_for(port)` is its command line for a
/// port, with output to `log`. If the port turns out to be taken (the program says
/// "address already in use"), another is tried, [`PORT_ATTEMPTS`] times in all.
pub fn start_on_some_port(
    label: &str,
    log: &Path,
    mut command_for: impl FnMut(u16) -> Command,
) -> (Process, u16) {
    let mut taken = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = candidate_port();
        match start_on_port(label, &mut command_for(port), log, port) {
            Ok(process) => return (process, port),
            Err(PortTaken) => taken.push(port),
        }
    }
    panic!("{label}: every port tried was taken: {taken:?}");
}

/// The port was in use by someone else.
#[derive(Debug)]
pub struct PortTaken;

/// Starts `command` (a program told to listen on `port`, with output to `log`) and
/// waits until it listens there itself: a connection alone could reach whoever else
/// holds the port. `Err` only when the port is taken; any other failure panics with
/// the program's log.
pub fn start_on_port(
    label: &str,
    command: &mut Command,
    log: &Path,
    port: u16,
) -> Result<Process, PortTaken> {
    let mut process = Process::spawn(label, command, log);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if listens_on(process.id(), port) {
            return Ok(process);
        }
        // redis-server and haproxy exit at once; nginx retries its bind for a few
        // seconds, but says so in its log first.
        let exited = process.exited();
        if process.logs_mention("address already in use") {
            process.stop();
            return Err(PortTaken);
        }
        if let Some(exit) = exited {
            panic!("{label} exited during start-up on port {port}: {exit}");
        }
        assert!(
            Instant::now() < deadline,
            "{label} did not listen on {port} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// A port to try: random, below the kernel's ephemeral range. The kernel hands out
/// that range for port-0 binds (every tickstream under test) and outgoing
/// connections, so a port below it can only be taken by another program told a fixed
/// port (a parallel test's redis-server, say), which the caller's retry handles.
fn candidate_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    rand::random_range(10_000..ephemeral_start.max(20_000))
}

/// Whether process `pid` itself holds a listening TCP socket on `port`: the inodes
/// of the LISTEN sockets in /proc/net/tcp{,6}, against the sockets among its open
/// files.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|address| address.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            const LISTEN: &str = "0A";
            if local_port == Some(port) && fields.get(3) == Some(&LISTEN) {
                if let Some(inode) = fields.get(9) {
                    sockets.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

// ---- Metrics ----------------------------------------------------------------------

/// How long a scrape may take: long enough for a server being flooded on purpose (a
/// debug build on a shared 2-core machine can take seconds to answer then).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// One series from `GET /metrics` on 127.0.0.1:`port`, by name with or without
/// labels (see [`parse_metric`]); panics, showing the exposition, when it is missing.
pub async fn metric<T>(port: u16, series: &str) -> T
where
    T: FromStr,
    T::Err: std::fmt::Debug,
{
    let exposition = scrape(port).await;
    parse_metric(&exposition, series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{exposition}"))
}

/// The value of `series` in a Prometheus text exposition: `name`, or
/// `name{label="x",…}` with the labels as the server writes them (its order). `None`
/// when absent; panics when the value is not a `T`.
pub fn parse_metric<T>(exposition: &str, series: &str) -> Option<T>
where
    T: FromStr,
    T::Err: std::fmt::Debug,
{
    exposition.lines().find_map(|line| {
        // `name value [timestamp]`; the space keeps `name` from matching `name_total`.
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        let value = value.split_whitespace().next()?;
        Some(
            value
                .parse()
                .unwrap_or_else(|e| panic!("{series} has value {value:?}: {e:?}")),
        )
    })
}

/// The body of `GET /metrics`, over a connection of its own that this end closes
/// once the response (its `content-length`) has arrived, as a scraper does.
///
/// A 408 is tried again, twice, as a scraper does at its next interval: a server
/// whose only worker is starved for longer than `http.request_head_timeout_ms` (a
/// debug build on this shared two-core machine, under a test's attack) first polls
/// a new connection after actix-http's head timer ran out and answers 408 although
/// the request was sent at once. Any other answer fails at once.
pub async fn scrape(port: u16) -> String {
    for _ in 0..2 {
        match scrape_once(port).await {
            Err(head) if head.starts_with("HTTP/1.1 408 ") => continue,
            other => return other.unwrap_or_else(|head| panic!("/metrics answered {head}")),
        }
    }
    scrape_once(port)
        .await
        .unwrap_or_else(|head| panic!("/metrics answered {head} three times"))
}

/// One scrape: the body of a 200, or the head of any other answer.
async fn scrape_once(port: u16) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        while whole_response(&response).is_none() {
            if stream.read_buf(&mut response).await? == 0 {
                break; // closed early: the checks below say what came
            }
        }
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("/metrics on port {port} did not answer in {SCRAPE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("/metrics on port {port}: {e}"));
    let response = String::from_utf8(response).expect("a UTF-8 exposition");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("{head}\n{body}"));
    }
    Ok(body.to_owned())
}

/// Whether `bytes` hold a whole response: its head and as much body as its
/// `content-length` says (the exposition is sent whole, never chunked).
fn whole_response(bytes: &[u8]) -> Option<()> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    (body.len() >= length).then_some(())
}

/// A Finnhub candle answer (`/stock/candle`, column-wise): bars at `t_ms`, each
/// opening at `open`, high 102.5, low 100.25, close 101.75, volume `volume`.
pub fn finnhub_candles(t_ms: &[i64], open: &str, volume: u64) -> String {
    let secs: Vec<String> = t_ms.iter().map(|t| (t / 1_000).to_string()).collect();
    let column = |value: &str| vec![value; t_ms.len()].join(",");
    format!(
        r#"{{"s":"ok","t":[{}],"o":[{}],"h":[{}],"l":[{}],"c":[{}],"v":[{}]}}"#,
        secs.join(","),
        column(open),
        column("102.5"),
        column("100.25"),
        column("101.75"),
        column(&volume.to_string()),
    )
}
