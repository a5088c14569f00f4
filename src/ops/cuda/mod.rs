//! What the ops' `cuda_kernel.rs` files share: the device kernels of `kernels.cu` (compiled once
//! per device with NVRTC, to a CUBIN for the device's architecture, with PTX as the fallback:
//! `load.rs` says why; the structs they take by value are in `abi.rs`), row-major gemms on
//! cuBLAS, and the bridge between dfdx tensors and device buffers (`bridge.rs`).
//!
//! Every op reads its operands where dfdx keeps them and writes its output into the tensor it
//! returns (`hold`, `new_tensor`: see `bridge.rs`); what it keeps for backward is either its own
//! device memory or a held tensor (no copy), and every gradient is dfdx's own gradient buffer.
//! So a training step copies nothing between host and device but what the caller moves (the
//! batch in, the loss out) and dfdx's own (the 1 that seeds backward, and its kernels' dims and
//! strides); `tests/cuda_copies.rs` counts them at the driver.

mod abi;
mod bridge;
pub(crate) mod debug_prefix;
mod load;

pub(crate) use abi::PoolGeom;
use abi::{BnStep, ConvGeom};
pub use bridge::Held;
pub(crate) use bridge::{Buf, hold, new_tensor};
pub use load::{KernelImage, KernelLoad};

use crate::Float;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::sys::CUresult;
use cudarc::driver::{
    CudaDevice, CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, DeviceSlice,
    DriverError, LaunchAsync, LaunchConfig, ValidAsZeroBits,
};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cuda, CudaError, NoneTape, Storage, Tensor};
use dfdx::tensor_ops::ReshapeTo;
use std::sync::{Arc, Mutex};

/// The name `kernels.cu`'s module is loaded under on a cudarc device: its kernels are
/// `CudaDevice::get_func(MODULE, "<kernel>_f32")` once [`load_kernels`] has run.
pub const MODULE: &str = "cnn_ops";
/// Threads per block of every launch: `kernels.cu`'s shared arrays have this many entries, and
/// `scripts/nvrtc-check.py` checks each kernel's registers against it.
const BLOCK: u32 = 256;
const SOURCE: &str = include_str!("kernels.cu");
const KERNELS: &[&str] = &[
    "im2col_f32",
    "col2im_f32",
    "bias_act_f32",
    "act_grad_f32",
    "add_bias_f32",
    "channel_sum_f32",
    "bn_stat_parts_f32",
    "bn_stat_finish_f32",
    "bn_apply_f32",
    "bn_infer_f32",
    "bn_grad_parts_f32",
    "bn_grad_finish_f32",
    "bn_grad_input_f32",
    "add_relu_f32",
    "relu_grad_add_f32",
    "pool_fwd_f32",
    "pool_bwd_f32",
    "im2col_f64",
    "col2im_f64",
    "bias_act_f64",
    "act_grad_f64",
    "add_bias_f64",
    "channel_sum_f64",
    "bn_stat_parts_f64",
    "bn_stat_finish_f64",
    "bn_apply_f64",
    "bn_infer_f64",
    "bn_grad_parts_f64",
    "bn_grad_finish_f64",
    "bn_grad_input_f64",
    "add_relu_f64",
    "relu_grad_add_f64",
    "pool_fwd_f64",
    "pool_bwd_f64",
];

/// The element types our device kernels and gemms are instantiated for: `f32` and `f64`.
pub trait CudaFloat: Float + DeviceRepr + ValidAsZeroBits + Unpin {
    /// The suffix of this type's kernels in `kernels.cu`.
    const SUFFIX: &'static str;

    /// cuBLAS's strided batched gemm for this type.
    ///
    /// # Safety
    /// The configuration must describe matrices inside `a`, `b` and `c`.
    #[doc(hidden)]
    unsafe fn gemm_batched(
        blas: &CudaBlas,
        cfg: StridedBatchedConfig<Self>,
        a: &impl DevicePtr<Self>,
        b: &impl DevicePtr<Self>,
        c: &mut impl DevicePtrMut<Self>,
    ) -> Result<(), CudaError>;

