//! The `tickstream` binary: settings, logs, then the application until stopped.

use std::path::PathBuf;

use clap::Parser;
use tickstream::config::Settings;
use tickstream::shutdown::cancel_on_signal;
use tickstream::startup::Application;
use tickstream::telemetry;

/// Live stock-ticker backend: WebSocket quotes, REST, and a built-in simulator.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Base configuration file (default: config/default.toml if present, else the
    /// embedded defaults). Environment variables TICKSTREAM__SECTION__KEY override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        actix_web::rt::spawn(cancel_on_signal(app.state().shutdown.clone()));
        app.run_until_stopped().await
    })
}
