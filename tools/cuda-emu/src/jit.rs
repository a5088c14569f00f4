//! Kernel modules: CUDA C++ source compiled for the CPU by the system's g++ against
//! `include/cuda_emu.h`, loaded with `dlopen`, and launched block by block.
//!
//! What the stand-in's nvcc and NVRTC hand to `cuModuleLoadData` is not PTX but a *source
//! image* (see [`source_image`]): a marker line, the file's name, the include folders its
//! `#include`s need, then the CUDA C++ source itself. So dfdx's kernels (compiled by nvcc at
//! build time), dfdx's run-time NVRTC kernels and ours all take the same road.
//!
//! (Interface fixed by the driver layer in `lib.rs`; the implementation is this file's.)
//!
//! # Loading a module
//! 1. The image's header lines give its name and include folders ([`MARKER`] first; anything
//!    else, real PTX included, is refused).
//! 2. `g++ -E` with the header in scan mode, where `__global__` becomes a marker token, finds
//!    every `extern "C" __global__` kernel, also those that macros such as our `KERNELS(T, S)`
//!    and dfdx's `UNARY_OP(...)` define.
//! 3. The source, with one `CUDA_EMU_REGISTER(name)` line per kernel appended, is compiled with
//!    `g++ -std=c++17 -O1 -fPIC -shared` (see [`compile_flags`]); the header's `Launcher`
//!    unpacks `kernelParams` by each kernel's parameter types, as the driver does.
//! 4. The library is cached by the MD5 of (image, the headers, the flags), written under a
//!    temporary name and renamed, so concurrent tests in several processes share it; then it is
//!    `dlopen`ed (`RTLD_NOW | RTLD_LOCAL`) and never closed (its thread-locals may live on).
//!
//! # Running a launch
//! Blocks run one after another on the calling thread (or on `CUDA_EMU_BLOCK_THREADS` OS
//! threads); within a block, threads are plain calls until one waits at `__syncthreads()`, then
//! fibers (the header's comment has the design).
//!
//! # Environment
//! - `CUDA_EMU_INCLUDE`: the folder holding `cuda_emu.h` (default: this crate's `include/`).
//! - `CUDA_EMU_CACHE`: the compiled-module cache (default: `$TMPDIR/cuda-emu-jit`).
//! - `CUDA_EMU_CXX`: the compiler (default `g++`; needs `_Float16`, i.e. GCC >= 12 on x86-64).
//! - `CUDA_EMU_CXXFLAGS`: appended to the compile flags, e.g. `-fsanitize=address` or `-O2`.
//! - `CUDA_EMU_BLOCK_THREADS=N`: run a launch's blocks on N OS threads (default 1).
//! - `CUDA_EMU_STACK_KIB`: each fiber's stack (default 256; read by the header at run time).
//! - `CUDA_EMU_SCHED=reverse` or `random`: a block's threads and the grid's blocks run last
//!   first, or in an order drawn from `CUDA_EMU_SEED` (default 1), so that a race shows as a
//!   changed result (read by the header at run time).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use md5::{Digest, Md5};

/// The first line of every source image.
pub const MARKER: &str = "//cuda-emu-src v1";

/// A source image: what the stand-in's nvcc writes as a module's ".ptx" and its NVRTC returns
/// as a program's "PTX". `name` is for messages; `include_dirs` are searched after this
/// crate's `include/` (so its `cuda_fp16.h` wins over a toolkit's).
pub fn source_image(name: &str, include_dirs: &[&Path], source: &str) -> String {
    let mut image = format!("{MARKER}\n//cuda-emu-name {name}\n");
    for dir in include_dirs {
        image.push_str(&format!("//cuda-emu-include {}\n", dir.display()));
    }
    image.push_str(source);
    image
}

/// The most threads a block may have (the driver's limit, and the size of the header's tables).
pub const MAX_BLOCK_THREADS: u64 = 1024;

/// The version of the table the header's `CUDA_EMU_TABLE_BEGIN` exports.
const ABI: c_int = 2;

/// A loaded module: its kernels by name.
pub struct Module {
    name: String,
    kernels: Vec<Kernel>,
}

struct Kernel {
    name: Arc<str>,
    c_name: CString,
    params: usize,
    sizes: Vec<usize>,
    launch: LaunchFn,
}

type LaunchFn = unsafe extern "C" fn(*mut LaunchArgs) -> c_int;

