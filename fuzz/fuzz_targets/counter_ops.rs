//! Counters, interval readers and gauges against plain integer models.
//!
//! The input is a sequence of operations on a few counters (add, inc, get, add through a clone,
//! add from a short-lived thread, drop and re-create), interval readers (make, delta) and gauges
//! (set, add, sub, inc, dec, get; `i64` and `f64`). The models are a `u64` per counter, an
//! `i64` per gauge and an `f64`, all with wrapping (or IEEE) arithmetic; weir must agree with
//! them after every operation that reads.
//!
//! Counters are re-created often and the fuzzer runs many inputs in one process, so this also
//! checks that a recycled counter id starts at zero, and (through the helper threads) that
//! cells continue correctly across slot release and reuse.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::{Counter, CounterReader, FloatGauge, Gauge};

const COUNTERS: usize = 3;
const READERS: usize = 3;
const GAUGES: usize = 2;
const MAX_OPS: usize = 256;
/// Thread spawns per input: they are slow, a few suffice to move cells between slots.
const MAX_THREADS: usize = 4;

#[derive(Arbitrary, Debug)]
enum Op {
    Add { c: u8, n: u64 },
    AddSmall { c: u8, n: u8 },
    Inc { c: u8 },
    Get { c: u8 },
    AddViaClone { c: u8, n: u64 },
    AddFromThread { c: u8, n: u64 },
    Recreate { c: u8 },
    NewReader { r: u8, c: u8 },
    ReaderDelta { r: u8 },
    GaugeSet { g: u8, v: i64 },
    GaugeAdd { g: u8, n: i64 },
    GaugeSub { g: u8, n: i64 },
    GaugeInc { g: u8 },
    GaugeDec { g: u8 },
    GaugeGet { g: u8 },
    FloatSet { v: f64 },
    FloatAdd { d: f64 },
    FloatGet,
}

/// A counter handle and the index of its model value. Readers keep their own clone of the
/// counter they follow, so a re-created counter gets a new model value and the old one lives on
/// (unchanged) for its readers.
struct Model {
    counters: Vec<(Counter, usize)>,
    values: Vec<u64>,
    readers: Vec<Option<(CounterReader, usize, u64)>>,
    gauges: Vec<(Gauge, i64)>,
    float: (FloatGauge, f64),
    threads: usize,
}

fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl Model {
    fn new() -> Model {
        let counters: Vec<_> = (0..COUNTERS).map(|i| (Counter::new(), i)).collect();
        for (c, _) in &counters {
            assert_eq!(c.get(), 0, "a new counter starts at zero");
        }
        Model {
            counters,
            values: vec![0; COUNTERS],
            readers: (0..READERS).map(|_| None).collect(),
            gauges: (0..GAUGES).map(|_| (Gauge::new(), 0)).collect(),
            float: (FloatGauge::new(), 0.0),
            threads: 0,
        }
    }

    fn add(&mut self, c: u8, n: u64) {
        let (counter, v) = &self.counters[usize::from(c) % COUNTERS];
        counter.add(n);
        self.values[*v] = self.values[*v].wrapping_add(n);
    }

    fn check(&self, c: usize) {
        let (counter, v) = &self.counters[c];
        assert_eq!(counter.get(), self.values[*v], "counter {c}");
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Add { c, n } => self.add(c, n),
            Op::AddSmall { c, n } => self.add(c, u64::from(n)),
            Op::Inc { c } => {
                let (counter, v) = &self.counters[usize::from(c) % COUNTERS];
                counter.inc();
                self.values[*v] = self.values[*v].wrapping_add(1);
            }
            Op::Get { c } => self.check(usize::from(c) % COUNTERS),
            Op::AddViaClone { c, n } => {
                let (counter, v) = &self.counters[usize::from(c) % COUNTERS];
                let clone = counter.clone();
                clone.add(n);
                drop(clone);
                self.values[*v] = self.values[*v].wrapping_add(n);
            }
            Op::AddFromThread { c, n } => {
                if self.threads >= MAX_THREADS {
                    return self.add(c, n);
                }
                self.threads += 1;
                let (counter, v) = &self.counters[usize::from(c) % COUNTERS];
                let clone = counter.clone();
                std::thread::spawn(move || clone.add(n))
                    .join()
                    .expect("helper thread");
                self.values[*v] = self.values[*v].wrapping_add(n);
            }
            Op::Recreate { c } => {
                let c = usize::from(c) % COUNTERS;
                // Drop the old handle first, so its id can be recycled by the new counter.
                self.counters[c].0 = Counter::new();
                self.values.push(0);
                self.counters[c].1 = self.values.len() - 1;
                self.check(c);
            }
            Op::NewReader { r, c } => {
                let (counter, v) = &self.counters[usize::from(c) % COUNTERS];
                let reader = counter.reader();
                assert_eq!(reader.last_total(), self.values[*v]);
                self.readers[usize::from(r) % READERS] = Some((reader, *v, self.values[*v]));
            }
            Op::ReaderDelta { r } => {
                if let Some((reader, v, last)) = &mut self.readers[usize::from(r) % READERS] {
                    let now = self.values[*v];
                    assert_eq!(reader.delta(), now.wrapping_sub(*last), "reader {r}");
                    assert_eq!(reader.last_total(), now);
                    *last = now;
                }
            }
            Op::GaugeSet { g, v } => {
                let (gauge, model) = &mut self.gauges[usize::from(g) % GAUGES];
                gauge.set(v);
                *model = v;
            }
            Op::GaugeAdd { g, n } => {
                let (gauge, model) = &mut self.gauges[usize::from(g) % GAUGES];
                gauge.add(n);
                *model = model.wrapping_add(n);
            }
            Op::GaugeSub { g, n } => {
                let (gauge, model) = &mut self.gauges[usize::from(g) % GAUGES];
                gauge.sub(n);
                *model = model.wrapping_sub(n);
            }
            Op::GaugeInc { g } => {
                let (gauge, model) = &mut self.gauges[usize::from(g) % GAUGES];
                gauge.inc();
                *model = model.wrapping_add(1);
            }
            Op::GaugeDec { g } => {
                let (gauge, model) = &mut self.gauges[usize::from(g) % GAUGES];
                gauge.dec();
                *model = model.wrapping_sub(1);
            }
            Op::GaugeGet { g } => {
                let (gauge, model) = &self.gauges[usize::from(g) % GAUGES];
                assert_eq!(gauge.get(), *model, "gauge {g}");
            }
            Op::FloatSet { v } => {
                self.float.0.set(v);
                self.float.1 = v;
            }
            Op::FloatAdd { d } => {
                self.float.0.add(d);
                self.float.1 += d;
            }
            Op::FloatGet => {
                let (got, want) = (self.float.0.get(), self.float.1);
                assert!(same_f64(got, want), "float gauge {got} vs {want}");
            }
        }
    }

    fn check_all(&mut self) {
        for c in 0..COUNTERS {
            self.check(c);
        }
        for (r, reader) in self.readers.iter_mut().enumerate() {
            if let Some((reader, v, last)) = reader {
                let now = self.values[*v];
                assert_eq!(reader.delta(), now.wrapping_sub(*last), "reader {r}");
                *last = now;
            }
        }
        for (g, (gauge, model)) in self.gauges.iter().enumerate() {
            assert_eq!(gauge.get(), *model, "gauge {g}");
        }
        let (got, want) = (self.float.0.get(), self.float.1);
        assert!(same_f64(got, want), "float gauge {got} vs {want}");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut model = Model::new();
    for op in ops.into_iter().take(MAX_OPS) {
        model.apply(op);
    }
    model.check_all();
});
