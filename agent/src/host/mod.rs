//! Host metrics from `/proc` and `/sys`, under node_exporter's names and units so
//! existing dashboards work, aggregated as the catalog declares: CPU summed over cores
//! by mode, and only the configured mounts, disks and interfaces.
//!
//! Each source is a pure parser over the file's text (tested on fixtures) plus a reader;
//! a file that is missing (no PSI on an old kernel) or unparsable yields nothing for its
//! families and the others still report.

mod parse;

use std::path::{Path, PathBuf};

pub use parse::{
    cpu_seconds, diskstats, file_nr, loadavg, meminfo, net_dev, netstat, pressure, self_stat,
};

/// One sample: a metric name, its labels (besides the host labels), its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The family name, as in the catalog.
    pub name: &'static str,
    /// Labels, e.g. `mode`, `device`, `mountpoint`.
    pub labels: Vec<(&'static str, String)>,
    /// The value in the family's base unit.
    pub value: f64,
}

impl Sample {
    pub(crate) fn new(name: &'static str, value: f64) -> Self {
        Sample {
            name,
            labels: Vec::new(),
            value,
        }
    }

    pub(crate) fn with(mut self, label: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((label, value.into()));
        self
    }
}

/// What to collect.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The procfs root (`/proc`; a fixture directory in tests).
    pub proc_root: PathBuf,
    /// Mount points whose space is reported.
    pub filesystems: Vec<String>,
    /// Block devices reported (e.g. `nvme0n1`).
    pub disks: Vec<String>,
    /// Network interfaces reported (e.g. `ens5`).
    pub interfaces: Vec<String>,
}

/// Reads procfs files into one buffer, in as few `read` calls as the kernel allows:
/// procfs reports a size of 0, so `read_to_string` would start with a small probe
/// read, and every read of a seq file makes the kernel format the file again up to
/// that point. Files stay open between cycles (a procfs file is generated afresh by a
/// read from offset 0), which spares a path walk and two syscalls per file per cycle.
#[derive(Debug)]
struct ProcReader {
    root: PathBuf,
    buf: Vec<u8>,
    open: std::collections::HashMap<String, std::fs::File>,
}

impl ProcReader {
    fn read(&mut self, name: &str) -> Option<&str> {
        use std::os::unix::fs::FileExt;
        self.buf.clear();
        if !self.open.contains_key(name) {
            let file = std::fs::File::open(self.root.join(name)).ok()?;
            self.open.insert(name.to_string(), file);
        }
        let file = self.open.get(name)?;
        let mut at = 0usize;
        loop {
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(self.buf.capacity().max(4096));
            }
            let len = self.buf.len();
            self.buf.resize(self.buf.capacity(), 0);
            match file.read_at(&mut self.buf[len..], at as u64) {
                Ok(0) => {
                    self.buf.truncate(len);
                    break;
                }
                Ok(n) => {
                    self.buf.truncate(len + n);
                    at += n;
                }
                Err(_) => {
                    // A file that went away (a removed device): reopen next cycle.
                    self.open.remove(name);
                    return None;
                }
            }
        }
        std::str::from_utf8(&self.buf).ok()
    }
}

/// Collects host metrics cycle after cycle, keeping its procfs files open.
#[derive(Debug)]
pub struct Collector {
    config: HostConfig,
    reader: ProcReader,
}

impl Collector {
    /// A collector for `config`.
    pub fn new(config: HostConfig) -> Self {
        Collector {
            reader: ProcReader {
                root: config.proc_root.clone(),
                buf: Vec::with_capacity(PROC_READ_BYTES),
                open: std::collections::HashMap::new(),
            },
            config,
        }
    }

    /// Collects every host family once.
    pub fn collect(&mut self) -> Vec<Sample> {
        collect_with(&self.config, &mut self.reader)
    }
}

/// The buffer procfs files are read into: /proc/net/netstat, the largest read, is
/// about 4 KiB; /proc/stat grows with the core count.
const PROC_READ_BYTES: usize = 64 * 1024;

