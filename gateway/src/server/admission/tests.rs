use std::sync::Arc;

use super::*;
use crate::config::DEFAULT_ADMISSION;

fn config(min: usize, max: usize, initial: usize) -> AdmissionConfig {
    AdmissionConfig {
        min_limit: min,
        max_limit: max,
        initial_limit: initial,
        ..DEFAULT_ADMISSION
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One window of `WINDOW` hold times of `hold`, the limit reached or not.
fn window(l: &mut Limiter, hold: Duration, limited: bool) {
    if limited {
        l.mark_limited();
    }
    for _ in 0..WINDOW {
        l.sample(hold);
    }
}

#[test]
fn the_limit_grows_by_one_per_limited_window_while_latency_holds() {
    let mut l = Limiter::new(&config(2, 40, 10));
    window(&mut l, ms(4), true);
    assert_eq!(l.limit(), 11);
    assert!(l.baseline().is_some_and(|b| (b - 0.004).abs() < 1e-9));
    // Not limited: no reason to grow.
    window(&mut l, ms(4), false);
    assert_eq!(l.limit(), 11);
    // Latency within the tolerance (2×): still growing.
    window(&mut l, ms(7), true);
    assert_eq!(l.limit(), 12);
    for _ in 0..60 {
        window(&mut l, ms(4), true);
    }
    assert_eq!(l.limit(), 40, "never above max_limit");
}

#[test]
fn latency_over_the_tolerance_brings_the_limit_down_smoothly_to_the_floor() {
    let mut l = Limiter::new(&config(3, 100, 50));
    window(&mut l, ms(4), false);
    // 4× the baseline: the target is half the limit, reached by 20% per window.
    window(&mut l, ms(16), true);
    assert_eq!(l.limit(), 45, "50 × 0.8 + 25 × 0.2");
    for _ in 0..90 {
        window(&mut l, ms(40), true);
    }
    assert_eq!(l.limit(), 3, "never below min_limit");
}

#[test]
fn sub_millisecond_holds_are_not_queueing() {
    let mut l = Limiter::new(&config(1, 100, 10));
    window(&mut l, Duration::from_micros(50), true);
    // 8× a tiny baseline is still under the floor: no decrease.
    window(&mut l, Duration::from_micros(400), true);
    assert_eq!(l.limit(), 12);
}

/// A box with `cores` cores and requests of `work` CPU each: with `n` at work, each
/// holds its slot for `work × max(1, n / cores)`. Every window is limited (more is
/// offered than it can take).
fn saturated_box(l: &mut Limiter, work: Duration, cores: f64, windows: usize) -> Vec<usize> {
    (0..windows)
        .map(|_| {
            let n = l.limit() as f64;
            window(l, work.mul_f64((n / cores).max(1.0)), true);
            l.limit()
        })
        .collect()
}

#[test]
fn on_a_saturated_box_the_limit_settles_near_the_cores_times_the_tolerance() {
    // From the floor it climbs to where queueing starts: 2 cores × the tolerance of 2.
    let mut l = Limiter::new(&config(2, 1000, 2));
    let limits = saturated_box(&mut l, ms(3), 2.0, 400);
    assert!(
        limits[50..].iter().all(|n| (2..=8).contains(n)),
        "{limits:?}"
    );
    // Started far too high, on a box saturated from the first request: the first
    // baseline is wrong, the probe window finds the real one, and it comes down.
    let mut l = Limiter::new(&config(2, 1000, 200));
    let limits = saturated_box(&mut l, ms(3), 2.0, 400);
    assert!(limits[..PROBE_EVERY as usize - 2].iter().all(|n| *n >= 200));
    assert!(
        limits[300..].iter().all(|n| (2..=8).contains(n)),
        "settled at {:?}",
        &limits[300..]
    );
}

#[test]
fn a_lagging_runtime_halves_the_limit_at_once_even_when_holds_look_fine() {
    let mut l = Limiter::new(&config(1, 100, 40));
    window(&mut l, ms(4), true);
    assert_eq!(l.limit(), 41);
    // The probe woke 50 ms late on average: the workers are starved.
    let now = Instant::now();
    l.note_lag(ms(80), now);
    l.note_lag(ms(20), now);
    window(&mut l, ms(4), true);
    assert_eq!(l.limit(), 20, "halved at once");
    // On time again: it grows.
    l.note_lag(ms(1), Instant::now());
    window(&mut l, ms(4), true);
    assert_eq!(l.limit(), 21);
}

#[test]
fn a_starved_runtime_halves_the_limit_before_the_window_closes() {
    let mut l = Limiter::new(&config(2, 100, 32));
    let now = Instant::now();
    // Three wake-ups 30 ms late: not judged yet; the fourth: halved, no request given
    // back meanwhile.
    for _ in 0..3 {
        l.note_lag(ms(30), now);
    }
    assert_eq!(l.limit(), 32);
    l.note_lag(ms(30), now);
    assert_eq!(l.limit(), 16);
    // One wake-up far too late is judged at once.
    l.note_lag(ms(200), now);
    assert_eq!(l.limit(), 8);
    // On time: no cut.
    for _ in 0..LAG_TICKS {
        l.note_lag(ms(2), now);
    }
    assert_eq!(l.limit(), 8);
    // The window closes lagging: already halved in it, not halved again.
    window(&mut l, ms(4), true);
    assert_eq!(l.limit(), 8);
    // Never below the floor.
    for _ in 0..10 {
        l.note_lag(ms(500), now);
    }
    assert_eq!(l.limit(), 2);
}

#[test]
fn a_reload_moves_the_bounds_and_keeps_the_limit_within_them() {
    let mut l = Limiter::new(&config(2, 100, 50));
    l.configure(&config(2, 10, 5));
    assert_eq!(l.limit(), 10);
    l.configure(&config(20, 100, 30));
    assert_eq!(l.limit(), 20);
}

fn queue(limit: usize, max_queued: usize, wait: Duration) -> AdmissionConfig {
    AdmissionConfig {
        max_queue_wait: wait,
        max_queued,
        ..config(limit, limit, limit)
    }
}

/// Spawns a waiter that notes its name in `order` when admitted and holds the slot
/// for `hold`; returns its refusal if refused.
fn waiter(
    admission: &Arc<Admission>,
    config: &AdmissionConfig,
    name: &'static str,
    priority: u32,
    overage: f64,
    order: &Arc<Mutex<Vec<&'static str>>>,
) -> tokio::task::JoinHandle<Result<(), Refusal>> {
    let (admission, config, order) = (admission.clone(), config.clone(), order.clone());
    tokio::spawn(async move {
        let slot = admission.acquire(&config, priority, overage).await?;
        order.lock().expect("order").push(name);
        tokio::time::sleep(ms(5)).await;
        slot.release();
        Ok(())
    })
}

/// Lets spawned tasks run up to their first wait (a current-thread runtime).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_highest_priority_then_to_the_tenant_within_quota() {
    let config = queue(1, 100, Duration::from_secs(30));
    let admission = Arc::new(Admission::new(&config));
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = admission
        .acquire(&config, 10, 0.0)
        .await
        .expect("free slot");
    let mut tasks = Vec::new();
    // Arrival order: the least important first.
    for (name, priority, overage) in [
        ("noisy", 10, 0.0),
        ("noisy over quota", 10, 0.9),
        ("game over quota", 100, 0.5),
        ("default", 50, 0.0),
        ("game", 100, 0.0),
    ] {
        tasks.push(waiter(&admission, &config, name, priority, overage, &order));
        settle().await;
    }
    assert_eq!(admission.picture().queued, 5);
    assert_eq!(admission.picture().in_flight, 1);
    first.release();
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok(()));
    }
    assert_eq!(
        *order.lock().expect("order"),
        [
            "game",
            "game over quota",
            "default",
            "noisy",
            "noisy over quota"
        ]
    );
    let p = admission.picture();
    assert_eq!((p.in_flight, p.queued, p.admitted, p.refused), (0, 0, 6, 0));
}

