//! Every op of the crate on `Cuda` against the same op on `Cpu`, forward and backward, in `f32`
//! and `f64` (the device kernels exist once per type; CI wants every kernel of `KERNELS` in
//! `src/ops/cuda/mod.rs` launched at least once, and this test launches them all).
//!
//! The CPU kernels are the oracle (`tests/ops.rs`, `tests/batch_norm.rs` and
//! `tests/conv_transpose.rs` hold them to loops written from the definitions, and their gradients
//! to finite differences). Geometries are drawn from a seeded `StdRng`: a fixed number per op,
//! small, with the discrete options (activation, fused pool, bias, batch, ReLU, pool kind) cycled
//! by draw so every combination comes up, and the numbers (kernel, stride, padding, dilation,
//! groups, sizes) drawn. Each draw uses the same inputs on both devices, and its own seed, which
//! every failure message names with the op and the case; `CUDA_VS_CPU_SEED=<n>` starts every
//! op's draws at seed `n` (by default 0xC0DA, 49370), and the message says which `n` repeats it.
//! A panic inside an op (a bounds check in a kernel) is reported with the same context.
//!
//! Every gradient starts from seeded values, not zero (a second term `Σ t ⊙ s` in the loss,
//! whose backward runs first), so a kernel that overwrites a gradient instead of adding to it
//! fails here too.
//!
//! Tolerance: the largest difference relative to the largest magnitude of the CPU's tensor,
//! `1e-4` in `f32` (the gemms and reductions sum in different orders), `1e-10` in `f64`.
#![cfg(feature = "cuda")]

mod common;

use cnn::ConvDevice;
use cnn::ops::add_relu::try_add_relu;
use cnn::ops::batch_norm::{BatchNormGeometry, try_batch_norm_infer, try_batch_norm_train};
use cnn::ops::{
    Activation, Conv2DGeometry, Conv2DOp, ConvTranspose2DGeometry, Pool2DGeometry, PoolKind,
    try_conv_transpose2d, try_conv2d, try_pool2d,
};
use cnn::shape::{conv_out, conv_transpose_out, pool_out};
use common::Rng;
use dfdx::prelude::*;
use dfdx::tensor::Cuda;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;

/// The first draw's seed unless `CUDA_VS_CPU_SEED` says otherwise; draw `i` uses `seed + i`.
const SEED: u64 = 0xC0DA;

/// The seed of each op's first draw.
fn first_seed() -> u64 {
    std::env::var("CUDA_VS_CPU_SEED")
        .ok()
        .map(|s| s.parse().expect("CUDA_VS_CPU_SEED is a number"))
        .unwrap_or(SEED)
}

/// Values per channel above which batch norm splits each channel's sums over several blocks
/// (`bn_grid` in `src/ops/cuda/mod.rs`: `shares = ceil(N / 4096)`).
const BN_SHARE: usize = 4096;

/// An element type the CUDA kernels exist for, with its tolerance.
trait Elem: cnn::Float {
    const NAME: &'static str;
    /// Largest difference allowed, relative to the largest magnitude of the CPU's values.
    const TOL: f64;
    fn of(v: f64) -> Self;
    fn back(self) -> f64;
}

impl Elem for f32 {
    const NAME: &'static str = "f32";
    const TOL: f64 = 1e-4;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn back(self) -> f64 {
        self.into()
    }
}

impl Elem for f64 {
    const NAME: &'static str = "f64";
    const TOL: f64 = 1e-10;
    fn of(v: f64) -> Self {
        v
    }
    fn back(self) -> f64 {
        self
    }
}

