//! The durable market state, black-box: the real binary on a temp `store.data_dir`,
//! killed (-9) right after an acknowledgement, stopped with SIGTERM, given a damaged
//! file, and made unable to write. Each restart reads what the first process stored.
//!
//! The binary is started through the shared test support (port 0, kill on drop).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{spawn_server, tickstream_command, ServerProcess, TempDir};

const KEY: &str = "durable-publisher-key";
const ADMIN_KEY: &str = "durable-admin-key";
/// Longer than any start-up or graceful stop takes.
const TIMEOUT: Duration = Duration::from_secs(20);
/// A fixed event time, so bars fall in known buckets: 2025-11-25 12:00:00 UTC.
const T0: i64 = 1_764_072_000_000;

/// The state directory inside a test's temporary directory.
fn data_dir(dir: &TempDir) -> PathBuf {
    dir.join("data")
}

/// The binary in `dir`, with no inherited `TICKSTREAM*` settings, the simulator off,
/// one publisher key, auto-created symbols, port 0 and text logs.
fn command(dir: &TempDir, data_dir: &str) -> Command {
    let mut command = tickstream_command();
    command
        .current_dir(dir.path())
        .env("TICKSTREAM__SERVER__HOST", "127.0.0.1")
        .env("TICKSTREAM__SERVER__WORKERS", "1")
        .env("TICKSTREAM__SIMULATOR__ENABLED", "false")
        .env("TICKSTREAM__LOG__FORMAT", "text")
        .env("TICKSTREAM__LOG__LEVEL", "info")
        .env("TICKSTREAM__INGEST__PUBLISHER_KEYS", KEY)
        .env("TICKSTREAM__ADMIN__API_KEY", ADMIN_KEY)
        .env("TICKSTREAM__INGEST__AUTO_CREATE_SYMBOLS", "true")
        .env("TICKSTREAM__STORE__DATA_DIR", data_dir)
        .stdin(Stdio::null());
    command
}

/// A running server, killed (-9) when dropped.
struct Server {
    process: ServerProcess,
    port: u16,
}

impl Server {
    fn start(command: Command) -> Server {
        let process = spawn_server("durable", command);
        Server {
            port: process.port,
            process,
        }
    }

    fn kill9(mut self) {
        // SIGKILL: no handler runs, nothing is flushed on the way out.
        self.process.kill();
    }

    fn sigterm(mut self) {
        self.process.sigterm();
        let (status, _) = self.process.wait_for_exit(TIMEOUT);
        assert!(status.success(), "graceful stop exits 0: {status:?}");
    }

    fn get(&self, path: &str) -> (u16, Value) {
        request(self.port, "GET", path, None, None)
    }

    fn publish(&self, ticks: &Value) -> (u16, Value) {
        request(self.port, "POST", "/api/v1/ticks", Some(KEY), Some(ticks))
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        request(self.port, method, path, Some(ADMIN_KEY), body)
    }

    fn quote(&self, symbol: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/quotes/{symbol}"));
        assert_eq!(status, 200, "{body}");
        body
    }

    fn bars(&self, symbol: &str, interval: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/history/{symbol}?interval={interval}"));
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), with a bearer
/// key if given; returns the status and the JSON body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = match key {
        Some(key) => format!("Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"),
        None => String::new(),
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let status = response[9..12].parse().expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Batch `n`: three trades (AAPL, AAPL, and the auto-created DURA) with `seq`s
/// `3n+1..=3n+3`, seconds apart in event time so they make several bars.
fn batch(n: i64) -> Value {
    let ts = T0 + n * 20_000;
    let seq = 3 * n as u64;
    json!([
        {"symbol": "AAPL", "price": 190 + n, "size": 10 + n, "ts": ts, "seq": seq + 1},
        {"symbol": "AAPL", "price": 185 + n, "size": 1, "ts": ts + 1_500, "seq": seq + 2},
        {"symbol": "DURA", "price": 5 + n, "size": 100, "ts": ts + 3_000, "seq": seq + 3},
    ])
}

const QUOTE_FIELDS: [&str; 7] = ["p", "v", "o", "h", "l", "pc", "t"];

fn fields(quote: &Value) -> Vec<Value> {
    QUOTE_FIELDS.iter().map(|f| quote[f].clone()).collect()
}

#[test]
fn a_kill_right_after_the_last_200_loses_nothing_acknowledged() {
    // Arrange
    let dir = TempDir::new("kill9");
    let data = data_dir(&dir);
    let server = Server::start(command(&dir, data.to_str().unwrap()));
    let mut last = Value::Null;
    for n in 0..6 {
        last = batch(n);
        let (status, report) = server.publish(&last);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 3, "{report}");
    }
    let before = [server.quote("AAPL"), server.quote("DURA")];
    let bars_before = [server.bars("AAPL", "1m"), server.bars("DURA", "1s")];

