//! A full disk degrades the queue to shedding, never to an error or a crash, and what
//! it kept reads back intact. The disk is a real 256 KiB tmpfs, mounted for the test
//! (this needs root, as CI has; `unshare -rm` gives it to any user).

use std::process::Command;

use edge_agent::queue::{Class, DiskQueue, QueueConfig};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_sheds_instead_of_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "cannot mount a 256 KiB tmpfs to fill: this test needs root (or run the suite \
         under `unshare -rm`)"
    );
    let _mount = Mount(dir.path().to_path_buf());

    // The queue's own bound (4 MiB) is far above the disk's 256 KiB: the disk fills first.
    let mut config = QueueConfig::new(dir.path().join("queue"));
    config.max_bytes = 4 << 20;
    config.segment_bytes = 32 << 10;
    let (mut queue, _) = DiskQueue::open(config.clone()).expect("open");
    let record = vec![0xabu8; 8 << 10];
    let mut shed = 0;
    for i in 0..200u32 {
        let mut payload = record.clone();
        payload[..4].copy_from_slice(&i.to_le_bytes());
        let s = queue
            .push(Class::Metrics, &payload)
            .unwrap_or_else(|e| panic!("push {i} on a full disk failed: {e}"));
        shed += s.records;
    }
    assert!(shed > 0, "1.6 MiB into 256 KiB without shedding anything");
    assert_eq!(
        queue.shed(Class::Metrics).records,
        shed,
        "every shed record counted"
    );
    let waiting = queue.waiting(Class::Metrics);
    assert!(waiting > 0, "the newest records are kept");
    drop(queue);

    // Reopened, the queue holds whole records, in order, the newest last.
    let (mut queue, report) = DiskQueue::open(config).expect("reopen");
    let entries = queue.peek(Class::Metrics, usize::MAX).expect("peek");
    assert_eq!(
        entries.len() as u64,
        report.pending_records[Class::Metrics as usize]
    );
    let ids: Vec<u32> = entries
        .iter()
        .map(|e| u32::from_le_bytes(e.payload[..4].try_into().expect("4 bytes")))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    assert_eq!(ids.last(), Some(&199), "the newest record survives");
    assert!(entries.iter().all(|e| e.payload.len() == record.len()));
}