    /// `t` as one flat contiguous tensor (the same buffer when `t` is contiguous). A method of
    /// this trait, written once per type, because dfdx implements reshaping on `Cuda` per
    /// element type.
    #[doc(hidden)]
    fn flat<S: Shape, T>(
        t: &Tensor<S, Self, Cuda, T>,
    ) -> Result<Tensor<(usize,), Self, Cuda>, CudaError>;

    /// A flat tensor given back its shape (no copy: it is contiguous).
    #[doc(hidden)]
    fn unflat<S: Shape>(
        t: Tensor<(usize,), Self, Cuda>,
        shape: S,
    ) -> Result<Tensor<S, Self, Cuda>, CudaError>;
}

macro_rules! cuda_float {
    ($t:ty, $suffix:literal) => {
        impl CudaFloat for $t {
            const SUFFIX: &'static str = $suffix;

            unsafe fn gemm_batched(
                blas: &CudaBlas,
                cfg: StridedBatchedConfig<Self>,
                a: &impl DevicePtr<Self>,
                b: &impl DevicePtr<Self>,
                c: &mut impl DevicePtrMut<Self>,
            ) -> Result<(), CudaError> {
                // SAFETY: passed on to the caller.
                unsafe { blas.gemm_strided_batched(cfg, a, b, c) }?;
                Ok(())
            }

            fn flat<S: Shape, T>(
                t: &Tensor<S, Self, Cuda, T>,
            ) -> Result<Tensor<(usize,), Self, Cuda>, CudaError> {
                let n = t.shape().num_elements();
                t.retaped::<NoneTape>().try_reshape_like(&(n,))
            }

            fn unflat<S: Shape>(
                t: Tensor<(usize,), Self, Cuda>,
                shape: S,
            ) -> Result<Tensor<S, Self, Cuda>, CudaError> {
                t.try_reshape_like(&shape)
            }
        }
    };
}
cuda_float!(f32, "f32");
cuda_float!(f64, "f64");

/// The cudarc device behind a dfdx `Cuda` (the one whose stream dfdx's own kernels run on, so
/// ours are ordered with them), after the bridge's one-time check. dfdx does not expose it;
/// every buffer it allocates knows it.
pub(crate) fn device_of<E: CudaFloat>(cuda: &Cuda) -> Result<Arc<CudaDevice>, CudaError> {
    bridge::self_check(cuda);
    cuda_device::<E>(cuda)
}

/// [`device_of`] without the check (which itself needs the device).
fn cuda_device<E: CudaFloat>(cuda: &Cuda) -> Result<Arc<CudaDevice>, CudaError> {
    let probe = Storage::<E>::try_alloc_len(cuda, 1)?;
    Ok(probe.device())
}

/// Compiles and loads the crate's device kernels onto `cuda`'s device now, unless they are there
/// already (else the first op that needs one does), and says how: as a CUBIN for the device's
/// architecture, or as PTX for the driver to JIT-compile, and why (see `load.rs`).
pub fn load_kernels(cuda: &Cuda) -> Result<KernelLoad, CudaError> {
    load::ensure(&device_of::<f32>(cuda)?)
}

/// A kernel of `kernels.cu` for element type `E`, compiling and loading the module the first
/// time a device asks for one.
fn kernel<E: CudaFloat>(dev: &Arc<CudaDevice>, name: &str) -> Result<CudaFunction, CudaError> {
    let name = format!("{name}_{}", E::SUFFIX);
    if !dev.has_func(MODULE, &name) {
        load::ensure(dev)?;
    }
    // Loading got every name in KERNELS, or failed: only a name missing from it lands here.
    dev.get_func(MODULE, &name)
        .ok_or(CudaError::Driver(DriverError(
            CUresult::CUDA_ERROR_NOT_FOUND,
        )))
}

/// Launch shape for a grid-stride kernel over `n` elements.
fn launch_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A dimension as the `int` the kernels take.
fn int(n: usize) -> i32 {
    i32::try_from(n).expect("a dimension does not fit the CUDA kernels' 32-bit sizes")
}

