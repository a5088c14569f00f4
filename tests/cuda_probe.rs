//! A first look at a GPU machine, run before anything long (`.gpu/run.sh` runs it first): the
//! driver's and NVRTC's versions, how the crate's kernels load (a CUBIN for the device, or PTX
//! and why: `src/ops/cuda/load.rs`), and what the driver answers to two edge cases whose answers
//! are not known from here: a 0-byte allocation and a 0-block launch. It prints what it sees,
//! each line starting `probe:` (run it with `--nocapture`); it fails only if there is no device
//! or the crate's kernels do not load, since then nothing after it can work.
#![cfg(feature = "cuda")]

use cnn::ops::cuda::{KernelImage, MODULE, load_kernels};
use cudarc::driver::{DeviceSlice, LaunchAsync, LaunchConfig, result, sys};
use dfdx::tensor::{Cuda, Storage};

#[test]
fn probe() {
    let mut driver = 0;
    // SAFETY: it writes one `int` through a pointer to a live local.
    let r = unsafe { sys::cuDriverGetVersion(&mut driver) };
    println!(
        "probe: driver CUDA {}.{} (cuDriverGetVersion {driver}, {r:?})",
        driver / 1000,
        driver % 1000 / 10
    );

    let cuda = Cuda::default();
    let load = load_kernels(&cuda).expect("the crate's kernels must load on this device");
    println!("probe: NVRTC {:?}", load.nvrtc_version);
    match &load.image {
        KernelImage::Cubin { arch } => println!("probe: kernels.cu loaded as a CUBIN for {arch}"),
        KernelImage::Ptx { why } => println!("probe: kernels.cu loaded as PTX (JIT): {why}"),
    }
    assert_eq!(
        load_kernels(&cuda).ok().as_ref(),
        Some(&load),
        "a second load_kernels reports the first load"
    );

    // The cudarc device under dfdx's `Cuda`, which the module was loaded onto.
    let dev = Storage::<f32>::try_alloc_len(&cuda, 1)
        .expect("a 1-element buffer")
        .device();

    // 0 bytes: the crate allocates at least one element (ops::cuda::alloc) in case the driver
    // refuses 0; what does it answer?
    // SAFETY: a plain allocation; freed below if it returned a pointer.
    match unsafe { result::malloc_sync(0) } {
        Ok(ptr) => {
            println!("probe: cuMemAlloc(0 bytes) -> Ok({ptr:#x})");
            if ptr != 0 {
                // SAFETY: the pointer cuMemAlloc just returned, freed once.
                let freed = unsafe { result::free_sync(ptr) };
                println!("probe: cuMemFree of it -> {freed:?}");
            }
        }
        Err(e) => println!("probe: cuMemAlloc(0 bytes) -> {e:?}"),
    }
    let zeros = dev.alloc_zeros::<f32>(0).map(|s| s.len());
    println!("probe: CudaDevice::alloc_zeros::<f32>(0) (stream-ordered) -> {zeros:?}");
    let dfdx = Storage::<f32>::try_alloc_len(&cuda, 0).map(|s| s.len());
    println!("probe: dfdx try_alloc_len(0) -> {dfdx:?}");

    // 0 blocks: the crate launches at least one (ops::cuda::launch_cfg); what does the driver
    // answer to none, and is the context still usable after?
    let f = dev
        .get_func(MODULE, "add_relu_f32")
        .expect("add_relu_f32 is loaded");
    let cfg = |blocks| LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // add_relu_f32(a, b, y, n): with n = 0 it touches no memory, so null pointers are fine.
    let args = (0u64, 0u64, 0u64, 0usize);
    // SAFETY: n = 0: the kernel reads and writes nothing.
    let none = unsafe { f.clone().launch(cfg(0), args) };
    println!("probe: launch of 0 blocks -> {none:?}");
    println!("probe: synchronize after it -> {:?}", dev.synchronize());
    // SAFETY: as above.
    let one = unsafe { f.launch(cfg(1), args) };
    println!("probe: launch of 1 block (n = 0) -> {one:?}");
    println!("probe: synchronize after it -> {:?}", dev.synchronize());
}