/// What one run of an op gives back: named tensors (output, running statistics, gradients).
type Outputs = Vec<(&'static str, Vec<f64>)>;

/// A flat tensor of `v` on `dev`.
fn tensor<E: Elem, D: ConvDevice<E>>(dev: &D, v: &[f64]) -> Tensor<(usize,), E, D> {
    dev.tensor_from_vec(v.iter().map(|&v| E::of(v)).collect(), (v.len(),))
}

/// A tensor's values as `f64`s.
fn values<E: Elem, D: ConvDevice<E>, T>(t: &Tensor<(usize,), E, D, T>) -> Vec<f64> {
    t.as_vec().into_iter().map(E::back).collect()
}

/// `Σ t ⊙ r`: a loss term whose gradient with respect to `t` is `r`.
fn dot<E: Elem, D: ConvDevice<E>>(
    t: Tensor<(usize,), E, D, OwnedTape<E, D>>,
    r: &Tensor<(usize,), E, D>,
) -> Tensor<(), E, D, OwnedTape<E, D>> {
    (t * r.clone()).sum()
}

/// `loss + Σ_t Σ t ⊙ s_t` with a drawn `s_t` for each of `ts`: added after the op ran, so its
/// backward runs first and each gradient already holds `s_t` when the op's backward adds to it.
fn seed_grads<E: Elem, D: ConvDevice<E>>(
    loss: Tensor<(), E, D, OwnedTape<E, D>>,
    ts: &[&Tensor<(usize,), E, D>],
    rng: &mut Rng,
) -> Tensor<(), E, D, OwnedTape<E, D>> {
    ts.iter().fold(loss, |loss, t| {
        let s = rng.vec(t.shape().0);
        loss + dot(t.leaky_trace(), &tensor(t.device(), &s))
    })
}

/// The seed of each of an op's `draws`.
fn seeds(draws: usize) -> impl Iterator<Item = (usize, u64)> {
    let first = first_seed();
    (0..draws).map(move |i| (i, first + i as u64))
}

/// `lo..=hi`, drawn.
fn pick(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below(hi - lo + 1)
}

/// Runs a draw on both devices and [`compare`]s the results; a panic inside either run (an op's
/// own assert, a kernel's bounds) is passed on with the op, the seed and the case added.
fn differential<E: Elem>(
    op: &str,
    seed: u64,
    case: &dyn Debug,
    cpu: impl FnOnce() -> Outputs,
    gpu: impl FnOnce() -> Outputs,
) {
    let on = |device: &str, result: std::thread::Result<Outputs>| {
        result.unwrap_or_else(|e| {
            let msg = (e.downcast_ref::<String>().map(String::as_str))
                .or(e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!(
                "{op} {}, seed {seed}: panicked on {device}: {msg}; in {case:?}; the same \
                 draws: CUDA_VS_CPU_SEED={}",
                E::NAME,
                first_seed(),
            )
        })
    };
    let want = on("Cpu", std::panic::catch_unwind(AssertUnwindSafe(cpu)));
    let got = on("Cuda", std::panic::catch_unwind(AssertUnwindSafe(gpu)));
    compare::<E>(op, seed, case, want, got);
}

/// Asserts that every tensor of `gpu` matches its namesake of `cpu` within `E::TOL` relative to
/// the largest magnitude of the CPU's, naming the op, the draw's seed and its case.
fn compare<E: Elem>(op: &str, seed: u64, case: &dyn Debug, cpu: Outputs, gpu: Outputs) {
    let names = |o: &Outputs| o.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    assert_eq!(names(&cpu), names(&gpu), "{op} {}: seed {seed}", E::NAME);
    for ((what, c), (_, g)) in cpu.iter().zip(&gpu) {
        assert_eq!(c.len(), g.len(), "{op} {}: {what} lengths", E::NAME);
        let scale = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (at, diff) = c
            .iter()
            .zip(g)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0.0f64),
                |m, (i, d)| if d > m.1 || d.is_nan() { (i, d) } else { m },
            );
        assert!(
            diff <= E::TOL * scale,
            "{op} {}, seed {seed}: {what} differs by {diff:.3e} at [{at}] (cpu {}, cuda {}; \
             largest |cpu| {scale:.3e}, tolerance {:e} of it) in {case:?}; the same draws: \
             CUDA_VS_CPU_SEED={}",
            E::NAME,
            c[at],
            g[at],
            E::TOL,
            first_seed(),
        );
    }
}

