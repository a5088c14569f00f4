#!/usr/bin/env bash
# Runs the crate's CUDA path on the CPU stand-in for the CUDA driver, cuBLAS and NVRTC
# (tools/cuda-emu): no GPU, no NVIDIA download. From the project root:
#
#   bash scripts/cuda-emu.sh [test] [smoke] [streams] [coverage]    (no argument: all, in order)
#
# - test: `cargo test --features cuda` of the test binaries in $CUDA_EMU_TESTS (default: all of
#   the root package's integration tests that use a device), each kernel module compiled for the
#   CPU by g++ the first time it is loaded (cached in target/cuda-emu/jit).
# - smoke: the lenet example's smoke run on `Cuda` (two short epochs; it exits non-zero unless
#   the loss falls).
# - streams: the tests in $CUDA_EMU_STREAM_TESTS again with CUDA_EMU_STREAMS=deferred: every
#   stream's work waits in its queue and independent streams run in a seeded random order
#   (CUDA_EMU_SEED, default 1), so a missing event or wait between streams changes the numbers
#   the tests compare with the CPU's.
# - coverage: fails unless every kernel in src/ops/cuda/mod.rs's KERNELS was launched by the
#   steps above (the stand-in's launch log).
# Exits 0 only when every step passed. Builds go to target/cuda-emu (their own target dir).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# Everything the stand-in builds and writes; CUDA_EMU_DIR moves it (e.g. a second checkout
# sharing one build of dfdx).
EMU=${CUDA_EMU_DIR:-$REPO/target/cuda-emu}
ROOT=$EMU/root
export CUDA_EMU_LOG=$EMU/launches.log CUDA_EMU_CACHE=$EMU/jit
log() { printf '\n== %s\n' "$*" >&2; }
# timed NAME CMD...: runs CMD, says how long it took, and returns its status
timed() { local name=$1 t0=$SECONDS rc=0; shift; "$@" || rc=$?; log "$name: $((SECONDS - t0)) s (exit $rc)"; return $rc; }

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(test smoke streams coverage)

log "stand-in: cargo build -p cuda-emu --release"
cargo build -q -p cuda-emu --release
mkdir -p "$ROOT/lib" "$ROOT/bin" "$EMU/jit"
cp -f target/release/libcuda_emu.so "$ROOT/lib/libcuda_emu.so"
for l in libcuda.so libcublas.so libcublasLt.so libnvrtc.so; do ln -sfn libcuda_emu.so "$ROOT/lib/$l"; done
ln -sfn "$REPO/tools/cuda-emu/include" "$ROOT/include"
for b in nvcc nvidia-smi; do ln -sfn "$REPO/tools/cuda-emu/bin/$b" "$ROOT/bin/$b"; done

export CUDA_ROOT=$ROOT PATH=$ROOT/bin:$PATH LD_LIBRARY_PATH=$ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CARGO_TARGET_DIR=$EMU/build
unset CUDA_PATH CUDA_TOOLKIT_ROOT_DIR
: >"$CUDA_EMU_LOG"
# dfdx's build script ran the stand-in's nvcc; when that changes, its output must be remade
# (cargo cannot know: nvcc is not among the files dfdx's build script watches).
stamp=$EMU/nvcc.md5
if ! md5sum tools/cuda-emu/bin/nvcc | cmp -s - "$stamp"; then
  cargo clean -q --release -p dfdx 2>/dev/null || true
  md5sum tools/cuda-emu/bin/nvcc >"$stamp"
fi

# The tests that run on a device (TestDevice = Cuda under the feature); macro_ui and
# layer_shape_errors run cargo themselves and use no device.
TESTS=${CUDA_EMU_TESTS:-ops batch_norm blocks empty_batch cuda_copies nn conv_transpose checkpoint train cuda_probe cuda_vs_cpu}
status=0
for s in "${steps[@]}"; do
  case $s in
    test)
      args=()
      for t in $TESTS; do args+=(--test "$t"); done
      log "test: cargo test --features cuda ${args[*]}"
      timed "test" cargo test --release --features cuda --no-fail-fast "${args[@]}" || status=1
      ;;
    smoke)
      log "smoke: lenet --smoke on Cuda"
      timed "smoke" cargo run --release --features cuda --example lenet -- --smoke --out "$EMU/smoke" || status=1
      ;;
    streams)
      args=()
      for t in ${CUDA_EMU_STREAM_TESTS:-ops batch_norm blocks cuda_copies nn cuda_vs_cpu}; do args+=(--test "$t"); done
      log "streams: cargo test --features cuda ${args[*]} with CUDA_EMU_STREAMS=deferred"
      CUDA_EMU_STREAMS=deferred CUDA_EMU_SEED=${CUDA_EMU_SEED:-1} \
        timed "streams" cargo test --release --features cuda --no-fail-fast "${args[@]}" || status=1
      ;;
    coverage)
      log "coverage: every kernel of src/ops/cuda/mod.rs launched"
      missing=$(sed -n '/^const KERNELS/,/^];/p' src/ops/cuda/mod.rs | grep -o '"[a-z0-9_]*"' | tr -d '"' |
        while read -r k; do grep -qxF "$k" "$CUDA_EMU_LOG" || echo "$k"; done)
      launched=$(sort -u "$CUDA_EMU_LOG" | wc -l)
      if [ -n "$missing" ]; then
        echo "never launched: $(echo $missing)" >&2
        status=1
      else
        echo "all of KERNELS launched ($launched distinct kernels in all, dfdx's included)"
      fi
      ;;
    *) echo "usage: $0 [test] [smoke] [streams] [coverage]" >&2; exit 2 ;;
  esac
done
exit $status