#[tokio::test]
async fn a_request_that_cannot_start_within_the_budget_is_refused_and_leaves_no_trace() {
    let config = queue(1, 100, ms(30));
    let admission = Arc::new(Admission::new(&config));
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    let started = Instant::now();
    let refused = admission.acquire(&config, 100, 0.0).await.map(|_| ());
    assert_eq!(refused, Err(Refusal::QueueTimeout));
    assert!(started.elapsed() >= ms(30), "{:?}", started.elapsed());
    // A waiter that goes away (its client hung up) leaves the queue too.
    let gone = {
        let (admission, config) = (admission.clone(), config.clone());
        tokio::spawn(async move {
            let _ = admission.acquire(&config, 10, 0.0).await;
        })
    };
    settle().await;
    assert_eq!(admission.picture().queued, 1);
    gone.abort();
    let _ = gone.await;
    assert_eq!(admission.picture().queued, 0);
    drop(held);
    let p = admission.picture();
    assert_eq!((p.in_flight, p.queued, p.admitted, p.refused), (0, 0, 1, 1));
    // The slot is free again, at once.
    let again = tokio::time::timeout(ms(1000), admission.acquire(&config, 10, 0.0)).await;
    assert!(matches!(again, Ok(Ok(_))));
}

#[tokio::test]
async fn a_full_queue_refuses_its_worst_ranked_first() {
    let config = queue(1, 2, Duration::from_secs(30));
    let admission = Arc::new(Admission::new(&config));
    let order = Arc::new(Mutex::new(Vec::new()));
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    let noisy = waiter(&admission, &config, "noisy", 10, 0.0, &order);
    settle().await;
    let default = waiter(&admission, &config, "default", 50, 0.0, &order);
    settle().await;
    // Full: the game tenant takes the noisy one's place, which is refused at once.
    let game = waiter(&admission, &config, "game", 100, 0.0, &order);
    settle().await;
    assert_eq!(noisy.await.expect("task"), Err(Refusal::QueueFull));
    // A newcomer that ranks below everyone waiting is refused itself.
    let late = admission.acquire(&config, 10, 0.0).await.map(|_| ());
    assert_eq!(late, Err(Refusal::QueueFull));
    drop(held);
    assert_eq!(game.await.expect("task"), Ok(()));
    assert_eq!(default.await.expect("task"), Ok(()));
    assert_eq!(*order.lock().expect("order"), ["game", "default"]);
    assert_eq!(admission.picture().refused, 2);
}

