//! A CPU stand-in for the CUDA driver, cuBLAS and NVRTC, so that `cnn --features cuda` runs in
//! CI on a machine without a GPU. Used only by tests and CI: `scripts/cuda-emu.sh` builds this
//! crate, links `libcuda.so`, `libcublas.so`, `libcublasLt.so` and `libnvrtc.so` to its one
//! shared library, puts its `nvcc` and `nvidia-smi` stand-ins on `PATH`, and runs the crate's
//! CUDA tests against it.
//!
//! # What it is
//! - **The driver** (this file): the entry points cudarc 0.9.15 and dfdx 0.13 call, under their
//!   exact names (`_v2` suffixes included), with the device answering as an H100 (compute
//!   capability 9.0, 132 SMs, 48 KiB of shared memory per block, memory pools). A call the
//!   stand-in does not implement fails loudly, naming the entry point; it never answers
//!   silently.
//! - **Memory** (`memory.rs`): device pointers are host addresses, each allocation between
//!   guard pages, fresh memory filled with NaN, every copy and operand checked against the live
//!   allocations.
//! - **Kernels** (`jit.rs`, `include/cuda_emu.h`): a module is CUDA C++ *source* (the stand-in's
//!   nvcc and NVRTC hand it over instead of PTX), compiled for the CPU by g++ and run block by
//!   block, a block's threads as fibers with real barriers.
//! - **cuBLAS** (`blas.rs`): the gemms dfdx and the crate make, on the `gemm` crate, every
//!   leading dimension and stride checked against the live allocations.
//! - **NVRTC** (`nvrtc.rs`).
//!
//! # Checks a GPU run would not give
//! The driver's launch limits return the driver's errors; a kernel that writes outside its
//! buffers is stopped and named (the trailing guard page, or the canary checked after each
//! launch); a barrier that some threads of a block never reach aborts with the kernel's name;
//! every kernel launched is appended to the launch log `$CUDA_EMU_LOG` (one line per kernel
//! name and process), so CI can require that every kernel the crate defines ran.
//!
//! # Streams
//! By default every operation runs when it is enqueued, on the calling thread (the host's
//! order, one of the orders a GPU may choose); with `CUDA_EMU_STREAMS=deferred` operations wait
//! in their streams and independent streams interleave in a seeded random order, keeping only
//! the order CUDA promises (`streams.rs`).
//!
//! # Environment
//! - `CUDA_EMU_LOG=FILE`: the launch log.
//! - `CUDA_EMU_NO_POOLS=1`: the device says it has no memory pools, so cudarc takes its
//!   synchronous `_v2` allocation path.
//! - `CUDA_EMU_QUIET=1`: no message on stderr for errors returned to the caller.
//! - `CUDA_EMU_STREAMS=eager|deferred`, `CUDA_EMU_SEED=N`: the stream mode (`streams.rs`).
//! - The JIT's own (`jit.rs`).

// The entry points' contracts are the CUDA API's own (pointers the caller owns, handles this
// library made); each `unsafe` block below says which part it relies on.
#![allow(clippy::missing_safety_doc)]

pub mod blas;
mod fault;
pub mod jit;
pub mod memory;
pub mod nvrtc;
mod streams;

use std::collections::HashSet;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// `CUresult`.
pub type CUresult = c_uint;
/// `CUdeviceptr`.
pub type CUdeviceptr = u64;
/// The opaque handles: pointers to this library's own objects.
pub type Handle = *mut c_void;

pub const CUDA_SUCCESS: CUresult = 0;
pub const CUDA_ERROR_INVALID_VALUE: CUresult = 1;
pub const CUDA_ERROR_OUT_OF_MEMORY: CUresult = 2;
pub const CUDA_ERROR_NOT_INITIALIZED: CUresult = 3;
pub const CUDA_ERROR_INVALID_DEVICE: CUresult = 101;
pub const CUDA_ERROR_INVALID_IMAGE: CUresult = 200;
pub const CUDA_ERROR_INVALID_CONTEXT: CUresult = 201;
pub const CUDA_ERROR_INVALID_PTX: CUresult = 218;
pub const CUDA_ERROR_FILE_NOT_FOUND: CUresult = 301;
pub const CUDA_ERROR_INVALID_HANDLE: CUresult = 400;
pub const CUDA_ERROR_NOT_FOUND: CUresult = 500;
pub const CUDA_ERROR_ILLEGAL_ADDRESS: CUresult = 700;
pub const CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: CUresult = 701;
pub const CUDA_ERROR_LAUNCH_FAILED: CUresult = 719;
pub const CUDA_ERROR_NOT_SUPPORTED: CUresult = 801;

