//! Shared timing helpers for the wasmvol benchmarks in `benches/`.

use std::time::{Duration, Instant};

/// Median and 90th percentile of `n` timed runs of `f`, after `n / 10` warm-ups.
pub fn measure(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..n / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 2], times[n * 9 / 10])
}

/// One result line, with the verdict against a budget on the median.
pub fn report(name: &str, (median, p90): (Duration, Duration), budget: Option<Duration>) {
    let verdict = match budget {
        Some(b) if median <= b => format!("ok (budget {b:?})"),
        Some(b) => format!("OVER BUDGET {b:?}"),
        None => String::new(),
    };
    println!("{name:<52} median {median:>10.1?}  p90 {p90:>10.1?}  {verdict}");
}