#[tokio::test]
async fn a_slot_granted_to_a_waiter_that_went_away_is_passed_on() {
    let config = queue(1, 10, Duration::from_secs(30));
    let admission = Arc::new(Admission::new(&config));
    let order = Arc::new(Mutex::new(Vec::new()));
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    let first = {
        let (admission, config) = (admission.clone(), config.clone());
        tokio::spawn(async move {
            let _slot = admission.acquire(&config, 100, 0.0).await;
            std::future::pending::<()>().await;
        })
    };
    settle().await;
    let second = waiter(&admission, &config, "second", 10, 0.0, &order);
    settle().await;
    // The slot goes to `first`, which holds it until it is aborted.
    drop(held);
    settle().await;
    assert_eq!(admission.picture().in_flight, 1);
    first.abort();
    let _ = first.await;
    assert_eq!(second.await.expect("task"), Ok(()));
    assert_eq!(admission.picture().in_flight, 0);
}

#[tokio::test]
async fn after_a_queue_refusal_its_rank_and_worse_are_refused_before_their_bodies() {
    let config = queue(1, 100, ms(20));
    let admission = Arc::new(Admission::new(&config));
    assert!(!admission.shed_early(10, 0.0), "a free slot: never");
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    assert!(!admission.shed_early(10, 0.0), "nothing refused yet");
    assert_eq!(
        admission.acquire(&config, 50, 0.5).await.map(|_| ()),
        Err(Refusal::QueueTimeout)
    );
    // Priority 50 half over quota was refused: it and worse are shed early.
    assert!(admission.shed_early(50, 0.5));
    assert!(admission.shed_early(50, 0.9));
    assert!(admission.shed_early(10, 0.0));
    // Better ranks still try the queue.
    assert!(!admission.shed_early(50, 0.0));
    assert!(!admission.shed_early(100, 0.9));
    // The window passes (early refusals do not renew it).
    tokio::time::sleep(EARLY_WINDOW + ms(10)).await;
    assert!(!admission.shed_early(10, 0.0));
    drop(held);
    assert_eq!(admission.picture().refused, 4);
}

