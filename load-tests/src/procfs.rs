//! CPU time and peak RSS of a process, read from Linux's `/proc`.
//!
//! A drain rate alone says little on a shared two-core machine: the same rate can cost twice the
//! CPU. So each drain is reported with the CPU its consumer spent, per message, read from
//! `/proc/<pid>/stat` (`utime` + `stime`) before and after, and with the peak RSS from
//! `/proc/<pid>/status` (`VmHWM`).
//!
//! `utime` and `stime` are counted in clock ticks of `sysconf(_SC_CLK_TCK)`. Calling `sysconf`
//! would need `unsafe` (forbidden in this workspace), so [`CLOCK_TICKS_PER_SECOND`] assumes the
//! value Linux has reported to user space on every architecture since 2.6 (`USER_HZ` = 100),
//! whatever the kernel's internal `HZ`. The figures then have a resolution of 10 ms, which is
//! small beside the seconds of CPU a 100,000-message drain takes.

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
    fn samples_this_process() {
        let sample = sample(Process::Own).expect("/proc/self is readable");
        assert!(sample.peak_rss_kib > 0);
    }
}
