//! What benchmarks read of a process from `/proc`: on-CPU time of all its threads
//! (`schedstat`, nanosecond resolution), its user + system time as the kernel accounts
//! it (`stat`, clock ticks) and its peak RSS (`VmHWM`).

use std::time::Duration;

/// The on-CPU time of every thread of `pid` so far.
pub fn cpu(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// The user + system CPU time of `pid` so far (every thread: `utime` + `stime` of
/// `/proc/<pid>/stat`), or `None` if the process is gone. `ticks_per_second` is the
/// kernel's clock tick (`getconf CLK_TCK`, see [`clock_ticks`]).
pub fn cpu_stat(pid: u32, ticks_per_second: u64) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15 (man 5 proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_second.max(1);
    Some(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// The kernel's clock tick for `/proc/<pid>/stat` times, from `getconf CLK_TCK`.
pub fn clock_ticks() -> Result<u64, String> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("running `getconf CLK_TCK`: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("`getconf CLK_TCK` printed {text:?}, not a number"))
}

/// The peak resident set of `pid`, in bytes (0 if it cannot be read).
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_time_follows_the_threads_on_cpu_time() {
        // A busy child of its own: this test binary's other threads (tests running
        // beside this one) come and go, and a thread that exits leaves schedstat's sum
        // but not stat's.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("start sh");
        let pid = child.id();
        let tps = clock_ticks().expect("CLK_TCK");
        // Until the child has been on a CPU for half a second, however long that takes
        // on a busy machine.
        let mut sched = Duration::ZERO;
        let mut stat = Duration::ZERO;
        while sched < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(20));
            sched = cpu(pid);
            stat = cpu_stat(pid, tps).expect("the child's stat");
        }
        let _ = child.kill();
        let _ = child.wait();
        // Tick accounting samples: it agrees with schedstat within a few ticks.
        let slack = Duration::from_millis(150);
        assert!(
            stat + slack >= sched && stat <= sched + slack,
            "stat {stat:?} vs schedstat {sched:?}"
        );
    }

    #[test]
    fn a_process_that_is_gone_has_no_stat() {
        assert_eq!(cpu_stat(u32::MAX, 100), None);
    }
}
