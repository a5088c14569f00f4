"""Compiles src/ops/cuda/kernels.cu with NVRTC, as the crate does at run time on a GPU machine,
and prints NVRTC's log: a syntax or type error in a kernel shows here, on a machine without a
GPU. NVRTC comes from PyPI's wheel (PyTorch's CUDA build installs it, e.g. into
~/.cache/cnn-bench/venv by ../shared/bench/compare.sh).

    ~/.cache/cnn-bench/venv/bin/python scripts/nvrtc-check.py
"""
import ctypes, glob, pathlib, sys

lib = sorted(glob.glob(str(pathlib.Path(sys.prefix) / "lib/python3*/site-packages/nvidia/*/lib/libnvrtc.so.*")))
lib = [l for l in lib if "builtins" not in l]
if not lib:
    sys.exit("no libnvrtc in this Python environment (pip install nvidia-cuda-nvrtc)")
nvrtc = ctypes.CDLL(lib[0])
src = (pathlib.Path(__file__).parent.parent / "src/ops/cuda/kernels.cu").read_bytes()
prog = ctypes.c_void_p()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"kernels.cu", 0, None, None) == 0
result = nvrtc.nvrtcCompileProgram(prog, 0, None)
size = ctypes.c_size_t()
nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetProgramLog(prog, log)
print(f"{lib[0]}: result {result}")
print(log.value.decode() or "(empty log)")
sys.exit(result)
