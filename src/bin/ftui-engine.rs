//! The real ftui program, started by the `ftui` launcher once libtorch is known to be there.

use clap::{CommandFactory, Parser};
use ftui::cli::{self, Cli, Failure};
use std::io::IsTerminal;

fn main() {
    let args = Cli::parse();
    let log_file = ftui::logging::init();
    ftui::engine::quiet_engine_panics();
    log::info!("ftui {} starting", env!("CARGO_PKG_VERSION"));
    let result = match args.command {
        Some(cmd) => cli::run(cmd, args.config.as_deref()),
        None => workbench(
            args.config
                .as_deref()
                .unwrap_or(std::path::Path::new(cli::DEFAULT_CONFIG)),
            log_file,
        ),
    };
    if let Err(Failure { code, message }) = result {
        log::error!("{message}");
        eprintln!("ftui: {message}");
        std::process::exit(code);
    }
}

/// The workbench draws on a terminal and reads keys from it: without one
/// (a pipe, nohup, cron) say so, and what works instead.
fn needs_terminal() -> Result<(), Failure> {
    let missing = match (
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    ) {
        (true, true) => return Ok(()),
        (false, _) => "stdin",
        (true, false) => "stdout",
    };
    let headless: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    Err(Failure {
        code: 2,
        message: format!(
            "the workbench needs a terminal ({missing} is not one); without one, use a command: ftui {}",
            headless.join(" | ")
        ),
    })
}

fn workbench(
    config: &std::path::Path,
    log_file: Option<std::path::PathBuf>,
) -> Result<(), Failure> {
    // A broken config is worth hearing about with or without a terminal.
    let c = cli::load_config(config)?;
    if c.model.source == ftui::paths::DEFAULT_MODEL_SOURCE && ftui::paths::default_model().is_none()
    {
        return Err(ftui::paths::default_model_missing().into());
    }
    needs_terminal()?;
    let engine = ftui::engine::Engine::start();
    ftui::tui::run(c, config.to_path_buf(), &engine, engine.events())?;
    if let Some(f) = log_file {
        log::info!("workbench closed; log at {}", f.display());
    }
    Ok(())
}
