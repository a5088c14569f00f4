//! The bridge between dfdx's `Cuda` tensors and the device buffers our kernels read and write:
//! in place, with no copy through the host and no extra copy on the device.
//!
//! # What dfdx 0.13 gives
//! A tensor's buffer is `Tensor::data: Arc<CachableCudaSlice<E>>`, a crate-private field. The
//! trait that hands it out, `Tensorlike::data`, is public in a crate-private module (re-exported
//! `pub(crate)`): outside dfdx it can be neither named nor called (upstream's unreleased main
//! makes it `pub use`). Public, and enough:
//! - `Tensor`, `CachableCudaSlice` and cudarc's `CudaSlice` all `#[derive(Debug)]`, and derived
//!   `Debug` prints fields in declaration order. So the `Debug` text of a flat tensor *starts*
//!   with its buffer's device pointer and length:
//!   `Tensor { id: UniqueId(7), data: CachableCudaSlice { data: CudaSlice { cu_device_ptr:
//!   139849020620800, len: 150528, device: ...`. [`locate`] formats only that far (its writer
//!   stops the formatter at `, device`: about 130 bytes, well under a microsecond) and parses it
//!   strictly.
//! - `try_reshape_like` to `(n,)` is a move of the same `Arc` for a contiguous tensor, and a
//!   device copy (dfdx's own) for a permuted or broadcast one, so [`hold`] always sees one flat
//!   contiguous buffer, and keeps the tensor (its `Arc`) alive as long as the pointer is used.
//! - `try_zeros_like` gives a fresh tensor, its buffer owned by nobody else: [`new_tensor`]
//!   lets a kernel write the op's output straight into it. (dfdx has no public uninitialised
//!   tensor, so each output costs one `memset` on the device; no copy.)
//!
//! # Why this and not the alternatives
//! - A vendored dfdx 0.13.0 under `[patch.crates-io]` with `pub use tensorlike::Tensorlike`:
//!   the crate is 316 source files (2.4 MB) for a one-word change, and every build, the CPU's
//!   included, would compile the copy. `[patch]` applies only in this workspace, so a crate that
//!   depends on `cnn` with `features = ["cuda"]` would get crates.io's dfdx and fail to compile.
//!   And `Tensorlike::data` gives `&` only: outputs would still be written through the pointer
//!   of a fresh zero tensor, exactly as here.
//! - A `#[repr(Rust)]` mirror of `Tensor` to transmute into: its layout is unspecified, so that
//!   is undefined behaviour however well it is checked. Rejected.
//! - `Debug` text is not a stable interface either, so `Cargo.toml` pins both crates exactly
//!   (`dfdx = "=0.13.0"`, `cudarc = "=0.9.15"`), the parse is strict (the whole prefix, field
//!   names included), every call checks the length it read against the tensor's shape, and
//!   [`self_check`] proves both directions on real memory once per process (a tensor's values
//!   read back through the pointer, a kernel-side write read back through dfdx) before the
//!   first op runs. Any mismatch panics, naming the versions; nothing is ever silently wrong.
//!   The CPU build does not compile this module at all.
//!
//! # Soundness
//! Device pointers are plain integers to Rust (cudarc's `CUdeviceptr` is a `u64`); what must
//! hold is that the memory is alive and not written while shared. [`Held`] owns a clone of the
//! tensor (the buffer's `Arc`), so the buffer outlives every use of the pointer, and it hands
//! out only `DevicePtr` (read). [`Fresh`] (write) exists only inside [`new_tensor`], for a tensor
//! that nothing else can see yet. Tensors held for backward keep their `Arc` shared, so dfdx's
//! in-place ops (`Arc::make_mut`) copy rather than write over them, as for any clone.

use super::CudaFloat;
use super::debug_prefix::{EXPECTED, Prefix, parse};
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceSlice};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cuda, CudaError, Tensor, TensorFromVec, ZerosTensor};
use std::fmt::Write;
use std::marker::PhantomData;

/// Where a flat tensor's buffer is on the device: `(pointer, elements)`. See the module's docs.
///
/// # Panics
/// If the tensor's `Debug` text is not what dfdx 0.13.0 with cudarc 0.9.15 print.
fn locate<E: CudaFloat>(t: &Tensor<(usize,), E, Cuda>) -> (CUdeviceptr, usize) {
    let mut w = Prefix::new();
    // The writer stops the formatter on purpose: the error is expected.
    let _ = write!(w, "{t:?}");
    parse(w.as_str()).unwrap_or_else(|| {
        panic!(
            "cnn's CUDA bridge cannot find a tensor's device buffer: it reads it from the \
             `Debug` text of dfdx 0.13.0 / cudarc 0.9.15 tensors (pinned in Cargo.toml), and \
             this text does not match\n  expected: {EXPECTED}...\n  got:      {}",
            w.as_str()
        )
    })
}

/// A tensor's data as one contiguous device buffer that kernels read, with the tensor (its
/// buffer's `Arc`) kept alive for as long as this lives. Made by `hold`; `'static`, so an op
/// keeps its operands for backward this way instead of copying them.
pub struct Held<E: CudaFloat> {
    _tensor: Tensor<(usize,), E, Cuda>,
    ptr: CUdeviceptr,
    len: usize,
}

