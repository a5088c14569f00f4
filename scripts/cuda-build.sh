#!/usr/bin/env bash
# Builds `--features cuda` test binaries and examples on a machine with NO GPU and NO CUDA
# installed, and packs them into `.gpu/` (git-ignored through .git/info/exclude) with a `run.sh`
# that runs them on a GPU machine that has no cargo and no network (CUDA 13, driver 580,
# PyTorch's nvidia-* cu13 wheels). See ../shared/CUDA-BUILD.md for why each piece is needed.
#
#   scripts/cuda-build.sh [toolkit] [libs] [build] [pack]     (no argument: all four, in order)
#
# - toolkit: Debian 12's nvidia-cuda-toolkit 11.8 (non-free) through a private apt set-up, unpacked
#   without its static libraries into $CACHE/toolkit; an nvcc wrapper with its own nvcc.profile,
#   and an nvidia-smi stand-in answering compute_cap 9.0 (dfdx's build script asks it), in $CACHE/bin.
# - libs: CUDA 13's libcublas/libcublasLt/libnvrtc from PyPI's cu13 wheels into $CACHE/cu13, and
#   $CACHE/root (= CUDA_ROOT: include/ from the toolkit, lib/ with unversioned links to the .so.13
#   files and to the toolkit's libcuda stub), so the binaries ask for the .so.13 names.
# - build: `cargo test --release --features cuda --workspace --no-run` and
#   `cargo build --release --features cuda --examples`, into $CARGO_TARGET_DIR
#   (default: <repo>/target/cuda).
# - pack: strips the executables into .gpu/ (a tar.xz when over $PACK_LIMIT_MB uncompressed),
#   with the Fashion-MNIST files (.gpu/data), the PyTorch benches of ../shared/bench (.gpu/bench;
#   bench/torch_resnet18.py is tracked and travels with the tree) and .gpu/run.sh. The device
#   tool carries .gpu (`carry: [".gpu"]`, 64 MiB at most): pack fails if it is larger.
#
# On the GPU machine, in one call of under 8 minutes (run.sh keeps to a deadline):
#   bash .gpu/run.sh        # tests, lenet smoke, ResNet-18 epoch vs PyTorch, bench vs PyTorch, lenet
# With the device tool: run(command="bash .gpu/run.sh", carry=[".gpu"], timeout_s=540); the logs
# come back under files_at (summary.txt first).
#
# Idempotent: each step skips what is already there. Caches live in $CNN_CUDA_CACHE
# (default ~/.cache/cnn-cuda, about 1 GB of downloads and 1 GB unpacked).
set -euo pipefail

REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
CACHE=${CNN_CUDA_CACHE:-$HOME/.cache/cnn-cuda}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/cuda}
GPU=$REPO/.gpu
PACK_LIMIT_MB=${PACK_LIMIT_MB:-50}
# What the device tool carries at most (all of .gpu).
CARRY_LIMIT_MB=${CARRY_LIMIT_MB:-64}
# Versions of PyPI's CUDA 13 wheels to link against: the oldest 13.x, since a binary linked
# against 13.0 runs with any later 13.x (the symbols are versioned by soname only).
CUBLAS_VERSION=${CUBLAS_VERSION:-13.0.0.19}
NVRTC_VERSION=${NVRTC_VERSION:-13.0.48}

TK=$CACHE/toolkit
NVCC_DIR=$TK/usr/lib/nvidia-cuda-toolkit/bin
ROOT=$CACHE/root

log() { printf '\n== %s\n' "$*" >&2; }
timed() { # timed NAME CMD...: runs CMD, prints how long it took
  local name=$1 t0=$SECONDS
  shift
  "$@"
  log "$name: $((SECONDS - t0)) s"
}

