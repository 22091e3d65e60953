//! A node's vital signs from `/proc`: CPU time by state (`/proc/stat`), memory
//! (`/proc/meminfo`), disk bytes read and written (`/proc/diskstats`), network bytes
//! (`/proc/net/dev`) and the load average. Read by hand rather than through a crate because
//! these few files are stable, simple text, and the agent should stay small; the parsers take
//! the text, so they are tested on fixed samples.

use std::time::Duration;

/// Cumulative counters at one moment; two of them make a rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Jiffies spent busy and in total, over all CPUs.
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    pub net_received_bytes: u64,
    pub net_sent_bytes: u64,
}

/// Levels at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub load1: f64,
}

/// What is reported: rates between two samples, and the latest levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vitals {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub memory_used_percent: f64,
    pub disk_read_bytes_per_second: f64,
    pub disk_written_bytes_per_second: f64,
    pub net_received_bytes_per_second: f64,
    pub net_sent_bytes_per_second: f64,
    pub load1: f64,
}

/// Reads the counters and levels now.
pub fn sample() -> std::io::Result<(Counters, Levels)> {
    let read = |path: &str| std::fs::read_to_string(path);
    let (cpu_busy, cpu_total) = parse_cpu(&read("/proc/stat")?).unwrap_or_default();
    let (disk_read_bytes, disk_written_bytes) = parse_diskstats(&read("/proc/diskstats").unwrap_or_default());
    let (net_received_bytes, net_sent_bytes) = parse_net_dev(&read("/proc/net/dev").unwrap_or_default());
    let (memory_total_bytes, memory_available_bytes) = parse_meminfo(&read("/proc/meminfo")?);
    let load1 = read("/proc/loadavg")?.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok((
        Counters { cpu_busy, cpu_total, disk_read_bytes, disk_written_bytes, net_received_bytes, net_sent_bytes },
        Levels { memory_total_bytes, memory_available_bytes, load1 },
    ))
}

/// Rates from `before` to `after` over `elapsed`, with the levels at `after`.
pub fn vitals(before: &Counters, after: &Counters, levels: &Levels, elapsed: Duration) -> Vitals {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let total = after.cpu_total.saturating_sub(before.cpu_total);
    let busy = after.cpu_busy.saturating_sub(before.cpu_busy);
    let used = levels.memory_total_bytes.saturating_sub(levels.memory_available_bytes);
    Vitals {
        cpu_percent: if total == 0 { 0.0 } else { busy as f64 * 100.0 / total as f64 },
        memory_used_bytes: used,
        memory_total_bytes: levels.memory_total_bytes,
        memory_used_percent: if levels.memory_total_bytes == 0 {
            0.0
        } else {
            used as f64 * 100.0 / levels.memory_total_bytes as f64
        },
        disk_read_bytes_per_second: rate(before.disk_read_bytes, after.disk_read_bytes),
        disk_written_bytes_per_second: rate(before.disk_written_bytes, after.disk_written_bytes),
        net_received_bytes_per_second: rate(before.net_received_bytes, after.net_received_bytes),
        net_sent_bytes_per_second: rate(before.net_sent_bytes, after.net_sent_bytes),
        load1: levels.load1,
    }
}

/// (busy, total) jiffies from the first `cpu` line: idle and iowait are not busy; guest time is
/// already counted in user time.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (total, available) bytes.
pub fn parse_meminfo(meminfo: &str) -> (u64, u64) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// (read, written) bytes of whole disks (not partitions, loop or ram devices); sectors are
/// 512 bytes in this file whatever the device's sector size.
pub fn parse_diskstats(diskstats: &str) -> (u64, u64) {
    diskstats
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = *fields.get(2)?;
            // nvme0n1 is a disk, nvme0n1p1 a partition; sda a disk, sda1 a partition.
            let partition =
                if name.starts_with("nvme") { name.contains('p') } else { name.chars().last()?.is_ascii_digit() };
            let virtual_device = ["loop", "ram", "dm-"].iter().any(|prefix| name.starts_with(prefix));
            let whole_disk = !partition && !virtual_device;
            if !whole_disk {
                return None;
            }
            let sectors = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some((sectors(5) * 512, sectors(9) * 512))
        })
        .fold((0, 0), |(r, w), (dr, dw)| (r + dr, w + dw))
}

/// (received, sent) bytes over every interface but loopback.
pub fn parse_net_dev(net_dev: &str) -> (u64, u64) {
    net_dev
        .lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let fields: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            Some((*fields.first()?, *fields.get(8)?))
        })
        .fold((0, 0), |(r, s), (dr, ds)| (r + dr, s + ds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 50 2 25 400 20 0 0 0 0 0\n";
        assert_eq!(parse_cpu(stat), Some((155, 1000)));
        let before = Counters { cpu_busy: 155, cpu_total: 1000, ..Counters::default() };
        let after = Counters { cpu_busy: 255, cpu_total: 1400, ..Counters::default() };
        let v = vitals(&before, &after, &Levels::default(), Duration::from_secs(4));
        assert!((v.cpu_percent - 25.0).abs() < 1e-9);
    }

    #[test]
    fn memory_used_is_total_minus_available() {
        let meminfo = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), (16_000_000 * 1024, 4_000_000 * 1024));
    }

    #[test]
    fn disks_count_whole_devices_only_and_networks_skip_loopback() {
        let diskstats = "\
 259       0 nvme0n1 100 0 2000 0 50 0 4000 0 0 0 0
 259       1 nvme0n1p1 90 0 1800 0 40 0 3000 0 0 0 0
   8       0 sda 10 0 100 0 5 0 200 0 0 0 0
   8       1 sda1 10 0 100 0 5 0 200 0 0 0 0
   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0
";
        assert_eq!(parse_diskstats(diskstats), ((2000 + 100) * 512, (4000 + 200) * 512));
        let net_dev = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 999999     100    0    0    0     0          0         0   999999     100    0    0    0     0       0          0
  eth0:   1500      10    0    0    0     0          0         0     700       5    0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(net_dev), (1500, 700));
    }

    #[test]
    fn this_machine_can_be_read() {
        let (counters, levels) = sample().expect("/proc is readable");
        assert!(counters.cpu_total > 0 && levels.memory_total_bytes > 0);
    }
}
