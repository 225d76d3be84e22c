//! What the figures were measured on: CPU, cores, memory, OS, compiler,
//! the file system the data dirs live on, and how busy the machine was.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub os: String,
    pub rustc: String,
    pub data_fs: String,
    pub commit: String,
}

impl Machine {
    pub fn describe(data_dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory = meminfo_kib("MemTotal")
            .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let pretty = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let rustc = command_line(std::env::var("RUSTC").as_deref().unwrap_or("rustc"), &["--version"]);
        let commit = {
            let root = crate::workspace_root();
            let hash = command_line("git", &["-C", &root.to_string_lossy(), "rev-parse", "--short", "HEAD"]);
            let dirty = Command::new("git")
                .args(["-C", &root.to_string_lossy(), "status", "--porcelain"])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if dirty {
                format!("{hash} (with uncommitted changes)")
            } else {
                hash
            }
        };
        Machine {
            cpu,
            cores,
            memory,
            os: format!("{pretty}, Linux {kernel}"),
            rustc,
            data_fs: file_system_of(data_dir),
            commit,
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// "ext4 on /dev/vda", from the longest mount point above `dir`.
fn file_system_of(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-minute load average: how many runnable tasks the machine had.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// VmRSS and VmHWM of a process, in bytes.
pub fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        s.lines().find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    Some((kib("VmRSS")? * 1024, kib("VmHWM")? * 1024))
}

/// CPU time of the whole machine and of this process with its waited-for
/// children (the `field` and `sync-server` processes), in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: std::time::Instant,
    busy: u64,
    own: u64,
}

impl CpuSample {
    pub fn now() -> CpuSample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let busy = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .map(|l| {
                let f: Vec<u64> = l.split_whitespace().filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal: all but idle and iowait.
                [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum()
            })
            .unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Fields after the command name, which is in parentheses.
                let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
                // `rest` starts at field 3 (the state); utime, stime, cutime
                // and cstime are fields 14 to 17.
                rest.get(11..15)?.iter().map(|v| v.parse::<u64>().ok()).sum()
            })
            .unwrap_or(0);
        CpuSample {
            at: std::time::Instant::now(),
            busy,
            own,
        }
    }

    /// The share of the machine's CPU that other processes (and the
    /// hypervisor's steal) used between `self` and `later`.
    pub fn others_share(&self, later: &CpuSample, cores: usize) -> f64 {
        const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ on Linux
        let wall = (later.at - self.at).as_secs_f64() * TICKS_PER_SECOND * cores as f64;
        let others = later.busy.saturating_sub(self.busy) as f64 - later.own.saturating_sub(self.own) as f64;
        if wall > 0.0 {
            (others / wall).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}
