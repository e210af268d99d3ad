use std::fs;

use super::*;

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        count_items: one_item,
    }
}

fn payloads(q: &mut DiskQueue, class: Class) -> Vec<Vec<u8>> {
    q.peek(class, usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

#[test]
fn records_replay_in_order_after_reopen_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 64)).expect("open");
        assert_eq!(report, RecoveryReport::default());
        for i in 0..10u8 {
            q.push(Class::Metrics, &[i; 20]).expect("push");
        }
        let first = q.peek(Class::Metrics, 3).expect("peek");
        assert_eq!(first.len(), 3);
        q.ack(Class::Metrics, first[2].id).expect("ack");
        // Dropped without a clean shutdown.
    }
    let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 64)).expect("reopen");
    assert_eq!(report.pending_records[Class::Metrics.index()], 7);
    let left = payloads(&mut q, Class::Metrics);
    assert_eq!(left, (3..10u8).map(|i| vec![i; 20]).collect::<Vec<_>>());
    // Segments wholly acknowledged are gone from disk.
    let all = q.peek(Class::Metrics, usize::MAX).expect("peek");
    q.ack(Class::Metrics, all[all.len() - 1].id)
        .expect("ack all");
    assert!(q.peek(Class::Metrics, 10).expect("peek").is_empty());
    let files = fs::read_dir(dir.path().join("metrics"))
        .expect("dir")
        .count();
    assert!(
        files <= 2,
        "only the last segment and the head remain, found {files}"
    );
}

#[test]
fn a_torn_tail_is_cut_back_reported_and_the_queue_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("open");
        for i in 0..5u8 {
            q.push(Class::Metrics, &[i; 100]).expect("push");
        }
    }
    // Power loss mid-write: the last record is half there.
    let seg = dir.path().join("metrics").join(format!("{:020}.seg", 1));
    let len = fs::metadata(&seg).expect("stat").len();
    let file = OpenOptions::new().write(true).open(&seg).expect("open");
    file.set_len(len - 40).expect("truncate");
    drop(file);
    let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(report.truncated_bytes[Class::Metrics.index()], 108 - 40);
    assert_eq!(report.pending_records[Class::Metrics.index()], 4);
    // And appends continue after the good prefix.
    q.push(Class::Metrics, b"after").expect("push");
    let got = payloads(&mut q, Class::Metrics);
    assert_eq!(got.len(), 5);
    assert_eq!(got[4], b"after");
}

#[test]
fn garbage_in_the_tail_is_detected_by_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("open");
        q.push(Class::LogsInfo, b"good").expect("push");
        q.push(Class::LogsInfo, b"flipped").expect("push");
    }
    let seg = dir.path().join("logs_info").join(format!("{:020}.seg", 1));
    let mut data = fs::read(&seg).expect("read");
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&seg, &data).expect("write");
    let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(report.truncated_bytes[Class::LogsInfo.index()], 15);
    assert_eq!(payloads(&mut q, Class::LogsInfo), vec![b"good".to_vec()]);
}

#[test]
fn at_the_bound_debug_logs_go_first_and_metrics_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each record is 8 + 92 = 100 bytes; segments hold 2 records; the bound is 8 records.
    let (mut q, _) = DiskQueue::open(config(dir.path(), 800, 200)).expect("open");
    for _ in 0..2 {
        q.push(Class::Metrics, &[1; 92]).expect("push");
        q.push(Class::LogsDebug, &[2; 92]).expect("push");
        q.push(Class::LogsInfo, &[3; 92]).expect("push");
    }
    assert_eq!(q.total_bytes(), 600);
    // Four more metrics records: the bound forces 2 segments out: debug first, then info.
    for _ in 0..4 {
        q.push(Class::Metrics, &[1; 92]).expect("push");
    }
    assert_eq!(
        q.shed(Class::LogsDebug),
        Shed {
            records: 2,
            items: 2,
            bytes: 200
        }
    );
    assert_eq!(
        q.shed(Class::LogsInfo),
        Shed {
            records: 0,
            items: 0,
            bytes: 0
        }
    );
    assert!(q.total_bytes() <= 800);
    assert_eq!(q.pending(Class::Metrics).expect("pending"), 6);
    // A debug record never displaces metrics: it is refused and counted instead.
    let before = q.pending(Class::Metrics).expect("pending");
    for _ in 0..3 {
        q.push(Class::LogsDebug, &[2; 92]).expect("push");
    }
    assert_eq!(q.pending(Class::Metrics).expect("pending"), before);
    assert!(q.shed(Class::LogsDebug).records >= 3);
    assert!(q.total_bytes() <= 800);
}

#[test]
fn a_record_larger_than_the_queue_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut q, _) = DiskQueue::open(config(dir.path(), 100, 100)).expect("open");
    let err = q.push(Class::Metrics, &[0; 200]).expect_err("too large");
    assert!(err.to_string().contains("cannot fit"), "{err}");
}

#[test]
fn a_corrupt_record_in_an_older_segment_is_skipped_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 30)).expect("open");
        for i in 0..6u8 {
            q.push(Class::Metrics, &[i; 10]).expect("push"); // 18 bytes: 2 per segment
        }
    }
    // Bit rot in the first record of segment 1 (an older segment, not scanned at open).
    let seg = dir.path().join("metrics").join(format!("{:020}.seg", 1));
    let mut data = fs::read(&seg).expect("read");
    data[10] ^= 0xff;
    fs::write(&seg, &data).expect("write");
    let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 30)).expect("reopen");
    let got = payloads(&mut q, Class::Metrics);
    assert_eq!(got, (1..6u8).map(|i| vec![i; 10]).collect::<Vec<_>>());
    assert_eq!(q.corrupt_skipped(Class::Metrics), 18);
}