impl<E: CudaFloat> DeviceSlice<E> for Held<E> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<E: CudaFloat> DevicePtr<E> for Held<E> {
    fn device_ptr(&self) -> &CUdeviceptr {
        &self.ptr
    }
}

/// Holds `t`'s buffer for reading: no copy when `t` is contiguous (every tensor our ops are
/// given is: dfdx allocates them so, and the ops call `try_contiguous` on their inputs), and
/// dfdx's own device copy into contiguous order otherwise.
pub(crate) fn hold<S: Shape, E: CudaFloat, T>(
    t: &Tensor<S, E, Cuda, T>,
) -> Result<Held<E>, CudaError> {
    let n = t.shape().num_elements();
    let flat = E::flat(t)?;
    let (ptr, len) = locate(&flat);
    assert_eq!(
        len, n,
        "cnn's CUDA bridge read a buffer of {len} elements for a tensor of {n}"
    );
    Ok(Held {
        _tensor: flat,
        ptr,
        len,
    })
}

/// A fresh tensor's buffer, for a kernel to write: only [`new_tensor`] makes one.
pub(crate) struct Fresh<'a, E> {
    ptr: CUdeviceptr,
    len: usize,
    _tensor: PhantomData<&'a mut E>,
}

impl<E> DeviceSlice<E> for Fresh<'_, E> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<E> DevicePtr<E> for Fresh<'_, E> {
    fn device_ptr(&self) -> &CUdeviceptr {
        &self.ptr
    }
}

impl<E> DevicePtrMut<E> for Fresh<'_, E> {
    fn device_ptr_mut(&mut self) -> &mut CUdeviceptr {
        &mut self.ptr
    }
}

/// A new tensor of shape `shape` whose values `fill` writes on the device (its buffer starts
/// zeroed: a kernel that accumulates may rely on that).
pub(crate) fn new_tensor<S: Shape, E: CudaFloat>(
    cuda: &Cuda,
    shape: S,
    fill: impl FnOnce(&mut Fresh<'_, E>) -> Result<(), CudaError>,
) -> Result<Tensor<S, E, Cuda>, CudaError> {
    let n = shape.num_elements();
    let flat: Tensor<(usize,), E, Cuda> = cuda.try_zeros_like(&(n,))?;
    let (ptr, len) = locate(&flat);
    assert_eq!(
        len, n,
        "cnn's CUDA bridge read a buffer of {len} elements for a new tensor of {n}"
    );
    // The tensor was made just above and is seen by nothing else until it is returned: the
    // kernels `fill` launches are its only writers.
    fill(&mut Fresh {
        ptr,
        len,
        _tensor: PhantomData,
    })?;
    E::unflat(flat, shape)
}

/// A device buffer a kernel reads: one of our own, or a tensor's (for what an op keeps for
/// backward, which is sometimes each).
pub(crate) enum Buf<E: CudaFloat> {
    /// Memory of our own.
    Own(CudaSlice<E>),
    /// A tensor's.
    Tensor(Held<E>),
}

impl<E: CudaFloat> DeviceSlice<E> for Buf<E> {
    fn len(&self) -> usize {
        match self {
            Buf::Own(s) => s.len(),
            Buf::Tensor(h) => h.len(),
        }
    }
}

impl<E: CudaFloat> DevicePtr<E> for Buf<E> {
    fn device_ptr(&self) -> &CUdeviceptr {
        match self {
            Buf::Own(s) => s.device_ptr(),
            Buf::Tensor(h) => h.device_ptr(),
        }
    }
}

/// Proves the bridge on real memory, once per process, before the first op uses it: a tensor's
/// values read back through [`hold`]'s pointer, and values written through [`new_tensor`]'s
/// read back through dfdx. Panics (naming the pinned versions) if either differs.
pub(crate) fn self_check(cuda: &Cuda) {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let run = || -> Result<(), CudaError> {
            let dev = super::cuda_device::<f32>(cuda)?;
            let values = vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -0.5, 1e-3];
            let n = values.len();
            let t = cuda.try_tensor_from_vec(values.clone(), (n,))?;
            let mut read = vec![0.0f32; n];
            dev.dtoh_sync_copy_into(&hold(&t)?, &mut read)?;
            assert_eq!(
                read, values,
                "cnn's CUDA bridge reads the wrong memory for a tensor (dfdx 0.13.0 / cudarc \
                 0.9.15 expected)"
            );
            let written = new_tensor(cuda, (n,), |out| {
                dev.htod_sync_copy_into(&values, out)?;
                Ok(())
            })?;
            assert_eq!(
                written.as_vec(),
                values,
                "cnn's CUDA bridge writes the wrong memory for a tensor (dfdx 0.13.0 / cudarc \
                 0.9.15 expected)"
            );
            Ok(())
        };
        if let Err(e) = run() {
            panic!("cnn's CUDA bridge could not check itself on the device: {e:?}");
        }
    });
}
