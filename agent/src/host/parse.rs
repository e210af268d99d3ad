//! Parsers for the procfs files the host collector reads. Each takes the file's text and
//! returns samples; lines it does not understand are skipped.

use super::Sample;

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `/proc/stat`: the aggregate `cpu` line, in seconds per mode (summed over cores).
pub fn cpu_seconds(text: &str, ticks_per_second: f64) -> Vec<Sample> {
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return Vec::new();
    };
    line.split_whitespace()
        .skip(1)
        .zip(MODES)
        .filter_map(|(v, mode)| {
            let ticks: f64 = v.parse().ok()?;
            Some(Sample::new("node_cpu_seconds_total", ticks / ticks_per_second).with("mode", mode))
        })
        .collect()
}

/// `/proc/loadavg`.
pub fn loadavg(text: &str) -> Vec<Sample> {
    let mut fields = text.split_whitespace();
    ["node_load1", "node_load5", "node_load15"]
        .into_iter()
        .filter_map(|name| Some(Sample::new(name, fields.next()?.parse().ok()?)))
        .collect()
}

/// `/proc/meminfo`, in bytes, for the fields the catalog names.
pub fn meminfo(text: &str) -> Vec<Sample> {
    const FIELDS: [(&str, &str); 7] = [
        ("MemTotal", "node_memory_MemTotal_bytes"),
        ("MemFree", "node_memory_MemFree_bytes"),
        ("MemAvailable", "node_memory_MemAvailable_bytes"),
        ("Buffers", "node_memory_Buffers_bytes"),
        ("Cached", "node_memory_Cached_bytes"),
        ("SwapTotal", "node_memory_SwapTotal_bytes"),
        ("SwapFree", "node_memory_SwapFree_bytes"),
    ];
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let (_, name) = FIELDS.iter().find(|(k, _)| *k == key)?;
            let kib: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(Sample::new(name, kib * 1024.0))
        })
        .collect()
}

/// `/proc/net/dev`, for the configured interfaces.
pub fn net_dev(text: &str, interfaces: &[String]) -> Vec<Sample> {
    // Receive: bytes packets errs drop …; transmit starts at field 8.
    const COLUMNS: [(usize, &str); 8] = [
        (0, "node_network_receive_bytes_total"),
        (1, "node_network_receive_packets_total"),
        (2, "node_network_receive_errs_total"),
        (3, "node_network_receive_drop_total"),
        (8, "node_network_transmit_bytes_total"),
        (9, "node_network_transmit_packets_total"),
        (10, "node_network_transmit_errs_total"),
        (11, "node_network_transmit_drop_total"),
    ];
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((device, rest)) = line.split_once(':') else {
            continue;
        };
        let device = device.trim();
        if !interfaces.iter().any(|i| i == device) {
            continue;
        }
        let fields: Vec<f64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        for (column, name) in COLUMNS {
            if let Some(v) = fields.get(column) {
                out.push(Sample::new(name, *v).with("device", device));
            }
        }
    }
    out
}

/// `/proc/diskstats`, for the configured devices (sectors are 512 bytes, times in ms).
pub fn diskstats(text: &str, disks: &[String]) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(device) = fields.get(2) else {
            continue;
        };
        if !disks.iter().any(|d| d == device) {
            continue;
        }
        let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        let stats = [
            ("node_disk_reads_completed_total", num(3), 1.0),
            ("node_disk_read_bytes_total", num(5), 512.0),
            ("node_disk_read_time_seconds_total", num(6), 0.001),
            ("node_disk_writes_completed_total", num(7), 1.0),
            ("node_disk_written_bytes_total", num(9), 512.0),
            ("node_disk_write_time_seconds_total", num(10), 0.001),
            ("node_disk_io_now", num(11), 1.0),
            ("node_disk_io_time_seconds_total", num(12), 0.001),
        ];
        for (name, value, scale) in stats {
            if let Some(v) = value {
                out.push(Sample::new(name, v * scale).with("device", *device));
            }
        }
    }
    out
}

/// `/proc/net/snmp` and `/proc/net/netstat`: header/value line pairs per protocol.
pub fn netstat(snmp: &str, netstat: &str) -> Vec<Sample> {
    const WANTED: [(&str, &str, &str); 5] = [
        ("Tcp", "OutSegs", "node_netstat_Tcp_OutSegs"),
        ("Tcp", "RetransSegs", "node_netstat_Tcp_RetransSegs"),
        (
            "TcpExt",
            "TCPSynRetrans",
            "node_netstat_TcpExt_TCPSynRetrans",
        ),
        (
            "TcpExt",
            "ListenOverflows",
            "node_netstat_TcpExt_ListenOverflows",
        ),
        ("TcpExt", "ListenDrops", "node_netstat_TcpExt_ListenDrops"),
    ];
    let mut out = Vec::new();
    for text in [snmp, netstat] {
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [header, values] = pair else { continue };
            let (Some((proto, names)), Some((_, nums))) =
                (header.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            for (name, value) in names.split_whitespace().zip(nums.split_whitespace()) {
                if let Some((_, _, metric)) =
                    WANTED.iter().find(|(p, n, _)| *p == proto && *n == name)
                    && let Ok(v) = value.parse::<f64>()
                {
                    out.push(Sample::new(metric, v));
                }
            }
        }
    }
    out
}

/// `/proc/sys/fs/file-nr`: allocated, unused, maximum.
pub fn file_nr(text: &str) -> Vec<Sample> {
    let fields: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields.as_slice() {
        [allocated, _, maximum] => vec![
            Sample::new("node_filefd_allocated", *allocated),
            Sample::new("node_filefd_maximum", *maximum),
        ],
        _ => Vec::new(),
    }
}

