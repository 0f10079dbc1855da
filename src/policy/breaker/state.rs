//! The breaker's packed state word: one `u64` holding the state, the generation and a
//! state-dependent payload, read through the [`Snapshot`] newtype and changed only by
//! compare-and-swap from one snapshot to the next.
//!
//! Layout (bit 0 is the least significant):
//!
//! ```text
//!  63                                26 25                      2 1   0
//! +------------------------------------+-------------------------+-----+
//! |            payload (38)            |     generation (24)     |state|
//! +------------------------------------+-------------------------+-----+
//!
//! payload when Closed:    bits 26..58  consecutive failures (saturating)
//! payload when Open:      bits 26..64  open-until, milliseconds on the clock, modulo 2^38
//! payload when HalfOpen:  bits 26..42  probes in flight
//!                         bits 42..58  successful probes so far
//! ```
//!
//! Every transition between states adds one to the generation (modulo 2^24), so a permit that
//! remembers the generation it was issued in can tell that the breaker has moved on since.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

/// Bits 0..2: which state the breaker is in (`STATE_CLOSED`, `STATE_OPEN`, `STATE_HALF_OPEN`).
const STATE_MASK: u64 = 0b11;
/// State value: closed, calls flow and outcomes are counted.
const STATE_CLOSED: u64 = 0;
/// State value: open, calls are rejected until the open-until time in the payload.
const STATE_OPEN: u64 = 1;
/// State value: half-open, a bounded number of probe calls flow.
const STATE_HALF_OPEN: u64 = 2;

/// Bit offset of the generation field.
const GEN_SHIFT: u32 = 2;
/// Width of the generation field: 24 bits, so a permit is recognised as stale unless the
/// breaker made a multiple of 2^24 transitions while it was out (see docs/policy-breaker.md).
const GEN_BITS: u32 = 24;
/// The generation field's values, before shifting.
pub(crate) const GEN_MAX: u64 = (1 << GEN_BITS) - 1;

/// Bit offset of the state-dependent payload.
const PAYLOAD_SHIFT: u32 = GEN_SHIFT + GEN_BITS;
/// Width of the payload: the rest of the word.
const PAYLOAD_BITS: u32 = 64 - PAYLOAD_SHIFT;
/// The payload's values, before shifting.
const PAYLOAD_MAX: u64 = (1 << PAYLOAD_BITS) - 1;

/// Closed payload: consecutive failures, the low 32 bits of the payload (saturating there).
const CONSECUTIVE_MAX: u64 = u32::MAX as u64;

/// Open payload: the open-until time in milliseconds, modulo 2^38 (about 8.7 years); compared
/// with wrapping arithmetic, so it is exact for open durations below 2^37 ms.
pub(crate) const TIME_MASK: u64 = PAYLOAD_MAX;
/// Open durations are limited to this (365 days), well inside the wrapping comparison's range.
pub(crate) const MAX_OPEN: Duration = Duration::from_secs(365 * 24 * 3600);

/// Half-open payload: probes in flight, the low 16 bits of the payload.
const PROBES_MASK: u64 = 0xffff;
/// Half-open payload: successful probes, the next 16 bits of the payload.
const SUCCESS_SHIFT: u32 = 16;
/// Largest probe count and success count a half-open payload holds.
pub(crate) const HALF_OPEN_FIELD_MAX: u64 = 0xffff;

/// The three states of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are counted, and enough failures trip the breaker open.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A bounded number of probe calls flow; enough successes close the breaker, any failure
    /// reopens it.
    HalfOpen,
}

impl State {
    /// The value of the `circuit_breaker_state` gauge: 0 closed, 0.5 half-open, 1 open (as
    /// lift reports it).
    pub fn gauge_value(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 0.5,
            State::Open => 1.0,
        }
    }

    /// A short lowercase name, as used in metric labels (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Milliseconds on the clock, modulo 2^38, for the open-until payload. Rounds up so a breaker
