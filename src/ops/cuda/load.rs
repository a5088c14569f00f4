//! Compiling `kernels.cu` with NVRTC and loading it onto a device: as a CUBIN for the device's
//! own architecture when NVRTC can make one, else as PTX.
//!
//! # Why a CUBIN
//! NVRTC writes PTX of its own ISA version (NVRTC 13.2: `.version 9.2`), and a driver
//! JIT-compiles only the versions it knows: CUDA 13.0's driver (580) stops at 9.0 and refuses
//! newer PTX with `CUDA_ERROR_UNSUPPORTED_PTX_VERSION`. Device code (SASS) from a newer NVRTC of
//! the same major version loads on an older driver (CUDA's minor-version compatibility). So the
//! module is compiled for `sm_XY`, the compute capability the device reports
//! (`--gpu-architecture=sm_XY`, then `nvrtcGetCUBIN`), and the driver loads it without a JIT.
//! NVIDIA's CCCL moved its NVRTC tests to SASS for the same reason (NVIDIA/cccl#268).
//!
//! # The fallback: PTX
//! Plain PTX, compiled and loaded exactly as before this module existed (cudarc's `compile_ptx`
//! with no options, then `load_ptx`), whenever no CUBIN can be had: the compute capability cannot
//! be read, NVRTC cannot compile for it (an NVRTC older than the GPU), NVRTC gives no CUBIN (an
//! error or 0 bytes, as the CPU stand-in for NVRTC in `tools/cuda-emu` does) or the driver
//! refuses it. Each fallback says why on stderr, since that is the path that fails on a driver
//! older than NVRTC; a CUBIN load prints nothing. [`KernelLoad`] tells a caller which it was.
//!
//! # Why a temporary file
//! cudarc 0.9's `load_ptx` takes a `Ptx`, made from NVRTC's PTX image or a string (both go to
//! `cuModuleLoadData` as NUL-terminated text: a CUBIN has NUL bytes) or from a file (which goes to
//! `cuModuleLoad`, and that accepts a CUBIN). So the CUBIN is written to a temporary file, loaded,
//! and the file removed.

use super::{KERNELS, MODULE, SOURCE};
use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaDevice, DriverError};
use cudarc::nvrtc::{self, CompileError, Ptx};
use dfdx::tensor::CudaError;
use std::ffi::CStr;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};

/// How `kernels.cu` was loaded onto a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelLoad {
    /// `nvrtcVersion`: the NVRTC this process compiled with (`None` if it did not answer).
    pub nvrtc_version: Option<(i32, i32)>,
    /// What the driver was given.
    pub image: KernelImage,
}

/// What the driver was given: device code, or PTX that it compiled itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelImage {
    /// A CUBIN for the device's architecture, e.g. `sm_90`.
    Cubin {
        /// The `--gpu-architecture` it was compiled for.
        arch: String,
    },
    /// PTX for NVRTC's default virtual architecture, which the driver JIT-compiles on load.
    Ptx {
        /// Why there is no CUBIN.
        why: String,
    },
}

/// Loads `kernels.cu` onto `dev` unless it is there already, and says how it was loaded.
pub(super) fn ensure(dev: &Arc<CudaDevice>) -> Result<KernelLoad, CudaError> {
    // Every device this process loaded the module onto, while the device lives. Held while
    // compiling, so that two threads asking at once compile once.
    static LOADS: Mutex<Vec<(Weak<CudaDevice>, KernelLoad)>> = Mutex::new(Vec::new());
    let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    loads.retain(|(d, _)| d.strong_count() > 0);
    if let Some((_, load)) = loads.iter().find(|(d, _)| d.as_ptr() == Arc::as_ptr(dev)) {
        return Ok(load.clone());
    }
    let load = KernelLoad {
        nvrtc_version: nvrtc_version(),
        image: load(dev)?,
    };
    loads.push((Arc::downgrade(dev), load.clone()));
    Ok(load)
}

/// Compiles and loads the module, as a CUBIN if possible, else as PTX.
fn load(dev: &Arc<CudaDevice>) -> Result<KernelImage, CudaError> {
    let why = match cubin(dev) {
        Ok((arch, image)) => match load_cubin(dev, &image) {
            Ok(()) => return Ok(KernelImage::Cubin { arch }),
            Err(e) => format!("the driver did not load the {arch} CUBIN: {e}"),
        },
        Err(why) => why,
    };
    eprintln!("cnn: loading kernels.cu as PTX, for the driver to JIT-compile: {why}");
    let ptx = nvrtc::compile_ptx(SOURCE).map_err(|e| {
        // Our own source: a compile error is a bug in this crate, or a broken NVRTC install
        // (its builtins library missing); NVRTC's log says which.
        eprintln!(
            "cnn: NVRTC could not compile src/ops/cuda/kernels.cu: {}",
            describe(&e)
        );
        CudaError::Driver(DriverError(CUresult::CUDA_ERROR_INVALID_SOURCE))
    })?;
    dev.load_ptx(ptx, MODULE, KERNELS)?;
    Ok(KernelImage::Ptx { why })
}

