//! What a process costs, read from `/proc`: CPU time (utime + stime of all its threads), time
//! spent runnable but waiting for a CPU, resident memory, threads and open files.

use std::{fs, time::Duration};

use anyhow::{Context, bail};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces):
/// index 0 is field 3 (state), so field n is at index n - 3.
fn stat_fields(pid: u32) -> anyhow::Result<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no process {pid}"))?;
    let Some((_, rest)) = text.rsplit_once(')') else { bail!("unexpected /proc/{pid}/stat: {text}") };
    Ok(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU time of the whole process (all threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let fields = stat_fields(pid)?;
    let field = |n: usize| -> anyhow::Result<u64> {
        fields.get(n - 3).and_then(|v| v.parse().ok()).with_context(|| format!("field {n} of /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

/// The parent of `pid`.
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid).ok()?.get(1)?.parse().ok()
}

/// `pid` and its direct children (e.g. a PostgreSQL postmaster and its backends).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = fs::read_dir("/proc") {
        pids.extend(
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|child| parent(*child) == Some(pid)),
        );
    }
    pids
}

/// CPU ticks summed over processes; one that has gone away counts as 0.
pub fn cpu_ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| cpu_ticks(*pid).ok()).sum()
}

/// Time the process's threads spent runnable but waiting for a CPU (second field of each
/// thread's `schedstat`): high when something else runs on the pinned core.
pub fn run_queue_wait(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let nanos: u64 = tasks
        .filter_map(|task| {
            let text = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum();
    Duration::from_nanos(nanos)
}

/// A `key: value kB` or `key: value` line of `/proc/<pid>/status`.
fn status_value(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Memory and handles at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Footprint {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub threads: u64,
    pub open_files: u64,
}

pub fn footprint(pid: u32) -> Footprint {
    Footprint {
        rss_kib: status_value(pid, "VmRSS").unwrap_or(0),
        peak_rss_kib: status_value(pid, "VmHWM").unwrap_or(0),
        threads: status_value(pid, "Threads").unwrap_or(0),
        open_files: fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0),
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// Online processors of the machine (not of this process's affinity mask), from `/proc/cpuinfo`.
pub fn processors() -> usize {
    fs::read_to_string("/proc/cpuinfo").map_or(0, |s| s.lines().filter(|l| l.starts_with("processor")).count())
}

/// The CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| Some(l.strip_prefix("model name")?.split_once(':')?.1.trim().to_owned())))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_memory_and_threads() {
        let pid = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_ticks(pid).expect("our own stat is readable") > 0);
        let footprint = footprint(pid);
        assert!(footprint.rss_kib > 0 && footprint.threads >= 1 && footprint.open_files >= 3, "{footprint:?}");
    }
}
