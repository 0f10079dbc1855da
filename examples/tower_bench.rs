//! Per-call overhead of weir's tower layers against tower's own, as CSV (feature `tower`).
//!
//! ```text
//! cargo run --release --features tower --example tower_bench -- --threads 1,2,4 --millis 300
//! ```
//!
//! Every case wraps the same inner service, `service_fn(|x: u64| async move { Ok(x) })`, which
//! is ready at once and always succeeds, so what is measured is the layer's own work per call:
//!
//! - `bare`: the inner service alone;
//! - `tower/concurrency_limit`: tower's `ConcurrencyLimit` (a tokio semaphore), limit 1024;
//! - `weir/limiter_fixed`: weir's `LimiterLayer` over a `Limiter` with a `FixedLimit` of 1024;
//! - `weir/limiter_aimd`: the same with an `Aimd` limit starting at 1024 (the adaptive case);
//! - `tower/retry_tps_budget`: tower's `Retry` with a policy over tower's `TpsBudget` (10 s,
//!   10 retries per second, 20%): it deposits on every success, as tower's documentation does;
//! - `weir/retry_ratio_budget`: tower's `Retry` with weir's `RetryPolicyAdapter` over a
//!   `RetryPolicy` with a `RatioBudget` (Finagle's and tower's budget: 10 s, 10 per second,
//!   20%): each request deposits, is classified, and reports its success;
//! - `weir/retry_ratio_budget_metrics`: the same, recording weir's retry metrics into a
//!   `Registry`;
//! - `weir/retry_ratio_budget_static`: the same as `weir/retry_ratio_budget` with the policy
//!   as a `&'static RetryPolicy` instead of an `Arc` (tower clones the policy for every
//!   request: no shared reference count to increment and decrement).
//!
//! Two diagnostic cases split off the cost of reading the clock: the same as
//! `weir/limiter_fixed` and `weir/retry_ratio_budget`, with every policy on a `ManualClock`
//! that never moves (an atomic load instead of `clock_gettime`):
//! `weir/limiter_fixed_manual_clock`, `weir/retry_ratio_budget_manual_clock`.
//!
//! No call is ever rejected or retried: the limits are far above the in-flight count (one per
//! thread) and the service never fails.
//!
//! Threads: for each thread count, that many OS threads each run **one current-thread tokio
//! runtime** (time driver enabled) and loop on `svc.ready().await; svc.call(i).await` over
//! their own clone of one service; the clones share the layer's state (the semaphore, the
//! limiter, the budget), which is where contention happens. A barrier starts them together;
//! each loops in batches of 1024 calls until a stop flag is raised after `--millis`. One CSV row
//! per case and thread count: `case,threads,ops_per_sec,ns_per_op_per_thread`, where
//! `ops_per_sec` is all threads' calls divided by the elapsed wall time and
//! `ns_per_op_per_thread = elapsed_ns * threads / calls`. Cases run thread count by thread
//! count, so the numbers a ratio compares are measured close together in time.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tower::limit::ConcurrencyLimit;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, Retry};
use tower::{Layer, Service, ServiceExt, service_fn};
use weir::export::tower::{LimiterLayer, RetryPolicyAdapter};
use weir::policy::retry::{RatioBudget, RetryPolicy};
use weir::policy::shed::{Aimd, FixedLimit, Limiter};
use weir::{ManualClock, SharedClock};

/// Calls between two checks of the stop flag.
const BATCH: u64 = 1024;
/// The concurrency limit of the limiter cases (never reached).
const LIMIT: u32 = 1024;

const CASES: [&str; 10] = [
    "bare",
    "tower/concurrency_limit",
    "weir/limiter_fixed",
    "weir/limiter_aimd",
    "weir/limiter_fixed_manual_clock",
    "tower/retry_tps_budget",
    "weir/retry_ratio_budget",
    "weir/retry_ratio_budget_metrics",
    "weir/retry_ratio_budget_static",
    "weir/retry_ratio_budget_manual_clock",
];

const USAGE: &str = "\
usage: tower_bench [--threads LIST] [--millis N] [--filter S]

  --threads LIST   comma-separated thread counts, each >= 1 (default 1,2,4)
  --millis N       measured run time of each case at each thread count, >= 1 (default 300)
  --filter S       run only the cases whose name contains S (default: all)
  -h, --help       print this help

cases: bare, tower/concurrency_limit, weir/limiter_fixed, weir/limiter_aimd,
       weir/limiter_fixed_manual_clock, tower/retry_tps_budget, weir/retry_ratio_budget,
       weir/retry_ratio_budget_metrics, weir/retry_ratio_budget_static,
       weir/retry_ratio_budget_manual_clock
output (stdout): CSV case,threads,ops_per_sec,ns_per_op_per_thread";

// === arguments ===

#[derive(Debug)]
struct Args {
    threads: Vec<usize>,
    millis: u64,
    filter: Option<String>,
}

/// `Err("")` asks for the usage text.
fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        threads: vec![1, 2, 4],
        millis: 300,
        filter: None,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--threads" => {
                let v = value("--threads")?;
                let threads: Result<Vec<usize>, _> =
                    v.split(',').map(|t| t.trim().parse::<usize>()).collect();
                match threads {
                    Ok(t) if !t.is_empty() && t.iter().all(|&n| n >= 1) => args.threads = t,
                    _ => return Err(format!("bad --threads {v:?}")),
                }
            }
            "--millis" => {
                let v = value("--millis")?;
                match v.parse::<u64>() {
                    Ok(m) if m >= 1 => args.millis = m,
                    _ => return Err(format!("bad --millis {v:?}")),
                }
            }
            "--filter" => args.filter = Some(value("--filter")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

// === the services ===

/// The inner service of every case.
fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + 'static {
    service_fn(|x: u64| async move { Ok::<u64, Infallible>(x) })
}

