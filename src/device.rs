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

/// [`sigmoid_f32`] with 8-wide vectors (the default x86-64 target only has 4-wide SSE2): twice
/// as fast on the machines that have AVX2, which is nearly all of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sigmoid_avx2(v: &mut [f32], bias: f32) {
    sigmoid_f32(v, bias)
}

/// `e^x` for `f32`, within 3 ulp of the true value on [-87, 88] (below, it returns `e^-87`,
/// where a sigmoid is 0 to within `f32` anyway), written without
/// branches or calls so that the compiler vectorises a loop of them (libm's `expf` is a scalar
/// call, and the sigmoids of a LeNet step spent 7% of its time there). Cephes' `expf`: split
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, and `2^n` built
/// from its exponent bits.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that n * C1 is exact
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer with SSE2 alone
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = x * LOG2E + ROUND;
    let n = k - ROUND;
    // k's low mantissa bits hold n in two's complement: an integer without a float-to-int cast
    // (Rust's saturating `as` does not vectorise)
    let n_bits = k.to_bits().wrapping_sub(ROUND.to_bits());
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
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
        let mut worst_exp = 0.0f64;
        let mut worst_sigmoid = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.4e-4; // [-88, 88]
            let want = (x as f64).exp();
            if x >= -87.0 {
                worst_exp = worst_exp.max(((exp_f32(x) as f64 - want) / want).abs());
            }
            let mut v = [x];
            f32::sigmoid_in_place(&mut v, 0.0);
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            worst_sigmoid = worst_sigmoid.max((v[0] as f64 - want).abs());
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
