//! The breaker's metric handles, obtained once from a [`Registry`] when the breaker is built.
#![forbid(unsafe_code)]

use crate::counter::{Counter, FloatGauge};
use crate::error::RegistryError;
use crate::registry::Registry;

use super::State;

/// `circuit_breaker_requests_total{name, result}`.
pub(crate) const REQUESTS: &str = "circuit_breaker_requests_total";
/// `circuit_breaker_state{name}`: 0 closed, 0.5 half-open, 1 open.
pub(crate) const STATE: &str = "circuit_breaker_state";
/// `circuit_breaker_transitions_total{name, from, to}`.
pub(crate) const TRANSITIONS: &str = "circuit_breaker_transitions_total";

/// Values of the `result` label of `circuit_breaker_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestResult {
    /// A permitted call succeeded.
    Success = 0,
    /// A permitted call failed.
    Failure = 1,
    /// A permitted call's outcome was ignored (or its permit dropped unrecorded).
    Ignored = 2,
    /// A call was rejected.
    Rejected = 3,
    /// A call would have been rejected, and was admitted because the breaker is in shadow mode.
    ShadowRejected = 4,
}

const RESULTS: [&str; 5] = [
    "success",
    "failure",
    "ignored",
    "rejected",
    "shadow_rejected",
];

const STATES: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

fn state_index(s: State) -> usize {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
    }
}

/// Handles for one breaker (one `name` label value).
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: [Counter; 5],
    pub(crate) state: FloatGauge,
    /// Indexed `[from][to]`; the diagonal is unused (never a transition).
    transitions: [[Option<Counter>; 3]; 3],
}

impl Metrics {
    pub(crate) fn register(registry: &Registry, name: &str) -> Result<Metrics, RegistryError> {
        let requests = registry.counter_family(
            REQUESTS,
            "Circuit breaker decisions and call outcomes, by result",
            &["name", "result"],
        )?;
        let state = registry
            .float_gauge_family(
                STATE,
                "Circuit breaker state: 0 closed, 0.5 half-open, 1 open",
                &["name"],
            )?
            .with(&[name])?;
        let transitions = registry.counter_family(
            TRANSITIONS,
            "Circuit breaker state transitions",
            &["name", "from", "to"],
        )?;
        let mut reqs = Vec::with_capacity(RESULTS.len());
        for r in RESULTS {
            reqs.push(requests.with(&[name, r])?);
        }
        let requests: [Counter; 5] = match reqs.try_into() {
            Ok(a) => a,
            Err(_) => unreachable!("five results"),
        };
        let mut t: [[Option<Counter>; 3]; 3] = Default::default();
        for from in STATES {
            for to in STATES {
                if from != to {
                    t[state_index(from)][state_index(to)] =
                        Some(transitions.with(&[name, from.as_str(), to.as_str()])?);
                }
            }
        }
        state.set(State::Closed.gauge_value());
        Ok(Metrics {
            requests,
            state,
            transitions: t,
        })
    }

    #[inline]
    pub(crate) fn request(&self, r: RequestResult) {
        self.requests[r as usize].inc();
    }

    pub(crate) fn transition(&self, from: State, to: State) {
        if let Some(c) = &self.transitions[state_index(from)][state_index(to)] {
            c.inc();
        }
    }
}
