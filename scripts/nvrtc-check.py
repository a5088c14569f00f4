#!/usr/bin/env python3
"""Static checks of the crate's device kernels, on a machine with no GPU (a CI step).

Compiles src/ops/cuda/kernels.cu with NVRTC as the crate does at run time (src/ops/cuda/load.rs):
once with no options, as its PTX fallback does (cudarc's compile_ptx), and once for sm_90, as its
CUBIN path does on an H100/H200 (plus --ptxas-options=-v, which only adds ptxas's report to the
log). Then it checks, and exits 1 if any rule is broken (every broken rule is listed):

  ptx-version  the PTX's `.version` is at most MAX_PTX, the newest the target driver JIT-compiles
               (a newer NVRTC writes a newer version, which that driver refuses with
               CUDA_ERROR_UNSUPPORTED_PTX_VERSION: the crate's fallback would fail).
  entries      the PTX's `.entry` names are exactly KERNELS of src/ops/cuda/mod.rs (what the crate
               asks the driver for when it loads the module).
  structs      each struct a kernel takes by value is laid out alike on both sides: NVRTC's
               `.param .align A .b8 NAME[N]` has the size N and alignment A that the Rust
               compiler gives the `#[repr(C)]` struct of the same name, and the struct's fields in
               kernels.cu have the Rust fields' names, order and types. The Rust side comes from
               the Rust compiler: src/ops/cuda/abi.rs defines the structs and a table of their
               `size_of`, `align_of` and `offset_of` (generated from the definitions by one macro);
               this script compiles that file alone with rustc (about a second; it uses nothing
               from the crate) into a program that prints the table. So no size is written here,
               and no cargo build is needed.
  resources    per kernel (ptxas's report for ARCH): 0 bytes of stack, no spills, registers x
               BLOCK (the crate's threads per block, src/ops/cuda/mod.rs) <= 65536 (the registers
               of an SM: else the launch fails), static shared memory <= 48 KiB. A table is printed.

NVRTC comes from PyPI (nvidia-cuda-nvrtc, the CUDA 13 wheel), installed on first use into
$CNN_NVRTC_CACHE/nvrtc-<version> with this Python's pip (about 90 MB to download, 110 MB kept;
later runs reuse it). rustc must be on PATH.

    python3 scripts/nvrtc-check.py

Environment:
  MAX_PTX=9.0          newest PTX ISA the target driver loads: 9.0 is CUDA 13.0 (driver 580),
                       the GPU machines'; 9.1 is 13.1, 9.2 is 13.2.
  NVRTC_VERSION        the nvidia-cuda-nvrtc version to install (default: NVRTC_VERSION of
                       scripts/cuda-build.sh, the NVRTC the CUDA binaries are linked against).
  NVRTC_LIB            a libnvrtc.so to use instead (no install), e.g. a PyTorch venv's.
  CNN_NVRTC_CACHE      default ~/.cache/cnn-nvrtc.
  ARCH=sm_90           the architecture of the resource check (H100, H200).
"""
import ctypes
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
KERNELS_CU = REPO / "src/ops/cuda/kernels.cu"
MOD_RS = REPO / "src/ops/cuda/mod.rs"
ABI_RS = REPO / "src/ops/cuda/abi.rs"
CUDA_BUILD = REPO / "scripts/cuda-build.sh"

# What an SM of sm_90 offers one block: registers (64 K), and static shared memory without the
# opt-in for more (48 KiB).
REGISTERS_PER_SM = 65536
STATIC_SMEM_MAX = 48 * 1024

# kernels.cu's field types and the Rust types abi.rs must give them.
C_TO_RUST = {
    "int": "i32",
    "unsigned": "u32",
    "unsigned int": "u32",
    "float": "f32",
    "double": "f64",
    "long long": "i64",
    "unsigned long long": "u64",
    "size_t": "usize",
}


def fail(msg):
    sys.exit(f"nvrtc-check: {msg}")


def version_tuple(s):
    return tuple(int(p) for p in s.split("."))


# ---- NVRTC: installed from PyPI once, loaded with ctypes ----


