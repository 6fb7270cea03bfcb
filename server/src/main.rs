//! `gantry`: parses the command line and hands over to the library.
//! Errors end the process with one line naming the cause.

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::{Cli, Command};
use gantry::config::Config;

fn main() -> ExitCode {
    // One rustls crypto backend for the whole process (DESIGN.md §8b).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let cli = Cli::parse();
    // Inside a build pod: no configuration, no data directory.
    if let Command::BuildHelper(command) = cli.command {
        return build_helper(command);
    }
    let config = match Config::load(&cli.global.flags()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gantry: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    gantry::telemetry::init_logging(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gantry: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve => gantry::serve::serve(config).await,
            Command::Demo => gantry::demo::run(config).await,
            Command::Migrate => gantry::migrate::run(config).await,
            Command::Cluster(command) => gantry::client::cluster(&config, command).await,
            Command::Cr(command) => gantry::client::change_request(&config, command).await,
            command @ (Command::Rollback { .. }
            | Command::Promote { .. }
            | Command::Releases { .. }) => gantry::client::ledger(&config, command).await,
            Command::RotateKey => gantry::admin::rotate_key(config).await,
            Command::Token(command) => gantry::admin::token(config, command).await,
            Command::Health { file, rules } => gantry::admin::health(&file, rules.as_deref()),
            Command::BuildHelper(_) => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gantry: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_helper(command: gantry::build_helper::BuildHelper) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(gantry::build_helper::run(command)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gantry build-helper: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
