//! NVRTC: a "compilation" checks the source with the same JIT that loads modules (so a
//! compile error is NVRTC's error, with g++'s log as the program log), and its "PTX" is the
//! source image (`jit::source_image`) that `cuModuleLoadData` then runs.
//!
//! Options: `--include-path=DIR`/`-I DIR`/`-IDIR` become the image's include folders;
//! `--gpu-architecture=sm_XY` (or `-arch`) makes the program have a "CUBIN" as well (the same
//! image: the stand-in's `cuModuleLoad`/`cuModuleLoadData` take it), as NVRTC has one only for a
//! real architecture; other options are accepted and ignored.

use crate::jit;
use std::ffi::{CStr, c_char, c_int};
use std::path::Path;

/// `nvrtcResult`.
pub type NvrtcResult = c_int;
pub const NVRTC_SUCCESS: NvrtcResult = 0;
pub const NVRTC_ERROR_INVALID_INPUT: NvrtcResult = 3;
pub const NVRTC_ERROR_INVALID_PROGRAM: NvrtcResult = 4;
pub const NVRTC_ERROR_COMPILATION: NvrtcResult = 6;

/// The NVRTC version answered: 13.0, the CUDA version of the driver it stands beside.
pub const VERSION: (c_int, c_int) = (13, 0);

/// An `nvrtcProgram`: its source and name, and after compilation its image and log.
pub struct Program {
    source: String,
    name: String,
    image: Option<Vec<u8>>,
    cubin: bool,
    log: String,
}

fn fail(entry: &str, code: NvrtcResult, message: impl std::fmt::Display) -> NvrtcResult {
    crate::fail(entry, 0, message);
    code
}

