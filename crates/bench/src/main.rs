//! `grid-bench`: parse the command line, run every figure, print the table.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Measures logging, photos, sync and server load against the project's
/// targets, beside stock Automerge sync, and writes the table.
#[derive(Debug, Parser)]
#[command(name = "grid-bench", about)]
struct Cli {
    /// Small sizes (seconds, for CI): keeps the harness working, judges nothing.
    #[arg(long)]
    quick: bool,
    /// Runs per figure; the table shows their median, min and max.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Run only this group of figures; repeat for several.
    #[arg(long, value_enum, value_name = "GROUP")]
    only: Vec<bench::Group>,
    /// Where to write the Markdown. Default: docs/benchmarks.md in a full
    /// run of every figure, nowhere with --quick or --only.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = cli
        .out
        .or_else(|| (!cli.quick && cli.only.is_empty()).then(|| bench::workspace_root().join("docs/benchmarks.md")));
    let config = bench::Config {
        quick: cli.quick,
        only: cli.only,
        runs: usize::from(cli.runs),
        out: out.clone(),
    };
    match bench::run(&config) {
        Ok(report) => {
            println!("{}", report.markdown);
            if let Some(out) = out {
                eprintln!("bench: wrote {}", out.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