/// A device pointer to pass where a kernel accepts null (`0`) for "absent".
fn ptr_or_null<T>(buf: Option<&dyn DevicePtr<T>>) -> u64 {
    buf.map_or(0, |b| *b.device_ptr())
}

/// One cuBLAS handle per device, bound to its stream. A handle keeps its device alive, so
/// handles whose device nobody else holds any more are dropped here.
pub(crate) fn blas(dev: &Arc<CudaDevice>) -> Result<Arc<CudaBlas>, CudaError> {
    static HANDLES: Mutex<Vec<(Arc<CudaDevice>, Arc<CudaBlas>)>> = Mutex::new(Vec::new());
    let mut handles = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    // held by the entry and by the handle itself, and by no tensor or device of the user's
    handles.retain(|(d, _)| Arc::ptr_eq(d, dev) || Arc::strong_count(d) > 2);
    if let Some((_, h)) = handles.iter().find(|(d, _)| Arc::ptr_eq(d, dev)) {
        return Ok(h.clone());
    }
    let handle = Arc::new(CudaBlas::new(dev.clone())?);
    handles.push((dev.clone(), handle.clone()));
    Ok(handle)
}

/// `c = [c +] op(a) * op(b)` for `batch` row-major products of `(m x k) * (k x n)` (`op` transposes
/// when asked; a transposed `a` is stored `(k x m)`, a transposed `b` `(n x k)`), the i-th at
/// offsets `i * strides` (in elements) in `a`, `b` and `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<E: CudaFloat>(
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    a: &impl DevicePtr<E>,
    trans_a: bool,
    b: &impl DevicePtr<E>,
    trans_b: bool,
    c: &mut impl DevicePtrMut<E>,
    accumulate: bool,
    batch: usize,
    (stride_a, stride_b, stride_c): (usize, usize, usize),
) -> Result<(), CudaError> {
    assert!(
        (batch - 1) * stride_a + m * k <= a.len()
            && (batch - 1) * stride_b + k * n <= b.len()
            && (batch - 1) * stride_c + m * n <= c.len(),
        "gemm operands too short"
    );
    let op = |t: bool| match t {
        true => cublasOperation_t::CUBLAS_OP_T,
        false => cublasOperation_t::CUBLAS_OP_N,
    };
    // cuBLAS is column-major: the row-major c is its c^T = op(b)^T op(a)^T.
    let cfg = StridedBatchedConfig {
        gemm: GemmConfig {
            transa: op(trans_b),
            transb: op(trans_a),
            m: int(n),
            n: int(m),
            k: int(k),
            alpha: E::one(),
            lda: int(if trans_b { k } else { n }),
            ldb: int(if trans_a { m } else { k }),
            beta: if accumulate { E::one() } else { E::zero() },
            ldc: int(n),
        },
        batch_size: int(batch),
        stride_a: stride_b as i64,
        stride_b: stride_a as i64,
        stride_c: stride_c as i64,
    };
    // SAFETY: the assert above keeps every matrix inside its buffer.
    unsafe { E::gemm_batched(blas, cfg, b, a, c) }
}

/// Uninitialised device memory for `n` elements that a kernel overwrites entirely.
pub(crate) fn alloc<E: DeviceRepr>(
    dev: &Arc<CudaDevice>,
    n: usize,
) -> Result<CudaSlice<E>, DriverError> {
    // SAFETY: callers only hand it to kernels that write every element before anything reads it.
    unsafe { dev.alloc::<E>(n.max(1)) }
}

// SAFETY (these three): each is a `repr(C)` struct laid out as its namesake in kernels.cu and
// passed by value (abi.rs; scripts/nvrtc-check.py checks sizes and fields against NVRTC's).
// `ConvGeom`: fourteen `int`s.
unsafe impl DeviceRepr for ConvGeom {}