def nvrtc_version_wanted():
    if os.environ.get("NVRTC_VERSION"):
        return os.environ["NVRTC_VERSION"]
    m = re.search(r"^NVRTC_VERSION=\$\{NVRTC_VERSION:-([\d.]+)\}", CUDA_BUILD.read_text(), re.M)
    if not m:
        fail(f"no NVRTC_VERSION default in {CUDA_BUILD}; set NVRTC_VERSION")
    return m.group(1)


def install_nvrtc():
    """The folder of libnvrtc.so.*, installed from PyPI unless it is there already."""
    version = nvrtc_version_wanted()
    cache = pathlib.Path(os.environ.get("CNN_NVRTC_CACHE") or pathlib.Path.home() / ".cache/cnn-nvrtc")
    target = cache / f"nvrtc-{version}"
    if not (target / ".complete").exists():
        t0 = time.monotonic()
        print(f"nvrtc-check: installing nvidia-cuda-nvrtc=={version} into {target}", flush=True)
        partial = cache / f"nvrtc-{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--target", str(partial),
             f"nvidia-cuda-nvrtc=={version}"],
            check=True,
            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
        )
        # The wheel carries a second build of each library (.alt., for a different C++ ABI):
        # not needed here.
        for alt in partial.glob("nvidia/*/lib/*.alt.so*"):
            alt.unlink()
        (partial / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        print(f"nvrtc-check: installed in {time.monotonic() - t0:.0f} s", flush=True)
    libs = sorted(target.glob("nvidia/*/lib/libnvrtc.so.*"))
    if not libs:
        fail(f"no libnvrtc.so.* in {target}")
    return libs[0]


def load_nvrtc():
    lib = pathlib.Path(os.environ["NVRTC_LIB"]) if os.environ.get("NVRTC_LIB") else install_nvrtc()
    # libnvrtc opens its builtins library by name at compile time: load it first, globally, from
    # the same folder (a pip install is on no library path).
    for builtins in sorted(lib.parent.glob("libnvrtc-builtins.so.*")):
        if ".alt." not in builtins.name:
            ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    nvrtc = ctypes.CDLL(str(lib))
    major, minor = ctypes.c_int(), ctypes.c_int()
    if nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
        fail(f"nvrtcVersion failed ({lib})")
    return nvrtc, f"{major.value}.{minor.value}", lib


class Compiled:
    """One NVRTC compile of kernels.cu: its log, PTX and CUBIN (None where NVRTC has none)."""

    def __init__(self, nvrtc, options):
        self.options = options
        t0 = time.monotonic()
        prog = ctypes.c_void_p()
        src = KERNELS_CU.read_bytes()
        if nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"kernels.cu", 0, None, None) != 0:
            fail("nvrtcCreateProgram failed")
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        self.result = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        self.log = self._get(nvrtc, prog, "ProgramLogSize", "ProgramLog").decode(errors="replace").rstrip("\0")
        ptx = self._get(nvrtc, prog, "PTXSize", "PTX") if self.result == 0 else None
        self.ptx = ptx.decode().rstrip("\0") if ptx else None
        self.cubin = self._get(nvrtc, prog, "CUBINSize", "CUBIN") if self.result == 0 else None
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
        self.seconds = time.monotonic() - t0
        if self.result != 0:
            fail(f"NVRTC could not compile kernels.cu with {options} (nvrtcResult {self.result}):\n{self.log}")

    @staticmethod
    def _get(nvrtc, prog, size_fn, get_fn):
        size = ctypes.c_size_t()
        if getattr(nvrtc, f"nvrtcGet{size_fn}")(prog, ctypes.byref(size)) != 0 or size.value == 0:
            return None
        buf = ctypes.create_string_buffer(size.value)
        if getattr(nvrtc, f"nvrtcGet{get_fn}")(prog, buf) != 0:
            return None
        return buf.raw


# ---- The crate's side ----


def rust_kernels():
    m = re.search(r"const KERNELS: &\[&str\] = &\[(.*?)\];", MOD_RS.read_text(), re.S)
    if not m:
        fail(f"no `const KERNELS: &[&str] = &[...];` in {MOD_RS}")
    return re.findall(r'"(\w+)"', m.group(1))


def rust_block():
    m = re.search(r"const BLOCK: u32 = (\d+);", MOD_RS.read_text())
    if not m:
        fail(f"no `const BLOCK: u32 = N;` in {MOD_RS}")
    return int(m.group(1))


