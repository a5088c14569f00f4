//! The JIT against real kernels: the crate's `kernels.cu` (names, shared memory and barriers,
//! im2col's index math against a naive loop), every `.cu` file of dfdx 0.13 compiled as its
//! nvcc stand-in presents them and its run-time NVRTC sources, dfdx's reductions run (`sum_to`'s
//! early exits, `max_to`'s float atomics); the barrier rules (returned threads leave the
//! barrier; divergent barriers abort, checked in child processes); the schedules that expose
//! races, blocks on several OS threads, the ASan mode; parameter unpacking, atomics, 3-D
//! indices, the fibers' stack alignment; and the cost of a launch. Needs only g++.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cuda_emu::jit::{self, LaunchStats, Module, last_launch, source_image};

const KERNELS_CU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../src/ops/cuda/kernels.cu");
const CUDA_MOD_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../src/ops/cuda/mod.rs");

/// The crate's kernels, compiled once per test process.
fn ours() -> &'static Module {
    static M: OnceLock<Module> = OnceLock::new();
    M.get_or_init(|| {
        let src = std::fs::read_to_string(KERNELS_CU).expect("kernels.cu");
        Module::load(source_image("kernels.cu", &[], &src).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A module from a test's own source.
fn module(name: &str, src: &str) -> Module {
    Module::load(source_image(name, &[], src).as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// A pointer to a parameter value, as `kernelParams` holds them.
fn arg<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

fn launch(
    m: &Module,
    name: &str,
    grid: [u32; 3],
    block: [u32; 3],
    args: &mut [*mut c_void],
) -> LaunchStats {
    let f = m
        .function(name)
        .unwrap_or_else(|| panic!("no kernel {name}"));
    // SAFETY: each test passes one pointer per parameter of `name`, to a value of its type, and
    // buffers large enough for the launch.
    unsafe { m.launch(f, grid, block, 0, args.as_mut_ptr()) }.unwrap_or_else(|e| panic!("{e}"));
    last_launch()
}

/// `ConvGeom` in kernels.cu (and in src/ops/cuda/mod.rs).
#[repr(C)]
#[derive(Clone, Copy)]
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

#[test]
fn kernels_cu_exports_the_kernels_the_crate_loads() {
    // The names the crate passes to load_ptx: the quoted strings of `KERNELS` in mod.rs.
    let rs = std::fs::read_to_string(CUDA_MOD_RS).expect("mod.rs");
    let list = rs
        .split("const KERNELS: &[&str] = &[")
        .nth(1)
        .and_then(|s| s.split("];").next())
        .expect("KERNELS");
    let expected: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    assert_eq!(expected.len(), 34);
    let m = ours();
    let mut names: Vec<&str> = m.names().collect();
    names.sort_unstable();
    let mut want = expected.clone();
    want.sort_unstable();
    assert_eq!(names, want);
    assert!(m.function("im2col_f32").is_some() && m.function("im2col_f16").is_none());
    assert_eq!(m.param_count(m.function("bn_infer_f64").unwrap()), Some(11));
}

#[test]
fn channel_sum_matches_a_loop_through_barriers() {
    // g: (B, O, P); db: (O) += g summed over B and P. One block of 256 threads per channel, each
    // thread strides over the channel's B * P = 300 values, then a shared-memory tree.
    let (b, o, p) = (3usize, 5usize, 100usize);
    let g: Vec<f32> = (0..b * o * p).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut db: Vec<f32> = (0..o).map(|c| c as f32 * 10.0).collect();
    let mut want = db.clone();
    for bi in 0..b {
        for (c, w) in want.iter_mut().enumerate() {
            *w += g[(bi * o + c) * p..][..p].iter().sum::<f32>();
        }
    }
    let (gp, dp) = (g.as_ptr(), db.as_mut_ptr());
    let (bb, oo, pp) = (b as i32, o as i32, p as i32);
    let stats = launch(
        ours(),
        "channel_sum_f32",
        [o as u32, 1, 1],
        [256, 1, 1],
        &mut [arg(&gp), arg(&dp), arg(&bb), arg(&oo), arg(&pp)],
    );
    assert_eq!(db, want);
    // Every thread waits at 1 + log2(256) barriers: the fiber path, not the fast one.
    assert_eq!(
        stats,
        LaunchStats {
            blocks: o as u64,
            waited: (o * 256 * 9) as u64,
            episodes: (o * 9) as u64,
            os_threads: stats.os_threads, // 1, or CUDA_EMU_BLOCK_THREADS's
        }
    );
}

#[test]
fn im2col_matches_a_loop() {
    let g = ConvGeom {
        batch: 2,
        channels: 3,
        h: 5,
        w: 6,
        oh: 3,
        ow: 4,
        kh: 3,
        kw: 2,
        sh: 2,
        sw: 1,
        ph: 1,
        pw: 0,
        dh: 1,
        dw: 2,
    };
    let [bs, c, h, w, oh, ow, kh, kw] =
        [g.batch, g.channels, g.h, g.w, g.oh, g.ow, g.kh, g.kw].map(|v| v as usize);
    // x: (B, C, H, W); cols: (C*KH*KW, N), N = B * OH * OW
    let x: Vec<f32> = (0..bs * c * h * w).map(|i| i as f32 + 1.0).collect();
    let n = bs * oh * ow;
    let mut want = vec![0.0f32; c * kh * kw * n];
    for ci in 0..c {
        for ky in 0..kh {
            for kx in 0..kw {
                for b in 0..bs {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.sh as usize + ky * g.dh as usize) as i64 - g.ph as i64;
                            let ix = (ox * g.sw as usize + kx * g.dw as usize) as i64 - g.pw as i64;
                            let inside = (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix);
                            let row = (ci * kh + ky) * kw + kx;
                            want[row * n + b * oh * ow + oy * ow + ox] = if inside {
                                x[((b * c + ci) * h + iy as usize) * w + ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
    let mut cols = vec![f32::NAN; want.len()];
    let (xp, cp) = (x.as_ptr(), cols.as_mut_ptr());
    // 3 blocks of 64 threads: the grid-stride loop goes round several times.
    let stats = launch(
        ours(),
        "im2col_f32",
        [3, 1, 1],
        [64, 1, 1],
        &mut [arg(&g), arg(&xp), arg(&cp)],
    );
    assert_eq!(cols, want);
    assert_eq!(
        (stats.blocks, stats.waited),
        (3, 0),
        "a barrier-free kernel takes the fast path"
    );
}

/// dfdx 0.13's sources in the registry, if this machine has them.
fn dfdx_src() -> Option<PathBuf> {
    let homes = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    for home in homes {
        let Ok(regs) = std::fs::read_dir(home.join("registry/src")) else {
            continue;
        };
        for reg in regs.flatten() {
            let dir = reg.path().join("dfdx-0.13.0/src");
            if dir.is_dir() {
                return Some(dir);
            }
        }
    }
    // Elsewhere (a vendored or relocated registry): where cargo says the workspace's dfdx is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
            root,
        ])
        .output()
        .ok()?;
    let json = String::from_utf8_lossy(&out.stdout);
    let end = json.find("dfdx-0.13.0/Cargo.toml\"")?;
    let start = json[..end].rfind('"')? + 1;
    let dir = Path::new(&json[start..end]).join("dfdx-0.13.0/src");
    dir.is_dir().then_some(dir)
}

fn cu_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            cu_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "cu") {
            out.push(p);
        }
    }
}

/// dfdx's module `file` as its build script has nvcc compile it: `-I` for every folder holding a
/// `.cuh` (dfdx's build.rs), plus the file's own.
fn dfdx_module(src: &Path, file: &Path) -> Result<Module, String> {
    let utilities = src.join("tensor_ops/utilities");
    let dirs = [file.parent().unwrap(), utilities.as_path()];
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let name = file.file_name().unwrap().to_string_lossy();
    Module::load(source_image(&name, &dirs, &text).as_bytes())
}

#[test]
fn every_dfdx_kernel_file_compiles() {
    let Some(src) = dfdx_src() else {
        eprintln!("skipped: dfdx-0.13.0 is not in the cargo registry (CARGO_HOME or ~/.cargo)");
        return;
    };
    let mut files = Vec::new();
    cu_files(&src, &mut files);
    files.sort();
    assert_eq!(files.len(), 49, "dfdx 0.13 has 49 .cu files");
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(workers)).collect();
    let results: Vec<(String, Result<usize, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let src = &src;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| {
                            let name = f.strip_prefix(src).unwrap().display().to_string();
                            (name, dfdx_module(src, f).map(|m| m.names().count()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| match r {
            Err(e) => Some(format!("{name}: {e}")),
            Ok(0) => Some(format!("{name}: no kernels found")),
            Ok(_) => None,
        })
        .collect();
    let kernels: usize = results.iter().filter_map(|(_, r)| r.as_ref().ok()).sum();
    eprintln!(
        "dfdx: {} of {} files compiled, {kernels} kernels",
        results.len() - failed.len(),
        results.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn dfdx_sum_to_runs_with_threads_exiting_before_its_barriers() {
    let Some(src) = dfdx_src() else {
        eprintln!("skipped: dfdx-0.13.0 is not in the cargo registry");
        return;
    };
    let m = dfdx_module(&src, &src.join("tensor_ops/sum_to/sum_to.cu"))
        .unwrap_or_else(|e| panic!("{e}"));
    // out[i / chunk] += inp[i] * 0.5 for i < 1000, chunks of 100, dfdx's launch_cfg::<128>: the
    // last block's threads past 1000 return at once, and in each block the threads of a chunk
    // cut short by the block's edge finish their loop and return while the others still wait.
    let (numel, chunk) = (1000usize, 100usize);
    let inp: Vec<f32> = (0..numel).map(|i| (i % 13) as f32).collect();
    let mut out = vec![1.0f32; numel / chunk];
    let want: Vec<f32> = (0..numel / chunk)
        .map(|c| 1.0 + inp[c * chunk..][..chunk].iter().sum::<f32>() * 0.5)
        .collect();
    let info: [usize; 2] = [numel, 1]; // dims, then strides
    let (ip, op, infop) = (inp.as_ptr(), out.as_mut_ptr(), info.as_ptr());
    let (num_dims, ept) = (1usize, 0.5f32);
    let stats = launch(
        &m,
        "sum_to_fwd_f32",
        [numel.div_ceil(128) as u32, 1, 1],
        [128, 1, 1],
        &mut [
            arg(&numel),
            arg(&num_dims),
            arg(&ept),
            arg(&chunk),
            arg(&infop),
            arg(&ip),
            arg(&op),
        ],
    );
    assert_eq!(out, want);
    assert!(stats.waited > 0 && stats.episodes > 0, "{stats:?}");
}

/// Host threads launching the same module at once each get their own block scheduler and
/// __shared__ copies (the module's thread-locals).
#[test]
fn concurrent_launches_of_one_module() {
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    channel_sum_matches_a_loop_through_barriers();
                }
            });
        }
    });
}

/// The sources dfdx compiles with NVRTC at run time (`const ...: &str = "..."` in its
/// `cuda_kernel.rs` files), with `__half` for their type parameters: they compile (their
/// `intptr_t` typedef agrees with glibc's), and to_dtype's f32 -> f16 runs.
#[test]
fn dfdx_run_time_sources_compile() {
    let Some(src) = dfdx_src() else {
        eprintln!("skipped: dfdx-0.13.0 is not in the cargo registry");
        return;
    };
    let utilities = src.join("tensor_ops/utilities");
    let mut convert = None;
    for op in ["to_dtype", "concat", "stack", "concat_along", "reshape_to"] {
        let rs =
            std::fs::read_to_string(src.join(format!("tensor_ops/{op}/cuda_kernel.rs"))).unwrap();
        let consts: Vec<&str> = rs
            .split(": &str = \"")
            .skip(1)
            .map(|s| s.split("\";").next().unwrap())
            .collect();
        assert!(!consts.is_empty(), "{op}: no kernel source found");
        for (i, text) in consts.iter().enumerate() {
            let text = text
                .replace("\\\"", "\"")
                .replace("$Src", "float")
                .replace("$Dst", "__half");
            let text = text.replace("$Ty", "__half").replace("$T", "__half");
            let name = format!("{op}_{i}.cu");
            let m = Module::load(source_image(&name, &[&utilities], &text).as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(m.names().count() > 0, "{name}: no kernels");
            if op == "to_dtype" {
                convert = Some(m);
            }
        }
    }
    let m = convert.unwrap();
    let inp = [1.5f32, -2.0, 65504.0, 0.0, 1e6];
    let mut out = [0u16; 5];
    let (n, ip, op) = (inp.len(), inp.as_ptr(), out.as_mut_ptr());
    launch(
        &m,
        "kernel",
        [1, 1, 1],
        [128, 1, 1],
        &mut [arg(&n), arg(&ip), arg(&op)],
    );
    assert_eq!(out, [0x3e00, 0xc000, 0x7bff, 0, 0x7c00]); // binary16 bits; 1e6 overflows to inf
}

/// dfdx's max_to (a barrier reduction whose result goes through `atomicMaxf`, built from
/// atomicMax/atomicMin on the float's bits) and exp (a UNARY_OP kernel whose first parameter is
/// an empty struct: one byte read, as the driver reads it).
#[test]
fn dfdx_max_to_and_exp_run() {
    let Some(src) = dfdx_src() else {
        eprintln!("skipped: dfdx-0.13.0 is not in the cargo registry");
        return;
    };
    let m = dfdx_module(&src, &src.join("tensor_ops/max_to/max_to.cu"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (numel, chunk, num_dims) = (1000usize, 100usize, 1usize);
    // odd chunks all negative: their maxima take atomicMaxf's atomicMin-on-unsigned branch
    let inp: Vec<f32> = (0..numel)
        .map(|i| ((i * 37) % 101) as f32 - if (i / chunk) % 2 == 1 { 200.0 } else { 0.0 })
        .collect();
    let mut out = vec![f32::NEG_INFINITY; numel / chunk];
    let want: Vec<f32> = inp
        .chunks(chunk)
        .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect();
    let info: [usize; 2] = [numel, 1];
    let (ip, op, infop) = (inp.as_ptr(), out.as_mut_ptr(), info.as_ptr());
    launch(
        &m,
        "max_to_fwd_f32",
        [numel.div_ceil(128) as u32, 1, 1],
        [128, 1, 1],
        &mut [
            arg(&numel),
            arg(&num_dims),
            arg(&chunk),
            arg(&infop),
            arg(&ip),
            arg(&op),
        ],
    );
    assert_eq!(out, want);
    assert!(want.iter().any(|&v| v < 0.0) && want.iter().any(|&v| v > 0.0));

    let m = dfdx_module(&src, &src.join("tensor_ops/exp/exp.cu")).unwrap_or_else(|e| panic!("{e}"));
    let x: Vec<f32> = (0..300).map(|i| i as f32 / 100.0 - 1.5).collect();
    let mut y = vec![0.0f32; x.len()];
    let (xp, yp, n, op_struct) = (x.as_ptr(), y.as_mut_ptr(), x.len(), 0u8);
    launch(
        &m,
        "exp_fwd_f32",
        [3, 1, 1],
        [128, 1, 1],
        &mut [arg(&op_struct), arg(&n), arg(&xp), arg(&yp)],
    );
    for (x, y) in x.iter().zip(&y) {
        assert!((y - x.exp()).abs() <= 1e-6 * x.exp(), "exp({x}) = {y}");
    }
}

const BARRIERS: &str = r#"
extern "C" __global__ void early_exit(const unsigned n, float *out) {
    __shared__ float buf[256];
    if (threadIdx.x >= n) return;   // leaves the block: the barrier below waits for the rest
    buf[threadIdx.x] = threadIdx.x + 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[(threadIdx.x + 1) % n];
}

extern "C" __global__ void even_only(int *out) {
    if (threadIdx.x % 2 == 0) __syncthreads();
    out[threadIdx.x] = threadIdx.x;
}

extern "C" __global__ void two_sites(int *out) {
    if (threadIdx.x % 2 == 0) __syncthreads();
    out[threadIdx.x] = threadIdx.x;
    __syncthreads();
}

extern "C" __global__ void racy(float *out) {
    __shared__ float s[64];
    s[threadIdx.x] = threadIdx.x;
    out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x]; // a neighbour's entry, no barrier
}

// Values cross between threads only through shared memory and barriers.
extern "C" __global__ void exchange(int *out) {
    __shared__ int s[64];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    const int a = s[63 - threadIdx.x];
    __syncthreads();
    s[threadIdx.x] = 2 * a;
    __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];
}

// __syncthreads_count/_and/_or over the block's 64 threads, twice in a row.
extern "C" __global__ void votes(int *out) {
    const int c = __syncthreads_count(threadIdx.x % 3 == 0);
    const int a = __syncthreads_and(threadIdx.x < 64);
    const int o = __syncthreads_or(threadIdx.x == 5);
    const int none = __syncthreads_or(0);
    if (threadIdx.x == 7) { out[0] = c; out[1] = a; out[2] = o; out[3] = none; }
}

extern "C" __global__ void barriers_only(int rounds) {
    for (int r = 0; r < rounds; r++) __syncthreads();
}

extern "C" __global__ void unwritten_shared(float *out) {
    __shared__ float s[128];
    s[threadIdx.x] = 1.0f;          // entries [0, blockDim.x) only
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x + blockDim.x];
}
"#;

#[test]
fn threads_that_return_leave_the_barrier() {
    let m = module("barriers.cu", BARRIERS);
    let n = 100u32;
    let mut out = vec![-1.0f32; 2 * 128];
    let op = out.as_mut_ptr();
    let stats = launch(
        &m,
        "early_exit",
        [2, 1, 1],
        [128, 1, 1],
        &mut [arg(&n), arg(&op)],
    );
    for b in 0..2 {
        for t in 0..128 {
            let want = if t < n as usize {
                ((t + 1) % n as usize) as f32 + 1.0
            } else {
                -1.0
            };
            assert_eq!(out[b * 128 + t], want, "block {b} thread {t}");
        }
    }
    assert_eq!((stats.waited, stats.episodes), (2 * n as u64, 2));
}

#[test]
fn shared_values_cross_barriers() {
    let m = module("barriers.cu", BARRIERS);
    let mut out = vec![-1i32; 64];
    let op = out.as_mut_ptr();
    launch(&m, "exchange", [1, 1, 1], [64, 1, 1], &mut [arg(&op)]);
    assert_eq!(out, (0..64).map(|t| 2 * t).collect::<Vec<i32>>());
}

#[test]
fn barrier_votes() {
    let m = module("barriers.cu", BARRIERS);
    let mut out = vec![-1i32; 4];
    let op = out.as_mut_ptr();
    launch(&m, "votes", [1, 1, 1], [64, 1, 1], &mut [arg(&op)]);
    assert_eq!(out, [22, 1, 1, 0]); // 0, 3, ..., 63: 22 multiples of 3
}

#[test]
fn shared_memory_starts_as_nan_in_every_block() {
    // Each block reads the half of `s` it never wrote: NaN in the first block, and in the
    // second too (not the first block's values: the fill is per block once a kernel waits).
    let m = module("barriers.cu", BARRIERS);
    let mut out = vec![0.0f32; 2 * 64];
    let op = out.as_mut_ptr();
    launch(
        &m,
        "unwritten_shared",
        [2, 1, 1],
        [64, 1, 1],
        &mut [arg(&op)],
    );
    assert!(out.iter().all(|v| v.to_bits() == u32::MAX), "{out:?}");
}

/// CUDA_EMU_SCHED=reverse and =random: the race in `racy` (reading a neighbour's shared entry
/// without a barrier) gives other values than in the default order, while the barrier kernels,
/// dfdx's reductions and a grid-stride kernel give the same.
#[test]
fn schedules_expose_a_race_and_keep_correct_kernels() {
    const NAME: &str = "schedules_expose_a_race_and_keep_correct_kernels";
    let m = module("barriers.cu", BARRIERS);
    let mut out = vec![0.0f32; 64];
    let op = out.as_mut_ptr();
    launch(&m, "racy", [1, 1, 1], [64, 1, 1], &mut [arg(&op)]);
    // the default order: each thread's neighbour has not run yet, but thread 63's (thread 0) has
    let forward = out[..63].iter().all(|v| v.is_nan()) && out[63] == 0.0;
    if in_child(NAME) {
        assert!(!forward, "{out:?}");
        if std::env::var("CUDA_EMU_SCHED").is_ok_and(|s| s == "reverse") {
            // last thread first: each finds its neighbour's entry written, but thread 63's not
            let next = |t: usize| (t + 1) as f32;
            assert!(
                (0..63).all(|t| out[t] == next(t)) && out[63].is_nan(),
                "{out:?}"
            );
        }
        channel_sum_matches_a_loop_through_barriers();
        threads_that_return_leave_the_barrier();
        shared_values_cross_barriers();
        dfdx_sum_to_runs_with_threads_exiting_before_its_barriers();
        dfdx_max_to_and_exp_run();
        im2col_matches_a_loop();
        three_dimensional_indices();
        return;
    }
    assert!(forward, "{out:?}");
    for sched in ["reverse", "random"] {
        let child = child(NAME, &[("CUDA_EMU_SCHED", sched)]);
        assert!(
            child.status.success(),
            "CUDA_EMU_SCHED={sched}:\n{}{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
    }
}

/// Set in a child process: the test named in it runs its part that must die.
const CHILD: &str = "CUDA_EMU_JIT_TEST_CHILD";

/// Runs test `name` of this binary in a child process with `CHILD` set (and `env`).
fn child(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn in_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs `kernel` from BARRIERS (one block of 64 threads) in a child process and returns what
/// it wrote to stderr, after checking that it died of SIGABRT.
fn aborts(test: &str, kernel: &str) -> String {
    if in_child(test) {
        let m = module("barriers.cu", BARRIERS);
        let mut out = vec![0i32; 64];
        let op = out.as_mut_ptr();
        launch(&m, kernel, [1, 1, 1], [64, 1, 1], &mut [arg(&op)]);
        return String::new(); // not reached: the launch aborts
    }
    let out = child(test, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "SIGABRT expected; stderr:\n{stderr}"
    );
    stderr
}

#[test]
fn barrier_skipped_by_odd_threads_aborts_naming_the_kernel() {
    let stderr = aborts(
        "barrier_skipped_by_odd_threads_aborts_naming_the_kernel",
        "even_only",
    );
    if in_child("barrier_skipped_by_odd_threads_aborts_naming_the_kernel") {
        return;
    }
    assert!(
        stderr.contains(
            "kernel `even_only`, block (0, 0, 0): divergent __syncthreads(): thread 1 (linear \
             index) returned without reaching the barrier at line"
        ),
        "{stderr}"
    );
}

#[test]
fn barriers_at_two_sites_abort_naming_the_kernel() {
    let stderr = aborts("barriers_at_two_sites_abort_naming_the_kernel", "two_sites");
    if in_child("barriers_at_two_sites_abort_naming_the_kernel") {
        return;
    }
    assert!(
        stderr.contains(
            "kernel `two_sites`, block (0, 0, 0): divergent __syncthreads(): thread (0, 0, 0) \
             waits at line"
        ),
        "{stderr}"
    );
}

#[test]
fn blocks_spread_over_os_threads_give_the_same_sums() {
    const NAME: &str = "blocks_spread_over_os_threads_give_the_same_sums";
    if in_child(NAME) {
        let (b, o, p) = (2usize, 64usize, 300usize);
        let g: Vec<f64> = (0..b * o * p).map(|i| (i % 11) as f64).collect();
        let mut db = vec![0.0f64; o];
        let (gp, dp) = (g.as_ptr(), db.as_mut_ptr());
        let (bb, oo, pp) = (b as i32, o as i32, p as i32);
        let stats = launch(
            ours(),
            "channel_sum_f64",
            [o as u32, 1, 1],
            [256, 1, 1],
            &mut [arg(&gp), arg(&dp), arg(&bb), arg(&oo), arg(&pp)],
        );
        for (c, v) in db.iter().enumerate() {
            let want: f64 = (0..b)
                .map(|bi| g[(bi * o + c) * p..][..p].iter().sum::<f64>())
                .sum();
            assert_eq!(*v, want, "channel {c}");
        }
        let n = std::env::var("CUDA_EMU_BLOCK_THREADS")
            .unwrap()
            .parse::<u32>()
            .unwrap();
        assert_eq!(stats.os_threads, n);
        assert_eq!(stats.episodes, o as u64 * 9);
        // the other kernels, on the same two threads (the pool's is kept between launches)
        channel_sum_matches_a_loop_through_barriers();
        threads_that_return_leave_the_barrier();
        shared_memory_starts_as_nan_in_every_block();
        dfdx_sum_to_runs_with_threads_exiting_before_its_barriers();
        dfdx_max_to_and_exp_run();
        im2col_matches_a_loop();
        three_dimensional_indices();
        atomics();
        concurrent_launches_of_one_module();
        return;
    }
    let out = child(NAME, &[("CUDA_EMU_BLOCK_THREADS", "2")]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `CUDA_EMU_CXXFLAGS=-fsanitize=address` (the ASan mode): the fibers announce their stack
/// switches, so the barrier tests pass under ASan (preloaded, as the driver's script does).
#[test]
fn barriers_run_under_asan() {
    let out = Command::new("g++")
        .arg("-print-file-name=libasan.so")
        .output();
    let asan = out
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !Path::new(&asan).is_absolute() {
        eprintln!("skipped: g++ has no libasan.so");
        return;
    }
    // Some kernels' address-space layouts make this ASan runtime fail at start-up.
    let works = Command::new("true").env("LD_PRELOAD", &asan).output();
    if !works.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: a process with {asan} preloaded does not start here");
        return;
    }
    for name in [
        "threads_that_return_leave_the_barrier",
        "shared_memory_starts_as_nan_in_every_block",
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env("LD_PRELOAD", &asan)
            .env("ASAN_OPTIONS", "detect_leaks=0")
            .env(
                "CUDA_EMU_CXXFLAGS",
                "-fsanitize=address -fno-omit-frame-pointer",
            )
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{name} under ASan:\n{text}"
        );
    }
}

const PARAMS: &str = r#"
#include "cuda_fp16.h"
struct Mixed { int a; double b; char c; float d[3]; };

extern "C" __global__ void params_probe(const Mixed m, int i, size_t z, const double *p, float f,
                                        double d, unsigned short u, __half h, double *out) {
    out[0] = m.a; out[1] = m.b; out[2] = m.c; out[3] = m.d[0] + 10 * m.d[1] + 100 * m.d[2];
    out[4] = i; out[5] = (double)z; out[6] = p[1]; out[7] = f; out[8] = d; out[9] = u;
    out[10] = __half2float(h); out[11] = sizeof(Mixed);
}

extern "C" __global__ void atomics(float *f, double *d, __half *h, int *i, unsigned *u,
                                   unsigned long long *ull) {
    atomicAdd(f, 0.5f);
    atomicAdd(d, 0.25);
    atomicAdd(h, __float2half(1.0f));
    atomicAdd(i, 1);
    atomicMax(i + 1, (int)threadIdx.x - 100);
    atomicMin(i + 2, (int)threadIdx.x - 100);
    atomicMax(u, threadIdx.x);
    atomicCAS(u + 1, threadIdx.x, threadIdx.x + 1);
    atomicExch(ull, 7ull);
    atomicAdd(ull + 1, 2ull);
}

__device__ __attribute__((noinline)) unsigned misalignment() {
    alignas(16) volatile char x[16];
    x[0] = 0;
    return (unsigned)((size_t)x % 16);
}

// On the runner's fiber stack, then on a parked thread's own: the ABI's 16-byte alignment.
extern "C" __global__ void stack_alignment(unsigned *out) {
    out[threadIdx.x] = misalignment();
    __syncthreads();
    out[blockDim.x + threadIdx.x] = misalignment();
}

__device__ unsigned calls;
extern "C" __global__ void no_params() { atomicAdd(&calls, 1u); }

extern "C" __global__ void indices(unsigned *out) {
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    out[b * n + t] = (b << 16) | (t << 4) | (threadIdx.z << 2) | (blockIdx.z);
}
"#;

#[test]
fn atomics() {
    let m = module("params.cu", PARAMS);
    let (mut f, mut d, mut h) = (0.0f32, 0.0f64, 0u16);
    let (mut i, mut u, mut ull) = ([0i32, -1000, 0], [0u32; 2], [0u64; 2]);
    let ptrs = (&mut f as *mut f32, &mut d as *mut f64, &mut h as *mut u16);
    let ptrs2 = (i.as_mut_ptr(), u.as_mut_ptr(), ull.as_mut_ptr());
    launch(
        &m,
        "atomics",
        [4, 1, 1],
        [64, 1, 1],
        &mut [
            arg(&ptrs.0),
            arg(&ptrs.1),
            arg(&ptrs.2),
            arg(&ptrs2.0),
            arg(&ptrs2.1),
            arg(&ptrs2.2),
        ],
    );
    assert_eq!((f, d, h), (128.0, 64.0, 0x5c00)); // 256 in binary16
    assert_eq!(i, [256, -37, -100]);
    // CAS chain: block 0's threads 0..63 step u[1] to 64, which no later thread expects.
    assert_eq!(u, [63, 64]);
    assert_eq!(ull, [7, 512]);
}

#[test]
fn fiber_stacks_keep_the_abis_alignment() {
    let m = module("params.cu", PARAMS);
    let mut out = vec![u32::MAX; 2 * 32];
    let op = out.as_mut_ptr();
    launch(
        &m,
        "stack_alignment",
        [2, 1, 1],
        [32, 1, 1],
        &mut [arg(&op)],
    );
    assert!(out.iter().all(|&v| v == 0), "{out:?}");
}

/// `Mixed` in PARAMS: 32 bytes with C's padding.
#[repr(C)]
struct Mixed {
    a: i32,
    b: f64,
    c: i8,
    d: [f32; 3],
}

#[test]
fn parameters_unpack_by_the_kernels_types() {
    let m = module("params.cu", PARAMS);
    let s = Mixed {
        a: -7,
        b: 2.5,
        c: 65,
        d: [1.0, 2.0, 3.0],
    };
    let (i, z, f, d, u) = (-123i32, (1usize << 40) + 3, 0.25f32, -1e300f64, 65535u16);
    let h: u16 = 0x3e00; // 1.5 in binary16
    let pdata = [0.0f64, 42.0];
    let mut out = [0.0f64; 12];
    let (pp, op) = (pdata.as_ptr(), out.as_mut_ptr());
    let f_ = m.function("params_probe").unwrap();
    assert_eq!(m.param_count(f_), Some(9));
    launch(
        &m,
        "params_probe",
        [1, 1, 1],
        [1, 1, 1],
        &mut [
            arg(&s),
            arg(&i),
            arg(&z),
            arg(&pp),
            arg(&f),
            arg(&d),
            arg(&u),
            arg(&h),
            arg(&op),
        ],
    );
    assert_eq!(
        out,
        [
            -7.0,
            2.5,
            65.0,
            321.0,
            -123.0,
            ((1u64 << 40) + 3) as f64,
            42.0,
            0.25,
            -1e300,
            65535.0,
            1.5,
            std::mem::size_of::<Mixed>() as f64
        ]
    );
}

#[test]
fn three_dimensional_indices() {
    let m = module("params.cu", PARAMS);
    let (grid, block) = ([3u32, 2, 2], [4u32, 3, 2]);
    let (nb, nt) = (12usize, 24usize);
    let mut out = vec![u32::MAX; nb * nt];
    let op = out.as_mut_ptr();
    launch(&m, "indices", grid, block, &mut [arg(&op)]);
    for b in 0..nb {
        for t in 0..nt {
            let (tz, bz) = (t / 12, b / 6);
            assert_eq!(
                out[b * nt + t],
                ((b << 16) | (t << 4) | (tz << 2) | bz) as u32,
                "block {b} thread {t}"
            );
        }
    }
}

#[test]
fn bad_launches_and_images_are_errors() {
    let m = module("params.cu", PARAMS);
    let f = m.function("indices").unwrap();
    let mut out = 0u32;
    let op: *mut u32 = &mut out;
    let mut args = [arg(&op)];
    // SAFETY: refused before anything runs.
    let err = unsafe { m.launch(f, [1, 1, 1], [33, 32, 1], 0, args.as_mut_ptr()) }.unwrap_err();
    assert!(err.contains("1056 threads, more than 1024"), "{err}");
    // SAFETY: as above.
    let err = unsafe { m.launch(f, [0, 1, 1], [1, 1, 1], 0, args.as_mut_ptr()) }.unwrap_err();
    assert!(err.contains("empty launch"), "{err}");
    // SAFETY: as above.
    let err = unsafe { m.launch(f, [1, 1, 1], [1, 1, 1], 0, std::ptr::null_mut()) }.unwrap_err();
    assert!(
        err.contains("takes 1 parameters but kernelParams is null"),
        "{err}"
    );
    // a kernel without parameters may be given no kernelParams
    let f = m.function("no_params").unwrap();
    assert_eq!(m.param_count(f), Some(0));
    // SAFETY: the kernel reads no parameters.
    unsafe { m.launch(f, [2, 1, 1], [3, 1, 1], 0, std::ptr::null_mut()) }.unwrap();
    assert_eq!(last_launch().blocks, 2);
    let err =
        Module::load(b"//\n// Generated by NVIDIA NVVM Compiler\n.version 7.8\n.target sm_90\n\0")
            .err()
            .unwrap();
    assert!(err.contains("not a source image"), "{err}");
    let err = Module::load(
        source_image(
            "broken.cu",
            &[],
            "extern \"C\" __global__ void k(int *x) { x[0] = y; }\n",
        )
        .as_bytes(),
    )
    .err()
    .unwrap();
    assert!(
        err.contains("broken.cu:1:") && err.contains("'y' was not declared"),
        "{err}"
    );
}

#[test]
fn current_kernel_is_set_only_while_running() {
    assert_eq!(jit::current_kernel(), None);
    let m = module("params.cu", PARAMS);
    let mut out = vec![0u32; 1];
    let op = out.as_mut_ptr();
    launch(&m, "indices", [1, 1, 1], [1, 1, 1], &mut [arg(&op)]);
    assert_eq!(jit::current_kernel(), None);
}

/// This thread's CPU time (steadier than wall time on a shared machine).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The cost of a launch: an elementwise kernel over 2^20 elements, launched as the crate does
/// (256 threads a block, a block per 256 elements), and a barrier kernel (channel_sum). Prints
/// the numbers in CPU time (run with --nocapture); the bounds only catch a collapse.
#[test]
fn launch_cost() {
    let n = 1usize << 20;
    let a: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
    let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    let mut y = vec![0.0f32; n];
    let (ap, bp, yp) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr());
    let m = ours();
    let run = || {
        launch(
            m,
            "add_relu_f32",
            [(n / 256) as u32, 1, 1],
            [256, 1, 1],
            &mut [arg(&ap), arg(&bp), arg(&yp), arg(&n)],
        )
    };
    run();
    let reps = 10;
    let t = cpu_time();
    for _ in 0..reps {
        assert_eq!(run().waited, 0);
    }
    let elementwise = (cpu_time() - t) / reps;
    // The same work as a plain loop, for scale on a loaded machine.
    let mut y2 = vec![0.0f32; n];
    let t = cpu_time();
    for _ in 0..reps {
        for (y, (a, b)) in y2.iter_mut().zip(a.iter().zip(&b)) {
            *y = std::hint::black_box(a + b).max(0.0);
        }
    }
    let plain = (cpu_time() - t) / reps;
    assert!(
        y.iter()
            .zip(a.iter().zip(&b))
            .all(|(y, (a, b))| *y == (a + b).max(0.0))
    );

    // channel_sum over (B, O, P) = (32, 64, 256): 64 blocks, 9 barriers each.
    let (bs, o, p) = (32usize, 64usize, 256usize);
    let g = vec![1.0f32; bs * o * p];
    let mut db = vec![0.0f32; o];
    let (gp, dp) = (g.as_ptr(), db.as_mut_ptr());
    let (bb, oo, pp) = (bs as i32, o as i32, p as i32);
    let t = cpu_time();
    let stats = launch(
        m,
        "channel_sum_f32",
        [o as u32, 1, 1],
        [256, 1, 1],
        &mut [arg(&gp), arg(&dp), arg(&bb), arg(&oo), arg(&pp)],
    );
    let barrier = cpu_time() - t;
    assert!(db.iter().all(|&v| v == (bs * p) as f32));
    assert_eq!(stats.waited, (o * 256 * 9) as u64);
    // Barriers and nothing else: 64 blocks x 256 threads x 16 rounds.
    let bm = module("barriers.cu", BARRIERS);
    let rounds = 16i32;
    let t = cpu_time();
    let only = launch(
        &bm,
        "barriers_only",
        [64, 1, 1],
        [256, 1, 1],
        &mut [arg(&rounds)],
    );
    let pure = cpu_time() - t;
    assert_eq!(only.waited, 64 * 256 * 16);
    // A launch of one thread that does nothing: the fixed cost of a launch.
    let pm = module("params.cu", PARAMS);
    let f = pm.function("no_params").unwrap();
    let t = cpu_time();
    for _ in 0..10_000 {
        // SAFETY: the kernel reads no parameters.
        unsafe { pm.launch(f, [1, 1, 1], [1, 1, 1], 0, std::ptr::null_mut()) }.unwrap();
    }
    let empty = (cpu_time() - t) / 10_000;
    eprintln!(
        "launch cost (thread CPU time): add_relu_f32 over 2^20 elements (4096 blocks x 256 \
         threads, fast path): {:.2} ms, {:.1} ns a thread (the plain loop: {:.2} ms); \
         channel_sum_f32 64 blocks x 256 threads x 9 barriers: {:.2} ms; barriers alone: \
         {:.1} ns a thread-barrier ({} waits); an empty one-thread launch: {:.2} us",
        elementwise.as_secs_f64() * 1e3,
        elementwise.as_secs_f64() * 1e9 / n as f64,
        plain.as_secs_f64() * 1e3,
        barrier.as_secs_f64() * 1e3,
        pure.as_secs_f64() * 1e9 / only.waited as f64,
        only.waited,
        empty.as_secs_f64() * 1e6,
    );
    assert!(elementwise.as_secs_f64() < 1.0, "{elementwise:?}");
}