// ---------------------------------------------------------------------------------- conv2d

/// One conv2d draw.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    op: Conv2DOp,
    bias: bool,
}

/// One axis of a convolution: `(input, kernel, stride, top/left padding, dilation, output)`.
/// The bottom/right padding is the top/left one or one more (as `padding = same` makes it when
/// the total is odd); the output says which.
fn conv_axis(rng: &mut Rng) -> (usize, usize, usize, usize, usize, usize) {
    loop {
        let (k, s, d, n) = (
            pick(rng, 1, 4),
            pick(rng, 1, 3),
            pick(rng, 1, 2),
            pick(rng, 1, 11),
        );
        let begin = rng.below((d * (k - 1) + 1).min(3));
        let end = begin + rng.below(2);
        let out = conv_out(n, k, s, begin, end, d);
        // Conv2DGeometry's rule: the last window starts inside the top/left-padded input.
        if out > 0 && (out - 1) * s < n + begin {
            return (n, k, s, begin, d, out);
        }
    }
}

/// A pooling window over `input` with drawn kernel (at most 3, and at most the input), stride
/// and padding (at most half the kernel).
fn pool_over(rng: &mut Rng, kind: PoolKind, input: (usize, usize)) -> Pool2DGeometry {
    let mut axis = |n: usize| {
        let k = pick(rng, 1, n.min(3));
        let (s, p) = (pick(rng, 1, 3), rng.below(k / 2 + 1));
        (k, s, p, pool_out(n, k, s, p))
    };
    let (kh, sh, ph, oh) = axis(input.0);
    let (kw, sw, pw, ow) = axis(input.1);
    Pool2DGeometry {
        kind,
        input,
        output: (oh, ow),
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
    }
}

const ACTS: [Activation; 4] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Sigmoid,
    Activation::Tanh,
];

fn draw_conv(i: usize, rng: &mut Rng) -> ConvCase {
    let groups = pick(rng, 1, 3);
    let (h, kh, sh, ph, dh, oh) = conv_axis(rng);
    let (w, kw, sw, pw, dw, ow) = conv_axis(rng);
    let geom = Conv2DGeometry {
        batch: 1 + (i / 3) % 3,
        in_channels: groups * pick(rng, 1, 3),
        out_channels: groups * pick(rng, 1, 3),
        groups,
        input: (h, w),
        output: (oh, ow),
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
        dilation: (dh, dw),
    };
    let pool = match i % 3 {
        0 => None,
        1 => Some(pool_over(rng, PoolKind::Max, geom.output)),
        _ => Some(pool_over(rng, PoolKind::Avg, geom.output)),
    };
    ConvCase {
        op: Conv2DOp {
            geom,
            act: ACTS[i % 4],
            pool,
            input_grad: i % 5 != 4,
        },
        bias: i % 2 == 0,
    }
}

fn run_conv<E: Elem, D: ConvDevice<E>>(dev: &D, case: &ConvCase, seed: u64) -> Outputs {
    let Conv2DOp {
        geom: g,
        act,
        pool,
        input_grad,
    } = case.op;
    let mut rng = Rng::new(!seed);
    let (poh, pow) = pool.map_or(g.output, |p| p.output);
    let n_out = g.batch * g.out_channels * poh * pow;
    let x = tensor(
        dev,
        &rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1),
    );
    let cg = g.in_channels / g.groups;
    let w = tensor(dev, &rng.vec(g.out_channels * cg * g.kernel.0 * g.kernel.1));
    let b = case.bias.then(|| tensor(dev, &rng.vec(g.out_channels)));
    let out = try_conv2d(
        x.leaky_trace(),
        &w,
        b.as_ref(),
        g,
        act,
        pool,
        (n_out,),
        input_grad,
    )
    .unwrap();
    let y = values(&out);
    let loss = dot(out, &tensor(dev, &rng.vec(n_out)));
    let mut params = vec![&x, &w];
    params.extend(&b);
    let grads = seed_grads(loss, &params, &mut rng).backward();
    let mut outputs = vec![
        ("output", y),
        ("dx", values(&grads.get(&x))),
        ("dw", values(&grads.get(&w))),
    ];
    outputs.extend(b.map(|b| ("db", values(&grads.get(&b)))));
    outputs
}

