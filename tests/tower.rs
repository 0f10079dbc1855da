//! The tower layers (feature `tower`): retry with a budget, the limiter, the breaker, the
//! bulkhead and the rate limit, driven through tower's `ServiceExt`.
//!
//! Deterministic: the policies run on `ManualClock`s (or on a clock that reads tokio's paused
//! time), and every test runs on a current-thread runtime whose time is paused, so sleeps end
//! when the runtime has nothing else to do, in virtual time.

use std::convert::Infallible;
use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tower::retry::RetryLayer;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use weir::export::tower::{
    BreakerLayer, BudgetExhausted, BulkheadLayer, Error, LimiterLayer, RateLimitLayer,
    RetryPolicyAdapter,
};
use weir::policy::Mode;
use weir::policy::breaker::{self, CircuitBreaker, RejectReason as BreakerReject, State};
use weir::policy::bulkhead::{Bulkhead, RejectReason as BulkheadReject};
use weir::policy::ratelimit::{Gcra, Quota};
use weir::policy::retry::{Backoff, Jitter, Outcome, RetryPolicy, RetryQuota, Strategy};
use weir::policy::shed::{self, FixedLimit, Limiter};
use weir::{Clock, ManualClock, Registry, SharedClock};

/// The inner services' error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flaky(u32);

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} failed", self.0)
    }
}

impl std::error::Error for Flaky {}

/// A service that fails its first `failures` calls, then succeeds, counting calls.
fn flaky(
    failures: u32,
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = Flaky> + Clone {
    service_fn(move |req: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= failures {
                Err(Flaky(n))
            } else {
                Ok(req + 1)
            }
        }
    })
}

/// A service whose calls take `d` (tokio time) and succeed.
fn slow(d: Duration) -> impl Service<u32, Response = u32, Error = Infallible> + Clone {
    service_fn(move |req: u32| async move {
        tokio::time::sleep(d).await;
        Ok(req)
    })
}

fn manual() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    (c.clone(), Arc::new(c))
}

