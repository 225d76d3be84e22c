//! `sync-server`: parse the command line, set up logging, then either serve
//! or run one operator command on the data dir. Exit codes: 0 done, 2 a
//! mistake in the command line or its arguments, 1 any other failure.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Logs to stderr: human lines with colour on a terminal, JSON lines
/// (one object per event, no colour codes) when stderr is a file or a pipe.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNC_SERVER_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).with_ansi(false).init();
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