fn conv2d_matches_cpu<E: Elem>()
where
    Cpu: ConvDevice<E>,
    Cuda: ConvDevice<E>,
{
    let (cpu, gpu) = (Cpu::default(), Cuda::default());
    for (i, seed) in seeds(12) {
        let case = draw_conv(i, &mut Rng::new(seed));
        differential::<E>(
            "conv2d",
            seed,
            &case,
            || run_conv::<E, _>(&cpu, &case, seed),
            || run_conv::<E, _>(&gpu, &case, seed),
        );
    }
}

#[test]
fn conv2d_matches_cpu_f32() {
    conv2d_matches_cpu::<f32>();
}

#[test]
fn conv2d_matches_cpu_f64() {
    conv2d_matches_cpu::<f64>();
}

/// What `CUDA_VS_CPU_SEED=1` drew (its seed 6, reduced): the last kernel column (dilation 2,
/// left padding 2) reads only the right padding for every output, and the CPU's im2col slices
/// the input row past its end (`src/ops/conv2d/cpu_kernel.rs`, `&src[start..start + hi - lo]`
/// with `start` 4 in a row of 3, although `lo == hi` and nothing is copied). The CUDA kernel
/// got it right; the CPU panicked, until im2col skipped the empty range (`tests/ops.rs` keeps
/// the CPU's own case).
#[test]
fn conv2d_kernel_column_in_the_padding_only() {
    fn check<E: Elem>()
    where
        Cpu: ConvDevice<E>,
        Cuda: ConvDevice<E>,
    {
        let (h, w) = (5, 3);
        let case = ConvCase {
            op: Conv2DOp {
                geom: Conv2DGeometry {
                    batch: 2,
                    in_channels: 2,
                    out_channels: 2,
                    groups: 1,
                    input: (h, w),
                    output: (conv_out(h, 3, 1, 1, 1, 1), conv_out(w, 4, 1, 2, 2, 2)),
                    kernel: (3, 4),
                    stride: (1, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                },
                act: Activation::Identity,
                pool: None,
                input_grad: true,
            },
            bias: true,
        };
        let (cpu, gpu) = (Cpu::default(), Cuda::default());
        differential::<E>(
            "conv2d (the fixed case)",
            0,
            &case,
            || run_conv::<E, _>(&cpu, &case, 0),
            || run_conv::<E, _>(&gpu, &case, 0),
        );
    }
    check::<f32>();
    check::<f64>();
}

// ------------------------------------------------------------------------ conv_transpose2d

/// One conv_transpose2d draw.
#[derive(Clone, Copy, Debug)]
struct ConvTransposeCase {
    geom: ConvTranspose2DGeometry,
    bias: bool,
}

/// One axis of a transposed convolution: `(input, kernel, stride, padding, output_padding,
/// dilation, output)`; `output_padding` below the stride or the dilation, as PyTorch requires.
fn conv_transpose_axis(rng: &mut Rng) -> (usize, usize, usize, usize, usize, usize, usize) {
    loop {
        let (k, s, d, n) = (
            pick(rng, 1, 4),
            pick(rng, 1, 3),
            pick(rng, 1, 2),
            pick(rng, 1, 6),
        );
        let (p, op) = (rng.below(3), rng.below(s.max(d)));
        let out = conv_transpose_out(n, k, s, p, op, d);
        if out > 0 {
            return (n, k, s, p, op, d, out);
        }
    }
}

fn draw_conv_transpose(i: usize, rng: &mut Rng) -> ConvTransposeCase {
    let groups = pick(rng, 1, 3);
    let (h, kh, sh, ph, oph, dh, oh) = conv_transpose_axis(rng);
    let (w, kw, sw, pw, opw, dw, ow) = conv_transpose_axis(rng);
    ConvTransposeCase {
        geom: ConvTranspose2DGeometry {
            batch: 1 + (i / 2) % 3,
            in_channels: groups * pick(rng, 1, 3),
            out_channels: groups * pick(rng, 1, 3),
            groups,
            input: (h, w),
            output: (oh, ow),
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            output_padding: (oph, opw),
            dilation: (dh, dw),
        },
        bias: i % 2 == 0,
    }
}

fn run_conv_transpose<E: Elem, D: ConvDevice<E>>(
    dev: &D,
    case: &ConvTransposeCase,
    seed: u64,
) -> Outputs {
    let g = case.geom;
    let mut rng = Rng::new(!seed);
    let n_out = g.batch * g.out_channels * g.output.0 * g.output.1;
    let x = tensor(
        dev,
        &rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1),
    );
    let og = g.out_channels / g.groups;
    let w = tensor(dev, &rng.vec(g.in_channels * og * g.kernel.0 * g.kernel.1));
    let b = case.bias.then(|| tensor(dev, &rng.vec(g.out_channels)));
    let out = try_conv_transpose2d(x.leaky_trace(), &w, b.as_ref(), g, (n_out,)).unwrap();
    let y = values(&out);
    let loss = dot(out, &tensor(dev, &rng.vec(n_out)));
    let mut params = vec![&x, &w];
    params.extend(&b);
    let grads = seed_grads(loss, &params, &mut rng).backward();
    let mut outputs = vec![
        ("output", y),
        ("dx", values(&grads.get(&x))),
        ("dw", values(&grads.get(&w))),
    ];
    outputs.extend(b.map(|b| ("db", values(&grads.get(&b)))));
    outputs
}

