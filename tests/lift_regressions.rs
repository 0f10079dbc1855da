//! Regression tests for the races and bugs of lift's Go middleware that no other test in the
//! crate checked directly (see `docs/lift-parity.md`, second table):
//!
//! - lift's retry stats race (`retryManager.recordSuccess`): every retry statistic stays exact
//!   with 16 threads sharing one policy;
//! - lift's load-shedding window reset (`Load` then `Store(0)`) lost increments: the shedder's
//!   window rolls while 8 threads complete requests, and loses none;
//! - lift never measured CPU or memory (both were always 0): the default sampler's readings,
//!   from `/proc`-format files, reach the shedder's view and its rate;
//! - lift recorded durations in whole milliseconds (sub-millisecond ones showed as 0): weir's
//!   policy metrics keep nanoseconds, through to the Prometheus text.
//!
//! Each test fails if the property it names is broken (a lost increment, a reset window, an
//! ignored signal, a duration truncated to milliseconds changes the numbers it checks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use weir::export::prometheus::{self, RenderOptions};
use weir::policy::retry::{GiveUpReason, Outcome, RetryDecision, RetryPolicy};
use weir::policy::shed::{LoadShedder, ManualSignals, Priority, ProcSampler, TicketOutcome};
use weir::policy::timeout::{Method, RequestInfo, TimeoutPolicy};
use weir::{ManualClock, Registry, SharedClock};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn shared(clock: &ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// lift's retry statistics raced (its own sprint report: found by the race detector in
/// `recordSuccess`). 16 threads share one policy; each request follows one of four paths, so
/// every statistic has an exact expected value.
#[test]
fn retry_stats_are_exact_under_contention() {
    const THREADS: u64 = 16;
    const PER_THREAD: u64 = 1_000; // a multiple of 4: each path the same number of times
    let clock = ManualClock::new();
    let registry = Registry::new();
    let policy = RetryPolicy::builder()
        .clock(shared(&clock))
        .rng_seed(1)
        .registry(&registry)
        .name("lift")
        .build()
        .unwrap();
    thread::scope(|s| {
        for t in 0..THREADS {
            let policy = &policy;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let mut r = policy.begin();
                    match (i + t) % 4 {
                        // Succeeds at once: 1 attempt.
                        0 => policy.on_success(&mut r),
                        // Fails once (retried after 100 ms), then succeeds: 2 attempts.
                        1 => {
                            let d = policy.on_failure(&mut r, &Outcome::Status(503));
                            assert_eq!(d.delay(), Some(100 * MS));
                            policy.on_success(&mut r);
                        }
                        // Fails until the limit: 3 attempts, retried after 100 and 200 ms.
                        2 => {
                            assert!(policy.on_failure(&mut r, &Outcome::Status(503)).is_retry());
                            assert!(policy.on_failure(&mut r, &Outcome::Status(503)).is_retry());
                            let d = policy.on_failure(&mut r, &Outcome::Status(503));
                            assert!(matches!(
                                d,
                                RetryDecision::GiveUp {
                                    reason: GiveUpReason::MaxAttempts { .. }
                                }
                            ));
                        }
                        // Not retryable: 1 attempt.
                        _ => {
                            let d = policy.on_failure(&mut r, &Outcome::Status(404));
                            assert!(!d.is_retry());
                        }
                    }
                }
            });
        }
    });
    let each = THREADS * PER_THREAD / 4;
    let s = registry.snapshot();
    let c = |name: &str| s.counter(name, &["lift"]);
    assert_eq!(c("retry_requests_total"), Some(4 * each));
    assert_eq!(c("retry_attempts_total"), Some((1 + 2 + 3 + 1) * each));
    assert_eq!(c("retry_retried_requests_total"), Some(2 * each));
    assert_eq!(c("retry_successful_retries_total"), Some(each));
    assert_eq!(c("retry_failed_retries_total"), Some(each));
    let g = |reason: &str| s.counter("retry_give_ups_total", &["lift", reason]);
    assert_eq!(g("max_attempts"), Some(each));
    assert_eq!(g("not_retryable"), Some(each));
    assert_eq!(g("deadline_exceeded"), Some(0));
    assert_eq!(g("budget_exhausted"), Some(0));
    // lift's TotalDelay: 100 ms for path 1, 100 + 200 ms for path 2.
    let delays = s.histogram("retry_delay_nanoseconds", &["lift"]).unwrap();
    assert_eq!(delays.count(), 3 * each);
    let total_ms = delays.sum() / 1_000_000;
    assert_eq!(total_ms, 400 * each);
}

