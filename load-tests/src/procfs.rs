//! CPU time and peak RSS of a process, read from Linux's `/proc`.
//!
//! A drain rate alone says little on a shared two-core machine: the same rate can cost twice the
//! CPU. So each drain is reported with the CPU its consumer spent, per message, read from
//! `/proc/<pid>/stat` (`utime` + `stime`) before and after, and with the peak RSS from
//! `/proc/<pid>/status` (`VmHWM`). Beside it, the broker's and InfluxDB's CPU and how busy the
//! whole machine was (`/proc/stat`) tell whether a drain was limited by the cores themselves.
//!
//! `utime` and `stime` are counted in clock ticks of `sysconf(_SC_CLK_TCK)`. Calling `sysconf`
//! would need `unsafe` (forbidden in this workspace), so [`CLOCK_TICKS_PER_SECOND`] assumes the
//! value Linux has reported to user space on every architecture since 2.6 (`USER_HZ` = 100),
//! whatever the kernel's internal `HZ`. The figures then have a resolution of 10 ms, which is
//! small beside the seconds of CPU a 100,000-message drain takes.
//!
//! Where a consumer's CPU goes is mostly waking threads (see BENCHMARKS.md's profile), so each
//! consumer's context switches are counted as well: every thread's `voluntary_ctxt_switches` and
//! `nonvoluntary_ctxt_switches` from `/proc/<pid>/task/*/status`, summed. A thread that ends
//! during the drain takes its count with it; the consumers' threads live as long as they do.

use std::time::Duration;

use anyhow::{Context, bail};

/// `sysconf(_SC_CLK_TCK)`: `USER_HZ`, 100 on Linux (see the module docs).
pub const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// One reading of a process's CPU time and peak resident set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
    /// `VmHWM`: the highest resident set size so far, in KiB.
    pub peak_rss_kib: u64,
}

/// Which process to read: `self` or a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Own,
    Pid(u32),
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::Own => "/proc/self".to_owned(),
            Process::Pid(pid) => format!("/proc/{pid}"),
        }
    }
}

/// Reads the CPU time and peak RSS of `process` now.
pub fn sample(process: Process) -> anyhow::Result<ProcessSample> {
    let dir = process.dir();
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("reading {dir}/stat (is the process running?)"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing {dir}/stat"))?;
    let peak_rss_kib = peak_rss_kib(&status).with_context(|| format!("parsing {dir}/status"))?;
    Ok(ProcessSample {
        cpu: ticks_to_duration(ticks),
        peak_rss_kib,
    })
}

/// A consumer's reading for a drain: [`sample`] and its threads' [`context_switches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSample {
    pub process: ProcessSample,
    pub context_switches: u64,
}

/// What a consumer used between two [`ConsumerSample`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerUse {
    pub cpu: Duration,
    pub context_switches: u64,
    /// The later sample's peak RSS: a peak is not a difference.
    pub peak_rss_kib: u64,
}

impl ConsumerSample {
    pub fn now(process: Process) -> anyhow::Result<Self> {
        Ok(Self {
            process: sample(process)?,
            context_switches: context_switches(process)?,
        })
    }

    pub fn until(&self, later: &ConsumerSample) -> ConsumerUse {
        ConsumerUse {
            cpu: later.process.cpu.saturating_sub(self.process.cpu),
            context_switches: later.context_switches.saturating_sub(self.context_switches),
            peak_rss_kib: later.process.peak_rss_kib,
        }
    }
}

/// Context switches of every thread of `process` so far, voluntary (it waited: a futex, a
/// socket) and not (it was preempted). `/proc/<pid>/status` alone counts only the main thread.
pub fn context_switches(process: Process) -> anyhow::Result<u64> {
    let tasks = format!("{}/task", process.dir());
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
        let path = task
            .with_context(|| format!("listing {tasks}"))?
            .path()
            .join("status");
        // A thread that ended since the listing has nothing left to count.
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += thread_context_switches(&status)
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    Ok(total)
}

/// `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` of one thread's `status` file.
pub fn thread_context_switches(status: &str) -> anyhow::Result<u64> {
    let field = |name: &str| -> anyhow::Result<u64> {
        let Some(value) = status.lines().find_map(|line| line.strip_prefix(name)) else {
            bail!("no {name} line");
        };
        let value = value.trim_start_matches(':').trim();
        value
            .parse()
            .with_context(|| format!("{name} is not a number: {value:?}"))
    };
    Ok(field("voluntary_ctxt_switches")? + field("nonvoluntary_ctxt_switches")?)
}