fn conv_transpose2d_matches_cpu<E: Elem>()
where
    Cpu: ConvDevice<E>,
    Cuda: ConvDevice<E>,
{
    let (cpu, gpu) = (Cpu::default(), Cuda::default());
    for (i, seed) in seeds(10) {
        let case = draw_conv_transpose(i, &mut Rng::new(seed));
        differential::<E>(
            "conv_transpose2d",
            seed,
            &case,
            || run_conv_transpose::<E, _>(&cpu, &case, seed),
            || run_conv_transpose::<E, _>(&gpu, &case, seed),
        );
    }
}

#[test]
fn conv_transpose2d_matches_cpu_f32() {
    conv_transpose2d_matches_cpu::<f32>();
}

#[test]
fn conv_transpose2d_matches_cpu_f64() {
    conv_transpose2d_matches_cpu::<f64>();
}

// ---------------------------------------------------------------------------------- pool2d

/// One pool2d draw: the window, over `planes` planes.
#[derive(Clone, Copy, Debug)]
struct PoolCase {
    geom: Pool2DGeometry,
    planes: usize,
}

fn draw_pool(i: usize, rng: &mut Rng) -> PoolCase {
    let kind = [PoolKind::Max, PoolKind::Avg][i % 2];
    // windows up to 4 wide (pool_over keeps to 3) over planes as small as one pixel
    let mut axis = || loop {
        let (n, k, s) = (pick(rng, 1, 9), pick(rng, 1, 4), pick(rng, 1, 3));
        let p = rng.below(k / 2 + 1);
        let out = pool_out(n, k, s, p);
        if out > 0 {
            return (n, k, s, p, out);
        }
    };
    let (h, kh, sh, ph, oh) = axis();
    let (w, kw, sw, pw, ow) = axis();
    PoolCase {
        geom: Pool2DGeometry {
            kind,
            input: (h, w),
            output: (oh, ow),
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
        },
        planes: pick(rng, 1, 3) * pick(rng, 1, 4),
    }
}