impl From<&crate::ops::Conv2DGeometry> for ConvGeom {
    fn from(g: &crate::ops::Conv2DGeometry) -> Self {
        ConvGeom {
            batch: int(g.batch),
            channels: int(g.in_channels),
            h: int(g.input.0),
            w: int(g.input.1),
            oh: int(g.output.0),
            ow: int(g.output.1),
            kh: int(g.kernel.0),
            kw: int(g.kernel.1),
            sh: int(g.stride.0),
            sw: int(g.stride.1),
            ph: int(g.padding.0),
            pw: int(g.padding.1),
            dh: int(g.dilation.0),
            dw: int(g.dilation.1),
        }
    }
}

// SAFETY: see `ConvGeom`'s; four `int`s, then two `double`s at offset 16.
unsafe impl DeviceRepr for BnStep {}

// SAFETY: see `ConvGeom`'s; twelve `int`s.
unsafe impl DeviceRepr for PoolGeom {}

impl PoolGeom {
    pub(crate) fn new(g: &crate::ops::Pool2DGeometry, planes: usize) -> Self {
        PoolGeom {
            planes: int(planes),
            h: int(g.input.0),
            w: int(g.input.1),
            oh: int(g.output.0),
            ow: int(g.output.1),
            kh: int(g.kernel.0),
            kw: int(g.kernel.1),
            sh: int(g.stride.0),
            sw: int(g.stride.1),
            ph: int(g.padding.0),
            pw: int(g.padding.1),
            kind: match g.kind {
                crate::ops::PoolKind::Max => 0,
                crate::ops::PoolKind::Avg => 1,
            },
        }
    }

    /// Elements of the pooled output.
    pub(crate) fn out_len(&self) -> usize {
        self.planes as usize * self.oh as usize * self.ow as usize
    }

    /// Elements of the input.
    pub(crate) fn in_len(&self) -> usize {
        self.planes as usize * self.h as usize * self.w as usize
    }
}

/// The number `kernels.cu` uses for an activation.
fn act_code(act: crate::ops::Activation) -> i32 {
    use crate::ops::Activation::*;
    match act {
        Identity => 0,
        Relu => 1,
        Sigmoid => 2,
        Tanh => 3,
    }
}

/// `(B, C, P)`: the batch, channel and plane sizes of a `(B, C, P)` buffer, as the kernels'
/// `int`s.
pub(crate) type Bcp = (usize, usize, usize);

fn ints((b, c, p): Bcp) -> (i32, i32, i32) {
    (int(b), int(c), int(p))
}

// Typed launches of kernels.cu, one per kernel. Each checks its buffers against the sizes it is
// given, so the `unsafe` launch inside reads and writes only inside them; callers never launch
// by name. Buffers go in as raw device pointers (`u64`), nullable ones as 0.

/// cols: (C*KH*KW, N) = im2col(x: (B, C, H, W)) for the conv `g`.
pub(crate) fn im2col<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &crate::ops::Conv2DGeometry,
    x: &impl DevicePtr<E>,
    cols: &mut impl DevicePtrMut<E>,
) -> Result<(), CudaError> {
    let n = g.batch * g.output.0 * g.output.1;
    let len = g.in_channels * g.kernel.0 * g.kernel.1 * n;
    assert!(x.len() >= g.batch * g.in_channels * g.input.0 * g.input.1 && cols.len() >= len);
    let args = (ConvGeom::from(g), *x.device_ptr(), *cols.device_ptr_mut());
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "im2col")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// dx: (B, C, H, W) += col2im(dcols: (C*KH*KW, N)) for the conv `g`.
pub(crate) fn col2im<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &crate::ops::Conv2DGeometry,
    dcols: &impl DevicePtr<E>,
    dx: &mut impl DevicePtrMut<E>,
) -> Result<(), CudaError> {
    let n = g.batch * g.output.0 * g.output.1;
    let len = g.batch * g.in_channels * g.input.0 * g.input.1;
    assert!(dcols.len() >= g.in_channels * g.kernel.0 * g.kernel.1 * n && dx.len() >= len);
    let args = (ConvGeom::from(g), *dcols.device_ptr(), *dx.device_ptr_mut());
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "col2im")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// y: (B, C, P) = [y +] act(z + bias), z: (C, B*P), bias: (C).
pub(crate) fn bias_act<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    z: &impl DevicePtr<E>,
    bias: Option<&dyn DevicePtr<E>>,
    y: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
    act: crate::ops::Activation,
    accumulate: bool,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(z.len() >= len && y.len() >= len && bias.is_none_or(|b| b.len() >= bcp.1));
    let (b, c, p) = ints(bcp);
    let (z, bias, y) = (*z.device_ptr(), ptr_or_null(bias), *y.device_ptr_mut());
    let args = (z, bias, y, b, c, p, act_code(act), accumulate as i32);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "bias_act")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// gz: (C, B*P) = gy * act'(y), gy and y: (B, C, P); `y` may be absent for the identity (then
