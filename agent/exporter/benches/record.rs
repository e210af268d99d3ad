//! The hot path: recording into an already-created series.
//!
//! `cargo bench -p edge-exporter --bench record`
//!
//! `histogram_two_threads` reports the time per record of each of two long-lived threads
//! recording into the same histogram at once (wall time until both are done, divided by
//! the records of one thread).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use edge_exporter::ffi::AbiHistogram;
use edge_exporter::instruments::{Counter, Histogram};

/// Tick-time-like values spread over a few buckets, cycled without a generator cost.
fn values() -> Vec<f64> {
    (0..1024)
        .map(|i| 0.004 + f64::from(i % 97) * 1e-4 * (1.0 + f64::from(i % 7)))
        .collect()
}

fn bench(c: &mut Criterion) {
    let vals = values();
    let mut group = c.benchmark_group("record");

    let counter = Counter::new();
    group.bench_function("counter_inc", |b| b.iter(|| counter.inc()));

    // The histogram arithmetic alone, without the stripe's mutex.
    let mut plain = edge_exporter::histogram::ExpHistogram::new(2);
    group.bench_function("exp_histogram_no_lock", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let _ = plain.record(black_box(vals[i & 1023]));
            i = i.wrapping_add(1);
        })
    });

    let histogram = Histogram::with_scale(2);
    group.bench_function("histogram_one_thread", |b| {
        let mut i = 0usize;
        b.iter(|| {
            histogram.record(black_box(vals[i & 1023]));
            i = i.wrapping_add(1);
        })
    });

    // The same, through the C ABI: `edge_histogram_record` called through a function
    // pointer, as a C or C++ game's call is (no inlining, a `catch_unwind` guard).
    let through_c = AbiHistogram::new(Arc::new(Histogram::with_scale(2)));
    group.bench_function("histogram_one_thread_c_abi", |b| {
        let mut i = 0usize;
        b.iter(|| {
            through_c.record(black_box(vals[i & 1023]));
            i = i.wrapping_add(1);
        })
    });

    // Two long-lived threads, as a game's simulation threads are, recording into the same
    // histogram; and, as the machine's own baseline, into two separate histograms (any gap
    // between one thread and that baseline is the hardware's: shared caches, SMT siblings).
    let shared = Arc::new(Histogram::with_scale(2));
    two_threads(&mut group, "histogram_two_threads", &vals, &shared, &shared);
    let (mine, theirs) = (
        Arc::new(Histogram::with_scale(2)),
        Arc::new(Histogram::with_scale(2)),
    );
    two_threads(
        &mut group,
        "histogram_two_threads_separate",
        &vals,
        &mine,
        &theirs,
    );
    // Two threads, one histogram, both through the C ABI.
    let one = Arc::new(Histogram::with_scale(2));
    let (a, b) = (
        Arc::new(AbiHistogram::new(Arc::clone(&one))),
        Arc::new(AbiHistogram::new(one)),
    );
    two_threads(&mut group, "histogram_two_threads_c_abi", &vals, &a, &b);
    group.finish();
}

/// What the two-thread benchmark records into: a histogram, directly or through the C ABI.
trait Record: Send + Sync + 'static {
    fn put(&self, v: f64);
}

impl Record for Histogram {
    #[inline]
    fn put(&self, v: f64) {
        self.record(v);
    }
}

impl Record for AbiHistogram {
    #[inline]
    fn put(&self, v: f64) {
        self.record(v);
    }
}

/// Two long-lived threads: this one records into `mine`, a second one (spawned once and
/// told how many records to make each sample) into `theirs`, at the same time. Reports the
/// wall time until both are done divided by one thread's records.
fn two_threads<H: Record>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    vals: &[f64],
    mine: &Arc<H>,
    theirs: &Arc<H>,
) {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<(u64, Arc<Barrier>)>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = {
        let (h, vals) = (Arc::clone(theirs), vals.to_vec());
        std::thread::spawn(move || {
            while let Ok((iters, barrier)) = go_rx.recv() {
                barrier.wait();
                for i in 0..iters as usize {
                    h.put(black_box(vals[i & 1023]));
                }
                let _ = done_tx.send(());
            }
        })
    };
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            go_tx
                .send((iters, Arc::clone(&barrier)))
                .expect("worker alive");
            barrier.wait();
            let start = Instant::now();
            for i in 0..iters as usize {
                mine.put(black_box(vals[i & 1023]));
            }
            done_rx.recv().expect("worker finished");
            start.elapsed().max(Duration::from_nanos(1))
        })
    });
    drop(go_tx);
    worker.join().expect("worker");
}

criterion_group!(benches, bench);
criterion_main!(benches);