/// The program behind a handle.
///
/// # Safety
/// `prog` was made by `nvrtcCreateProgram` and not destroyed (NVRTC's contract).
unsafe fn program<'a>(prog: *mut Program) -> Option<&'a mut Program> {
    // SAFETY: passed on to the caller.
    unsafe { prog.as_mut() }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcVersion(major: *mut c_int, minor: *mut c_int) -> NvrtcResult {
    // SAFETY: the caller passes two writable ints.
    unsafe {
        *major = VERSION.0;
        *minor = VERSION.1;
    }
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcCreateProgram(
    prog: *mut *mut Program,
    src: *const c_char,
    name: *const c_char,
    num_headers: c_int,
    _headers: *const *const c_char,
    _include_names: *const *const c_char,
) -> NvrtcResult {
    const ENTRY: &str = "nvrtcCreateProgram";
    if prog.is_null() || src.is_null() {
        return fail(ENTRY, NVRTC_ERROR_INVALID_INPUT, "null pointer");
    }
    if num_headers != 0 {
        return fail(
            ENTRY,
            NVRTC_ERROR_INVALID_INPUT,
            "in-memory headers are not implemented by the CUDA stand-in",
        );
    }
    // SAFETY: NUL-terminated strings, as NVRTC's contract says.
    let source = unsafe { CStr::from_ptr(src) }
        .to_string_lossy()
        .into_owned();
    let name = if name.is_null() {
        "default_program".to_string()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    };
    let p = Box::new(Program {
        source,
        name,
        image: None,
        cubin: false,
        log: String::new(),
    });
    // SAFETY: checked non-null; the caller passes a writable nvrtcProgram.
    unsafe { *prog = Box::into_raw(p) };
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcDestroyProgram(prog: *mut *mut Program) -> NvrtcResult {
    // SAFETY: the caller passes its handle's address; the handle came from nvrtcCreateProgram.
    unsafe {
        if prog.is_null() || (*prog).is_null() {
            return fail(
                "nvrtcDestroyProgram",
                NVRTC_ERROR_INVALID_PROGRAM,
                "null program",
            );
        }
        drop(Box::from_raw(*prog));
        *prog = std::ptr::null_mut();
    }
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcCompileProgram(
    prog: *mut Program,
    num_options: c_int,
    options: *const *const c_char,
) -> NvrtcResult {
    const ENTRY: &str = "nvrtcCompileProgram";
    // SAFETY: NVRTC's contract.
    let Some(p) = (unsafe { program(prog) }) else {
        return fail(ENTRY, NVRTC_ERROR_INVALID_PROGRAM, "null program");
    };
    let mut opts = Vec::new();
    for i in 0..num_options.max(0) as usize {
        // SAFETY: `options` holds `num_options` NUL-terminated strings.
        opts.push(
            unsafe { CStr::from_ptr(*options.add(i)) }
                .to_string_lossy()
                .into_owned(),
        );
    }
    let mut includes = Vec::new();
    let mut arch = None;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        if let Some(d) = o.strip_prefix("--include-path=") {
            includes.push(d.to_string());
        } else if o == "-I" || o == "--include-path" {
            includes.extend(it.next().cloned());
        } else if let Some(d) = o.strip_prefix("-I") {
            includes.push(d.to_string());
        } else if let Some(a) = o
            .strip_prefix("--gpu-architecture=")
            .or_else(|| o.strip_prefix("-arch="))
        {
            arch = Some(a.to_string());
        }
    }
    let dirs: Vec<&Path> = includes.iter().map(Path::new).collect();
    let image = jit::source_image(&p.name, &dirs, &p.source);
    match jit::Module::load(image.as_bytes()) {
        Ok(_) => {
            p.log.clear();
            p.cubin = arch.is_some_and(|a| a.starts_with("sm_"));
            let mut bytes = image.into_bytes();
            bytes.push(0);
            p.image = Some(bytes);
            NVRTC_SUCCESS
        }
        Err(e) => {
            p.log = e;
            p.image = None;
            NVRTC_ERROR_COMPILATION
        }
    }
}

/// Writes a size and returns success, or says the program has nothing of that kind.
unsafe fn size_of(entry: &str, prog: *mut Program, cubin: bool, ret: *mut usize) -> NvrtcResult {
    // SAFETY: NVRTC's contract.
    let Some(p) = (unsafe { program(prog) }) else {
        return fail(entry, NVRTC_ERROR_INVALID_PROGRAM, "null program");
    };
    match &p.image {
        Some(image) if !cubin || p.cubin => {
            // SAFETY: the caller passes a writable size_t.
            unsafe { *ret = image.len() };
            NVRTC_SUCCESS
        }
        Some(_) => fail(
            entry,
            NVRTC_ERROR_INVALID_INPUT,
            "no CUBIN: the program was not compiled for a real architecture (sm_XY)",
        ),
        None => fail(
            entry,
            NVRTC_ERROR_INVALID_PROGRAM,
            "the program has not been compiled",
        ),
    }
}

unsafe fn copy_out(entry: &str, prog: *mut Program, cubin: bool, out: *mut c_char) -> NvrtcResult {
    let mut n = 0;
    // SAFETY: as in size_of.
    let r = unsafe { size_of(entry, prog, cubin, &mut n) };
    if r != NVRTC_SUCCESS {
        return r;
    }
    // SAFETY: checked by size_of; the caller's buffer holds the size it was told.
    unsafe {
        let image = (*prog).image.as_ref().expect("size_of checked it");
        std::ptr::copy_nonoverlapping(image.as_ptr(), out as *mut u8, n);
    }
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetPTXSize(prog: *mut Program, ret: *mut usize) -> NvrtcResult {
    // SAFETY: NVRTC's contract, passed on.
    unsafe { size_of("nvrtcGetPTXSize", prog, false, ret) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetPTX(prog: *mut Program, out: *mut c_char) -> NvrtcResult {
    // SAFETY: NVRTC's contract, passed on.
    unsafe { copy_out("nvrtcGetPTX", prog, false, out) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetCUBINSize(prog: *mut Program, ret: *mut usize) -> NvrtcResult {
    // SAFETY: NVRTC's contract, passed on.
    unsafe { size_of("nvrtcGetCUBINSize", prog, true, ret) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetCUBIN(prog: *mut Program, out: *mut c_char) -> NvrtcResult {
    // SAFETY: NVRTC's contract, passed on.
    unsafe { copy_out("nvrtcGetCUBIN", prog, true, out) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetProgramLogSize(
    prog: *mut Program,
    ret: *mut usize,
) -> NvrtcResult {
    // SAFETY: NVRTC's contract.
    let Some(p) = (unsafe { program(prog) }) else {
        return fail(
            "nvrtcGetProgramLogSize",
            NVRTC_ERROR_INVALID_PROGRAM,
            "null program",
        );
    };
    // SAFETY: the caller passes a writable size_t.
    unsafe { *ret = p.log.len() + 1 };
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvrtcGetProgramLog(prog: *mut Program, out: *mut c_char) -> NvrtcResult {
    // SAFETY: NVRTC's contract.
    let Some(p) = (unsafe { program(prog) }) else {
        return fail(
            "nvrtcGetProgramLog",
            NVRTC_ERROR_INVALID_PROGRAM,
            "null program",
        );
    };
    // SAFETY: the caller's buffer holds the size nvrtcGetProgramLogSize gave (log + NUL).
    unsafe {
        std::ptr::copy_nonoverlapping(p.log.as_ptr(), out as *mut u8, p.log.len());
        *out.add(p.log.len()) = 0;
    }
    NVRTC_SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvrtcGetErrorString(code: NvrtcResult) -> *const c_char {
    match code {
        NVRTC_SUCCESS => c"NVRTC_SUCCESS",
        NVRTC_ERROR_INVALID_INPUT => c"NVRTC_ERROR_INVALID_INPUT",
        NVRTC_ERROR_INVALID_PROGRAM => c"NVRTC_ERROR_INVALID_PROGRAM",
        NVRTC_ERROR_COMPILATION => c"NVRTC_ERROR_COMPILATION",
        _ => c"NVRTC_ERROR_INTERNAL_ERROR",
    }
    .as_ptr()
}
