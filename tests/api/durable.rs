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

use crate::support::{
    parse_metric, scrape, spawn_server, tickstream_command, ServerProcess, TempDir,
};

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
fn a_damaged_data_file_stops_start_up_with_one_line_naming_it_and_the_way_out() {
    // Arrange
    let dir = TempDir::new("damaged");
    let data = data_dir(&dir);
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("tickstream.redb");
    let garbage = b"this is not a database, just some garbage bytes\n".repeat(200);
    std::fs::write(&file, &garbage).unwrap();

    // Act: start, then follow the advice.
    let start = command(&dir, data.to_str().unwrap()).output().unwrap();
    let check = run_data(
        command(&dir, ""),
        &["check", "--data-dir", data.to_str().unwrap()],
    );
    let reset = data_command(&dir, &["reset", "--yes"]);

    // Assert
    let stderr = one_line_error(&start);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("`tickstream data check`"), "{stderr}");
    assert!(stderr.contains("`tickstream data reset --yes`"), "{stderr}");
    let stderr = one_line_error(&check);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(check.stdout.is_empty(), "no report for a damaged file");
    assert_eq!(reset.status.code(), Some(0), "{reset:?}");
    let backup = moved_to(&reset);
    assert_eq!(std::fs::read(backup).unwrap(), garbage, "kept, not deleted");
    let server = Server::start(command_again(&dir));
    assert_eq!(server.quote("AAPL")["pc"], 189.12, "started empty");
}

#[test]
fn data_check_reports_a_stopped_servers_file_and_reset_sets_it_aside() {
    // Arrange: quotes, bars, a removed symbol and a publisher's seq, stored.
    let dir = TempDir::new("data-check");
    let data = data_dir(&dir);
    let server = Server::start(command_again(&dir));
    for n in 0..3 {
        assert_eq!(server.publish(&batch(n)).0, 200);
    }
    assert_eq!(
        server.admin("DELETE", "/api/v1/admin/symbols/MSFT", None).0,
        204
    );
    let (_, symbols) = server.get("/api/v1/symbols");
    let live = symbols["symbols"].as_array().expect("a list").len() as u64;
    let bars = |interval| -> u64 {
        ["AAPL", "DURA"]
            .iter()
            .map(|s| server.bars(s, interval)["bars"].as_array().unwrap().len() as u64)
            .sum()
    };
    let (bars_1s, bars_1m) = (bars("1s"), bars("1m"));
    server.sigterm();
    let file = data.join("tickstream.redb");

    // Act
    let check = data_command(&dir, &["check"]);
    let dry_run = data_command(&dir, &["reset"]);
    let reset = data_command(&dir, &["reset", "--yes"]);

    // Assert: the report says what the server had...
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    let report = String::from_utf8(check.stdout).unwrap();
    assert!(
        report.starts_with(&format!("data file {} is sound\n", file.display())),
        "{report}"
    );
    let size = std::fs::metadata(moved_to(&reset)).unwrap().len();
    for (label, expected) in [
        ("format version", 2),
        ("size", size),
        ("live symbols", live),
        ("removed symbols", 1),
        ("bars 1s", bars_1s),
        ("bars 1m", bars_1m),
        ("publishers", 1),
    ] {
        assert_eq!(reported(&report, label), expected, "{label}: {report}");
    }
    // ...a reset without --yes only says what it would do...
    assert_eq!(dry_run.status.code(), Some(2), "{dry_run:?}");
    let plan = String::from_utf8_lossy(&dry_run.stdout);
    assert!(plan.contains("--yes"), "{plan}");
    // ...and with it the file is set aside, whole, and the next start is empty.
    assert_eq!(reset.status.code(), Some(0), "{reset:?}");
    assert!(!file.exists());
    let backup = moved_to(&reset);
    assert!(
        backup.starts_with(&data)
            && backup.to_str().unwrap().ends_with(".bak")
            && plan.contains(&format!("{}.", file.display())),
        "{backup:?} {plan}"
    );
    let server = Server::start(command_again(&dir));
    assert_eq!(server.get("/api/v1/quotes/DURA").0, 404);
    assert_eq!(
        server.quote("MSFT")["pc"],
        415.26,
        "the universe file again"
    );
    assert_eq!(server.publish(&batch(0)).1["accepted"], 3, "seqs forgotten");
}