/// lift's shedder kept tumbling counters and reset them with a `Load` then a `Store(0)`:
/// increments landing between the two were lost. weir's window is the difference of cumulative
/// readings. Here 8 threads complete requests while another thread moves the clock across 80
/// one-second slots and refreshes the view (each refresh rolls the window); the run stays inside
/// the 100 s window, so the final view must hold every completion and every error.
#[test]
fn shed_window_rolls_without_losing_increments() {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 20_000;
    let clock = ManualClock::new();
    let shedder = LoadShedder::builder()
        .signals(ManualSignals::new())
        .metrics_window(Duration::from_secs(100))
        .window_resolution(SEC)
        .auto_refresh(false)
        .clock(shared(&clock))
        .seed(3)
        .build()
        .unwrap();
    let (completed, errors) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    // Set when the refresher stops, even by panicking, so that no writer waits for it forever.
    let refresher_gone = AtomicBool::new(false);
    struct Gone<'a>(&'a AtomicBool);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let refreshes = thread::scope(|s| {
        let refresher = s.spawn(|| {
            let _gone = Gone(&refresher_gone);
            let mut refreshes = 0u64;
            let mut advanced = Duration::ZERO;
            while !done.load(Ordering::Acquire) {
                if advanced < Duration::from_secs(80) {
                    clock.advance(10 * MS);
                    advanced += 10 * MS;
                }
                let _ = shedder.refresh();
                refreshes += 1;
            }
            refreshes
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (shedder, clock, completed, errors) = (&shedder, &clock, &completed, &errors);
                let refresher_gone = &refresher_gone;
                s.spawn(move || {
                    for i in 0..PER_WRITER {
                        // Spread the writes over the run: batch `b` starts at 4b seconds at
                        // the earliest, so completions land in ~80 slots while the window rolls.
                        if i % 1_000 == 0 {
                            let start = Duration::from_secs(4 * (i / 1_000));
                            while clock.now() < start && !refresher_gone.load(Ordering::Acquire) {
                                thread::yield_now();
                            }
                        }
                        // The error rate raises the base rate, so some requests are shed;
                        // only admitted ones complete.
                        if let Ok(ticket) = shedder.try_admit(Priority::Normal) {
                            if (i + t) % 3 == 0 {
                                ticket.finish_with_latency(TicketOutcome::Error, MS);
                                errors.fetch_add(1, Ordering::Relaxed);
                            } else {
                                ticket.finish_with_latency(TicketOutcome::Success, MS);
                            }
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        // Stop the refresher before reporting a writer's panic, so that nothing hangs.
        let joined: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        done.store(true, Ordering::Release);
        for j in joined {
            j.unwrap();
        }
        refresher.join().unwrap()
    });
    // The window rolled while the writers ran (one refresh per 10 ms of clock, up to 80 s).
    assert!(refreshes >= 7_600, "{refreshes}");
    let (completed, errors) = (completed.into_inner(), errors.into_inner());
    assert!(completed > 0 && errors > 0);
    let v = shedder.refresh();
    assert_eq!((v.completed, v.errors), (completed, errors));
    assert!(close(v.error_rate, errors as f64 / completed as f64));
    // A whole window later everything has left it, and new completions count from zero.
    clock.advance(Duration::from_secs(100));
    let v = shedder.refresh();
    assert_eq!((v.completed, v.errors), (0, 0));
    for _ in 0..5 {
        let ticket = shedder.try_admit(Priority::Critical).unwrap();
        ticket.finish_with_latency(TicketOutcome::Error, MS);
    }
    clock.advance(SEC);
    let v = shedder.refresh();
    assert_eq!((v.completed, v.errors), (5, 5));
}

/// lift never measured CPU or memory (both stayed 0, so those thresholds never fired). The
/// default source, `ProcSampler`, reads `/proc/stat` and `/proc/meminfo`; pointed at files in
/// that format, its readings reach the shedder's view, factors and rate.
#[test]
fn shedder_measures_cpu_and_memory() {
    let dir = std::env::temp_dir().join(format!("weir-lift-regressions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (stat, meminfo) = (dir.join("stat"), dir.join("meminfo"));
    std::fs::write(&stat, "cpu  50 0 50 100 0 0 0 0\n").unwrap();
    std::fs::write(&meminfo, "MemTotal: 1000 kB\nMemAvailable: 100 kB\n").unwrap();
    let clock = ManualClock::new();
    let shedder = LoadShedder::builder()
        .signals(ProcSampler::with_paths(&stat, &meminfo))
        .auto_refresh(false)
        .clock(shared(&clock))
        .seed(4)
        .build()
        .unwrap();
    let v = shedder.refresh();
    assert!(v.cpu.is_some());
    assert!(close(v.memory.unwrap(), 0.9));
    // Since the previous sample: 90 busy and 10 idle jiffies, so 90% busy.
    std::fs::write(&stat, "cpu  140 0 50 110 0 0 0 0\n").unwrap();
    clock.advance(SEC);
    let v = shedder.refresh();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(close(v.cpu.unwrap(), 0.9), "{:?}", v.cpu);
    // lift's formulas: cpuF = (0.9 - 0.8) / 0.2, memF = (0.9 - 0.85) / 0.15.
    assert!(close(v.cpu_factor, 0.5), "{}", v.cpu_factor);
    assert!(close(v.memory_factor, 1.0 / 3.0), "{}", v.memory_factor);
    assert_eq!(v.overloaded_signals, 2);
    assert!(close(v.base_rate, 0.3 * 0.5 + 0.3 / 3.0), "{}", v.base_rate);
    // The measured load sheds requests (the rate is 0.25; 1,000 draws).
    let shed = (0..1_000)
        .filter(|_| shedder.try_admit(Priority::Normal).is_err())
        .count();
    assert!(shed > 0);
}

/// lift's metrics facade kept durations in whole milliseconds, so a 250 µs request showed
/// as 0. weir's policies record nanoseconds, and the Prometheus text keeps them (here scaled to
/// seconds).
#[test]
fn sub_millisecond_durations_are_kept() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let policy = TimeoutPolicy::builder()
        .clock(shared(&clock))
        .metrics(&registry)
        .build()
        .unwrap();
    let decision = policy.decide(&RequestInfo::new(Method::Get));
    let _ = policy.complete_after(&decision, Duration::from_micros(250));
    let stats = policy.stats();
    assert_eq!(stats.requests, 1);
    // Histograms keep 3 significant digits: within 0.1% of 250 µs, and certainly not 0.
    let d = stats.max_duration.as_nanos();
    assert!((249_750..=250_250).contains(&d), "{d} ns");
    let snap = registry.snapshot();
    let h = snap.histogram("timeout_duration_nanoseconds", &[]).unwrap();
    assert!((249_750..=250_250).contains(&h.sum()), "{}", h.sum());
    let options = RenderOptions::new()
        .scale("timeout_duration_nanoseconds", 1e-9)
        .unwrap();
    let text = prometheus::render_with(&snap, &options);
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("timeout_duration_nanoseconds_sum "))
        .expect("a _sum line")
        .parse()
        .unwrap();
    assert!((0.000_249_75..=0.000_250_25).contains(&sum), "{sum}");
    // The shedder's latency window too: 300 µs requests average 300 µs, not 0.
    let shedder = LoadShedder::builder()
        .signals(ManualSignals::new())
        .auto_refresh(false)
        .clock(shared(&clock))
        .seed(5)
        .build()
        .unwrap();
    for _ in 0..10 {
        let ticket = shedder.try_admit(Priority::Normal).unwrap();
        ticket.finish_with_latency(TicketOutcome::Success, Duration::from_micros(300));
    }
    clock.advance(SEC);
    let mean = shedder.refresh().mean_latency.as_nanos();
    assert!((299_700..=300_300).contains(&mean), "{mean} ns");
}