/// `utime + stime` of one `/proc/<pid>/stat` line, in clock ticks.
///
/// The second field, `(comm)`, is the executable's name and may itself hold spaces and
/// parentheses (`(my (odd) name)`), so the numeric fields are counted from the *last* `)`.
pub fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some(comm_end) = stat.rfind(')') else {
        bail!("no `(comm)` field in {stat:?}");
    };
    // After `)`: field 3 (state) is at index 0, so utime (field 14) is at 11, stime (15) at 12.
    let fields: Vec<&str> = stat[comm_end + 1..].split_whitespace().collect();
    let field = |index: usize, name: &str| -> anyhow::Result<u64> {
        let text = fields
            .get(index)
            .with_context(|| format!("no {name} field in {stat:?}"))?;
        text.parse()
            .with_context(|| format!("{name} is not a number: {text:?}"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

/// `VmHWM` of a `/proc/<pid>/status` file, in KiB.
pub fn peak_rss_kib(status: &str) -> anyhow::Result<u64> {
    let Some(line) = status.lines().find_map(|line| line.strip_prefix("VmHWM:")) else {
        bail!("no VmHWM line (a kernel thread, or not Linux?)");
    };
    let Some(kib) = line.trim().strip_suffix("kB") else {
        bail!("VmHWM is not in kB: {line:?}");
    };
    kib.trim()
        .parse()
        .with_context(|| format!("VmHWM is not a number: {line:?}"))
}

/// The whole machine's CPU ticks since boot, all cores together (`/proc/stat`'s `cpu` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineSample {
    /// Ticks spent in anything but idle and I/O wait.
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

impl MachineSample {
    /// Reads `/proc/stat` now.
    pub fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        machine_ticks(&stat).context("parsing /proc/stat")
    }

    /// The fraction of all cores' time that was busy from `self` to `later` (1.0: every core
    /// busy all the time). A drain on a machine near 1.0 is limited by CPU, whoever uses it.
    pub fn busy_fraction_until(&self, later: &MachineSample) -> Option<f64> {
        let total = later.total_ticks.checked_sub(self.total_ticks)?;
        let busy = later.busy_ticks.checked_sub(self.busy_ticks)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal [guest ...].
/// Guest time is already counted in user time, so only the first eight fields are summed.
pub fn machine_ticks(stat: &str) -> anyhow::Result<MachineSample> {
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        bail!("no aggregate `cpu` line");
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| {
            field
                .parse()
                .with_context(|| format!("not a number: {field:?} in {line:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    if ticks.len() < 5 {
        bail!("too few fields in {line:?}");
    }
    let total: u64 = ticks.iter().sum();
    let idle = ticks[3] + ticks[4];
    Ok(MachineSample {
        busy_ticks: total - idle,
        total_ticks: total,
    })
}

/// The oldest running process whose executable name (`comm`) is `name`, e.g. `influxd` or
/// `beam.smp`: the service itself rather than a helper it spawned later.
pub fn oldest_process_named(name: &str) -> Option<u32> {
    let mut oldest: Option<(u64, u32)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(start) = start_time_if_named(&stat, name)
            && oldest.is_none_or(|(oldest_start, _)| start < oldest_start)
        {
            oldest = Some((start, pid));
        }
    }
    oldest.map(|(_, pid)| pid)
}

/// The start time (field 22) of a `/proc/<pid>/stat` line whose `(comm)` is `name`.
fn start_time_if_named(stat: &str, name: &str) -> Option<u64> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if stat.get(open + 1..close)? != name {
        return None;
    }
    // After `)`: field 3 (state) is at index 0, so starttime (field 22) is at 19.
    stat[close + 1..].split_whitespace().nth(19)?.parse().ok()
}

/// The processes a drain shares the machine with: the broker and the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// RabbitMQ's `beam.smp`.
    pub broker: Option<u32>,
    /// InfluxDB's `influxd`.
    pub store: Option<u32>,
}

impl Neighbours {
    /// The broker and InfluxDB running on this machine, where they run here.
    pub fn find() -> Self {
        Self {
            broker: oldest_process_named("beam.smp"),
            store: oldest_process_named("influxd"),
        }
    }

    /// Reads their CPU, and the machine's, now. A neighbour that cannot be read is left out.
    pub fn sample(&self) -> NeighbourSample {
        let read = |pid: Option<u32>| pid.and_then(|pid| sample(Process::Pid(pid)).ok());
        NeighbourSample {
            broker: read(self.broker),
            store: read(self.store),
            machine: MachineSample::now().ok(),
        }
    }
}

/// One reading of [`Neighbours`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourSample {
    pub broker: Option<ProcessSample>,
    pub store: Option<ProcessSample>,
    pub machine: Option<MachineSample>,
}

/// What the neighbours used between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NeighbourUse {
    pub broker_cpu: Option<Duration>,
    pub store_cpu: Option<Duration>,
    pub machine_busy: Option<f64>,
}

impl NeighbourSample {
    pub fn until(&self, later: &NeighbourSample) -> NeighbourUse {
        let cpu = |before: Option<ProcessSample>, after: Option<ProcessSample>| {
            let (before, after) = before.zip(after)?;
            Some(after.cpu.saturating_sub(before.cpu))
        };
        NeighbourUse {
            broker_cpu: cpu(self.broker, later.broker),
            store_cpu: cpu(self.store, later.store),
            machine_busy: self
                .machine
                .zip(later.machine)
                .and_then(|(before, after)| before.busy_fraction_until(&after)),
        }
    }
}

pub fn ticks_to_duration(ticks: u64) -> Duration {
    let whole_seconds = ticks / CLOCK_TICKS_PER_SECOND;
    let rest_nanos = (ticks % CLOCK_TICKS_PER_SECOND) * (1_000_000_000 / CLOCK_TICKS_PER_SECOND);
    Duration::new(whole_seconds, rest_nanos as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from `cat /proc/self/stat`, utime 7 and stime 3.
    const CAT_STAT: &str = "4242 (cat) R 4200 4242 4200 34816 4242 4194304 96 0 0 0 7 3 0 0 20 0 \
                            1 0 123456 5726208 193 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
                            17 1 0 0 0 0 0";

    #[test]
    fn reads_utime_plus_stime() {
        assert_eq!(cpu_ticks(CAT_STAT).expect("parses"), 10);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = CAT_STAT.replace("(cat)", "(my (odd) ) name)");
        assert_eq!(cpu_ticks(&stat).expect("parses"), 10);
        let stat = CAT_STAT.replace("(cat)", "(tokio-runtime-w 1 2 3)");
        assert_eq!(cpu_ticks(&stat).expect("parses"), 10);
    }

    #[test]
    fn large_tick_counts_are_not_truncated() {
        let stat = CAT_STAT.replace(" 7 3 0 0 20", " 9876543210 5 0 0 20");
        assert_eq!(cpu_ticks(&stat).expect("parses"), 9_876_543_215);
    }

    #[test]
    fn a_truncated_or_garbled_line_is_an_error_not_a_zero() {
        assert!(cpu_ticks("4242 cat R 1 2").is_err());
        assert!(cpu_ticks("4242 (cat) R 4200 4242").is_err());
        let garbled = CAT_STAT.replace(" 7 3 0 0 20", " 7 x 0 0 20");
        assert!(cpu_ticks(&garbled).is_err());
    }

    #[test]
    fn reads_vm_hwm_in_kib() {
        let status =
            "Name:\tsluice\nVmPeak:\t  900000 kB\nVmHWM:\t   41984 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(peak_rss_kib(status).expect("parses"), 41_984);
    }

    #[test]
    fn a_status_without_vm_hwm_is_an_error() {
        assert!(peak_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n").is_err());
        assert!(peak_rss_kib("VmHWM:\t  41984 MB\n").is_err());
    }

    #[test]
    fn converts_ticks_at_100_per_second() {
        assert_eq!(ticks_to_duration(0), Duration::ZERO);
        assert_eq!(ticks_to_duration(1), Duration::from_millis(10));
        assert_eq!(ticks_to_duration(298), Duration::from_millis(2980));
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_io_wait() {
        let before = machine_ticks("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0\n")
            .expect("parses");
        assert_eq!(before.busy_ticks, 150);
        assert_eq!(before.total_ticks, 1000);
        let after = machine_ticks("cpu  250 0 100 850 100 0 0 0 0 0\n").expect("parses");
        // 200 busy of 300 ticks.
        let busy = before.busy_fraction_until(&after).expect("time passed");
        assert!((busy - 2.0 / 3.0).abs() < 1e-9, "{busy}");
        assert_eq!(after.busy_fraction_until(&after), None);
        assert!(machine_ticks("intr 1 2 3\n").is_err());
        assert!(machine_ticks("cpu  1 2 x 4 5\n").is_err());
    }

    #[test]
    fn neighbour_use_is_the_difference_and_leaves_out_what_was_not_read() {
        let process = |cpu_ticks: u64| ProcessSample {
            cpu: ticks_to_duration(cpu_ticks),
            peak_rss_kib: 1,
        };
        let before = NeighbourSample {
            broker: Some(process(100)),
            store: None,
            machine: Some(MachineSample {
                busy_ticks: 10,
                total_ticks: 100,
            }),
        };
        let after = NeighbourSample {
            broker: Some(process(350)),
            store: Some(process(40)),
            machine: Some(MachineSample {
                busy_ticks: 60,
                total_ticks: 200,
            }),
        };
        let used = before.until(&after);
        assert_eq!(used.broker_cpu, Some(Duration::from_millis(2_500)));
        // InfluxDB was found only after the drain began: no figure rather than a wrong one.
        assert_eq!(used.store_cpu, None);
        assert_eq!(used.machine_busy, Some(0.5));
    }

    #[test]
    fn finds_a_process_by_its_executable_name() {
        let line = CAT_STAT.replace("(cat)", "(beam.smp)");
        assert_eq!(start_time_if_named(&line, "beam.smp"), Some(123_456));
        assert_eq!(start_time_if_named(&line, "beam"), None);
        let own = std::fs::read_to_string("/proc/self/comm").expect("readable");
        assert!(oldest_process_named(own.trim()).is_some());
        assert_eq!(oldest_process_named("no-such-process-name"), None);
    }

    #[test]
    fn context_switches_are_voluntary_plus_involuntary() {
        let status = "Name:\ttokio-runtime-w\nvoluntary_ctxt_switches:\t41000\n\
                      nonvoluntary_ctxt_switches:\t1200\n";
        assert_eq!(thread_context_switches(status).expect("parses"), 42_200);
        assert!(thread_context_switches("voluntary_ctxt_switches:\t1\n").is_err());
        let garbled = status.replace("1200", "12x");
        assert!(thread_context_switches(&garbled).is_err());
    }

    #[test]
    fn counts_the_context_switches_of_every_thread() {
        // The sum over the process's threads cannot be compared before and after: the test
        // harness's other threads exit meanwhile and take their counts with them. So a second
        // thread that gives up its core once (sleeping is the switch being counted) checks that
        // the sum, read after its own count, holds at least that much of its own.
        let (own, total) = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(1));
            let status = std::fs::read_to_string("/proc/thread-self/status")
                .expect("/proc/thread-self/status is readable");
            let own = thread_context_switches(&status).expect("parses");
            let total = context_switches(Process::Own).expect("readable from a second thread");
            (own, total)
        })
        .join()
        .expect("the thread finished");
        assert!(own >= 1, "the sleep was a switch: {own}");
        assert!(
            total >= own,
            "{total} < {own}: the second thread is not in the sum"
        );
    }

    #[test]
    fn consumer_use_is_the_difference_and_the_later_peak() {
        let reading = |cpu_ticks: u64, peak_rss_kib: u64, context_switches: u64| ConsumerSample {
            process: ProcessSample {
                cpu: ticks_to_duration(cpu_ticks),
                peak_rss_kib,
            },
            context_switches,
        };
        let used = reading(100, 30_000, 5_000).until(&reading(350, 42_000, 105_000));
        assert_eq!(
            used,
            ConsumerUse {
                cpu: Duration::from_millis(2_500),
                context_switches: 100_000,
                peak_rss_kib: 42_000,
            }
        );
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(Process::Own).expect("/proc/self is readable");
        assert!(sample.peak_rss_kib > 0);
    }
}