/// `cuda_emu::LaunchArgs` in `include/cuda_emu.h`.
#[derive(Clone, Copy)]
#[repr(C)]
struct LaunchArgs {
    grid: [u32; 3],
    block: [u32; 3],
    params: *mut *mut c_void,
    next_block: *const AtomicU64,
    total_blocks: u64,
    kernel: *const c_char,
    waited: u64,
    episodes: u64,
}

/// `cuda_emu::Kernel` in `include/cuda_emu.h`: one entry of `cuda_emu_kernels`, which ends
/// with a null name.
#[repr(C)]
struct TableEntry {
    name: *const c_char,
    launch: Option<LaunchFn>,
    params: usize,
    sizes: *const usize,
}

/// What the last [`Module::launch`] on this thread did, so that a test meaning to exercise a
/// path can assert it was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStats {
    /// Blocks run.
    pub blocks: u64,
    /// Thread arrivals at a barrier (0: every block took the plain-call fast path).
    pub waited: u64,
    /// Barrier episodes released, over all blocks.
    pub episodes: u64,
    /// OS threads the blocks ran on.
    pub os_threads: u32,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    static LAST: Cell<LaunchStats> = const { Cell::new(LaunchStats { blocks: 0, waited: 0, episodes: 0, os_threads: 0 }) };
}

/// The statistics of the last launch made on this thread.
pub fn last_launch() -> LaunchStats {
    LAST.with(Cell::get)
}

impl Module {
    /// Compiles (or finds in the cache) and loads the module whose source image is `image`
    /// (a trailing NUL, as cuModuleLoadData gets it, is allowed). Real PTX is refused with a
    /// message saying what the stand-in runs instead.
    pub fn load(image: &[u8]) -> Result<Module, String> {
        let image = Image::parse(image)?;
        let config = Config::from_env();
        let key = cache_key(&image, &config)?;
        let lib = config.cache.join(format!("{key}.so"));
        if !lib.is_file() {
            // One compile per key in this process; other processes may race, which the rename
            // makes harmless.
            let lock = {
                let mut locks = compile_locks().lock().unwrap_or_else(|e| e.into_inner());
                Arc::clone(locks.entry(key.clone()).or_default())
            };
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            if !lib.is_file() {
                compile(&image, &config, &key, &lib)?;
            }
        }
        open(&lib, image.name)
    }

    /// The index of kernel `name`, as `cuModuleGetFunction` looks it up.
    pub fn function(&self, name: &str) -> Option<usize> {
        self.kernels.iter().position(|k| &*k.name == name)
    }

    /// Kernel `f`'s name.
    pub fn name(&self, f: usize) -> &str {
        self.kernels.get(f).map_or("", |k| &k.name)
    }

    /// The module's name (from its image's `//cuda-emu-name` line).
    pub fn module_name(&self) -> &str {
        &self.name
    }