#[test]
fn a_corrupt_record_in_the_active_segment_is_skipped_and_the_records_after_it_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("open");
        for i in 0..50u8 {
            q.push(Class::LogsInfo, &[i; 100]).expect("push"); // 108 bytes each
        }
    }
    // Bit rot in record 10 of the segment still being written: not a torn tail.
    let seg = dir.path().join("logs_info").join(format!("{:020}.seg", 1));
    let mut data = fs::read(&seg).expect("read");
    data[10 * 108 + 50] ^= 0xff;
    fs::write(&seg, &data).expect("write");
    let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(
        report.truncated_bytes[Class::LogsInfo.index()],
        0,
        "nothing valid is cut"
    );
    let got = payloads(&mut q, Class::LogsInfo);
    let want: Vec<Vec<u8>> = (0..50u8)
        .filter(|i| *i != 10)
        .map(|i| vec![i; 100])
        .collect();
    assert_eq!(got, want);
    assert_eq!(q.corrupt_skipped(Class::LogsInfo), 108);
    // Acknowledging across the gap works, and appends go after the last good record.
    let all = q.peek(Class::LogsInfo, usize::MAX).expect("peek");
    q.ack(Class::LogsInfo, all[20].id).expect("ack");
    q.push(Class::LogsInfo, b"after").expect("push");
    let left = payloads(&mut q, Class::LogsInfo);
    assert_eq!(left.len(), 49 - 21 + 1);
    assert_eq!(left.last().map(Vec::as_slice), Some(&b"after"[..]));
}

#[test]
fn zeros_after_the_last_record_are_a_torn_tail_not_empty_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut q, _) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("open");
        q.push(Class::Metrics, b"one").expect("push");
    }
    let seg = dir.path().join("metrics").join(format!("{:020}.seg", 1));
    let mut data = fs::read(&seg).expect("read");
    data.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &data).expect("write");
    let (mut q, report) = DiskQueue::open(config(dir.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(report.truncated_bytes[Class::Metrics.index()], 4096);
    assert_eq!(payloads(&mut q, Class::Metrics), vec![b"one".to_vec()]);
}

#[test]
fn shed_figures_count_what_the_batches_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), 800, 200);
    // A test counter: one item per payload byte.
    c.count_items = |_, payload| payload.len() as u64;
    let (mut q, _) = DiskQueue::open(c).expect("open");
    for _ in 0..4 {
        q.push(Class::LogsDebug, &[2; 92]).expect("push");
    }
    for _ in 0..6 {
        q.push(Class::Metrics, &[1; 92]).expect("push");
    }
    let shed = q.shed(Class::LogsDebug);
    assert_eq!(shed.records, 2);
    assert_eq!(shed.items, 2 * 92);
    // The next debug record makes room by shedding the other debug segment.
    q.push(Class::LogsDebug, &[2; 50]).expect("push");
    assert_eq!(q.shed(Class::LogsDebug).records, 4);
    assert_eq!(q.shed(Class::LogsDebug).items, 4 * 92);
    // With only metrics on disk, a new debug record is refused: it counts what it held.
    let full = tempfile::tempdir().expect("tempdir");
    let mut c = config(full.path(), 300, 200);
    c.count_items = |_, payload| payload.len() as u64;
    let (mut q, _) = DiskQueue::open(c).expect("open");
    for _ in 0..3 {
        q.push(Class::Metrics, &[1; 92]).expect("push");
    }
    q.push(Class::LogsDebug, &[2; 50]).expect("push");
    let refused = q.shed(Class::LogsDebug);
    assert_eq!((refused.records, refused.items), (1, 50));
    assert_eq!(q.pending(Class::Metrics).expect("pending"), 3);
}

#[test]
fn traces_are_shed_after_debug_logs_and_before_info_logs() {
    assert_eq!(
        Class::ALL,
        [
            Class::LogsDebug,
            Class::Traces,
            Class::LogsInfo,
            Class::LogsWarn,
            Class::Metrics
        ]
    );
    assert_eq!(Class::Traces.name(), "traces");
    let dir = tempfile::tempdir().expect("tempdir");
    // 100-byte records, 2 per segment, room for 8.
    let (mut q, _) = DiskQueue::open(config(dir.path(), 800, 200)).expect("open");
    for _ in 0..2 {
        q.push(Class::LogsInfo, &[3; 92]).expect("push");
        q.push(Class::Traces, &[4; 92]).expect("push");
        q.push(Class::LogsDebug, &[2; 92]).expect("push");
    }
    // Two warn records fit; two more force out debug, the next two the traces.
    for _ in 0..4 {
        q.push(Class::LogsWarn, &[5; 92]).expect("push");
    }
    assert_eq!(q.shed(Class::LogsDebug).records, 2);
    assert_eq!(q.shed(Class::Traces).records, 0);
    q.push(Class::LogsWarn, &[5; 92]).expect("push");
    assert_eq!(q.shed(Class::Traces).records, 2, "traces go second");
    assert_eq!(q.shed(Class::LogsInfo).records, 0);
    assert_eq!(q.pending(Class::LogsInfo).expect("pending"), 2);
    // A trace batch never displaces info logs: with no debug logs or traces left, it is
    // refused and counted.
    q.push(Class::LogsWarn, &[5; 92]).expect("push");
    let before = q.shed(Class::Traces).records;
    q.push(Class::Traces, &[4; 92]).expect("push");
    assert_eq!(q.shed(Class::Traces).records, before + 1);
    assert_eq!(q.pending(Class::LogsInfo).expect("pending"), 2);
    assert_eq!(q.pending(Class::Traces).expect("pending"), 0);
    // The traces directory is the class's own.
    assert!(dir.path().join("traces").is_dir());
}