/// Reports an error returned to the caller on stderr (unless `CUDA_EMU_QUIET`), so that a test
/// failing on it says why, then returns `code`.
pub(crate) fn fail(entry: &str, code: CUresult, message: impl std::fmt::Display) -> CUresult {
    if std::env::var_os("CUDA_EMU_QUIET").is_none() {
        eprintln!("cuda-emu: {entry}: {message}");
    }
    code
}

/// Logs `entry` as called but not implemented, and returns `CUDA_ERROR_NOT_SUPPORTED`.
fn unsupported(entry: &str) -> CUresult {
    fail(
        entry,
        CUDA_ERROR_NOT_SUPPORTED,
        "not implemented by the CUDA stand-in (tools/cuda-emu)",
    )
}

// ---------------------------------------------------------------------------------------------
// The device, its context, its attributes

/// The one context (the device's primary context). Its address is the `CUcontext`.
static CONTEXT: u8 = 0;

fn context() -> Handle {
    &CONTEXT as *const u8 as Handle
}

/// The driver version answered: CUDA 13.0 (the GPU machines' driver 580).
pub const DRIVER_VERSION: c_int = 13000;

/// An H100's answer to `cuDeviceGetAttribute`, for the attributes anything here asks about.
fn attribute(attr: c_uint) -> Option<c_int> {
    Some(match attr {
        1 => 1024,                                                         // MAX_THREADS_PER_BLOCK
        2 | 3 => 1024,                                                     // MAX_BLOCK_DIM_X, _Y
        4 => 64,                                                           // MAX_BLOCK_DIM_Z
        5 => i32::MAX,                                                     // MAX_GRID_DIM_X
        6 | 7 => 65_535,                                                   // MAX_GRID_DIM_Y, _Z
        8 => MAX_SHARED_PER_BLOCK as i32, // MAX_SHARED_MEMORY_PER_BLOCK
        9 => 65_536,                      // TOTAL_CONSTANT_MEMORY
        10 => 32,                         // WARP_SIZE
        12 => 65_536,                     // MAX_REGISTERS_PER_BLOCK
        13 => 1_755_000,                  // CLOCK_RATE (kHz)
        16 => 132,                        // MULTIPROCESSOR_COUNT
        31 => 1,                          // CONCURRENT_KERNELS
        38 => 52_428_800,                 // L2_CACHE_SIZE
        39 => 2048,                       // MAX_THREADS_PER_MULTIPROCESSOR
        41 => 1,                          // UNIFIED_ADDRESSING
        75 => 9,                          // COMPUTE_CAPABILITY_MAJOR
        76 => 0,                          // COMPUTE_CAPABILITY_MINOR
        81 => 233_472,                    // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        82 => 65_536,                     // MAX_REGISTERS_PER_MULTIPROCESSOR
        97 => 232_448,                    // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        106 => 32,                        // MAX_BLOCKS_PER_MULTIPROCESSOR
        115 => i32::from(std::env::var_os("CUDA_EMU_NO_POOLS").is_none()), // MEMORY_POOLS_SUPPORTED
        _ => return None,
    })
}

/// The most shared memory (static and dynamic) a block may use without opting in.
pub const MAX_SHARED_PER_BLOCK: u32 = 49_152;
/// What `cuMemGetInfo`/`cuDeviceTotalMem` say the device has: an H100's 80 GB.
const TOTAL_MEMORY: usize = 85_520_809_984;