fn run_pool<E: Elem, D: ConvDevice<E>>(dev: &D, case: &PoolCase, seed: u64) -> Outputs {
    let g = case.geom;
    let mut rng = Rng::new(!seed);
    let n_out = case.planes * g.output.0 * g.output.1;
    let x = tensor(dev, &rng.vec(case.planes * g.input.0 * g.input.1));
    let out = try_pool2d(x.leaky_trace(), g, (n_out,)).unwrap();
    let y = values(&out);
    let loss = dot(out, &tensor(dev, &rng.vec(n_out)));
    let grads = seed_grads(loss, &[&x], &mut rng).backward();
    vec![("output", y), ("dx", values(&grads.get(&x)))]
}

fn pool2d_matches_cpu<E: Elem>()
where
    Cpu: ConvDevice<E>,
    Cuda: ConvDevice<E>,
{
    let (cpu, gpu) = (Cpu::default(), Cuda::default());
    for (i, seed) in seeds(10) {
        let case = draw_pool(i, &mut Rng::new(seed));
        differential::<E>(
            "pool2d",
            seed,
            &case,
            || run_pool::<E, _>(&cpu, &case, seed),
            || run_pool::<E, _>(&gpu, &case, seed),
        );
    }
}

#[test]
fn pool2d_matches_cpu_f32() {
    pool2d_matches_cpu::<f32>();
}

#[test]
fn pool2d_matches_cpu_f64() {
    pool2d_matches_cpu::<f64>();
}

// ------------------------------------------------------------------------------ batch norm

/// One batch-norm draw: the geometry, and the offset added to the drawn inputs (activations
/// are not centred).
#[derive(Clone, Copy, Debug)]
struct BatchNormCase {
    geom: BatchNormGeometry,
    offset: f64,
}

fn draw_batch_norm(i: usize, rng: &mut Rng) -> BatchNormCase {
    // Plane 1 is BatchNorm1d's layout (one draw with the fused ReLU, one without). At least 4
    // values per channel: with 2 or 3, two nearby values make the variance tiny, and 1/σ
    // magnifies f32's rounding (the CPU's as much as the GPU's) past any fixed tolerance.
    let plane = [1, pick(rng, 4, 40)][usize::from(i % 5 != 0)];
    BatchNormCase {
        geom: BatchNormGeometry {
            batch: pick(rng, [1, 4][usize::from(plane == 1)], 4),
            channels: pick(rng, 1, 5),
            plane,
            epsilon: [1e-5, 1e-3][(i / 4) % 2],
            momentum: 0.05 + 0.45 * rng.below(10) as f64 / 10.0,
            relu: i % 2 == 1,
        },
        offset: 2.0 * rng.vec(1)[0],
    }
}