#[test]
fn data_check_after_a_crash_repairs_the_file_as_a_start_would() {
    // Arrange: killed (-9), so the file was not closed cleanly.
    let dir = TempDir::new("data-crash");
    let server = Server::start(command_again(&dir));
    assert_eq!(server.publish(&batch(0)).0, 200);
    server.kill9();

    // Act
    let first = data_command(&dir, &["check"]);
    let second = data_command(&dir, &["check"]);

    // Assert: sound, with what was acknowledged; repaired once.
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let report = String::from_utf8(first.stdout).unwrap();
    assert!(report.contains("repaired"), "{report}");
    assert_eq!(reported(&report, "publishers"), 1, "{report}");
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let report = String::from_utf8(second.stdout).unwrap();
    assert!(!report.contains("repaired"), "{report}");
    let server = Server::start(command_again(&dir));
    assert_eq!(server.quote("DURA")["v"], 100);
}

#[test]
fn data_check_and_reset_refuse_a_file_a_running_server_holds() {
    let dir = TempDir::new("data-in-use");
    let data = data_dir(&dir);
    let server = Server::start(command_again(&dir));
    assert_eq!(server.publish(&batch(0)).0, 200);

    let check = data_command(&dir, &["check"]);
    let reset = data_command(&dir, &["reset", "--yes"]);

    for output in [&check, &reset] {
        let stderr = one_line_error(output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("in use by a running tickstream"),
            "{stderr}"
        );
    }
    assert!(data.join("tickstream.redb").exists(), "not moved");
    assert_eq!(server.quote("DURA")["v"], 100, "the server goes on");
}