/// `/proc/pressure/{cpu,memory,io}`: the `some … total=` microseconds, as seconds.
pub fn pressure(resource: &str, text: &str) -> Vec<Sample> {
    let name = match resource {
        "cpu" => "node_pressure_cpu_waiting_seconds_total",
        "memory" => "node_pressure_memory_waiting_seconds_total",
        "io" => "node_pressure_io_waiting_seconds_total",
        _ => return Vec::new(),
    };
    text.lines()
        .find(|l| l.starts_with("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|us| vec![Sample::new(name, us / 1e6)])
        .unwrap_or_default()
}

/// `/proc/self/stat`: the agent's own CPU (utime + stime) and resident memory.
pub fn self_stat(text: &str, ticks_per_second: f64, page_size: f64) -> Vec<Sample> {
    // The command name may contain spaces: fields are counted after its closing paren.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Vec::new();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the paren, field 0 is `state` (stat field 3): utime is 14, stime 15, rss 24.
    let num = |stat_field: usize| {
        fields
            .get(stat_field - 3)
            .and_then(|v| v.parse::<f64>().ok())
    };
    match (num(14), num(15), num(24)) {
        (Some(utime), Some(stime), Some(rss)) => vec![
            Sample::new(
                "edge_agent_cpu_seconds_total",
                (utime + stime) / ticks_per_second,
            ),
            Sample::new("edge_agent_resident_memory_bytes", rss * page_size),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(samples: &[Sample], name: &str, label: Option<&str>) -> f64 {
        samples
            .iter()
            .find(|s| s.name == name && label.is_none_or(|l| s.labels.iter().any(|(_, v)| v == l)))
            .unwrap_or_else(|| panic!("{name} {label:?} missing from {samples:?}"))
            .value
    }

    #[test]
    fn cpu_is_summed_over_cores_by_mode() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 1 1 1 0 0\nintr 1\n";
        let s = cpu_seconds(text, 100.0);
        assert_eq!(s.len(), 8);
        assert_eq!(value(&s, "node_cpu_seconds_total", Some("user")), 1.0);
        assert_eq!(value(&s, "node_cpu_seconds_total", Some("idle")), 10.0);
        assert_eq!(value(&s, "node_cpu_seconds_total", Some("steal")), 0.03);
    }

    #[test]
    fn load_memory_and_fds() {
        let s = loadavg("0.52 0.40 0.31 2/345 6789\n");
        assert_eq!(value(&s, "node_load5", None), 0.40);
        let s = meminfo("MemTotal:       16384 kB\nMemAvailable:    8192 kB\nHugePages_Total: 0\n");
        assert_eq!(
            value(&s, "node_memory_MemTotal_bytes", None),
            16384.0 * 1024.0
        );
        assert_eq!(s.len(), 2);
        let s = file_nr("1952\t0\t9223372036854775807\n");
        assert_eq!(value(&s, "node_filefd_allocated", None), 1952.0);
    }

    #[test]
    fn only_configured_interfaces_and_disks() {
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  ens5: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n";
        let s = net_dev(dev, &["ens5".to_string()]);
        assert_eq!(s.len(), 8);
        assert_eq!(value(&s, "node_network_receive_bytes_total", None), 5000.0);
        assert_eq!(value(&s, "node_network_transmit_drop_total", None), 4.0);
        let disk = " 259 0 nvme0n1 100 0 800 30 50 0 400 20 1 45 55 0 0 0 0\n 259 1 nvme0n1p1 1 0 8 1 1 0 8 1 0 1 2 0 0 0 0\n";
        let s = diskstats(disk, &["nvme0n1".to_string()]);
        assert_eq!(s.len(), 8);
        assert_eq!(value(&s, "node_disk_read_bytes_total", None), 800.0 * 512.0);
        assert_eq!(value(&s, "node_disk_io_time_seconds_total", None), 0.045);
    }

    #[test]
    fn tcp_counters_from_snmp_and_netstat() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm OutSegs RetransSegs\nTcp: 1 900 12\n";
        let ext =
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\nTcpExt: 0 3 4 5\n";
        let s = netstat(snmp, ext);
        assert_eq!(value(&s, "node_netstat_Tcp_RetransSegs", None), 12.0);
        assert_eq!(value(&s, "node_netstat_TcpExt_ListenOverflows", None), 3.0);
        assert_eq!(value(&s, "node_netstat_TcpExt_TCPSynRetrans", None), 5.0);
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn pressure_and_own_process() {
        let s = pressure(
            "io",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0 avg60=0 avg300=0 total=1\n",
        );
        assert_eq!(
            value(&s, "node_pressure_io_waiting_seconds_total", None),
            2.5
        );
        let stat = "4242 (edge agent) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 4 0 100 12345678 2560 18446744073709551615";
        let s = self_stat(stat, 100.0, 4096.0);
        assert_eq!(value(&s, "edge_agent_cpu_seconds_total", None), 2.0);
        assert_eq!(
            value(&s, "edge_agent_resident_memory_bytes", None),
            2560.0 * 4096.0
        );
    }

    #[test]
    fn garbage_yields_nothing_rather_than_a_panic() {
        for text in ["", "cpu", "cpu x y z", "\u{0}\u{1}", "MemTotal: lots kB"] {
            assert!(cpu_seconds(text, 100.0).len() <= 8);
            let _ = loadavg(text);
            let _ = meminfo(text);
            let _ = file_nr(text);
            let _ = self_stat(text, 100.0, 4096.0);
            let _ = pressure("cpu", text);
            let _ = netstat(text, text);
        }
    }
}