/// Collects every host family once (opening the files afresh; a [`Collector`] keeps
/// them open).
pub fn collect(config: &HostConfig) -> Vec<Sample> {
    Collector::new(config.clone()).collect()
}

fn collect_with(config: &HostConfig, r: &mut ProcReader) -> Vec<Sample> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let mut out = Vec::with_capacity(96);
    if let Some(text) = r.read("stat") {
        out.extend(cpu_seconds(text, ticks));
    }
    if let Some(text) = r.read("loadavg") {
        out.extend(loadavg(text));
    }
    if let Some(text) = r.read("meminfo") {
        out.extend(meminfo(text));
    }
    if !config.interfaces.is_empty()
        && let Some(text) = r.read("net/dev")
    {
        out.extend(net_dev(text, &config.interfaces));
    }
    if !config.disks.is_empty()
        && let Some(text) = r.read("diskstats")
    {
        out.extend(diskstats(text, &config.disks));
    }
    let snmp = r.read("net/snmp").unwrap_or_default().to_string();
    let netstat_text = r.read("net/netstat").unwrap_or_default();
    out.extend(netstat(&snmp, netstat_text));
    if let Some(text) = r.read("sys/fs/file-nr") {
        out.extend(file_nr(text));
    }
    for resource in ["cpu", "memory", "io"] {
        if let Some(text) = r.read(&format!("pressure/{resource}")) {
            out.extend(pressure(resource, text));
        }
    }
    if let Some(text) = r.read("self/stat") {
        let page = rustix::param::page_size() as f64;
        out.extend(self_stat(text, ticks, page));
    }
    for mount in &config.filesystems {
        out.extend(filesystem(Path::new(mount)));
    }
    out
}

/// Space and inodes of one mount point.
fn filesystem(mount: &Path) -> Vec<Sample> {
    let Ok(s) = rustix::fs::statvfs(mount) else {
        return Vec::new();
    };
    let block = s.f_frsize as f64;
    let m = mount.display().to_string();
    vec![
        Sample::new("node_filesystem_size_bytes", s.f_blocks as f64 * block).with("mountpoint", &m),
        Sample::new("node_filesystem_free_bytes", s.f_bfree as f64 * block).with("mountpoint", &m),
        Sample::new("node_filesystem_avail_bytes", s.f_bavail as f64 * block)
            .with("mountpoint", &m),
        Sample::new("node_filesystem_files", s.f_files as f64).with("mountpoint", &m),
        Sample::new("node_filesystem_files_free", s.f_ffree as f64).with("mountpoint", &m),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_host_metrics_have_the_catalog_names() {
        let samples = collect(&HostConfig {
            proc_root: PathBuf::from("/proc"),
            filesystems: vec!["/".into()],
            disks: Vec::new(),
            interfaces: vec!["lo".into()],
        });
        let catalog = edge_schema::catalog::Catalog::shipped();
        let schema =
            edge_schema::check::Schema::new(edge_schema::policy::LabelPolicy::shipped(), catalog);
        for s in &samples {
            assert!(
                schema.catalog().family(s.name).is_some(),
                "{} is not in the catalog",
                s.name
            );
            let labels = s.labels.iter().map(|(k, v)| (*k, v.as_str()));
            assert_eq!(schema.check_series(s.name, labels), Ok(()), "{s:?}");
        }
        let names: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.name).collect();
        for expected in [
            "node_cpu_seconds_total",
            "node_load1",
            "node_memory_MemAvailable_bytes",
            "node_network_receive_bytes_total",
            "node_netstat_Tcp_RetransSegs",
            "node_netstat_TcpExt_ListenOverflows",
            "node_filefd_allocated",
            "node_filesystem_avail_bytes",
            "edge_agent_cpu_seconds_total",
            "edge_agent_resident_memory_bytes",
        ] {
            assert!(
                names.contains(expected),
                "{expected} missing from {names:?}"
            );
        }
        let modes = samples
            .iter()
            .filter(|s| s.name == "node_cpu_seconds_total")
            .count();
        assert_eq!(modes, 8, "CPU is summed over cores: one series per mode");
    }
}
