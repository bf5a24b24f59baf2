//! The tickstream process the way the Dockerfile's runtime stage starts it, without
//! Docker (no daemon in CI): the binary alone in a `bin/` directory on `PATH`, run as
//! `tickstream serve` in a read-only working directory that holds a copy of
//! `config/` (the image's `/app`), as the image's user 10001 when the test runs as
//! root, with an environment that holds nothing but `PATH` and `TICKSTREAM__*` (and,
//! for a server, the port file through which the test support learns its port), and
//! the one writable directory the image has: its market-state volume
//! (`var/lib/tickstream`, the image's `TICKSTREAM__STORE__DATA_DIR`).
//! tests/deploy/dockerfile_checks.py fails when the Dockerfile stops matching this.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{spawn_child, spawn_server, ServerProcess};

/// The image's user and group (Dockerfile: `USER 10001:10001`).
const IMAGE_UID: u32 = 10001;
/// Where the binary-under-test comes from when not the debug build of this test run.
const RELEASE_BIN_VAR: &str = "TICKSTREAM_RELEASE_BIN";

/// The binary the image ships: `TICKSTREAM_RELEASE_BIN` when set (scripts/deploy-checks
/// sets it to the release build, which is what the image contains), else the debug
/// build cargo made for this test run, so plain `cargo test` checks the same contract.
pub fn binary_under_test() -> PathBuf {
    match std::env::var_os(RELEASE_BIN_VAR) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{RELEASE_BIN_VAR}={} does not exist: build it first with \
                 `cargo build --release --locked --bin tickstream` (scripts/deploy-checks does)",
                path.display()
            );
            path
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_tickstream")),
    }
}

/// A temporary copy of the image's file system layout: `bin/tickstream` and the
/// read-only working directory `app/` with `config/`. Removed on drop.
pub struct ImageLayout {
    root: PathBuf,
    /// Whether this test runs as root: then the children run as the image's user,
    /// because root ignores the read-only mode and the image never runs as root.
    as_image_user: bool,
}

impl ImageLayout {
    pub fn new() -> ImageLayout {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "tickstream-image-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let as_image_user = std::fs::metadata(&root).unwrap().uid() == 0;
        let binary = root.join("bin/tickstream");
        std::fs::copy(binary_under_test(), &binary).unwrap();
        set_mode(&binary, 0o755);
        let config = root.join("app/config");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            &config,
        );
        // As in the image: /app and its files belong to root and nobody may write.
        make_read_only(&root.join("app"));
        // The image's volume, owned by its user.
        let data = root.join("var/lib/tickstream");
        std::fs::create_dir_all(&data).unwrap();
        if as_image_user {
            std::os::unix::fs::chown(&data, Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
        }
        ImageLayout {
            root,
            as_image_user,
        }
    }

    pub fn workdir(&self) -> PathBuf {
        self.root.join("app")
    }

    /// The image's market-state volume (Dockerfile: `/var/lib/tickstream`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("var/lib/tickstream")
    }

    /// `tickstream ARGS` as the image runs it, listening on 127.0.0.1:`port`. The
    /// image sets `TICKSTREAM__SERVER__HOST=0.0.0.0`; tests listen on loopback only,
    /// so that one value differs (`healthcheck_with_host` uses the image's value).
    pub fn command(&self, args: &[&str], port: u16) -> Command {
        let mut command = Command::new("tickstream");
        command
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    self.root.join("bin").display()
                ),
            )
            .env("TICKSTREAM__SERVER__HOST", "127.0.0.1")
            .env("TICKSTREAM__SERVER__PORT", port.to_string())
            // The image sets /var/lib/tickstream; here, the layout's copy of it.
            .env("TICKSTREAM__STORE__DATA_DIR", self.data_dir())
            .current_dir(self.workdir());
        if self.as_image_user {
            command.uid(IMAGE_UID).gid(IMAGE_UID);
        }
        command
    }

    /// The image's `HEALTHCHECK`: `tickstream healthcheck`, with its exit status.
    pub fn healthcheck(&self, port: u16) -> Output {
        run(self.command(&["healthcheck"], port))
    }

    /// The health check with the image's own `TICKSTREAM__SERVER__HOST=0.0.0.0`,
    /// which the probe must turn into loopback.
    pub fn healthcheck_with_host(&self, port: u16, host: &str) -> Output {
        let mut command = self.command(&["healthcheck"], port);
        command.env("TICKSTREAM__SERVER__HOST", host);
        run(command)
    }

    /// Fails unless the image's user really cannot write into the working directory,
    /// so `snapshot` equality below is not the only guard (as root, chmod alone would
    /// not stop a write).
    pub fn assert_workdir_is_read_only(&self) {
        let mut probe = Command::new("/bin/sh");
        probe
            .args(["-c", ": > write-probe"])
            .current_dir(self.workdir())
            .stderr(Stdio::null());
        if self.as_image_user {
            probe.uid(IMAGE_UID).gid(IMAGE_UID);
        }
        let status = probe.status().unwrap();
        assert!(
            !status.success(),
            "the test set-up is wrong: the server's user can write into {}",
            self.workdir().display()
        );
    }

    /// Every entry of the working directory with its mode and content.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
        let mut entries = BTreeMap::new();
        let mode = std::fs::metadata(self.workdir()).unwrap().mode();
        entries.insert(PathBuf::from("."), (mode, Vec::new()));
        snapshot_into(&self.workdir(), &self.workdir(), &mut entries);
        entries
    }

    /// Starts `tickstream serve` with `extra_env` on top of the image's environment,
    /// on a port the OS picks (`ServerProcess::port`); killed on drop if a test fails
    /// before it exits.
    pub fn serve(&self, extra_env: &[(&str, &str)]) -> ServerProcess {
        let mut command = self.command(&["serve"], 0);
        command.envs(extra_env.iter().copied());
        spawn_server("tickstream serve", command)
    }

    /// Polls the image's health check (at most 10 s) until it passes.
    pub async fn wait_until_healthy(&self, server: &mut ServerProcess) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(exit) = server.exited() {
                panic!("the server exited during start-up: {exit:?}");
            }
            if self.healthcheck(server.port).status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the health check did not pass within 10 s");
    }
}

impl Drop for ImageLayout {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.root)
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A blocking `GET` with `Connection: close` (no pooled keep-alive connection that
/// would hold up the server's graceful shutdown); status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Runs to completion with stdout and stderr captured.
fn run(mut command: Command) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn_child(&mut command).wait_with_output().unwrap()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Directories 0555, files 0444, depth first so the walk can still read.
fn make_read_only(path: &Path) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            make_read_only(&entry.unwrap().path());
        }
        set_mode(path, 0o555);
    } else {
        set_mode(path, 0o444);
    }
}

fn snapshot_into(base: &Path, path: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        let relative = entry.path().strip_prefix(base).unwrap().to_path_buf();
        if metadata.is_dir() {
            out.insert(relative, (metadata.mode(), Vec::new()));
            snapshot_into(base, &entry.path(), out);
        } else {
            out.insert(
                relative,
                (metadata.mode(), std::fs::read(entry.path()).unwrap()),
            );
        }
    }
}
