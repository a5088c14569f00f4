//! How many host↔device copies a training step makes on CUDA, counted at the driver: this test
//! binary defines the CUDA driver's memcpy entry points itself (cudarc 0.9 links them by name,
//! so the linker binds cudarc's calls to these definitions), records each call's direction and
//! size (and, for small uploads, the words it carries), and forwards it to the real driver
//! (`dlsym(RTLD_NEXT)`). So it counts every copy, dfdx's own included, not only ours.
//!
//! What a step may copy (and the asserts hold exactly this, nothing else):
//! - in: the input batch and the one-hot labels (what the caller moves), dfdx's `1.0` that
//!   seeds backward (4 bytes: `Backward::try_backward` fills the loss's gradient from the
//!   host), and dfdx's launch parameters: its broadcast and reduction kernels upload their dims
//!   and strides (a few `usize`s) per launch. Our ops upload nothing.
//! - out: the loss (4 bytes).
//! - on the device: one copy of the logits, dfdx's own: `log_softmax`'s `exp` works in place on
//!   a buffer the tape still holds, so dfdx copies it first. None of ours.
//!
//! Each of our ops is also run alone, forward and backward through its kernel trait, and must
//! make no copy at all.
#![cfg(feature = "cuda")]
#![allow(non_snake_case)]

mod common;

use cnn::ops::add_relu::AddReluKernel;
use cnn::ops::batch_norm::{BatchNormGeometry, BatchNormKernel};
use cnn::ops::conv_transpose2d::{ConvTranspose2DGeometry, ConvTranspose2DKernel};
use cnn::ops::{
    Activation, Conv2DGeometry, Conv2DKernel, Conv2DOp, Pool2DGeometry, Pool2DKernel, PoolKind,
};
use cnn::prelude::*;
use cudarc::driver::sys::{CUdeviceptr, CUresult, CUstream};
use std::ffi::c_void;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Which way a copy went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    HtoD,
    DtoH,
    DtoD,
}

/// One copy: its direction, its size, and for uploads of at most 256 bytes the 8-byte words it
/// carried (to tell dfdx's dims and strides from data).
#[derive(Clone, Debug)]
struct Copy {
    dir: Dir,
    bytes: usize,
    words: Option<Vec<u64>>,
}

/// The copies recorded while `RECORDING` is set.
static LOG: Mutex<Vec<Copy>> = Mutex::new(Vec::new());
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// One test at a time: the log is global.
static SERIAL: Mutex<()> = Mutex::new(());

fn record(dir: Dir, bytes: usize, src: *const c_void) {
    if !RECORDING.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let words = (dir == Dir::HtoD && bytes <= 256 && bytes % 8 == 0).then(|| {
        // SAFETY: the driver is about to read these `bytes` from `src`; so may we.
        let s = unsafe { std::slice::from_raw_parts(src as *const u8, bytes) };
        s.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    });
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Copy { dir, bytes, words });
}

/// The real driver's `name`.
fn real(name: &'static std::ffi::CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT: the next object after this binary
    // that defines it, libcuda.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!f.is_null(), "no {name:?} in the CUDA driver");
    f
}

macro_rules! interpose {
    ($name:ident ($($arg:ident: $t:ty),*) => $dir:expr, $bytes:ident, $src:expr) => {
        /// The driver's function of this name, counted.
        ///
        /// # Safety
        /// As the driver's: cudarc calls it with the arguments the driver expects.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> CUresult {
            static REAL: OnceLock<usize> = OnceLock::new();
            let f = *REAL.get_or_init(|| {
                real(std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()).unwrap()) as usize
            });
            record($dir, $bytes, $src);
            // SAFETY: the driver's own function, with the signature cudarc declares for it.
            unsafe {
                let f: unsafe extern "C" fn($($t),*) -> CUresult = std::mem::transmute(f);
                f($($arg),*)
            }
        }
    };
}

interpose!(cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: CUstream) => Dir::HtoD, bytes, src);
interpose!(cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize) => Dir::HtoD, bytes, src);
interpose!(cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: CUstream) => Dir::DtoH, bytes, std::ptr::null());
interpose!(cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize) => Dir::DtoH, bytes, std::ptr::null());
interpose!(cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream) => Dir::DtoD, bytes, std::ptr::null());
interpose!(cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) => Dir::DtoD, bytes, std::ptr::null());

/// The copies `f` makes (the device synchronised before and after).
fn copies_of(dev: &Cuda, f: impl FnOnce()) -> Vec<Copy> {
    dev.synchronize();
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
    RECORDING.store(true, std::sync::atomic::Ordering::SeqCst);
    f();
    dev.synchronize();
    RECORDING.store(false, std::sync::atomic::Ordering::SeqCst);
    std::mem::take(&mut *LOG.lock().unwrap_or_else(|e| e.into_inner()))
}

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// dfdx's launch parameters: an upload of at most 144 bytes (3 arrays of at most 6 `usize`s)
/// whose every word is a small number (a dimension or a stride), never float data.
fn is_launch_params(c: &Copy) -> bool {
    c.dir == Dir::HtoD
        && c.bytes <= 144
        && c.words
            .as_ref()
            .is_some_and(|w| w.iter().all(|&v| v < 1 << 32))
}