/// `kernels.cu` compiled to a CUBIN for `dev`'s compute capability: `(arch, image)`, or why not.
fn cubin(dev: &CudaDevice) -> Result<(String, Vec<u8>), String> {
    let cc = |attribute| {
        dev.attribute(attribute)
            .map_err(|e| format!("the device's compute capability could not be read: {e:?}"))
    };
    let major = cc(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = cc(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let arch = format!("sm_{major}{minor}");
    let program = Program::new().map_err(|e| format!("NVRTC could not create a program: {e:?}"))?;
    program
        .compile(&[format!("--gpu-architecture={arch}")])
        .map_err(|log| format!("NVRTC could not compile for {arch}: {log}"))?;
    let image = program
        .cubin()
        .map_err(|e| format!("NVRTC gave no CUBIN for {arch}: {e}"))?;
    Ok((arch, image))
}

/// Loads a CUBIN through a temporary file (see the module docs).
fn load_cubin(dev: &Arc<CudaDevice>, image: &[u8]) -> Result<(), String> {
    let mut file = tempfile::Builder::new()
        .prefix("cnn-kernels-")
        .suffix(".cubin")
        .tempfile()
        .map_err(|e| format!("no temporary file: {e}"))?;
    file.write_all(image)
        .and_then(|()| file.flush())
        .map_err(|e| format!("could not write {}: {e}", file.path().display()))?;
    // cudarc unwraps the path's `to_str`: ask first.
    let path = file
        .path()
        .to_str()
        .ok_or_else(|| format!("the temporary path {} is not UTF-8", file.path().display()))?;
    dev.load_ptx(Ptx::from_file(path), MODULE, KERNELS)
        .map_err(|e| format!("{e:?}"))
    // `file` is removed here; the driver has read it.
}

/// `nvrtcVersion`, or `None` if NVRTC does not answer.
fn nvrtc_version() -> Option<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: it writes two `int`s through pointers to live locals.
    unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .ok()
        .map(|()| (major, minor))
}

/// NVRTC's error and, for a compile error, its log.
fn describe(e: &CompileError) -> String {
    match e {
        CompileError::CompileError {
            nvrtc,
            options,
            log,
        } => format!(
            "{nvrtc:?} with options {options:?}:\n{}",
            log.to_string_lossy()
        ),
        e => format!("{e:?}"),
    }
}

/// An NVRTC program of `kernels.cu`, destroyed on drop. cudarc's safe wrapper gives only PTX.
struct Program(nvrtc::sys::nvrtcProgram);

impl Program {
    fn new() -> Result<Self, nvrtc::result::NvrtcError> {
        nvrtc::result::create_program(SOURCE).map(Program)
    }

    /// Compiles with `options`; NVRTC's error and log if it fails.
    fn compile(&self, options: &[String]) -> Result<(), String> {
        // SAFETY: `self.0` was created by `create_program` and is destroyed only on drop.
        unsafe { nvrtc::result::compile_program(self.0, options) }
            .map_err(|e| format!("{e:?}:\n{}", self.log()))
    }

    /// NVRTC's log of the last compile (empty if it has none).
    fn log(&self) -> String {
        // SAFETY: as in `compile`; the log is NUL-terminated (NVRTC counts the NUL in its size).
        match unsafe { nvrtc::result::get_program_log(self.0) } {
            Ok(log) if log.contains(&0) => {
                // SAFETY: the buffer holds a NUL, so the C string ends inside it.
                unsafe { CStr::from_ptr(log.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            }
            _ => String::new(),
        }
    }

    /// The compiled CUBIN; an error if NVRTC has none (it makes one only for an `sm_` target).
    fn cubin(&self) -> Result<Vec<u8>, String> {
        let mut size = 0usize;
        // SAFETY: as in `compile`; it writes one `size_t` through a pointer to a live local.
        unsafe { nvrtc::sys::nvrtcGetCUBINSize(self.0, &mut size) }
            .result()
            .map_err(|e| format!("{e:?}"))?;
        if size == 0 {
            return Err("0 bytes".into());
        }
        let mut image = vec![0u8; size];
        // SAFETY: as in `compile`; it writes `size` bytes into a buffer of that many.
        unsafe { nvrtc::sys::nvrtcGetCUBIN(self.0, image.as_mut_ptr().cast()) }
            .result()
            .map_err(|e| format!("{e:?}"))?;
        Ok(image)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: as in `compile`; it is not used again. An error here leaks the program only.
        let _ = unsafe { nvrtc::result::destroy_program(self.0) };
    }
}
