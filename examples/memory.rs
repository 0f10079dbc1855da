//! Memory report: heap bytes held by weir's counters and histograms, idle and after use.
//!
//! ```text
//! cargo run --release --example memory
//! ```
//!
//! A counting global allocator (wrapping `std::alloc::System`) keeps the live heap bytes in an
//! atomic; each measurement is the change in live bytes across building (and using) many
//! metrics, divided by their number. Bytes are those *requested* from the allocator: the
//! allocator's own headers and alignment padding are not included. Histogram numbers are
//! cross-checked against `Histogram::heap_bytes()`, which counts everything except the 16-byte
//! `Arc` header of the shared state.
//!
//! Prints a table and exits with status 1 if a target from the issue is missed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// `System`, counting live bytes.
struct Counting;

/// Live heap bytes (requested sizes).
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the bookkeeping only touches an atomic and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller meets `GlobalAlloc::alloc`'s contract, which we pass on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            // Relaxed: a statistic; it orders nothing.
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (so by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller meets `GlobalAlloc::realloc`'s contract, which we pass on as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // On failure the old block is still live and nothing changes.
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

const THREADS: usize = 16;
const PER_THREAD: u64 = 100_000;
const KIB: usize = 1024;

/// Uniform values in `low..low + span` from a per-thread xorshift64 generator.
struct Values {
    state: u64,
    low: u64,
    span: u64,
}

impl Values {
    fn new(thread: usize, low: u64, span: u64) -> Values {
        Values {
            state: 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(thread as u64 + 1) | 1,
            low,
            span,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        self.low + ((u64::from(x as u32) * self.span) >> 32)
    }
}

/// How the threads of a measurement overlap.
#[derive(Clone, Copy, PartialEq)]
enum Overlap {
    /// All threads are alive at once: each holds its own weir slot (the worst case for memory).
    Concurrent,
    /// One thread after another: each exits before the next starts, so they reuse one slot.
    Sequential,
}

/// Runs `f(thread_index)` on `THREADS` threads and joins each one explicitly (a join waits for
/// the thread's thread-local destructors, so their frees are counted before we read `LIVE`).
/// With `Overlap::Concurrent`, no thread exits before all have run `f`, so each keeps its own
/// slot; with `Overlap::Sequential`, each thread is joined before the next is spawned.
fn on_threads(overlap: Overlap, f: impl Fn(usize) + Sync) {
    let all_done = Barrier::new(THREADS);
    thread::scope(|s| {
        let spawn = |i: usize| {
            let (f, all_done) = (&f, &all_done);
            s.spawn(move || {
                f(i);
                if overlap == Overlap::Concurrent {
                    all_done.wait();
                }
            })
        };
        if overlap == Overlap::Sequential {
            for i in 0..THREADS {
                spawn(i).join().expect("thread panicked");
            }
            return;
        }
        let handles: Vec<_> = (0..THREADS).map(spawn).collect();
        for h in handles {
            h.join().expect("thread panicked");
        }
    });
}

/// One row of the report.
struct Row {
    what: String,
    bytes: usize,
    heap_bytes: Option<usize>,
    target: Option<usize>,
}

/// Bytes per idle counter, over `n` counters (the `Vec` holding them is not counted).
fn idle_counters(n: usize) -> usize {
    let mut v = Vec::with_capacity(n);
    let before = live();
    for _ in 0..n {
        v.push(weir::Counter::new());
    }
    let bytes = live() - before;
    black_box(&v);
    bytes / n
}

/// Bytes per idle histogram over `n`, and `heap_bytes()` of one of them.
fn idle_histograms(n: usize) -> (usize, usize) {
    let mut v = Vec::with_capacity(n);
    let before = live();
    for _ in 0..n {
        v.push(weir::Histogram::new());
    }
    let bytes = live() - before;
    (bytes / n, v[0].heap_bytes())
}

/// Bytes of one histogram into which `threads` threads each recorded `PER_THREAD` values
/// uniform in `low..low + span`, and its `heap_bytes()`.
fn used_histogram(threads: usize, overlap: Overlap, low: u64, span: u64) -> (usize, usize) {
    let before = live();
    let h = weir::Histogram::new();
    on_threads(overlap, |i| {
        if i < threads {
            let mut values = Values::new(i, low, span);
            for _ in 0..PER_THREAD {
                h.record(values.next());
            }
        }
    });
    let bytes = live() - before;
    assert_eq!(h.snapshot().count(), threads as u64 * PER_THREAD);
    (bytes, h.heap_bytes())
}

/// Bytes per counter of `n` counters, each incremented by `THREADS` threads alive at once.
fn touched_counters(n: usize) -> usize {
    let mut v = Vec::with_capacity(n);
    let before = live();
    for _ in 0..n {
        v.push(weir::Counter::new());
    }
    on_threads(Overlap::Concurrent, |_| {
        for c in &v {
            c.inc();
        }
    });
    let bytes = live() - before;
    assert!(v.iter().all(|c| c.get() == THREADS as u64));
    bytes / n
}

fn main() -> ExitCode {
    // Warm up what spawning threads initializes lazily in std, then check that spawning and
    // joining threads leaves no bytes behind, so the deltas below are weir's alone.
    on_threads(Overlap::Concurrent, |_| {});
    let before = live();
    on_threads(Overlap::Concurrent, |_| {});
    let spawn_residue = live().abs_diff(before);

    let mut rows = Vec::new();
    rows.push(Row {
        what: "idle Counter (per counter, 10,000 made)".into(),
        bytes: idle_counters(10_000),
        heap_bytes: None,
        target: Some(128),
    });
    let (idle_h, idle_h_heap) = idle_histograms(1_000);
    rows.push(Row {
        what: "idle Histogram (per histogram, 1,000 made)".into(),
        bytes: idle_h,
        heap_bytes: Some(idle_h_heap),
        target: Some(16 * KIB),
    });
    // 1 ms ..= 2 ms in nanoseconds.
    let narrow = (1_000_000, 1_000_000);
    let (b, hb) = used_histogram(1, Overlap::Concurrent, narrow.0, narrow.1);
    rows.push(Row {
        what: format!("Histogram, 1 thread x {PER_THREAD} values in 1..2 ms"),
        bytes: b,
        heap_bytes: Some(hb),
        target: None,
    });
    let (b, hb) = used_histogram(THREADS, Overlap::Concurrent, narrow.0, narrow.1);
    rows.push(Row {
        what: format!("Histogram, {THREADS} live threads x {PER_THREAD} in 1..2 ms"),
        bytes: b,
        heap_bytes: Some(hb),
        target: Some(256 * KIB),
    });
    let (b, hb) = used_histogram(THREADS, Overlap::Sequential, narrow.0, narrow.1);
    rows.push(Row {
        what: format!("Histogram, {THREADS} threads in turn x {PER_THREAD} in 1..2 ms"),
        bytes: b,
        heap_bytes: Some(hb),
        target: None,
    });
    let (b, hb) = used_histogram(THREADS, Overlap::Concurrent, 1, 1_000_000);
    rows.push(Row {
        what: format!("Histogram, {THREADS} live threads x {PER_THREAD} in 1 ns..1 ms"),
        bytes: b,
        heap_bytes: Some(hb),
        target: None,
    });
    rows.push(Row {
        what: format!("Counter touched by {THREADS} live threads (per counter, of 10,000)"),
        bytes: touched_counters(10_000),
        heap_bytes: None,
        target: None,
    });

    println!(
        "{:<58} {:>10} {:>13} {:>10}  result",
        "measurement", "bytes", "heap_bytes()", "target"
    );
    let mut missed = 0;
    for r in &rows {
        let heap = r.heap_bytes.map_or("-".to_string(), |h| h.to_string());
        let (target, verdict) = match r.target {
            Some(t) if r.bytes <= t => (format!("<= {t}"), "met"),
            Some(t) => {
                missed += 1;
                (format!("<= {t}"), "MISSED")
            }
            None => ("-".to_string(), "-"),
        };
        println!(
            "{:<58} {:>10} {:>13} {:>10}  {verdict}",
            r.what, r.bytes, heap, target
        );
    }
    println!();
    println!(
        "size_of::<Counter>() = {} B, size_of::<Histogram>() = {} B (the handles, inline where kept)",
        std::mem::size_of::<weir::Counter>(),
        std::mem::size_of::<weir::Histogram>()
    );
    println!("bytes left behind by spawning and joining {THREADS} idle threads: {spawn_residue}");
    if missed > 0 {
        eprintln!("error: {missed} memory target(s) missed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
