//! Fuzz the circuit breaker with arbitrary operation sequences (acquire, success, failure,
//! ignore, drop, clock advance, reset) against a small sequential reference model of the
//! state machine, checking every decision, every recorded outcome, the status and the
//! transition log after each step.
#![no_main]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::ManualClock;
use weir::policy::breaker::{
    CircuitBreaker, Decision, Outcome, Permit, Recorded, RejectReason, SlidingWindow, SlowCall,
    State, Transition,
};

#[derive(Arbitrary, Debug)]
struct Input {
    consecutive: u8,
    failure_rate_pct: Option<u8>,
    slow: Option<(u16, u8)>,
    minimum_calls: u8,
    window_calls: u8,
    time_window: bool,
    open_ms: u16,
    max_probes: u8,
    success_threshold: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire,
    Record {
        which: u8,
        outcome: u8,
        millis: Option<u16>,
    },
    Drop {
        which: u8,
    },
    Advance {
        millis: u16,
    },
    Reset,
}

// === the reference model ===

#[derive(Clone, Copy, Debug, PartialEq)]
enum RState {
    Closed { consecutive: u32 },
    Open { until_ms: u64 },
    HalfOpen { probes: u32, successes: u32 },
}

impl RState {
    fn kind(self) -> State {
        match self {
            RState::Closed { .. } => State::Closed,
            RState::Open { .. } => State::Open,
            RState::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

struct Model {
    consecutive: u32,
    failure_rate: Option<f64>,
    slow: Option<(u64, f64)>,
    minimum_calls: u64,
    /// `Some(n)`: the last n calls; `None`: the time window of 10 buckets of 100 ms.
    window_calls: Option<usize>,
    open_ms: u64,
    max_probes: u32,
    success_threshold: u32,
    state: RState,
    generation: u32,
    /// (100 ms slot, failed, slow), oldest first, for the current closed generation.
    window: VecDeque<(u64, bool, bool)>,
    transitions: Vec<(State, State, u32)>,
}

/// What the model expects a record to return.
#[derive(Debug, PartialEq)]
enum Expect {
    Counted,
    Ignored,
    Stale,
    Transitioned(State, State),
}

impl Model {
    fn has_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow.is_some()
    }

    /// (calls, failures, slow) in the window at `now_ms`.
    fn counts(&self, now_ms: u64) -> (u64, u64, u64) {
        let slot = now_ms / 100;
        let live = self
            .window
            .iter()
            .filter(|(s, _, _)| self.window_calls.is_some() || slot - s < 10);
        let (mut c, mut f, mut sl) = (0, 0, 0);
        for (_, failed, slow) in live {
            c += 1;
            f += u64::from(*failed);
            sl += u64::from(*slow);
        }
        (c, f, sl)
    }

    fn go(&mut self, to: RState) -> Expect {
        let from = self.state.kind();
        self.generation = (self.generation + 1) & 0x00ff_ffff;
        self.state = to;
        self.transitions.push((from, to.kind(), self.generation));
        if to.kind() == State::Closed {
            self.window.clear();
        }
        Expect::Transitioned(from, to.kind())
    }

    /// `Some(is_probe)` if permitted.
    fn acquire(&mut self, now_ms: u64) -> Result<bool, RejectReason> {
        match self.state {
            RState::Closed { .. } => Ok(false),
            RState::Open { until_ms } if now_ms < until_ms => Err(RejectReason::Open {
                until: Duration::from_millis(until_ms),
                remaining: Duration::from_millis(until_ms - now_ms),
            }),
            RState::Open { .. } => {
                let _ = self.go(RState::HalfOpen {
                    probes: 1,
                    successes: 0,
                });
                Ok(true)
            }
            RState::HalfOpen { probes, successes } => {
                if probes >= self.max_probes {
                    Err(RejectReason::HalfOpenFull {
                        in_flight: probes,
                        max: self.max_probes,
                    })
                } else {
                    self.state = RState::HalfOpen {
                        probes: probes + 1,
                        successes,
                    };
                    Ok(true)
                }
            }
        }
    }

    fn is_slow(&self, d_ms: Option<u64>) -> bool {
        match (self.slow, d_ms) {
            (Some((threshold, _)), Some(d)) => d >= threshold,
            _ => false,
        }
    }

    fn record(
        &mut self,
        probe: bool,
        generation: u32,
        outcome: Outcome,
        d_ms: Option<u64>,
        now_ms: u64,
    ) -> Expect {
        let slow = outcome != Outcome::Ignored && self.is_slow(d_ms);
        if !probe {
            if outcome == Outcome::Ignored {
                return Expect::Ignored;
            }
            let failed = outcome == Outcome::Failure;
            let current = generation == self.generation && self.state.kind() == State::Closed;
            if current && self.has_window() {
                self.window.push_back((now_ms / 100, failed, slow));
                if self.window.len() > self.window_calls.unwrap_or(usize::MAX) {
                    self.window.pop_front();
                }
            }
            let RState::Closed { consecutive } = self.state else {
                return Expect::Stale;
            };
            if !current {
                return Expect::Stale;
            }
            if failed {
                let n = consecutive + 1;
                if self.consecutive > 0 && n >= self.consecutive {
                    return self.go(RState::Open {
                        until_ms: now_ms + self.open_ms,
                    });
                }
                self.state = RState::Closed { consecutive: n };
            } else {
                self.state = RState::Closed { consecutive: 0 };
            }
            if self.has_window() {
                let (calls, failures, slows) = self.counts(now_ms);
                if calls >= self.minimum_calls {
                    let trip = self
                        .failure_rate
                        .is_some_and(|t| failures as f64 / calls as f64 >= t)
                        || self
                            .slow
                            .is_some_and(|(_, t)| slows as f64 / calls as f64 >= t);
                    if trip {
                        return self.go(RState::Open {
                            until_ms: now_ms + self.open_ms,
                        });
                    }
                }
            }
            Expect::Counted
        } else {
            let RState::HalfOpen { probes, successes } = self.state else {
                return Expect::Stale;
            };
            if generation != self.generation {
                return Expect::Stale;
            }
            let bad = outcome == Outcome::Failure
                || (outcome == Outcome::Success && slow && self.slow.is_some());
            if outcome == Outcome::Ignored {
                self.state = RState::HalfOpen {
                    probes: probes - 1,
                    successes,
                };
                Expect::Ignored
            } else if bad {
                self.go(RState::Open {
                    until_ms: now_ms + self.open_ms,
                })
            } else if successes + 1 >= self.success_threshold {
                self.go(RState::Closed { consecutive: 0 })
            } else {
                self.state = RState::HalfOpen {
                    probes: probes - 1,
                    successes: successes + 1,
                };
                Expect::Counted
            }
        }
    }
}

fn expect_of(r: &Recorded) -> Expect {
    match r {
        Recorded::Counted => Expect::Counted,
        Recorded::Ignored => Expect::Ignored,
        Recorded::Stale { .. } => Expect::Stale,
        Recorded::Transitioned(t) => Expect::Transitioned(t.from, t.to),
        Recorded::Shadow => panic!("shadow outcome from an enforcing breaker"),
    }
}

struct Held<'a> {
    /// Borrowed or owned (both kinds are exercised).
    permit: Permit<'a>,
    probe: bool,
    generation: u32,
    acquired_ms: u64,
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let log: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let l = log.clone();
    let consecutive = u32::from(input.consecutive % 8);
    let failure_rate = input
        .failure_rate_pct
        .map(|p| f64::from(p % 100 + 1) / 100.0);
    let slow = input
        .slow
        .map(|(ms, pct)| (u64::from(ms % 1000), f64::from(pct % 100 + 1) / 100.0));
    let window = if input.time_window {
        SlidingWindow::Time {
            length: Duration::from_millis(1000),
            buckets: 10,
        }
    } else {
        SlidingWindow::Count {
            calls: u32::from(input.window_calls % 16) + 1,
        }
    };
    let mut builder = CircuitBreaker::builder("fuzz")
        .consecutive_failures(consecutive)
        .minimum_calls(u32::from(input.minimum_calls % 16) + 1)
        .window(window)
        .open_duration(Duration::from_millis(u64::from(input.open_ms)))
        .half_open_max_probes(u32::from(input.max_probes % 4) + 1)
        .success_threshold(u32::from(input.success_threshold % 4) + 1)
        .clock(clock.clone())
        .on_transition(move |t| l.lock().unwrap().push(*t));
    builder = match failure_rate {
        Some(r) => builder.failure_rate(r),
        None => builder.without_failure_rate(),
    };
    if let Some((ms, rate)) = slow {
        builder = builder.slow_calls(SlowCall::Fixed(Duration::from_millis(ms)), rate);
    }
    let Ok(b) = builder.build() else {
        // Only the "could never open" configuration is invalid here.
        assert!(consecutive == 0 && failure_rate.is_none() && slow.is_none());
        return;
    };
    let mut m = Model {
        consecutive,
        failure_rate,
        slow,
        minimum_calls: match window {
            SlidingWindow::Count { calls } => {
                u64::from(input.minimum_calls % 16 + 1).min(u64::from(calls))
            }
            SlidingWindow::Time { .. } => u64::from(input.minimum_calls % 16) + 1,
        },
        window_calls: (!input.time_window).then_some((input.window_calls % 16) as usize + 1),
        open_ms: u64::from(input.open_ms),
        max_probes: u32::from(input.max_probes % 4) + 1,
        success_threshold: u32::from(input.success_threshold % 4) + 1,
        state: RState::Closed { consecutive: 0 },
        generation: 0,
        window: VecDeque::new(),
        transitions: Vec::new(),
    };
    let mut held: Vec<Held<'_>> = Vec::new();
    for op in input.ops.iter().take(256) {
        let now_ms = clock.now().as_millis() as u64;
        match *op {
            Op::Acquire => {
                let expected = m.acquire(now_ms);
                // Every other permit holds its own handle to the breaker.
                let decision = if held.len().is_multiple_of(2) {
                    b.try_acquire()
                } else {
                    b.try_acquire_owned()
                };
                match (decision, expected) {
                    (Decision::Permitted(p), Ok(probe)) => {
                        assert_eq!(p.is_probe(), probe);
                        assert_eq!(p.generation(), m.generation);
                        if held.len() < 16 {
                            held.push(Held {
                                permit: p,
                                probe,
                                generation: m.generation,
                                acquired_ms: now_ms,
                            });
                        } else {
                            // Dropped unrecorded: ignored.
                            let e = m.record(probe, m.generation, Outcome::Ignored, None, now_ms);
                            drop(p);
                            assert!(e == Expect::Ignored || e == Expect::Counted);
                        }
                    }
                    (Decision::Rejected(r), Err(reason)) => assert_eq!(r.reason, reason),
                    (got, want) => panic!("acquire: got {got:?}, model {want:?}"),
                }
            }
            Op::Record {
                which,
                outcome,
                millis,
            } if !held.is_empty() => {
                let h = held.swap_remove(usize::from(which) % held.len());
                let outcome = match outcome % 3 {
                    0 => Outcome::Success,
                    1 => Outcome::Failure,
                    _ => Outcome::Ignored,
                };
                let given = millis.map(|ms| u64::from(ms % 2000));
                // Without a given duration, the breaker measures one on the clock.
                let d = given.unwrap_or(now_ms - h.acquired_ms);
                let want = m.record(h.probe, h.generation, outcome, Some(d), now_ms);
                let got = match given {
                    Some(ms) => h
                        .permit
                        .record_with_duration(outcome, Duration::from_millis(ms)),
                    None => h.permit.record(outcome),
                };
                assert_eq!(expect_of(&got), want, "{op:?}");
            }
            Op::Drop { which } if !held.is_empty() => {
                let h = held.swap_remove(usize::from(which) % held.len());
                let _ = m.record(h.probe, h.generation, Outcome::Ignored, None, now_ms);
                drop(h.permit);
            }
            Op::Advance { millis } => {
                clock.advance(Duration::from_millis(u64::from(millis % 5000)));
            }
            Op::Reset => {
                let t = b.reset();
                if m.state.kind() == State::Closed {
                    assert!(t.is_none());
                } else {
                    assert!(t.is_some());
                    let _ = m.go(RState::Closed { consecutive: 0 });
                }
            }
            _ => {}
        }
        check(&b, &m, &log, &held, clock.now().as_millis() as u64);
    }
    drop(held);
    let st = b.status();
    assert_eq!(st.probes_in_flight, 0);
});