/// this is a transpose).
pub(crate) fn act_grad<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    gy: &impl DevicePtr<E>,
    y: Option<&dyn DevicePtr<E>>,
    gz: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
    act: crate::ops::Activation,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(gy.len() >= len && gz.len() >= len);
    assert!(match y {
        Some(y) => y.len() >= len,
        None => act == crate::ops::Activation::Identity,
    });
    let (b, c, p) = ints(bcp);
    let (gy, y, gz) = (*gy.device_ptr(), ptr_or_null(y), *gz.device_ptr_mut());
    let args = (gy, y, gz, b, c, p, act_code(act));
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "act_grad")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// y: (B, C, P) += bias: (C).
pub(crate) fn add_bias<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    y: &mut impl DevicePtrMut<E>,
    bias: &impl DevicePtr<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(y.len() >= len && bias.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let args = (*y.device_ptr_mut(), *bias.device_ptr(), b, c, p);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "add_bias")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// db: (C) += g: (B, C, P) summed over B and P.
pub(crate) fn channel_sum<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &impl DevicePtr<E>,
    db: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    assert!(g.len() >= bcp.0 * bcp.1 * bcp.2 && db.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let cfg = LaunchConfig {
        // one block per channel
        grid_dim: (c as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = (*g.device_ptr(), *db.device_ptr_mut(), b, c, p);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "channel_sum")?.launch(cfg, args) }?;
    Ok(())
}