step_toolkit() {
  local apt=$CACHE/apt debs=$CACHE/debs
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$debs" "$CACHE/bin"
  if ! ls "$debs"/nvidia-cuda-toolkit_*.deb "$debs"/nvidia-cuda-dev_*.deb "$debs"/libnvvm4_*.deb \
    >/dev/null 2>&1; then
    log "toolkit: downloading Debian's nvidia-cuda-toolkit 11.8 (about 870 MB)"
    # A private sources list with non-free; the system's apt set-up is left as it is.
    . /etc/os-release
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
      "http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} main contrib non-free" \
      >"$apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    apt-get "${o[@]}" -qq update
    (cd "$debs" && apt-get "${o[@]}" -qq download nvidia-cuda-toolkit nvidia-cuda-dev libnvvm4)
  fi
  if [ ! -e "$TK/.unpacked" ]; then
    log "toolkit: unpacking into $TK (static libraries left out)"
    rm -rf "$TK" && mkdir -p "$TK"
    for d in "$debs"/*.deb; do
      dpkg-deb --fsys-tarfile "$d" | tar -x -C "$TK" --exclude='*.a' --exclude='./usr/share/doc*'
    done
    touch "$TK/.unpacked"
  fi
  # nvcc reads nvcc.profile beside its own binary; Debian's is a link to /etc/nvcc.profile, with
  # absolute paths: replace it by one that points into the unpacked tree.
  rm -f "$NVCC_DIR/nvcc.profile"
  cat >"$NVCC_DIR/nvcc.profile" <<EOF
TOP = $TK
NVVMIR_LIBRARY_DIR = \$(TOP)/usr/lib/nvidia-cuda-toolkit/libdevice
PATH += \$(TOP)/usr/lib/nvidia-cuda-toolkit/bin:\$(TOP)/usr/bin:
INCLUDES += "-I\$(TOP)/usr/include" \$(_SPACE_)
LIBRARIES =+ \$(_SPACE_) "-L\$(TOP)/usr/lib/x86_64-linux-gnu/stubs" "-L\$(TOP)/usr/lib/x86_64-linux-gnu"
EOF
  # A wrapper (not a link), so that nvcc's argv[0] is the real binary beside its profile.
  # nvcc 11.8 does not know gcc 12: name the host compiler and let it through.
  cat >"$CACHE/bin/nvcc" <<EOF
#!/bin/sh
export NVCC_PREPEND_FLAGS="-ccbin /usr/bin/g++ -allow-unsupported-compiler \${NVCC_PREPEND_FLAGS:-}"
exec "$NVCC_DIR/nvcc" "\$@"
EOF
  # dfdx's build script asks nvidia-smi for the compute capability (even with CUDA_COMPUTE_CAP
  # set); the GPU machines are H100/H200: 9.0.
  cat >"$CACHE/bin/nvidia-smi" <<'EOF'
#!/bin/sh
# Stand-in for a machine with no GPU: answers what dfdx's build script asks.
echo compute_cap
echo 9.0
EOF
  chmod +x "$CACHE/bin/nvcc" "$CACHE/bin/nvidia-smi"
  "$CACHE/bin/nvcc" --version | tail -2
}

step_libs() {
  local wheels=$CACHE/wheels cu13=$CACHE/cu13
  mkdir -p "$wheels" "$cu13" "$ROOT/lib"
  if ! ls "$wheels"/nvidia_cublas-"$CUBLAS_VERSION"-*.whl "$wheels"/nvidia_cuda_nvrtc-"$NVRTC_VERSION"-*.whl \
    >/dev/null 2>&1; then
    log "libs: downloading nvidia-cublas $CUBLAS_VERSION and nvidia-cuda-nvrtc $NVRTC_VERSION (about 510 MB)"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$wheels" \
      "nvidia-cublas==$CUBLAS_VERSION" "nvidia-cuda-nvrtc==$NVRTC_VERSION"
  fi
  local lib
  for lib in libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13; do
    if [ ! -e "$cu13/$lib" ]; then
      local whl
      for whl in "$wheels"/*.whl; do
        if unzip -l "$whl" "nvidia/cu13/lib/$lib" >/dev/null 2>&1; then
          unzip -q -o -j "$whl" "nvidia/cu13/lib/$lib" -d "$cu13"
        fi
      done
    fi
    [ -e "$cu13/$lib" ] || { echo "libs: $lib is in none of the wheels in $wheels" >&2; exit 1; }
    ln -sfn "$cu13/$lib" "$ROOT/lib/${lib%.13}"
  done
  # libcuda comes with the driver: link against the toolkit's stub (soname libcuda.so.1).
  ln -sfn "$TK/usr/lib/x86_64-linux-gnu/stubs/libcuda.so" "$ROOT/lib/libcuda.so"
  # cudarc's and dfdx's build scripts look for CUDA_ROOT/include/cuda.h; dfdx bakes
  # CUDA_ROOT/include into the binaries for its run-time NVRTC kernels (run.sh makes it exist).
  ln -sfn "$TK/usr/include" "$ROOT/include"
  ls -l "$ROOT/lib"
}

cuda_env() {
  export PATH=$CACHE/bin:$PATH CUDA_ROOT=$ROOT
  unset CUDA_PATH CUDA_TOOLKIT_ROOT_DIR CUDNN_LIB
}

step_build() {
  cuda_env
  mkdir -p "$CARGO_TARGET_DIR"
  cd "$REPO"
  local jq_exe='select(.reason == "compiler-artifact" and .executable != null)
    | [.executable, .target.name, (.target.kind | join(",")), (.manifest_path | sub("/Cargo.toml$"; "")), (if .profile.test then "test" else "bin" end)]
    | @tsv'
  log "build: cargo test --release --features cuda --workspace --no-run"
  timed "cargo test --no-run" cargo test --release --features cuda --workspace --no-run \
    --message-format=json-render-diagnostics >"$CARGO_TARGET_DIR/cuda-tests.json"
  log "build: cargo build --release --features cuda --examples"
  timed "cargo build --examples" cargo build --release --features cuda --examples \
    --message-format=json-render-diagnostics >"$CARGO_TARGET_DIR/cuda-examples.json"
  cat "$CARGO_TARGET_DIR/cuda-tests.json" "$CARGO_TARGET_DIR/cuda-examples.json" \
    | jq -r "$jq_exe" | sort -u >"$CARGO_TARGET_DIR/cuda-executables.tsv"
  cat "$CARGO_TARGET_DIR/cuda-executables.tsv"
}

step_pack() {
  local list=$CARGO_TARGET_DIR/cuda-executables.tsv stage=$CARGO_TARGET_DIR/cuda-stage
  [ -s "$list" ] || { echo "pack: no $list; run the build step first" >&2; exit 1; }
  # .gpu/ is ignored through .git/info/exclude (of the main checkout, for worktrees too).
  local exclude
  exclude=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)/info/exclude
  mkdir -p "$(dirname "$exclude")"
  grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
  rm -rf "$stage" "$GPU"
  mkdir -p "$stage/tests" "$stage/examples" "$GPU"
  # manifest.tsv: file (under bin/), the folder cargo would run it in (the package's, relative
  # to the repo), the target's name and kinds.
  local exe name kind dir mode rel file
  while IFS=$'\t' read -r exe name kind dir mode; do
    rel=${dir#"$REPO"}
    rel=${rel#/}
    [ -n "$rel" ] || rel=.
    if [ "$mode" = test ]; then
      file=tests/${kind//,/+}-$name
    else
      file=examples/$name
    fi
    strip --strip-all -o "$stage/$file" "$exe"
    printf '%s\t%s\t%s\t%s\n' "$file" "$rel" "$name" "$kind" >>"$stage/manifest.tsv"
  done <"$list"
  # Where dfdx looks for CUDA headers when it compiles kernels with NVRTC at run time.
  echo "$ROOT/include" >"$stage/cuda-include-dir"
  # Where the tests look for their files: env!("CARGO_MANIFEST_DIR") is this checkout's path,
  # baked in at build time; run.sh links it to the repo on the GPU machine.
  echo "$REPO" >"$stage/build-root"
  grep -qaF "$ROOT/include" "$stage/examples/lenet" ||
    echo "pack: warning: $ROOT/include is not baked into lenet (did CUDA_ROOT change?)" >&2
  # What the binaries ask the dynamic linker for.
  for exe in "$stage"/tests/* "$stage"/examples/*; do
    readelf -d "$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
  done | sort | uniq -c >"$stage/needed.txt"
  # The proc-macro crate's unit tests link Rust's libstd dynamically: carry it.
  if grep -q ' libstd-' "$stage/needed.txt"; then
    mkdir -p "$stage/lib"
    cp "$(rustc --print target-libdir)"/libstd-*.so "$stage/lib/"
  fi
  log "pack: libraries the binaries need (count, name)"
  cat "$stage/needed.txt"
  if grep -q '\.so\.11\|\.so\.10' "$stage/needed.txt"; then
    echo "pack: a binary asks for a CUDA 11 library; the GPU machine has only CUDA 13's" >&2
    exit 1
  fi
  local size_mb
  size_mb=$(du -sm "$stage" | cut -f1)
  log "pack: executables $(find "$stage/tests" "$stage/examples" -type f | wc -l), $size_mb MiB stripped"
  if [ "$size_mb" -gt "$PACK_LIMIT_MB" ]; then
    # One stream with a dictionary larger than the whole tar: the binaries share most of their
    # bytes (the crate, dfdx, its PTX), so each after the first costs little.
    timed "tar.xz" sh -c 'tar -C "$1" -cf - . | xz -T1 --lzma2=preset=6,dict=256MiB >"$2"' \
      sh "$stage" "$GPU/bin.tar.xz"
  else
    cp -a "$stage" "$GPU/bin"
  fi
  # The data: the GPU machines have no Debian package and no network.
  local data=""
  for d in ${CNN_DATA:-} /usr/share/datasets/fashion-mnist "$HOME/.cache/cnn/fashion-mnist"; do
    if [ -e "$d/t10k-labels-idx1-ubyte.gz" ]; then data=$d && break; fi
  done
  if [ -z "$data" ]; then
    "$REPO/scripts/install-data.sh"
    data=/usr/share/datasets/fashion-mnist
  fi
  mkdir -p "$GPU/data" "$GPU/bench"
  cp "$data"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$GPU/data/"
  # PyTorch's side of the bench lives in ../shared, which does not travel.
  cp "$REPO/../shared/bench/torch_lenet.py" "$REPO/../shared/bench/torch_modern.py" "$GPU/bench/"
  write_run_sh >"$GPU/run.sh"
  chmod +x "$GPU/run.sh"
  log "pack: $GPU"
  du -ab "$GPU" | sort -k2 | awk '{printf "%10.1f MiB  %s\n", $1 / 1048576, $2}'
  local total
  total=$(du -sm "$GPU" | cut -f1)
  if [ "$total" -gt "$CARRY_LIMIT_MB" ]; then
    echo "pack: .gpu is $total MiB, over the $CARRY_LIMIT_MB MiB the device tool carries" >&2
    exit 1
  fi
}

write_run_sh() {
  cat <<'EOF'
#!/usr/bin/env bash
# Runs the `--features cuda` test binaries and examples that scripts/cuda-build.sh packed, and
# PyTorch's side of each comparison, on the GPU machine (no cargo, no network), from the repo
# root, in one call:
#
#   bash .gpu/run.sh [probe] [tests] [smoke] [resnet18] [bench] [lenet]     (no argument: all six)
#
# First it prints the driver's CUDA version (cuDriverGetVersion) and NVRTC's (nvrtcVersion): a
# driver older than NVRTC cannot JIT NVRTC's PTX (src/ops/cuda/load.rs).
# Phases run in that order (the order of what matters most) against one deadline, DEADLINE
# seconds after the start (default 450: the call must end within 8 minutes); each step's time
# limit is cut to what is left, and a step with under 20 s left is skipped, saying so.
# - probe: tests/cuda_probe.rs (seconds): builds the device, loads the crate's kernels and says
#   how (CUBIN or PTX), and what a 0-byte allocation and a 0-block launch return. If it fails,
#   nothing else can work: run.sh stops there (FORCE=1 goes on).
# - tests: every other test binary (but the two that run cargo), each in turn.
# - smoke: `lenet --smoke` (two epochs on 12,000 images; fails unless the loss falls).
# - resnet18: one epoch of d2l's ResNet-18 at 96x96, ours (`resnet --resnet18 --epochs 1`) then
#   PyTorch's (bench/torch_resnet18.py --device cuda), same data, same GPU.
# - bench: `bench --json`, then ../shared/bench's torch_lenet.py and torch_modern.py with
#   --device cuda: the same cases, in images per second.
# - lenet: the full 10-epoch d2l LeNet run (its accuracy, to set beside the CPU's).
# Everything printed goes to $OUT (or .gpu/out): summary.txt, then one log per step. Exits
# non-zero if anything failed.
set -uo pipefail
START=$SECONDS
DEADLINE=${DEADLINE:-450}
REPO=$(pwd)
G=$REPO/.gpu
[ -e "$G/run.sh" ] || { echo "run.sh: run me from the repo root (no $G/run.sh)" >&2; exit 2; }
OUT=${OUT:-$G/out}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
status=0
left() { echo $((DEADLINE - (SECONDS - START))); }
# limit CAP: a step's time limit, CAP or what is left before the deadline
limit() { local l; l=$(left); if [ "$1" -lt "$l" ]; then echo "$1"; else echo "$l"; fi; }

# The binaries: unpacked into /tmp once.
B=$G/bin
if [ -e "$G/bin.tar.xz" ]; then
  B=/tmp/cnn-gpu-bin
  if [ ! -e "$B/manifest.tsv" ] || [ "$G/bin.tar.xz" -nt "$B/manifest.tsv" ]; then
    rm -rf "$B" && mkdir -p "$B"
    tar -C "$B" -xJf "$G/bin.tar.xz" 2>/dev/null ||
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$G/bin.tar.xz" "$B" ||
      { note "FAIL unpack $G/bin.tar.xz"; exit 1; }
  fi
fi
chmod +x "$B"/tests/* "$B"/examples/* 2>/dev/null
note "unpacked in $((SECONDS - START)) s"

# CUDA 13's libcublas/libcublasLt/libnvrtc: the nvidia-* wheels in PyTorch's venv.
PY=python3
[ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
libdirs=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
if [ -z "$libdirs" ]; then
  libdirs=$($PY - <<'PY' 2>/dev/null
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for p in dirs for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))})))
PY
)
fi
export LD_LIBRARY_PATH=$B/lib:${libdirs%:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
note "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# The driver's CUDA version and NVRTC's, before anything else can fail on them.
$PY - <<'PY' 2>&1 | tee -a "$SUMMARY"
import ctypes
def loaded(name):
    with open("/proc/self/maps") as maps:
        return next((l.split()[-1] for l in maps if name in l), "?")
driver = nvrtc = None
try:
    v = ctypes.c_int()
    r = ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v))
    driver = (v.value // 1000, v.value % 1000 // 10)
    print(f"driver: CUDA {driver[0]}.{driver[1]} (cuDriverGetVersion {v.value}, result {r}; {loaded('libcuda.so')})")
except OSError as e:
    print(f"driver: no libcuda.so.1 ({e})")
try:
    a, b = ctypes.c_int(), ctypes.c_int()
    r = ctypes.CDLL("libnvrtc.so.13").nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
    nvrtc = (a.value, b.value)
    print(f"NVRTC {a.value}.{b.value} (result {r}; {loaded('libnvrtc.so')})")
except OSError as e:
    print(f"NVRTC: no libnvrtc.so.13 ({e})")
if driver and nvrtc and nvrtc > driver:
    print(f"note: NVRTC {nvrtc[0]}.{nvrtc[1]} is newer than the driver's CUDA {driver[0]}.{driver[1]}: "
          "its PTX would not load here; the crate loads a CUBIN, and says so if it falls back")
PY

# dfdx compiles a few kernels with NVRTC at run time (to_dtype, concat, stack, reshape of a
# non-contiguous tensor), with the include folder of the build machine baked in: make it exist.
inc=$(cat "$B/cuda-include-dir")
if [ ! -e "$inc/cuda_fp16.h" ]; then
  for cand in /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include \
    /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/include \
    /opt/torch/.venv/lib/python3*/site-packages/nvidia/cuda_runtime/include; do
    if [ -e "$cand/cuda_fp16.h" ]; then
      mkdir -p "$(dirname "$inc")" && rm -rf "$inc" && ln -s "$cand" "$inc" && break
    fi
  done
fi
if [ -e "$inc/cuda_fp16.h" ]; then note "CUDA headers for NVRTC: $inc -> $(readlink -f "$inc")"
else note "warning: no CUDA headers at $inc (NVRTC kernels that include them will fail)"; fi
# The tests find their files under the build machine's checkout path (CARGO_MANIFEST_DIR).
root=$(cat "$B/build-root")
if [ "$root" != "$REPO" ] && [ ! -e "$root" ]; then
  mkdir -p "$(dirname "$root")" && ln -s "$REPO" "$root" && note "linked $root -> $REPO"
fi

nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
ldd "$B/examples/lenet" | grep -E 'cublas|nvrtc|cuda' | tee -a "$SUMMARY"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tee -a "$SUMMARY"

export RUST_BACKTRACE=1 CNN_DATA=$G/data
phases=" $* "
on() { [ "$phases" = "  " ] || [[ "$phases" == *" $1 "* ]]; }

# step LOG CAP CMD...: runs CMD in the repo root into $OUT/LOG within its time limit, and
# notes the result with the last line it printed.
step() {
  local log=$1 cap=$2 t0=$SECONDS lim rc
  shift 2
  lim=$(limit "$cap")
  if [ "$lim" -lt 20 ]; then note "SKIP $log: $(left) s left before the deadline"; status=1; return; fi
  (cd "$REPO" && timeout "$lim" "$@") >"$OUT/$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then note "ok   $log ($((SECONDS - t0)) s): $(tail -1 "$OUT/$log")"; else
    note "FAIL $log (exit $rc$([ $rc -eq 124 ] && echo ", timed out at $lim s"), $((SECONDS - t0)) s): $(tail -1 "$OUT/$log")"
    status=1
  fi
}

if on probe; then
  probe=$(awk -F'\t' '$3 == "cuda_probe" { print $1 }' "$B/manifest.tsv")
  if [ -z "$probe" ]; then
    note "FAIL probe: no cuda_probe test binary in $B/manifest.tsv"
    status=1
  else
    step probe.log 60 "$B/$probe" --nocapture
    grep -a '^probe:' "$OUT/probe.log" | tee -a "$SUMMARY"
    if ! grep -aq '^test result: ok' "$OUT/probe.log" && [ -z "${FORCE:-}" ]; then
      note "probe failed: the crate's kernels cannot run here, so nothing after it can; stopping (FORCE=1 goes on)"
      note "status 1, $((SECONDS - START)) s"
      exit 1
    fi
  fi
fi
if on tests; then
  t_all=$SECONDS
  while IFS=$'\t' read -r file dir name kind; do
    case $name in
      # They run cargo (trybuild, and `cargo build` of small crates): no cargo here.
      macro_ui | layer_shape_errors) note "SKIP $file (needs cargo)"; continue ;;
      # It ran first, in the probe phase.
      cuda_probe) continue ;;
    esac
    # The training examples and the bench run in their own phases below.
    case $file in examples/lenet | examples/resnet | examples/bench) continue ;; esac
    step "test-${file##*/}.log" "${TEST_TIMEOUT:-150}" "$B/$file" ${TEST_ARGS:-}
    grep -a '^test result:' "$OUT/test-${file##*/}.log" | tail -1 | sed 's/^/     /' | tee -a "$SUMMARY"
  done <"$B/manifest.tsv"
  note "tests: $((SECONDS - t_all)) s"
  # What one training step copies between host and device (tests/cuda_copies.rs).
  grep -ah 'one training step' "$OUT"/test-*cuda_copies*.log 2>/dev/null | tee -a "$SUMMARY"