cnn! {
    /// d2l's LeNet, as `examples/lenet.rs` trains it.
    #[cnn(input_grad = false)]
    struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }

    /// d2l 8.6's residual block.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv2d(c, kernel = 3, padding = 1, stride = stride), batch_norm2d, relu,
            conv2d(c, kernel = 3, padding = 1), batch_norm2d,
        } shortcut {
            if use_1x1conv { conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// The `resnet` network of `examples/bench.rs`.
    #[cnn(input_grad = false)]
    struct ResNet: [1, 28, 28] -> [10] {
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        Residual(32), Residual(32),
        Residual(64, use_1x1conv = true, stride = 2), Residual(64),
        global_avg_pool2d, linear(10),
    }
}

type Batch = (usize, Const<1>, Const<28>, Const<28>);
const B: usize = 64;

/// One training step's copies, after two warm-up steps (module loading, the bridge's check),
/// printed and checked against the list in the module's docs.
fn check_step<M>(name: &str)
where
    M: BuildOnDevice<Cuda, f32>,
    M::Built: ModuleMut<
            Tensor<Batch, f32, Cuda, OwnedTape<f32, Cuda>>,
            Output = Tensor<(usize, Const<10>), f32, Cuda, OwnedTape<f32, Cuda>>,
        >,
{
    let _serial = serial();
    let dev = Cuda::seed_from_u64(0);
    let mut model = dev.build_module::<M, f32>();
    let mut opt = Sgd::new(&model, SgdConfig::default());
    let mut grads = Some(model.alloc_grads());
    let images: Vec<f32> = (0..B * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let labels: Vec<usize> = (0..B).map(|i| (i * 7) % 10).collect();
    let mut step = || {
        let x: Tensor<Batch, f32, Cuda> =
            dev.tensor_from_vec(images.clone(), (B, Const, Const, Const));
        let y = dev.one_hot_encode(Const::<10>, labels.clone());
        let logits = model.forward_mut(x.traced(grads.take().unwrap()));
        let loss = cross_entropy_with_logits_loss(logits, y);
        let value = loss.array();
        let mut g = loss.backward();
        opt.update(&mut model, &g)
            .expect("every parameter has a gradient");
        model.zero_grads(&mut g);
        grads = Some(g);
        value
    };
    for _ in 0..2 {
        step();
    }
    let mut loss = 0.0;
    let log = copies_of(&dev, || loss = step());
    assert!(loss.is_finite());

    let params = log.iter().filter(|c| is_launch_params(c)).count();
    let rest: Vec<&Copy> = log.iter().filter(|c| !is_launch_params(c)).collect();
    let summary: Vec<(Dir, usize)> = rest.iter().map(|c| (c.dir, c.bytes)).collect();
    println!(
        "{name}: one training step of {B} images: {} copies: {summary:?} and {params} uploads \
         of dfdx's launch parameters",
        log.len()
    );
    let one = 1.0f32.to_le_bytes().len();
    assert_eq!(
        summary,
        [
            (Dir::HtoD, B * 784 * 4), // the images
            (Dir::HtoD, B * 10 * 4),  // the one-hot labels
            // dfdx's log_softmax (in cross_entropy_with_logits_loss): its `exp` runs in place
            // on a buffer the tape still holds, so dfdx copies the logits first
            // (tensor_ops/utilities/cuda_kernels.rs:92, CachableCudaSlice::clone); seen
            // on the CUDA stand-in, which this assert had never run on before.
            (Dir::DtoD, B * 10 * 4),
            (Dir::DtoH, one), // the loss
            (Dir::HtoD, one), // dfdx's 1.0 seeding backward
        ],
        "{name}: a training step copies more than the batch in and the loss out: {rest:#?}"
    );
}

#[test]
fn lenet_step_copies_only_the_batch_and_the_loss() {
    check_step::<LeNet>("LeNet");
}

#[test]
fn resnet_step_copies_only_the_batch_and_the_loss() {
    check_step::<ResNet>("ResNet");
}

/// A tensor of `n` values on `dev`, made before counting starts.
fn values(dev: &Cuda, n: usize, seed: u64) -> Tensor<(usize,), f32, Cuda> {
    let mut rng = common::Rng::new(seed);
    let v = rng.vec(n).into_iter().map(|v| v as f32).collect();
    dev.tensor_from_vec(v, (n,))
}

/// A zeroed gradient buffer of `n` values.
fn grad(dev: &Cuda, n: usize) -> <Cuda as Storage<f32>>::Vec {
    Storage::<f32>::try_alloc_len(dev, n).unwrap()
}

/// Each of our ops alone, forward and backward through its kernel trait: no copy of any kind.
#[test]
fn ops_copy_nothing() {
    let _serial = serial();
    let dev = Cuda::seed_from_u64(0);
    let (b, c, o, h) = (4, 3, 8, 12);
    let conv = Conv2DOp {
        geom: Conv2DGeometry {
            batch: b,
            in_channels: c,
            out_channels: o,
            groups: 1,
            input: (h, h),
            output: (h, h),
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
            dilation: (1, 1),
        },
        act: Activation::Relu,
        pool: Some(Pool2DGeometry {
            kind: PoolKind::Max,
            input: (h, h),
            output: (h / 2, h / 2),
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
        }),
        input_grad: true,
    };
    let (nx, nw, nt) = (b * c * h * h, o * c * 9, c * o * 4);
    let x = values(&dev, nx, 1);
    let w = values(&dev, nw, 2);
    let bias = values(&dev, o, 3);
    let pooled = b * o * (h / 2) * (h / 2);
    let check = |what: &str, f: &mut dyn FnMut()| {
        f(); // warm up: module loading, the bridge's check
        let log = copies_of(&dev, f);
        assert!(log.is_empty(), "{what} copies: {log:?}");
    };

    check("conv2d + relu + max pool", &mut || {
        let (out, saved) = dev
            .conv2d_forward(&conv, &x, &w, Some(&bias), (pooled,), true)
            .unwrap();
        let (mut dx, mut dw, mut db) = (grad(&dev, nx), grad(&dev, nw), grad(&dev, o));
        let gout = grad(&dev, out.shape().num_elements());
        dev.conv2d_backward(&conv, saved, &gout, Some(&mut dx), &mut dw, Some(&mut db))
            .unwrap();
    });

    let avg = Pool2DGeometry {
        kind: PoolKind::Avg,
        ..conv.pool.unwrap()
    };
    check("avg pool", &mut || {
        let planes = b * c;
        let (out, saved) = dev
            .pool2d_forward(&avg, &x, (planes * (h / 2) * (h / 2),), true)
            .unwrap();
        let (mut dx, gout) = (grad(&dev, nx), grad(&dev, out.shape().num_elements()));
        dev.pool2d_backward(&avg, saved, &gout, &mut dx).unwrap();
    });

    let bn = BatchNormGeometry {
        batch: b,
        channels: c,
        plane: h * h,
        epsilon: 1e-5,
        momentum: 0.1,
        relu: true,
    };
    let (gamma, beta) = (values(&dev, c, 4), values(&dev, c, 5));
    let (mut rm, mut rv) = (
        values(&dev, c, 6),
        dev.tensor_from_vec(vec![1.0f32; c], (c,)),
    );
    check("batch norm (train, backward, infer)", &mut || {
        let (out, saved) = dev
            .batch_norm_train(&bn, &x, &gamma, &beta, &mut rm, &mut rv, (nx,), true)
            .unwrap();
        let (mut dx, mut dg, mut db) = (grad(&dev, nx), grad(&dev, c), grad(&dev, c));
        let gout = grad(&dev, out.shape().num_elements());
        dev.batch_norm_backward(&bn, saved, &gout, &mut dx, &mut dg, &mut db)
            .unwrap();
        dev.batch_norm_infer(&bn, &x, &gamma, &beta, &rm, &rv, (nx,))
            .unwrap();
    });

    let x2 = values(&dev, nx, 7);
    check("add_relu", &mut || {
        let (out, saved) = dev.add_relu_forward(&x, &x2, (nx,), true).unwrap();
        let (mut d, gout) = (grad(&dev, nx), grad(&dev, out.shape().num_elements()));
        dev.add_relu_backward(&saved, &gout, &mut d).unwrap();
    });

    let tg = ConvTranspose2DGeometry {
        batch: b,
        in_channels: c,
        out_channels: o,
        groups: 1,
        input: (h, h),
        output: (2 * h, 2 * h),
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
        output_padding: (0, 0),
        dilation: (1, 1),
    };
    let tw = values(&dev, nt, 8);
    check("conv_transpose2d", &mut || {
        let n_out = b * o * 4 * h * h;
        let (out, saved) = dev
            .conv_transpose2d_forward(&tg, &x, &tw, Some(&bias), (n_out,), true)
            .unwrap();
        let (mut dx, mut dw, mut db) = (grad(&dev, nx), grad(&dev, nt), grad(&dev, o));
        let gout = grad(&dev, out.shape().num_elements());
        dev.conv_transpose2d_backward(&tg, saved, &gout, &mut dx, &mut dw, Some(&mut db))
            .unwrap();
    });
}