#[tokio::test]
async fn the_picture_above_a_priority_leaves_out_the_tenants_at_or_below_it() {
    let config = queue(1, 10, ms(5));
    let admission = Admission::new(&config);
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    // Refused: a noisy request (10) and a default one (50).
    assert!(admission.acquire(&config, 10, 0.0).await.is_err());
    assert!(admission.acquire(&config, 50, 0.0).await.is_err());
    held.release();
    let slot = admission.acquire(&config, 50, 0.0).await.expect("slot");
    slot.release();
    let all = admission.picture();
    assert_eq!((all.admitted, all.refused, all.samples), (2, 2, 2));
    let above_10 = admission.picture_above(Some(10));
    assert_eq!(
        (above_10.admitted, above_10.refused, above_10.samples),
        (2, 1, 2)
    );
    let above_50 = admission.picture_above(Some(50));
    assert_eq!(
        (above_50.admitted, above_50.refused, above_50.samples),
        (1, 0, 1)
    );
    assert_eq!(admission.picture_above(Some(100)).admitted, 0);
}

#[test]
fn a_waiter_that_could_not_start_within_the_budget_is_told_at_once() {
    let mut l = Limiter::new(&config(1, 100, 4));
    assert!(
        !l.hopeless(1000, ms(30)),
        "no hold time measured yet: wait and see"
    );
    // Holds of 10 ms, 4 at a time: 12 waiters take 30 ms.
    window(&mut l, ms(10), false);
    assert_eq!(l.limit(), 4);
    assert!(!l.hopeless(0, ms(30)));
    assert!(!l.hopeless(11, ms(30)), "12 × 10 ms / 4 = 30 ms: within");
    assert!(l.hopeless(12, ms(30)), "13 × 10 ms / 4 > 30 ms");
}

#[tokio::test]
async fn the_queue_refuses_at_once_the_ranks_that_would_wait_in_vain() {
    let config = queue(1, 100, ms(1000));
    let admission = Arc::new(Admission::new(&config));
    // Requests of 100 ms, one at a time: the recent hold is about 100 ms.
    for _ in 0..WINDOW {
        let slot = admission.acquire(&config, 100, 0.0).await.expect("slot");
        tokio::time::sleep(ms(100)).await;
        slot.release();
    }
    let hold = admission
        .lock()
        .limiter
        .recent_hold()
        .expect("a window closed");
    let held = admission.acquire(&config, 100, 0.0).await.expect("slot");
    // The budget holds 1 s / hold waiters (about 10): the rank past them is refused at
    // once, not after the budget.
    let fits = (1.0 / hold) as usize;
    assert!(fits >= 1, "hold {hold}");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for _ in 0..fits {
        waiting.push(waiter(&admission, &config, "noisy", 10, 0.0, &order));
        settle().await;
    }
    let started = Instant::now();
    let refused = admission.acquire(&config, 10, 0.0).await.map(|_| ());
    assert_eq!(refused, Err(Refusal::QueueTimeout));
    assert!(
        started.elapsed() < config.max_queue_wait,
        "refused at once, not after the budget: {:?}",
        started.elapsed()
    );
    assert_eq!(admission.picture().queued, fits, "it never queued");
    drop(held);
    for w in waiting {
        let _ = w.await;
    }
}