/// never half-opens before its open duration is over.
pub(crate) fn millis_ceil(d: Duration) -> u64 {
    // Seconds and sub-second parts separately: no 128-bit division. Wrapping: only the value
    // modulo 2^38 matters.
    let ms = d
        .as_secs()
        .wrapping_mul(1000)
        .wrapping_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
    ms & TIME_MASK
}

/// Milliseconds on the clock, modulo 2^38, rounding down (for "now").
pub(crate) fn millis_floor(d: Duration) -> u64 {
    let ms = d
        .as_secs()
        .wrapping_mul(1000)
        .wrapping_add(u64::from(d.subsec_millis()));
    ms & TIME_MASK
}

/// One reading of the packed state word. Cheap to copy; building a new one never touches the
/// atomic, so every transition is "read a snapshot, build the next, CAS".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(u64);

impl Snapshot {
    /// The initial word: closed, generation 0, no failures.
    pub(crate) const INITIAL: Snapshot = Snapshot(STATE_CLOSED);

    pub(crate) fn from_bits(bits: u64) -> Snapshot {
        Snapshot(bits)
    }

    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    pub(crate) fn state(self) -> State {
        match self.0 & STATE_MASK {
            STATE_CLOSED => State::Closed,
            STATE_OPEN => State::Open,
            // Only the three values are ever stored; treat the fourth like half-open.
            _ => State::HalfOpen,
        }
    }

    pub(crate) fn generation(self) -> u32 {
        ((self.0 >> GEN_SHIFT) & GEN_MAX) as u32
    }

    fn payload(self) -> u64 {
        self.0 >> PAYLOAD_SHIFT
    }

    /// Consecutive failures (meaningful when closed).
    pub(crate) fn consecutive_failures(self) -> u32 {
        (self.payload() & CONSECUTIVE_MAX) as u32
    }

    /// Open-until, milliseconds modulo 2^38 (meaningful when open).
    pub(crate) fn open_until_ms(self) -> u64 {
        self.payload() & TIME_MASK
    }

    /// Whether an open breaker's open duration is over at `now_ms` (milliseconds modulo 2^38,
    /// compared with wrapping arithmetic).
    pub(crate) fn open_expired(self, now_ms: u64) -> bool {
        let d = now_ms.wrapping_sub(self.open_until_ms()) & TIME_MASK;
        d < (1 << (PAYLOAD_BITS - 1))
    }

    /// Milliseconds left until an open breaker may half-open (0 if expired).
    pub(crate) fn open_remaining_ms(self, now_ms: u64) -> u64 {
        if self.open_expired(now_ms) {
            0
        } else {
            self.open_until_ms().wrapping_sub(now_ms) & TIME_MASK
        }
    }

    /// Probes in flight (meaningful when half-open).
    pub(crate) fn probes(self) -> u32 {
        (self.payload() & PROBES_MASK) as u32
    }

    /// Successful probes so far (meaningful when half-open).
    pub(crate) fn successes(self) -> u32 {
        ((self.payload() >> SUCCESS_SHIFT) & PROBES_MASK) as u32
    }

    fn pack(state: u64, generation: u32, payload: u64) -> Snapshot {
        Snapshot(
            state
                | ((u64::from(generation) & GEN_MAX) << GEN_SHIFT)
                | ((payload & PAYLOAD_MAX) << PAYLOAD_SHIFT),
        )
    }

    fn next_generation(self) -> u32 {
        ((u64::from(self.generation()) + 1) & GEN_MAX) as u32
    }

    /// Same state and generation, consecutive failures `n` (closed only).
    pub(crate) fn with_consecutive(self, n: u64) -> Snapshot {
        Snapshot::pack(STATE_CLOSED, self.generation(), n.min(CONSECUTIVE_MAX))
    }

    /// Same state and generation, the given probe and success counts (half-open only).
    pub(crate) fn with_probes(self, probes: u32, successes: u32) -> Snapshot {
        let p = u64::from(probes).min(HALF_OPEN_FIELD_MAX);
        let s = u64::from(successes).min(HALF_OPEN_FIELD_MAX);
        Snapshot::pack(STATE_HALF_OPEN, self.generation(), p | (s << SUCCESS_SHIFT))
    }

