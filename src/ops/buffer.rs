//! Host buffers reused from one training step to the next.
//!
//! A LeNet step on 256 images moves tens of megabytes through buffers of the same few sizes.
//! Allocated fresh each time, large ones come from `mmap` and go back on `free`, so every step
//! pays for hundreds of page faults (a quarter of the step's time in a profile). Kept in a pool
//! instead, they stay mapped.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers waiting to be reused, per element type.
pub struct BufferPool<E>(Mutex<Vec<Vec<E>>>);

impl<E> BufferPool<E> {
    /// An empty pool (for the `static` each [`Float`] type keeps).
    pub const fn new() -> Self {
        BufferPool(Mutex::new(Vec::new()))
    }
}

impl<E> Default for BufferPool<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// An element type with a buffer pool of its own.
pub trait Pooled: Copy + Default + Send + 'static {
    /// The pool.
    fn pool() -> &'static BufferPool<Self>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn pool() -> &'static BufferPool<Self> {
                static POOL: BufferPool<$t> = BufferPool::new();
                &POOL
            }
        }
    )*};
}
pooled!(f32, f64, u32, u8);

/// More buffers than this are freed rather than kept: a network uses a few per layer.
const KEEP: usize = 64;

/// A `Vec` from the pool, returned to it when dropped.
pub(crate) struct Buffer<E: Pooled>(Vec<E>);

impl<E: Pooled> Buffer<E> {
    /// `len` zeros (`Default` values).
    pub(crate) fn zeroed(len: usize) -> Self {
        match take::<E>(len) {
            Some(mut v) => {
                v.clear();
                v.resize(len, E::default());
                Buffer(v)
            }
            None => Buffer(zeros(len)),
        }
    }

    /// `len` values to be overwritten before they are read: a reused buffer keeps its old
    /// contents (valid values of `E`, just stale), which saves clearing it.
    ///
    /// A new buffer comes zeroed by [`zeros`].
    pub(crate) fn for_overwrite(len: usize) -> Self {
        let Some(mut v) = take::<E>(len) else {
            return Buffer(zeros(len));
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, E::default());
        }
        Buffer(v)
    }

    /// Takes the `Vec` out of the pool's care (to hand it to a tensor).
    pub(crate) fn into_vec(mut self) -> Vec<E> {
        std::mem::take(&mut self.0)
    }
}

/// Buffers from this many bytes up are zeroed by [`zeros`] on all threads.
const PARALLEL_ZEROING: usize = 1 << 20;

/// `len` zeros in a new `Vec`. Small ones come from `calloc`; large ones are zeroed by
/// rayon's threads: with [`retain_freed_memory`] most large blocks come from memory the
/// process has used before, which `calloc` clears with one `memset` on the calling thread
/// while the other cores wait for the op it allocates for (8% of an `infer_resnet` profile,
/// as long again in wall time on two cores).
fn zeros<E: Pooled>(len: usize) -> Vec<E> {
    use rayon::prelude::*;
    if len * std::mem::size_of::<E>() < PARALLEL_ZEROING {
        return vec![E::default(); len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(PARALLEL_ZEROING / 4 / std::mem::size_of::<E>())
        .for_each(|c| c.fill(std::mem::MaybeUninit::new(E::default())));
    // SAFETY: the first `len` elements were just written (all of the chunks above), and the
    // capacity is at least `len`.
    unsafe { v.set_len(len) };
    v
}

/// The smallest pooled buffer that holds `len` elements, if there is one.
fn take<E: Pooled>(len: usize) -> Option<Vec<E>> {
    let mut pool = E::pool().0.lock().unwrap_or_else(|e| e.into_inner());
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= len)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i);
    best.map(|i| pool.swap_remove(i))
}

impl<E: Pooled> Drop for Buffer<E> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        let mut pool = E::pool().0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() >= KEEP {
            // Keep the larger buffers: they are the expensive ones to map again.
            let (i, smallest) = pool
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .expect("pool is full");
            if smallest.capacity() >= v.capacity() {
                return;
            }
            pool.swap_remove(i);
        }
        pool.push(v);
    }
}

impl<E: Pooled> Deref for Buffer<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.0
    }
}

impl<E: Pooled> DerefMut for Buffer<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.0
    }
}