fi
if on smoke; then
  step lenet-smoke.log 90 "$B/examples/lenet" --smoke --data "$G/data" --out /tmp/cnn-runs/smoke
fi
if on resnet18; then
  step resnet18.log 180 "$B/examples/resnet" --resnet18 --epochs 1 --data "$G/data" --out /tmp/cnn-runs/resnet18
  grep -a 'resized\|epochs in\|test acc' "$OUT/resnet18.log" | tail -3 | tee -a "$SUMMARY"
  step torch-resnet18.log 120 "$PY" bench/torch_resnet18.py --device cuda --data "$G/data"
fi
if on bench; then
  step bench.log 150 "$B/examples/bench" --json
  step torch-lenet.log 60 "$PY" "$G/bench/torch_lenet.py" --device cuda
  step torch-modern.log 60 "$PY" "$G/bench/torch_modern.py" --device cuda
  cat "$OUT/bench.log" "$OUT/torch-lenet.log" "$OUT/torch-modern.log" 2>/dev/null | grep -a '"case"' | tee -a "$SUMMARY"
fi
if on lenet; then
  step lenet.log 120 "$B/examples/lenet" --data "$G/data" --out /tmp/cnn-runs/full
  cp /tmp/cnn-runs/full/*.png "$OUT/" 2>/dev/null
fi
note "status $status, $((SECONDS - START)) s"
exit $status
EOF
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(toolkit libs build pack)
for s in "${steps[@]}"; do
  case $s in
    toolkit | libs | build | pack) timed "step $s" "step_$s" ;;
    *) echo "usage: $0 [toolkit] [libs] [build] [pack]" >&2; exit 2 ;;
  esac
done