    /// The next generation, open until `until_ms`.
    pub(crate) fn to_open(self, until_ms: u64) -> Snapshot {
        Snapshot::pack(STATE_OPEN, self.next_generation(), until_ms & TIME_MASK)
    }

    /// The next generation, half-open with `probes` probes in flight and no successes.
    pub(crate) fn to_half_open(self, probes: u32) -> Snapshot {
        Snapshot::pack(STATE_HALF_OPEN, self.next_generation(), 0).with_probes(probes, 0)
    }

    /// The next generation, closed with no failures.
    pub(crate) fn to_closed(self) -> Snapshot {
        Snapshot::pack(STATE_CLOSED, self.next_generation(), 0)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Snapshot");
        d.field("state", &self.state())
            .field("generation", &self.generation());
        match self.state() {
            State::Closed => d.field("consecutive_failures", &self.consecutive_failures()),
            State::Open => d.field("open_until_ms", &self.open_until_ms()),
            State::HalfOpen => d
                .field("probes", &self.probes())
                .field("successes", &self.successes()),
        };
        d.finish()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let s = Snapshot::INITIAL;
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.generation(), 0);
        let s = s.with_consecutive(7);
        assert_eq!(s.consecutive_failures(), 7);
        assert_eq!(
            s.with_consecutive(u64::MAX).consecutive_failures(),
            u32::MAX
        );
        let o = s.to_open(123_456);
        assert_eq!(o.state(), State::Open);
        assert_eq!(o.generation(), 1);
        assert_eq!(o.open_until_ms(), 123_456);
        let h = o.to_half_open(1);
        assert_eq!(
            (h.state(), h.generation(), h.probes(), h.successes()),
            (State::HalfOpen, 2, 1, 0)
        );
        let h = h.with_probes(3, 2);
        assert_eq!((h.probes(), h.successes(), h.generation()), (3, 2, 2));
        let c = h.to_closed();
        assert_eq!(
            (c.state(), c.generation(), c.consecutive_failures()),
            (State::Closed, 3, 0)
        );
        assert_eq!(Snapshot::from_bits(c.bits()), c);
        assert!(!format!("{h:?}").is_empty());
    }

    #[test]
    fn generation_wraps() {
        let mut s = Snapshot::pack(STATE_CLOSED, GEN_MAX as u32, 0);
        s = s.to_open(0);
        assert_eq!(s.generation(), 0);
        assert_eq!(s.state(), State::Open);
    }

    #[test]
    fn open_expiry_wraps() {
        let until = TIME_MASK - 5; // just below the wrap
        let o = Snapshot::INITIAL.to_open(until);
        assert!(!o.open_expired(until - 1));
        assert_eq!(o.open_remaining_ms(until - 1), 1);
        assert!(o.open_expired(until));
        assert!(o.open_expired(3)); // wrapped past the end: expired
        assert_eq!(o.open_remaining_ms(3), 0);
        let o = Snapshot::INITIAL.to_open(4); // until wrapped
        assert!(!o.open_expired(TIME_MASK - 1));
        assert_eq!(o.open_remaining_ms(TIME_MASK), 5);
    }

    #[test]
    fn millis_rounding() {
        assert_eq!(millis_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(millis_floor(Duration::from_nanos(999_999)), 0);
        assert_eq!(millis_ceil(Duration::from_millis(5)), 5);
        assert!(millis_ceil(Duration::MAX) <= TIME_MASK);
        // The same values as 128-bit arithmetic, modulo 2^38.
        for d in [
            Duration::new(0, 1),
            Duration::new(1, 999_999_999),
            Duration::new(123_456_789, 1_000_001),
            Duration::new(u64::MAX / 999, 5),
            Duration::MAX,
        ] {
            assert_eq!(
                millis_ceil(d),
                (d.as_nanos().div_ceil(1_000_000) as u64) & TIME_MASK
            );
            assert_eq!(millis_floor(d), (d.as_millis() as u64) & TIME_MASK);
        }
    }
}
