//! One soname for the four names the library answers to (`libcuda.so`, `libcublas.so`,
//! `libcublasLt.so`, `libnvrtc.so` are links to it), so a binary linked against them needs it once.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda_emu.so");
}
