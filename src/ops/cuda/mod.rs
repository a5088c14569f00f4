//! What the ops' `cuda_kernel.rs` files share: the device kernels of `kernels.cu` (compiled once
//! per device with NVRTC), row-major gemms on cuBLAS, and the bridge between dfdx tensors and
//! device buffers.
//!
//! dfdx 0.13 keeps a tensor's device memory crate-private. Its public API reads a tensor only
//! into host memory (`copy_into`) and builds one from device memory only as a clone of a
//! gradient buffer (`Gradients::get`); gradient buffers themselves are public. So an op's
//! *inputs* make one round trip through the host (`to_device`), its *outputs* are moved into
//! dfdx with one device-to-device copy (`into_tensor`), and everything else (the kernels, the
//! state kept for backward, every gradient) stays on the device.

use crate::Float;
use crate::ops::to_host;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaDevice, CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, DeviceSlice,
    DriverError, LaunchConfig, ValidAsZeroBits,
};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, CudaError, Gradients, Storage, Tensor, ZerosTensor};
use std::sync::{Arc, Mutex};

const MODULE: &str = "cnn_ops";
const SOURCE: &str = include_str!("kernels.cu");
const KERNELS: &[&str] = &[
    "im2col_f32",
    "col2im_f32",
    "bias_act_f32",
    "act_grad_f32",
    "add_bias_f32",
    "channel_sum_f32",
    "pool_fwd_f32",
    "pool_bwd_f32",
    "im2col_f64",
    "col2im_f64",
    "bias_act_f64",
    "act_grad_f64",
    "add_bias_f64",
    "channel_sum_f64",
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
        }
    };
}
cuda_float!(f32, "f32");
cuda_float!(f64, "f64");

/// The cudarc device behind a dfdx `Cuda` (the one whose stream dfdx's own kernels run on, so
/// ours are ordered with them). dfdx does not expose it; every buffer it allocates knows it.
pub(crate) fn device_of<E: CudaFloat>(cuda: &Cuda) -> Result<Arc<CudaDevice>, CudaError> {
    let probe = Storage::<E>::try_alloc_len(cuda, 1)?;
    Ok(probe.device())
}

/// A kernel of `kernels.cu` for element type `E`, compiling and loading the module the first
/// time a device asks for one.
pub(crate) fn kernel<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    name: &str,
) -> Result<CudaFunction, CudaError> {
    let name = format!("{name}_{}", E::SUFFIX);
    if !dev.has_func(MODULE, &name) {
        // Our own source: a compile error is a bug in this crate, reported with NVRTC's log.
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE)
            .unwrap_or_else(|e| panic!("NVRTC could not compile src/ops/cuda/kernels.cu: {e:?}"));
        dev.load_ptx(ptx, MODULE, KERNELS)?;
    }
    Ok(dev
        .get_func(MODULE, &name)
        .unwrap_or_else(|| panic!("kernels.cu has no kernel `{name}`")))
}

/// Launch shape for a grid-stride kernel over `n` elements.
pub(crate) fn launch_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launch shape for `channel_sum`: one block of 256 threads per channel.
pub(crate) fn per_channel_cfg(channels: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (channels as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A dimension as the `int` the kernels take.
pub(crate) fn int(n: usize) -> i32 {
    i32::try_from(n).expect("a dimension does not fit the CUDA kernels' 32-bit sizes")
}

/// A device pointer to pass where a kernel accepts null (`0`) for "absent".
pub(crate) fn ptr_or_null<T>(buf: Option<&impl DevicePtr<T>>) -> u64 {
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

/// A device copy of a tensor's (contiguous) data, through host memory: see the module's docs.
pub(crate) fn to_device<S: Shape, E: CudaFloat, T>(
    dev: &Arc<CudaDevice>,
    t: &Tensor<S, E, Cuda, T>,
) -> Result<CudaSlice<E>, CudaError> {
    Ok(dev.htod_sync_copy(&to_host(t))?)
}

/// A tensor of shape `shape` holding `data`. dfdx builds tensors from device memory only out
/// of a gradient store, so `data` goes into a private one under the id of a zero tensor of the
/// same shape, and comes out as a copy.
pub(crate) fn into_tensor<S: Shape, E: CudaFloat>(
    cuda: &Cuda,
    data: CudaSlice<E>,
    shape: S,
) -> Result<Tensor<S, E, Cuda>, CudaError> {
    assert_eq!(data.len(), shape.num_elements(), "buffer and shape differ");
    let donor: Tensor<S, E, Cuda> = cuda.try_zeros_like(&shape)?;
    let mut store = Gradients::<E, Cuda>::leaky();
    let slot = store.get_or_alloc_mut(&donor)?;
    **slot = data;
    Ok(store.get(&donor))
}

/// Uninitialised device memory for `n` elements that a kernel overwrites entirely.
pub(crate) fn alloc<E: DeviceRepr>(
    dev: &Arc<CudaDevice>,
    n: usize,
) -> Result<CudaSlice<E>, DriverError> {
    // SAFETY: callers only hand it to kernels that write every element before anything reads it.
    unsafe { dev.alloc::<E>(n.max(1)) }
}

/// `ConvGeom` of `kernels.cu`: the numbers `im2col` and `col2im` need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    batch: i32,
    channels: i32,
    h: i32,
    w: i32,
    oh: i32,
    ow: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
}

// SAFETY: a `repr(C)` struct of `i32`s, laid out as `ConvGeom` in kernels.cu; passed by value.
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

/// `PoolGeom` of `kernels.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    planes: i32,
    h: i32,
    w: i32,
    oh: i32,
    ow: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    kind: i32,
}

// SAFETY: a `repr(C)` struct of `i32`s, laid out as `PoolGeom` in kernels.cu; passed by value.
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
pub(crate) fn act_code(act: crate::ops::Activation) -> i32 {
    use crate::ops::Activation::*;
    match act {
        Identity => 0,
        Relu => 1,
        Sigmoid => 2,
        Tanh => 3,
    }
}