    /// The names of the module's kernels, in source order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.kernels.iter().map(|k| &*k.name)
    }

    /// The number of parameters kernel `f` takes (the entries `launch` reads from `params`).
    pub fn param_count(&self, f: usize) -> Option<usize> {
        self.kernels.get(f).map(|k| k.params)
    }

    /// The size in bytes of each of kernel `f`'s parameters, in order.
    pub fn param_sizes(&self, f: usize) -> Option<&[usize]> {
        self.kernels.get(f).map(|k| &*k.sizes)
    }

    /// Runs kernel `f` over the whole grid and returns when every block has finished.
    ///
    /// # Safety
    /// `params` is `cuLaunchKernel`'s `kernelParams`: one pointer per kernel parameter, each to
    /// a value of that parameter's type, as the driver reads them.
    pub unsafe fn launch(
        &self,
        f: usize,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared: u32,
        params: *mut *mut c_void,
    ) -> Result<(), String> {
        // Dynamic shared memory cannot be reached (the header has no `extern __shared__`), so
        // any amount the driver accepted is fine here.
        let _ = dynamic_shared;
        let kernel = self
            .kernels
            .get(f)
            .ok_or_else(|| format!("cuda-emu: module `{}` has no function {f}", self.name))?;
        let threads: u64 = block.iter().map(|&d| u64::from(d)).product();
        let blocks: u64 = grid.iter().map(|&d| u64::from(d)).product();
        if threads == 0 || blocks == 0 {
            return Err(format!(
                "cuda-emu: kernel `{}`: empty launch (grid {grid:?}, block {block:?})",
                kernel.name
            ));
        }
        if threads > MAX_BLOCK_THREADS {
            return Err(format!(
                "cuda-emu: kernel `{}`: block {block:?} has {threads} threads, more than {MAX_BLOCK_THREADS}",
                kernel.name
            ));
        }
        if kernel.params > 0 && params.is_null() {
            return Err(format!(
                "cuda-emu: kernel `{}` takes {} parameters but kernelParams is null",
                kernel.name, kernel.params
            ));
        }
        let workers = block_threads().min(blocks) as u32;
        let next = AtomicU64::new(0);
        let args = LaunchArgs {
            grid,
            block,
            params,
            next_block: &next,
            total_blocks: blocks,
            kernel: kernel.c_name.as_ptr(),
            waited: 0,
            episodes: 0,
        };
        let run = |mut args: LaunchArgs| {
            let _current = Current::set(&kernel.name);
            // SAFETY: `args` points to live values for the whole call: `params` as the caller
            // promised, `next` and the name borrowed from this frame and `self`; the launcher
            // was exported by the module for this kernel.
            let rc = unsafe { (kernel.launch)(&mut args) };
            (rc, args.waited, args.episodes)
        };
        let results = if workers <= 1 {
            vec![run(args)]
        } else {
            // The pool's threads take blocks from the same counter as this one.
            let shared = SendArgs(args);
            let shared = &shared;
            let out = Mutex::new(Vec::new());
            let job = || {
                let r = run(shared.get());
                out.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            };
            on_pool(workers as usize - 1, &job);
            let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
            out.resize(workers as usize, (-1, 0, 0)); // a job that panicked counts as failed
            out
        };
        let mut stats = LaunchStats {
            blocks,
            os_threads: workers,
            ..LaunchStats::default()
        };
        for (rc, waited, episodes) in results {
            if rc != 0 {
                return Err(format!("cuda-emu: kernel `{}` failed ({rc})", kernel.name));
            }
            stats.waited += waited;
            stats.episodes += episodes;
        }
        LAST.with(|l| l.set(stats));
        Ok(())
    }
}

/// `LaunchArgs` handed to the pool's threads: the pointers in it stay valid until `launch`
/// returns, which waits for them.
struct SendArgs(LaunchArgs);

// SAFETY: the pointees (kernelParams, the block counter, the kernel's name) outlive the scoped
// threads and are only read by them (the counter is atomic); the kernel code is reentrant (each
// OS thread has its own scheduler and __shared__ copies).
unsafe impl Sync for SendArgs {}

impl SendArgs {
    fn get(&self) -> LaunchArgs {
        self.0
    }
}

/// A job for the pool: a closure borrowed from a `launch` that waits for it (hence `'static`
/// only in name), and the count of jobs that launch still waits for.
struct Job {
    work: &'static (dyn Fn() + Sync),
    left: Arc<(Mutex<usize>, std::sync::Condvar)>,
}

/// Runs `work` on `n` of the pool's threads (started on first use, kept for the process) and
/// on this one, and returns when all have finished.
fn on_pool(n: usize, work: &(dyn Fn() + Sync)) {
    static POOL: Mutex<Vec<std::sync::mpsc::Sender<Job>>> = Mutex::new(Vec::new());
    // SAFETY: this function does not return before every job holding `work` has finished (the
    // count below reaches 0 only after each worker's call returned or unwound), so the
    // reference never outlives the closure it points to.
    let work: &'static (dyn Fn() + Sync) = unsafe { std::mem::transmute(work) };
    let left = Arc::new((Mutex::new(n), std::sync::Condvar::new()));
    {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        while pool.len() < n {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(format!("cuda-emu-blocks-{}", pool.len() + 1))
                .spawn(move || {
                    for job in rx {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.work));
                        let (count, cv) = &*job.left;
                        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                        cv.notify_all();
                    }
                })
                .expect("cuda-emu: cannot start a block thread");
            pool.push(tx);
        }
        for tx in &pool[..n] {
            let job = Job {
                work,
                left: Arc::clone(&left),
            };
            if tx.send(job).is_err() {
                // the worker is gone (it cannot be: workers never exit); do its share here
                *left.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            }
        }
    }
    work();
    let (count, cv) = &*left;
    let mut count = count.lock().unwrap_or_else(|e| e.into_inner());
    while *count > 0 {
        count = cv.wait(count).unwrap_or_else(|e| e.into_inner());
    }
}