PROBE = """\
#[path = {abi}]
mod abi;

fn main() {{
    for l in abi::LAYOUTS {{
        println!("struct {{}} {{}} {{}}", l.name, l.size, l.align);
        for (field, ty, offset) in l.fields {{
            println!("field {{}} {{}} {{}} {{}}", l.name, field, ty, offset);
        }}
    }}
}}
"""


def rust_layouts():
    """abi.rs's LAYOUTS, from a program that rustc compiles from it: {name: (size, align,
    [(field, type, offset)])}."""
    rustc = shutil.which("rustc") or fail("no rustc on PATH")
    with tempfile.TemporaryDirectory(prefix="nvrtc-check-") as tmp:
        main = pathlib.Path(tmp) / "main.rs"
        main.write_text(PROBE.format(abi='"' + str(ABI_RS).replace("\\", "\\\\") + '"'))
        exe = pathlib.Path(tmp) / "abi-probe"
        # From the repo root, so that rustup picks the crate's toolchain.
        build = subprocess.run(
            [rustc, "--edition", "2024", "--cap-lints", "allow", "-o", str(exe), str(main)],
            cwd=REPO, capture_output=True, text=True,
        )
        if build.returncode != 0:
            fail(f"rustc could not compile {ABI_RS} alone:\n{build.stderr}")
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    layouts = {}
    for line in out.splitlines():
        kind, name, *rest = line.split()
        if kind == "struct":
            layouts[name] = (int(rest[0]), int(rest[1]), [])
        else:
            field, ty, offset = rest
            layouts[name][2].append((field, ty, int(offset)))
    return layouts


# ---- kernels.cu's side ----


def cu_source():
    """kernels.cu without comments, its macros' lines joined."""
    src = KERNELS_CU.read_text()
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    return src.replace("\\\n", " ")