#[unsafe(no_mangle)]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    if flags != 0 {
        return fail("cuInit", CUDA_ERROR_INVALID_VALUE, "flags must be 0");
    }
    fault::install();
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CUresult {
    if version.is_null() {
        return fail(
            "cuDriverGetVersion",
            CUDA_ERROR_INVALID_VALUE,
            "null pointer",
        );
    }
    // SAFETY: the caller passes a writable int.
    unsafe { *version = DRIVER_VERSION };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    // SAFETY: the caller passes a writable int.
    unsafe { *count = 1 };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> CUresult {
    if ordinal != 0 {
        return fail(
            "cuDeviceGet",
            CUDA_ERROR_INVALID_DEVICE,
            format!("device {ordinal}: the stand-in has one device, 0"),
        );
    }
    // SAFETY: the caller passes a writable CUdevice (an int).
    unsafe { *device = 0 };
    CUDA_SUCCESS
}

fn check_device(entry: &str, dev: c_int) -> Result<(), CUresult> {
    if dev == 0 {
        Ok(())
    } else {
        Err(fail(
            entry,
            CUDA_ERROR_INVALID_DEVICE,
            format!("no device {dev}"),
        ))
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    value: *mut c_int,
    attr: c_uint,
    dev: c_int,
) -> CUresult {
    if let Err(e) = check_device("cuDeviceGetAttribute", dev) {
        return e;
    }
    match attribute(attr) {
        Some(v) => {
            // SAFETY: the caller passes a writable int.
            unsafe { *value = v };
            CUDA_SUCCESS
        }
        None => fail(
            "cuDeviceGetAttribute",
            CUDA_ERROR_NOT_SUPPORTED,
            format!("attribute {attr} has no answer in the stand-in (add it to attribute())"),
        ),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CUresult {
    if let Err(e) = check_device("cuDeviceTotalMem_v2", dev) {
        return e;
    }
    // SAFETY: the caller passes a writable size_t.
    unsafe { *bytes = TOTAL_MEMORY };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    let (used, _) = memory::usage();
    // SAFETY: the caller passes two writable size_ts.
    unsafe {
        *free = TOTAL_MEMORY.saturating_sub(used);
        *total = TOTAL_MEMORY;
    }
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut Handle, dev: c_int) -> CUresult {
    if let Err(e) = check_device("cuDevicePrimaryCtxRetain", dev) {
        return e;
    }
    // SAFETY: the caller passes a writable CUcontext.
    unsafe { *ctx = context() };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: c_int) -> CUresult {
    match check_device("cuDevicePrimaryCtxRelease_v2", dev) {
        Ok(()) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSetCurrent(ctx: Handle) -> CUresult {
    if ctx.is_null() || ctx == context() {
        CUDA_SUCCESS
    } else {
        fail(
            "cuCtxSetCurrent",
            CUDA_ERROR_INVALID_CONTEXT,
            format!("{ctx:?} is not the device's context"),
        )
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut Handle) -> CUresult {
    // SAFETY: the caller passes a writable CUcontext.
    unsafe { *ctx = context() };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    streams::synchronize_all();
    CUDA_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Streams and events

/// The streams and events this library made and has not destroyed (by address), so that a
/// stale or foreign handle is refused.
static STREAMS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static EVENTS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn registry(
    set: &Mutex<Option<HashSet<usize>>>,
) -> std::sync::MutexGuard<'_, Option<HashSet<usize>>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_handle(set: &Mutex<Option<HashSet<usize>>>) -> Handle {
    // A real allocation, so that addresses are unique while it lives.
    let h = Box::into_raw(Box::new(0u64)) as Handle;
    registry(set).get_or_insert_default().insert(h as usize);
    h
}

fn drop_handle(set: &Mutex<Option<HashSet<usize>>>, h: Handle) -> bool {
    let known = registry(set).get_or_insert_default().remove(&(h as usize));
    if known {
        // SAFETY: h was made by `new_handle` from a Box<u64> and is removed from the registry.
        drop(unsafe { Box::from_raw(h as *mut u64) });
    }
    known
}

/// Checks a stream handle: null (the legacy default stream) or one of ours.
pub(crate) fn check_stream(entry: &str, stream: Handle) -> Result<(), CUresult> {
    if stream.is_null()
        || registry(&STREAMS)
            .get_or_insert_default()
            .contains(&(stream as usize))
    {
        Ok(())
    } else {
        Err(fail(
            entry,
            CUDA_ERROR_INVALID_HANDLE,
            format!("{stream:?} is not a live stream"),
        ))
    }
}

fn check_event(entry: &str, event: Handle) -> Result<(), CUresult> {
    if registry(&EVENTS)
        .get_or_insert_default()
        .contains(&(event as usize))
    {
        Ok(())
    } else {
        Err(fail(
            entry,
            CUDA_ERROR_INVALID_HANDLE,
            format!("{event:?} is not a live event"),
        ))
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreate(stream: *mut Handle, flags: c_uint) -> CUresult {
    let h = new_handle(&STREAMS);
    // CU_STREAM_NON_BLOCKING = 1: no implicit synchronisation with the legacy stream.
    streams::create(h as usize, flags & 1 != 0);
    // SAFETY: the caller passes a writable CUstream.
    unsafe { *stream = h };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamDestroy_v2(stream: Handle) -> CUresult {
    if check_stream("cuStreamDestroy_v2", stream).is_ok() && !stream.is_null() {
        streams::destroy(stream as usize);
    }
    if drop_handle(&STREAMS, stream) {
        CUDA_SUCCESS
    } else {
        fail(
            "cuStreamDestroy_v2",
            CUDA_ERROR_INVALID_HANDLE,
            format!("{stream:?} is not a live stream"),
        )
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize(stream: Handle) -> CUresult {
    match check_stream("cuStreamSynchronize", stream) {
        Ok(()) => {
            streams::synchronize(stream as usize);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamWaitEvent(stream: Handle, event: Handle, _flags: c_uint) -> CUresult {
    match check_stream("cuStreamWaitEvent", stream)
        .and_then(|()| check_event("cuStreamWaitEvent", event))
    {
        Ok(()) => {
            streams::wait(stream as usize, event as usize);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventCreate(event: *mut Handle, _flags: c_uint) -> CUresult {
    // SAFETY: the caller passes a writable CUevent.
    unsafe { *event = new_handle(&EVENTS) };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventDestroy_v2(event: Handle) -> CUresult {
    streams::forget(event as usize);
    if drop_handle(&EVENTS, event) {
        CUDA_SUCCESS
    } else {
        fail(
            "cuEventDestroy_v2",
            CUDA_ERROR_INVALID_HANDLE,
            format!("{event:?} is not a live event"),
        )
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventRecord(event: Handle, stream: Handle) -> CUresult {
    match check_event("cuEventRecord", event).and_then(|()| check_stream("cuEventRecord", stream)) {
        Ok(()) => {
            streams::record(event as usize, stream as usize);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventQuery(event: Handle) -> CUresult {
    match check_event("cuEventQuery", event) {
        Ok(()) => {
            streams::reach(event as usize);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventSynchronize(event: Handle) -> CUresult {
    cuEventQuery(event)
}

// ---------------------------------------------------------------------------------------------
// Memory

fn alloc_into(entry: &str, dptr: *mut CUdeviceptr, bytes: usize) -> CUresult {
    if dptr.is_null() {
        return fail(
            entry,
            CUDA_ERROR_INVALID_VALUE,
            "null pointer for the result",
        );
    }
    match memory::alloc(bytes) {
        Ok(p) => {
            // SAFETY: checked non-null; the caller passes a writable CUdeviceptr.
            unsafe { *dptr = p };
            CUDA_SUCCESS
        }
        Err(e) => fail(entry, CUDA_ERROR_OUT_OF_MEMORY, e),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: Handle,
) -> CUresult {
    if let Err(e) = check_stream("cuMemAllocAsync", stream) {
        return e;
    }
    alloc_into("cuMemAllocAsync", dptr, bytes)
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytes: usize) -> CUresult {
    if bytes == 0 {
        // The driver's documented answer for cuMemAlloc.
        return fail("cuMemAlloc_v2", CUDA_ERROR_INVALID_VALUE, "0 bytes");
    }
    alloc_into("cuMemAlloc_v2", dptr, bytes)
}

fn free(entry: &str, ptr: CUdeviceptr) -> CUresult {
    match memory::free(ptr) {
        Ok(()) => CUDA_SUCCESS,
        Err(e) if e.starts_with("found") => {
            // A kernel or copy wrote past the buffer: stop here, as a GPU's sticky error would
            // (later results mean nothing).
            fault::die(&format!("{entry}: {e}"))
        }
        Err(e) => fail(entry, CUDA_ERROR_INVALID_VALUE, e),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync(ptr: CUdeviceptr, stream: Handle) -> CUresult {
    if let Err(e) = check_stream("cuMemFreeAsync", stream) {
        return e;
    }
    if !streams::deferred() {
        return free("cuMemFreeAsync", ptr);
    }
    if let Err(e) = memory::check_range(ptr, usize::from(ptr != 0), "pointer") {
        return fail("cuMemFreeAsync", CUDA_ERROR_INVALID_VALUE, e);
    }
    streams::submit(
        stream as usize,
        Box::new(move || {
            if free("cuMemFreeAsync", ptr) != CUDA_SUCCESS {
                fault::die(&format!("cuMemFreeAsync of {ptr:#x} failed in its stream"));
            }
        }),
    );
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree_v2(ptr: CUdeviceptr) -> CUresult {
    streams::synchronize_all();
    free("cuMemFree_v2", ptr)
}

/// When a copy runs: after everything before it (`Sync`, the `_v2` calls), after its stream's
/// work (`ToHost`), or in its stream (`InStream`, reading a host source at once).
#[derive(Clone, Copy)]
enum When {
    Sync,
    ToHost(Handle),
    InStream(Handle),
}

/// A copy of `bytes` bytes, both ends checked: device ends against the live allocations, host
/// ends for null.
fn copy(
    entry: &str,
    dst: u64,
    dst_dev: bool,
    src: u64,
    src_dev: bool,
    bytes: usize,
    when: When,
) -> CUresult {
    if bytes == 0 {
        return CUDA_SUCCESS;
    }
    if let Err(e) = check_copy(dst, dst_dev, src, src_dev, bytes) {
        return fail(entry, CUDA_ERROR_INVALID_VALUE, e);
    }
    match when {
        When::Sync => streams::synchronize_all(),
        When::ToHost(stream) => streams::synchronize(stream as usize),
        When::InStream(stream) if streams::deferred() => {
            let job: streams::Job = if src_dev {
                // SAFETY: both ranges are inside live allocations (checked), and the stream
                // runs the copy before any later free of them.
                Box::new(move || unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) })
            } else {
                // The driver stages a pageable host source before it returns: read it now.
                // SAFETY: the caller's host range, as the driver's contract says.
                let data = unsafe { std::slice::from_raw_parts(src as *const u8, bytes) }.to_vec();
                // SAFETY: the destination is inside a live allocation (checked).
                Box::new(move || unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, bytes)
                })
            };
            streams::submit(stream as usize, job);
            return CUDA_SUCCESS;
        }
        When::InStream(_) => {}
    }
    // SAFETY: the device ranges are inside live allocations (checked above); the host ranges
    // are the caller's, as the driver's contract says. `copy` (memmove) allows overlap.
    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
    CUDA_SUCCESS
}

fn check_copy(
    dst: u64,
    dst_dev: bool,
    src: u64,
    src_dev: bool,
    bytes: usize,
) -> Result<(), String> {
    for (p, dev, what) in [(dst, dst_dev, "destination"), (src, src_dev, "source")] {
        let checked = if dev {
            memory::check_range(p, bytes, what)
        } else if p == 0 {
            Err(format!("{what}: null host pointer"))
        } else {
            Ok(())
        };
        checked?;
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: usize,
    stream: Handle,
) -> CUresult {
    if let Err(e) = check_stream("cuMemcpyHtoDAsync_v2", stream) {
        return e;
    }
    copy(
        "cuMemcpyHtoDAsync_v2",
        dst,
        true,
        src as u64,
        false,
        bytes,
        When::InStream(stream),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize) -> CUresult {
    copy(
        "cuMemcpyHtoD_v2",
        dst,
        true,
        src as u64,
        false,
        bytes,
        When::Sync,
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: usize,
    stream: Handle,
) -> CUresult {
    if let Err(e) = check_stream("cuMemcpyDtoHAsync_v2", stream) {
        return e;
    }
    copy(
        "cuMemcpyDtoHAsync_v2",
        dst as u64,
        false,
        src,
        true,
        bytes,
        When::ToHost(stream),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize) -> CUresult {
    copy(
        "cuMemcpyDtoH_v2",
        dst as u64,
        false,
        src,
        true,
        bytes,
        When::Sync,
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: Handle,
) -> CUresult {
    if let Err(e) = check_stream("cuMemcpyDtoDAsync_v2", stream) {
        return e;
    }
    copy(
        "cuMemcpyDtoDAsync_v2",
        dst,
        true,
        src,
        true,
        bytes,
        When::InStream(stream),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> CUresult {
    copy("cuMemcpyDtoD_v2", dst, true, src, true, bytes, When::Sync)
}

fn memset(
    entry: &str,
    dst: CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: Option<Handle>,
) -> CUresult {
    if let Err(e) = memory::check_range(dst, bytes, "destination") {
        return fail(entry, CUDA_ERROR_INVALID_VALUE, e);
    }
    if bytes > 0 {
        // SAFETY: [dst, dst + bytes) is inside a live allocation (checked above), which the
        // stream's later work cannot free before this runs.
        let job: streams::Job =
            Box::new(move || unsafe { std::ptr::write_bytes(dst as *mut u8, value, bytes) });
        match stream {
            Some(s) => streams::submit(s as usize, job),
            None => {
                streams::synchronize_all();
                job()
            }
        }
    }
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemsetD8Async(
    dst: CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: Handle,
) -> CUresult {
    if let Err(e) = check_stream("cuMemsetD8Async", stream) {
        return e;
    }
    memset("cuMemsetD8Async", dst, value, bytes, Some(stream))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, value: u8, bytes: usize) -> CUresult {
    memset("cuMemsetD8_v2", dst, value, bytes, None)
}

// ---------------------------------------------------------------------------------------------
// Modules, functions, launches

/// A loaded module and the function handles given out for it (freed with it).
struct ModuleHandle {
    module: Arc<jit::Module>,
    functions: Mutex<Vec<*mut Function>>,
}

/// A `CUfunction`: a kernel of a module.
struct Function {
    module: Arc<jit::Module>,
    index: usize,
}

static MODULES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static FUNCTIONS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn load_module(entry: &str, module: *mut Handle, image: &[u8]) -> CUresult {
    if !image.starts_with(jit::MARKER.as_bytes()) {
        return fail(
            entry,
            CUDA_ERROR_INVALID_PTX,
            "not a source image: the stand-in runs the CUDA C++ source that its nvcc and NVRTC \
             hand over, not PTX or a CUBIN from NVIDIA's compilers",
        );
    }
    match jit::Module::load(image) {
        Ok(m) => {
            let h = Box::into_raw(Box::new(ModuleHandle {
                module: Arc::new(m),
                functions: Mutex::new(Vec::new()),
            }));
            registry(&MODULES)
                .get_or_insert_default()
                .insert(h as usize);
            // SAFETY: the caller passes a writable CUmodule.
            unsafe { *module = h as Handle };
            CUDA_SUCCESS
        }
        Err(e) => fail(entry, CUDA_ERROR_INVALID_IMAGE, e),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut Handle, image: *const c_void) -> CUresult {
    if image.is_null() || module.is_null() {
        return fail("cuModuleLoadData", CUDA_ERROR_INVALID_VALUE, "null pointer");
    }
    // SAFETY: a PTX image (and so a source image) is NUL-terminated text, as the driver reads it.
    let text = unsafe { CStr::from_ptr(image as *const c_char) };
    load_module("cuModuleLoadData", module, text.to_bytes())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoad(module: *mut Handle, fname: *const c_char) -> CUresult {
    if fname.is_null() || module.is_null() {
        return fail("cuModuleLoad", CUDA_ERROR_INVALID_VALUE, "null pointer");
    }
    // SAFETY: the caller passes a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(fname) }
        .to_string_lossy()
        .into_owned();
    match std::fs::read(&path) {
        Ok(bytes) => load_module("cuModuleLoad", module, &bytes),
        Err(e) => fail(
            "cuModuleLoad",
            CUDA_ERROR_FILE_NOT_FOUND,
            format!("{path}: {e}"),
        ),
    }
}

fn module_handle(entry: &str, h: Handle) -> Result<&'static ModuleHandle, CUresult> {
    if registry(&MODULES)
        .get_or_insert_default()
        .contains(&(h as usize))
    {
        // SAFETY: registered handles are live ModuleHandles until cuModuleUnload removes them.
        Ok(unsafe { &*(h as *const ModuleHandle) })
    } else {
        Err(fail(
            entry,
            CUDA_ERROR_INVALID_HANDLE,
            format!("{h:?} is not a loaded module"),
        ))
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuModuleUnload(h: Handle) -> CUresult {
    streams::synchronize_all();
    if !registry(&MODULES)
        .get_or_insert_default()
        .remove(&(h as usize))
    {
        return fail(
            "cuModuleUnload",
            CUDA_ERROR_INVALID_HANDLE,
            format!("{h:?} is not a loaded module"),
        );
    }
    // SAFETY: the handle was registered, so it is a Box<ModuleHandle> nobody else frees.
    let m = unsafe { Box::from_raw(h as *mut ModuleHandle) };
    let mut functions = registry(&FUNCTIONS);
    for f in m
        .functions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        functions.get_or_insert_default().remove(&(f as usize));
        // SAFETY: made by Box::into_raw in cuModuleGetFunction, now unregistered.
        drop(unsafe { Box::from_raw(f) });
    }
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleGetFunction(
    function: *mut Handle,
    module: Handle,
    name: *const c_char,
) -> CUresult {
    let m = match module_handle("cuModuleGetFunction", module) {
        Ok(m) => m,
        Err(e) => return e,
    };
    // SAFETY: the caller passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let Some(index) = m.module.function(&name) else {
        return fail(
            "cuModuleGetFunction",
            CUDA_ERROR_NOT_FOUND,
            format!("the module has no kernel `{name}`"),
        );
    };
    let f = Box::into_raw(Box::new(Function {
        module: m.module.clone(),
        index,
    }));
    m.functions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(f);
    registry(&FUNCTIONS)
        .get_or_insert_default()
        .insert(f as usize);
    // SAFETY: the caller passes a writable CUfunction.
    unsafe { *function = f as Handle };
    CUDA_SUCCESS
}

/// The kernel names launched so far by this process (each is logged once).
static LAUNCHED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn log_launch(name: &str) {
    let mut launched = LAUNCHED.lock().unwrap_or_else(|e| e.into_inner());
    if launched.get_or_insert_default().insert(name.to_string()) {
        if let Some(path) = std::env::var_os("CUDA_EMU_LOG") {
            // One short write per line with O_APPEND: lines from concurrent processes do not
            // interleave.
            let line = format!("{name}\n");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                fault::die(&format!("cannot append to the launch log {path:?}: {e}"));
            }
        }
    }
}

/// The driver's checks of a launch configuration, with its error codes.
pub fn check_launch(
    grid: [u32; 3],
    block: [u32; 3],
    shared: u32,
) -> Result<(), (CUresult, String)> {
    let invalid = |m: String| Err((CUDA_ERROR_INVALID_VALUE, m));
    if grid.contains(&0) || block.contains(&0) {
        return invalid(format!(
            "grid {grid:?} or block {block:?} has a zero dimension"
        ));
    }
    if grid[1] > 65_535 || grid[2] > 65_535 || grid[0] > i32::MAX as u32 {
        return invalid(format!(
            "grid {grid:?} exceeds the device's (2147483647, 65535, 65535)"
        ));
    }
    if block[0] > 1024 || block[1] > 1024 || block[2] > 64 {
        return invalid(format!(
            "block {block:?} exceeds the device's (1024, 1024, 64)"
        ));
    }
    let threads = block.iter().map(|&b| b as u64).product::<u64>();
    if threads > 1024 {
        return invalid(format!(
            "block {block:?} has {threads} threads; the device allows 1024"
        ));
    }
    if shared > MAX_SHARED_PER_BLOCK {
        return Err((
            CUDA_ERROR_INVALID_VALUE,
            format!(
                "{shared} bytes of dynamic shared memory; the device allows {MAX_SHARED_PER_BLOCK}"
            ),
        ));
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernel(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    stream: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    const ENTRY: &str = "cuLaunchKernel";
    if !registry(&FUNCTIONS)
        .get_or_insert_default()
        .contains(&(f as usize))
    {
        return fail(
            ENTRY,
            CUDA_ERROR_INVALID_HANDLE,
            format!("{f:?} is not a live function"),
        );
    }
    // SAFETY: registered functions are live until their module is unloaded.
    let function = unsafe { &*(f as *const Function) };
    let name = function.module.name(function.index).to_string();
    if let Err(e) = check_stream(ENTRY, stream) {
        return e;
    }
    if !extra.is_null() {
        return fail(
            ENTRY,
            CUDA_ERROR_NOT_SUPPORTED,
            format!("`{name}`: `extra` launch parameters"),
        );
    }
    let (grid, block) = ([gx, gy, gz], [bx, by, bz]);
    if let Err((code, m)) = check_launch(grid, block, shared) {
        return fail(ENTRY, code, format!("`{name}`: {m}"));
    }
    log_launch(&name);
    fault::alt_stack();
    if !streams::deferred() {
        // SAFETY: params is the caller's kernelParams, one pointer per parameter of this kernel.
        let ran = unsafe {
            function
                .module
                .launch(function.index, grid, block, shared, params)
        };
        if let Err(e) = ran {
            return fail(ENTRY, CUDA_ERROR_LAUNCH_FAILED, format!("`{name}`: {e}"));
        }
        if let Err(e) = memory::check_canaries() {
            fault::die(&format!(
                "kernel `{name}` (grid {grid:?}, block {block:?}): {e}"
            ));
        }
        return CUDA_SUCCESS;
    }
    // Deferred: the arguments are copied now, as the driver does (the caller's values are gone
    // when the kernel runs).
    let sizes = function
        .module
        .param_sizes(function.index)
        .unwrap_or(&[])
        .to_vec();
    if !sizes.is_empty() && params.is_null() {
        return fail(
            ENTRY,
            CUDA_ERROR_INVALID_VALUE,
            format!("`{name}`: null kernelParams"),
        );
    }
    let args: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        // SAFETY: kernelParams[i] points to a value of parameter i's type, of this size.
        .map(|(i, &n)| {
            unsafe { std::slice::from_raw_parts(*params.add(i) as *const u8, n) }.to_vec()
        })
        .collect();
    let module = function.module.clone();
    let index = function.index;
    streams::submit(
        stream as usize,
        Box::new(move || {
            fault::alt_stack();
            let mut args = args;
            let mut ptrs: Vec<*mut c_void> = args
                .iter_mut()
                .map(|a| a.as_mut_ptr() as *mut c_void)
                .collect();
            // SAFETY: one pointer per parameter, each to a copy of the caller's value.
            let ran = unsafe { module.launch(index, grid, block, shared, ptrs.as_mut_ptr()) };
            if let Err(e) = ran {
                fault::die(&format!("kernel `{name}` failed in its stream: {e}"));
            }
            if let Err(e) = memory::check_canaries() {
                fault::die(&format!(
                    "kernel `{name}` (grid {grid:?}, block {block:?}): {e}"
                ));
            }
        }),
    );
    CUDA_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Errors

fn error_text(code: CUresult) -> (&'static CStr, &'static CStr) {
    match code {
        CUDA_SUCCESS => (c"CUDA_SUCCESS", c"no error"),
        CUDA_ERROR_INVALID_VALUE => (c"CUDA_ERROR_INVALID_VALUE", c"invalid argument"),
        CUDA_ERROR_OUT_OF_MEMORY => (c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
        CUDA_ERROR_NOT_INITIALIZED => (c"CUDA_ERROR_NOT_INITIALIZED", c"initialization error"),
        CUDA_ERROR_INVALID_DEVICE => (c"CUDA_ERROR_INVALID_DEVICE", c"invalid device ordinal"),
        CUDA_ERROR_INVALID_IMAGE => (
            c"CUDA_ERROR_INVALID_IMAGE",
            c"device kernel image is invalid",
        ),
        CUDA_ERROR_INVALID_CONTEXT => (c"CUDA_ERROR_INVALID_CONTEXT", c"invalid device context"),
        CUDA_ERROR_INVALID_PTX => (c"CUDA_ERROR_INVALID_PTX", c"a PTX JIT compilation failed"),
        CUDA_ERROR_FILE_NOT_FOUND => (c"CUDA_ERROR_FILE_NOT_FOUND", c"file not found"),
        CUDA_ERROR_INVALID_HANDLE => (c"CUDA_ERROR_INVALID_HANDLE", c"invalid resource handle"),
        CUDA_ERROR_NOT_FOUND => (c"CUDA_ERROR_NOT_FOUND", c"named symbol not found"),
        CUDA_ERROR_ILLEGAL_ADDRESS => (
            c"CUDA_ERROR_ILLEGAL_ADDRESS",
            c"an illegal memory access was encountered",
        ),
        CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES => (
            c"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
            c"too many resources requested for launch",
        ),
        CUDA_ERROR_LAUNCH_FAILED => (c"CUDA_ERROR_LAUNCH_FAILED", c"unspecified launch failure"),
        CUDA_ERROR_NOT_SUPPORTED => (c"CUDA_ERROR_NOT_SUPPORTED", c"operation not supported"),
        _ => (c"CUDA_ERROR_UNKNOWN", c"unknown error"),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorName(code: CUresult, s: *mut *const c_char) -> CUresult {
    // SAFETY: the caller passes a writable const char*; the text is static.
    unsafe { *s = error_text(code).0.as_ptr() };
    CUDA_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(code: CUresult, s: *mut *const c_char) -> CUresult {
    // SAFETY: the caller passes a writable const char*; the text is static.
    unsafe { *s = error_text(code).1.as_ptr() };
    CUDA_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Linked by cudarc, never called by the crate or dfdx: each fails loudly if it ever is.

macro_rules! unsupported {
    ($($name:ident),* $(,)?) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() -> CUresult {
            unsupported(stringify!($name))
        }
    )*};
}

unsupported!(
    cuOccupancyAvailableDynamicSMemPerBlock,
    cuOccupancyMaxActiveBlocksPerMultiprocessor,
    cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
    cuOccupancyMaxActiveClusters,
    cuOccupancyMaxPotentialBlockSize,
    cuOccupancyMaxPotentialBlockSizeWithFlags,
    cuOccupancyMaxPotentialClusterSize,
    cuProfilerStart,
    cuProfilerStop,
    cuImportExternalMemory,
    cuExternalMemoryGetMappedBuffer,
    cuDestroyExternalMemory,
    cuEventElapsedTime,
    cuFuncGetAttribute,
    cuFuncSetAttribute,
    cuModuleLoadDataEx,
    cuModuleGetGlobal_v2,
    cuStreamQuery,
    cuMemAllocManaged,
    cuMemHostAlloc,
    cuMemFreeHost,
    cuMemHostRegister_v2,
    cuMemHostUnregister,
    cuLaunchCooperativeKernel,
);