    // Act: no graceful anything, right after the last acknowledgement.
    server.kill9();
    let server = Server::start(command(&dir, data.to_str().unwrap()));

    // Assert: what was acknowledged, exactly, and the seqs with it.
    let after = [server.quote("AAPL"), server.quote("DURA")];
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(fields(before), fields(after), "{before} vs {after}");
    }
    assert_eq!(after[0]["v"], json!((10..16).sum::<i64>() + 6));
    assert_eq!(
        [server.bars("AAPL", "1m"), server.bars("DURA", "1s")],
        bars_before
    );
    let (status, report) = server.publish(&last);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["accepted"], &report["duplicates"]),
        (&json!(0), &json!(3))
    );
    assert_eq!(
        fields(&server.quote("AAPL")),
        fields(&after[0]),
        "no volume twice"
    );
}

#[test]
fn a_graceful_stop_and_restart_serves_identical_quotes_and_history() {
    // Arrange: background commits far apart (publishers and admin changes wait for
    // their own commit). AACO is added after DURA: the restart must keep that order,
    // not the alphabet's.
    let dir = TempDir::new("sigterm");
    let data = data_dir(&dir);
    let mut command = command(&dir, data.to_str().unwrap());
    command.env("TICKSTREAM__STORE__FLUSH_INTERVAL_MS", "60000");
    let server = Server::start(command);
    for n in 0..4 {
        assert_eq!(server.publish(&batch(n)).0, 200);
    }
    let added = server.admin(
        "PUT",
        "/api/v1/admin/symbols/aaco",
        Some(&json!({"name": "New Co", "pc": 12.34})),
    );
    assert_eq!(added.0, 201, "{}", added.1);
    assert_eq!(
        server.admin("DELETE", "/api/v1/admin/symbols/MSFT", None).0,
        204
    );
    let (_, quotes) = server.get("/api/v1/quotes");
    let history = [server.bars("AAPL", "1s"), server.bars("DURA", "1m")];

    server.sigterm();
    let server = Server::start(command_again(&dir));

    assert_eq!(server.get("/api/v1/quotes").1, quotes);
    assert_eq!(server.quote("AACO")["pc"], 12.34);
    assert_eq!(
        server.get("/api/v1/quotes/MSFT").0,
        404,
        "removed stays removed"
    );
    assert_eq!(
        [server.bars("AAPL", "1s"), server.bars("DURA", "1m")],
        history
    );
}

