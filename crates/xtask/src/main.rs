//! `cargo xtask` (alias in `.cargo/config.toml`): the project's own commands,
//! written in Rust so they run wherever cargo does.
//!
//! `cargo xtask test` is the README's test command: it checks that the
//! programs the tests drive are installed (installing the missing ones when
//! it runs as root), then runs every test of the workspace, going on past a
//! failing suite so one run reports them all, then sync-server's
//! integration suite a second time with the server's records in
//! PostgreSQL (`SYNC_TEST_BACKEND=postgres`, a fresh database per test)
//! and its photos in Garage (`garage.rs` builds it once per machine). `cargo xtask fuzz-smoke`
//! runs each fuzz target of `fuzz/` briefly (see `fuzz.rs`). Progress goes
//! to stderr.

mod fuzz;
mod garage;
mod prereq;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

const USAGE: &str = "\
usage: cargo xtask test [ARGS...]   install what the tests need, then
                                    `cargo test --workspace --locked --no-fail-fast ARGS...`
       cargo xtask deps             only install what the tests need
       cargo xtask fuzz-smoke       run each fuzz target for a bounded time,
                                    failing on a crash (installs cargo-fuzz)";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Task {
    /// Prerequisites, then `cargo test` with these arguments added.
    Test(Vec<OsString>),
    /// Prerequisites only.
    Deps,
    /// Every fuzz target, briefly.
    FuzzSmoke,
    Help,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Task, String> {
    let mut args = args.into_iter();
    let Some(task) = args.next() else {
        return Err("no task given".to_owned());
    };
    match task.to_str() {
        Some("test") => Ok(Task::Test(args.collect())),
        Some("deps") => match args.next() {
            None => Ok(Task::Deps),
            Some(extra) => Err(format!("`deps` takes no arguments, got {extra:?}")),
        },
        Some("fuzz-smoke") => match args.next() {
            None => Ok(Task::FuzzSmoke),
            Some(extra) => Err(format!("`fuzz-smoke` takes no arguments, got {extra:?}")),
        },
        Some("help" | "-h" | "--help") => Ok(Task::Help),
        _ => Err(format!("unknown task {task:?}")),
    }
}

fn main() -> ExitCode {
    let task = match parse(std::env::args_os().skip(1)) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("xtask: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match task {
        Task::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Task::Deps => prereq::ensure(prereq::ALL).map(|()| ExitCode::SUCCESS),
        Task::FuzzSmoke => fuzz::smoke(),
        Task::Test(extra) => prereq::ensure(prereq::ALL).and_then(|()| cargo_test(&extra)),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        ExitCode::FAILURE
    })
}

/// The arguments of the one `cargo` run that runs every test.
fn test_args(extra: &[OsString]) -> Vec<OsString> {
    ["test", "--workspace", "--locked", "--no-fail-fast"]
        .into_iter()
        .map(OsString::from)
        .chain(extra.iter().cloned())
        .collect()
}

/// The arguments of the run of sync-server's integration suite on PostgreSQL.
fn postgres_args(extra: &[OsString]) -> Vec<OsString> {
    [
        "test",
        "-p",
        "sync-server",
        "--test",
        "it",
        "--locked",
        "--no-fail-fast",
    ]
    .into_iter()
    .map(OsString::from)
    .chain(extra.iter().cloned())
    .collect()
}

/// Runs the workspace's tests, then sync-server's suite on PostgreSQL;
/// the first failing exit status becomes ours.
fn cargo_test(extra: &[OsString]) -> Result<ExitCode, String> {
    let garage = garage::ensure()?;
    let garage = garage.to_string_lossy();
    // The bench's test measures the photo store too, so it needs Garage as well.
    let embedded = run_cargo(&test_args(extra), &[("GARAGE_BIN", garage.as_ref())])?;
    let postgres = run_cargo(
        &postgres_args(extra),
        &[("SYNC_TEST_BACKEND", "postgres"), ("GARAGE_BIN", garage.as_ref())],
    )?;
    Ok(if embedded.success() {
        exit_code(postgres)
    } else {
        exit_code(embedded)
    })
}

fn run_cargo(args: &[OsString], env: &[(&str, &str)]) -> Result<ExitStatus, String> {
    // The cargo that runs us (set by `cargo run`), so a pinned toolchain stays pinned.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args).current_dir(workspace_root()).envs(env.iter().copied());
    let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("xtask: running {shown_env}cargo {}", shown(args));
    cmd.status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask lives in crates/xtask")
        .to_owned()
}

/// A child's status as our exit code: its code, or 1 if a signal ended it.
fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// Arguments as a person would type them, for progress lines.
fn shown(args: &[OsString]) -> String {
    let words: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[track_caller]
    fn check(args: &[&str], expected: Result<Task, &str>) {
        let got = parse(os(args));
        assert_eq!(got, expected.map_err(str::to_owned), "cargo xtask {args:?}");
    }

    #[test]
    fn the_command_line_picks_a_task() {
        check(&["test"], Ok(Task::Test(vec![])));
        let extra = ["-p", "sync-server", "--test", "it", "--", "--nocapture"];
        check(&[&["test"][..], &extra].concat(), Ok(Task::Test(os(&extra))));
        check(&["deps"], Ok(Task::Deps));
        check(&["fuzz-smoke"], Ok(Task::FuzzSmoke));
        check(
            &["fuzz-smoke", "-runs=1"],
            Err("`fuzz-smoke` takes no arguments, got \"-runs=1\""),
        );
        check(&["--help"], Ok(Task::Help));
        check(&[], Err("no task given"));
        check(&["deps", "--yes"], Err("`deps` takes no arguments, got \"--yes\""));
        check(&["tset"], Err("unknown task \"tset\""));
    }

    #[test]
    fn extra_arguments_follow_the_readme_flags() {
        assert_eq!(
            test_args(&os(&["dashboard"])),
            os(&["test", "--workspace", "--locked", "--no-fail-fast", "dashboard"])
        );
    }

    #[test]
    fn the_workspace_root_holds_the_virtual_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
    }
}