fn check(
    b: &CircuitBreaker,
    m: &Model,
    log: &Mutex<Vec<Transition>>,
    held: &[Held<'_>],
    now_ms: u64,
) {
    let st = b.status();
    assert_eq!(st.state, m.state.kind());
    assert_eq!(st.generation, m.generation);
    match m.state {
        RState::Closed { consecutive } => {
            assert_eq!(st.consecutive_failures, consecutive);
            if m.consecutive > 0 {
                assert!(consecutive < m.consecutive);
            }
        }
        RState::Open { .. } => assert!(st.open_remaining.is_some()),
        RState::HalfOpen { probes, successes } => {
            assert_eq!(
                (st.probes_in_flight, st.probe_successes),
                (probes, successes)
            );
            assert!(probes <= m.max_probes);
            assert!(successes < m.success_threshold);
            // Every probe slot is held by a live permit of this generation.
            let live = held
                .iter()
                .filter(|h| h.probe && h.generation == m.generation)
                .count();
            assert_eq!(live as u32, probes);
        }
    }
    if m.has_window() && m.state.kind() == State::Closed {
        let w = st.window.expect("window");
        assert_eq!((w.calls, w.failures, w.slow), m.counts(now_ms));
    }
    let log = log.lock().unwrap();
    // One listener call per transition, in one chain: generations 1, 2, 3, ...
    assert_eq!(log.len(), m.transitions.len());
    let mut state = State::Closed;
    for (i, t) in log.iter().enumerate() {
        assert_eq!(t.generation as usize, i + 1);
        assert_eq!(t.from, state);
        state = t.to;
    }
    assert_eq!(state, st.state);
}
