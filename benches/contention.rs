//! Criterion contention matrix (being written).
fn main() {}