/// Exponential from 100 ms, doubling, no jitter.
fn backoff() -> Backoff {
    Backoff::builder()
        .strategy(Strategy::Exponential { multiplier: 2.0 })
        .initial(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

// === retry ===

#[tokio::test(start_paused = true)]
async fn retry_until_success_with_weir_backoff() {
    let registry = Registry::new();
    let (_clock, shared) = manual();
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(backoff())
        .budget(Arc::new(RetryQuota::builder().build().unwrap()))
        .clock(shared)
        .registry(&registry)
        .name("flaky")
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicyAdapter::new(Arc::new(policy))))
        .service(flaky(2, calls.clone()));

    let started = tokio::time::Instant::now();
    let answer = svc.ready().await.unwrap().call(41).await;
    assert_eq!(answer, Ok(42));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The two retries slept the weir delays (100 ms, then 200 ms) on tokio's paused clock.
    assert!(started.elapsed() >= Duration::from_millis(300));

    let snap = registry.snapshot();
    assert_eq!(snap.counter("retry_requests_total", &["flaky"]), Some(1));
    assert_eq!(snap.counter("retry_attempts_total", &["flaky"]), Some(3));
    assert_eq!(
        snap.counter("retry_retried_requests_total", &["flaky"]),
        Some(1)
    );
    assert_eq!(
        snap.counter("retry_successful_retries_total", &["flaky"]),
        Some(1)
    );
    let delays = snap
        .histogram("retry_delay_nanoseconds", &["flaky"])
        .unwrap();
    assert_eq!(delays.count(), 2);

    // A second request through the same service starts its own retry state.
    calls.store(0, Ordering::SeqCst);
    let answer = svc.ready().await.unwrap().call(1).await;
    assert_eq!(answer, Ok(2));
    let snap = registry.snapshot();
    assert_eq!(snap.counter("retry_requests_total", &["flaky"]), Some(2));
    assert_eq!(snap.counter("retry_attempts_total", &["flaky"]), Some(6));
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_at_max_attempts_and_on_non_retryable() {
    let policy = Arc::new(
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(backoff())
            .clock(manual().1)
            .build()
            .unwrap(),
    );
    // Always failing: three attempts, then the last error.
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(RetryPolicyAdapter::new(policy.clone()))
        .layer(flaky(u32::MAX, calls.clone()));
    assert_eq!(svc.ready().await.unwrap().call(0).await, Err(Flaky(3)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A classifier that maps the error to a 404: not retryable, one attempt.
    let calls = Arc::new(AtomicU32::new(0));
    let adapter = RetryPolicyAdapter::new(policy)
        .classify(|r: Result<&u32, &Flaky>| r.err().map(|_| Outcome::Status(404)));
    let mut svc = RetryLayer::new(adapter).layer(flaky(u32::MAX, calls.clone()));
    assert_eq!(svc.ready().await.unwrap().call(0).await, Err(Flaky(1)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_with_a_static_policy() {
    let policy: &'static RetryPolicy = Box::leak(Box::new(
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(backoff())
            .clock(manual().1)
            .build()
            .unwrap(),
    ));
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(RetryPolicyAdapter::new(policy)).layer(flaky(1, calls.clone()));
    assert_eq!(svc.ready().await.unwrap().call(1).await, Ok(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_classifies_responses() {
    // `Ok(503)` is a failure to retry; `Ok(200)` a success.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_: ()| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<u16, Infallible>(if n < 2 { 503 } else { 200 }) }
    });
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(backoff())
        .clock(manual().1)
        .build()
        .unwrap();
    let adapter = RetryPolicyAdapter::new(Arc::new(policy)).classify(
        |r: Result<&u16, &Infallible>| match r {
            Ok(&200) => None,
            Ok(&code) => Some(Outcome::Status(code)),
            Err(e) => match *e {},
        },
    );
    let mut svc = RetryLayer::new(adapter).layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(()).await, Ok(200));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retries() {
    let registry = Registry::new();
    // Capacity 10, 5 per retry: two retries in all, shared by every request.
    let quota = Arc::new(
        RetryQuota::builder()
            .initial_capacity(10)
            .retry_cost(5)
            .no_retry_increment(0)
            .build()
            .unwrap(),
    );
    let policy = Arc::new(
        RetryPolicy::builder()
            .max_attempts(10)
            .backoff(backoff())
            .budget(quota.clone())
            .clock(manual().1)
            .registry(&registry)
            .name("budget")
            .build()
            .unwrap(),
    );

    // Default: the last attempt's error comes back.
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(RetryPolicyAdapter::new(policy.clone()))
        .layer(flaky(u32::MAX, calls.clone()));
    assert_eq!(svc.ready().await.unwrap().call(0).await, Err(Flaky(3)));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "1 attempt + 2 retries");
    assert_eq!(quota.capacity(), 0);

    // The budget is shared: the next request gets no retry at all, and asked to, the adapter
    // reports the refusal as a typed error (over boxed errors here).
    let calls = Arc::new(AtomicU32::new(0));
    let inner = flaky(u32::MAX, calls.clone()).map_err(|e| -> BoxError { Box::new(e) });
    let adapter = RetryPolicyAdapter::new(policy)
        .on_budget_exhausted(|e: BudgetExhausted| -> BoxError { Box::new(e) });
    let mut svc = RetryLayer::new(adapter).layer(inner);
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let exhausted = err.downcast_ref::<BudgetExhausted>().expect("typed");
    assert_eq!(
        (exhausted.balance, exhausted.required, exhausted.attempts),
        (0, 5, 1)
    );
    let as_error: Error<Infallible> = (*exhausted).into();
    assert_eq!(as_error.http_status(), Some(503));

    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("retry_budget_exhausted_total", &["budget"]),
        Some(2)
    );
    assert_eq!(
        snap.counter("retry_give_ups_total", &["budget", "budget_exhausted"]),
        Some(2)
    );
    assert_eq!(
        snap.counter("retry_failed_retries_total", &["budget"]),
        Some(1)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_over_weir_layers_maps_exhaustion_into_error() {
    // Retry above a breaker: errors are `Error<Flaky>`, so `Error::from` turns the refusal
    // into `Error::BudgetExhausted`.
    let quota = Arc::new(
        RetryQuota::builder()
            .initial_capacity(5)
            .retry_cost(5)
            .build()
            .unwrap(),
    );
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .backoff(backoff())
        .budget(quota)
        .clock(manual().1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("deep")
        .consecutive_failures(100)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicyAdapter::new(Arc::new(policy)).on_budget_exhausted(Error::from),
        ))
        .layer(BreakerLayer::new(breaker))
        .service(flaky(u32::MAX, calls.clone()));
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(matches!(err, Error::BudgetExhausted(b) if b.attempts == 2));
    assert_eq!(err.http_status(), Some(503));
    assert!(err.to_string().contains("retry budget exhausted"));
}

// === limiter ===

#[tokio::test(start_paused = true)]
async fn limiter_rejects_over_limit_and_releases_with_rtt() {
    let registry = Registry::new();
    let (clock, shared) = manual();
    let limiter = Limiter::builder(FixedLimit::new(2))
        .clock(shared)
        .registry(&registry)
        .name("api")
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(LimiterLayer::new(limiter.clone()))
        .service(slow(Duration::from_secs(1)));

    let a = svc.ready().await.unwrap().call(1);
    let b = svc.ready().await.unwrap().call(2);
    assert_eq!(limiter.in_flight(), 2);
    let c = svc.ready().await.unwrap().call(3);
    assert!(c.is_rejected());
    let err = c.await.unwrap_err();
    assert!(
        matches!(err, Error::Overloaded(r) if (r.limit, r.in_flight) == (2, 2)),
        "{err:?}"
    );
    assert_eq!(err.http_status(), Some(503));
    assert!(err.is_rejection());
    assert!(err.to_string().starts_with("overloaded"), "{err}");

    clock.advance(Duration::from_millis(7));
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!((ra.unwrap(), rb.unwrap()), (1, 2));
    assert_eq!(limiter.in_flight(), 0);
    // Room again.
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);

    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("concurrency_limit_rejections_total", &["api"]),
        Some(1)
    );
    assert_eq!(
        snap.counter("concurrency_limit_requests_total", &["api", "success"]),
        Some(3)
    );
    let rtt = snap
        .histogram("concurrency_limit_rtt_nanoseconds", &["api"])
        .unwrap();
    assert_eq!(rtt.count(), 3);
    // The two calls that spanned the clock's 7 ms step measured it on the limiter's clock.
    assert!(rtt.max() >= 6_990_000, "{}", rtt.max());
}

#[tokio::test(start_paused = true)]
async fn limiter_classifier_and_dropped_futures() {
    let registry = Registry::new();
    let limiter = Limiter::builder(FixedLimit::new(4))
        .clock(manual().1)
        .registry(&registry)
        .name("cls")
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    // First call fails (classified ignored), then successes.
    let layer = LimiterLayer::new(limiter.clone()).classify(|r: Result<&u32, &Flaky>| match r {
        Ok(_) => shed::Outcome::Success,
        Err(_) => shed::Outcome::Ignored,
    });
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(flaky(1, calls.clone()));
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.inner(), Some(&Flaky(1)));
    assert_eq!(err.http_status(), None);
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 1);
    // A response future dropped before it completes releases its permit (as ignored).
    let pending = svc.ready().await.unwrap().call(0);
    assert_eq!(limiter.in_flight(), 1);
    drop(pending);
    assert_eq!(limiter.in_flight(), 0);

    let snap = registry.snapshot();
    let outcome = |o: &str| snap.counter("concurrency_limit_requests_total", &["cls", o]);
    assert_eq!(
        (outcome("success"), outcome("ignored"), outcome("dropped")),
        (Some(1), Some(2), Some(0))
    );
}