#[test]
fn an_empty_data_dir_writes_nothing() {
    let dir = TempDir::new("memory");
    let server = Server::start(command(&dir, ""));
    assert_eq!(server.publish(&batch(0)).0, 200);
    server.sigterm();
    for action in [&["check"][..], &["reset", "--yes"]] {
        let output = run_data(command(&dir, ""), action);
        let stderr = one_line_error(&output);
        assert_eq!(output.status.code(), Some(2), "{action:?}: {stderr}");
        assert!(stderr.contains("there is no data file"), "{stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the working directory stays empty: {left:?}"
    );
}

#[tokio::test]
async fn storage_metrics_count_commits_and_measure_the_file() {
    // Arrange
    let dir = TempDir::new("store-metrics");
    let server = Server::start(command_again(&dir));
    let memory_only = Server::start(command(&dir, ""));
    let value = |exposition: &str, series: &str| -> f64 {
        parse_metric(exposition, series).unwrap_or_else(|| panic!("no {series}:\n{exposition}"))
    };
    let before = scrape(server.port).await;

    // Act: two publishes, each answered once its commit is done.
    for n in 0..2 {
        assert_eq!(server.publish(&batch(n)).0, 200);
    }
    let after = scrape(server.port).await;

    // Assert
    let commits = |e: &str| value(e, "tickstream_store_commits_total");
    assert!(commits(&after) >= commits(&before) + 2.0, "{after}");
    assert_eq!(value(&after, "tickstream_store_commit_failures_total"), 0.0);
    assert_eq!(value(&after, "tickstream_store_healthy"), 1.0);
    assert_eq!(value(&after, "tickstream_store_pending_changes"), 0.0);
    let size = std::fs::metadata(data_dir(&dir).join("tickstream.redb"))
        .unwrap()
        .len();
    assert_eq!(value(&after, "tickstream_store_file_bytes"), size as f64);
    let histogram = "tickstream_store_commit_seconds";
    assert!(
        after.contains(&format!("# TYPE {histogram} histogram")),
        "{after}"
    );
    let count = value(&after, &format!("{histogram}_count"));
    assert_eq!(count, commits(&after));
    assert_eq!(
        value(&after, &format!("{histogram}_bucket{{le=\"+Inf\"}}")),
        count
    );
    assert!(value(&after, &format!("{histogram}_bucket{{le=\"1\"}}")) <= count);
    assert!(value(&after, &format!("{histogram}_sum")) > 0.0);
    let memory = scrape(memory_only.port).await;
    assert!(!memory.contains("tickstream_store_"), "{memory}");
}

/// `tickstream data <args>` with the test's settings and data directory, run to its
/// end.
fn data_command(dir: &TempDir, args: &[&str]) -> std::process::Output {
    run_data(command_again(dir), args)
}

/// `command` (the binary with its settings) as `tickstream data <args>`, run to its
/// end.
fn run_data(mut command: Command, args: &[&str]) -> std::process::Output {
    command.arg("data").args(args);
    command.output().expect("tickstream data runs")
}

/// The one line a failed command wrote to stderr.
fn one_line_error(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("tickstream: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The backup `data reset --yes` reports (`moved FILE to BACKUP; …`).
fn moved_to(reset: &std::process::Output) -> PathBuf {
    let stdout = String::from_utf8_lossy(&reset.stdout);
    let (_, rest) = stdout.split_once(" to ").expect("moved … to …");
    let (backup, _) = rest.split_once(';').expect("to BACKUP;");
    PathBuf::from(backup)
}

/// The number on a `data check` report's line `label`.
fn reported(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(label)?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label} in {report}"))
        .parse()
        .unwrap_or_else(|e| panic!("{label} in {report}: {e}"))
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
    // Arrange
    let dir = TempDir::new("efbig");
    let server = Server::start(unable_to_grow(command_again(&dir)));
    assert_eq!(server.publish(&batch(0)).0, 200);
    stop_growing(&server, &dir);

    // Act
    let (mut acked, refused) = publish_until_refused(&server);
    acked.insert(0, batch(0));
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

#[test]
fn a_failed_final_commit_at_sigterm_exits_1_with_one_line_saying_so() {
    // Arrange: background commits a minute apart, and a file that can no longer
    // grow, so the commit at SIGTERM cannot store the refused batch either.
    let dir = TempDir::new("final-commit");
    let mut command = unable_to_grow(command_again(&dir));
    command.env("TICKSTREAM__STORE__FLUSH_INTERVAL_MS", "60000");
    let mut server = Server::start(command);
    assert_eq!(server.publish(&batch(0)).0, 200);
    stop_growing(&server, &dir);
    publish_until_refused(&server);

    // Act
    server.process.sigterm();
    let (status, _) = server.process.wait_for_exit(TIMEOUT);

    // Assert
    let stderr = server.process.stderr();
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let file = data_dir(&dir).join("tickstream.redb");
    assert!(
        stderr.starts_with(&format!(
            "tickstream: data file {}: the final commit failed",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("since the last commit are lost"),
        "{stderr}"
    );
}

/// `command`, ignoring SIGXFSZ: a write past [`limit_file_size`] fails (EFBIG)
/// instead of killing the process.
fn unable_to_grow(mut command: Command) -> Command {
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    command
}

/// Limits the server's file size to its data file's size now (see [`unable_to_grow`]).
fn stop_growing(server: &Server, dir: &TempDir) {
    let file = data_dir(dir).join("tickstream.redb");
    limit_file_size(server, std::fs::metadata(file).unwrap().len());
}

/// Publishes [`growing_batch`]es until the file would have to grow and one is refused
/// with 503 `storage_unavailable`; the ones acknowledged before, and that one.
fn publish_until_refused(server: &Server) -> (Vec<Value>, Value) {
    let mut acked = Vec::new();
    for n in 0..500 {
        let ticks = growing_batch(n);
        let (status, body) = server.publish(&ticks);
        match status {
            200 => acked.push(ticks),
            503 => {
                assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
                return (acked, ticks);
            }
            other => panic!("{other}: {body}"),
        }
    }
    panic!("a write past the size limit is refused with 503");
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
