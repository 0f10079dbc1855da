//! One admission decision per call, for weir's policies and for `Mutex` baselines of the same
//! logic: the `weir/budget` ... `base/ratelimit_mutex` cases of `examples/contention.rs` and the
//! decision groups of `benches/contention.rs` (both include this file with `#[path]`).
//!
//! Every [`Decide::decide`] is one full decision on the admit path, as a request would make it,
//! and every setting is chosen so that it always admits (so the admit path is what is timed,
//! and a refusal is a measurement error the callers report):
//!
//! - budget: `deposit()` then `try_withdraw()` on a ratio budget (window 10 s in 10 slots,
//!   ratio 1/1, a reserve of 100,000 retries per second): a request that fails once and
//!   retries. weir: [`RatioBudget`]; base: the same generation-slot accounting in one `Mutex`.
//!   The reserve's size changes no work on either side while every retry is covered, as every
//!   retry here is by its own deposit. It was made large while
//!   a weir bug, since fixed, made `try_withdraw` refuse covered retries under contention
//!   (docs/benchmarks.md, "`RatioBudget` refused retries it could pay for"), and kept so that
//!   the numbers stay comparable with the runs recorded then.
//! - budget_deposit: `deposit()` alone on the same budget, what every request pays (most
//!   succeed and never withdraw). weir's deposits go to the calling thread's stripe.
//! - limiter: `try_acquire()` then release as a success, under a [`FixedLimit`] of 1,000,000,
//!   which learns nothing (no clock read, no sample). weir: [`Limiter`]; base:
//!   `(in_flight, limit, algorithm)` in one `Mutex`.
//! - limiter_aimd: the same with an [`Aimd`] held at 1,000,000, which learns: both read the
//!   clock at the grant and the release and feed every RTT sample to the algorithm.
//! - breaker: `try_acquire()` then record a success, with lift's defaults (5 consecutive
//!   failures, or a failure rate of 0.5 over a 300 s window of 10 buckets once it holds 10
//!   calls; open 60 s; 3 probes). weir: [`CircuitBreaker`]; base: the state machine, the
//!   consecutive-failure count and the bucketed window in one `Mutex`. Both check the rate on
//!   a success only when its bucket held fewer than the minimum number of calls (the only
//!   successes that can find the rule holding).
//! - ratelimit: `try_acquire()` of one cell on a GCRA of 10^9 per second with a burst of 10^9
//!   (an emission interval of 1 ns: it always admits). weir: [`Gcra`]; base: the TAT in one
//!   `Mutex<u64>`, with the same arithmetic and the same `Decision`.
//!
//! Every case reads time from its own clock, and weir and its baseline read the same kind, so
//! they pay the same clock cost. The budget, breaker and rate limit read a [`CachedClock`] of
//! 1 ms resolution (one relaxed load; `base/cached_clock_now` measures it alone): their slots,
//! buckets, open durations and intervals need nothing finer. The limiter reads a
//! [`SystemClock`] (`base/clock_now`), since RTT samples need nanoseconds. Results are passed through
//! `black_box`, so the compiler cannot drop the parts of a decision (a remaining count, a
//! balance) that a caller would read.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use weir::policy::breaker::{self, CircuitBreaker, Recorded};
use weir::policy::ratelimit::{self, Gcra, Quota};
use weir::policy::retry::{RatioBudget, Withdrawal};
use weir::policy::shed::{Aimd, FixedLimit, LimitAlgorithm, Limiter, Sample};
use weir::{CachedClock, SharedClock, SystemClock};

/// One shared decision maker, called from every thread of a case.
pub(crate) trait Decide: Sync {
    /// Makes one full decision on the admit path; whether it admitted.
    fn decide(&self) -> bool;

    /// After a run: whether the shared state is what all-admitted decisions leave (permits all
    /// released, breaker closed); an error message if not.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn system_clock() -> SharedClock {
    Arc::new(SystemClock::new())
}