/// Sets [`current_kernel`] for one launch on this thread.
struct Current(Option<Arc<str>>);

impl Current {
    fn set(name: &Arc<str>) -> Current {
        Current(CURRENT.with(|c| c.replace(Some(Arc::clone(name)))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The kernel this thread is running, if any (for the fault handler's message).
pub fn current_kernel() -> Option<String> {
    CURRENT.with(|c| {
        c.try_borrow()
            .ok()
            .and_then(|k| k.as_deref().map(str::to_owned))
    })
}

/// `CUDA_EMU_BLOCK_THREADS`, read once.
fn block_threads() -> u64 {
    static N: OnceLock<u64> = OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("CUDA_EMU_BLOCK_THREADS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(1)
    })
}

fn compile_locks() -> &'static Mutex<HashMap<String, Arc<Mutex<()>>>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    LOCKS.get_or_init(Mutex::default)
}

/// A parsed source image.
struct Image<'a> {
    /// The whole image, trailing NULs removed (hashed for the cache key).
    raw: &'a [u8],
    name: &'a str,
    include_dirs: Vec<&'a str>,
    /// The CUDA C++ source after the header lines.
    source: &'a str,
}

impl<'a> Image<'a> {
    fn parse(image: &'a [u8]) -> Result<Image<'a>, String> {
        let end = image.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let raw = &image[..end];
        let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
        if first.strip_suffix(b"\r").unwrap_or(first) != MARKER.as_bytes() {
            let shown: String = String::from_utf8_lossy(first).chars().take(60).collect();
            return Err(format!(
                "cuda-emu: the module image is not a source image (its first line is `{shown}`): \
                 the stand-in runs the CUDA C++ source images that its nvcc and NVRTC write, \
                 which start with `{MARKER}`, not PTX or cubin"
            ));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|e| format!("cuda-emu: the source image is not UTF-8: {e}"))?;
        let mut image = Image {
            raw,
            name: "module.cu",
            include_dirs: Vec::new(),
            source: "",
        };
        let mut rest = &text[first.len()..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
        while let Some(line) = rest.strip_prefix("//cuda-emu-") {
            let (line, after) = line.split_once('\n').unwrap_or((line, ""));
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix("name ") {
                image.name = name.trim();
            } else if let Some(dir) = line.strip_prefix("include ") {
                image.include_dirs.push(dir.trim());
            } else {
                return Err(format!(
                    "cuda-emu: unknown source-image directive `//cuda-emu-{line}` \
                     (known: `//cuda-emu-name`, `//cuda-emu-include`)"
                ));
            }
            rest = after;
        }
        image.source = rest;
        Ok(image)
    }
}

/// Where the compiler, the header and the cache are, from the environment.
struct Config {
    include: PathBuf,
    cache: PathBuf,
    cxx: String,
    flags: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Config {
            include: var("CUDA_EMU_INCLUDE").map_or_else(
                || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/include")),
                PathBuf::from,
            ),
            cache: var("CUDA_EMU_CACHE")
                .map_or_else(|| std::env::temp_dir().join("cuda-emu-jit"), PathBuf::from),
            cxx: var("CUDA_EMU_CXX").unwrap_or_else(|| "g++".into()),
            flags: compile_flags(var("CUDA_EMU_CXXFLAGS").as_deref()),
        }
    }

    /// `-I` for this crate's headers first, then the image's folders.
    fn includes(&self, image: &Image) -> Vec<String> {
        let mut args = vec!["-I".to_owned(), self.include.display().to_string()];
        for dir in &image.include_dirs {
            args.push("-I".into());
            args.push((*dir).to_owned());
        }
        args.push("-include".into());
        args.push(self.include.join("cuda_emu.h").display().to_string());
        args
    }
}

/// The flags a module is compiled with: C++17 at -O1 as a shared library; hidden symbols apart
/// from the kernel table and no `STB_GNU_UNIQUE` (so that each module's __shared__ variables are
/// its own); no errno from math functions and FMA contraction as nvcc does by default (`-mfma`
/// only where the CPU has FMA); TLS descriptors on x86-64; then `extra` (`CUDA_EMU_CXXFLAGS`).
pub fn compile_flags(extra: Option<&str>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "-std=c++17",
        "-O1",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-fno-gnu-unique",
        "-fno-math-errno",
        "-ffp-contract=fast",
    ]
    .map(String::from)
    .into();
    #[cfg(target_arch = "x86_64")]
    {
        // TLS descriptors: threadIdx and friends are read through a short call rather than
        // __tls_get_addr (measured: 24 -> 16 ns a thread for an elementwise kernel).
        flags.push("-mtls-dialect=gnu2".into());
        if std::arch::is_x86_feature_detected!("fma") {
            flags.push("-mfma".into());
        }
    }
    flags.extend(
        extra
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from),
    );
    flags
}

/// The cache key: the MD5 of the image, every header it may include (this crate's and those in
/// the image's folders), the compiler and its flags.
fn cache_key(image: &Image, config: &Config) -> Result<String, String> {
    let mut h = Md5::new();
    h.update(b"cuda-emu-jit 1\0");
    h.update(image.raw);
    let mut dirs = vec![config.include.clone()];
    dirs.extend(image.include_dirs.iter().map(PathBuf::from));
    for dir in &dirs {
        h.update(b"\0dir\0");
        h.update(dir.as_os_str().as_encoded_bytes());
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => continue,
        };
        files.retain(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("h" | "hpp" | "cuh" | "inc" | "inl")
                )
        });
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file)
                .map_err(|e| format!("cuda-emu: cannot read {}: {e}", file.display()))?;
            h.update(file.as_os_str().as_encoded_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    h.update(b"\0cxx\0");
    h.update(config.cxx.as_bytes());
    for flag in &config.flags {
        h.update(b"\0");
        h.update(flag.as_bytes());
    }
    let mut key = String::with_capacity(32);
    for b in h.finalize().iter() {
        let _ = write!(key, "{b:02x}");
    }
    Ok(key)
}