#[test]
fn a_graceful_stop_stores_what_nobody_waited_for() {
    // Arrange: replayed ticks, which no answer waits for, and background commits a
    // minute apart: only the commit at SIGTERM can store them.
    let dir = TempDir::new("replayed");
    let data = data_dir(&dir);
    let recording = dir.join("ticks.csv");
    std::fs::write(
        &recording,
        "ts,symbol,price,size,bid,bid_size,ask,ask_size\n\
         0,AAPL,190.01,100,,,,\n\
         10,AAPL,190.02,200,190.01,300,190.03,400\n\
         20,MSFT,410.5,50,,,,\n",
    )
    .unwrap();
    let mut command = command(&dir, data.to_str().unwrap());
    command
        .env("TICKSTREAM__STORE__FLUSH_INTERVAL_MS", "60000")
        .args(["replay", recording.to_str().unwrap(), "--no-loop"]);
    let server = Server::start(command);
    let started = Instant::now();
    while server.quote("MSFT")["v"] != 50 {
        assert!(started.elapsed() < TIMEOUT, "the replay is applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = [server.quote("AAPL"), server.quote("MSFT")];

    // Act
    server.sigterm();
    let server = Server::start(command_again(&dir));

    // Assert
    assert_eq!([server.quote("AAPL"), server.quote("MSFT")], before);
    assert_eq!(before[0]["v"], 300);
}

#[test]
fn an_admin_change_is_stored_before_its_answer() {
    // Arrange: background commits a minute apart, so only the commit the answer
    // waits for can have stored the change before the kill.
    let dir = TempDir::new("admin");
    let data = data_dir(&dir);
    let mut slow = command(&dir, data.to_str().unwrap());
    slow.env("TICKSTREAM__STORE__FLUSH_INTERVAL_MS", "60000");
    let server = Server::start(slow);

    // Act: add one symbol, remove another, and kill -9 right after each answer.
    let added = server.admin(
        "PUT",
        "/api/v1/admin/symbols/NEWCO",
        Some(&json!({"name": "New Co", "pc": 12.34})),
    );
    assert_eq!(added.0, 201, "{}", added.1);
    server.kill9();
    let mut again = command_again(&dir);
    again.env("TICKSTREAM__STORE__FLUSH_INTERVAL_MS", "60000");
    let server = Server::start(again);
    assert_eq!(server.quote("NEWCO")["pc"], 12.34, "added before its 201");
    assert_eq!(
        server.admin("DELETE", "/api/v1/admin/symbols/MSFT", None).0,
        204
    );
    server.kill9();
    let server = Server::start(command_again(&dir));

    // Assert
    assert_eq!(
        server.get("/api/v1/quotes/MSFT").0,
        404,
        "removed before its 204"
    );
    assert_eq!(server.quote("NEWCO")["pc"], 12.34);
}

#[test]
fn a_damaged_data_file_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new("damaged");
    let data = data_dir(&dir);
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("tickstream.redb");
    std::fs::write(
        &file,
        b"this is not a database, just some garbage bytes\n".repeat(200),
    )
    .unwrap();

    let output = command(&dir, data.to_str().unwrap()).output().unwrap();

    assert!(!output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(&file.display().to_string()), "{stderr}");
    assert!(lines[0].contains("move it away"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_empty_data_dir_writes_nothing() {
    let dir = TempDir::new("memory");
    let server = Server::start(command(&dir, ""));
    assert_eq!(server.publish(&batch(0)).0, 200);
    server.sigterm();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the working directory stays empty: {left:?}"
    );
}

/// Sets the child's largest file size (`RLIMIT_FSIZE`); writes past it fail with EFBIG.
fn limit_file_size(server: &Server, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = server.process.pid() as libc::pid_t;
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Batch `n` of the disk-filling test: 200 new symbols, each with its own bars.
fn growing_batch(n: u64) -> Value {
    let ticks: Vec<Value> = (0..200)
        .map(|i| {
            json!({
                "symbol": format!("G{n}X{i}"),
                "price": 10 + i,
                "size": 1,
                "ts": T0 + (i as i64) * 1_000,
                "seq": 1_000 + n * 200 + i,
            })
        })
        .collect();
    Value::Array(ticks)
}

#[test]
fn failing_writes_answer_503_and_acknowledge_only_what_is_stored() {
    // Arrange: a server whose file may not grow past its size after start-up. The
    // child ignores SIGXFSZ, so a write past the limit fails (EFBIG) instead of
    // killing it.
    let dir = TempDir::new("efbig");
    let data = data_dir(&dir);
    let mut command = command(&dir, data.to_str().unwrap());
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let server = Server::start(command);
    assert_eq!(server.publish(&batch(0)).0, 200);
    let size = std::fs::metadata(data.join("tickstream.redb"))
        .unwrap()
        .len();
    limit_file_size(&server, size);

    // Act: publish until the file would have to grow.
    let mut acked = vec![batch(0)];
    let mut refused = None;
    for n in 0..500 {
        let ticks = growing_batch(n);
        let (status, body) = server.publish(&ticks);
        match status {
            200 => acked.push(ticks),
            503 => {
                assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
                refused = Some(ticks);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let refused = refused.expect("a write past the size limit is refused with 503");
    let (status, ready) = server.get("/readyz");
    assert_eq!(
        (status, &ready["storage"]),
        (200, &json!("unavailable")),
        "{ready}"
    );
    // The same batch again, still unable to store: not acknowledged as duplicates.
    assert_eq!(server.publish(&refused).0, 503);

    // Assert: the writer recovers by itself once writes succeed again...
    limit_file_size(&server, libc::RLIM_INFINITY);
    let started = Instant::now();
    let retried = loop {
        let (status, report) = server.publish(&refused);
        if status == 200 {
            break report;
        }
        assert!(started.elapsed() < TIMEOUT, "recovers: {status} {report}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // (Accepted before the refusal and stored since: the retry is all duplicates.)
    assert_eq!(retried["duplicates"], 200, "{retried}");
    assert_eq!(server.get("/readyz").1["storage"], "ok");
    acked.push(refused);

    // ...and everything acknowledged survives a kill.
    server.kill9();
    let server = Server::start(command_again(&dir));
    for ticks in &acked {
        let (status, report) = server.publish(ticks);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 0, "stored before its 200: {report}");
    }
}

fn command_again(dir: &TempDir) -> Command {
    command(dir, data_dir(dir).to_str().unwrap())
}

/// Every bar of `interval` the server has for `symbol`, walking back page by page
/// (`to` = the first `t` of the page before) with `limit` bars a page.
fn walk_history(server: &Server, symbol: &str, interval: &str, limit: usize) -> Vec<Value> {
    let mut bars = Vec::new();
    let mut to = String::new();
    for _ in 0..1_000 {
        let (status, page) = server.get(&format!(
            "/api/v1/history/{symbol}?interval={interval}&limit={limit}{to}"
        ));
        assert_eq!(status, 200, "{page}");
        let mut older = page["bars"].as_array().unwrap().clone();
        assert!(older.len() <= limit);
        if let Some(first) = older.first() {
            to = format!("&to={}", first["t"]);
        }
        older.append(&mut bars);
        bars = older;
        if page["more"] == false {
            return bars;
        }
    }
    panic!("more than 1000 pages");
}

#[test]
fn history_is_kept_for_its_retention_across_a_kill_and_paged_exactly() {
    // Arrange: two hours of 1 s trades in one acknowledged batch, far more bars than
    // memory holds (300 seconds), with six-decimal prices.
    let dir = TempDir::new("retention");
    let data = data_dir(&dir);
    let server = Server::start(command(&dir, data.to_str().unwrap()));
    const SECONDS: i64 = 7_200;
    let price = |i: i64| format!("{}.{:06}", 100 + i % 7, (i * 7_919) % 1_000_000);
    let ticks: Vec<Value> = (0..SECONDS)
        .map(|i| {
            let price: Value = serde_json::from_str(&price(i)).unwrap();
            json!({"symbol": "LONG", "price": price, "size": 1 + i % 3, "ts": T0 + i * 1_000})
        })
        .collect();
    let (status, report) = server.publish(&Value::Array(ticks));
    assert_eq!(
        (status, &report["accepted"]),
        (200, &json!(SECONDS)),
        "{report}"
    );

    // Act
    server.kill9();
    let server = Server::start(command_again(&dir));

    // Assert: the newest hour of seconds (store.history_1s_seconds = 3600, counted back
    // from the newest bar), every minute, exact, once each, whatever the page size.
    let seconds = walk_history(&server, "LONG", "1s", 5_000);
    let newest = SECONDS - 1;
    let kept: Vec<i64> = (newest - 3_600..=newest).collect();
    assert_eq!(seconds.len(), kept.len());
    for (bar, i) in seconds.iter().zip(&kept) {
        assert_eq!(bar["t"], json!(T0 + i * 1_000));
        let text = bar.to_string();
        assert!(
            text.contains(&format!("\"c\":{}", price(*i).trim_end_matches('0'))),
            "exact close of second {i}: {text}"
        );
        assert_eq!(bar["v"], json!(1 + i % 3));
    }
    assert_eq!(walk_history(&server, "LONG", "1s", 997), seconds);
    let minutes = walk_history(&server, "LONG", "1m", 50);
    assert_eq!(minutes.len(), 120);
    let volume: i64 = minutes.iter().map(|bar| bar["v"].as_i64().unwrap()).sum();
    assert_eq!(
        volume,
        (0..SECONDS).map(|i| 1 + i % 3).sum::<i64>(),
        "no volume lost or doubled"
    );
    assert_eq!(server.quote("LONG")["v"], json!(volume));
}