/// Training (output, running statistics, gradients), then inference with the running
/// statistics the draw started from.
fn run_batch_norm<E: Elem, D: ConvDevice<E>>(dev: &D, case: &BatchNormCase, seed: u64) -> Outputs {
    let g = case.geom;
    let mut rng = Rng::new(!seed);
    let c = g.channels;
    let x: Vec<f64> = rng.vec(g.len()).iter().map(|v| v + case.offset).collect();
    let x = tensor(dev, &x);
    let gamma: Vec<f64> = rng.vec(c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let gamma = tensor(dev, &gamma);
    let beta = tensor(dev, &rng.vec(c));
    let rm = tensor(dev, &rng.vec(c));
    let rv: Vec<f64> = rng.vec(c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let rv = tensor(dev, &rv);
    let (mut new_rm, mut new_rv) = (rm.clone(), rv.clone());
    let y =
        try_batch_norm_train(x.leaky_trace(), g, &gamma, &beta, &mut new_rm, &mut new_rv).unwrap();
    let out = values(&y);
    let loss = dot(y, &tensor(dev, &rng.vec(g.len())));
    let grads = seed_grads(loss, &[&x, &gamma, &beta], &mut rng).backward();
    let infer = try_batch_norm_infer(x.clone(), g, &gamma, &beta, &rm, &rv).unwrap();
    vec![
        ("output", out),
        ("running mean", values(&new_rm)),
        ("running var", values(&new_rv)),
        ("dx", values(&grads.get(&x))),
        ("dgamma", values(&grads.get(&gamma))),
        ("dbeta", values(&grads.get(&beta))),
        ("inference output", values(&infer)),
    ]
}

fn batch_norm_matches_cpu<E: Elem>()
where
    Cpu: ConvDevice<E>,
    Cuda: ConvDevice<E>,
{
    let (cpu, gpu) = (Cpu::default(), Cuda::default());
    let mut cases: Vec<(u64, BatchNormCase)> = seeds(10)
        .map(|(i, seed)| (seed, draw_batch_norm(i, &mut Rng::new(seed))))
        .collect();
    // One large case: 5 * 1,800 = 9,000 values per channel, three shares of 4,096 (the last
    // one partial), so each channel's sums are merged across blocks.
    for relu in [false, true] {
        let seed = cases.len() as u64 + cases[0].0;
        let case = BatchNormCase {
            geom: BatchNormGeometry {
                batch: 5,
                channels: 2,
                plane: 40 * 45,
                epsilon: 1e-5,
                momentum: 0.1,
                relu,
            },
            offset: 3.0,
        };
        assert!(case.geom.per_channel() > 2 * BN_SHARE);
        cases.push((seed, case));
    }
    for (seed, case) in cases {
        differential::<E>(
            "batch norm",
            seed,
            &case,
            || run_batch_norm::<E, _>(&cpu, &case, seed),
            || run_batch_norm::<E, _>(&gpu, &case, seed),
        );
    }
}

#[test]
fn batch_norm_matches_cpu_f32() {
    batch_norm_matches_cpu::<f32>();
}

#[test]
fn batch_norm_matches_cpu_f64() {
    batch_norm_matches_cpu::<f64>();
}

// -------------------------------------------------------------------------------- add_relu

/// One add_relu draw: the length, and whether both operands are one tensor (`sum { identity,
/// identity }`, whose gradient gets both halves).
#[derive(Clone, Copy, Debug)]
struct AddReluCase {
    len: usize,
    same: bool,
}

fn run_add_relu<E: Elem, D: ConvDevice<E>>(dev: &D, case: &AddReluCase, seed: u64) -> Outputs {
    let mut rng = Rng::new(!seed);
    let a = tensor(dev, &rng.vec(case.len));
    let b = tensor(dev, &rng.vec(case.len));
    let rhs = if case.same { &a } else { &b };
    let out = try_add_relu(a.leaky_trace(), rhs.leaky_trace()).unwrap();
    let y = values(&out);
    let loss = dot(out, &tensor(dev, &rng.vec(case.len)));
    let grads = seed_grads(loss, &[&a, rhs], &mut rng).backward();
    let mut outputs = vec![("output", y), ("da", values(&grads.get(&a)))];
    if !case.same {
        outputs.push(("db", values(&grads.get(&b))));
    }
    outputs
}

fn add_relu_matches_cpu<E: Elem>()
where
    Cpu: ConvDevice<E>,
    Cuda: ConvDevice<E>,
{
    let (cpu, gpu) = (Cpu::default(), Cuda::default());
    for (i, seed) in seeds(8) {
        let mut rng = Rng::new(seed);
        // up to several blocks of 256 threads, and odd lengths
        let case = AddReluCase {
            len: pick(&mut rng, 1, 3000),
            same: i % 3 == 2,
        };
        differential::<E>(
            "add_relu",
            seed,
            &case,
            || run_add_relu::<E, _>(&cpu, &case, seed),
            || run_add_relu::<E, _>(&gpu, &case, seed),
        );
    }
}

#[test]
fn add_relu_matches_cpu_f32() {
    add_relu_matches_cpu::<f32>();
}

#[test]
fn add_relu_matches_cpu_f64() {
    add_relu_matches_cpu::<f64>();
}