#[tokio::test(start_paused = true)]
async fn limiter_in_shadow_mode_admits() {
    let limiter = Limiter::builder(FixedLimit::new(1))
        .clock(manual().1)
        .mode(Mode::Shadow)
        .build()
        .unwrap();
    let mut svc = LimiterLayer::new(limiter).layer(slow(Duration::from_millis(5)));
    let a = svc.ready().await.unwrap().call(1);
    let b = svc.ready().await.unwrap().call(2);
    assert!(!b.is_rejected());
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!((ra.unwrap(), rb.unwrap()), (1, 2));
}

// === breaker ===

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_failures_rejects_then_recovers() {
    let registry = Registry::new();
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("backend")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .success_threshold(1)
        .clock(clock.clone())
        .registry(&registry)
        .build()
        .unwrap();
    let healthy = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let (h, n) = (healthy.clone(), calls.clone());
    let inner = service_fn(move |req: u32| {
        let ok = h.load(Ordering::SeqCst);
        let count = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move { if ok { Ok(req) } else { Err(Flaky(count)) } }
    });
    let mut svc = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()))
        .service(inner);

    for i in 1..=3 {
        let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
        assert_eq!(err.into_inner(), Some(Flaky(i)));
    }
    assert_eq!(breaker.state(), State::Open);
    clock.advance(Duration::from_secs(10));
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::OpenCircuit(breaker::Rejection {
                reason: BreakerReject::Open { .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.http_status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
    assert!(err.to_string().starts_with("circuit open"), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the open breaker did not call"
    );

    // Open duration over: the next call is a probe; it succeeds and closes the breaker.
    clock.advance(Duration::from_secs(20));
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 9);
    assert_eq!(breaker.state(), State::Closed);

    let snap = registry.snapshot();
    let result = |r: &str| snap.counter("circuit_breaker_requests_total", &["backend", r]);
    assert_eq!(
        (result("success"), result("failure"), result("rejected")),
        (Some(1), Some(3), Some(1))
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_custom_classifier_ignores_client_errors() {
    let breaker = CircuitBreaker::builder("cls")
        .consecutive_failures(1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    // Responses are status codes: 5xx fail, 4xx say nothing about the backend.
    let inner = service_fn(|code: u16| async move { Ok::<u16, Infallible>(code) });
    let layer =
        BreakerLayer::new(breaker.clone()).classify(|r: Result<&u16, &Infallible>| match r {
            Ok(c) if *c >= 500 => breaker::Outcome::Failure,
            Ok(c) if *c >= 400 => breaker::Outcome::Ignored,
            _ => breaker::Outcome::Success,
        });
    let mut svc = layer.layer(inner);
    for _ in 0..5 {
        assert_eq!(svc.ready().await.unwrap().call(404).await.unwrap(), 404);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 503);
    assert_eq!(breaker.state(), State::Open);
    assert!(svc.ready().await.unwrap().call(200).await.is_err());
}

// === bulkhead ===

#[tokio::test(start_paused = true)]
async fn bulkhead_rejects_when_full() {
    let registry = Registry::new();
    let bulkhead = Bulkhead::builder("db", 1)
        .clock(ManualClock::new())
        .registry(&registry)
        .build()
        .unwrap();
    let mut svc = BulkheadLayer::new(bulkhead.clone()).layer(slow(Duration::from_secs(1)));
    let a = svc.ready().await.unwrap().call(1);
    assert_eq!(bulkhead.in_use(), 1);
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(
        matches!(err, Error::BulkheadFull(r) if r.reason == BulkheadReject::Full && r.in_use == 1),
        "{err:?}"
    );
    assert_eq!(err.http_status(), Some(503));
    assert!(err.to_string().starts_with("bulkhead full (full)"), "{err}");
    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(bulkhead.in_use(), 0);
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);

    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("bulkhead_rejections_total", &["db", "full"]),
        Some(1)
    );
    assert_eq!(
        snap.counter("bulkhead_acquisitions_total", &["db"]),
        Some(2)
    );
}

/// A weir clock that reads tokio's (paused) clock, so bulkhead deadlines and tokio timers
/// agree.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_bulkhead_hands_over_then_times_out() {
    let bulkhead = Bulkhead::builder("wait", 1)
        .clock(TokioClock(tokio::time::Instant::now()))
        .build()
        .unwrap();
    let layer = BulkheadLayer::new(bulkhead.clone()).wait(Duration::from_secs(5));
    let mut first = layer.layer(slow(Duration::from_secs(1)));
    let mut second = first.clone();

    // `first` holds the permit for 1 s; `second` waits in poll_ready and gets it handed over.
    let a = first.ready().await.unwrap().call(1);
    let b = async {
        let svc = second.ready().await.unwrap();
        svc.call(2).await
    };
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!((ra.unwrap(), rb.unwrap()), (1, 2));
    assert_eq!(bulkhead.in_use(), 0);

    // Now `first` holds it for 1 s and `second` may wait only 50 ms: poll_ready completes at
    // the deadline, and the call fails at once with a timeout.
    let mut impatient = BulkheadLayer::new(bulkhead.clone())
        .wait(Duration::from_millis(50))
        .layer(slow(Duration::from_secs(1)));
    let a = first.ready().await.unwrap().call(3);
    let b = async {
        let svc = impatient.ready().await.unwrap();
        svc.call(4).await
    };
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!(ra.unwrap(), 3);
    let err = rb.unwrap_err();
    assert!(
        matches!(err, Error::BulkheadFull(r) if r.reason == BulkheadReject::Timeout
            && r.waited == Duration::from_millis(50)),
        "{err:?}"
    );
    assert_eq!(bulkhead.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_bulkhead_dropped_service_releases_reserved_permit() {
    let bulkhead = Bulkhead::builder("drop", 1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = BulkheadLayer::new(bulkhead.clone())
        .wait(Duration::from_secs(1))
        .layer(slow(Duration::ZERO));
    svc.ready().await.unwrap();
    assert_eq!(bulkhead.in_use(), 1, "poll_ready reserved the permit");
    drop(svc);
    assert_eq!(bulkhead.in_use(), 0);
}

// === rate limit ===

#[tokio::test(start_paused = true)]
async fn rate_limit_rejects_with_429_and_retry_after() {
    let (clock, shared) = manual();
    let gcra = Arc::new(Gcra::new(Quota::per_second(2).unwrap(), shared));
    let mut svc = RateLimitLayer::new(gcra).layer(slow(Duration::ZERO));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_millis(500)));
    match &err {
        Error::RateLimited(d) => {
            let h = d.headers().unwrap();
            assert_eq!((h.limit, h.remaining, h.retry_after_secs), (2, 0, Some(1)));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("rate limited"), "{err}");
    clock.advance(Duration::from_millis(500));
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
}

// === the error ===

#[tokio::test(start_paused = true)]
async fn stacked_layers_flatten_and_report_sources() {
    let limiter = Limiter::builder(FixedLimit::new(10))
        .clock(manual().1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("stack")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(5))
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(LimiterLayer::new(limiter))
        .layer(BreakerLayer::new(breaker))
        .service(flaky(1, calls));
    let first: Error<Flaky> = svc
        .ready()
        .await
        .unwrap()
        .call(0)
        .await
        .unwrap_err()
        .flatten();
    assert!(matches!(first, Error::Inner(Flaky(1))));
    assert!(first.source().is_none());
    let second = svc
        .ready()
        .await
        .unwrap()
        .call(0)
        .await
        .unwrap_err()
        .flatten();
    assert!(matches!(second, Error::OpenCircuit(_)), "{second:?}");
    assert_eq!(second.retry_after(), Some(Duration::from_secs(5)));
    let mapped: Error<String> = second.map_inner(|e| e.to_string());
    assert_eq!(mapped.http_status(), Some(503));
}
