//! The element types and devices the crate's layers run on.

use dfdx::shapes::Dtype;
use rand_distr::uniform::SampleUniform;

/// A float element type the layers accept: `f32` or `f64`.
///
/// Our kernels hand their inner products to the `gemm` crate, which supports exactly these two;
/// `f64` is what the finite-difference gradient tests run in.
pub trait Float:
    Dtype
    + num_traits::Float
    + SampleUniform
    + Send
    + Sync
    + std::fmt::Debug
    + crate::ops::buffer::Pooled
    + 'static
{
    /// `v = sigmoid(v + bias)` for every element (an implementation detail: `f32` has a
    /// vectorised version, since `exp` from libm is scalar).
    #[doc(hidden)]
    fn sigmoid_in_place(v: &mut [Self], bias: Self) {
        for v in v {
            *v = Self::one() / (Self::one() + (-(*v + bias)).exp());
        }
    }
}
impl Float for f32 {
    fn sigmoid_in_place(v: &mut [f32], bias: f32) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `sigmoid_avx2` is compiled for, checked above.
            return unsafe { sigmoid_avx2(v, bias) };
        }
        sigmoid_f32(v, bias)
    }
}

/// The loop of [`Float::sigmoid_in_place`] for `f32`, inlined into each caller so that it is
/// compiled for the caller's target features.
#[inline(always)]
fn sigmoid_f32(v: &mut [f32], bias: f32) {
    for v in v {
        *v = 1.0 / (1.0 + exp_f32(-(*v + bias)));
    }
}

/// [`sigmoid_f32`] in AVX2 and FMA: 8-wide vectors (the default x86-64 target only has 4-wide
/// SSE2), [`exp_f32`]'s polynomial in fused multiply-adds, and the reciprocal from `rcp` and
/// one Newton step instead of a division (`vdivps` was a third of the loop's time in a profile
/// of LeNet inference).
///
/// Error: `rcp` is within 1.5 * 2^-12, the Newton step squares that to below 2^-22
/// (relative), so the sigmoid stays within 2 `f32` epsilons of the true value, as the scalar
/// loop does (`fast_exp_and_sigmoid_match_libm` checks both).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sigmoid_avx2(v: &mut [f32], bias: f32) {
    use std::arch::x86_64::*;
    let c = |v: f32| _mm256_set1_ps(v);
    let sigmoid8 = |z: __m256| {
        // e^x at x = -(z + bias), as `exp_f32` computes it.
        let x = _mm256_sub_ps(c(-bias), z);
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-87.0)), c(88.0));
        let k = _mm256_fmadd_ps(x, c(EXP_LOG2E), c(EXP_ROUND));
        let n = _mm256_sub_ps(k, c(EXP_ROUND));
        let n_bits = _mm256_sub_epi32(
            _mm256_castps_si256(k),
            _mm256_set1_epi32(EXP_ROUND.to_bits() as i32),
        );
        let r = _mm256_fnmadd_ps(n, c(EXP_C1), x);
        let r = _mm256_fnmadd_ps(n, c(EXP_C2), r);
        let mut p = c(EXP_POLY[0]);
        for &coef in &EXP_POLY[1..] {
            p = _mm256_fmadd_ps(p, r, c(coef));
        }
        let er = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, c(1.0)));
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(n_bits, _mm256_set1_epi32(127)));
        let e = _mm256_mul_ps(er, _mm256_castsi256_ps(scale));
        // 1 / (1 + e^x): rcp, then y = y (2 - d y).
        let d = _mm256_add_ps(e, c(1.0));
        let y = _mm256_rcp_ps(d);
        _mm256_mul_ps(y, _mm256_fnmadd_ps(d, y, c(2.0)))
    };
    let mut chunks = v.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 8 f32s, read and written unaligned.
        unsafe {
            _mm256_storeu_ps(
                chunk.as_mut_ptr(),
                sigmoid8(_mm256_loadu_ps(chunk.as_ptr())),
            )
        };
    }
    // The tail through one more vector: the convolutions call this per output row (28 or 10
    // values in LeNet), where a scalar tail took as long as the vectors.
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        // Lanes below the tail's length on: masked loads and stores touch only those.
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail.len() as i32), lane);
        let p = tail.as_mut_ptr();
        // SAFETY: the mask enables lanes `0..tail.len()` only, all inside `tail`.
        unsafe { _mm256_maskstore_ps(p, mask, sigmoid8(_mm256_maskload_ps(p, mask))) };
    }
}

