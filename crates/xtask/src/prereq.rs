//! The programs the tests drive that cargo does not build: how to tell that
//! each is installed, and where it comes from.
//!
//! A new prerequisite is one more row in [`ALL`]: a probe (`haproxy -v`)
//! and the Debian packages. Garage, built from crates.io, has `garage.rs`.

use std::process::{Command, Stdio};

/// One thing the tests need.
pub struct Prereq {
    /// What it is, for progress lines and errors.
    pub name: &'static str,
    /// Which tests use it, said when it is missing.
    pub used_by: &'static str,
    pub probe: Probe,
    pub source: Source,
    /// Commands run after installing it, such as starting a service.
    pub then: &'static [&'static [&'static str]],
}

/// A command that succeeds only when the prerequisite is installed.
pub enum Probe {
    /// The command runs and exits 0.
    Runs(&'static [&'static str]),
    /// The command runs, exits 0 and prints something: a search that
    /// succeeds with no match, such as `fc-list`, is told apart this way.
    Finds(&'static [&'static str]),
}

/// Where a prerequisite comes from.
pub enum Source {
    /// These Debian packages, installed with apt-get.
    Apt(&'static [&'static str]),
}

pub const ALL: &[Prereq] = &[
    Prereq {
        name: "PostgreSQL on 127.0.0.1:5432",
        used_by: "sync-server's suite on PostgreSQL, which makes a database per test as user postgres (trust auth on loopback, as on this project's machines)",
        probe: Probe::Runs(&["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]),
        source: Source::Apt(&["postgresql"]),
        then: &[&["service", "postgresql", "start"]],
    },
    Prereq {
        name: "haproxy",
        used_by: "sync-server's city test: three nodes behind it while they are killed one at a time",
        probe: Probe::Runs(&["haproxy", "-v"]),
        source: Source::Apt(&["haproxy"]),
        then: &[],
    },
    Prereq {
        name: "GDAL's ogrinfo",
        used_by: "the GeoJSON export tests of field-cli and sync-server (ogrinfo, ogr2ogr)",
        probe: Probe::Runs(&["ogrinfo", "--version"]),
        source: Source::Apt(&["gdal-bin"]),
        then: &[],
    },
    Prereq {
        name: "Chromium",
        used_by: "sync-server's dashboard test, which drives it headless over DevTools",
        probe: Probe::Runs(&["chromium", "--version"]),
        source: Source::Apt(&["chromium"]),
        then: &[],
    },
    Prereq {
        name: "LibreOffice Calc",
        used_by: "the CSV tests, which open every export in Calc splitting on tab and semicolon too",
        probe: Probe::Runs(&["soffice", "--version"]),
        source: Source::Apt(&["libreoffice-calc"]),
        then: &[],
    },
    Prereq {
        name: "libfaketime",
        used_by: "sync-server's overdue test, which dispatches a case from a device whose clock says three days ago",
        probe: Probe::Runs(&["faketime", "2026-01-01 00:00:00", "true"]),
        source: Source::Apt(&["faketime"]),
        then: &[],
    },
    Prereq {
        name: "a Chinese font",
        used_by: "the dashboard test's screenshot, so Chinese text shows as a clerk sees it",
        probe: Probe::Finds(&["fc-list", ":lang=zh"]),
        source: Source::Apt(&["fonts-wqy-zenhei"]),
        then: &[],
    },
];

impl Probe {
    fn argv(&self) -> &'static [&'static str] {
        match self {
            Probe::Runs(argv) | Probe::Finds(argv) => argv,
        }
    }

    /// Runs the probe; a program that cannot be started is not installed.
    fn holds(&self) -> bool {
        let (program, args) = self.argv().split_first().expect("a probe names a program");
        let Ok(out) = Command::new(program).args(args).stdin(Stdio::null()).output() else {
            return false;
        };
        out.status.success()
            && match self {
                Probe::Runs(_) => true,
                Probe::Finds(_) => !out.stdout.trim_ascii().is_empty(),
            }
    }
}

/// Checks every prerequisite and installs the missing ones, or says in one
/// sentence what to install when it cannot.
pub fn ensure(all: &[Prereq]) -> Result<(), String> {
    let missing: Vec<&Prereq> = all.iter().filter(|p| !present(p, "")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = apt_packages(&missing);
    if !is_root() {
        return Err(cannot_install(&missing, &packages));
    }
    apt_install(&packages)?;
    for then in missing.iter().flat_map(|p| p.then) {
        let (program, args) = then.split_first().expect("a command names a program");
        run(Command::new(program).args(args))?;
    }
    let still: Vec<&Prereq> = missing
        .into_iter()
        .filter(|p| !present(p, "after installing: "))
        .collect();
    match still.as_slice() {
        [] => Ok(()),
        _ => Err(format!(
            "{} still missing after installing {}",
            names(&still),
            packages.join(" ")
        )),
    }
}

/// Probes `p` and prints the finding.
fn present(p: &Prereq, when: &str) -> bool {
    let found = p.probe.holds();
    let probe = p.probe.argv().join(" ");
    match found {
        true => eprintln!("xtask: {when}{} ({probe}): found", p.name),
        false => eprintln!("xtask: {when}{} ({probe}): missing, needed by {}", p.name, p.used_by),
    }
    found
}

/// The Debian packages that bring `missing`, each once, in table order.
fn apt_packages(missing: &[&Prereq]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in missing {
        let Source::Apt(packages) = p.source;
        for package in packages {
            if !out.contains(package) {
                out.push(package);
            }
        }
    }
    out
}

/// The sentence for someone who is not root.
fn cannot_install(missing: &[&Prereq], packages: &[&str]) -> String {
    format!(
        "the tests need {}, which only root can install here: run `apt-get install {}` as root \
         (or `cargo xtask deps` as root), then run this again",
        names(missing),
        packages.join(" ")
    )
}

/// "A", "A and B", "A, B and C".
fn names(prereqs: &[&Prereq]) -> String {
    match prereqs {
        [] => String::new(),
        [one] => one.name.to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|p| p.name).collect();
            format!("{} and {}", init.join(", "), last.name)
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

/// `apt-get update` once, then one `apt-get install` of every package.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages);
    for cmd in [&mut update, &mut install] {
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        run(cmd)?;
    }
    Ok(())
}

/// Runs `cmd` with its output on our stderr; fails unless it exits 0.
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("xtask: {shown}");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run `{shown}` ({e}); is this a Debian system?"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("`{shown}` failed ({status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prerequisite_has_a_probe_and_packages_and_a_name_of_its_own() {
        let mut names = Vec::new();
        for p in ALL {
            assert!(!p.probe.argv().is_empty(), "{}: no probe", p.name);
            let Source::Apt(packages) = p.source;
            assert!(!packages.is_empty(), "{}: no package", p.name);
            assert!(!p.used_by.is_empty(), "{}: used by nothing", p.name);
            assert!(!names.contains(&p.name), "{} twice", p.name);
            names.push(p.name);
        }
    }

    /// The README's Set-up section names what `cargo xtask test` installs.
    #[test]
    fn the_readme_names_every_package() {
        let readme = std::fs::read_to_string(crate::workspace_root().join("README.md")).unwrap();
        let all: Vec<&Prereq> = ALL.iter().collect();
        for package in apt_packages(&all) {
            assert!(
                readme.contains(&format!("`{package}`")),
                "README.md does not name `{package}`"
            );
        }
    }

    const A: Prereq = Prereq {
        name: "A",
        used_by: "a test",
        probe: Probe::Runs(&["true"]),
        source: Source::Apt(&["pkg-a", "pkg-common"]),
        then: &[],
    };
    const B: Prereq = Prereq {
        name: "B",
        used_by: "a test",
        probe: Probe::Runs(&["true"]),
        source: Source::Apt(&["pkg-common", "pkg-b"]),
        then: &[],
    };
    const C: Prereq = Prereq {
        name: "C",
        used_by: "a test",
        probe: Probe::Runs(&["true"]),
        source: Source::Apt(&["pkg-c"]),
        then: &[],
    };

    #[test]
    fn packages_are_installed_once_in_table_order() {
        assert_eq!(apt_packages(&[&A, &B, &C]), ["pkg-a", "pkg-common", "pkg-b", "pkg-c"]);
        assert_eq!(apt_packages(&[&C]), ["pkg-c"]);
    }

    #[test]
    fn the_sentence_for_a_user_names_what_is_missing_and_every_package() {
        assert_eq!(names(&[&A]), "A");
        assert_eq!(names(&[&A, &B]), "A and B");
        assert_eq!(names(&[&A, &B, &C]), "A, B and C");
        let all = [&A, &C];
        assert_eq!(
            cannot_install(&all, &apt_packages(&all)),
            "the tests need A and C, which only root can install here: run \
             `apt-get install pkg-a pkg-common pkg-c` as root (or `cargo xtask deps` as root), \
             then run this again"
        );
    }

    #[test]
    fn a_probe_holds_only_when_its_command_succeeds_and_finds_something() {
        assert!(Probe::Runs(&["true"]).holds());
        assert!(!Probe::Runs(&["false"]).holds());
        assert!(!Probe::Runs(&["no-such-program-xtask-probes-for"]).holds());
        assert!(Probe::Finds(&["echo", "a match"]).holds());
        assert!(!Probe::Finds(&["echo"]).holds(), "an empty line is no match");
    }
}
