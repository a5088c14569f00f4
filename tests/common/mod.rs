//! Shared by the integration tests: the device every test runs on, and small helpers.
#![allow(dead_code)]

/// The device the tests run on: `Cpu`, or `Cuda` under `--features cuda`, so the same tests
/// cover both.
#[cfg(not(feature = "cuda"))]
pub type TestDevice = dfdx::tensor::Cpu;
/// The device the tests run on: `Cpu`, or `Cuda` under `--features cuda`, so the same tests
/// cover both.
#[cfg(feature = "cuda")]
pub type TestDevice = dfdx::tensor::Cuda;

/// Asserts two types are the same (the compiler does the checking).
pub fn same_type<T>(_: &T, _: &T) {}

/// A seeded generator of uniform values in [-1, 1).
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Rng(rand::rngs::StdRng::seed_from_u64(seed))
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        use rand::Rng as _;
        (0..n).map(|_| self.0.gen_range(-1.0..1.0)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        use rand::Rng as _;
        self.0.gen_range(0..n)
    }
}

/// Largest absolute difference, after checking the lengths agree.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Central finite differences of `sum(f(v) * r)` with respect to every element of `v`.
pub fn finite_diff(v: &[f64], r: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let eps = 1e-6;
    let mut v = v.to_vec();
    (0..v.len())
        .map(|i| {
            let keep = v[i];
            v[i] = keep + eps;
            let up: f64 = f(&v).iter().zip(r).map(|(a, b)| a * b).sum();
            v[i] = keep - eps;
            let down: f64 = f(&v).iter().zip(r).map(|(a, b)| a * b).sum();
            v[i] = keep;
            (up - down) / (2.0 * eps)
        })
        .collect()
}