/// `log2(e)`, for [`exp_f32`].
const EXP_LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts, so that `n * EXP_C1` is exact.
const EXP_C1: f32 = 0.693_359_4;
const EXP_C2: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer with SSE2 alone.
const EXP_ROUND: f32 = 12_582_912.0;
/// The polynomial for `(e^r - 1 - r) / r^2`, highest power first (Cephes).
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `e^x` for `f32`, within 3 ulp of the true value on [-87, 88] (below, it returns `e^-87`,
/// where a sigmoid is 0 to within `f32` anyway), written without
/// branches or calls so that the compiler vectorises a loop of them (libm's `expf` is a scalar
/// call, and the sigmoids of a LeNet step spent 7% of its time there). Cephes' `expf`: split
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, and `2^n` built
/// from its exponent bits.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = x * EXP_LOG2E + EXP_ROUND;
    let n = k - EXP_ROUND;
    // k's low mantissa bits hold n in two's complement: an integer without a float-to-int cast
    // (Rust's saturating `as` does not vectorise)
    let n_bits = k.to_bits().wrapping_sub(EXP_ROUND.to_bits());
    let r = x - n * EXP_C1 - n * EXP_C2;
    let p = EXP_POLY[1..].iter().fold(EXP_POLY[0], |p, &c| p * r + c);
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    er * scale
}
impl Float for f64 {}

/// A dfdx device that can run this crate's conv and pooling ops, forward and backward: `Cpu`,
/// and `Cuda` under the `cuda` feature.
///
/// Each op has its own kernel trait ([`Conv2DKernel`], [`Pool2DKernel`],
/// [`ConvTranspose2DKernel`], [`BatchNormKernel`], [`AddReluKernel`]), implemented once per device in the op's `cpu_kernel.rs` and
/// `cuda_kernel.rs`; this trait only names them together, so that layers need one bound.
///
/// [`Conv2DKernel`]: crate::ops::conv2d::Conv2DKernel
/// [`Pool2DKernel`]: crate::ops::pool2d::Pool2DKernel
/// [`ConvTranspose2DKernel`]: crate::ops::conv_transpose2d::ConvTranspose2DKernel
/// [`BatchNormKernel`]: crate::ops::batch_norm::BatchNormKernel
/// [`AddReluKernel`]: crate::ops::add_relu::AddReluKernel
pub trait ConvDevice<E: Float>:
    dfdx::tensor_ops::Device<E>
    + crate::ops::conv2d::Conv2DKernel<E>
    + crate::ops::pool2d::Pool2DKernel<E>
    + crate::ops::conv_transpose2d::ConvTranspose2DKernel<E>
    + crate::ops::batch_norm::BatchNormKernel<E>
    + crate::ops::add_relu::AddReluKernel<E>
{
}

impl<E: Float, D> ConvDevice<E> for D where
    D: dfdx::tensor_ops::Device<E>
        + crate::ops::conv2d::Conv2DKernel<E>
        + crate::ops::pool2d::Pool2DKernel<E>
        + crate::ops::conv_transpose2d::ConvTranspose2DKernel<E>
        + crate::ops::batch_norm::BatchNormKernel<E>
        + crate::ops::add_relu::AddReluKernel<E>
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_sigmoid_match_libm() {
        let xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 4.4e-4).collect(); // [-88, 88]
        let mut worst_exp = 0.0f64;
        for &x in xs.iter().filter(|&&x| x >= -87.0) {
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_f32(x) as f64 - want) / want).abs());
        }
        // Slices of 13, as the convolutions pass rows: 8 through the vector loop (AVX2 where
        // the CPU has it), 5 through its tail; and the scalar loop on each value. With a bias.
        let bias = 0.25f32;
        let want = |x: f32| 1.0 / (1.0 + (-(x as f64 + bias as f64)).exp());
        let mut vector = xs.clone();
        for row in vector.chunks_mut(13) {
            f32::sigmoid_in_place(row, bias);
        }
        let mut worst_sigmoid = 0.0f64;
        for (&x, &y) in xs.iter().zip(&vector) {
            let mut scalar = [x];
            sigmoid_f32(&mut scalar, bias);
            let err = (y as f64 - want(x))
                .abs()
                .max((scalar[0] as f64 - want(x)).abs());
            worst_sigmoid = worst_sigmoid.max(err);
        }
        assert!(
            worst_exp < 3.0 * f32::EPSILON as f64,
            "relative error of exp {worst_exp}"
        );
        assert!(
            worst_sigmoid < 2.0 * f32::EPSILON as f64,
            "absolute error of sigmoid {worst_sigmoid}"
        );
    }
}
