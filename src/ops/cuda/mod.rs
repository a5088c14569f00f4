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
    DriverError, LaunchAsync, LaunchConfig, ValidAsZeroBits,
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
    "channel_dot_f32",
    "channel_affine_f32",
    "bn_input_grad_f32",
    "bn_relu_grad_f32",
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
    "channel_dot_f64",
    "channel_affine_f64",
    "bn_input_grad_f64",
    "bn_relu_grad_f64",
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
fn kernel<E: CudaFloat>(dev: &Arc<CudaDevice>, name: &str) -> Result<CudaFunction, CudaError> {
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
fn launch_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A dimension as the `int` the kernels take.
fn int(n: usize) -> i32 {
    i32::try_from(n).expect("a dimension does not fit the CUDA kernels' 32-bit sizes")
}

/// A device pointer to pass where a kernel accepts null (`0`) for "absent".
fn ptr_or_null<T>(buf: Option<&impl DevicePtr<T>>) -> u64 {
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
struct ConvGeom {
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
    bias: Option<&CudaSlice<E>>,
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
    y: Option<&CudaSlice<E>>,
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
    bias: &CudaSlice<E>,
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
        // one block of 256 threads per channel (the kernel's shared array has 256 entries)
        grid_dim: (c as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = (*g.device_ptr(), *db.device_ptr_mut(), b, c, p);
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "channel_sum")?.launch(cfg, args) }?;
    Ok(())
}

/// One block of 256 threads per channel (the kernels' shared arrays have 256 entries).
fn per_channel(channels: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (int(channels) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// out: (C) += the sum over B and P of `a * b` (of `a` when `b` is `None`), a, b: (B, C, P).
pub(crate) fn channel_dot<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    a: &impl DevicePtr<E>,
    b: Option<&CudaSlice<E>>,
    out: &mut CudaSlice<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(a.len() >= len && b.is_none_or(|b| b.len() >= len) && out.len() >= bcp.1);
    let (bb, c, p) = ints(bcp);
    let args = (
        *a.device_ptr(),
        ptr_or_null(b),
        *out.device_ptr_mut(),
        bb,
        c,
        p,
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "channel_dot")?.launch(per_channel(bcp.1), args) }?;
    Ok(())
}

/// y: (B, C, P) = x * a[c] + s[c], then `max(0, y)` with `relu`.
pub(crate) fn channel_affine<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    x: &impl DevicePtr<E>,
    (a, s): (&CudaSlice<E>, &CudaSlice<E>),
    relu: bool,
    y: &mut CudaSlice<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(x.len() >= len && y.len() >= len && a.len() >= bcp.1 && s.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let (x, a, s) = (*x.device_ptr(), *a.device_ptr(), *s.device_ptr());
    let args = (x, a, s, *y.device_ptr_mut(), b, c, p, i32::from(relu));
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "channel_affine")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// Through batch norm's fused ReLU: dz = dy where xhat * gamma[c] + beta[c] > 0, else 0.
pub(crate) fn bn_relu_grad<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    dy: &impl DevicePtr<E>,
    xhat: &CudaSlice<E>,
    (gamma, beta): (&CudaSlice<E>, &CudaSlice<E>),
    dz: &mut CudaSlice<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(dy.len() >= len && xhat.len() >= len && dz.len() >= len);
    assert!(gamma.len() >= bcp.1 && beta.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let args = (
        *dy.device_ptr(),
        *xhat.device_ptr(),
        *gamma.device_ptr(),
        *beta.device_ptr(),
        *dz.device_ptr_mut(),
        b,
        c,
        p,
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "bn_relu_grad")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// Batch norm's input gradient: dx += k[c] * (dy - mdy[c] - xhat * mdyx[c]), all (B, C, P)
/// but the per-channel k, mdy, mdyx.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_input_grad<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    dy: &impl DevicePtr<E>,
    xhat: &CudaSlice<E>,
    k: &CudaSlice<E>,
    mdy: &CudaSlice<E>,
    mdyx: &CudaSlice<E>,
    dx: &mut impl DevicePtrMut<E>,
    bcp: Bcp,
) -> Result<(), CudaError> {
    let len = bcp.0 * bcp.1 * bcp.2;
    assert!(dy.len() >= len && xhat.len() >= len && dx.len() >= len);
    assert!(k.len() >= bcp.1 && mdy.len() >= bcp.1 && mdyx.len() >= bcp.1);
    let (b, c, p) = ints(bcp);
    let args = (
        *dy.device_ptr(),
        *xhat.device_ptr(),
        *k.device_ptr(),
        *mdy.device_ptr(),
        *mdyx.device_ptr(),
        *dx.device_ptr_mut(),
        b,
        c,
        p,
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "bn_input_grad")?.launch(launch_cfg(len), args) }?;
    Ok(())
}

/// y = max(a + b, 0), elementwise.
pub(crate) fn add_relu<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    a: &CudaSlice<E>,
    b: &CudaSlice<E>,
    y: &mut CudaSlice<E>,
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
    g: &CudaSlice<E>,
    y: &CudaSlice<E>,
    d: &mut CudaSlice<E>,
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
    let args = (
        *g,
        *gout.device_ptr(),
        ptr_or_null(arg),
        *dx.device_ptr_mut(),
    );
    // SAFETY: the lengths are checked above.
    unsafe { kernel::<E>(dev, "pool_bwd")?.launch(launch_cfg(g.in_len()), args) }?;
    Ok(())
}
