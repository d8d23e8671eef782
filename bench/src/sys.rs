//! Process and machine measurements from /proc: resident memory, CPU time per thread group, the broker's CPU.

use std::path::Path;
use std::time::Instant;

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`); 0 when it cannot be read.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_field(&status, field).unwrap_or(0)
}

/// A `kB` field of a /proc status text, in bytes.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Resident memory of another process (a child server), or None when it is gone.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "VmRSS")
}

/// CPU seconds (user and system, all threads) another process has used so far.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks as f64 / ticks_per_second())
}

/// Resident memory of the whole bench process (the app runs inside it).
pub fn rss() -> u64 {
    status_bytes("VmRSS")
}

/// Peak resident memory since start, or since [`reset_peak`].
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM")
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so a phase sees its own peak, not an earlier one's.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Gives freed heap back to the kernel, so RSS before a memory measurement is not inflated by an earlier phase.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the files under `dir` take on disk (allocated blocks, so sparse space is not counted).
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU seconds so far: this process's threads split by what they serve, and the broker.
#[derive(Clone, Copy, Default)]
struct CpuSeconds {
    /// Threads of the load generator's runtime (named `load`).
    load: f64,
    /// lapin's I/O threads: the app's broker connections, or the raw publisher's in the baseline.
    lapin: f64,
    /// Everything else in this process: the app's runtime and the bench's main thread.
    app: f64,
    broker: Option<f64>,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// (name, utime + stime in ticks) from a /proc stat line; the name may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The RabbitMQ node on this machine, if one runs (`beam.smp`).
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "beam.smp"))
}

fn sample() -> CpuSeconds {
    let per_tick = 1.0 / ticks_per_second();
    let mut seconds = CpuSeconds::default();
    if let Ok(threads) = std::fs::read_dir("/proc/self/task") {
        for thread in threads.flatten() {
            let Ok(stat) = std::fs::read_to_string(thread.path().join("stat")) else {
                continue;
            };
            let Some((name, ticks)) = parse_stat(&stat) else {
                continue;
            };
            let used = ticks as f64 * per_tick;
            if name.starts_with("load") {
                seconds.load += used;
            } else if name.starts_with("lapin") {
                seconds.lapin += used;
            } else {
                seconds.app += used;
            }
        }
    }
    seconds.broker = broker_pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .and_then(|stat| parse_stat(&stat))
        .map(|(_, ticks)| ticks as f64 * per_tick);
    seconds
}

/// The block device that holds the temporary directory (data dirs live there; so does RabbitMQ's, on
/// this machine), as (major, minor).
fn temp_device() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    static DEVICE: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *DEVICE.get_or_init(|| {
        let dev = std::fs::metadata(std::env::temp_dir()).ok()?.dev();
        Some((libc::major(dev), libc::minor(dev)))
    })
}

/// Writes completed, flushes completed and milliseconds busy of the temp directory's device (/proc/diskstats).
fn disk_sample() -> Option<[u64; 3]> {
    let (major, minor) = temp_device()?;
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first()?.parse::<u32>().ok()? != major || f.get(1)?.parse::<u32>().ok()? != minor {
            return None;
        }
        // After major, minor and name: writes completed is field 5, time doing I/O 10, flushes 16.
        let field = |i: usize| f.get(2 + i)?.parse::<u64>().ok();
        Some([field(5)?, field(16).unwrap_or(0), field(10)?])
    })
}

/// What the disk did over a measured interval.
#[derive(Clone, Copy, Default)]
pub struct DiskUse {
    pub writes_per_s: f64,
    pub flushes_per_s: f64,
    /// Share of the interval with I/O in flight (1.0 = always).
    pub busy: f64,
}

/// Cores used by each group over a measured interval (1.0 = one core busy the whole time).
#[derive(Clone, Copy, Default)]
pub struct CpuUse {
    pub load: f64,
    pub app: f64,
    pub lapin: f64,
    pub broker: Option<f64>,
    pub disk: Option<DiskUse>,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load generator {:.2}, app {:.2}, lapin I/O {:.2}",
            self.load, self.app, self.lapin
        )?;
        match self.broker {
            Some(broker) => write!(f, ", RabbitMQ {broker:.2} cores")?,
            None => write!(f, " cores")?,
        }
        if let Some(disk) = self.disk {
            write!(
                f,
                "; disk {:.0} writes/s, {:.0} flushes/s, busy {:.0}%",
                disk.writes_per_s,
                disk.flushes_per_s,
                disk.busy * 100.0
            )?;
        }
        Ok(())
    }
}

/// The start of a CPU measurement.
pub struct CpuMeter {
    at: Instant,
    start: CpuSeconds,
    disk: Option<[u64; 3]>,
}

impl CpuMeter {
    pub fn start() -> Self {
        Self {
            at: Instant::now(),
            start: sample(),
            disk: disk_sample(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let end = sample();
        let disk_end = disk_sample();
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        // Threads that ended during the interval take their time with them: clamp at zero.
        let cores = |a: f64, b: f64| ((b - a) / wall).max(0.0);
        CpuUse {
            load: cores(self.start.load, end.load),
            app: cores(self.start.app, end.app),
            lapin: cores(self.start.lapin, end.lapin),
            broker: match (self.start.broker, end.broker) {
                (Some(a), Some(b)) => Some(cores(a, b)),
                _ => None,
            },
            disk: match (self.disk, disk_end) {
                (Some([w0, f0, b0]), Some([w1, f1, b1])) => Some(DiskUse {
                    writes_per_s: w1.saturating_sub(w0) as f64 / wall,
                    flushes_per_s: f1.saturating_sub(f0) as f64 / wall,
                    busy: (b1.saturating_sub(b0) as f64 / 1000.0 / wall).min(1.0),
                }),
                _ => None,
            },
        }
    }
}

/// Established TCP connections whose local port is `port` (the server side of connections to it).
pub fn connections_to(port: u16) -> usize {
    let wanted = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    f.get(1).is_some_and(|local| local.ends_with(&wanted)) && f.get(3) == Some(&"01")
                })
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_stat(line), Some(("a (b) c".into(), 300)));
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tcpe-config\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_field(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_field(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(status_field(status, "VmSwap"), None);
        assert!(rss_of(std::process::id()).is_some_and(|rss| rss > 0));
    }
}