/// Compiles `image` into `lib` (through a temporary name).
fn compile(image: &Image, config: &Config, key: &str, lib: &Path) -> Result<(), String> {
    std::fs::create_dir_all(&config.cache)
        .map_err(|e| format!("cuda-emu: cannot create {}: {e}", config.cache.display()))?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tag = format!(
        "{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let src = config.cache.join(format!("{key}.{tag}.cpp"));
    let tmp_lib = config.cache.join(format!("{key}.{tag}.so"));
    let result = compile_at(image, config, &src, &tmp_lib).and_then(|()| {
        std::fs::rename(&tmp_lib, lib)
            .map_err(|e| format!("cuda-emu: cannot rename into {}: {e}", lib.display()))
    });
    // Keep the last compiled source beside the library, for reading.
    let _ = std::fs::rename(&src, config.cache.join(format!("{key}.cpp")));
    let _ = std::fs::remove_file(&tmp_lib);
    result
}

fn compile_at(image: &Image, config: &Config, src: &Path, lib: &Path) -> Result<(), String> {
    let write = |text: &str, append: bool| {
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(src)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cuda-emu: cannot write {}: {e}", src.display()))
    };
    let escaped = image.name.replace('\\', "\\\\").replace('"', "\\\"");
    write(&format!("#line 1 \"{escaped}\"\n{}\n", image.source), false)?;

    // 1. The kernels, from the preprocessed source with __global__ as a marker.
    let out = Command::new(&config.cxx)
        .env("LC_ALL", "C")
        .args(["-std=c++17", "-E", "-P", "-D__CUDA_EMU_SCAN__", "-x", "c++"])
        .args(config.includes(image))
        .arg(src)
        .output()
        .map_err(|e| format!("cuda-emu: cannot run `{}`: {e}", config.cxx))?;
    if !out.status.success() {
        return Err(compiler_error(image.name, &out.stderr));
    }
    let kernels = find_kernels(&String::from_utf8_lossy(&out.stdout));

    // 2. Their table, then the library.
    let mut table = String::from("\nCUDA_EMU_TABLE_BEGIN\n");
    for k in &kernels {
        let _ = writeln!(table, "CUDA_EMU_REGISTER({k})");
    }
    table.push_str("CUDA_EMU_TABLE_END\n");
    write(&table, true)?;
    let out = Command::new(&config.cxx)
        .env("LC_ALL", "C") // plain quotes in diagnostics
        .args(&config.flags)
        .args(["-x", "c++"])
        .args(config.includes(image))
        .arg(src)
        .arg("-o")
        .arg(lib)
        .output()
        .map_err(|e| format!("cuda-emu: cannot run `{}`: {e}", config.cxx))?;
    if !out.status.success() {
        return Err(compiler_error(image.name, &out.stderr));
    }
    Ok(())
}

/// g++'s diagnostics, trimmed to what fits a message.
fn compiler_error(name: &str, stderr: &[u8]) -> String {
    const LINES: usize = 80;
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim().lines().collect();
    let mut msg = format!("cuda-emu: g++ could not compile module `{name}`:\n");
    msg.push_str(&lines[..lines.len().min(LINES)].join("\n"));
    if lines.len() > LINES {
        let _ = write!(msg, "\n... ({} more lines)", lines.len() - LINES);
    }
    msg
}

/// `dlopen`s a compiled module and reads its kernel table.
fn open(lib: &Path, name: &str) -> Result<Module, String> {
    let path = CString::new(lib.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("cuda-emu: bad path {}", lib.display()))?;
    // SAFETY: plain libc calls on a NUL-terminated path; the library's initialisers are the
    // header's (no global constructors run kernel code).
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!(
            "cuda-emu: cannot load module `{name}`: {}",
            dlerror()
        ));
    }
    let sym = |s: &CStr| {
        // SAFETY: `handle` is a live handle from dlopen (never closed).
        let p = unsafe { libc::dlsym(handle, s.as_ptr()) };
        if p.is_null() {
            Err(format!(
                "cuda-emu: module `{name}` has no `{}`",
                s.to_string_lossy()
            ))
        } else {
            Ok(p)
        }
    };
    let abi = sym(c"cuda_emu_abi")?;
    // SAFETY: the header defines `cuda_emu_abi` as a `const int`.
    let abi = unsafe { *(abi as *const c_int) };
    if abi != ABI {
        return Err(format!(
            "cuda-emu: module `{name}` was built with table version {abi}, this JIT reads {ABI}"
        ));
    }
    let mut entry = sym(c"cuda_emu_kernels")? as *const TableEntry;
    let mut kernels = Vec::new();
    loop {
        // SAFETY: the table is an array of `TableEntry` ended by a null name (the header's
        // CUDA_EMU_TABLE_END); its strings are literals in the never-unloaded library.
        let e = unsafe { &*entry };
        if e.name.is_null() {
            break;
        }
        // SAFETY: as above.
        let c_name = unsafe { CStr::from_ptr(e.name) }.to_owned();
        let launch = e
            .launch
            .ok_or_else(|| format!("cuda-emu: module `{name}`: null launcher"))?;
        if e.sizes.is_null() {
            return Err(format!("cuda-emu: module `{name}`: no parameter sizes"));
        }
        // SAFETY: `sizes` is the launcher's static array of `params` sizes (and a 0).
        let sizes = unsafe { std::slice::from_raw_parts(e.sizes, e.params) }.to_vec();
        kernels.push(Kernel {
            name: c_name.to_string_lossy().into(),
            c_name,
            params: e.params,
            sizes,
            launch,
        });
        // SAFETY: still within the table (this entry was not the terminator).
        entry = unsafe { entry.add(1) };
    }
    Ok(Module {
        name: name.to_owned(),
        kernels,
    })
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The names of the `extern "C"` kernels in preprocessed source where `__global__` reads
/// `__cuda_emu_global__`, in order and without repeats: the identifier before the first `(`
/// after each marker that follows `extern "C"` or sits in an `extern "C" { ... }` block.
/// Kernels with C++ linkage are skipped: a driver looks functions up by their plain names.
pub fn find_kernels(preprocessed: &str) -> Vec<String> {
    let tokens = tokenize(preprocessed);
    let mut names: Vec<String> = Vec::new();
    // For each open brace: whether it opened an `extern "C"` block.
    let mut braces: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Tok::Ident("extern")
                if matches!(tokens.get(i + 1), Some(Tok::Str("\"C\"")))
                    && matches!(tokens.get(i + 2), Some(Tok::Punct(b'{'))) =>
            {
                braces.push(true);
                i += 3;
                continue;
            }
            Tok::Punct(b'{') => braces.push(false),
            Tok::Punct(b'}') => {
                braces.pop();
            }
            Tok::Ident("__cuda_emu_global__") => {
                let c_linkage = braces.contains(&true)
                    || (i >= 2
                        && tokens[i - 2] == Tok::Ident("extern")
                        && tokens[i - 1] == Tok::Str("\"C\""));
                if let (true, Some(name)) = (c_linkage, kernel_name(&tokens[i + 1..])) {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_owned());
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// The declarator's name: the last identifier before the parameter list's `(`, stepping over
/// `__attribute__((...))`.
fn kernel_name<'a>(tokens: &[Tok<'a>]) -> Option<&'a str> {
    let mut last = None;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Tok::Ident("__attribute__" | "__declspec" | "alignas") => {
                // skip the balanced parentheses that follow
                let mut depth = 0usize;
                i += 1;
                while i < tokens.len() {
                    match tokens[i] {
                        Tok::Punct(b'(') => depth += 1,
                        Tok::Punct(b')') => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            Tok::Ident(id) => last = Some(id),
            Tok::Punct(b'(') => return last,
            Tok::Punct(b';' | b'{' | b'}') => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// A string literal, quotes included.
    Str(&'a str),
    Punct(u8),
    /// A number or character literal.
    Other,
}

/// A C++ tokenizer just good enough for finding declarations in preprocessed text: identifiers,
/// string and character literals (raw strings too), numbers, single-byte punctuation; lines
/// starting with `#` (pragmas, line markers) are skipped.
fn tokenize(text: &str) -> Vec<Tok<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if line_start && c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        line_start = false;
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let id = &text[start..i];
            if i < b.len() && b[i] == b'"' && id.ends_with('R') {
                // raw string: R"delim( ... )delim"
                let open = i + 1;
                let paren = text[open..].find('(').map_or(b.len(), |p| open + p);
                let close = format!("){}\"", &text[open..paren]);
                i = text[paren..]
                    .find(&close)
                    .map_or(b.len(), |p| paren + p + close.len());
                out.push(Tok::Other);
            } else if i < b.len()
                && (b[i] == b'"' || b[i] == b'\'')
                && matches!(id, "u8" | "u" | "U" | "L")
            {
                continue; // an encoding prefix: the literal follows
            } else {
                out.push(Tok::Ident(id));
            }
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'.'
                    || b[i] == b'\''
                    || ((b[i] == b'+' || b[i] == b'-')
                        && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P')))
            {
                i += 1;
            }
            out.push(Tok::Other);
            continue;
        }
        if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != c && b[i] != b'\n' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            out.push(if c == b'"' {
                Tok::Str(&text[start..i])
            } else {
                Tok::Other
            });
            continue;
        }
        out.push(Tok::Punct(c));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_extern_c_kernels_only() {
        let text = r#"
            # 1 "x.cu"
            template <typename T> __cuda_emu_global__ void templ(T *x) {}
            __cuda_emu_global__ void cxx_linkage(int *x) {}
            extern "C" __cuda_emu_global__ void a(const float *x, float *y) { }
            extern "C" __cuda_emu_global__ void __attribute__((used)) b(int n);
            extern "C" __cuda_emu_global__ void b(int n) { const char *s = "extern \"C\" __cuda_emu_global__ void no("; }
            extern "C" { __cuda_emu_global__ void c() {} struct S { int x; }; }
            __cuda_emu_global__ void d() {}
        "#;
        assert_eq!(find_kernels(text), ["a", "b", "c"]);
    }

    #[test]
    fn parses_image_header() {
        let image = source_image("x.cu", &[Path::new("/a"), Path::new("/b c")], "int x;\n");
        let mut bytes = image.into_bytes();
        bytes.push(0);
        let img = Image::parse(&bytes).unwrap();
        assert_eq!(img.name, "x.cu");
        assert_eq!(img.include_dirs, ["/a", "/b c"]);
        assert_eq!(img.source, "int x;\n");
    }

    #[test]
    fn refuses_ptx() {
        let err = Image::parse(b"//\n// Generated by NVIDIA NVVM Compiler\n.version 7.8\n\0")
            .err()
            .unwrap();
        assert!(
            err.contains("not a source image") && err.contains(MARKER),
            "{err}"
        );
        let err = Image::parse(b"//cuda-emu-src v1\n//cuda-emu-nmae x\n")
            .err()
            .unwrap();
        assert!(err.contains("unknown source-image directive"), "{err}");
    }
}