/// Maps every page of `d` for writing before a kernel adds into it (`*d += g`).
///
/// dfdx allocates a gradient zeroed, from pages the kernel has not mapped yet. A kernel that
/// adds into it reads each page first, which maps the shared zero page, then writes it, which
/// faults a second time to give the page a frame of its own and flushes the stale mapping from
/// every other core's TLB, by an interprocessor interrupt per page. In a profile of a `resnet`
/// training step that was 18% of the time. An atomic read-modify-write of one byte per page
/// (a compare-and-swap of 0 for 0, which keeps any value) is a write to the processor, so each page faults
/// once, straight to a frame of its own. On pages already mapped it costs one instruction per
/// 4 KiB.
pub(crate) fn map_for_writing<E: Copy>(d: &mut [E]) {
    use std::sync::atomic::{AtomicU8, Ordering};
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(d);
    let p = d.as_mut_ptr().cast::<u8>();
    let first_boundary = p.align_offset(PAGE);
    let offsets = (bytes > 0)
        .then_some(0)
        .into_iter()
        .chain((first_boundary..bytes).step_by(PAGE).filter(|&o| o != 0));
    for o in offsets {
        // SAFETY: `o < bytes`, so the byte lies inside `d`, which this function borrows
        // exclusively (no other access can race with the atomic one); any byte is a valid
        // `u8`, and a `u8` atomic needs no alignment.
        let byte = unsafe { AtomicU8::from_ptr(p.add(o)) };
        // Not `fetch_or(0)`: LLVM turns an idempotent read-modify-write into a plain load.
        let _ = byte.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Asks the C allocator to keep memory it gets back mapped for reuse, instead of handing it
/// to the kernel, so that a training loop's next step does not fault every page in again.
/// Returns whether the allocator took the settings (glibc on Linux; elsewhere it does
/// nothing and returns `false`).
///
/// Every dfdx tensor's memory goes back to `malloc` when the tensor drops, and a training
/// step drops all its activations and gradients at its end. glibc, by default, hands the top
/// of its heap back to the kernel once more than twice its mmap threshold is free there, and
/// serves blocks above that threshold (128 KiB to 32 MiB, adjusting) with fresh `mmap`s. So
/// each step maps its tens of megabytes of activations afresh, a page fault per 4 KiB. This
/// sets the mmap threshold to its maximum, 32 MiB (a fixed value, which also stops glibc
/// adjusting it), and the trim threshold to 1 GiB. In one `resnet` benchmark run (batch 128),
/// page faults went from 458k to 122k and CPU time down 11%; the process keeps its peak heap.
///
/// The `lenet` and `resnet` examples and `bench` call it first thing. It changes the whole
/// process's allocator, so it is for programs, not for libraries to call on their users'
/// behalf. PyTorch's CPU tuning guide recommends a caching allocator (jemalloc, tcmalloc) for
/// the same reason.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        // glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // SAFETY: `mallopt` takes any parameter and value, returning 0 for ones it refuses.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc refuses an mmap threshold above its maximum (32 MiB on 64-bit) with a 0: the
    /// settings must be ones it takes.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        assert!(retain_freed_memory());
    }

    /// Large new buffers are zeroed in parallel, every element of them; small ones too.
    #[test]
    fn new_buffers_are_zeros() {
        for len in [0, 7, PARALLEL_ZEROING / 4 + 3, 3 * PARALLEL_ZEROING / 4 + 1] {
            // dirty the allocator's free memory first, so zeros are not the heap's by chance
            drop(vec![f32::NAN; len]);
            let v = zeros::<f32>(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0), "{len}");
        }
    }

    /// A fresh gradient's pages, mapped for writing, keep their values (zeros) and take the
    /// values added afterwards; so do pages already mapped, and an unaligned slice.
    #[test]
    fn mapping_for_writing_keeps_the_values() {
        let mut fresh = vec![0.0f32; 3 * 4096 + 5];
        map_for_writing(&mut fresh[1..]);
        assert!(fresh.iter().all(|&v| v == 0.0));
        let mut used: Vec<f32> = (0..20_000).map(|i| i as f32).collect();
        map_for_writing(&mut used[3..]);
        assert!(used.iter().enumerate().all(|(i, &v)| v == i as f32));
        map_for_writing::<f64>(&mut []);
    }
}
