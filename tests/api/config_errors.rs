//! A user's mistake at start-up is one line on stderr and an exit status (2 for the
//! configuration, 1 for anything else), never a stack trace, even with
//! `RUST_BACKTRACE=1`; the deprecated `[session]` name still starts the server.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longer than any start-up takes; a process still running after it is killed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The binary with no `TICKSTREAM*` settings inherited from the caller's shell, run in
/// a directory without `config/` files, asking for backtraces that must not appear.
fn tickstream(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickstream"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TICKSTREAM") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(std::env::temp_dir())
        .args(args)
        // Memory only, unless a test says otherwise: the shared temp directory must
        // not collect a data file that the next test's process finds locked.
        .env("TICKSTREAM__STORE__DATA_DIR", "")
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Reads a child's pipe to its end on a thread of its own, so a full pipe never
/// blocks the child while the test waits for it.
fn drain(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// Waits for the child to exit; kills it and fails the test after `TIMEOUT`.
fn wait_or_kill(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tickstream still runs after {TIMEOUT:?}; a start-up mistake must end it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary to its exit: its status and its stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = tickstream(args, env).spawn().expect("the binary starts");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_or_kill(&mut child);
    let _ = stdout.join();
    (status, stderr.join().expect("the stderr reader ends"))
}

/// The contract for a user's mistake: this exit status, and stderr exactly one
/// non-empty line that names `names`, with no trace of a backtrace.
fn assert_one_line(status: ExitStatus, stderr: &str, code: i32, names: &str) {
    assert_eq!(status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    let line = lines[0];
    assert!(
        line.starts_with("tickstream: ") && line.len() > 12,
        "{line:?}"
    );
    assert!(line.contains(names), "{line:?} names {names}");
    assert!(
        !stderr.to_lowercase().contains("backtrace") && !stderr.contains("Stack"),
        "{stderr:?}"
    );
}

#[test]
fn a_bad_environment_value_is_one_line_naming_the_key_and_status_2() {
    let (status, stderr) = run(&[], &[("TICKSTREAM__SERVER__PORT", "notaport")]);

    assert_one_line(status, &stderr, 2, "`server.port`");
}

#[test]
fn an_unknown_key_is_one_line_naming_it_and_status_2() {
    let (status, stderr) = run(&[], &[("TICKSTREAM__SERVER__PROT", "8080")]);

    assert_one_line(status, &stderr, 2, "`server.prot`");
}

#[test]
fn a_bad_trading_day_time_zone_is_one_line_naming_the_key_and_status_2() {
    let (status, stderr) = run(&[], &[("TICKSTREAM__TRADING_DAY__TIME_ZONE", "Mars/Base")]);

    assert_one_line(status, &stderr, 2, "`trading_day.time_zone`");
}

#[test]
fn a_missing_config_file_is_one_line_naming_it_and_status_2() {
    let missing = std::env::temp_dir().join("tickstream-no-such-config.toml");
    let missing = missing.display().to_string();

    let (status, stderr) = run(&["--config", &missing], &[]);

    assert_one_line(status, &stderr, 2, &missing);
}

#[test]
fn one_key_under_its_old_and_new_names_is_one_line_naming_both_and_status_2() {
    let (status, stderr) = run(
        &[],
        &[
            ("TICKSTREAM__SESSION__TIME_ZONE", "Europe/London"),
            ("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC"),
        ],
    );

    assert_one_line(status, &stderr, 2, "TICKSTREAM__SESSION__TIME_ZONE");
    assert!(
        stderr.contains("TICKSTREAM__TRADING_DAY__TIME_ZONE"),
        "{stderr}"
    );
}

#[test]
fn the_replay_commands_settings_are_configuration_and_its_file_is_not() {
    // A speed the command line set is checked like any setting: status 2.
    let (status, stderr) = run(&["replay", "ticks.csv", "--speed", "0"], &[]);
    assert_one_line(status, &stderr, 2, "`replay.speed`");

    // A file that cannot be read is a mistake too, but not in the settings: status 1.
    let missing = std::env::temp_dir().join("tickstream-no-such-recording.csv");
    let missing = missing.display().to_string();
    let (status, stderr) = run(&["replay", &missing], &[("TICKSTREAM__SERVER__PORT", "0")]);
    assert_one_line(status, &stderr, 1, &missing);
}

#[test]
fn the_deprecated_session_variable_still_starts_the_server_with_one_warning() {
    // Arrange: the old name of `trading_day.time_zone`; port 0, so no port is guessed.
    let mut child = tickstream(
        &[],
        &[
            ("TICKSTREAM__SESSION__TIME_ZONE", "Europe/London"),
            ("TICKSTREAM__SERVER__PORT", "0"),
            ("TICKSTREAM__LOG__FORMAT", "json"),
        ],
    )
    .spawn()
    .expect("the binary starts");
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let (lines, from_stdout) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    // Act: wait for the line the server logs once it listens.
    let deadline = Instant::now() + TIMEOUT;
    let mut listening = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match from_stdout.recv_timeout(left) {
            Ok(line) if line.contains("tickstream listening") => {
                listening = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let stderr = stderr.join().expect("the stderr reader ends");

    // Assert
    assert!(listening, "the server starts; stderr: {stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("deprecated"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {stderr:?}");
    assert!(
        warnings[0].contains("TICKSTREAM__SESSION__TIME_ZONE")
            && warnings[0].contains("TICKSTREAM__TRADING_DAY__TIME_ZONE"),
        "{stderr:?}"
    );
}