/// Batch norm's geometry as the kernels take it: `(B, C, P)`, and `S`, the shares each
/// channel's sums are split into (blocks per channel: enough blocks to fill the device, each
/// with a few thousand values).
fn bn_grid(bcp: Bcp) -> (LaunchConfig, i32) {
    let n = bcp.0 * bcp.2;
    let shares = n.div_ceil(4096).clamp(1, 256);
    let cfg = LaunchConfig {
        grid_dim: (int(bcp.1) as u32, shares as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    (cfg, int(shares))
}

/// Scratch for batch norm's per-share sums: `(C, S, 2)` doubles.
fn bn_parts(
    dev: &Arc<CudaDevice>,
    bcp: Bcp,
) -> Result<(CudaSlice<f64>, LaunchConfig, i32), CudaError> {
    let (cfg, shares) = bn_grid(bcp);
    let part = alloc::<f64>(dev, bcp.1 * shares as usize * 2)?;
    Ok((part, cfg, shares))
}

/// Batch norm's training statistics of x: (B, C, P): `stats` (C, 2) = mean, 1/sqrt(var + eps),
/// and the running statistics `rm`, `rv` (C) moved towards the batch's into `new_rm`, `new_rv`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_stats<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    x: &impl DevicePtr<E>,
    (rm, rv): (&impl DevicePtr<E>, &impl DevicePtr<E>),
    stats: &mut CudaSlice<f64>,
    (new_rm, new_rv): (&mut impl DevicePtrMut<E>, &mut impl DevicePtrMut<E>),
    bcp: Bcp,
    (eps, momentum): (f64, f64),
) -> Result<(), CudaError> {
    let c = bcp.1;
    assert!(x.len() >= bcp.0 * c * bcp.2 && stats.len() >= 2 * c);
    assert!(rm.len() >= c && rv.len() >= c && new_rm.len() >= c && new_rv.len() >= c);
    let (mut part, cfg, shares) = bn_parts(dev, bcp)?;
    let (b, ci, p) = ints(bcp);
    let args = (*x.device_ptr(), *part.device_ptr_mut(), b, ci, p);
    // SAFETY: the lengths are checked above; `part` has (C, S, 2) entries for this grid.
    unsafe { kernel::<E>(dev, "bn_stat_parts")?.launch(cfg, args) }?;
    let step = BnStep {
        batch: b,
        channels: ci,
        plane: p,
        shares,
        eps,
        momentum,
    };
    let args = (
        step,
        *part.device_ptr(),
        *x.device_ptr(),
        *rm.device_ptr(),
        *rv.device_ptr(),
        *stats.device_ptr_mut(),
        *new_rm.device_ptr_mut(),
        *new_rv.device_ptr_mut(),
    );
    // SAFETY: as above.
    unsafe { kernel::<E>(dev, "bn_stat_finish")?.launch(launch_cfg(c), args) }?;
    Ok(())
}

/// Training batch norm's output: y: (B, C, P) = (x - mean) * istd * gamma + beta (then the ReLU).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_apply<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    x: &impl DevicePtr<E>,
    stats: &CudaSlice<f64>,
    (gamma, beta): (&impl DevicePtr<E>, &impl DevicePtr<E>),
    y: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
    relu: bool,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(x.len() >= len && y.len() >= len && stats.len() >= 2 * bcp.1);
    assert!(gamma.len() >= bcp.1 && beta.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let args = (
        *x.device_ptr(),
        *stats.device_ptr(),
        *gamma.device_ptr(),
        *beta.device_ptr(),
        *y.device_ptr_mut(),
        b,
        c,
        p,
        i32::from(relu),
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "bn_apply")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// Inference batch norm: y: (B, C, P) = (x - rm) / sqrt(rv + eps) * gamma + beta (then the ReLU).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_infer<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    x: &impl DevicePtr<E>,
    (gamma, beta): (&impl DevicePtr<E>, &impl DevicePtr<E>),
    (rm, rv): (&impl DevicePtr<E>, &impl DevicePtr<E>),
    y: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
    eps: f64,
    relu: bool,
) -> Result<(), CudaError> {
    let (len, c) = (bcp.0 * bcp.1 * bcp.2, bcp.1);
    assert!(x.len() >= len && y.len() >= len);
    assert!(gamma.len() >= c && beta.len() >= c && rm.len() >= c && rv.len() >= c);
    let (b, ci, p) = ints(bcp);
    let args = (
        *x.device_ptr(),
        *gamma.device_ptr(),
        *beta.device_ptr(),
        *rm.device_ptr(),
        *rv.device_ptr(),
        *y.device_ptr_mut(),
        b,
        ci,
        p,
        eps,
        i32::from(relu),
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "bn_infer")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// Batch norm's backward: `dgamma += Σ dz x̂`, `dbeta += Σ dz`, `dx += γ σ⁻¹ (dz - mean(dz) -
/// x̂ mean(dz x̂))`, with `dz` = `dy` through the fused ReLU (whose output `y` is given when
/// there is one). x, y, dy, dx: (B, C, P); gamma, dgamma, dbeta: (C); stats as [`bn_stats`]
/// left them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_backward<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    (x, y, stats): (
        &impl DevicePtr<E>,
        Option<&dyn DevicePtr<E>>,
        &CudaSlice<f64>,
    ),
    gamma: &impl DevicePtr<E>,
    dy: &impl DevicePtr<E>,
    dx: &mut impl DevicePtrMut<E>,
    (dgamma, dbeta): (&mut impl DevicePtrMut<E>, &mut impl DevicePtrMut<E>),
    bcp: Bcp,
) -> Result<(), CudaError> {
    let (len, c) = (bcp.0 * bcp.1 * bcp.2, bcp.1);
    assert!(x.len() >= len && dy.len() >= len && dx.len() >= len && stats.len() >= 2 * c);
    assert!(y.is_none_or(|y| y.len() >= len));
    assert!(gamma.len() >= c && dgamma.len() >= c && dbeta.len() >= c);
    let y = y.map_or(0, |y| *y.device_ptr());
    let (mut part, cfg, shares) = bn_parts(dev, bcp)?;
    let mut sums = alloc::<f64>(dev, 2 * c)?;
    let (b, ci, p) = ints(bcp);
    let args = (
        *dy.device_ptr(),
        *x.device_ptr(),
        y,
        *stats.device_ptr(),
        *part.device_ptr_mut(),
        b,
        ci,
        p,
    );
    // SAFETY: the lengths are checked above; `part` has (C, S, 2) entries for this grid.
    unsafe { kernel::<E>(dev, "bn_grad_parts")?.launch(cfg, args) }?;
    let args = (
        *part.device_ptr(),
        shares,
        *sums.device_ptr_mut(),
        *dgamma.device_ptr_mut(),
        *dbeta.device_ptr_mut(),
        ci,
    );
    // SAFETY: as above.
    unsafe { kernel::<E>(dev, "bn_grad_finish")?.launch(launch_cfg(c), args) }?;
    let args = (
        *dy.device_ptr(),
        *x.device_ptr(),
        y,
        *stats.device_ptr(),
        *gamma.device_ptr(),
        *sums.device_ptr(),
        *dx.device_ptr_mut(),
        b,
        ci,
        p,
    );
    // SAFETY: as above.
    unsafe { kernel::<E>(dev, "bn_grad_input")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// y = max(a + b, 0), elementwise.
pub(crate) fn add_relu<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    a: &impl DevicePtr<E>,
    b: &impl DevicePtr<E>,
    y: &mut impl DevicePtrMut<E>,
) -> Result<(), CudaError> {
    let n = y.len();
    assert!(a.len() >= n && b.len() >= n);
    let args = (*a.device_ptr(), *b.device_ptr(), *y.device_ptr_mut(), n);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "add_relu")?.launch(launch_cfg(n), args) }?;
    Ok(())
}