/// tower's documented budget policy: deposit on success, withdraw before a retry.
#[derive(Clone, Debug)]
struct TpsPolicy {
    budget: Arc<TpsBudget>,
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for TpsPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self.budget.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A clock that never moves: reading it is one atomic load.
fn frozen() -> SharedClock {
    Arc::new(ManualClock::new())
}

fn ratio_budget(clock: Option<SharedClock>) -> Arc<RatioBudget> {
    // Finagle's defaults, which are tower's: 10 s, 10 retries per second, 20%.
    let mut b = RatioBudget::builder();
    if let Some(c) = clock {
        b = b.clock(c);
    }
    Arc::new(b.build().expect("default budget"))
}

fn weir_retry(registry: Option<&weir::Registry>, clock: Option<SharedClock>) -> RetryPolicy {
    let mut b = RetryPolicy::builder().budget(ratio_budget(clock.clone()));
    if let Some(r) = registry {
        b = b.registry(r).name("bench");
    }
    if let Some(c) = clock {
        b = b.clock(c);
    }
    b.build().expect("retry policy")
}

fn arc_adapter(policy: RetryPolicy) -> RetryPolicyAdapter {
    RetryPolicyAdapter::new(Arc::new(policy))
}

// === the loop ===

struct Run {
    ops: u64,
    elapsed: Duration,
}

/// Runs `threads` threads, each on its own current-thread runtime, each calling its clone of
/// `svc` until the stop flag is raised.
fn run<S>(svc: S, threads: usize, millis: u64) -> Run
where
    S: Service<u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let start = Arc::new(Barrier::new(threads + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (mut svc, start, stop, total) =
                (svc.clone(), start.clone(), stop.clone(), total.clone());
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut ops = 0u64;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..BATCH {
                            let ready = svc.ready().await.expect("ready");
                            let out = ready.call(black_box(i)).await.expect("call");
                            black_box(out);
                        }
                        ops += BATCH;
                    }
                    total.fetch_add(ops, Ordering::Relaxed);
                });
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    thread::sleep(Duration::from_millis(millis));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    Run {
        ops: total.load(Ordering::Relaxed),
        elapsed: t0.elapsed(),
    }
}

fn run_case(case: &str, threads: usize, millis: u64) -> Run {
    match case {
        "bare" => run(inner(), threads, millis),
        "tower/concurrency_limit" => {
            // One service: its clones share the semaphore.
            run(
                ConcurrencyLimit::new(inner(), LIMIT as usize),
                threads,
                millis,
            )
        }
        "weir/limiter_fixed" => run(
            LimiterLayer::new(Limiter::new(FixedLimit::new(LIMIT))).layer(inner()),
            threads,
            millis,
        ),
        "weir/limiter_aimd" => {
            let aimd = Aimd::builder()
                .initial(LIMIT)
                .max(4 * LIMIT)
                .build()
                .expect("aimd");
            run(
                LimiterLayer::new(Limiter::new(aimd)).layer(inner()),
                threads,
                millis,
            )
        }
        "weir/limiter_fixed_manual_clock" => {
            let limiter = Limiter::builder(FixedLimit::new(LIMIT))
                .clock(frozen())
                .build()
                .expect("limiter");
            run(LimiterLayer::new(limiter).layer(inner()), threads, millis)
        }
        "tower/retry_tps_budget" => {
            let policy = TpsPolicy {
                budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            };
            run(Retry::new(policy, inner()), threads, millis)
        }
        "weir/retry_ratio_budget" => run(
            Retry::new(arc_adapter(weir_retry(None, None)), inner()),
            threads,
            millis,
        ),
        "weir/retry_ratio_budget_static" => {
            // Leaked once per run (a few hundred bytes): a process-lifetime policy.
            let policy: &'static RetryPolicy = Box::leak(Box::new(weir_retry(None, None)));
            run(
                Retry::new(RetryPolicyAdapter::new(policy), inner()),
                threads,
                millis,
            )
        }
        "weir/retry_ratio_budget_manual_clock" => run(
            Retry::new(arc_adapter(weir_retry(None, Some(frozen()))), inner()),
            threads,
            millis,
        ),
        "weir/retry_ratio_budget_metrics" => {
            let registry = weir::Registry::new();
            run(
                Retry::new(arc_adapter(weir_retry(Some(&registry), None)), inner()),
                threads,
                millis,
            )
        }
        other => unreachable!("unknown case {other}"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cases: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.contains(f)))
        .collect();
    println!("case,threads,ops_per_sec,ns_per_op_per_thread");
    for &threads in &args.threads {
        for case in &cases {
            let run = run_case(case, threads, args.millis);
            let secs = run.elapsed.as_secs_f64();
            let ops_per_sec = run.ops as f64 / secs;
            let ns = secs * 1e9 * threads as f64 / run.ops as f64;
            println!("{case},{threads},{ops_per_sec:.0},{ns:.2}");
        }
    }
    ExitCode::SUCCESS
}
