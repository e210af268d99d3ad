//! The queue's figures, as telemetry reports them after each queue operation.

use super::{Class, DiskQueue};

/// What the queue reports, copied in after each queue operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueFigures {
    /// Bytes per class.
    pub bytes: [u64; super::CLASSES],
    /// Records waiting per class.
    pub records: [u64; super::CLASSES],
    /// Log records or series shed so far per class.
    pub shed: [u64; super::CLASSES],
    /// Batches shed so far per class.
    pub shed_batches: [u64; super::CLASSES],
    /// Bytes lost to corruption so far per class.
    pub lost_bytes: [u64; super::CLASSES],
}

impl DiskQueue {
    /// Bytes, waiting records, shed and lost figures of every class now.
    pub fn figures(&self) -> QueueFigures {
        let mut f = QueueFigures::default();
        for class in Class::ALL {
            let i = class as usize;
            f.bytes[i] = self.class_bytes(class);
            f.records[i] = self.waiting(class);
            let shed = self.shed(class);
            f.shed[i] = shed.items;
            f.shed_batches[i] = shed.records;
            f.lost_bytes[i] = self.lost_bytes(class);
        }
        f
    }
}