/// d += g where y > 0, elementwise.
pub(crate) fn relu_grad_add<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &impl DevicePtr<E>,
    y: &impl DevicePtr<E>,
    d: &mut impl DevicePtrMut<E>,
) -> Result<(), CudaError> {
    let n = d.len();
    assert!(g.len() >= n && y.len() >= n);
    let args = (*g.device_ptr(), *y.device_ptr(), *d.device_ptr_mut(), n);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "relu_grad_add")?.launch(launch_cfg(n), args) }?;
    Ok(())
}

/// out = pool(x) over `g`'s planes; `arg` (max only) receives each maximum's position.
pub(crate) fn pool_fwd<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &PoolGeom,
    x: &impl DevicePtr<E>,
    out: &mut impl DevicePtrMut<E>,
    arg: Option<&mut CudaSlice<u32>>,
) -> Result<(), CudaError> {
    assert!(x.len() >= g.in_len() && out.len() >= g.out_len());
    assert!(arg.as_ref().is_none_or(|a| a.len() >= g.out_len()));
    let arg = arg.map_or(0, |a| *a.device_ptr_mut());
    let args = (*g, *x.device_ptr(), *out.device_ptr_mut(), arg);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "pool_fwd")?.launch(launch_cfg(g.out_len()), args) }?;
    Ok(())
}

/// dx += the gradient of [`pool_fwd`] for `gout`; `arg` as it saved (required for max).
pub(crate) fn pool_bwd<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &PoolGeom,
    gout: &impl DevicePtr<E>,
    arg: Option<&CudaSlice<u32>>,
    dx: &mut impl DevicePtrMut<E>,
) -> Result<(), CudaError> {
    assert!(gout.len() >= g.out_len() && dx.len() >= g.in_len());
    assert!(match arg {
        Some(a) => a.len() >= g.out_len(),
        None => g.kind != 0,
    });
    let arg = arg.map_or(0, |a| *a.device_ptr());
    let args = (*g, *gout.device_ptr(), arg, *dx.device_ptr_mut());
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "pool_bwd")?.launch(launch_cfg(g.in_len()), args) }?;
    Ok(())
}
