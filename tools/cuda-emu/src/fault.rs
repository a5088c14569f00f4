//! What happens when a kernel touches memory it must not: a guard page faults (SIGSEGV or
//! SIGBUS), and the handler names the kernel, the address and the allocation it was near, then
//! aborts the process. On a GPU the same bug is a silent wrong answer or a sticky
//! `CUDA_ERROR_ILLEGAL_ADDRESS` with no location.

use crate::{jit, memory};
use std::sync::Once;

/// Installs the handler once per process (from `cuInit`). Kernels run on fiber stacks, so the
/// handler runs on an alternate signal stack, set up per thread by [`alt_stack`].
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO | SA_ONSTACK; the handler only
        // formats a message and exits.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
    alt_stack();
}

/// Gives the calling thread an alternate signal stack, once.
pub fn alt_stack() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    DONE.with(|done| {
        if done.get() {
            return;
        }
        done.set(true);
        const SIZE: usize = 64 * 1024;
        // Leaked on purpose: the thread may take a signal until it exits.
        let stack = Box::leak(vec![0u8; SIZE].into_boxed_slice());
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: SIZE,
        };
        // SAFETY: the stack lives for the rest of the process.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as u64;
    let kernel = jit::current_kernel();
    let place = match memory::try_live() {
        Some(live) => memory::describe(addr, &live),
        None => "(the allocation registry was busy)".to_string(),
    };
    let what = if sig == libc::SIGBUS {
        "SIGBUS"
    } else {
        "SIGSEGV"
    };
    match kernel {
        Some(k) => die(&format!(
            "kernel `{k}` accessed {addr:#x}, {place} ({what}): an out-of-bounds access"
        )),
        None => die(&format!(
            "{what} at {addr:#x} outside any kernel ({place}); not the stand-in's to explain"
        )),
    }
}

/// Prints `message` and aborts the process (what a GPU's sticky error amounts to for a test).
pub fn die(message: &str) -> ! {
    // Straight to file descriptor 2: the test harness captures `eprintln!` per test and would
    // lose the message with the process.
    let line = format!("cuda-emu: {message}\n");
    // SAFETY: writing a live buffer of its own length to stderr.
    unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
    // SAFETY: restoring the default action so that abort's SIGABRT (and any later fault) ends
    // the process instead of re-entering the handler.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
    std::process::abort()
}