def cu_structs(src):
    """{name: [(field, C type)]} of kernels.cu's structs, or an error string per struct that
    this parser cannot read."""
    structs = {}
    for name, body in re.findall(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", src, re.S):
        fields = []
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            first, *more = (p.strip() for p in decl.split(","))
            m = re.fullmatch(r"((?:\w+\s+)*\w+)\s+(\w+)", first)
            if not m or any(not re.fullmatch(r"\w+", n) for n in more):
                structs[name] = f"cannot read the declaration `{decl}` (only `type a, b;`)"
                break
            ty = " ".join(m.group(1).split())
            fields += [(n, ty) for n in [m.group(2), *more]]
        else:
            structs[name] = fields
    return structs


def cu_kernel_params(src, struct_names):
    """{kernel name or macro pattern: [struct name or None per parameter]}; a pattern such as
    `im2col_##S` stands for every `im2col_<suffix>`."""
    kernels = {}
    for name, params in re.findall(r"__global__\s+void\s+([\w#]+)\s*\(([^)]*)\)", src):
        kinds = []
        for p in filter(None, (p.strip() for p in params.split(","))):
            words = re.findall(r"\w+", p)
            kinds.append(next((w for w in words if w in struct_names), None) if "*" not in p else None)
        kernels[name] = kinds
    return kernels


def params_of(kernels, entry):
    if entry in kernels:
        return kernels[entry]
    for pattern, kinds in kernels.items():
        if "##" in pattern and re.fullmatch(re.escape(pattern.split("##")[0]) + r"[A-Za-z0-9]+", entry):
            return kinds
    return None


# ---- NVRTC's side ----


def ptx_entries(ptx):
    """{entry: [(align, size) of a `.b8` array, or None, per parameter]}."""
    entries = {}
    for name, params in re.findall(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S):
        kinds = []
        for p in filter(None, (p.strip() for p in params.split(","))):
            m = re.search(r"\.align\s+(\d+)\s+\.b8\s+\w+\[(\d+)\]", p)
            kinds.append((int(m.group(1)), int(m.group(2))) if m else None)
        entries[name] = kinds
    return entries


def ptxas_report(log):
    """{entry: {registers, stack, spill_stores, spill_loads, smem, barriers}} from ptxas -v."""
    report, current = {}, None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            current = report.setdefault(m.group(1), {"smem": 0, "barriers": 0})
        elif m := re.search(r"Function properties for (\w+)", line):
            current = report.get(m.group(1))
        elif current is None:
            continue
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif m := re.search(r"Used (\d+) registers", line):
            current["registers"] = int(m.group(1))
            if b := re.search(r"used (\d+) barriers", line):
                current["barriers"] = int(b.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                current["smem"] = int(s.group(1))
    return report


# ---- The rules ----


def main():
    t_start = time.monotonic()
    max_ptx = os.environ.get("MAX_PTX", "9.0")
    arch = os.environ.get("ARCH", "sm_90")
    errors = []

    def rule(name, msg):
        errors.append(f"{name}: {msg}")

    nvrtc, nvrtc_version, lib = load_nvrtc()
    kernels = rust_kernels()
    block = rust_block()
    layouts = rust_layouts()
    src = cu_source()
    structs = cu_structs(src)
    params = cu_kernel_params(src, set(structs))

    plain = Compiled(nvrtc, [])
    sass = Compiled(nvrtc, [f"--gpu-architecture={arch}", "--ptxas-options=-v"])
    print(f"nvrtc-check: NVRTC {nvrtc_version} ({lib}); compiled in {plain.seconds:.1f} s (PTX) "
          f"and {sass.seconds:.1f} s ({arch}, CUBIN {len(sass.cubin or b'')} bytes)")

    # ptx-version: the fallback's PTX must be one the target driver can JIT-compile.
    m = re.search(r"^\.version (\d+\.\d+)", plain.ptx or "", re.M)
    target = re.search(r"^\.target (\w+)", plain.ptx or "", re.M)
    ptx_version = m.group(1) if m else "?"
    print(f"nvrtc-check: PTX .version {ptx_version}, .target {target.group(1) if target else '?'} "
          f"(MAX_PTX {max_ptx})")
    if not m:
        rule("ptx-version", "no `.version` in NVRTC's PTX")
    elif version_tuple(ptx_version) > version_tuple(max_ptx):
        rule("ptx-version", f"NVRTC {nvrtc_version} writes PTX .version {ptx_version}, newer than "
             f"MAX_PTX {max_ptx}, the newest the target driver JIT-compiles: loading it there fails "
             f"with CUDA_ERROR_UNSUPPORTED_PTX_VERSION (the crate's PTX fallback, src/ops/cuda/"
             f"load.rs; its CUBIN path is not affected). Use an NVRTC of at most that version, "
             f"or raise MAX_PTX for a newer driver")

    # entries: what the crate asks the driver for is what NVRTC made.
    entries = ptx_entries(plain.ptx or "")
    for name in sorted(set(kernels) - set(entries)):
        rule("entries", f"`{name}` is in KERNELS (src/ops/cuda/mod.rs) but kernels.cu has no such "
             f"extern \"C\" __global__ function: loading the module fails with CUDA_ERROR_NOT_FOUND")
    for name in sorted(set(entries) - set(kernels)):
        rule("entries", f"kernels.cu defines `{name}`, which KERNELS (src/ops/cuda/mod.rs) lacks: "
             f"the crate cannot launch it")
    if len(set(kernels)) != len(kernels):
        rule("entries", "KERNELS names a kernel twice")

    # structs: the same names on both sides...
    for name in sorted(set(structs) - set(layouts)):
        rule("structs", f"kernels.cu's struct `{name}` is not in src/ops/cuda/abi.rs")
    for name in sorted(set(layouts) - set(structs)):
        rule("structs", f"src/ops/cuda/abi.rs's struct `{name}` is not in kernels.cu")
    # ... the same fields in the same order, of the same types...
    for name in sorted(set(structs) & set(layouts)):
        cu = structs[name]
        if isinstance(cu, str):
            rule("structs", f"kernels.cu's `{name}`: {cu}")
            continue
        rust = layouts[name][2]
        for i in range(max(len(cu), len(rust))):
            c = cu[i] if i < len(cu) else None
            r = rust[i] if i < len(rust) else None
            if c and c[1] not in C_TO_RUST:
                rule("structs", f"{name} field {i} `{c[0]}`: C type `{c[1]}` has no known Rust type")
                break
            if c is None or r is None or (c[0], C_TO_RUST[c[1]]) != (r[0], r[1]):
                cu_text = f"`{c[1]} {c[0]}`" if c else "nothing"
                rust_text = f"`{r[0]}: {r[1]}` (offset {r[2]})" if r else "nothing"
                rule("structs", f"{name} field {i}: kernels.cu has {cu_text}, abi.rs has {rust_text}")
                break
    # ... and NVRTC's parameter for each is the size and alignment Rust gives the struct.
    seen = {}
    for entry, ptx_params in sorted(entries.items()):
        kinds = params_of(params, entry)
        if kinds is None:
            rule("structs", f"cannot find `{entry}`'s parameters in kernels.cu")
            continue
        if len(kinds) != len(ptx_params):
            rule("structs", f"{entry}: {len(kinds)} parameters in kernels.cu, {len(ptx_params)} in the PTX")
            continue
        for i, (struct, aggregate) in enumerate(zip(kinds, ptx_params)):
            if struct is None and aggregate is not None:
                rule("structs", f"{entry} parameter {i}: NVRTC passes a {aggregate[1]}-byte aggregate "
                     f"that is no struct of kernels.cu")
            elif struct is not None:
                if aggregate is None:
                    rule("structs", f"{entry} parameter {i} ({struct}): not a .b8 array in the PTX")
                    continue
                seen.setdefault(struct, aggregate)
                if struct in layouts:
                    size, align = layouts[struct][:2]
                    if (align, size) != aggregate:
                        rule("structs", f"{struct}: {size} bytes (align {align}) in Rust (abi.rs), "
                             f"{aggregate[1]} (align {aggregate[0]}) in {entry}'s parameter {i} "
                             f"(NVRTC): a launch would pass the kernel the wrong bytes")
    for name, (size, align, fields) in layouts.items():
        where = f"{seen[name][1]} bytes (align {seen[name][0]}) in NVRTC" if name in seen else "taken by no kernel"
        print(f"nvrtc-check: struct {name}: {size} bytes (align {align}), {len(fields)} fields in Rust; {where}")

    # resources: ptxas's report for the GPU machines' architecture.
    report = ptxas_report(sass.log)
    print(f"\nptxas ({arch}), {block} threads per block:")
    print(f"{'kernel':<22}{'regs':>6}{'regs*block':>12}{'stack':>7}{'spill st':>10}{'spill ld':>10}{'smem':>7}{'barriers':>10}")
    for name in kernels:
        r = report.get(name)
        if r is None or "registers" not in r or "stack" not in r:
            rule("resources", f"no ptxas report for `{name}` in NVRTC's log")
            continue
        print(f"{name:<22}{r['registers']:>6}{r['registers'] * block:>12}{r['stack']:>7}"
              f"{r['spill_stores']:>10}{r['spill_loads']:>10}{r['smem']:>7}{r['barriers']:>10}")
        if r["stack"]:
            rule("resources", f"{name}: {r['stack']} bytes of stack frame (local memory), want 0")
        if r["spill_stores"] or r["spill_loads"]:
            rule("resources", f"{name}: spills ({r['spill_stores']} bytes stored, {r['spill_loads']} loaded), want none")
        if r["registers"] * block > REGISTERS_PER_SM:
            rule("resources", f"{name}: {r['registers']} registers x {block} threads = "
                 f"{r['registers'] * block} > {REGISTERS_PER_SM}: a launch fails with "
                 f"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")
        if r["smem"] > STATIC_SMEM_MAX:
            rule("resources", f"{name}: {r['smem']} bytes of static shared memory > {STATIC_SMEM_MAX}")
    if report:
        top = max((r for r in report.values() if "registers" in r), key=lambda r: r["registers"], default=None)
        worst = [n for n, r in report.items() if top and r.get("registers") == top["registers"]]
        print(f"max registers {top['registers'] if top else '?'} ({', '.join(worst)}); "
              f"max static smem {max(r['smem'] for r in report.values())} bytes")

    took = time.monotonic() - t_start
    if errors:
        print(f"\nnvrtc-check: FAILED, {len(errors)} broken rule(s) ({took:.1f} s):", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    print(f"\nnvrtc-check: ok: {len(kernels)} kernels, {len(layouts)} structs, PTX {ptx_version} <= "
          f"{max_ptx}, NVRTC {nvrtc_version} ({took:.1f} s)")


if __name__ == "__main__":
    main()