/// A [`CachedClock`] of 1 ms resolution (its own ticker thread): what the budget, breaker and
/// rate limit cases read, weir and baseline alike. Their windows, open durations and intervals
/// need nothing finer, and the system clock's read (about 22 ns on the 2-core development
/// machine) would be most of a 25 ns decision.
fn cached_clock() -> CachedClock {
    match CachedClock::new(Duration::from_millis(1)) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the cached clock: {e}"),
    }
}

fn shared_cached_clock() -> SharedClock {
    Arc::new(cached_clock())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === clock ===

/// `base/clock_now`: one read of a `SharedClock` holding a `SystemClock`, the read every
/// clocked decision below makes (the budget makes two).
pub(crate) struct ClockNow(SharedClock);

impl ClockNow {
    pub(crate) fn new() -> ClockNow {
        ClockNow(system_clock())
    }
}

impl Decide for ClockNow {
    #[inline]
    fn decide(&self) -> bool {
        black_box(self.0.now());
        true
    }
}

/// `base/cached_clock_now`: one read of the `SharedClock` holding a [`CachedClock`] that the
/// budget, breaker and rate limit cases read.
pub(crate) struct CachedClockNow(SharedClock);

impl CachedClockNow {
    pub(crate) fn new() -> CachedClockNow {
        CachedClockNow(shared_cached_clock())
    }
}

impl Decide for CachedClockNow {
    #[inline]
    fn decide(&self) -> bool {
        black_box(self.0.now());
        true
    }
}

// === budget ===

/// Budget window, slots, ratio and reserve, the same for weir and the baseline.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
const BUDGET_SLOTS: u32 = 10;
const BUDGET_MIN_PER_SEC: u32 = 100_000;

/// `weir/budget`: [`RatioBudget::deposit`] then [`RatioBudget::try_withdraw`].
pub(crate) struct WeirBudget(RatioBudget);

impl WeirBudget {
    pub(crate) fn new() -> WeirBudget {
        let budget = RatioBudget::builder()
            .window(BUDGET_WINDOW)
            .slots(BUDGET_SLOTS)
            .min_retries_per_sec(BUDGET_MIN_PER_SEC)
            .ratio_parts(1, 1)
            .clock(shared_cached_clock())
            .build()
            .expect("valid budget settings");
        WeirBudget(budget)
    }
}

impl Decide for WeirBudget {
    #[inline]
    fn decide(&self) -> bool {
        self.0.deposit();
        black_box(self.0.try_withdraw()).is_withdrawn()
    }
}

/// `weir/budget_deposit`: [`RatioBudget::deposit`] alone, what every request pays (most
/// requests succeed and never withdraw).
pub(crate) struct WeirBudgetDeposit(RatioBudget);

impl WeirBudgetDeposit {
    pub(crate) fn new() -> WeirBudgetDeposit {
        WeirBudgetDeposit(WeirBudget::new().0)
    }
}

impl Decide for WeirBudgetDeposit {
    #[inline]
    fn decide(&self) -> bool {
        self.0.deposit();
        true
    }
}

/// The baseline budget's state: deposits and retries per generation slot, and the newest
/// generation seen (slots of older generations are emptied when it moves on).
struct RatioState {
    generation: u64,
    deposits: Box<[u64]>,
    retries: Box<[u64]>,
}

impl RatioState {
    /// Moves to generation `g` if it is later, emptying the slots of the generations that
    /// left the window. Never moves back.
    fn advance(&mut self, g: u64) {
        if g <= self.generation {
            return;
        }
        let n = self.deposits.len() as u64;
        for k in 1..=(g - self.generation).min(n) {
            let i = ((self.generation + k) % n) as usize;
            self.deposits[i] = 0;
            self.retries[i] = 0;
        }
        self.generation = g;
    }

    fn current(&self) -> usize {
        (self.generation % self.deposits.len() as u64) as usize
    }
}

/// `base/budget_mutex`: the accounting of [`RatioBudget`] (deposits and retries per slot of a
/// rolling window; a retry is granted iff `reserve × den + num × D - den × W >= den`) in one
/// `Mutex`, each call reading the clock and taking the lock once.
pub(crate) struct MutexBudget {
    state: Mutex<RatioState>,
    clock: SharedClock,
    /// Slot width in nanoseconds.
    width: u64,
    num: u64,
    den: u64,
    reserve: u64,
}

impl MutexBudget {
    pub(crate) fn new() -> MutexBudget {
        let clock = shared_cached_clock();
        let width = (BUDGET_WINDOW / BUDGET_SLOTS).as_nanos() as u64;
        let slots = BUDGET_SLOTS as usize;
        let generation = clock.now().as_nanos() as u64 / width;
        MutexBudget {
            state: Mutex::new(RatioState {
                generation,
                deposits: vec![0; slots].into(),
                retries: vec![0; slots].into(),
            }),
            clock,
            width,
            num: 1,
            den: 1,
            reserve: u64::from(BUDGET_MIN_PER_SEC) * BUDGET_WINDOW.as_secs(),
        }
    }

    fn generation(&self) -> u64 {
        (self.clock.now().as_nanos() / u128::from(self.width)) as u64
    }

    fn deposit(&self) {
        let g = self.generation();
        let mut s = lock(&self.state);
        s.advance(g);
        let i = s.current();
        s.deposits[i] += self.num;
    }

    fn try_withdraw(&self) -> Withdrawal {
        let g = self.generation();
        let mut s = lock(&self.state);
        s.advance(g);
        let deposits: u64 = s.deposits.iter().sum();
        let retries: u64 = s.retries.iter().sum();
        let cost = i128::from(self.den);
        let balance = i128::from(self.reserve) * cost + i128::from(self.num) * i128::from(deposits)
            - cost * i128::from(retries);
        if balance < cost {
            return Withdrawal::Refused {
                cost: 0,
                balance: balance as i64,
                required: cost as i64,
            };
        }
        let i = s.current();
        s.retries[i] += 1;
        Withdrawal::Withdrawn {
            cost: self.den,
            balance: (balance - cost) as i64,
        }
    }
}

impl Decide for MutexBudget {
    #[inline]
    fn decide(&self) -> bool {
        self.deposit();
        black_box(self.try_withdraw()).is_withdrawn()
    }
}

/// `base/budget_deposit_mutex`: [`MutexBudget`]'s deposit alone.
pub(crate) struct MutexBudgetDeposit(MutexBudget);

impl MutexBudgetDeposit {
    pub(crate) fn new() -> MutexBudgetDeposit {
        MutexBudgetDeposit(MutexBudget::new())
    }
}

impl Decide for MutexBudgetDeposit {
    #[inline]
    fn decide(&self) -> bool {
        self.0.deposit();
        true
    }
}

// === limiter ===

/// A limit no run reaches: every acquire is admitted.
const LIMIT: u32 = 1_000_000;

/// An [`Aimd`] that stays at [`LIMIT`]: it starts there, may not go above it, and no sample
/// is dropped or slower than its 5 s timeout, so every sample adds one and is clamped back.
fn aimd_at_limit() -> Aimd {
    Aimd::builder()
        .initial(LIMIT)
        .min(1)
        .max(LIMIT)
        .build()
        .expect("valid AIMD settings")
}

/// `weir/limiter` and `weir/limiter_aimd`: [`Limiter::try_acquire`], then `Permit::success`.
pub(crate) struct WeirLimiter(Limiter);

impl WeirLimiter {
    /// `weir/limiter`: a [`FixedLimit`], which learns nothing, so the limiter reads no clock
    /// and takes no lock.
    pub(crate) fn new() -> WeirLimiter {
        WeirLimiter::with(FixedLimit::new(LIMIT))
    }

    fn with(algorithm: impl LimitAlgorithm) -> WeirLimiter {
        let limiter = Limiter::builder(algorithm)
            .clock(system_clock())
            .build()
            .expect("a limiter without a registry builds");
        WeirLimiter(limiter)
    }
}

/// `weir/limiter_aimd`: the same decision with an [`Aimd`] algorithm, which learns: the grant
/// and the release read the clock, and the release feeds the RTT sample to the algorithm.
pub(crate) struct WeirLimiterAimd(WeirLimiter);

impl WeirLimiterAimd {
    pub(crate) fn new() -> WeirLimiterAimd {
        WeirLimiterAimd(WeirLimiter::with(aimd_at_limit()))
    }
}

impl Decide for WeirLimiter {
    #[inline]
    fn decide(&self) -> bool {
        match self.0.try_acquire() {
            Ok(permit) => {
                permit.success();
                true
            }
            Err(rejection) => {
                let _ = black_box(rejection);
                false
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        match self.0.in_flight() {
            0 => Ok(()),
            n => Err(format!("{n} permits still in flight")),
        }
    }
}

impl Decide for WeirLimiterAimd {
    #[inline]
    fn decide(&self) -> bool {
        self.0.decide()
    }

    fn check(&self) -> Result<(), String> {
        self.0.check()
    }
}

struct LimiterState {
    in_flight: u32,
    limit: u32,
    algorithm: Box<dyn LimitAlgorithm>,
}

/// `base/limiter_mutex` and `base/limiter_aimd_mutex`: in-flight count, limit and limit
/// algorithm in one `Mutex`, doing what weir's limiter does. Acquire locks to check and count.
/// With an algorithm that learns, the grant reads the clock, and the release reads it for the
/// RTT, then locks to uncount and feed the sample; with one that does not, the release only
/// locks to uncount.
pub(crate) struct MutexLimiter {
    state: Mutex<LimiterState>,
    clock: SharedClock,
    learns: bool,
}

/// A permit of [`MutexLimiter`].
struct MutexPermit {
    start: Option<Duration>,
    in_flight: u32,
}

impl MutexLimiter {
    /// `base/limiter_mutex`: a [`FixedLimit`].
    pub(crate) fn new() -> MutexLimiter {
        MutexLimiter::with(Box::new(FixedLimit::new(LIMIT)))
    }

    fn with(algorithm: Box<dyn LimitAlgorithm>) -> MutexLimiter {
        MutexLimiter {
            learns: algorithm.learns(),
            state: Mutex::new(LimiterState {
                in_flight: 0,
                limit: algorithm.limit(),
                algorithm,
            }),
            clock: system_clock(),
        }
    }

    fn try_acquire(&self) -> Option<MutexPermit> {
        let in_flight = {
            let mut s = lock(&self.state);
            if s.in_flight >= s.limit {
                return None;
            }
            s.in_flight += 1;
            s.in_flight
        };
        Some(MutexPermit {
            start: self.learns.then(|| self.clock.now()),
            in_flight,
        })
    }

    fn success(&self, p: MutexPermit) {
        let Some(start) = p.start else {
            lock(&self.state).in_flight -= 1;
            return;
        };
        let rtt = self.clock.now().saturating_sub(start);
        let mut s = lock(&self.state);
        s.in_flight -= 1;
        let limit = s.algorithm.update(&Sample::new(rtt, p.in_flight, false));
        s.limit = limit.max(1);
    }
}

/// `base/limiter_aimd_mutex`: [`MutexLimiter`] with the same [`Aimd`] as `weir/limiter_aimd`.
pub(crate) struct MutexLimiterAimd(MutexLimiter);

impl MutexLimiterAimd {
    pub(crate) fn new() -> MutexLimiterAimd {
        MutexLimiterAimd(MutexLimiter::with(Box::new(aimd_at_limit())))
    }
}

impl Decide for MutexLimiter {
    #[inline]
    fn decide(&self) -> bool {
        match self.try_acquire() {
            Some(permit) => {
                self.success(permit);
                true
            }
            None => false,
        }
    }

    fn check(&self) -> Result<(), String> {
        match lock(&self.state).in_flight {
            0 => Ok(()),
            n => Err(format!("{n} permits still in flight")),
        }
    }
}

impl Decide for MutexLimiterAimd {
    #[inline]
    fn decide(&self) -> bool {
        self.0.decide()
    }

    fn check(&self) -> Result<(), String> {
        self.0.check()
    }
}

// === breaker ===

/// lift's defaults, which `CircuitBreaker::builder` also uses.
const CONSECUTIVE_FAILURES: u32 = 5;
const FAILURE_RATE: f64 = 0.5;
const MINIMUM_CALLS: u64 = 10;
const WINDOW: Duration = Duration::from_secs(300);
const WINDOW_BUCKETS: u32 = 10;
const OPEN: Duration = Duration::from_secs(60);
const MAX_PROBES: u32 = 3;
const SUCCESS_THRESHOLD: u32 = 3;

/// `weir/breaker`: [`CircuitBreaker::try_acquire`], then `Permit::success`, with lift's
/// defaults (written out, so the baseline visibly matches).
pub(crate) struct WeirBreaker(CircuitBreaker);

impl WeirBreaker {
    pub(crate) fn new() -> WeirBreaker {
        let b = CircuitBreaker::builder("bench")
            .consecutive_failures(CONSECUTIVE_FAILURES)
            .failure_rate(FAILURE_RATE)
            .minimum_calls(MINIMUM_CALLS as u32)
            .window(breaker::SlidingWindow::Time {
                length: WINDOW,
                buckets: WINDOW_BUCKETS,
            })
            .open_duration(OPEN)
            .half_open_max_probes(MAX_PROBES)
            .success_threshold(SUCCESS_THRESHOLD)
            .clock(cached_clock())
            .build()
            .expect("valid breaker settings");
        WeirBreaker(b)
    }
}

impl Decide for WeirBreaker {
    #[inline]
    fn decide(&self) -> bool {
        match self.0.try_acquire() {
            breaker::Decision::Permitted(permit) => {
                matches!(black_box(permit.success()), Recorded::Counted)
            }
            breaker::Decision::Rejected(r) => {
                let _ = black_box(r);
                false
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        match self.0.state() {
            breaker::State::Closed => Ok(()),
            s => Err(format!("breaker is {s:?}, expected closed")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BreakerPhase {
    Closed,
    Open { until: Duration },
    HalfOpen { probes: u32, successes: u32 },
}

/// One time bucket of the baseline window: its slot number and counts.
#[derive(Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    calls: u64,
    failures: u64,
}

struct BreakerState {
    phase: BreakerPhase,
    /// Counts transitions; a permit's outcome counts only in its own generation.
    generation: u32,
    consecutive: u32,
    buckets: Box<[Bucket]>,
}

impl BreakerState {
    fn closed(generation: u32) -> BreakerState {
        BreakerState {
            phase: BreakerPhase::Closed,
            generation,
            consecutive: 0,
            buckets: vec![Bucket::default(); WINDOW_BUCKETS as usize].into(),
        }
    }
}

/// `base/breaker_mutex`: the breaker's state machine, consecutive-failure count and
/// time-bucketed window (the same rules and settings as [`WeirBreaker`]) in one `Mutex`.
/// `try_acquire` locks to check the state; a success reads the clock, then locks to record it
/// in the window, reset the failure count and check the failure rate.
pub(crate) struct MutexBreaker {
    state: Mutex<BreakerState>,
    clock: SharedClock,
    bucket_nanos: u64,
}

/// A permit of [`MutexBreaker`]: the generation and phase it was issued in.
struct BreakerPermit {
    generation: u32,
    probe: bool,
}

impl MutexBreaker {
    pub(crate) fn new() -> MutexBreaker {
        MutexBreaker {
            state: Mutex::new(BreakerState::closed(0)),
            clock: shared_cached_clock(),
            bucket_nanos: (WINDOW / WINDOW_BUCKETS).as_nanos() as u64,
        }
    }

    fn try_acquire(&self) -> Option<BreakerPermit> {
        let mut s = lock(&self.state);
        let probe = match s.phase {
            BreakerPhase::Closed => false,
            BreakerPhase::Open { until } => {
                if self.clock.now() < until {
                    return None;
                }
                s.generation += 1;
                s.phase = BreakerPhase::HalfOpen {
                    probes: 1,
                    successes: 0,
                };
                true
            }
            BreakerPhase::HalfOpen { probes, successes } => {
                if probes >= MAX_PROBES {
                    return None;
                }
                s.phase = BreakerPhase::HalfOpen {
                    probes: probes + 1,
                    successes,
                };
                true
            }
        };
        Some(BreakerPermit {
            generation: s.generation,
            probe,
        })
    }

    /// Records a success; whether it was counted in the permit's generation.
    fn success(&self, p: BreakerPermit) -> bool {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        if s.generation != p.generation {
            return false;
        }
        if p.probe {
            if let BreakerPhase::HalfOpen { probes, successes } = s.phase {
                if successes + 1 >= SUCCESS_THRESHOLD {
                    let g = s.generation + 1;
                    *s = BreakerState::closed(g);
                } else {
                    s.phase = BreakerPhase::HalfOpen {
                        probes: probes - 1,
                        successes: successes + 1,
                    };
                }
            }
            return true;
        }
        // Closed: count the call in its bucket, reset the failure streak, check the rate.
        let slot = now.as_nanos() as u64 / self.bucket_nanos;
        let n = s.buckets.len() as u64;
        let b = &mut s.buckets[(slot % n) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                calls: 0,
                failures: 0,
            };
        }
        let before = b.calls;
        b.calls += 1;
        s.consecutive = 0;
        // As weir does: a success can only find the rate rule holding when its bucket held
        // fewer than the minimum number of calls before it (module docs of
        // `weir::policy::breaker`), so only then is the window summed.
        if before >= MINIMUM_CALLS {
            return true;
        }
        let (mut calls, mut failures) = (0, 0);
        for b in s.buckets.iter() {
            if b.slot <= slot && slot - b.slot < n {
                calls += b.calls;
                failures += b.failures;
            }
        }
        if calls >= MINIMUM_CALLS && failures as f64 / calls as f64 >= FAILURE_RATE {
            s.generation += 1;
            s.phase = BreakerPhase::Open { until: now + OPEN };
        }
        true
    }
}

impl Decide for MutexBreaker {
    #[inline]
    fn decide(&self) -> bool {
        match self.try_acquire() {
            Some(permit) => black_box(self.success(permit)),
            None => false,
        }
    }

    fn check(&self) -> Result<(), String> {
        match lock(&self.state).phase {
            BreakerPhase::Closed => Ok(()),
            p => Err(format!("breaker is {p:?}, expected closed")),
        }
    }
}

// === ratelimit ===

/// 10^9 cells per second, burst 10^9: an emission interval of 1 ns, which no run outpaces.
fn always_admitting_quota() -> Quota {
    Quota::per_second(1_000_000_000)
        .and_then(|q| q.with_burst(1_000_000_000))
        .expect("valid quota")
}

/// `weir/ratelimit`: [`Gcra::try_acquire`] (one CAS on the TAT word).
pub(crate) struct WeirRatelimit(Gcra);

impl WeirRatelimit {
    pub(crate) fn new() -> WeirRatelimit {
        WeirRatelimit(Gcra::new(always_admitting_quota(), shared_cached_clock()))
    }
}

impl Decide for WeirRatelimit {
    #[inline]
    fn decide(&self) -> bool {
        black_box(self.0.try_acquire()).admits()
    }
}

/// `base/ratelimit_mutex`: GCRA with the TAT in one `Mutex<u64>`: read the clock, lock,
/// `new = max(tat, now) + T`, admit iff `new - now <= τ`, returning the same
/// [`ratelimit::Decision`] as weir (remaining cells, reset time, limit).
pub(crate) struct MutexRatelimit {
    tat: Mutex<u64>,
    clock: SharedClock,
    interval: u64,
    tau: u64,
    burst: u64,
}

impl MutexRatelimit {
    pub(crate) fn new() -> MutexRatelimit {
        let q = always_admitting_quota();
        let interval = q.emission_interval().as_nanos() as u64;
        MutexRatelimit {
            tat: Mutex::new(0),
            clock: shared_cached_clock(),
            interval,
            tau: interval * q.burst(),
            burst: q.burst(),
        }
    }

    fn try_acquire(&self) -> ratelimit::Decision {
        // Clamped as weir clamps readings (to `u64::MAX / 2` ns), so both do the same work.
        let now = u64::try_from(self.clock.now().as_nanos())
            .unwrap_or(u64::MAX)
            .min(u64::MAX / 2);
        let mut tat = lock(&self.tat);
        let base = (*tat).max(now);
        let new = base + self.interval;
        let ahead = new - now;
        if ahead > self.tau {
            return ratelimit::Decision::Limited {
                retry_after: Duration::from_nanos(ahead - self.tau),
                reset_after: Duration::from_nanos(base - now),
                limit: self.burst,
                reason: ratelimit::LimitReason::Exhausted,
                mode: weir::policy::Mode::Enforce,
            };
        }
        *tat = new;
        ratelimit::Decision::Allowed {
            remaining: (self.tau - ahead) / self.interval,
            reset_after: Duration::from_nanos(ahead),
            limit: self.burst,
        }
    }
}

impl Decide for MutexRatelimit {
    #[inline]
    fn decide(&self) -> bool {
        black_box(self.try_acquire()).admits()
    }
}

// === floors ===
//
// The least any design can pay whose contract makes every decision change one word that every
// thread writes. Each floor does only the atomic operations of that shape, on one 128-byte
// aligned word (or pair of words in one line), with no clock, no arithmetic and no bookkeeping:
// a real decision of the same shape cannot be cheaper, at any thread count. Their ratio to a
// `Mutex` baseline is the most such a design can reach against it.

/// One or two words alone on a 128-byte block (two cache lines: no neighbour shares them, not
/// even through the adjacent-line prefetcher).
#[repr(align(128))]
struct Line {
    a: AtomicU64,
    b: AtomicU64,
}

impl Line {
    fn new() -> Line {
        Line {
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
        }
    }
}

/// Loads `word`, then raises it by one with compare-and-swap, retrying from the value a failed
/// swap returns, while it is below `limit`: the shape of a decision that must see the word
/// before it may change it. Whether it was raised.
#[inline(always)]
fn cas_raise(word: &AtomicU64, limit: u64) -> bool {
    // Relaxed: a first guess; the CAS re-checks.
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if cur >= limit {
            return false;
        }
        // Acquire on success, as an acquiring decision takes it; Relaxed on failure.
        match word.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// `base/floor_cas`: one shared word raised by load-and-CAS (`cas_raise`): the shape of a
/// GCRA on one word ([`Gcra::try_acquire`]), which must read the theoretical arrival time to
/// compute the new one.
pub(crate) struct FloorCas(Line);

impl FloorCas {
    pub(crate) fn new() -> FloorCas {
        FloorCas(Line::new())
    }
}

impl Decide for FloorCas {
    #[inline]
    fn decide(&self) -> bool {
        cas_raise(&self.0.a, u64::MAX)
    }
}

/// `base/floor_cas_release`: `cas_raise` below a limit, then a `fetch_sub` of the same word:
/// the shape of an in-flight limit that is never exceeded ([`Limiter`] under a
/// [`FixedLimit`]): acquire checks and counts in one CAS, release uncounts.
pub(crate) struct FloorCasRelease(Line);

impl FloorCasRelease {
    pub(crate) fn new() -> FloorCasRelease {
        FloorCasRelease(Line::new())
    }
}

impl Decide for FloorCasRelease {
    #[inline]
    fn decide(&self) -> bool {
        if !cas_raise(&self.0.a, u64::from(LIMIT)) {
            return false;
        }
        // Release, as a permit's release publishes its work.
        self.0.a.fetch_sub(1, Ordering::Release);
        true
    }

    fn check(&self) -> Result<(), String> {
        match self.0.a.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(format!("{n} still counted")),
        }
    }
}

/// `base/floor_add_cas`: a `fetch_add` of one word, then `cas_raise` of its neighbour in the
/// same line: the shape of a ratio budget's deposit and withdrawal ([`RatioBudget`]), which
/// count a request, then grant a retry only after reading the retries already granted.
pub(crate) struct FloorAddCas(Line);

impl FloorAddCas {
    pub(crate) fn new() -> FloorAddCas {
        FloorAddCas(Line::new())
    }
}

impl Decide for FloorAddCas {
    #[inline]
    fn decide(&self) -> bool {
        // Relaxed: a count, as a deposit is.
        self.0.a.fetch_add(1, Ordering::Relaxed);
        cas_raise(&self.0.b, u64::MAX)
    }
}
