//! The `tickstream` binary: settings, logs, then the application until stopped.
//!
//! A user's mistake ends the process with one line on stderr and an exit status: 2
//! for a configuration mistake, 1 for any other failure to start or run. A stack trace
//! is for bugs (panics), so errors are never printed with `{:?}`, which would add
//! anyhow's backtrace under `RUST_BACKTRACE=1`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tickstream::config::{ConfigError, Settings};
use tickstream::shutdown::cancel_on_signal;
use tickstream::startup::Application;
use tickstream::store::data_file::{self, DataFileError};
use tickstream::store::DATA_FILE;
use tickstream::{healthcheck, telemetry};

/// Live stock-ticker backend: WebSocket quotes, REST, and a built-in simulator.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Base configuration file (default: config/default.toml if present, else the
    /// embedded defaults). Environment variables TICKSTREAM__SECTION__KEY override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Once listening, write the port to this file (the number and a newline), so
    /// whoever started the server on port 0 (TICKSTREAM__SERVER__PORT=0) learns which
    /// port the OS chose, whatever the log level or format.
    #[arg(long, global = true, env = "TICKSTREAM_PORT_FILE", value_name = "PATH")]
    port_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Probe the running server's /healthz; exit 0 when healthy (container HEALTHCHECK).
    Healthcheck,
    /// Serve with a recorded CSV file as the feed instead of the simulator.
    Replay {
        /// The recording (`ts,symbol,price,size,bid,bid_size,ask,ask_size`).
        file: PathBuf,
        /// Speed factor: 2 plays twice as fast as recorded.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Stop at the end of the file instead of starting again.
        #[arg(long)]
        no_loop: bool,
    },
    /// Check the market-state data file under store.data_dir, or set it aside to start
    /// empty. Run it with the server stopped: a running server holds the file.
    Data {
        /// The directory holding tickstream.redb, instead of store.data_dir.
        #[arg(long, global = true, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: DataAction,
    },
}

#[derive(Subcommand, Debug)]
enum DataAction {
    /// Read every record; print a report and exit 0 when sound, one line and exit 1
    /// when damaged (or in use, or unreadable).
    Check,
    /// Move the file to tickstream.redb.<UTC time>.bak beside it, so that the next
    /// start begins empty. Nothing is deleted.
    Reset {
        /// Do it; without, only say what would be done (exit 2).
        #[arg(long)]
        yes: bool,
    },
}

/// Exit status for a configuration mistake, as for a command-line usage mistake.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tickstream: {}", one_line(&error));
            if error.chain().any(|cause| cause.is::<ConfigError>()) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes (`{:#}`: "outer: inner"), any line breaks inside them
/// folded, so that one mistake is one line in a terminal or a log collector.
fn one_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join(" ")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let loaded = Settings::load(cli.config.as_deref())?;
    for deprecation in &loaded.deprecations {
        eprintln!("tickstream: warning: {deprecation}");
    }
    let mut settings = loaded.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => Ok(match healthcheck::check(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        }),
        Command::Replay {
            file,
            speed,
            no_loop,
        } => {
            settings.simulator.enabled = false;
            settings.replay.file = file.display().to_string();
            settings.replay.speed = speed;
            settings.replay.repeat = !no_loop;
            settings.validate()?;
            serve(settings, cli.port_file.as_deref())
        }
        Command::Serve => serve(settings, cli.port_file.as_deref()),
        Command::Data { data_dir, action } => {
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(&settings.store.data_dir));
            Ok(data(&dir, action))
        }
    }
}

/// `tickstream data check|reset`: a report, or one line, and an exit status: 0 done
/// (sound, or moved), 1 damaged or not possible now (in use, an I/O error), 2 nothing
/// to act on (no data file) or `reset` without `--yes`.
fn data(dir: &Path, action: DataAction) -> ExitCode {
    if dir.as_os_str().is_empty() {
        eprintln!(
            "tickstream: store.data_dir is empty (the market state is kept in memory only): \
             there is no data file"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let file = dir.join(DATA_FILE);
    let now = chrono::Utc::now();
    let (done, status) = match action {
        DataAction::Check => (
            data_file::check(&file).map(|report| print!("{report}")),
            ExitCode::SUCCESS,
        ),
        DataAction::Reset { yes: false } => (
            data_file::reset_plan(&file, now).map(|backup| {
                println!(
                    "would move {} to {}, so that the next start begins empty; run again \
                     with --yes to do it",
                    file.display(),
                    backup.display()
                );
            }),
            ExitCode::from(EXIT_CONFIG),
        ),
        DataAction::Reset { yes: true } => (
            data_file::reset(&file, now).map(|backup| {
                println!(
                    "moved {} to {}; the next start begins empty",
                    file.display(),
                    backup.display()
                );
            }),
            ExitCode::SUCCESS,
        ),
    };
    match done {
        Ok(()) => status,
        Err(error) => {
            eprintln!("tickstream: {error}");
            match error {
                DataFileError::Missing(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn serve(settings: Settings, port_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    telemetry::init(&settings.log);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        if let Some(path) = port_file {
            write_port_file(path, app.port())?;
        }
        actix_web::rt::spawn(cancel_on_signal(app.shutdown_token().clone()));
        app.run_until_stopped().await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Written beside its final name and renamed into place, so a reader polling for the
/// file never sees it half written. The listener is bound by now: a client that
/// connects as soon as it reads the port waits in the backlog until the server runs.
fn write_port_file(path: &Path, port: u16) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{port}\n"))
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write the port file {}", path.display()))
}
